//! ringtrain's small inference runtime for devices next to the sensor: it reads the
//! safetensors file `ringtrain export` writes (PyTorch's layout: `rnn.weight_ih_l{k}` …, see
//! `ringtrain_train::export`) and runs the forecaster it holds, either over a whole sequence
//! ([`Network::run`]) or one time step at a time with the recurrent state carried inside
//! ([`Stream::step`], no allocation per step). It has no burn, no tokio and no gRPC; without
//! the default `std` feature it is `no_std` + `alloc`.
//!
//! Supported: numeric input, an optional input projection, a stack of `rnn` (tanh or relu),
//! `lstm` or `gru` layers (bidirectional ones in [`Network::run`] only: a backward direction
//! needs the whole sequence), and the forecast head on the last step. Files with an embedding,
//! Conv1d layers, attention or a decoder are refused by name. The network reads and writes
//! the model's normalized units; [`Network::scaling`] maps raw sensor rows in and forecasts
//! out with the normalizer stored in the file (level and delta forecast modes), and a
//! [`Detector`] flags rows whose one-step-ahead residual is beyond `K` standard deviations of
//! the validation residuals stored at export ([`Network::residuals`]).
//!
//! Everything read is untrusted: the safetensors reader checks the header and offsets, and
//! every tensor's dtype and shape is checked against the architecture before it is used.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

mod anomaly;
mod cell;
mod error;
mod network;
mod scaling;
mod stream;

pub use anomaly::{Detector, Residuals, Score};
pub use cell::CellKind;
pub use error::InferError;
pub use network::Network;
pub use scaling::Scaling;
pub use stream::Stream;
