//! Validation of a raw sweep into a [`SweepSpec`]. Like the job spec's, it collects every error
//! (`path = value: what is allowed`) instead of stopping at the first. It also checks the search
//! space against the base job spec: the base spec must be valid, the objective a metric its task
//! reports every epoch, and every corner of the space (both ends of each range, every choice;
//! the other parameters at their first corner, and all at their last) must give a valid job
//! spec — so a sweep that would fail trials for a bad value is refused at submission, naming
//! the parameter and the value.

use crate::apply::{parse_path, trial_name};
use crate::raw::{RawParam, RawPruner, RawSweep};
use crate::types::{
    Algorithm, Budget, Direction, Distribution, Objective, Param, ParamValue, Point, Pruner,
    SweepSpec,
};
use crate::{SweepError, trial_spec};
use ringtrain_spec::error::snippet;
use ringtrain_spec::{FieldError, JobSpec, MAX_NAME_LEN, MonitorMetric, SpecError, TaskKind};
use std::path::PathBuf;

/// Most parameters in a search space.
pub const MAX_PARAMS: usize = 64;
/// Most values of one `choice` / `grid` parameter.
pub const MAX_CHOICES: usize = 1000;
/// Most trials a budget may ask for, and most points of a grid. `GetSweep` returns every trial
/// in one message, which must stay within a client's default 4 MiB limit for typical spaces.
pub const MAX_TRIALS: u32 = 10_000;
/// Most trials running at once.
pub const MAX_CONCURRENT: u32 = 1024;
/// Longest sweep name: room is left for `-t<index>` within the job name limit.
pub const MAX_SWEEP_NAME_LEN: usize = MAX_NAME_LEN - 22;

#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, value: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            value: value.into(),
            message: msg.into(),
        });
    }
}

/// Validates a raw sweep whose base job spec is inline (`[job]`; [`crate::load`] reads a
/// `base = "file"` into it). `default_name` is the sweep name when the document has none;
/// `base_dir` is recorded as [`SweepSpec::base_dir`].
///
/// # Errors
/// [`SweepError::Invalid`] with every invalid field: the sweep's own (`param[1].low`), the base
/// job spec's (under `job.`), and corners of the space that give an invalid job spec (under
/// `param[i]`, naming the value).
pub fn validate(
    raw: RawSweep,
    default_name: &str,
    base_dir: Option<PathBuf>,
) -> Result<SweepSpec, SweepError> {
    let mut c = Checker::default();
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.err(
            "name",
            format!("{:?}", snippet(&name)),
            "must be non-empty and use only letters, digits, '-', '_' and '.'",
        );
    } else if name.len() > MAX_SWEEP_NAME_LEN {
        c.err(
            "name",
            format!("{} characters", name.len()),
            format!("must be at most {MAX_SWEEP_NAME_LEN} characters"),
        );
    }

    let mut base = match (&raw.base, raw.job.clone()) {
        (Some(path), None) => {
            c.err(
                "base",
                format!("{:?}", snippet(path)),
                "a submitted sweep carries its base job spec inline as [job] (`ringtrain sweep \
                 submit` reads the file)",
            );
            None
        }
        (Some(_), Some(_)) => {
            c.err("base", "(set)", "give either `base` or `[job]`, not both");
            None
        }
        (None, None) => {
            c.err(
                "base",
                "(missing)",
                "required: a base job spec file (`base = \"job.toml\"`) or an inline [job] table",
            );
            None
        }
        (None, Some(job)) => Some(job),
    };
    if let Some(table) = &mut base {
        // Each trial sets its own name.
        table.remove("name");
    }
    let base_spec = base.as_ref().and_then(|table| {
        check_job(table, &trial_name(&name, 0))
            .map_err(|e| {
                for f in job_errors(e) {
                    c.errors.push(FieldError {
                        path: format!("job.{}", f.path),
                        ..f
                    });
                }
            })
            .ok()
    });

    let seed = raw.seed.unwrap_or(0);
    let algorithm = match raw.algorithm.as_deref() {
        None => {
            c.err(
                "algorithm",
                "(missing)",
                format!("required: {}", algorithm_names()),
            );
            None
        }
        Some(a) => {
            let found = Algorithm::ALL.into_iter().find(|k| k.name() == a);
            if found.is_none() {
                c.err(
                    "algorithm",
                    format!("{:?}", snippet(a)),
                    format!("must be one of {}", algorithm_names()),
                );
            }
            found
        }
    };
    let max_concurrent = match raw.max_concurrent {
        None => 1,
        Some(n) if n >= 1 && n <= i64::from(MAX_CONCURRENT) => n as u32,
        Some(n) => {
            c.err(
                "max_concurrent",
                n.to_string(),
                format!("must be in 1..={MAX_CONCURRENT}"),
            );
            1
        }
    };

    let objective = objective(&mut c, &raw, base_spec.as_ref());

    if raw.param.is_empty() {
        c.err("param", "(missing)", "at least one [[param]] is required");
    } else if raw.param.len() > MAX_PARAMS {
        c.err(
            "param",
            format!("{} entries", raw.param.len()),
            format!("at most {MAX_PARAMS} parameters"),
        );
    }
    let mut params = Vec::new();
    for (i, p) in raw.param.iter().enumerate().take(MAX_PARAMS) {
        if let Some(param) = param(&mut c, i, p) {
            if params.iter().any(|q: &Param| q.path == param.path) {
                c.err(
                    format!("param[{i}].path"),
                    format!("{:?}", param.path),
                    "is searched by an earlier [[param]] already",
                );
            }
            params.push(param);
        }
    }
    let all_params = params.len() == raw.param.len();

    let grid_len = if algorithm == Some(Algorithm::Grid) && all_params {
        let mut total: u64 = 1;
        for (i, p) in params.iter().enumerate() {
            match p.dist.grid_len() {
                Some(n) => total = total.saturating_mul(n),
                None => c.err(
                    format!("param[{i}].kind"),
                    format!("{:?}", raw.param[i].kind.as_deref().unwrap_or("")),
                    "grid search needs finite values: use `grid`, `choice` or `int`",
                ),
            }
        }
        if total > u64::from(MAX_TRIALS) {
            c.err(
                "param",
                format!("{total} grid points"),
                format!("a grid may have at most {MAX_TRIALS} points"),
            );
        }
        Some(total.min(u64::from(MAX_TRIALS)) as u32)
    } else {
        None
    };
    let budget = budget(&mut c, &raw, grid_len);
    let pruner = raw
        .pruner
        .as_ref()
        .and_then(|p| pruner(&mut c, p, base_spec.as_ref(), &params));

    // Corners are checked only when the rest is valid: an error there is about the space, and
    // a broken base spec would repeat its own errors once per corner.
    if c.errors.is_empty()
        && let (Some(base), Some(objective)) = (&base, objective)
    {
        check_corners(&mut c, &name, base, &params, objective.metric);
    }

    match (c.errors.is_empty(), base, algorithm, objective, budget) {
        (true, Some(base), Some(algorithm), Some(objective), Some(budget)) => Ok(SweepSpec {
            name,
            base,
            base_dir,
            seed,
            algorithm,
            max_concurrent,
            objective,
            budget,
            params,
            pruner,
        }),
        _ => Err(SweepError::Invalid(c.errors)),
    }
}

fn algorithm_names() -> String {
    Algorithm::ALL
        .map(|a| format!("\"{}\"", a.name()))
        .join(" | ")
}

/// The base job spec validated as trial `name` would be.
fn check_job(table: &toml::Table, name: &str) -> Result<JobSpec, SpecError> {
    let mut table = table.clone();
    table.insert("name".into(), toml::Value::String(name.into()));
    let text = toml::to_string(&table).map_err(|e| SpecError::Syntax {
        origin: "[job]".into(),
        path: "(document)".into(),
        message: e.to_string(),
    })?;
    ringtrain_spec::parse_str(&text, ringtrain_spec::SpecFormat::Toml, "[job]", name)
}

/// A job spec error as field errors (a syntax error — a key the spec does not know, a value of
/// the wrong type — becomes one, at its path).
fn job_errors(e: SpecError) -> Vec<FieldError> {
    match e {
        SpecError::Invalid(errors) => errors,
        SpecError::Syntax { path, message, .. } => vec![FieldError {
            path,
            value: "(as written)".into(),
            message,
        }],
        SpecError::Io { path, error } => vec![FieldError {
            path: "(document)".into(),
            value: path.display().to_string(),
            message: error.to_string(),
        }],
    }
}

fn metric_name(m: MonitorMetric) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn objective(c: &mut Checker, raw: &RawSweep, base: Option<&JobSpec>) -> Option<Objective> {
    let Some(o) = &raw.objective else {
        c.err(
            "objective",
            "(missing)",
            "required: [objective] with `metric` (e.g. \"val_loss\")",
        );
        return None;
    };
    let allowed: Vec<MonitorMetric> = match base {
        Some(spec) => spec.task.kind().monitored_metrics().to_vec(),
        None => {
            let mut all = Vec::new();
            for m in TaskKind::ALL.iter().flat_map(|k| k.monitored_metrics()) {
                if !all.contains(m) {
                    all.push(*m);
                }
            }
            all
        }
    };
    let names = allowed
        .iter()
        .map(|m| format!("\"{}\"", metric_name(*m)))
        .collect::<Vec<_>>()
        .join(" | ");
    let metric = match o.metric.as_deref() {
        None => {
            c.err(
                "objective.metric",
                "(missing)",
                format!("required: {names}"),
            );
            None
        }
        Some(s) => {
            let found = allowed.iter().copied().find(|m| metric_name(*m) == s);
            if found.is_none() {
                let kind = base.map_or(String::new(), |b| {
                    format!(
                        " (what task.kind = \"{}\" reports every epoch)",
                        b.task.kind_name()
                    )
                });
                c.err(
                    "objective.metric",
                    format!("{:?}", snippet(s)),
                    format!("must be one of {names}{kind}"),
                );
            }
            found
        }
    }?;
    let direction = match o.direction.as_deref() {
        None if metric.higher_is_better() => Direction::Max,
        None => Direction::Min,
        Some("min") => Direction::Min,
        Some("max") => Direction::Max,
        Some(other) => {
            c.err(
                "objective.direction",
                format!("{:?}", snippet(other)),
                "must be \"min\" or \"max\"",
            );
            return None;
        }
    };
    if let Some(spec) = base
        && spec.data.split.val <= 0.0
    {
        c.err(
            "job.data.split.val",
            spec.data.split.val.to_string(),
            "the objective is a validation metric: the base job spec needs a validation split",
        );
    }
    Some(Objective { metric, direction })
}

fn budget(c: &mut Checker, raw: &RawSweep, grid_len: Option<u32>) -> Option<Budget> {
    let b = raw.budget.clone().unwrap_or_default();
    let mut trials = match b.trials {
        None => None,
        Some(n) if n >= 1 && n <= i64::from(MAX_TRIALS) => Some(n as u32),
        Some(n) => {
            c.err(
                "budget.trials",
                n.to_string(),
                format!("must be in 1..={MAX_TRIALS}"),
            );
            return None;
        }
    };
    let wall_time_s = match b.wall_time_s {
        None => None,
        Some(n) if n >= 1 => Some(n as u64),
        Some(n) => {
            c.err("budget.wall_time_s", n.to_string(), "must be at least 1");
            return None;
        }
    };
    if let Some(grid) = grid_len {
        match trials {
            Some(n) if n > grid => {
                c.err(
                    "budget.trials",
                    n.to_string(),
                    format!("the grid has {grid} points; at most that many trials"),
                );
            }
            None => trials = Some(grid),
            Some(_) => {}
        }
    } else if trials.is_none() && wall_time_s.is_none() {
        c.err(
            "budget",
            "(missing)",
            "required: `trials`, `wall_time_s` or both",
        );
        return None;
    }
    Some(Budget {
        trials,
        wall_time_s,
    })
}

fn param(c: &mut Checker, i: usize, p: &RawParam) -> Option<Param> {
    let at = |field: &str| format!("param[{i}].{field}");
    let path = match &p.path {
        None => {
            c.err(
                at("path"),
                "(missing)",
                "required: a dotted job spec field path, e.g. \"train.optimizer.lr\"",
            );
            None
        }
        Some(path) => match parse_path(path) {
            Err(e) => {
                c.err(at("path"), format!("{:?}", snippet(path)), e);
                None
            }
            Ok(segs) if segs.len() == 1 && segs[0].key == "name" => {
                c.err(at("path"), "\"name\"", "the sweep names its trials");
                None
            }
            Ok(_) => Some(path.clone()),
        },
    };
    let kinds = "\"uniform\" | \"log_uniform\" | \"int\" | \"choice\" | \"grid\"";
    let kind = match p.kind.as_deref() {
        None => {
            c.err(at("kind"), "(missing)", format!("required: {kinds}"));
            return None;
        }
        Some(k) => k,
    };
    let numeric = matches!(kind, "uniform" | "log_uniform" | "int");
    let before = c.errors.len();
    if numeric && p.values.is_some() {
        c.err(
            at("values"),
            "(set)",
            format!("only for kind = \"choice\" or \"grid\"; {kind} takes low and high"),
        );
    }
    if !numeric {
        for (field, set) in [("low", p.low.is_some()), ("high", p.high.is_some())] {
            if set {
                c.err(
                    at(field),
                    "(set)",
                    "only for kind = \"uniform\", \"log_uniform\" or \"int\"",
                );
            }
        }
    }
    if kind != "int" && p.log.is_some() {
        c.err(
            at("log"),
            "(set)",
            "only for kind = \"int\" (use kind = \"log_uniform\" for reals)",
        );
    }
    let dist = match kind {
        "uniform" | "log_uniform" => {
            let low = real(c, &at("low"), p.low.as_ref());
            let high = real(c, &at("high"), p.high.as_ref());
            match (low, high) {
                (Some(low), Some(high)) if low >= high => {
                    c.err(
                        at("high"),
                        high.to_string(),
                        format!("must be greater than low ({low})"),
                    );
                    None
                }
                (Some(low), Some(_)) if kind == "log_uniform" && low <= 0.0 => {
                    c.err(
                        at("low"),
                        low.to_string(),
                        "must be positive for log_uniform",
                    );
                    None
                }
                (Some(low), Some(high)) if kind == "uniform" => {
                    Some(Distribution::Uniform { low, high })
                }
                (Some(low), Some(high)) => Some(Distribution::LogUniform { low, high }),
                _ => None,
            }
        }
        "int" => {
            let low = integer(c, &at("low"), p.low.as_ref());
            let high = integer(c, &at("high"), p.high.as_ref());
            let log = p.log.unwrap_or(false);
            match (low, high) {
                (Some(low), Some(high)) if low > high => {
                    c.err(
                        at("high"),
                        high.to_string(),
                        format!("must be at least low ({low})"),
                    );
                    None
                }
                (Some(low), Some(_)) if log && low < 1 => {
                    c.err(
                        at("low"),
                        low.to_string(),
                        "must be at least 1 with log = true",
                    );
                    None
                }
                // Ranges wider than this would overflow the grid arithmetic; no spec field
                // needs them.
                (Some(low), Some(high)) if high.checked_sub(low).is_none_or(|w| w >= 1 << 53) => {
                    c.err(
                        at("high"),
                        high.to_string(),
                        "the range low..=high must span fewer than 2^53 integers",
                    );
                    None
                }
                (Some(low), Some(high)) => Some(Distribution::Int { low, high, log }),
                _ => None,
            }
        }
        "choice" | "grid" => match &p.values {
            None => {
                c.err(
                    at("values"),
                    "(missing)",
                    "required: a non-empty list of values",
                );
                None
            }
            Some(v) if v.is_empty() || v.len() > MAX_CHOICES => {
                c.err(
                    at("values"),
                    format!("{} values", v.len()),
                    format!("must have 1..={MAX_CHOICES} values"),
                );
                None
            }
            Some(v) => {
                for (j, value) in v.iter().enumerate() {
                    if value.is_table() {
                        c.err(
                            format!("param[{i}].values[{j}]"),
                            "(a table)",
                            "a parameter sets one value, not a table",
                        );
                    } else if v[..j].contains(value) {
                        c.err(
                            format!("param[{i}].values[{j}]"),
                            snippet(&value.to_string()),
                            "is listed twice",
                        );
                    }
                }
                Some(Distribution::Choice(v.clone()))
            }
        },
        other => {
            c.err(
                at("kind"),
                format!("{:?}", snippet(other)),
                format!("must be one of {kinds}"),
            );
            None
        }
    };
    match (path, dist) {
        (Some(path), Some(dist)) if c.errors.len() == before => Some(Param { path, dist }),
        _ => None,
    }
}

fn real(c: &mut Checker, path: &str, v: Option<&toml::Value>) -> Option<f64> {
    match v {
        None => {
            c.err(path, "(missing)", "required: a number");
            None
        }
        Some(toml::Value::Float(f)) if f.is_finite() => Some(*f),
        Some(toml::Value::Integer(n)) => Some(*n as f64),
        Some(other) => {
            c.err(path, snippet(&other.to_string()), "must be a finite number");
            None
        }
    }
}

fn integer(c: &mut Checker, path: &str, v: Option<&toml::Value>) -> Option<i64> {
    match v {
        None => {
            c.err(path, "(missing)", "required: an integer");
            None
        }
        Some(toml::Value::Integer(n)) => Some(*n),
        Some(other) => {
            c.err(
                path,
                snippet(&other.to_string()),
                "must be an integer for kind = \"int\"",
            );
            None
        }
    }
}

fn pruner(
    c: &mut Checker,
    p: &RawPruner,
    base: Option<&JobSpec>,
    params: &[Param],
) -> Option<Pruner> {
    let count = |c: &mut Checker,
                 field: &str,
                 v: Option<i64>,
                 min: i64,
                 default: Option<i64>|
     -> Option<u32> {
        match v.or(default) {
            None => {
                c.err(
                    format!("pruner.{field}"),
                    "(missing)",
                    format!("required: an integer ≥ {min}"),
                );
                None
            }
            Some(n) if n >= min && n <= 1_000_000 => Some(n as u32),
            Some(n) => {
                c.err(
                    format!("pruner.{field}"),
                    n.to_string(),
                    format!("must be in {min}..=1000000"),
                );
                None
            }
        }
    };
    let only = |c: &mut Checker, kind: &str, fields: &[(&str, bool)]| {
        for (field, set) in fields {
            if *set {
                c.err(
                    format!("pruner.{field}"),
                    "(set)",
                    format!("not a setting of kind = \"{kind}\""),
                );
            }
        }
    };
    match p.kind.as_deref() {
        Some("asha") => {
            only(
                c,
                "asha",
                &[
                    ("startup_trials", p.startup_trials.is_some()),
                    ("warmup_epochs", p.warmup_epochs.is_some()),
                ],
            );
            let epochs_searched = params.iter().any(|q| q.path == "train.epochs");
            let base_epochs = base.map(|b| i64::from(b.train.epochs));
            let grace = count(c, "grace_epochs", p.grace_epochs, 1, Some(1));
            let rf = count(c, "reduction_factor", p.reduction_factor, 2, Some(3));
            let max = count(
                c,
                "max_epochs",
                p.max_epochs,
                1,
                if epochs_searched { None } else { base_epochs },
            );
            let (grace, rf, max) = (grace?, rf?, max?);
            if max < grace {
                c.err(
                    "pruner.max_epochs",
                    max.to_string(),
                    format!("must be at least grace_epochs ({grace})"),
                );
                return None;
            }
            if let Some(e) = base_epochs.filter(|_| !epochs_searched)
                && i64::from(max) > e
            {
                c.err(
                    "pruner.max_epochs",
                    max.to_string(),
                    format!("must be at most the base job spec's train.epochs ({e})"),
                );
                return None;
            }
            Some(Pruner::Asha {
                grace_epochs: grace,
                reduction_factor: rf,
                max_epochs: max,
            })
        }
        Some("median") => {
            only(
                c,
                "median",
                &[
                    ("grace_epochs", p.grace_epochs.is_some()),
                    ("reduction_factor", p.reduction_factor.is_some()),
                    ("max_epochs", p.max_epochs.is_some()),
                ],
            );
            let startup = count(c, "startup_trials", p.startup_trials, 0, Some(5));
            let warmup = count(c, "warmup_epochs", p.warmup_epochs, 0, Some(0));
            Some(Pruner::Median {
                startup_trials: startup?,
                warmup_epochs: warmup?,
            })
        }
        Some("none") => {
            only(
                c,
                "none",
                &[
                    ("grace_epochs", p.grace_epochs.is_some()),
                    ("reduction_factor", p.reduction_factor.is_some()),
                    ("max_epochs", p.max_epochs.is_some()),
                    ("startup_trials", p.startup_trials.is_some()),
                    ("warmup_epochs", p.warmup_epochs.is_some()),
                ],
            );
            None
        }
        None => {
            c.err(
                "pruner.kind",
                "(missing)",
                "required: \"asha\" | \"median\" | \"none\"",
            );
            None
        }
        Some(other) => {
            c.err(
                "pruner.kind",
                format!("{:?}", snippet(other)),
                "must be one of \"asha\" | \"median\" | \"none\"",
            );
            None
        }
    }
}

/// Checks the corners of the space: for each parameter, each of its corners with every other
/// parameter at its first corner; then every parameter at its last corner together. Each
/// failing point is one error under the parameter that was varied (the all-last point under
/// `param`), with the value and the job spec's first complaint.
fn check_corners(
    c: &mut Checker,
    name: &str,
    base: &toml::Table,
    params: &[Param],
    metric: MonitorMetric,
) {
    let corners: Vec<Vec<ParamValue>> = params.iter().map(|p| p.dist.corners()).collect();
    let first = Point(corners.iter().map(|v| v[0]).collect());
    let probe = SweepSpec {
        name: name.to_string(),
        base: base.clone(),
        base_dir: None,
        seed: 0,
        algorithm: Algorithm::Random,
        max_concurrent: 1,
        objective: Objective {
            metric,
            direction: Direction::Min,
        },
        budget: Budget {
            trials: Some(1),
            wall_time_s: None,
        },
        params: params.to_vec(),
        pruner: None,
    };
    let check = |c: &mut Checker, at: String, shown: String, point: &Point| {
        let outcome = trial_spec(&probe, 0, point);
        let message = match outcome {
            Ok((_, spec)) if !spec.task.kind().monitored_metrics().contains(&metric) => format!(
                "gives task.kind = \"{}\", which does not report objective.metric = \"{}\"",
                spec.task.kind_name(),
                metric_name(metric)
            ),
            Ok(_) => return,
            Err(crate::ApplyError::Path { message, .. }) => message,
            Err(crate::ApplyError::Spec { error, .. }) => {
                let errors = job_errors(error);
                let n = errors.len();
                let f = &errors[0];
                let more = if n > 1 {
                    format!(" (and {} more)", n - 1)
                } else {
                    String::new()
                };
                format!("gives an invalid job spec: {f}{more}")
            }
        };
        c.err(at, shown, message);
    };
    for (i, values) in corners.iter().enumerate() {
        for v in values {
            let mut point = first.clone();
            point.0[i] = *v;
            let shown = params[i].dist.to_toml(v).to_string();
            let before = c.errors.len();
            check(
                c,
                format!("param[{i}]"),
                format!("{} = {}", params[i].path, snippet(&shown)),
                &point,
            );
            if c.errors.len() > before {
                // One error per parameter is enough to act on.
                break;
            }
        }
    }
    if params.len() > 1 && c.errors.is_empty() {
        let last = Point(corners.iter().map(|v| *v.last().unwrap_or(&v[0])).collect());
        let shown = crate::types::PointDisplay {
            params,
            point: &last,
        }
        .to_string();
        check(c, "param".into(), snippet(&shown), &last);
    }
}
