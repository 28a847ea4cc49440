//! The trainer's [`Group`] over a collective [`Communicator`]: training runs on a blocking thread
//! and drives the async communicator through a runtime [`Handle`], one call at a time.
//!
//! Gradients (with the trainer's per-step scalars appended as a second tensor) go through the
//! fused all-reduce, so they travel as one buffer up to the spec's fusion threshold. f64 values
//! (metric sums, parameter checksums) travel bit-exactly through an all-gather, each as four
//! 16-bit pieces — integers that every wire encoding of an f32 carries exactly — and are added
//! in rank order on every rank, so every rank computes the same f64 sums.

use ringtrain_collective::{CollectiveError, Communicator, ReduceOp};
use ringtrain_train::{Group, GroupError};
use tokio::runtime::Handle;

/// One rank's [`Group`] over a communicator.
#[derive(Debug)]
pub struct CommGroup {
    comm: Communicator,
    handle: Handle,
}

impl CommGroup {
    /// Wraps `comm`; its calls run on `handle`'s runtime. Call the [`Group`] methods only from a
    /// thread outside that runtime's async context (e.g. inside `spawn_blocking`).
    pub fn new(comm: Communicator, handle: Handle) -> Self {
        CommGroup { comm, handle }
    }

    /// The communicator (for its counters).
    pub fn communicator(&self) -> &Communicator {
        &self.comm
    }

    /// Gives the communicator back (to shut it down).
    pub fn into_communicator(self) -> Communicator {
        self.comm
    }
}

/// The rank a collective error blames: the lost, aborting, departed or disagreeing peer, or the
/// first rank a timed-out call was still waiting for.
pub fn blamed_rank(e: &CollectiveError) -> Option<u32> {
    match e {
        CollectiveError::PeerLost { rank, .. }
        | CollectiveError::PeerAborted { rank, .. }
        | CollectiveError::PeerShutDown { rank } => Some(*rank),
        CollectiveError::Mismatch { peer_rank, .. } => Some(*peer_rank),
        CollectiveError::Timeout { waiting_for, .. } => waiting_for.first().copied(),
        CollectiveError::RendezvousTimeout { missing, .. } => missing.first().copied(),
        CollectiveError::Poisoned(inner) => blamed_rank(inner),
        CollectiveError::InvalidArgument(_)
        | CollectiveError::Rendezvous { .. }
        | CollectiveError::Transport(_)
        | CollectiveError::Nccl { .. } => None,
    }
}

fn group_error(e: CollectiveError) -> GroupError {
    GroupError {
        blamed_rank: blamed_rank(&e).map(|r| r as usize),
        message: e.to_string(),
    }
}

/// Encodes f64 values as four 16-bit pieces each (exact in any float wire encoding ≥ f32).
fn encode_f64(values: &[f64]) -> Vec<f32> {
    values
        .iter()
        .flat_map(|v| {
            let bits = v.to_bits();
            (0..4).map(move |i| ((bits >> (16 * i)) & 0xffff) as f32)
        })
        .collect()
}

/// Inverse of [`encode_f64`].
fn decode_f64(pieces: &[f32]) -> Vec<f64> {
    pieces
        .chunks_exact(4)
        .map(|c| {
            let bits = c
                .iter()
                .enumerate()
                .fold(0u64, |acc, (i, p)| acc | ((*p as u64) << (16 * i)));
            f64::from_bits(bits)
        })
        .collect()
}

impl Group for CommGroup {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn world(&self) -> usize {
        self.comm.world() as usize
    }

    fn broadcast_params(&mut self, params: &mut [f32]) -> Result<(), GroupError> {
        self.handle
            .block_on(self.comm.broadcast(params, 0))
            .map_err(group_error)
    }

    fn mean_gradients(
        &mut self,
        _step: u64,
        grads: &mut [f32],
        extras: &mut [f32],
    ) -> Result<(), GroupError> {
        self.handle
            .block_on(
                self.comm
                    .all_reduce_fused(&mut [grads, extras], ReduceOp::Mean),
            )
            .map_err(group_error)
    }

    fn all_gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, GroupError> {
        let gathered = self
            .handle
            .block_on(self.comm.all_gather(&encode_f64(values)))
            .map_err(group_error)?;
        Ok(decode_f64(&gathered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtrain_collective::{CommConfig, InProcTransport};
    use std::sync::Arc;
    use std::time::Duration;

    /// Runs `f` on `n` ranks, each a blocking thread driving its communicator on a shared runtime.
    fn on_ranks<T: Send + 'static>(
        n: u32,
        f: impl Fn(usize, &mut CommGroup) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let f = Arc::new(f);
        let config = CommConfig {
            deadline: Duration::from_secs(30),
            fusion_bytes: 1 << 20,
            ..CommConfig::default()
        };
        let handles: Vec<_> = InProcTransport::world(n)
            .into_iter()
            .enumerate()
            .map(|(rank, t)| {
                let comm = Communicator::new(Arc::new(t), config.clone());
                let mut group = CommGroup::new(comm, rt.handle().clone());
                let f = f.clone();
                rt.spawn_blocking(move || {
                    let out = f(rank, &mut group);
                    let handle = group.handle.clone();
                    handle
                        .block_on(group.into_communicator().shutdown())
                        .unwrap();
                    out
                })
            })
            .collect();
        rt.block_on(async {
            let mut outs = Vec::new();
            for h in handles {
                outs.push(h.await.unwrap());
            }
            outs
        })
    }

    #[test]
    fn f64_pieces_round_trip_every_bit_pattern() {
        let values = [
            0.0,
            -0.0,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::INFINITY,
            123_456_789.123_456_79,
        ];
        let back = decode_f64(&encode_f64(&values));
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        let nan = f64::from_bits(0x7ff8_0000_dead_beef);
        assert_eq!(decode_f64(&encode_f64(&[nan]))[0].to_bits(), nan.to_bits());
    }

    #[test]
    fn three_ranks_average_broadcast_and_sum_exactly() {
        let outs = on_ranks(3, |rank, g| {
            assert_eq!((g.rank(), g.world()), (rank, 3));
            let mut params = vec![rank as f32 + 1.0; 5];
            g.broadcast_params(&mut params).unwrap();
            let mut grads: Vec<f32> = (0..1000).map(|i| (i * (rank + 1)) as f32).collect();
            let mut extras = [rank as f32 * 3.0, if rank == 2 { 1.0 } else { 0.0 }];
            g.mean_gradients(1, &mut grads, &mut extras).unwrap();
            // Values whose f32 sum would round: the f64 sum keeps them.
            let mut sums = [1e-17 * (rank as f64 + 1.0), 1.0 + rank as f64];
            g.sum_f64(&mut sums).unwrap();
            (params, grads, extras, sums)
        });
        for (params, grads, extras, sums) in &outs {
            assert_eq!(params, &vec![1.0; 5]);
            for (i, g) in grads.iter().enumerate() {
                assert_eq!(*g, (i * 6) as f32 / 3.0, "element {i}");
            }
            assert_eq!(extras, &[3.0, 1.0 / 3.0]);
            assert_eq!(sums[0], 1e-17 + 2e-17 + 3e-17);
            assert_eq!(sums[1], 6.0);
        }
        // Bit-identical on every rank.
        for o in &outs[1..] {
            assert_eq!(o.1, outs[0].1);
            assert_eq!(o.3.map(f64::to_bits), outs[0].3.map(f64::to_bits));
        }
    }

    #[test]
    fn a_lost_rank_is_blamed_by_the_survivors() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut transports = InProcTransport::world(3);
        let config = CommConfig {
            deadline: Duration::from_secs(30),
            ..CommConfig::default()
        };
        let lost = transports.pop().unwrap();
        let handles: Vec<_> = transports
            .into_iter()
            .map(|t| {
                let comm = Communicator::new(Arc::new(t), config.clone());
                let mut group = CommGroup::new(comm, rt.handle().clone());
                rt.spawn_blocking(move || {
                    let mut grads = vec![1.0f32; 64];
                    group.mean_gradients(1, &mut grads, &mut [0.0]).unwrap_err()
                })
            })
            .collect();
        drop(lost); // rank 2 dies without a word
        for h in handles {
            let err = rt.block_on(h).unwrap();
            assert_eq!(err.blamed_rank, Some(2), "{err}");
            assert!(err.message.contains("rank 2"), "{err}");
        }
    }

    #[test]
    fn poisoned_and_timeout_errors_blame_the_underlying_rank() {
        let lost = CollectiveError::PeerLost {
            rank: 4,
            detail: "reset".into(),
        };
        assert_eq!(
            blamed_rank(&CollectiveError::Poisoned(Box::new(lost))),
            Some(4)
        );
        assert_eq!(
            blamed_rank(&CollectiveError::Transport("bind".into())),
            None
        );
    }
}
