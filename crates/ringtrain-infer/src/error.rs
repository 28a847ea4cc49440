//! Why a file cannot be loaded or an input not run.

use alloc::string::String;

/// Errors of loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The bytes are not a valid safetensors file.
    #[error("not a valid safetensors file: {0}")]
    Format(safetensors::SafeTensorError),
    /// A tensor the architecture needs is missing.
    #[error("tensor {0:?} is missing")]
    Missing(String),
    /// A tensor has the wrong dtype or shape.
    #[error("tensor {name:?}: {reason}")]
    Tensor {
        /// Its key.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The file holds a part of a model this runtime does not run.
    #[error(
        "{0} is not supported by ringtrain-infer (numeric input, rnn/lstm/gru layers and a forecast head only)"
    )]
    Unsupported(String),
    /// The `ringtrain.spec`, `ringtrain.fitted` or `ringtrain.residuals` metadata is
    /// unreadable (the message starts with the key).
    #[error("metadata {0}")]
    Metadata(String),
    /// An input has the wrong length.
    #[error("{what}: expected {expected} values, got {got}")]
    Input {
        /// Which input.
        what: &'static str,
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// An argument is out of range.
    #[error("{0}")]
    Argument(String),
}
