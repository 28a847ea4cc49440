//! The measurement loop behind `ringtrain bench allreduce`, kept in the library so the CLI and the
//! test helper share it: per size, warm-up calls, then timed all-reduces each started right after a
//! barrier; the time of an iteration is the maximum over ranks (nccl-tests convention), obtained by
//! one final all-reduce(max) of the per-iteration times.

use crate::comm::Communicator;
use crate::error::Result;
use crate::types::ReduceOp;
use std::time::Instant;

/// Timings of one buffer size.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Buffer size in bytes (f32 elements × 4).
    pub bytes: u64,
    /// Seconds per timed iteration, maximum over ranks.
    pub seconds: Vec<f64>,
}

impl BenchResult {
    /// Median of the iteration times in seconds (0 when there are none).
    pub fn median(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        match s.len() {
            0 => 0.0,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    /// Algorithm bandwidth at the median time, bytes/s.
    pub fn algbw(&self) -> f64 {
        let t = self.median();
        if t > 0.0 { self.bytes as f64 / t } else { 0.0 }
    }

    /// Bus bandwidth at the median time, bytes/s: algbw × 2(N−1)/N.
    pub fn busbw(&self, world: u32) -> f64 {
        let n = f64::from(world.max(1));
        self.algbw() * 2.0 * (n - 1.0) / n
    }
}

/// Runs the all-reduce benchmark on this rank (every rank calls it with the same arguments) and
/// returns one result per size, identical on every rank. Errors as [`Communicator::all_reduce`].
pub async fn measure(
    comm: &mut Communicator,
    sizes_bytes: &[u64],
    iters: usize,
    warmup: usize,
) -> Result<Vec<BenchResult>> {
    let mut results = Vec::with_capacity(sizes_bytes.len());
    for &bytes in sizes_bytes {
        let elements = (bytes / 4) as usize;
        let mut buf: Vec<f32> = (0..elements).map(|i| (i % 7) as f32).collect();
        for _ in 0..warmup {
            comm.all_reduce(&mut buf, ReduceOp::Sum).await?;
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            comm.barrier().await?;
            let t0 = Instant::now();
            comm.all_reduce(&mut buf, ReduceOp::Sum).await?;
            times.push(t0.elapsed().as_secs_f32());
        }
        comm.all_reduce(&mut times, ReduceOp::Max).await?;
        results.push(BenchResult {
            bytes: elements as u64 * 4,
            seconds: times.into_iter().map(f64::from).collect(),
        });
    }
    Ok(results)
}
