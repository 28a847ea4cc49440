//! Errors of reading a sweep file and of turning a point of its search space into a job spec.
//! Like the job spec's, every message names where the problem is: the file (and line), the field
//! path (`param[2].high`) or the parameter and value that produced an invalid job spec.

use ringtrain_spec::{FieldError, SpecError};
use std::path::PathBuf;

/// Why a sweep spec could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The sweep file (or the base job spec it names) could not be read.
    #[error("cannot read {what} {path}: {error}")]
    Io {
        /// `sweep spec` or `base job spec`.
        what: &'static str,
        /// File that failed.
        path: PathBuf,
        /// Underlying error; part of the message, so not also the `source()`.
        error: std::io::Error,
    },
    /// The document is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{origin}: {path}: {message}")]
    Syntax {
        /// File name with `:line:column` when known.
        origin: String,
        /// Dotted path of the field where parsing failed.
        path: String,
        /// Parser message.
        message: String,
    },
    /// The document parsed but one or more values are invalid (the base job spec's own errors
    /// included, with their paths under `job.`).
    #[error("invalid sweep spec:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl SweepError {
    /// The field errors of a [`SweepError::Invalid`] (empty for other kinds).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            SweepError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

/// Why a point of the search space does not give a valid job spec.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The parameter's path cannot be set in the base job spec (it crosses a value that is not
    /// a table, or indexes past an array's end).
    #[error("param[{index}] {path}: {message}")]
    Path {
        /// Index of the parameter in the sweep's `[[param]]` list.
        index: usize,
        /// Its dotted field path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The job spec with the point's values is invalid; `point` lists every parameter's value.
    #[error("the search point {point} gives an invalid job spec: {error}")]
    Spec {
        /// The point as `path = value` pairs.
        point: String,
        /// The job spec's own error (field paths of the job spec).
        error: SpecError,
    },
}
