//! The communicator: the public API of the library. It numbers calls, builds the fingerprint every
//! message carries, enforces the deadline, logs stalls, records metrics and spans, and remembers the
//! first failure so that a broken group refuses further calls with the original cause.

use crate::algo;
pub use crate::config::CommConfig;
use crate::ctx::Ctx;
use crate::error::{CollectiveError, Result};
use crate::metrics::MetricsSnapshot;
use crate::transport::Transport;
use crate::types::{Fingerprint, OpKind, ReduceOp};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A group of ranks that run collective operations together. Calls are async and take `&mut self`:
/// one call at a time per communicator, and every rank of the group must make the same calls in the
/// same order (checked by fingerprints). Errors are [`CollectiveError`]; after the first error every
/// call returns [`CollectiveError::Poisoned`] with the original cause.
pub struct Communicator {
    transport: Arc<dyn Transport>,
    group: u32,
    members: Vec<u32>,
    rank: usize,
    config: CommConfig,
    seq: u64,
    send_seq: Vec<u64>,
    recv_seq: Vec<u64>,
    failed: Option<CollectiveError>,
    metrics: MetricsSnapshot,
}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("group", &self.group)
            .field("rank", &self.rank)
            .field("members", &self.members)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn op_span(op: OpKind, bytes: usize, world: usize, algo: &'static str) -> tracing::Span {
    match op {
        OpKind::AllReduce => tracing::info_span!("collective.all_reduce", bytes, world, algo),
        OpKind::Broadcast => tracing::info_span!("collective.broadcast", bytes, world, algo),
        OpKind::AllGather => tracing::info_span!("collective.all_gather", bytes, world, algo),
        OpKind::ReduceScatter => {
            tracing::info_span!("collective.reduce_scatter", bytes, world, algo)
        }
        OpKind::Barrier => tracing::info_span!("collective.barrier", bytes, world, algo),
        OpKind::Send => tracing::info_span!("collective.point_to_point", bytes, world, algo),
    }
}

impl Communicator {
    /// The world communicator over `transport` (group rank = world rank).
    pub fn new(transport: Arc<dyn Transport>, config: CommConfig) -> Self {
        let world = transport.world();
        let rank = transport.rank() as usize;
        Self::with_group(transport, 0, (0..world).collect(), rank, config)
    }

    fn with_group(
        transport: Arc<dyn Transport>,
        group: u32,
        members: Vec<u32>,
        rank: usize,
        config: CommConfig,
    ) -> Self {
        let n = members.len();
        Self {
            transport,
            group,
            members,
            rank,
            config,
            seq: 0,
            send_seq: vec![0; n],
            recv_seq: vec![0; n],
            failed: None,
            metrics: MetricsSnapshot::default(),
        }
    }

    /// This process's rank in the group.
    pub fn rank(&self) -> u32 {
        self.rank as u32
    }

    /// Number of ranks in the group.
    pub fn world(&self) -> u32 {
        self.members.len() as u32
    }

    /// The configuration.
    pub fn config(&self) -> &CommConfig {
        &self.config
    }

    /// Counters since creation.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics
    }

    /// A communicator for the sub-group `members` (ranks of this group, in the order that defines
    /// the new group's ranks), sharing this communicator's links. Every member calls `split` with
    /// the same list; non-members don't call it. At most one live sub-communicator per member list.
    /// Errors: the caller is not a member, a rank is out of range or repeated.
    pub fn split(&self, members: &[u32]) -> Result<Communicator> {
        let mut seen = vec![false; self.members.len()];
        for m in members {
            match seen.get_mut(*m as usize) {
                Some(s) if !*s => *s = true,
                Some(_) => {
                    return Err(CollectiveError::InvalidArgument(format!(
                        "rank {m} appears twice in the sub-group"
                    )));
                }
                None => {
                    return Err(CollectiveError::InvalidArgument(format!(
                        "rank {m} is outside a group of {}",
                        self.members.len()
                    )));
                }
            }
        }
        let rank = members
            .iter()
            .position(|m| *m as usize == self.rank)
            .ok_or_else(|| {
                CollectiveError::InvalidArgument(format!(
                    "rank {} is not a member of the sub-group {members:?}",
                    self.rank
                ))
            })?;
        let world_members: Vec<u32> = members.iter().map(|m| self.members[*m as usize]).collect();
        // FNV-1a of (parent group, member list): equal on every member without any exchange.
        let mut hash: u32 = 0x811c_9dc5;
        for word in std::iter::once(self.group).chain(world_members.iter().copied()) {
            for byte in word.to_le_bytes() {
                hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
            }
        }
        let group = if hash == 0 || hash == self.group {
            1
        } else {
            hash
        };
        Ok(Communicator::with_group(
            Arc::clone(&self.transport),
            group,
            world_members,
            rank,
            self.config.clone(),
        ))
    }

    fn begin(&mut self, op: OpKind, elements: usize, arg: u32) -> Result<Fingerprint> {
        if let Some(cause) = &self.failed {
            return Err(CollectiveError::poisoned(cause));
        }
        if let Some(cause) = self.transport.failure() {
            self.failed = Some(cause.clone());
            self.metrics.failures += 1;
            return Err(cause);
        }
        let seq = match op {
            OpKind::Send => 0,
            _ => {
                self.seq += 1;
                self.seq - 1
            }
        };
        Ok(Fingerprint {
            op,
            seq,
            elements: elements as u64,
            dtype: self.config.wire_dtype,
            arg,
        })
    }

    fn ctx(&self, fp: Fingerprint) -> Ctx<'_> {
        Ctx {
            transport: self.transport.as_ref(),
            group: self.group,
            members: &self.members,
            rank: self.rank,
            fp,
            cfg: &self.config,
        }
    }

    /// Runs one call under the deadline, logging stalls, inside its span.
    async fn guarded<T>(
        &self,
        fp: Fingerprint,
        algo: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let bytes = fp.elements as usize * 4;
        let span = op_span(fp.op, bytes, self.members.len(), algo);
        let deadline = self.config.deadline;
        let stall = self.config.stall_after.max(Duration::from_millis(1));
        let started = tokio::time::Instant::now();
        let mut stall_tick = tokio::time::interval_at(started + stall, stall);
        let body = async {
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    result = &mut fut => return result,
                    _ = tokio::time::sleep_until(started + deadline) => {
                        return Err(CollectiveError::Timeout {
                            op: fp,
                            rank: self.members[self.rank],
                            after: deadline,
                            waiting_for: self.transport.waiting_for(self.group),
                        });
                    }
                    _ = stall_tick.tick() => {
                        tracing::warn!(
                            op = %fp,
                            waited_s = started.elapsed().as_secs_f64(),
                            waiting_for = ?self.transport.waiting_for(self.group),
                            "collective call stalled"
                        );
                    }
                }
            }
        };
        body.instrument(span).await
    }

    fn finish<T>(&mut self, fp: Fingerprint, started: Instant, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.metrics.record(
                fp.op,
                fp.elements * 4,
                started.elapsed().as_secs_f64(),
                self.members.len(),
            ),
            Err(e) => {
                self.metrics.failures += 1;
                tracing::error!(op = %fp, error = %e, "collective call failed");
                self.failed = Some(e.clone());
                self.transport.abort(e);
            }
        }
        result
    }

    /// Reduces `buf` element-wise across the group, in place; every rank ends with bit-identical
    /// values. Small buffers use a one-round direct exchange, large ones the pipelined ring.
    /// Errors: fingerprint mismatch, deadline, lost or aborting peer, earlier failure.
    pub async fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let fp = self.begin(OpKind::AllReduce, buf.len(), op.code())?;
        let algo = algo::all_reduce_algo(&self.config, self.members.len(), buf.len());
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self
            .guarded(fp, algo, algo::all_reduce(&ctx, buf, op))
            .await;
        self.finish(fp, started, result)
    }

    /// Copies `buf` of rank `root` into `buf` of every rank (all ranks pass equal lengths).
    /// Errors as [`Communicator::all_reduce`], plus an out-of-range root.
    pub async fn broadcast(&mut self, buf: &mut [f32], root: u32) -> Result<()> {
        if root as usize >= self.members.len() {
            return Err(CollectiveError::InvalidArgument(format!(
                "broadcast root {root} is outside a group of {}",
                self.members.len()
            )));
        }
        let fp = self.begin(OpKind::Broadcast, buf.len(), root)?;
        let algo = algo::broadcast_algo(&self.config, self.members.len(), buf.len());
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self
            .guarded(fp, algo, algo::broadcast(&ctx, buf, root as usize))
            .await;
        self.finish(fp, started, result)
    }

    /// Concatenates every rank's `input` (all of equal length) in rank order: rank r's input is
    /// `out[r * len..(r + 1) * len]` on every rank. Errors as [`Communicator::all_reduce`].
    pub async fn all_gather(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        let fp = self.begin(OpKind::AllGather, input.len(), 0)?;
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self
            .guarded(fp, "ring", algo::all_gather(&ctx, input))
            .await;
        self.finish(fp, started, result)
    }

    /// Reduces `input` (equal length on every rank) across the group and returns this rank's
    /// chunk: the buffer is cut into `world` contiguous chunks as equal as possible, the first
    /// `len % world` one element longer, and rank r gets chunk r. Errors as
    /// [`Communicator::all_reduce`].
    pub async fn reduce_scatter(&mut self, input: &[f32], op: ReduceOp) -> Result<Vec<f32>> {
        let fp = self.begin(OpKind::ReduceScatter, input.len(), op.code())?;
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self
            .guarded(fp, "ring", algo::reduce_scatter(&ctx, input, op))
            .await;
        self.finish(fp, started, result)
    }

    /// Returns once every rank of the group has entered the barrier. Errors as
    /// [`Communicator::all_reduce`].
    pub async fn barrier(&mut self) -> Result<()> {
        let fp = self.begin(OpKind::Barrier, 0, 0)?;
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self.guarded(fp, "direct", algo::barrier(&ctx)).await;
        self.finish(fp, started, result)
    }

    fn check_peer(&self, peer: u32) -> Result<usize> {
        if peer as usize >= self.members.len() || peer as usize == self.rank {
            return Err(CollectiveError::InvalidArgument(format!(
                "rank {peer} is not another rank of a group of {}",
                self.members.len()
            )));
        }
        Ok(peer as usize)
    }

    /// Sends `data` to rank `to`, matched by `recv(from = this rank)` there. Returns when the data
    /// is handed to the transport (not when it is received). Errors: `to` out of range or self,
    /// plus those of [`Communicator::all_reduce`].
    pub async fn send(&mut self, data: &[f32], to: u32) -> Result<()> {
        let to = self.check_peer(to)?;
        let mut fp = self.begin(OpKind::Send, data.len(), 0)?;
        fp.seq = self.send_seq[to];
        self.send_seq[to] += 1;
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self.guarded(fp, "direct", algo::send(&ctx, data, to)).await;
        self.finish(fp, started, result)
    }

    /// Receives the next tensor `from` sent to this rank. Errors: `from` out of range or self, the
    /// peer called something else (fingerprint mismatch), plus those of
    /// [`Communicator::all_reduce`].
    pub async fn recv(&mut self, from: u32) -> Result<Vec<f32>> {
        let from = self.check_peer(from)?;
        let mut fp = self.begin(OpKind::Send, 0, 0)?;
        fp.seq = self.recv_seq[from];
        self.recv_seq[from] += 1;
        let started = Instant::now();
        let ctx = self.ctx(fp);
        let result = self.guarded(fp, "direct", algo::recv(&ctx, from, fp)).await;
        let len = result.as_ref().map_or(0, |v| v.len() as u64);
        self.finish(
            Fingerprint {
                elements: len,
                ..fp
            },
            started,
            result,
        )
    }

    /// Clean shutdown of the transport (shared with sub-groups): tells every peer and waits, within
    /// the deadline, until every peer has done the same, so no data still in flight is lost.
    /// Errors: a peer failed or did not shut down within the deadline.
    pub async fn shutdown(self) -> Result<()> {
        let waited = tokio::time::timeout(self.config.deadline, self.transport.shutdown()).await;
        waited.unwrap_or_else(|_| {
            Err(CollectiveError::Transport(format!(
                "rank {} timed out after {:?} waiting for peers to shut down",
                self.members[self.rank], self.config.deadline
            )))
        })
    }
}
