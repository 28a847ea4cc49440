//! Source/target text pairs for sequence-to-sequence tasks (translation).
//!
//! Rows are read (source and target columns), shuffled by the job seed and split exactly like
//! labelled text ([`crate::TextData`]), so the split never depends on the file's order. Both
//! sides use the spec's tokenizer and get their own vocabulary built on the train split: the
//! source vocabulary holds `<pad>`, `<unk>` and the source tokens; the target vocabulary adds
//! `<bos>` (the decoder's first input) and `<eos>` (what the decoder emits to stop) at fixed ids
//! [`BOS`] and [`EOS`]. Sequences are truncated to `max_source_len` / `max_target_len` tokens.
//! A batch ([`PairBatch`]) pads sources and targets to the batch's longest, with masks, so
//! padding is excluded from the encoder, the attention and the loss.

use crate::SplitName;
use crate::batch::TextBatch;
use crate::error::DataError;
use crate::order::{TEXT_SPLIT_STREAM, chacha, permutation, shuffled_parts};
use crate::source::{Source, read_table};
use crate::vocab::{PAD, PAD_TOKEN, Tokenizer, UNK_TOKEN, Vocab};
use ringtrain_spec::{DataFormat, PairSpec, Split};

/// Id of `<bos>` in a target vocabulary: the decoder's input at its first step.
pub const BOS: u32 = 2;
/// Id of `<eos>` in a target vocabulary: ends every target sequence and every decoded output.
pub const EOS: u32 = 3;
/// Spelling of `<bos>`.
pub const BOS_TOKEN: &str = "<bos>";
/// Spelling of `<eos>`.
pub const EOS_TOKEN: &str = "<eos>";

/// One split's encoded pairs.
#[derive(Debug, Clone, Default)]
struct PairSplit {
    source: Vec<Vec<u32>>,
    target: Vec<Vec<u32>>,
    lines: Vec<u64>,
}

/// A prepared sequence-to-sequence dataset.
#[derive(Debug, Clone)]
pub struct PairData {
    file: String,
    source_vocab: Vocab,
    target_vocab: Vocab,
    splits: [PairSplit; 3],
}

/// A padded batch of pairs, all buffers row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    /// Source ids, mask and lengths (`[batch, source_len]`; an empty source is one `<unk>`).
    pub source: TextBatch,
    /// Decoder inputs `[batch, target_len]`: `<bos> y_1 … y_n`, padded with `<pad>`.
    pub decoder_input: Vec<u32>,
    /// Decoder targets `[batch, target_len]`: `y_1 … y_n <eos>`, padded with `<pad>`.
    pub decoder_target: Vec<u32>,
    /// `[batch, target_len]`: 1.0 where `decoder_target` is a real token (incl. `<eos>`).
    pub target_mask: Vec<f32>,
    /// Samples in the batch.
    pub batch: usize,
    /// Decoder steps: the longest target plus one (`<eos>`).
    pub target_len: usize,
}

impl PairBatch {
    /// Builds a batch from encoded sources and targets (targets without `<bos>`/`<eos>`).
    ///
    /// # Panics
    /// If `sources` and `targets` differ in length (a caller bug).
    pub fn new<S: AsRef<[u32]>, T: AsRef<[u32]>>(sources: &[S], targets: &[T]) -> PairBatch {
        assert_eq!(sources.len(), targets.len(), "one target per source");
        let source = TextBatch::new(sources, Vec::new());
        let batch = targets.len();
        let target_len = targets
            .iter()
            .map(|t| t.as_ref().len() + 1)
            .max()
            .unwrap_or(1);
        let mut decoder_input = vec![PAD; batch * target_len];
        let mut decoder_target = vec![PAD; batch * target_len];
        let mut target_mask = vec![0.0f32; batch * target_len];
        for (b, t) in targets.iter().enumerate() {
            let t = t.as_ref();
            let row = b * target_len;
            decoder_input[row] = BOS;
            decoder_input[row + 1..row + 1 + t.len()].copy_from_slice(t);
            decoder_target[row..row + t.len()].copy_from_slice(t);
            decoder_target[row + t.len()] = EOS;
            target_mask[row..row + t.len() + 1].fill(1.0);
        }
        PairBatch {
            source,
            decoder_input,
            decoder_target,
            target_mask,
            batch,
            target_len,
        }
    }
}

/// Builds the target vocabulary: `<pad>`, `<unk>`, `<bos>`, `<eos>`, then the training tokens by
/// descending frequency (ties by byte order), at most `max_vocab` entries in all.
fn target_vocab<'a>(
    tokenizer: Tokenizer,
    max_len: usize,
    train: impl IntoIterator<Item = &'a [String]>,
    min_freq: usize,
    max_vocab: usize,
) -> Vocab {
    // Built with room for every token, then cut after the special tokens are placed, so the
    // cut is by frequency among real tokens only.
    let ranked = Vocab::build(tokenizer, max_len, train, min_freq, usize::MAX);
    let mut tokens: Vec<String> = [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN]
        .iter()
        .map(|t| t.to_string())
        .collect();
    tokens.extend(
        ranked.tokens()[2..]
            .iter()
            .filter(|t| *t != BOS_TOKEN && *t != EOS_TOKEN)
            .take(max_vocab.saturating_sub(4))
            .cloned(),
    );
    Vocab::from_tokens(tokenizer, max_len, tokens)
}

impl PairData {
    /// Reads, shuffles by `seed`, splits, tokenizes and encodes a file of text pairs. With
    /// `fitted = Some((source, target))` those vocabularies are reused (evaluating a trained
    /// model) instead of being built from the train split.
    ///
    /// # Errors
    /// Read errors of the file (missing column, empty file, ...); [`DataError::WrongType`] for
    /// a cell that is not a string; [`DataError::SplitTooSmall`] when a split with a positive
    /// fraction gets no sample; [`DataError::FittedMismatch`] when a fitted vocabulary uses
    /// another tokenizer or maximum length than the spec, or a target vocabulary lacks
    /// `<bos>`/`<eos>` at their ids.
    pub fn load(
        source: &Source,
        format: DataFormat,
        split: &Split,
        spec: &PairSpec,
        seed: u64,
        fitted: Option<(&Vocab, &Vocab)>,
    ) -> Result<PairData, DataError> {
        let table = read_table(
            source,
            format,
            &[spec.source_column.as_str(), spec.target_column.as_str()],
        )?;
        let n = table.rows.len();
        let order = permutation(n, &mut chacha(seed, TEXT_SPLIT_STREAM));
        let tokenizer = Tokenizer {
            kind: spec.tokenizer,
            lowercase: spec.lowercase,
        };
        let mut samples = Vec::with_capacity(n);
        for row in 0..n {
            let mut src = tokenizer.tokenize(&table.text(row, 0, false)?);
            let mut tgt = tokenizer.tokenize(&table.text(row, 1, false)?);
            src.truncate(spec.max_source_len);
            tgt.truncate(spec.max_target_len);
            samples.push((src, tgt));
        }
        for (col, side) in [(0, 0usize), (1, 1)] {
            let empty = samples.iter().all(|(src, tgt)| {
                if side == 0 {
                    src.is_empty()
                } else {
                    tgt.is_empty()
                }
            });
            if empty {
                return Err(DataError::AllTextsEmpty {
                    file: table.file.clone(),
                    column: table.columns[col].clone(),
                    rows: n,
                });
            }
        }
        let parts = shuffled_parts(&table.file, &order, split)?;
        let (source_vocab, target_vocab) = match fitted {
            Some((s, t)) => {
                for (side, v, max_len) in [
                    ("source", s, spec.max_source_len),
                    ("target", t, spec.max_target_len),
                ] {
                    if v.tokenizer() != tokenizer || v.max_len() != max_len {
                        return Err(DataError::FittedMismatch {
                            reason: format!(
                                "the {side} vocabulary uses {:?} with max length {} but the spec asks {:?} with {}",
                                v.tokenizer(),
                                v.max_len(),
                                tokenizer,
                                max_len
                            ),
                        });
                    }
                }
                if t.token(BOS) != Some(BOS_TOKEN) || t.token(EOS) != Some(EOS_TOKEN) {
                    return Err(DataError::FittedMismatch {
                        reason: "the target vocabulary has no <bos>/<eos> at ids 2/3".into(),
                    });
                }
                (s.clone(), t.clone())
            }
            None => {
                let train = parts[SplitName::Train.index()];
                (
                    Vocab::build(
                        tokenizer,
                        spec.max_source_len,
                        train.iter().map(|&r| samples[r].0.as_slice()),
                        spec.min_freq,
                        spec.max_vocab,
                    ),
                    target_vocab(
                        tokenizer,
                        spec.max_target_len,
                        train.iter().map(|&r| samples[r].1.as_slice()),
                        spec.min_freq,
                        spec.max_vocab,
                    ),
                )
            }
        };
        let mut splits: [PairSplit; 3] = Default::default();
        for name in SplitName::ALL {
            let out = &mut splits[name.index()];
            for &row in parts[name.index()] {
                out.source.push(source_vocab.encode_tokens(&samples[row].0));
                out.target.push(target_vocab.encode_tokens(&samples[row].1));
                out.lines.push(table.rows[row].line);
            }
        }
        Ok(PairData {
            file: table.file,
            source_vocab,
            target_vocab,
            splits,
        })
    }

    /// Name of the source file.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The source vocabulary (store it in the checkpoint).
    pub fn source_vocab(&self) -> &Vocab {
        &self.source_vocab
    }

    /// The target vocabulary, with `<bos>` = [`BOS`] and `<eos>` = [`EOS`].
    pub fn target_vocab(&self) -> &Vocab {
        &self.target_vocab
    }

    /// Number of pairs in a split.
    pub fn len(&self, split: SplitName) -> usize {
        self.splits[split.index()].source.len()
    }

    /// Whether a split has no pairs.
    pub fn is_empty(&self, split: SplitName) -> bool {
        self.len(split) == 0
    }

    /// Encoded source of pair `i` of `split`.
    ///
    /// # Panics
    /// If `i >= len(split)`.
    pub fn source(&self, split: SplitName, i: usize) -> &[u32] {
        &self.splits[split.index()].source[i]
    }

    /// Encoded target of pair `i` of `split` (no `<bos>`/`<eos>`).
    ///
    /// # Panics
    /// If `i >= len(split)`.
    pub fn target(&self, split: SplitName, i: usize) -> &[u32] {
        &self.splits[split.index()].target[i]
    }

    /// File line of pair `i` of `split`.
    ///
    /// # Panics
    /// If `i >= len(split)`.
    pub fn line(&self, split: SplitName, i: usize) -> u64 {
        self.splits[split.index()].lines[i]
    }

    /// A padded batch of the pairs `indices` of `split`.
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn batch(&self, split: SplitName, indices: &[usize]) -> PairBatch {
        let s = &self.splits[split.index()];
        let sources: Vec<&[u32]> = indices.iter().map(|&i| s.source[i].as_slice()).collect();
        let targets: Vec<&[u32]> = indices.iter().map(|&i| s.target[i].as_slice()).collect();
        PairBatch::new(&sources, &targets)
    }
}

/// Turns decoded target ids back into text: tokens joined without a separator for the `char`
/// tokenizer, with single spaces for `word`; `<eos>` ends the text, other special tokens are
/// dropped.
pub fn detokenize(vocab: &Vocab, ids: &[u32]) -> String {
    let sep = match vocab.tokenizer().kind {
        ringtrain_spec::TokenizerKind::Char => "",
        ringtrain_spec::TokenizerKind::Word => " ",
    };
    let mut words = Vec::new();
    for &id in ids {
        if id == EOS {
            break;
        }
        if id == PAD || id == BOS {
            continue;
        }
        words.push(vocab.token(id).unwrap_or(UNK_TOKEN));
    }
    words.join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtrain_spec::TokenizerKind;

    #[test]
    fn batch_shifts_targets_and_masks_padding() {
        let b = PairBatch::new(&[vec![5u32, 6], vec![7]], &[vec![8u32], vec![9, 10, 11]]);
        assert_eq!(b.target_len, 4);
        assert_eq!(b.decoder_input, [BOS, 8, 0, 0, BOS, 9, 10, 11]);
        assert_eq!(b.decoder_target, [8, EOS, 0, 0, 9, 10, 11, EOS]);
        assert_eq!(b.target_mask, [1., 1., 0., 0., 1., 1., 1., 1.]);
        assert_eq!(b.source.ids, [5, 6, 7, 0]);
        assert_eq!(b.source.mask, [1., 1., 1., 0.]);
    }

    #[test]
    fn target_vocab_places_specials_first_and_respects_max_vocab() {
        let tok = Tokenizer {
            kind: TokenizerKind::Char,
            lowercase: false,
        };
        let seqs: Vec<Vec<String>> = vec![
            "aab".chars().map(String::from).collect(),
            "ac".chars().map(String::from).collect(),
        ];
        let v = target_vocab(tok, 10, seqs.iter().map(Vec::as_slice), 1, 6);
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]);
        assert_eq!(detokenize(&v, &[4, 5, 1, EOS, 4]), "ab<unk>");
    }
}
