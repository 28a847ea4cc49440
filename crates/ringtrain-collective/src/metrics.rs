//! Per-communicator counters as a plain snapshot struct; an exporter (Prometheus, logs) reads
//! [`crate::Communicator::metrics`] and owns the formatting.

use crate::types::OpKind;

/// Counters of one operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpStats {
    /// Completed calls.
    pub ops: u64,
    /// Bytes of caller data handled (elements × 4), summed over calls.
    pub bytes: u64,
    /// Wall-clock seconds spent in the calls.
    pub seconds: f64,
    /// Bus bandwidth of the most recent call in bytes/s (nccl-tests convention: all-reduce
    /// algbw × 2(N−1)/N, all-gather and reduce-scatter × (N−1)/N, others × 1); 0 for empty calls.
    pub last_busbw: f64,
}

/// Counters of one communicator, by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// `all_reduce` (fused calls count once per fusion buffer).
    pub all_reduce: OpStats,
    /// `broadcast`.
    pub broadcast: OpStats,
    /// `all_gather`.
    pub all_gather: OpStats,
    /// `reduce_scatter`.
    pub reduce_scatter: OpStats,
    /// `barrier`.
    pub barrier: OpStats,
    /// `send` and `recv`.
    pub point_to_point: OpStats,
    /// Calls that failed (the communicator refuses further calls after the first).
    pub failures: u64,
}

impl MetricsSnapshot {
    pub(crate) fn record(&mut self, op: OpKind, bytes: u64, seconds: f64, world: usize) {
        let n = world.max(1) as f64;
        let factor = match op {
            OpKind::AllReduce => 2.0 * (n - 1.0) / n,
            OpKind::AllGather | OpKind::ReduceScatter => (n - 1.0) / n,
            _ => 1.0,
        };
        let stats = match op {
            OpKind::AllReduce => &mut self.all_reduce,
            OpKind::Broadcast => &mut self.broadcast,
            OpKind::AllGather => &mut self.all_gather,
            OpKind::ReduceScatter => &mut self.reduce_scatter,
            OpKind::Barrier => &mut self.barrier,
            OpKind::Send => &mut self.point_to_point,
        };
        stats.ops += 1;
        stats.bytes += bytes;
        stats.seconds += seconds;
        stats.last_busbw = if seconds > 0.0 {
            bytes as f64 / seconds * factor
        } else {
            0.0
        };
    }

    /// Sum over all operations (`last_busbw` is that of all-reduce).
    pub fn total(&self) -> OpStats {
        let all = [
            self.all_reduce,
            self.broadcast,
            self.all_gather,
            self.reduce_scatter,
            self.barrier,
            self.point_to_point,
        ];
        OpStats {
            ops: all.iter().map(|s| s.ops).sum(),
            bytes: all.iter().map(|s| s.bytes).sum(),
            seconds: all.iter().map(|s| s.seconds).sum(),
            last_busbw: self.all_reduce.last_busbw,
        }
    }
}
