//! Phase two of reading a spec: check every value of a [`RawSpec`] and build the [`JobSpec`].
//! All problems are collected (not just the first), each naming its field path, the bad value
//! and what is allowed, so a user fixes a spec in one round trip. One submodule per spec section.

mod data;
mod init_from;
mod model;
mod parallel;
mod train;

use crate::error::{FieldError, SpecError};
use crate::raw::*;
use crate::types::*;
use std::fmt::Display;
use std::path::PathBuf;

/// Collects field errors while building the validated spec.
#[derive(Default)]
pub(crate) struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    pub(crate) fn err(&mut self, path: &str, value: impl Display, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            value: crate::error::snippet(&value.to_string()),
            message: message.into(),
        });
    }

    /// An integer in `min..=max` (or the default when absent).
    pub(crate) fn int(
        &mut self,
        path: &str,
        v: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> usize {
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
    pub(crate) fn float(
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
    pub(crate) fn choice<T: Copy>(
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
    pub(crate) fn forbid<V: std::fmt::Debug>(&mut self, path: &str, v: &Option<V>, why: &str) {
        if let Some(v) = v {
            self.err(path, format!("{v:?}"), format!("not allowed: {why}"));
        }
    }

    pub(crate) fn required<'a, V>(
        &mut self,
        path: &str,
        v: &'a Option<V>,
        what: &str,
    ) -> Option<&'a V> {
        if v.is_none() {
            self.err(path, "(missing)", format!("required: {what}"));
        }
        v.as_ref()
    }
}

/// The kinds as validation names them.
pub(crate) use crate::types::TaskKind as Kind;

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
    } else if name.len() > MAX_NAME_LEN {
        c.err(
            "name",
            format!("{} characters", name.len()),
            format!("must be at most {MAX_NAME_LEN} characters"),
        );
    } else if name == "." || name == ".." {
        c.err(
            "name",
            format!("{name:?}"),
            "must not be `.` or `..` (it names the default checkpoint directory runs/<name>)",
        );
    }
    let seed = raw.seed.unwrap_or(42);

    let raw_task = raw.task.clone().unwrap_or_default();
    let kind = match raw_task.kind.as_deref() {
        None => {
            c.err(
                "task.kind",
                "(missing)",
                format!("required: {}", kind_names(" | ")),
            );
            None
        }
        Some(name) if Kind::from_name(name).is_some() => Kind::from_name(name),
        Some(other) => {
            c.err(
                "task.kind",
                format!("{other:?}"),
                format!("must be one of {}", kind_names(", ")),
            );
            None
        }
    };

    let model = model::model(&mut c, raw.model.as_ref(), kind);
    let raw_data = raw.data.clone().unwrap_or_default();
    let task = model::task(&mut c, &raw_task, &raw_data, kind);
    let data = data::data(&mut c, raw.data.as_ref(), kind);
    if let Some(TaskSpec::Forecast {
        season, series: s, ..
    }) = &task
        && s.forecast_mode == ForecastMode::SeasonalDelta
    {
        match season {
            None => c.err(
                "data.forecast_mode",
                "\"seasonal_delta\"",
                "needs task.season (the seasonal-naive value it is relative to)",
            ),
            Some(m) if s.window < *m => c.err(
                "data.window",
                s.window,
                format!(
                    "must be at least task.season = {m} with forecast_mode = \"seasonal_delta\" \
                     (the value one season back must be inside the window)"
                ),
            ),
            Some(_) => {}
        }
    }
    let train = train::train(&mut c, &raw.train, kind, &data);
    let parallel = parallel::parallel(&mut c, &raw.parallel, &train);
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
        max_restarts: c.int(
            "checkpoint.max_restarts",
            raw.checkpoint.max_restarts,
            0,
            0,
            i64::from(MAX_RESTARTS),
        ) as u32,
        record_samples: raw.checkpoint.record_samples.unwrap_or(false),
    };
    match raw.checkpoint.dir.as_deref() {
        Some("") => c.err("checkpoint.dir", "\"\"", "must be a non-empty path"),
        Some(d) if crate::sandbox::is_root_like(std::path::Path::new(d)) => c.err(
            "checkpoint.dir",
            format!("{d:?}"),
            "must name a directory below the file-system root or the base directory \
             (a run writes and replaces files there)",
        ),
        _ => {}
    }
    let limits = limits(&mut c, &raw.limits);
    let init_from = init_from::init_from(&mut c, raw.init_from.as_ref(), train.epochs);

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
                limits,
                init_from,
            };
            let mut errors = parallel::check_pipeline(&spec);
            errors.extend(model::check_language_model(&spec));
            errors.extend(crate::budget::check_budget(&spec, &spec.limits));
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

/// Every `task.kind` name, in [`TaskKind::ALL`]'s order, joined by `sep` (so a new kind is
/// listed in the messages without editing them).
fn kind_names(sep: &str) -> String {
    Kind::ALL.map(Kind::name).join(sep)
}

/// Re-checks a [`JobSpec`] that did not come through [`validate`] — one deserialized from a
/// checkpoint header — before anything is sized by it: the name, every size field's range (the
/// same bounds validation applies), the cross-field checks and the budget against `limits`.
///
/// # Errors
/// [`SpecError::Invalid`] listing every problem, each naming its field path.
pub fn check_validated(spec: &JobSpec, limits: &LimitsSpec) -> Result<(), SpecError> {
    let mut c = Checker::default();
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= MAX_NAME_LEN
        && spec
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !name_ok {
        c.err(
            "name",
            format!("{:?}", spec.name),
            format!("must be 1..={MAX_NAME_LEN} letters, digits, '-', '_' or '.'"),
        );
    }
    fn range(c: &mut Checker, path: &str, v: usize, min: usize, max: usize) {
        if v < min || v > max {
            c.err(path, v, format!("must be an integer in {min}..={max}"));
        }
    }
    let m = &spec.model;
    range(&mut c, "model.layers", m.layers, 1, 64);
    range(&mut c, "model.hidden", m.hidden, 1, 65_536);
    range(&mut c, "model.embedding_dim", m.embedding_dim, 1, 65_536);
    if let Some(p) = m.projection {
        range(&mut c, "model.projection", p, 1, 65_536);
    }
    for (i, conv) in m.conv.iter().enumerate() {
        range(
            &mut c,
            &format!("model.conv[{i}].channels"),
            conv.channels,
            1,
            65_536,
        );
        range(
            &mut c,
            &format!("model.conv[{i}].kernel"),
            conv.kernel,
            1,
            4096,
        );
        range(
            &mut c,
            &format!("model.conv[{i}].stride"),
            conv.stride,
            1,
            conv.kernel.max(1),
        );
    }
    let width = m.hidden * if m.bidirectional { 2 } else { 1 };
    if let Some(a) = &m.attention {
        range(
            &mut c,
            "model.attention.heads",
            a.heads,
            1,
            4096.min(width.max(1)),
        );
        if a.heads == 0 || !width.is_multiple_of(a.heads) {
            c.err(
                "model.attention.heads",
                a.heads,
                "must divide the recurrent output width",
            );
        }
        if a.kind == AttentionKind::Transformer {
            range(&mut c, "model.attention.ff_hidden", a.ff_hidden, 1, 262_144);
        }
    }
    match &spec.task {
        TaskSpec::Forecast {
            horizon, season, ..
        } => {
            range(&mut c, "task.horizon", *horizon, 1, 100_000);
            if let Some(s) = season {
                range(&mut c, "task.season", *s, 1, 1_000_000);
            }
        }
        TaskSpec::LanguageModel { bptt, .. } => range(&mut c, "task.bptt", *bptt, 1, 100_000),
        TaskSpec::Seq2seq { beam_width, .. } => {
            range(&mut c, "task.beam_width", *beam_width, 1, 1024)
        }
        TaskSpec::Classify { .. } => {}
    }
    match &spec.task {
        TaskSpec::Forecast { series: s, .. } => {
            range(&mut c, "data.window", s.window, 1, 1_000_000);
            range(&mut c, "data.stride", s.stride, 1, 1_000_000);
            range(&mut c, "data.features", s.features.len(), 1, 65_536);
            range(&mut c, "data.targets", s.targets.len(), 1, 65_536);
        }
        TaskSpec::Classify { text: t, .. } => {
            range(&mut c, "data.max_vocab", t.max_vocab, 3, 10_000_000);
            range(&mut c, "data.max_len", t.max_len, 1, 1_000_000);
        }
        TaskSpec::Seq2seq { pairs: p, .. } => {
            range(&mut c, "data.max_vocab", p.max_vocab, 5, 10_000_000);
            range(&mut c, "data.max_source_len", p.max_source_len, 1, 100_000);
            range(&mut c, "data.max_target_len", p.max_target_len, 1, 100_000);
        }
        TaskSpec::LanguageModel { corpus: k, .. } => {
            range(&mut c, "data.max_vocab", k.max_vocab, 3, 10_000_000)
        }
    }
    range(
        &mut c,
        "train.batch_size",
        spec.train.batch_size,
        1,
        1_000_000,
    );
    range(&mut c, "train.threads", spec.train.threads, 1, 1024);
    range(&mut c, "parallel.data", spec.parallel.data, 1, 4096);
    range(&mut c, "parallel.pipeline", spec.parallel.pipeline, 1, 4096);
    if let Some(e) = spec.parallel.elastic {
        let batch = spec.train.batch_size;
        if e.min == 0
            || e.max < e.min
            || e.max > 4096
            || e.commit_every == 0
            || !batch.is_multiple_of(e.min)
            || !batch.is_multiple_of(e.max)
            || spec.parallel.pipeline != 1
        {
            c.err(
                "parallel.elastic",
                format!("{e:?}"),
                "must have 1 <= min <= max <= 4096 dividing train.batch_size, commit_every >= 1 \
                 and parallel.pipeline = 1",
            );
        }
    }
    range(
        &mut c,
        "parallel.microbatches",
        spec.parallel.microbatches,
        1,
        1_000_000,
    );
    if crate::sandbox::is_root_like(&spec.checkpoint.dir) {
        c.err(
            "checkpoint.dir",
            format!("{:?}", spec.checkpoint.dir),
            "must name a directory below the file-system root or the base directory",
        );
    }
    let mut errors = c.errors;
    if errors.is_empty() {
        errors.extend(parallel::check_pipeline(spec));
        errors.extend(model::check_language_model(spec));
        errors.extend(crate::budget::check_budget(spec, limits));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SpecError::Invalid(errors))
    }
}

/// Longest job name: it becomes a directory name and is printed in tables and logs.
pub const MAX_NAME_LEN: usize = 128;

/// `[limits]`: each key optional, defaults from [`LimitsSpec`]; sizes are given in MiB.
fn limits(c: &mut Checker, l: &RawLimits) -> LimitsSpec {
    let d = LimitsSpec::default();
    let mib = |x: usize| (x as u64) << 20;
    LimitsSpec {
        max_parameters: c.int(
            "limits.max_parameters",
            l.max_parameters,
            d.max_parameters as i64,
            1,
            1 << 40,
        ) as u64,
        max_memory_bytes: mib(c.int(
            "limits.max_memory_mb",
            l.max_memory_mb,
            (d.max_memory_bytes >> 20) as i64,
            1,
            1 << 30,
        )),
        max_vocab: c.int(
            "limits.max_vocab",
            l.max_vocab,
            d.max_vocab as i64,
            3,
            1 << 32,
        ) as u64,
        max_data_bytes: mib(c.int(
            "limits.max_data_mb",
            l.max_data_mb,
            (d.max_data_bytes >> 20) as i64,
            1,
            1 << 30,
        )),
    }
}

/// Number of entries in a model's layer list: optional input block, one per Conv1d layer,
/// recurrent layers, optional attention block, head (for seq2seq: the decoder). Must agree with the model crate's layer
/// stack (its tests check this function).
pub fn layer_count(model: &ModelSpec, task: &TaskSpec) -> usize {
    let input_block = match task {
        TaskSpec::Classify { .. } => true,
        TaskSpec::Forecast { .. } => model.projection.is_some(),
        TaskSpec::Seq2seq { .. } => true,
        TaskSpec::LanguageModel { .. } => true,
    };
    usize::from(input_block)
        + model.conv.len()
        + model.layers
        + usize::from(model.attention.is_some())
        + 1
}
