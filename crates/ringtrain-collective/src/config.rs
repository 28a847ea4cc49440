//! The tuning of a communicator ([`CommConfig`]), below every module that reads it (the
//! communicator, the call drivers, NCCL) so none of them imports another for it.

use crate::types::WireDType;
use std::time::Duration;

/// Tuning of a communicator. All ranks of a group must use the same values for the size-based
/// choices (`small_bytes`, `piece_bytes`, `wire_dtype`, `fusion_bytes`).
#[derive(Debug, Clone, PartialEq)]
pub struct CommConfig {
    /// Every call fails with [`CollectiveError::Timeout`](crate::CollectiveError::Timeout) after this long. Default 60 s.
    pub deadline: Duration,
    /// A call running longer than this logs (warn) which ranks it waits for, then again every
    /// `stall_after`. Default 10 s.
    pub stall_after: Duration,
    /// Buffers of at most this many wire bytes take the latency-optimal direct exchange instead of
    /// the ring. Default 64 KiB.
    pub small_bytes: usize,
    /// Wire bytes per message; chunks are cut into pieces of this size and pipelined. Default 1 MiB.
    pub piece_bytes: usize,
    /// Element encoding on the wire (accumulation is always f32). Default f32.
    pub wire_dtype: WireDType,
    /// Fusion buffer size for [`Communicator::all_reduce_fused`](crate::Communicator::all_reduce_fused); 0 disables fusion. Default 64 MiB.
    pub fusion_bytes: usize,
}

impl Default for CommConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            stall_after: Duration::from_secs(10),
            small_bytes: 64 << 10,
            piece_bytes: 1 << 20,
            wire_dtype: WireDType::F32,
            fusion_bytes: 64 << 20,
        }
    }
}
