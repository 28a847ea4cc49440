//! Errors of reading a job spec. Every message names where the problem is: the file (and line,
//! for syntax errors) and the field path, so a user never has to guess.

use std::fmt;
use std::path::PathBuf;

/// Longest quote of user or file content in an error message, in characters.
pub const SNIPPET_CHARS: usize = 80;

/// A bounded, escaped quote of `s` for an error message: control characters (terminal escapes
/// included) are escaped and anything past [`SNIPPET_CHARS`] characters is cut, with the total
/// length said, so an error never echoes a whole file line or cell.
pub fn snippet(s: &str) -> String {
    let mut out = String::new();
    for (chars, ch) in s.chars().enumerate() {
        if chars == SNIPPET_CHARS {
            out.push_str(&format!("… ({} characters in all)", s.chars().count()));
            return out;
        }
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

/// One invalid field: its dotted path, the offending value as written, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `train.optimizer.lr` or `parallel.stages[1]`.
    pub path: String,
    /// The value found (`(missing)` for an absent required field).
    pub value: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.path, self.value, self.message)
    }
}

/// Why a spec could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("cannot read job spec {path}: {error}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// The document is not valid TOML/JSON, has an unknown key, or a value of the wrong type.
    #[error("{origin}: {path}: {message}")]
    Syntax {
        /// File name (or `<toml>`/`<json>` for in-memory text), with `:line:column` when known.
        origin: String,
        /// Dotted path of the field where parsing failed (`.` for the document itself).
        path: String,
        /// Parser message.
        message: String,
    },
    /// The document parsed but one or more values are invalid.
    #[error("invalid job spec:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl SpecError {
    /// The field errors of an [`SpecError::Invalid`] (empty for other kinds).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            SpecError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}
