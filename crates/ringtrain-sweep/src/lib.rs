//! Hyperparameter search for ringtrain: the sweep spec (`SWEEP.toml`: a base job spec, a search
//! space over job spec field paths, an objective, an algorithm, a budget and a pruner), read in
//! two phases like the job spec ([`raw`] then [`validate()`], every error with its path); the
//! application of a point onto the base spec ([`trial_spec`], the result validated as any job
//! spec); and the algorithms as pure functions — [`suggest()`] (grid, random, TPE) of (seed,
//! trial index, finished trials, pending trials) and [`prune::decide`] (ASHA, median) of
//! reported per-epoch values. No IO beyond [`load`] reading the sweep and base files, no clock,
//! no async: the coordinator's sweep driver is the shell that stores and schedules.

pub mod apply;
pub mod error;
pub mod prune;
pub mod raw;
pub mod sample;
pub mod suggest;
pub mod tpe;
pub mod types;
pub mod validate;

pub use apply::{trial_name, trial_spec};
pub use error::{ApplyError, SweepError};
pub use prune::{Curve, Verdict, asha_rungs, decide};
pub use suggest::{Finished, History, Outcome, Pending, grid_size, suggest};
pub use types::*;
pub use validate::validate;

use ringtrain_spec::MAX_SPEC_FILE_BYTES;
use std::path::Path;

/// Parses and validates a sweep from TOML text whose base job spec is inline (`[job]`).
/// `origin` names the source in messages; `default_name` is the sweep name when it has none.
///
/// # Errors
/// [`SweepError::Syntax`] for malformed TOML, unknown keys and wrongly typed values (with line,
/// column and field path); [`SweepError::Invalid`] for invalid values.
pub fn parse_str(text: &str, origin: &str, default_name: &str) -> Result<SweepSpec, SweepError> {
    let raw = parse_raw(text, origin)?;
    validate(raw, default_name, None)
}

fn parse_raw(text: &str, origin: &str) -> Result<raw::RawSweep, SweepError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| toml_error(origin, text, &e, "(document)"))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(origin, text, e.inner(), &path)
    })
}

/// Reads a sweep file (TOML). A `base = "job.toml"` is read relative to the sweep file's
/// directory and put inline as `[job]`; the base file's directory becomes
/// [`SweepSpec::base_dir`] (the sweep file's, for an inline `[job]`). The sweep name defaults to
/// the file stem. Both files are bounded like job spec files (regular files, at most 1 MiB).
///
/// # Errors
/// [`SweepError::Io`] when a file cannot be read; else as [`parse_str`].
pub fn load(path: &Path) -> Result<SweepSpec, SweepError> {
    let text = read_bounded(path, "sweep spec")?;
    let origin = path.display().to_string();
    let mut raw = parse_raw(&text, &origin)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut base_dir = dir.clone();
    if let (Some(base), None) = (raw.base.clone(), &raw.job) {
        let base_path = dir.join(&base);
        let base_text = read_bounded(&base_path, "base job spec")?;
        let table: toml::Table = base_text.parse().map_err(|e: toml::de::Error| {
            toml_error(
                &base_path.display().to_string(),
                &base_text,
                &e,
                "(document)",
            )
        })?;
        raw.base = None;
        raw.job = Some(table);
        base_dir = base_path.parent().map(Path::to_path_buf).unwrap_or(dir);
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("sweep");
    validate(raw, stem, Some(base_dir))
}

/// The sweep as one self-contained TOML document (base job spec inline as `[job]`), which is
/// what is submitted to and stored by the coordinator; [`parse_str`] reads it back to an equal
/// spec (without `base_dir`).
pub fn to_toml(spec: &SweepSpec) -> String {
    let mut doc = toml::Table::new();
    doc.insert("name".into(), spec.name.clone().into());
    doc.insert("seed".into(), toml::Value::Integer(spec.seed as i64));
    doc.insert("algorithm".into(), spec.algorithm.name().into());
    doc.insert(
        "max_concurrent".into(),
        toml::Value::Integer(i64::from(spec.max_concurrent)),
    );
    let mut objective = toml::Table::new();
    let metric = serde_json::to_value(spec.objective.metric)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    objective.insert("metric".into(), metric.into());
    objective.insert(
        "direction".into(),
        match spec.objective.direction {
            Direction::Min => "min",
            Direction::Max => "max",
        }
        .into(),
    );
    doc.insert("objective".into(), objective.into());
    let mut budget = toml::Table::new();
    if let Some(t) = spec.budget.trials {
        budget.insert("trials".into(), toml::Value::Integer(i64::from(t)));
    }
    if let Some(w) = spec.budget.wall_time_s {
        budget.insert("wall_time_s".into(), toml::Value::Integer(w as i64));
    }
    doc.insert("budget".into(), budget.into());
    let params: Vec<toml::Value> = spec
        .params
        .iter()
        .map(|p| {
            let mut t = toml::Table::new();
            t.insert("path".into(), p.path.clone().into());
            match &p.dist {
                Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                    let kind = if matches!(p.dist, Distribution::Uniform { .. }) {
                        "uniform"
                    } else {
                        "log_uniform"
                    };
                    t.insert("kind".into(), kind.into());
                    t.insert("low".into(), (*low).into());
                    t.insert("high".into(), (*high).into());
                }
                Distribution::Int { low, high, log } => {
                    t.insert("kind".into(), "int".into());
                    t.insert("low".into(), (*low).into());
                    t.insert("high".into(), (*high).into());
                    t.insert("log".into(), (*log).into());
                }
                Distribution::Choice(values) => {
                    t.insert("kind".into(), "choice".into());
                    t.insert("values".into(), toml::Value::Array(values.clone()));
                }
            }
            toml::Value::Table(t)
        })
        .collect();
    doc.insert("param".into(), toml::Value::Array(params));
    if let Some(p) = spec.pruner {
        let mut t = toml::Table::new();
        match p {
            Pruner::Asha {
                grace_epochs,
                reduction_factor,
                max_epochs,
            } => {
                t.insert("kind".into(), "asha".into());
                t.insert("grace_epochs".into(), i64::from(grace_epochs).into());
                t.insert(
                    "reduction_factor".into(),
                    i64::from(reduction_factor).into(),
                );
                t.insert("max_epochs".into(), i64::from(max_epochs).into());
            }
            Pruner::Median {
                startup_trials,
                warmup_epochs,
            } => {
                t.insert("kind".into(), "median".into());
                t.insert("startup_trials".into(), i64::from(startup_trials).into());
                t.insert("warmup_epochs".into(), i64::from(warmup_epochs).into());
            }
        }
        doc.insert("pruner".into(), t.into());
    }
    doc.insert("job".into(), spec.base.clone().into());
    toml::to_string(&doc).unwrap_or_default()
}

fn read_bounded(path: &Path, what: &'static str) -> Result<String, SweepError> {
    let io = |error| SweepError::Io {
        what,
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_SPEC_FILE_BYTES {
        return Err(io(std::io::Error::other(format!(
            "{} bytes; a spec file may have at most {MAX_SPEC_FILE_BYTES} bytes",
            meta.len()
        ))));
    }
    std::fs::read_to_string(path).map_err(io)
}

fn toml_error(origin: &str, text: &str, e: &toml::de::Error, path: &str) -> SweepError {
    let origin = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{origin}:{line}:{col}")
        }
        None => origin.to_string(),
    };
    SweepError::Syntax {
        origin,
        path: path.to_string(),
        message: e.message().to_string(),
    }
}
