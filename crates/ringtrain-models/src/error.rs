//! Typed errors of model construction, stage execution and flat-buffer loading.

use crate::shape::BoundaryShape;

/// Everything that can go wrong when building a model, running a layer range on it or loading
/// parameters into it. Shape errors name the layer (index and name) a user needs to fix a stage
/// plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The architecture asked for does not fit the input or head kind.
    #[error("invalid model: {field} = {value}: {reason}")]
    InvalidSpec {
        /// Dotted path of the offending setting (`model.hidden`, `input.vocab`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// A Conv1d or attention setting does not fit (the path names the layer, e.g.
    /// `model.conv[1].kernel`).
    #[error("invalid model: {field} = {value}: {reason}")]
    InvalidLayer {
        /// Dotted path of the offending setting.
        field: String,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A layer range is empty, reversed or runs past the last layer.
    #[error("invalid layer range {start}..{end}: the model has {layers} layers")]
    Range {
        /// First layer of the range.
        start: usize,
        /// One past the last layer of the range.
        end: usize,
        /// Number of layers in the model.
        layers: usize,
    },
    /// The value entering a layer does not have the kind or width the layer expects.
    #[error("layer {layer} ({name}) expects input {expected} but got {got}")]
    Boundary {
        /// Index of the layer in the stack.
        layer: usize,
        /// Name of the layer (`lstm1`, `head`, ...).
        name: String,
        /// What the layer takes.
        expected: BoundaryShape,
        /// What it was given.
        got: String,
    },
    /// A flat parameter buffer does not have one value per model parameter.
    #[error("flat parameter buffer has {got} values but the model has {expected} parameters")]
    ParamCount {
        /// Parameters in the model.
        expected: usize,
        /// Values in the buffer.
        got: usize,
    },
}
