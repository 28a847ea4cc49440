//! The shape of a value between layers with symbolic batch and length ([`BoundaryShape`]),
//! below the model (which computes it) and the errors (which report it).

use std::fmt;

/// Shape of a [`Boundary`](crate::Boundary) with symbolic batch `B` and length `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryShape {
    /// `[B, T]` token ids.
    Tokens,
    /// `[B, T, features]`.
    Seq {
        /// Values per step.
        features: usize,
    },
    /// `[B, width]`.
    Out {
        /// Values per sample.
        width: usize,
    },
}

impl fmt::Display for BoundaryShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundaryShape::Tokens => write!(f, "tokens [B, T]"),
            BoundaryShape::Seq { features } => write!(f, "seq [B, T, {features}]"),
            BoundaryShape::Out { width } => write!(f, "out [B, {width}]"),
        }
    }
}
