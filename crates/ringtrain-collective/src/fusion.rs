//! Tensor fusion: many small gradient tensors are packed into fusion buffers of up to a threshold
//! (Horovod's default 64 MiB), each buffer is all-reduced once, and the results are unpacked in
//! place. The bucketing is a pure function of the tensor lengths, so every rank that passes the
//! same tensor list packs identically; a rank that passes a different list fails the call with a
//! fingerprint mismatch (the fused lengths differ) instead of mixing up tensors.

use crate::comm::Communicator;
use crate::error::Result;
use crate::types::ReduceOp;
use std::ops::Range;

/// Groups consecutive tensors (by length in elements) into buckets of at most `threshold_elems`
/// elements; a tensor larger than the threshold is a bucket of its own, and a threshold of 0
/// turns fusion off (one bucket per tensor). Returns ranges of tensor indices.
pub fn fusion_plan(lens: &[usize], threshold_elems: usize) -> Vec<Range<usize>> {
    let mut buckets = Vec::new();
    let (mut start, mut fill) = (0, 0);
    for (i, len) in lens.iter().enumerate() {
        let full = threshold_elems == 0 || fill + len > threshold_elems;
        if i > start && full {
            buckets.push(start..i);
            (start, fill) = (i, 0);
        }
        fill += len;
    }
    if start < lens.len() {
        buckets.push(start..lens.len());
    }
    buckets
}

impl Communicator {
    /// All-reduces every tensor in `tensors` (in place), packing them into fusion buffers of at most
    /// [`crate::CommConfig::fusion_bytes`]. Every rank must pass tensors of the same lengths in the
    /// same order. Errors as [`Communicator::all_reduce`].
    pub async fn all_reduce_fused(
        &mut self,
        tensors: &mut [&mut [f32]],
        op: ReduceOp,
    ) -> Result<()> {
        let lens: Vec<usize> = tensors.iter().map(|t| t.len()).collect();
        let plan = fusion_plan(&lens, self.config().fusion_bytes / 4);
        let mut scratch = Vec::new();
        for bucket in plan {
            if bucket.len() == 1 {
                self.all_reduce(tensors[bucket.start], op).await?;
                continue;
            }
            scratch.clear();
            for t in &tensors[bucket.clone()] {
                scratch.extend_from_slice(t);
            }
            self.all_reduce(&mut scratch, op).await?;
            let mut offset = 0;
            for t in &mut tensors[bucket] {
                let len = t.len();
                t.copy_from_slice(&scratch[offset..offset + len]);
                offset += len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_threshold_and_order() {
        assert_eq!(
            fusion_plan(&[3, 3, 3, 10, 1], 6),
            vec![0..2, 2..3, 3..4, 4..5]
        );
        assert_eq!(fusion_plan(&[1, 1, 1], 100), vec![0..3]);
        assert_eq!(fusion_plan(&[1, 1], 0), vec![0..1, 1..2]);
        assert!(fusion_plan(&[], 10).is_empty());
    }
}
