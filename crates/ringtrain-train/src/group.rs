//! The synchronisation a data-parallel run needs from its replicas, as a trait the trainer is
//! written against: [`Group`]. A single process is the one-rank group [`Solo`]; the worker crate
//! implements it over a collective communicator. Keeping the trait here (and the collective
//! library out of this crate's dependencies) lets the trainer be tested with any transport.
//!
//! Every method is collective: every rank of the group must call the same methods in the same
//! order with buffers of the same lengths, or the implementation fails with an error naming the
//! disagreeing ranks.

/// Where a distributed trainer exchanges gradients; the single-process trainer uses [`NoHook`].
pub trait GradientHook {
    /// Replaces `grads` (this rank's flat gradient for optimizer step `step`) with the value every
    /// rank must apply, e.g. the mean over ranks.
    ///
    /// # Errors
    /// A message naming the rank or peer that failed; the step is abandoned.
    fn exchange(&mut self, step: u64, grads: &mut [f32]) -> Result<(), String>;
}

/// The hook of a single-process run: gradients are used as computed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl GradientHook for NoHook {
    fn exchange(&mut self, _step: u64, _grads: &mut [f32]) -> Result<(), String> {
        Ok(())
    }
}

/// A failed collective call: what happened and, when the failure is another rank's fault (a lost
/// or aborting peer), which rank.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct GroupError {
    /// Human-readable cause, naming this rank and the peer where known.
    pub message: String,
    /// The rank the failure blames when it is another rank (a lost peer), else `None`.
    pub blamed_rank: Option<usize>,
}

impl GroupError {
    /// An error that blames no other rank.
    pub fn new(message: impl Into<String>) -> Self {
        GroupError {
            message: message.into(),
            blamed_rank: None,
        }
    }
}

/// The replicas of a data-parallel run.
pub trait Group {
    /// This replica's rank in `0..world()`.
    fn rank(&self) -> usize;

    /// Number of replicas.
    fn world(&self) -> usize;

    /// Overwrites `params` with rank 0's values on every rank (initial parameters).
    ///
    /// # Errors
    /// The collective call failed.
    fn broadcast_params(&mut self, params: &mut [f32]) -> Result<(), GroupError>;

    /// Overwrites `data` with rank `root`'s values on every rank, bit for bit (the elastic
    /// commit's bytes travel packed in f32 values).
    ///
    /// # Errors
    /// The collective call failed, or `root` is not a rank of the group.
    fn broadcast_from(&mut self, root: usize, data: &mut [f32]) -> Result<(), GroupError>;

    /// Replaces `grads` (this rank's gradient of optimizer step `step`) and `extras` (a few
    /// per-step scalars such as the loss) with their element-wise mean over the ranks; every rank
    /// ends with bit-identical values.
    ///
    /// # Errors
    /// The collective call failed.
    fn mean_gradients(
        &mut self,
        step: u64,
        grads: &mut [f32],
        extras: &mut [f32],
    ) -> Result<(), GroupError>;

    /// Every rank's `values` (equal lengths), concatenated in rank order, bit-exact.
    ///
    /// # Errors
    /// The collective call failed.
    fn all_gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, GroupError>;

    /// Replaces `values` with their element-wise sum over the ranks, added in rank order from the
    /// exact values of every rank (so every rank gets the same f64 result).
    ///
    /// # Errors
    /// The collective call failed.
    fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), GroupError> {
        if self.world() == 1 {
            return Ok(());
        }
        let all = self.all_gather_f64(values)?;
        let n = values.len();
        if all.len() != n * self.world() {
            return Err(GroupError::new(format!(
                "rank {}: all-gather of {n} values returned {} (world {})",
                self.rank(),
                all.len(),
                self.world()
            )));
        }
        for (i, v) in values.iter_mut().enumerate() {
            *v = (0..self.world()).map(|r| all[r * n + i]).sum();
        }
        Ok(())
    }
}

/// The one-rank group of a single process, optionally running a [`GradientHook`] where the
/// all-reduce would go.
pub struct Solo<'a> {
    hook: Option<&'a mut dyn GradientHook>,
}

impl std::fmt::Debug for Solo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solo")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Solo<'static> {
    /// A single process with gradients used as computed.
    pub fn new() -> Self {
        Solo { hook: None }
    }
}

impl Default for Solo<'static> {
    fn default() -> Self {
        Solo::new()
    }
}

impl<'a> Solo<'a> {
    /// A single process that passes every gradient through `hook`.
    pub fn with_hook(hook: &'a mut dyn GradientHook) -> Self {
        Solo { hook: Some(hook) }
    }
}

impl Group for Solo<'_> {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn broadcast_params(&mut self, _params: &mut [f32]) -> Result<(), GroupError> {
        Ok(())
    }

    fn broadcast_from(&mut self, root: usize, _data: &mut [f32]) -> Result<(), GroupError> {
        if root == 0 {
            Ok(())
        } else {
            Err(GroupError::new(format!(
                "broadcast root {root} is outside a group of one"
            )))
        }
    }

    fn mean_gradients(
        &mut self,
        step: u64,
        grads: &mut [f32],
        _extras: &mut [f32],
    ) -> Result<(), GroupError> {
        match &mut self.hook {
            Some(hook) => hook.exchange(step, grads).map_err(GroupError::new),
            None => Ok(()),
        }
    }

    fn all_gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, GroupError> {
        Ok(values.to_vec())
    }
}

/// Encodes f64 values as four 16-bit pieces each, exact in any float wire encoding of at least f32
/// precision: how a [`Group`] over an f32 collective moves f64 values bit for bit
/// ([`Group::all_gather_f64`]).
pub fn encode_f64(values: &[f64]) -> Vec<f32> {
    values
        .iter()
        .flat_map(|v| {
            let bits = v.to_bits();
            (0..4).map(move |i| ((bits >> (16 * i)) & 0xffff) as f32)
        })
        .collect()
}

/// Inverse of [`encode_f64`].
pub fn decode_f64(pieces: &[f32]) -> Vec<f64> {
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

/// CRC-32 of the parameters' bytes (little-endian f32): equal on two replicas exactly when their
/// parameters are bit-identical (up to CRC collisions). Exact in an f64, which is how ranks
/// exchange it.
pub fn param_checksum(params: &[f32]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for p in params {
        hasher.update(&p.to_le_bytes());
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Doubling;
    impl GradientHook for Doubling {
        fn exchange(&mut self, _step: u64, grads: &mut [f32]) -> Result<(), String> {
            grads.iter_mut().for_each(|g| *g *= 2.0);
            Ok(())
        }
    }

    #[test]
    fn solo_is_identity_and_runs_its_hook() {
        let mut solo = Solo::new();
        let mut v = vec![1.0, 2.0];
        solo.sum_f64(&mut v).unwrap();
        assert_eq!(v, vec![1.0, 2.0]);
        let mut g = vec![1.0f32, -3.0];
        solo.mean_gradients(1, &mut g, &mut []).unwrap();
        assert_eq!(g, vec![1.0, -3.0]);
        let mut hook = Doubling;
        let mut solo = Solo::with_hook(&mut hook);
        solo.mean_gradients(1, &mut g, &mut []).unwrap();
        assert_eq!(g, vec![2.0, -6.0]);
    }

    #[test]
    fn checksum_sees_one_bit() {
        let a = vec![0.5f32, 1.0, -2.0];
        let mut b = a.clone();
        assert_eq!(param_checksum(&a), param_checksum(&b));
        b[1] = f32::from_bits(b[1].to_bits() ^ 1);
        assert_ne!(param_checksum(&a), param_checksum(&b));
    }
}
