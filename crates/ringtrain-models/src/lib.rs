//! ringtrain's model zoo: recurrent networks (`rnn`, `lstm`, `gru`; uni- or bidirectional, any
//! depth) and their hybrids, built as a stack of layers — input block (token embedding or numeric
//! projection), optional Conv1d layers ([`conv`]), one layer per recurrent layer, optional
//! self-attention or Transformer encoder block ([`attention`]), head — that a pipeline can cut
//! into contiguous stages.
//!
//! The recurrent layers run as whole-sequence custom autodiff operations on the flex device
//! (one input GEMM for all timesteps, fused vectorised gate math, hand-written BPTT; see
//! [`recurrent`]) and as fused per-timestep cells on plain burn ops elsewhere
//! ([`RecurrentImpl::BurnOps`]); burn-nn's stock modules with the same weights serve as the reference
//! ([`reference`], [`RecurrentImpl::BurnNnReference`]). Padded batches (mask `[B, T]`, padding
//! at the end) give every sequence exactly its unpadded result. Parameters are drawn from a
//! ChaCha stream seeded by the job seed, and [`flat`] lays parameters and gradients out as one
//! `f32` buffer in visit order for the all-reduce.

pub mod attention;
pub mod conv;
mod decode;
pub mod error;
pub mod flat;
mod forward;
mod head;
mod init;
mod kernel;
pub mod loss;
pub mod model;
pub mod recurrent;
pub mod reference;
mod seq;
pub mod seq2seq;
mod shape;
pub mod stateful;

pub use attention::Attention;
pub use conv::Conv;
pub use error::ModelError;
pub use head::Head;
pub use kernel::CellState;
pub use model::{
    Batch, Boundary, BoundaryShape, ForwardCtx, HeadKind, InputKind, Inputs, Layer, LayerInfo,
    Model, RecurrentImpl,
};
pub use recurrent::{CellParams, Recurrent};
pub use reference::{ReferenceCell, ReferenceRecurrent};
pub use seq2seq::{Decoder, DecoderConfig, Hypothesis};
pub use stateful::RecurrentState;
