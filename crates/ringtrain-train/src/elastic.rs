//! Elastic data parallelism's in-memory commit (Horovod's `state.commit()`), and how a re-formed
//! group agrees on the state it continues from.
//!
//! Every rank of an elastic run (`parallel.elastic`) stores the whole training state — exactly
//! the bytes a `latest.ckpt` of that step would hold, CRC included — in its process's
//! [`CommitSlot`] every `commit_every` steps and when the ranks stop together. The slot outlives
//! the run: when a peer is lost the run fails, and the next attempt the coordinator forms (the
//! survivors, plus idle workers up to `max`) starts with [`agree`]: the ranks all-gather the
//! step of the commit each holds for this job, the lowest rank holding the newest one
//! broadcasts it, and every rank resumes from it as from a checkpoint file, whatever the new
//! number of ranks. The newest commit any rank holds is a valid state even when the ranks' commits differ by a step (a rank
//! commits only after it applied a complete all-reduce result), so nothing is ever rolled back
//! past the last commit; the shard plan depends only on the global batch, so the re-formed
//! ranks cut the same remaining sample order between themselves and every sample of the epoch
//! is still trained exactly once.

use crate::checkpoint::{Checkpoint, MAX_HEADER_BYTES};
use crate::error::{TrainError, collective};
use crate::group::{Group, GroupError};
use ringtrain_spec::LimitsSpec;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One process's newest in-memory commit (at most one: a worker runs one rank at a time).
#[derive(Debug, Default)]
pub struct CommitSlot {
    held: Mutex<Option<Commit>>,
}

#[derive(Debug, Clone)]
struct Commit {
    run_id: Option<String>,
    step: u64,
    bytes: Arc<Vec<u8>>,
}

impl CommitSlot {
    /// An empty slot.
    pub fn new() -> Self {
        CommitSlot::default()
    }

    /// Replaces the slot's commit with `bytes` (a checkpoint's, see [`Checkpoint::to_bytes`])
    /// of run `run_id` after optimizer step `step`.
    pub fn store(&self, run_id: Option<&str>, step: u64, bytes: Vec<u8>) {
        *self.lock() = Some(Commit {
            run_id: run_id.map(str::to_string),
            step,
            bytes: Arc::new(bytes),
        });
    }

    /// The step of the commit held for `run_id`, if any.
    pub fn step_of(&self, run_id: Option<&str>) -> Option<u64> {
        self.held(run_id).map(|c| c.step)
    }

    /// Drops the commit (e.g. its job finished).
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn held(&self, run_id: Option<&str>) -> Option<Commit> {
        self.lock()
            .as_ref()
            .filter(|c| c.run_id.as_deref() == run_id)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Commit>> {
        // A panic while holding the lock cannot leave a half-written commit (one assignment).
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The state a re-formed group continues from.
#[derive(Debug)]
pub(crate) struct Agreed {
    /// The commit, checked like a checkpoint file.
    pub checkpoint: Checkpoint,
    /// Its step.
    pub step: u64,
    /// The rank that held it.
    pub holder: usize,
    /// Ranks that held a commit of this run at all.
    pub holders: usize,
}

/// Agrees with `group` on the newest commit of `run_id` any rank holds in its `slot`, and
/// returns it on every rank (`None` when no rank holds one: the caller falls back to the job's
/// checkpoint file). A collective call of every rank.
///
/// # Errors
/// [`TrainError::Collective`] when the exchange fails; [`TrainError::Checkpoint`] when the
/// commit fails the checks of a checkpoint file, or claims more bytes than `limits` allow.
pub(crate) fn agree(
    group: &mut dyn Group,
    slot: &CommitSlot,
    run_id: Option<&str>,
    limits: &LimitsSpec,
) -> Result<Option<Agreed>, TrainError> {
    let mine = slot.held(run_id);
    // (step + 1, byte length) per rank; 0 = no commit. f64 carries both exactly.
    let claim = mine
        .as_ref()
        .map_or([0.0, 0.0], |c| [(c.step + 1) as f64, c.bytes.len() as f64]);
    let all = group
        .all_gather_f64(&claim)
        .map_err(collective("agreeing on the newest in-memory commit"))?;
    let world = group.world();
    if all.len() != 2 * world {
        return Err(collective("agreeing on the newest in-memory commit")(
            GroupError::new(format!(
                "all-gather returned {} values for {world} ranks",
                all.len()
            )),
        ));
    }
    let holders = all.chunks_exact(2).filter(|c| c[0] > 0.0).count();
    let Some((holder, best)) = all
        .chunks_exact(2)
        .enumerate()
        .filter(|(_, c)| c[0] > 0.0)
        .max_by(|(ra, a), (rb, b)| a[0].total_cmp(&b[0]).then(rb.cmp(ra)))
        .map(|(r, c)| (r, [c[0], c[1]]))
    else {
        return Ok(None);
    };
    let step = best[0] as u64 - 1;
    let len = best[1];
    // A claim from the wire: bounded by what this job's spec allows before anything is sized
    // by it (parameters and three optimizer buffers, a carried state within the activation
    // budget, and the header).
    let bound = (limits.max_parameters as f64) * 16.0
        + limits.max_memory_bytes as f64
        + MAX_HEADER_BYTES as f64;
    let origin = PathBuf::from(format!(
        "<in-memory commit of rank {holder} at step {step}>"
    ));
    if !(len.is_finite() && len >= 0.0 && len <= bound) {
        return Err(crate::checkpoint::CheckpointError::Corrupt {
            path: origin,
            reason: format!("announced {len} bytes, over the job's bound of {bound}"),
        }
        .into());
    }
    let len = len as usize;
    let mut packed = vec![0f32; len.div_ceil(3)];
    if group.rank() == holder
        && let Some(c) = &mine
    {
        pack(&c.bytes, &mut packed);
    }
    group
        .broadcast_from(holder, &mut packed)
        .map_err(collective(format!(
            "broadcast of rank {holder}'s commit of step {step}"
        )))?;
    let bytes = unpack(&packed, len);
    let checkpoint = Checkpoint::from_bytes_within(&bytes, &origin, limits)?;
    if checkpoint.header.progress.step != step {
        return Err(crate::checkpoint::CheckpointError::Corrupt {
            path: origin,
            reason: format!(
                "holds step {} where step {step} was announced",
                checkpoint.header.progress.step
            ),
        }
        .into());
    }
    Ok(Some(Agreed {
        checkpoint,
        step,
        holder,
        holders,
    }))
}

/// Three bytes per value: integers below 2^24 are exact in f32 (the collective moves f32).
fn pack(bytes: &[u8], out: &mut [f32]) {
    for (o, chunk) in out.iter_mut().zip(bytes.chunks(3)) {
        let mut word = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            word |= u32::from(*b) << (8 * i);
        }
        *o = word as f32;
    }
}

/// Inverse of [`pack`] for `len` bytes.
fn unpack(packed: &[f32], len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    for v in packed {
        let word = *v as u32;
        for i in 0..3 {
            if bytes.len() < len {
                bytes.push((word >> (8 * i)) as u8);
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_survive_packing_into_f32() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 255, 7, 255, 255, 255, 1]).collect();
        for len in [0, 1, 2, 3, 4, bytes.len()] {
            let mut packed = vec![0f32; len.div_ceil(3)];
            pack(&bytes[..len], &mut packed);
            assert_eq!(unpack(&packed, len), &bytes[..len]);
        }
    }

    #[test]
    fn a_slot_answers_only_for_its_run() {
        let slot = CommitSlot::new();
        assert_eq!(slot.step_of(Some("job-1")), None);
        slot.store(Some("job-1"), 40, vec![1, 2, 3]);
        assert_eq!(slot.step_of(Some("job-1")), Some(40));
        assert_eq!(slot.step_of(Some("job-2")), None);
        assert_eq!(slot.step_of(None), None);
        slot.clear();
        assert_eq!(slot.step_of(Some("job-1")), None);
    }
}
