//! Phase two of reading a spec: check every value of a [`RawSpec`] and build the [`JobSpec`].
//! All problems are collected (not just the first), each naming its field path, the bad value
//! and what is allowed, so a user fixes a spec in one round trip.

use crate::error::{FieldError, SpecError};
use crate::raw::*;
use crate::types::*;
use std::fmt::Display;
use std::path::PathBuf;

/// Collects field errors while building the validated spec.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn err(&mut self, path: &str, value: impl Display, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    /// An integer in `min..=max` (or the default when absent).
    fn int(&mut self, path: &str, v: Option<i64>, default: i64, min: i64, max: i64) -> usize {
        let x = v.unwrap_or(default);
        if x < min || x > max {
            let allowed = if max == i64::MAX {
                format!("must be an integer >= {min}")
            } else {
                format!("must be an integer in {min}..={max}")
            };
            self.err(path, x, allowed);
            return default.max(min) as usize;
        }
        x as usize
    }

    /// A finite float satisfying `ok` (described by `allowed`).
    fn float(
        &mut self,
        path: &str,
        v: Option<f64>,
        default: f64,
        ok: impl Fn(f64) -> bool,
        allowed: &str,
    ) -> f64 {
        let x = v.unwrap_or(default);
        if !x.is_finite() || !ok(x) {
            self.err(path, x, format!("must be {allowed}"));
            return default;
        }
        x
    }

    /// One of a fixed set of names.
    fn choice<T: Copy>(
        &mut self,
        path: &str,
        v: Option<&str>,
        default: T,
        table: &[(&str, T)],
    ) -> T {
        let Some(s) = v else { return default };
        match table.iter().find(|(name, _)| *name == s) {
            Some((_, t)) => *t,
            None => {
                let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                self.err(
                    path,
                    format!("{s:?}"),
                    format!("must be one of {}", names.join(", ")),
                );
                default
            }
        }
    }

    /// Reject a key that does not apply in this context.
    fn forbid<V: std::fmt::Debug>(&mut self, path: &str, v: &Option<V>, why: &str) {
        if let Some(v) = v {
            self.err(path, format!("{v:?}"), format!("not allowed: {why}"));
        }
    }

    fn required<'a, V>(&mut self, path: &str, v: &'a Option<V>, what: &str) -> Option<&'a V> {
        if v.is_none() {
            self.err(path, "(missing)", format!("required: {what}"));
        }
        v.as_ref()
    }
}

const CELLS: &[(&str, CellKind)] = &[
    ("rnn", CellKind::Rnn),
    ("lstm", CellKind::Lstm),
    ("gru", CellKind::Gru),
];
const ACTIVATIONS: &[(&str, Activation)] =
    &[("tanh", Activation::Tanh), ("relu", Activation::Relu)];
const LOSSES: &[(&str, ForecastLoss)] = &[("mse", ForecastLoss::Mse), ("mae", ForecastLoss::Mae)];
const POOLINGS: &[(&str, Pooling)] = &[
    ("last", Pooling::Last),
    ("mean", Pooling::Mean),
    ("max", Pooling::Max),
];
const FORMATS: &[(&str, DataFormat)] = &[
    ("csv", DataFormat::Csv),
    ("tsv", DataFormat::Tsv),
    ("jsonl", DataFormat::Jsonl),
];
const NORMS: &[(&str, Normalization)] = &[
    ("none", Normalization::None),
    ("zscore", Normalization::Zscore),
    ("minmax", Normalization::Minmax),
];
const FORECAST_MODES: &[(&str, ForecastMode)] = &[
    ("level", ForecastMode::Level),
    ("delta", ForecastMode::Delta),
];
const TOKENIZERS: &[(&str, TokenizerKind)] =
    &[("char", TokenizerKind::Char), ("word", TokenizerKind::Word)];
const METRICS: &[(&str, MonitorMetric)] = &[
    ("val_loss", MonitorMetric::ValLoss),
    ("val_accuracy", MonitorMetric::ValAccuracy),
    ("val_f1", MonitorMetric::ValF1),
    ("val_rmse", MonitorMetric::ValRmse),
    ("val_mae", MonitorMetric::ValMae),
];
const PIPE_SCHEDULES: &[(&str, PipelineSchedule)] = &[
    ("gpipe", PipelineSchedule::Gpipe),
    ("1f1b", PipelineSchedule::OneFOneB),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forecast,
    Classify,
}

/// Validates a raw spec. `default_name` names the job when the spec has no `name` (usually the
/// spec file's stem).
///
/// # Errors
/// [`SpecError::Invalid`] listing every field that is missing, out of range, not applicable to
/// the task, or inconsistent with another field.
pub fn validate(raw: RawSpec, default_name: &str) -> Result<JobSpec, SpecError> {
    let mut c = Checker::default();
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        c.err(
            "name",
            format!("{name:?}"),
            "must be non-empty and use only letters, digits, '-', '_' and '.'",
        );
    }
    let seed = raw.seed.unwrap_or(42);

    let raw_task = raw.task.clone().unwrap_or_default();
    let kind = match raw_task.kind.as_deref() {
        None => {
            c.err("task.kind", "(missing)", "required: forecast | classify");
            None
        }
        Some("forecast") => Some(Kind::Forecast),
        Some("classify") => Some(Kind::Classify),
        Some(other) => {
            c.err(
                "task.kind",
                format!("{other:?}"),
                "must be one of forecast, classify",
            );
            None
        }
    };

    let model = model(&mut c, raw.model.as_ref(), kind);
    let task = task(&mut c, &raw_task, kind);
    let data = data(&mut c, raw.data.as_ref(), kind);
    let train = train(&mut c, &raw.train, kind, &data);
    let parallel = parallel(&mut c, &raw.parallel, &train);
    let checkpoint = CheckpointSpec {
        dir: PathBuf::from(
            raw.checkpoint
                .dir
                .clone()
                .unwrap_or_else(|| format!("runs/{name}")),
        ),
        every_steps: c.int(
            "checkpoint.every_steps",
            raw.checkpoint.every_steps,
            0,
            0,
            i64::MAX,
        ) as u64,
    };
    if raw.checkpoint.dir.as_deref() == Some("") {
        c.err("checkpoint.dir", "\"\"", "must be a non-empty path");
    }

    if !c.errors.is_empty() {
        return Err(SpecError::Invalid(c.errors));
    }
    // kind, task and data are all Some when no error was recorded.
    match (task, data) {
        (Some(task), Some(data)) => {
            let spec = JobSpec {
                name,
                seed,
                model,
                task,
                data,
                train,
                parallel,
                checkpoint,
            };
            let errors = check_pipeline(&spec);
            if errors.is_empty() {
                Ok(spec)
            } else {
                Err(SpecError::Invalid(errors))
            }
        }
        _ => Err(SpecError::Invalid(vec![FieldError {
            path: "task".into(),
            value: "(incomplete)".into(),
            message: "task and data sections could not be validated".into(),
        }])),
    }
}

fn model(c: &mut Checker, m: Option<&RawModel>, kind: Option<Kind>) -> ModelSpec {
    let default = RawModel::default();
    let m = match m {
        Some(m) => m,
        None => {
            c.err(
                "model",
                "(missing)",
                "required section: [model] with at least `cell`",
            );
            &default
        }
    };
    let cell = if m.cell.is_none() {
        c.err("model.cell", "(missing)", "required: rnn | lstm | gru");
        CellKind::Lstm
    } else {
        c.choice("model.cell", m.cell.as_deref(), CellKind::Lstm, CELLS)
    };
    let activation = c.choice(
        "model.activation",
        m.activation.as_deref(),
        Activation::Tanh,
        ACTIVATIONS,
    );
    if cell != CellKind::Rnn && m.activation.is_some() {
        c.forbid(
            "model.activation",
            &m.activation,
            "only the rnn cell has a configurable activation",
        );
    }
    let layers = c.int("model.layers", m.layers, 1, 1, 64);
    let hidden = c.int("model.hidden", m.hidden, 64, 1, 65_536);
    let dropout = c.float(
        "model.dropout",
        m.dropout,
        0.0,
        |x| (0.0..1.0).contains(&x),
        "a probability in [0, 1)",
    );
    let embedding_dim = c.int("model.embedding_dim", m.embedding_dim, 64, 1, 65_536);
    let projection = m
        .projection
        .map(|p| c.int("model.projection", Some(p), 1, 1, 65_536));
    match kind {
        Some(Kind::Forecast) => c.forbid(
            "model.embedding_dim",
            &m.embedding_dim,
            "forecast inputs are numeric; use model.projection",
        ),
        Some(Kind::Classify) => c.forbid(
            "model.projection",
            &m.projection,
            "classify inputs are tokens; use model.embedding_dim",
        ),
        None => {}
    }
    ModelSpec {
        cell,
        activation,
        layers,
        hidden,
        bidirectional: m.bidirectional.unwrap_or(false),
        dropout,
        embedding_dim,
        projection,
    }
}

fn task(c: &mut Checker, t: &RawTask, kind: Option<Kind>) -> Option<TaskSpec> {
    match kind? {
        Kind::Forecast => {
            let why = "only for task.kind = \"classify\"";
            c.forbid("task.pooling", &t.pooling, why);
            c.forbid("task.class_weights", &t.class_weights, why);
            Some(TaskSpec::Forecast {
                horizon: c.int("task.horizon", t.horizon, 1, 1, 100_000),
                loss: c.choice("task.loss", t.loss.as_deref(), ForecastLoss::Mse, LOSSES),
                season: t
                    .season
                    .map(|s| c.int("task.season", Some(s), 1, 1, 1_000_000)),
            })
        }
        Kind::Classify => {
            let why = "only for task.kind = \"forecast\"";
            c.forbid("task.horizon", &t.horizon, why);
            c.forbid(
                "task.loss",
                &t.loss,
                "classification always uses cross-entropy",
            );
            c.forbid("task.season", &t.season, why);
            let mut class_weights = Vec::new();
            for (label, w) in t.class_weights.iter().flatten() {
                let path = format!("task.class_weights.{label}");
                class_weights.push((
                    label.clone(),
                    c.float(&path, Some(*w), 1.0, |x| x > 0.0, "a finite number > 0"),
                ));
            }
            Some(TaskSpec::Classify {
                pooling: c.choice(
                    "task.pooling",
                    t.pooling.as_deref(),
                    Pooling::Last,
                    POOLINGS,
                ),
                class_weights,
            })
        }
    }
}

fn split(c: &mut Checker, s: Option<&RawSplit>) -> Split {
    let (train, val, test) = match s {
        None => (0.8, 0.1, 0.1),
        Some(RawSplit::List(v)) if v.len() == 3 => (v[0], v[1], v[2]),
        Some(RawSplit::List(v)) => {
            c.err(
                "data.split",
                format!("{v:?}"),
                "must be [train, val, test] (three fractions)",
            );
            (0.8, 0.1, 0.1)
        }
        Some(RawSplit::Table { train, val, test }) => (*train, *val, *test),
    };
    let mut ok = true;
    for (name, x) in [("train", train), ("val", val), ("test", test)] {
        let bad = !x.is_finite() || !(0.0..=1.0).contains(&x) || (name == "train" && x == 0.0);
        if bad {
            let allowed = if name == "train" {
                "in (0, 1]"
            } else {
                "in [0, 1]"
            };
            c.err(
                &format!("data.split.{name}"),
                x,
                format!("must be {allowed}"),
            );
            ok = false;
        }
    }
    if ok && ((train + val + test) - 1.0).abs() > 1e-6 {
        c.err(
            "data.split",
            format!("[{train}, {val}, {test}]"),
            format!(
                "fractions must sum to 1 (they sum to {})",
                train + val + test
            ),
        );
    }
    Split { train, val, test }
}

fn data(c: &mut Checker, d: Option<&RawData>, kind: Option<Kind>) -> Option<DataSpec> {
    let default = RawData::default();
    let d = match d {
        Some(d) => d,
        None => {
            c.err(
                "data",
                "(missing)",
                "required section: [data] with at least `path`",
            );
            &default
        }
    };
    let path = d.path.clone().unwrap_or_default();
    if d.path.is_some() && path.is_empty() {
        c.err("data.path", "\"\"", "must be a non-empty path");
    } else if d.path.is_none() && !c.errors.iter().any(|e| e.path == "data") {
        c.err(
            "data.path",
            "(missing)",
            "required: a file path or builtin:air-passengers | builtin:vic-elec",
        );
    }
    let inferred = if path.starts_with("builtin:") {
        Some(DataFormat::Csv)
    } else {
        match std::path::Path::new(&path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Some(DataFormat::Csv),
            Some("tsv") | Some("tab") => Some(DataFormat::Tsv),
            Some("jsonl") | Some("ndjson") => Some(DataFormat::Jsonl),
            _ => None,
        }
    };
    let format = match (d.format.as_deref(), inferred) {
        (Some(_), _) => c.choice("data.format", d.format.as_deref(), DataFormat::Csv, FORMATS),
        (None, Some(f)) => f,
        (None, None) => {
            if !path.is_empty() {
                c.err(
                    "data.format",
                    "(missing)",
                    format!(
                        "cannot infer the format of {path:?} from its extension: set csv, tsv or jsonl"
                    ),
                );
            }
            DataFormat::Csv
        }
    };
    let split = split(c, d.split.as_ref());
    let data_kind = match kind? {
        Kind::Forecast => {
            let why = "only for task.kind = \"classify\"";
            c.forbid("data.text_column", &d.text_column, why);
            c.forbid("data.label_column", &d.label_column, why);
            c.forbid("data.tokenizer", &d.tokenizer, why);
            c.forbid("data.lowercase", &d.lowercase, why);
            c.forbid("data.min_freq", &d.min_freq, why);
            c.forbid("data.max_vocab", &d.max_vocab, why);
            c.forbid("data.max_len", &d.max_len, why);
            c.forbid("data.labels", &d.labels, why);
            let features = c
                .required("data.features", &d.features, "the input column names")
                .cloned()
                .unwrap_or_default();
            if d.features.is_some() && features.is_empty() {
                c.err("data.features", "[]", "must name at least one column");
            }
            let targets = d.targets.clone().unwrap_or_else(|| features.clone());
            if d.targets.as_ref().is_some_and(|t| t.is_empty()) {
                c.err("data.targets", "[]", "must name at least one column");
            }
            for (field, cols) in [("data.features", &features), ("data.targets", &targets)] {
                let mut seen = std::collections::BTreeSet::new();
                for col in cols {
                    if !seen.insert(col) {
                        c.err(field, format!("{col:?}"), "column listed twice");
                    }
                }
            }
            if c.required("data.window", &d.window, "input window length in steps")
                .is_none()
            {
                // error recorded
            }
            DataKind::Series(SeriesSpec {
                features,
                targets,
                window: c.int("data.window", d.window, 1, 1, 1_000_000),
                stride: c.int("data.stride", d.stride, 1, 1, 1_000_000),
                normalize: c.choice(
                    "data.normalize",
                    d.normalize.as_deref(),
                    Normalization::Zscore,
                    NORMS,
                ),
                forecast_mode: c.choice(
                    "data.forecast_mode",
                    d.forecast_mode.as_deref(),
                    ForecastMode::Level,
                    FORECAST_MODES,
                ),
            })
        }
        Kind::Classify => {
            let why = "only for task.kind = \"forecast\"";
            c.forbid("data.features", &d.features, why);
            c.forbid("data.targets", &d.targets, why);
            c.forbid("data.window", &d.window, why);
            c.forbid("data.stride", &d.stride, why);
            c.forbid("data.normalize", &d.normalize, why);
            c.forbid("data.forecast_mode", &d.forecast_mode, why);
            if path.starts_with("builtin:") {
                c.err(
                    "data.path",
                    format!("{path:?}"),
                    "builtin datasets are numeric series (forecast only)",
                );
            }
            if let Some(labels) = &d.labels {
                let mut seen = std::collections::BTreeSet::new();
                if labels.len() < 2 {
                    c.err(
                        "data.labels",
                        format!("{labels:?}"),
                        "needs at least 2 classes",
                    );
                }
                for l in labels {
                    if !seen.insert(l) {
                        c.err("data.labels", format!("{l:?}"), "label listed twice");
                    }
                }
            }
            DataKind::Text(TextSpec {
                text_column: d.text_column.clone().unwrap_or_else(|| "text".into()),
                label_column: d.label_column.clone().unwrap_or_else(|| "label".into()),
                tokenizer: c.choice(
                    "data.tokenizer",
                    d.tokenizer.as_deref(),
                    TokenizerKind::Word,
                    TOKENIZERS,
                ),
                lowercase: d.lowercase.unwrap_or(true),
                min_freq: c.int("data.min_freq", d.min_freq, 1, 1, i64::MAX),
                max_vocab: c.int("data.max_vocab", d.max_vocab, 20_000, 3, 10_000_000),
                max_len: c.int("data.max_len", d.max_len, 256, 1, 1_000_000),
                labels: d.labels.clone(),
            })
        }
    };
    Some(DataSpec {
        path: PathBuf::from(path),
        format,
        split,
        kind: data_kind,
    })
}

fn optimizer(c: &mut Checker, o: &RawOptimizer) -> OptimizerSpec {
    const KINDS: &[(&str, u8)] = &[("sgd", 0), ("rmsprop", 1), ("adam", 2), ("adamw", 3)];
    let k = c.choice("train.optimizer.kind", o.kind.as_deref(), 2, KINDS);
    let pos = |x: f64| x > 0.0;
    let nonneg = |x: f64| x >= 0.0;
    let unit = |x: f64| (0.0..1.0).contains(&x);
    let default_lr = [0.01, 0.01, 0.001, 0.001][k as usize];
    let lr = c.float(
        "train.optimizer.lr",
        o.lr,
        default_lr,
        pos,
        "a finite number > 0",
    );
    let weight_decay = c.float(
        "train.optimizer.weight_decay",
        o.weight_decay,
        if k == 3 { 0.01 } else { 0.0 },
        nonneg,
        "a finite number >= 0",
    );
    let kind_name = KINDS[k as usize].0;
    let not_for = |c: &mut Checker, path: &str, v: &Option<f64>| {
        c.forbid(
            path,
            v,
            &format!("not a parameter of the {kind_name} optimizer"),
        );
    };
    match k {
        0 => {
            not_for(c, "train.optimizer.alpha", &o.alpha);
            not_for(c, "train.optimizer.eps", &o.eps);
            not_for(c, "train.optimizer.beta1", &o.beta1);
            not_for(c, "train.optimizer.beta2", &o.beta2);
            let momentum = c.float(
                "train.optimizer.momentum",
                o.momentum,
                0.0,
                unit,
                "in [0, 1)",
            );
            let nesterov = o.nesterov.unwrap_or(false);
            if nesterov && momentum == 0.0 {
                c.err(
                    "train.optimizer.nesterov",
                    true,
                    "requires train.optimizer.momentum > 0",
                );
            }
            OptimizerSpec::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            }
        }
        1 => {
            not_for(c, "train.optimizer.beta1", &o.beta1);
            not_for(c, "train.optimizer.beta2", &o.beta2);
            c.forbid(
                "train.optimizer.nesterov",
                &o.nesterov,
                "only the sgd optimizer has Nesterov momentum",
            );
            OptimizerSpec::Rmsprop {
                lr,
                alpha: c.float(
                    "train.optimizer.alpha",
                    o.alpha,
                    0.99,
                    |x| x > 0.0 && x < 1.0,
                    "in (0, 1)",
                ),
                eps: c.float(
                    "train.optimizer.eps",
                    o.eps,
                    1e-8,
                    pos,
                    "a finite number > 0",
                ),
                momentum: c.float(
                    "train.optimizer.momentum",
                    o.momentum,
                    0.0,
                    unit,
                    "in [0, 1)",
                ),
                weight_decay,
            }
        }
        _ => {
            not_for(c, "train.optimizer.alpha", &o.alpha);
            not_for(c, "train.optimizer.momentum", &o.momentum);
            c.forbid(
                "train.optimizer.nesterov",
                &o.nesterov,
                "only the sgd optimizer has Nesterov momentum",
            );
            let beta1 = c.float("train.optimizer.beta1", o.beta1, 0.9, unit, "in [0, 1)");
            let beta2 = c.float("train.optimizer.beta2", o.beta2, 0.999, unit, "in [0, 1)");
            let eps = c.float(
                "train.optimizer.eps",
                o.eps,
                1e-8,
                pos,
                "a finite number > 0",
            );
            if k == 2 {
                OptimizerSpec::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            } else {
                OptimizerSpec::Adamw {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            }
        }
    }
}

fn schedule(c: &mut Checker, s: &RawSchedule, lr: f64) -> ScheduleSpec {
    const KINDS: &[(&str, u8)] = &[("constant", 0), ("step", 1), ("cosine", 2)];
    let k = c.choice("train.schedule.kind", s.kind.as_deref(), 0, KINDS);
    let warmup_steps = c.int(
        "train.schedule.warmup_steps",
        s.warmup_steps,
        0,
        0,
        i64::MAX,
    ) as u64;
    let kind = match k {
        1 => {
            c.forbid(
                "train.schedule.min_lr",
                &s.min_lr,
                "only for kind = \"cosine\"",
            );
            if s.step_size.is_none() {
                c.err(
                    "train.schedule.step_size",
                    "(missing)",
                    "required for kind = \"step\": steps between decays",
                );
            }
            ScheduleKind::Step {
                step_size: c.int("train.schedule.step_size", s.step_size, 1, 1, i64::MAX) as u64,
                gamma: c.float(
                    "train.schedule.gamma",
                    s.gamma,
                    0.1,
                    |x| x > 0.0 && x <= 1.0,
                    "in (0, 1]",
                ),
            }
        }
        2 => {
            let why = "only for kind = \"step\"";
            c.forbid("train.schedule.step_size", &s.step_size, why);
            c.forbid("train.schedule.gamma", &s.gamma, why);
            ScheduleKind::Cosine {
                min_lr: c.float(
                    "train.schedule.min_lr",
                    s.min_lr,
                    0.0,
                    |x| x >= 0.0 && x <= lr,
                    &format!("in [0, train.optimizer.lr = {lr}]"),
                ),
            }
        }
        _ => {
            let why = "not a parameter of the constant schedule";
            c.forbid("train.schedule.step_size", &s.step_size, why);
            c.forbid("train.schedule.gamma", &s.gamma, why);
            c.forbid("train.schedule.min_lr", &s.min_lr, why);
            ScheduleKind::Constant
        }
    };
    ScheduleSpec { kind, warmup_steps }
}

fn train(c: &mut Checker, t: &RawTrain, kind: Option<Kind>, data: &Option<DataSpec>) -> TrainSpec {
    let optimizer = optimizer(c, &t.optimizer);
    let schedule = schedule(c, &t.schedule, optimizer.lr());
    let pos = |x: f64| x > 0.0;
    let clip = ClipSpec {
        norm: t
            .clip
            .norm
            .map(|v| c.float("train.clip.norm", Some(v), 1.0, pos, "a finite number > 0")),
        value: t
            .clip
            .value
            .map(|v| c.float("train.clip.value", Some(v), 1.0, pos, "a finite number > 0")),
    };
    let early_stopping = t.early_stopping.as_ref().map(|e| {
        let metric = c.choice(
            "train.early_stopping.metric",
            e.metric.as_deref(),
            MonitorMetric::ValLoss,
            METRICS,
        );
        let fits = match (kind, metric) {
            (Some(Kind::Forecast), MonitorMetric::ValAccuracy | MonitorMetric::ValF1) => {
                Some("forecast")
            }
            (Some(Kind::Classify), MonitorMetric::ValRmse | MonitorMetric::ValMae) => {
                Some("classify")
            }
            _ => None,
        };
        if let Some(task) = fits {
            c.err(
                "train.early_stopping.metric",
                format!("{:?}", e.metric.as_deref().unwrap_or("")),
                format!("is not reported by a {task} task"),
            );
        }
        if data.as_ref().is_some_and(|d| d.split.val == 0.0) {
            c.err(
                "train.early_stopping",
                "(set)",
                "needs a validation split: data.split.val must be > 0",
            );
        }
        EarlyStopping {
            metric,
            patience: c.int("train.early_stopping.patience", e.patience, 5, 1, 1_000_000) as u32,
            min_delta: c.float(
                "train.early_stopping.min_delta",
                e.min_delta,
                0.0,
                |x| x >= 0.0,
                "a finite number >= 0",
            ),
        }
    });
    TrainSpec {
        epochs: c.int("train.epochs", t.epochs, 10, 1, 1_000_000) as u32,
        batch_size: c.int("train.batch_size", t.batch_size, 32, 1, 1_000_000),
        max_steps: t
            .max_steps
            .map(|s| c.int("train.max_steps", Some(s), 1, 1, i64::MAX) as u64),
        optimizer,
        schedule,
        clip,
        early_stopping,
        threads: c.int("train.threads", t.threads, 1, 1, 1024),
    }
}

/// Number of entries in a model's layer list: optional input block, recurrent layers, head.
/// Must agree with the model crate's layer stack (its tests check this function).
pub fn layer_count(model: &ModelSpec, task: &TaskSpec) -> usize {
    let input_block = match task {
        TaskSpec::Classify { .. } => true,
        TaskSpec::Forecast { .. } => model.projection.is_some(),
    };
    usize::from(input_block) + model.layers + 1
}

fn parallel(c: &mut Checker, p: &RawParallel, train: &TrainSpec) -> ParallelSpec {
    let data = c.int("parallel.data", p.data, 1, 1, 4096);
    let pipeline = c.int("parallel.pipeline", p.pipeline, 1, 1, 4096);
    let microbatches = c.int("parallel.microbatches", p.microbatches, 1, 1, 1_000_000);
    let schedule = c.choice(
        "parallel.schedule",
        p.schedule.as_deref(),
        PipelineSchedule::Gpipe,
        PIPE_SCHEDULES,
    );
    let fusion_mb = c.float(
        "parallel.fusion_mb",
        p.fusion_mb,
        64.0,
        |x| (0.0..=4096.0).contains(&x),
        "in [0, 4096] MiB (0 disables fusion)",
    );
    if !train.batch_size.is_multiple_of(data) {
        c.err(
            "train.batch_size",
            train.batch_size,
            format!("must be divisible by parallel.data = {data} (it is the global batch)"),
        );
    } else if !(train.batch_size / data).is_multiple_of(microbatches) {
        c.err(
            "parallel.microbatches",
            microbatches,
            format!(
                "must divide the per-replica batch train.batch_size / parallel.data = {}",
                train.batch_size / data
            ),
        );
    }
    let stages = p.stages.as_ref().map(|stages| {
        if stages.len() != pipeline {
            c.err(
                "parallel.stages",
                format!("{stages:?}"),
                format!("must list exactly parallel.pipeline = {pipeline} stages"),
            );
        }
        let mut next = 0i64;
        for (s, layers) in stages.iter().enumerate() {
            if layers.is_empty() {
                c.err(
                    &format!("parallel.stages[{s}]"),
                    "[]",
                    "a stage needs at least one layer",
                );
            }
            for &l in layers {
                if l != next {
                    c.err(
                        &format!("parallel.stages[{s}]"),
                        format!("{layers:?}"),
                        format!("stages must be contiguous and in order: expected layer {next} next, found {l}"),
                    );
                    break;
                }
                next += 1;
            }
        }
        stages
            .iter()
            .map(|s| s.iter().map(|&l| l.max(0) as usize).collect())
            .collect()
    });
    ParallelSpec {
        data,
        pipeline,
        microbatches,
        schedule,
        stages,
        fusion_bytes: (fusion_mb * 1024.0 * 1024.0) as u64,
    }
}

/// Checks that need both the model and the task: the pipeline depth and explicit stages against
/// the exact layer count.
fn check_pipeline(spec: &JobSpec) -> Vec<FieldError> {
    let n = layer_count(&spec.model, &spec.task);
    let mut errors = Vec::new();
    if spec.parallel.pipeline > n {
        errors.push(FieldError {
            path: "parallel.pipeline".into(),
            value: spec.parallel.pipeline.to_string(),
            message: format!("must be at most the number of model layers ({n})"),
        });
    }
    if let Some(stages) = &spec.parallel.stages {
        let covered: usize = stages.iter().map(Vec::len).sum();
        if covered != n {
            errors.push(FieldError {
                path: "parallel.stages".into(),
                value: format!("{stages:?}"),
                message: format!(
                    "must cover every layer 0..{n} exactly once (the model has {n} layers)"
                ),
            });
        }
    }
    errors
}
