//! The trainer's [`Group`] over a collective [`Communicator`]: training runs on a blocking thread
//! and drives the async communicator through a runtime [`Handle`], one call at a time.
//!
//! Gradients (with the trainer's per-step scalars appended as a second tensor) go through the
//! fused all-reduce, so they travel as one buffer up to the spec's fusion threshold. f64 values
//! (metric sums, parameter checksums) travel bit-exactly through an all-gather, each as four
//! 16-bit pieces — integers that every wire encoding of an f32 carries exactly — and are added
//! in rank order on every rank, so every rank computes the same f64 sums.
//!
//! A pipelined job (`parallel.pipeline = P > 1`) places its `D × P` ranks on a grid, rank
//! `r = d · P + s` being stage `s` of replica `d` ([`GridPlace`]). The world communicator is split
//! twice: the ranks of the same stage form the [`CommGroup`] of the stage's data-parallel
//! all-reduce (its rank is the replica `d`), and the ranks of the same replica form the
//! [`CommLink`] that carries activations and gradients between consecutive stages (its rank is
//! the stage `s`).

use ringtrain_collective::{CollectiveError, Communicator, ReduceOp};
use ringtrain_train::{Group, GroupError, StageLink, decode_f64, encode_f64};
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

    fn broadcast_from(&mut self, root: usize, data: &mut [f32]) -> Result<(), GroupError> {
        let root = u32::try_from(root)
            .map_err(|_| GroupError::new(format!("broadcast root {root} is not a rank")))?;
        self.handle
            .block_on(self.comm.broadcast(data, root))
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

/// Where a rank sits on the `replicas × stages` grid of a pipelined job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridPlace {
    /// Data-parallel replica `d` in `0..replicas`.
    pub replica: u32,
    /// Pipeline stage `s` in `0..stages`.
    pub stage: u32,
    /// Replicas (`parallel.data`).
    pub replicas: u32,
    /// Stages per replica (`parallel.pipeline`).
    pub stages: u32,
}

impl GridPlace {
    /// The place of world rank `rank = replica · stages + stage`.
    ///
    /// # Errors
    /// A message when `replicas · stages` is zero or `rank` is outside the grid.
    pub fn of(rank: u32, replicas: u32, stages: u32) -> Result<GridPlace, String> {
        let world = replicas.checked_mul(stages).unwrap_or(0);
        if world == 0 || rank >= world {
            return Err(format!(
                "rank {rank} is outside a grid of {replicas} replicas x {stages} stages"
            ));
        }
        Ok(GridPlace {
            replica: rank / stages,
            stage: rank % stages,
            replicas,
            stages,
        })
    }

    /// World ranks running this rank's stage, in replica order (the stage's all-reduce group).
    pub fn same_stage(&self) -> Vec<u32> {
        (0..self.replicas)
            .map(|d| d * self.stages + self.stage)
            .collect()
    }

    /// World ranks of this rank's replica, in stage order (the pipeline's link).
    pub fn same_replica(&self) -> Vec<u32> {
        (0..self.stages)
            .map(|s| self.replica * self.stages + s)
            .collect()
    }
}

/// One rank's [`StageLink`] over the communicator of its replica's stages (group rank = stage).
#[derive(Debug)]
pub struct CommLink {
    comm: Communicator,
    handle: Handle,
}

impl CommLink {
    /// Wraps `comm` (the sub-communicator of one replica's stages, in stage order); its calls run
    /// on `handle`'s runtime, from a thread outside that runtime's async context.
    pub fn new(comm: Communicator, handle: Handle) -> Self {
        CommLink { comm, handle }
    }

    /// The communicator (for its counters).
    pub fn communicator(&self) -> &Communicator {
        &self.comm
    }
}

impl StageLink for CommLink {
    fn stage(&self) -> usize {
        self.comm.rank() as usize
    }

    fn stages(&self) -> usize {
        self.comm.world() as usize
    }

    fn send(&mut self, to: usize, data: &[f32]) -> Result<(), GroupError> {
        let to = u32::try_from(to).map_err(|_| GroupError::new(format!("no stage {to}")))?;
        self.handle
            .block_on(self.comm.send(data, to))
            .map_err(group_error)
    }

    fn recv(&mut self, from: usize) -> Result<Vec<f32>, GroupError> {
        let from = u32::try_from(from).map_err(|_| GroupError::new(format!("no stage {from}")))?;
        self.handle
            .block_on(self.comm.recv(from))
            .map_err(group_error)
    }

    fn all_gather(&mut self, data: &[f32]) -> Result<Vec<f32>, GroupError> {
        self.handle
            .block_on(self.comm.all_gather(data))
            .map_err(group_error)
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
    fn grid_places_ranks_replica_major() {
        let p = GridPlace::of(5, 2, 3).unwrap();
        assert_eq!((p.replica, p.stage), (1, 2));
        assert_eq!(p.same_stage(), vec![2, 5]);
        assert_eq!(p.same_replica(), vec![3, 4, 5]);
        assert!(GridPlace::of(6, 2, 3).is_err());
        assert!(GridPlace::of(0, 0, 3).is_err());
    }

    #[test]
    fn a_link_carries_buffers_between_stages_in_order() {
        let outs = on_ranks(4, |rank, g| {
            // Two replicas of two stages over the world communicator of the group.
            let place = GridPlace::of(rank as u32, 2, 2).unwrap();
            let comm = g.communicator().split(&place.same_replica()).unwrap();
            let mut link = CommLink::new(comm, g.handle.clone());
            assert_eq!(link.stage(), place.stage as usize);
            let mine = vec![rank as f32; 3];
            if link.stage() == 0 {
                link.send(1, &mine).unwrap();
                link.send(1, &[7.0]).unwrap();
            }
            let got = if link.stage() == 1 {
                vec![link.recv(0).unwrap(), link.recv(0).unwrap()]
            } else {
                Vec::new()
            };
            let all = link.all_gather(&mine).unwrap();
            (got, all)
        });
        assert_eq!(outs[1].0, vec![vec![0.0; 3], vec![7.0]]);
        assert_eq!(outs[3].0, vec![vec![2.0; 3], vec![7.0]]);
        assert_eq!(outs[2].1, vec![2.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
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
