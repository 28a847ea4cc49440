//! Labelled text for classification.
//!
//! Rows are read (text and label columns), shuffled by the job seed (ChaCha8, so the split does
//! not depend on the file's order, e.g. all positives first), then cut into train/val/test by the
//! spec's fractions. Tokenizing, the vocabulary ([`Vocab`], built on the train split only) and the
//! label set ([`LabelSet`]: the spec's list or the sorted labels seen in train) follow. Labels are
//! compared after trimming surrounding whitespace; a JSON integer label is read as its decimal
//! text. A val/test label absent from train is an error naming its file and line, never a silent
//! drop: the model could not predict that class anyway, so the split is not what the user meant.

use crate::SplitName;
use crate::batch::TextBatch;
use crate::error::DataError;
use crate::order::{TEXT_SPLIT_STREAM, chacha, permutation, shuffled_parts};
use crate::source::{Source, read_table};
use crate::vocab::{LabelSet, Tokenizer, Vocab};
use ringtrain_spec::{DataFormat, Split, TextSpec};

/// One split's encoded samples.
#[derive(Debug, Clone, Default)]
struct TextSplit {
    ids: Vec<Vec<u32>>,
    labels: Vec<u32>,
    lines: Vec<u64>,
}

/// A prepared text classification dataset.
#[derive(Debug, Clone)]
pub struct TextData {
    file: String,
    vocab: Vocab,
    labels: LabelSet,
    splits: [TextSplit; 3],
}

impl TextData {
    /// Reads, shuffles by `seed`, splits, tokenizes and encodes a labelled text file. With
    /// `fitted = Some((vocab, labels))` those are reused (evaluation of a trained model) instead
    /// of being built from the train split.
    ///
    /// # Errors
    /// Read errors of the file; [`DataError::WrongType`] for a non-string text or a label that is
    /// neither string nor integer; [`DataError::SplitTooSmall`] when a split with a positive
    /// fraction gets no sample; [`DataError::UnknownLabel`] for a label outside the label set.
    pub fn load(
        source: &Source,
        format: DataFormat,
        split: &Split,
        spec: &TextSpec,
        seed: u64,
        fitted: Option<(&Vocab, &LabelSet)>,
    ) -> Result<TextData, DataError> {
        let (vocab, labels) = fitted.unzip();
        Self::load_inner(source, format, split, spec, seed, vocab, labels)
    }

    /// As [`TextData::load`] without a fitted state, but encoding with `vocab` (a pretrained
    /// model's) instead of a vocabulary built on the train split; the labels are still taken
    /// from the spec or the train split.
    ///
    /// # Errors
    /// As [`TextData::load`]; [`DataError::FittedMismatch`] when `vocab` uses another tokenizer
    /// or lowercasing than the spec.
    pub fn load_with_vocab(
        source: &Source,
        format: DataFormat,
        split: &Split,
        spec: &TextSpec,
        seed: u64,
        vocab: &Vocab,
    ) -> Result<TextData, DataError> {
        // The pretrained vocabulary's truncation length is its own task's (a corpus has none).
        let vocab = vocab.clone().with_max_len(spec.max_len);
        Self::load_inner(source, format, split, spec, seed, Some(&vocab), None)
    }

    fn load_inner(
        source: &Source,
        format: DataFormat,
        split: &Split,
        spec: &TextSpec,
        seed: u64,
        fitted_vocab: Option<&Vocab>,
        fitted_labels: Option<&LabelSet>,
    ) -> Result<TextData, DataError> {
        let table = read_table(
            source,
            format,
            &[spec.text_column.as_str(), spec.label_column.as_str()],
        )?;
        let n = table.rows.len();
        let order = permutation(n, &mut chacha(seed, TEXT_SPLIT_STREAM));
        let tokenizer = Tokenizer {
            kind: spec.tokenizer,
            lowercase: spec.lowercase,
        };
        // Parse every row in file order first, so the first bad cell reported is the first in
        // the file, whatever the shuffle.
        let mut samples = Vec::with_capacity(n);
        for row in 0..n {
            let text = table.text(row, 0, false)?;
            let label = table.text(row, 1, true)?.trim().to_string();
            let mut tokens = tokenizer.tokenize(&text);
            tokens.truncate(spec.max_len);
            samples.push((tokens, label));
        }
        if samples.iter().all(|(tokens, _)| tokens.is_empty()) {
            return Err(DataError::AllTextsEmpty {
                file: table.file.clone(),
                column: table.columns[0].clone(),
                rows: n,
            });
        }
        // Split sizes are checked after every row parsed, so a broken file is reported as such
        // rather than as a split problem.
        let parts = shuffled_parts(&table.file, &order, split)?;

        let train = parts[SplitName::Train.index()];
        let vocab = match fitted_vocab {
            Some(v) => {
                if v.tokenizer() != tokenizer || v.max_len() != spec.max_len {
                    return Err(DataError::FittedMismatch {
                        reason: format!(
                            "the vocabulary uses {:?} with max_len {} but the spec asks {:?} with max_len {}",
                            v.tokenizer(),
                            v.max_len(),
                            tokenizer,
                            spec.max_len
                        ),
                    });
                }
                v.clone()
            }
            None => Vocab::build(
                tokenizer,
                spec.max_len,
                train.iter().map(|&r| samples[r].0.as_slice()),
                spec.min_freq,
                spec.max_vocab,
            ),
        };
        let labels = match (fitted_labels, &spec.labels) {
            (Some(l), _) => l.clone(),
            (None, Some(list)) => LabelSet::explicit(list.clone()),
            (None, None) => LabelSet::from_train(train.iter().map(|&r| samples[r].1.as_str())),
        };

        let mut class = Vec::with_capacity(n);
        for (row, (_, label)) in samples.iter().enumerate() {
            class.push(labels.id_at(
                label,
                &table.file,
                table.rows[row].line,
                &table.columns[1],
            )?);
        }
        let mut splits: [TextSplit; 3] = Default::default();
        for name in SplitName::ALL {
            let out = &mut splits[name.index()];
            for &row in parts[name.index()] {
                out.ids.push(vocab.encode_tokens(&samples[row].0));
                out.labels.push(class[row]);
                out.lines.push(table.rows[row].line);
            }
        }
        Ok(TextData {
            file: table.file,
            vocab,
            labels,
            splits,
        })
    }

    /// Name of the source file.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The vocabulary (built on the train split; store it in the checkpoint).
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The classes in output order (store them in the checkpoint).
    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    /// Number of samples in a split.
    pub fn len(&self, split: SplitName) -> usize {
        self.splits[split.index()].ids.len()
    }

    /// Whether a split has no samples.
    pub fn is_empty(&self, split: SplitName) -> bool {
        self.len(split) == 0
    }

    /// Encoded token ids of sample `i` of `split` (possibly empty).
    ///
    /// # Panics
    /// If `i >= len(split)`.
    pub fn ids(&self, split: SplitName, i: usize) -> &[u32] {
        &self.splits[split.index()].ids[i]
    }

    /// Class ids of all samples of `split`, in sample order.
    pub fn class_ids(&self, split: SplitName) -> &[u32] {
        &self.splits[split.index()].labels
    }

    /// File line of sample `i` of `split` (to point at misclassified rows).
    ///
    /// # Panics
    /// If `i >= len(split)`.
    pub fn line(&self, split: SplitName, i: usize) -> u64 {
        self.splits[split.index()].lines[i]
    }

    /// A padded batch of the samples `indices` of `split`.
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn batch(&self, split: SplitName, indices: &[usize]) -> TextBatch {
        let s = &self.splits[split.index()];
        let seqs: Vec<&[u32]> = indices.iter().map(|&i| s.ids[i].as_slice()).collect();
        TextBatch::new(&seqs, indices.iter().map(|&i| s.labels[i]).collect())
    }
}
