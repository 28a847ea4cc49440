//! Plain-buffer batches handed to the trainer, which turns them into tensors. Keeping them as
//! `Vec`s keeps this crate free of burn and lets the same batch feed any backend.

use crate::vocab::{PAD, UNK};

/// A batch of forecasting windows, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBatch {
    /// Inputs, `[batch, window, features]` row-major.
    pub x: Vec<f32>,
    /// Targets, `[batch, horizon, outputs]` row-major (h-major: step 1's targets, then step 2's).
    pub y: Vec<f32>,
    /// Samples in the batch.
    pub batch: usize,
    /// Time steps per input.
    pub window: usize,
    /// Feature columns per step.
    pub features: usize,
    /// Forecast steps per sample.
    pub horizon: usize,
    /// Target columns per forecast step.
    pub outputs: usize,
}

/// A batch of token sequences padded to the longest one.
///
/// A sequence with no tokens (empty text, or only characters the tokenizer drops) is given one
/// `<unk>` token, so every sequence has at least one valid step and "last step" and "mean over
/// valid steps" pooling are always defined.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBatch {
    /// Token ids, `[batch, seq_len]` row-major, padded with `<pad>` (0).
    pub ids: Vec<u32>,
    /// Valid (unpadded) length of each sequence, each ≥ 1.
    pub lengths: Vec<usize>,
    /// `[batch, seq_len]`: 1.0 at valid steps, 0.0 at padding.
    pub mask: Vec<f32>,
    /// Class id per sequence; empty for an unlabelled (predict-time) batch.
    pub labels: Vec<u32>,
    /// Sequences in the batch.
    pub batch: usize,
    /// Padded length: the longest sequence in the batch.
    pub seq_len: usize,
}

impl TextBatch {
    /// Pads `seqs` into a batch. `labels` holds one class id per sequence, or nothing at
    /// predict time.
    ///
    /// # Panics
    /// If `labels` is neither empty nor as long as `seqs` (a caller bug, not a data error).
    pub fn new<S: AsRef<[u32]>>(seqs: &[S], labels: Vec<u32>) -> TextBatch {
        assert!(
            labels.is_empty() || labels.len() == seqs.len(),
            "{} labels for {} sequences",
            labels.len(),
            seqs.len()
        );
        let lengths: Vec<usize> = seqs.iter().map(|s| s.as_ref().len().max(1)).collect();
        let seq_len = lengths.iter().copied().max().unwrap_or(0);
        let mut ids = vec![PAD; seqs.len() * seq_len];
        let mut mask = vec![0.0f32; seqs.len() * seq_len];
        for (b, s) in seqs.iter().enumerate() {
            let row = b * seq_len;
            let s = s.as_ref();
            if s.is_empty() {
                ids[row] = UNK;
            } else {
                ids[row..row + s.len()].copy_from_slice(s);
            }
            mask[row..row + lengths[b]].fill(1.0);
        }
        TextBatch {
            ids,
            lengths,
            mask,
            labels,
            batch: seqs.len(),
            seq_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_longest_and_gives_empty_sequences_one_unk() {
        let b = TextBatch::new(&[vec![5u32, 6, 7], vec![], vec![9]], vec![1, 0, 1]);
        assert_eq!(b.seq_len, 3);
        assert_eq!(b.ids, [5, 6, 7, UNK, PAD, PAD, 9, PAD, PAD]);
        assert_eq!(b.lengths, [3, 1, 1]);
        assert_eq!(b.mask, [1., 1., 1., 1., 0., 0., 1., 0., 0.]);
    }
}
