//! Collective communication for ringtrain: a [`Communicator`] per group of ranks with all-reduce
//! (sum, mean, max, min), broadcast, all-gather, reduce-scatter, barrier and point-to-point
//! send/recv, written once against the [`Transport`] trait and run over in-process channels
//! ([`InProcTransport`]), gRPC ([`GrpcTransport`]) or, behind the `nccl` feature, NCCL.
//!
//! Large all-reduces use the bandwidth-optimal ring (reduce-scatter then all-gather, 2(N−1) steps,
//! pipelined in ~1 MiB pieces; the schedule is the pure function [`schedule::ring_plan`]); small ones
//! a one-round direct exchange. Every message carries the caller's [`Fingerprint`], every call has
//! a deadline, and a lost peer fails every surviving rank with an error naming it: a collective
//! never hangs silently. The library knows nothing of tensors frameworks: it moves `f32` slices.

mod algo;
pub mod alloc;
pub mod bench;
pub mod codec;
pub mod comm;
mod config;
mod ctx;
pub mod error;
pub mod fusion;
pub mod metrics;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod rendezvous;
mod ring;
pub mod schedule;
pub mod transport;
pub mod types;

pub use comm::{CommConfig, Communicator};
pub use error::{CollectiveError, Result};
pub use metrics::{MetricsSnapshot, OpStats};
pub use transport::grpc::{GrpcConfig, GrpcTransport};
pub use transport::inproc::InProcTransport;
pub use transport::{Message, Transport};
pub use types::{Fingerprint, OpKind, ReduceOp, WireDType};
