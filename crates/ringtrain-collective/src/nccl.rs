//! NCCL backend (cargo feature `nccl`): the same collective operations as [`crate::Communicator`],
//! but on GPU buffers (`cudarc::driver::CudaSlice<f32>`), executed by NCCL through `cudarc`'s
//! dynamically loaded bindings, so the crate builds and links on machines without CUDA. Rank 0
//! creates the 128-byte NCCL unique id and hands it to the other ranks through the gRPC rendezvous
//! (it travels as rank 0's registered "address"); every rank then joins with `ncclCommInitRank`.
//!
//! NCCL has no fingerprints and no notion of a lost peer, so this backend enforces the deadline by
//! polling a CUDA event after each enqueued operation and aborting the NCCL communicator when the
//! deadline passes; a failed communicator refuses further calls with the original cause, as the
//! host communicator does. Untested on hardware so far: no GPU was available where it was written.

use crate::config::CommConfig;
use crate::error::{CollectiveError, Result};
use crate::rendezvous;
use crate::types::ReduceOp;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::{Comm, Id};
use std::sync::Arc;
use std::time::Duration;

/// Prefix of rank 0's rendezvous entry that carries the NCCL unique id (hex).
const ID_PREFIX: &str = "nccl-id:";

/// Why NCCL cannot run in this process, or `None` when it can: the CUDA driver library, the NCCL
/// library and at least one GPU must be present. Never panics (cudarc's loaders panic when a
/// library is missing, so this checks with a plain `dlopen` first).
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: these only try to dlopen the libraries by their usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Some("the CUDA driver library (libcuda) is not installed".into());
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return Some("the NCCL library (libnccl) is not installed".into());
    }
    match CudaContext::device_count() {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("no CUDA device is visible".into()),
        Err(e) => Some(format!("CUDA driver initialisation failed: {e:?}")),
    }
}

/// How one rank joins an NCCL world.
#[derive(Debug, Clone)]
pub struct NcclConfig {
    /// This rank, in `0..world`.
    pub rank: u32,
    /// Number of ranks (NCCL needs one GPU per rank).
    pub world: u32,
    /// CUDA device ordinal this rank uses.
    pub device: usize,
    /// Rendezvous server address, "host:port" (see [`crate::rendezvous`]).
    pub rendezvous: String,
    /// Session name, unique per communicator instance on that rendezvous.
    pub session: String,
    /// The session's token, presented at the rendezvous like the gRPC transport's
    /// (`GrpcConfig::session_token`): a guarded rendezvous (the coordinator's) admits only the
    /// ranks its job attempt was given the token for. Empty on an unguarded rendezvous.
    pub session_token: String,
    /// TLS for the rendezvous call (`None`: plain TCP). The NCCL unique id travels in the
    /// rendezvous answer, so on a network it should be encrypted.
    pub tls: Option<ringtrain_proto::tls::TlsConfig>,
    /// Bound on the rendezvous and NCCL initialisation.
    pub setup_timeout: Duration,
}

/// The NCCL communicator handle. NCCL communicators may be used from any thread as long as calls
/// do not overlap; `NcclCommunicator` takes `&mut self` for every call, which guarantees that.
struct SendComm(Comm);

// SAFETY: `ncclComm_t` is a heap handle, not bound to the creating thread; NCCL requires only that
// calls on one communicator are not concurrent, which exclusive (`&mut`) access guarantees.
unsafe impl Send for SendComm {}

/// One rank of an NCCL world. Same call discipline as [`crate::Communicator`]: one call at a
/// time, every rank makes the same calls in the same order; after the first error every call
/// returns [`CollectiveError::Poisoned`].
pub struct NcclCommunicator {
    comm: Option<SendComm>,
    stream: Arc<CudaStream>,
    rank: u32,
    world: u32,
    config: CommConfig,
    scratch: CudaSlice<f32>,
    failed: Option<CollectiveError>,
}

impl std::fmt::Debug for NcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCommunicator")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

fn nccl_err(what: &str, rank: u32, e: cudarc::nccl::result::NcclError) -> CollectiveError {
    CollectiveError::Transport(format!("nccl {what} failed on rank {rank}: {:?}", e.0))
}

fn cuda_err(what: &str, rank: u32, e: cudarc::driver::DriverError) -> CollectiveError {
    CollectiveError::Transport(format!("cuda {what} failed on rank {rank}: {e:?}"))
}

fn id_to_hex(id: &Id) -> String {
    id.internal()
        .iter()
        .map(|b| format!("{:02x}", *b as u8))
        .collect()
}

fn id_from_hex(hex: &str) -> Option<Id> {
    if hex.len() != 256 {
        return None;
    }
    let mut internal = [0 as std::ffi::c_char; 128];
    for (i, slot) in internal.iter_mut().enumerate() {
        let byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        *slot = byte as std::ffi::c_char;
    }
    Some(Id::uninit(internal))
}

impl NcclCommunicator {
    /// Joins the world: rank 0 creates the unique id and registers it at the rendezvous, every
    /// rank reads it from rank 0's entry and initialises NCCL on `cfg.device`. Errors: NCCL or
    /// CUDA unavailable ([`unavailable_reason`]), rendezvous timeout naming the missing ranks, a
    /// malformed id, NCCL initialisation failure.
    pub async fn connect(cfg: NcclConfig, config: CommConfig) -> Result<NcclCommunicator> {
        if let Some(reason) = unavailable_reason() {
            return Err(CollectiveError::Transport(format!(
                "nccl unavailable on rank {}: {reason}",
                cfg.rank
            )));
        }
        let rank = cfg.rank;
        let ctx = CudaContext::new(cfg.device).map_err(|e| cuda_err("context", rank, e))?;
        let stream = ctx.default_stream();
        let entry = if rank == 0 {
            let id = Id::new().map_err(|e| nccl_err("unique id", rank, e))?;
            format!("{ID_PREFIX}{}", id_to_hex(&id))
        } else {
            format!("nccl-rank-{rank}")
        };
        let peers = rendezvous::join_with(
            &cfg.rendezvous,
            cfg.tls.as_ref(),
            &cfg.session,
            &cfg.session_token,
            rank,
            cfg.world,
            &entry,
            cfg.setup_timeout,
        )
        .await?;
        let id = peers
            .first()
            .and_then(|p| p.strip_prefix(ID_PREFIX))
            .and_then(id_from_hex)
            .ok_or_else(|| {
                CollectiveError::Transport(format!(
                    "rank {rank}: rank 0's rendezvous entry {:?} holds no nccl id",
                    peers.first()
                ))
            })?;
        let world = cfg.world as usize;
        let init_stream = Arc::clone(&stream);
        // ncclCommInitRank blocks until every rank joined: keep it off the async threads.
        let init = tokio::task::spawn_blocking(move || {
            Comm::from_rank(init_stream, rank as usize, world, id).map(SendComm)
        });
        let comm = tokio::time::timeout(cfg.setup_timeout, init)
            .await
            .map_err(|_| {
                CollectiveError::Transport(format!(
                    "rank {rank}: nccl initialisation did not finish within {:?}",
                    cfg.setup_timeout
                ))
            })?
            .map_err(|e| CollectiveError::Transport(format!("rank {rank}: nccl init task: {e}")))?
            .map_err(|e| nccl_err("init", rank, e))?;
        let scratch = stream
            .alloc_zeros::<f32>(1)
            .map_err(|e| cuda_err("alloc", rank, e))?;
        Ok(NcclCommunicator {
            comm: Some(comm),
            stream,
            rank,
            world: cfg.world,
            config,
            scratch,
            failed: None,
        })
    }

    /// This rank.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> u32 {
        self.world
    }

    /// The stream every operation is enqueued on (allocate and copy buffers on it).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn comm(&self) -> Result<&Comm> {
        if let Some(cause) = &self.failed {
            return Err(CollectiveError::poisoned(cause));
        }
        self.comm
            .as_ref()
            .map(|c| &c.0)
            .ok_or_else(|| CollectiveError::Transport("nccl communicator closed".into()))
    }

    /// Records the first failure and aborts the NCCL communicator (so no kernel keeps waiting).
    fn fail<T>(&mut self, e: CollectiveError) -> Result<T> {
        if self.failed.is_none() {
            self.failed = Some(e.clone());
        }
        // Dropping a cudarc `Comm` calls ncclCommAbort.
        self.comm = None;
        Err(e)
    }

    /// Waits, without blocking the async thread, until the work enqueued so far on the stream is
    /// done, or the deadline passes (then aborts the communicator).
    async fn complete(&mut self, what: &str) -> Result<()> {
        let event = match self.stream.record_event(None) {
            Ok(e) => e,
            Err(e) => return self.fail(cuda_err("record event", self.rank, e)),
        };
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_micros(20);
        while !event.is_complete() {
            if started.elapsed() > self.config.deadline {
                let e = CollectiveError::Transport(format!(
                    "nccl {what} on rank {} did not finish within {:?}; communicator aborted",
                    self.rank, self.config.deadline
                ));
                return self.fail(e);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(1));
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        what: &str,
        f: impl FnOnce(&Comm) -> std::result::Result<(), cudarc::nccl::result::NcclError>,
    ) -> Result<()> {
        let result = f(self.comm()?);
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.fail(nccl_err(what, self.rank, e)),
        }
    }

    /// All-reduce of `buf` in place on the device. Errors: NCCL failure, deadline, earlier failure.
    pub async fn all_reduce(&mut self, buf: &mut CudaSlice<f32>, op: ReduceOp) -> Result<()> {
        let op = nccl_op(op);
        self.enqueue("all_reduce", |c| {
            c.all_reduce_in_place(buf, &op).map(|_| ())
        })?;
        self.complete("all_reduce").await
    }

    /// Copies `buf` of rank `root` into `buf` of every rank. Errors: root out of range, plus those
    /// of [`NcclCommunicator::all_reduce`].
    pub async fn broadcast(&mut self, buf: &mut CudaSlice<f32>, root: u32) -> Result<()> {
        if root >= self.world {
            return Err(CollectiveError::InvalidArgument(format!(
                "broadcast root {root} is outside a group of {}",
                self.world
            )));
        }
        self.enqueue("broadcast", |c| {
            c.broadcast_in_place(buf, root as i32).map(|_| ())
        })?;
        self.complete("broadcast").await
    }

    /// Writes every rank's `input` in rank order into `output` (length `world × input.len()`).
    /// Errors: wrong output length, plus those of [`NcclCommunicator::all_reduce`].
    pub async fn all_gather(
        &mut self,
        input: &CudaSlice<f32>,
        output: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if output.len() != input.len() * self.world as usize {
            return Err(CollectiveError::InvalidArgument(format!(
                "all_gather output holds {} elements, expected {} × {}",
                output.len(),
                self.world,
                input.len()
            )));
        }
        self.enqueue("all_gather", |c| c.all_gather(input, output).map(|_| ()))?;
        self.complete("all_gather").await
    }

    /// Reduces `input` across ranks and writes this rank's block into `output`. NCCL cuts the
    /// input into `world` equal blocks, so `input.len()` must equal `world × output.len()` (the
    /// host communicator also accepts uneven lengths). Errors: wrong lengths, plus those of
    /// [`NcclCommunicator::all_reduce`].
    pub async fn reduce_scatter(
        &mut self,
        input: &CudaSlice<f32>,
        output: &mut CudaSlice<f32>,
        op: ReduceOp,
    ) -> Result<()> {
        if input.len() != output.len() * self.world as usize {
            return Err(CollectiveError::InvalidArgument(format!(
                "reduce_scatter input holds {} elements, expected {} × {}",
                input.len(),
                self.world,
                output.len()
            )));
        }
        let op = nccl_op(op);
        self.enqueue("reduce_scatter", |c| {
            c.reduce_scatter(input, output, &op).map(|_| ())
        })?;
        self.complete("reduce_scatter").await
    }

    /// Returns once every rank entered the barrier (a one-element all-reduce). Errors as
    /// [`NcclCommunicator::all_reduce`].
    pub async fn barrier(&mut self) -> Result<()> {
        // Field by field, so the scratch buffer can be borrowed mutably beside the communicator.
        let result = match (&self.failed, &self.comm) {
            (Some(cause), _) => return Err(CollectiveError::poisoned(cause)),
            (None, None) => {
                return Err(CollectiveError::Transport(
                    "nccl communicator closed".into(),
                ));
            }
            (None, Some(c)) => {
                c.0.all_reduce_in_place(&mut self.scratch, &cudarc::nccl::ReduceOp::Sum)
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            return self.fail(nccl_err("barrier", self.rank, e));
        }
        self.complete("barrier").await
    }

    /// Sends `data` to rank `to`, matched by [`NcclCommunicator::recv`] with a buffer of the same
    /// length there. Errors: `to` out of range or self, plus those of
    /// [`NcclCommunicator::all_reduce`].
    pub async fn send(&mut self, data: &CudaSlice<f32>, to: u32) -> Result<()> {
        self.check_peer(to)?;
        self.enqueue("send", |c| c.send(data, to as i32))?;
        self.complete("send").await
    }

    /// Receives into `buf` what rank `from` sends (NCCL needs the length up front, unlike the host
    /// communicator). Errors: `from` out of range or self, plus those of
    /// [`NcclCommunicator::all_reduce`].
    pub async fn recv(&mut self, buf: &mut CudaSlice<f32>, from: u32) -> Result<()> {
        self.check_peer(from)?;
        self.enqueue("recv", |c| c.recv(buf, from as i32).map(|_| ()))?;
        self.complete("recv").await
    }

    fn check_peer(&self, peer: u32) -> Result<()> {
        if peer >= self.world || peer == self.rank {
            return Err(CollectiveError::InvalidArgument(format!(
                "rank {peer} is not another rank of a group of {}",
                self.world
            )));
        }
        Ok(())
    }
}

fn nccl_op(op: ReduceOp) -> cudarc::nccl::ReduceOp {
    match op {
        ReduceOp::Sum => cudarc::nccl::ReduceOp::Sum,
        ReduceOp::Mean => cudarc::nccl::ReduceOp::Avg,
        ReduceOp::Max => cudarc::nccl::ReduceOp::Max,
        ReduceOp::Min => cudarc::nccl::ReduceOp::Min,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_id_survives_the_rendezvous_encoding() {
        let mut internal = [0 as std::ffi::c_char; 128];
        for (i, b) in internal.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) as std::ffi::c_char;
        }
        let id = Id::uninit(internal);
        let back = id_from_hex(&id_to_hex(&id)).unwrap();
        assert_eq!(back.internal(), id.internal());
        assert!(id_from_hex("abc").is_none());
        assert!(id_from_hex(&"zz".repeat(128)).is_none());
    }

    #[test]
    fn availability_check_names_what_is_missing() {
        // On a machine without CUDA this names the missing library; with a GPU it is `None`.
        match unavailable_reason() {
            Some(reason) => assert!(
                reason.contains("not installed")
                    || reason.contains("no CUDA device")
                    || reason.contains("initialisation failed"),
                "unexpected reason: {reason}"
            ),
            None => assert!(
                CudaContext::device_count().is_ok_and(|n| n > 0),
                "NCCL reported available without a visible CUDA device"
            ),
        }
    }

    #[test]
    fn connect_without_nccl_fails_with_the_reason() {
        let Some(reason) = unavailable_reason() else {
            return; // A GPU machine: the conformance suite (tests/nccl.rs) covers connecting.
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = NcclConfig {
            rank: 1,
            world: 2,
            device: 0,
            // Never contacted: the availability check comes first.
            rendezvous: "127.0.0.1:9".into(),
            session: "unavailable".into(),
            session_token: String::new(),
            tls: None,
            setup_timeout: Duration::from_secs(1),
        };
        let err = match rt.block_on(NcclCommunicator::connect(cfg, CommConfig::default())) {
            Ok(_) => panic!("connected although NCCL is unavailable: {reason}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("nccl unavailable on rank 1") && err.contains(&reason),
            "{err}"
        );
    }
}
