//! ringtrain's datasets: reading CSV/TSV/JSONL files (or the bundled `builtin:` series),
//! splitting them into train/val/test, fitting normalization and vocabularies on the training split
//! only, planning each epoch's sample order across data-parallel ranks, and cutting batches as
//! plain `Vec<f32>`/`Vec<u32>` buffers that the trainer turns into tensors (this crate knows
//! nothing of burn).
//!
//! Entry point: [`load`] turns a validated [`JobSpec`] into [`Prepared`] data; [`ShardPlan`]
//! orders its samples per epoch; `SeriesData::batch` / `TextData::batch` build batches. Bad data
//! is a [`DataError`] naming file, line and column — never a panic, never a silently dropped row.
//! [`synth`] generates the seeded datasets the tests and examples use.

mod batch;
mod builtin;
mod corpus;
mod error;
mod normalize;
mod order;
mod pairs;
mod series;
mod shard;
mod source;
pub mod stat_baseline;
pub mod synth;
pub mod synth_pairs;
mod table;
mod text;
mod vocab;

pub use batch::{SeriesBatch, TextBatch};
pub use builtin::Builtin;
pub use corpus::{CorpusData, EOL_TOKEN, LmBatch, corpus_tokens, join_tokens};
pub use error::{ColumnRef, DataError, LabelOrigin};
pub use normalize::{ColumnScale, Normalizer};
pub use order::{below, chacha, permutation, split_sizes};
pub use pairs::{BOS, BOS_TOKEN, EOS, EOS_TOKEN, PairBatch, PairData, detokenize};
pub use series::{PredictInput, SeriesData, predict_input};
pub use shard::{ShardPlan, sequential_batches};
pub use source::{Source, check_file};
pub use text::TextData;
pub use vocab::{LabelSet, PAD, PAD_TOKEN, Tokenizer, UNK, UNK_TOKEN, Vocab};

use ringtrain_spec::{JobSpec, TaskSpec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// One of the three parts of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    /// The part the model is fitted on (and normalization/vocabulary are fitted on).
    Train,
    /// The part early stopping and model selection look at.
    Val,
    /// The held-out part reported at the end.
    Test,
}

impl SplitName {
    /// The three splits in file/chronological order.
    pub const ALL: [SplitName; 3] = [SplitName::Train, SplitName::Val, SplitName::Test];

    /// Position in [`SplitName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        })
    }
}

/// A dataset ready for training.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Windowed numeric series (forecast task).
    Series(SeriesData),
    /// Encoded labelled text (classify task).
    Text(TextData),
    /// Encoded source/target pairs (seq2seq task).
    Pairs(PairData),
    /// A token stream cut into streams and chunks (language model task).
    Corpus(CorpusData),
}

impl Prepared {
    /// Number of samples in a split.
    pub fn len(&self, split: SplitName) -> usize {
        match self {
            Prepared::Series(s) => s.len(split),
            Prepared::Text(t) => t.len(split),
            Prepared::Pairs(p) => p.len(split),
            Prepared::Corpus(c) => c.len(split),
        }
    }

    /// Whether a split has no samples.
    pub fn is_empty(&self, split: SplitName) -> bool {
        self.len(split) == 0
    }

    /// The state fitted on the train split, to store in a checkpoint and pass back to
    /// [`load_with`] at evaluation time.
    pub fn fitted(&self) -> Fitted {
        match self {
            Prepared::Series(s) => Fitted::Series(s.normalizer().clone()),
            Prepared::Text(t) => Fitted::Text {
                vocab: t.vocab().clone(),
                labels: t.labels().clone(),
            },
            Prepared::Pairs(p) => Fitted::Pairs {
                source: p.source_vocab().clone(),
                target: p.target_vocab().clone(),
            },
            Prepared::Corpus(c) => Fitted::Corpus {
                vocab: c.vocab().clone(),
            },
        }
    }
}

/// What preparation learned from the training split; serde-serializable for checkpoints
/// (as `{"kind": "series" | "text", "state": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "state", rename_all = "snake_case")]
pub enum Fitted {
    /// The series normalizer.
    Series(Normalizer),
    /// The vocabulary and the label set.
    Text {
        /// Token vocabulary.
        vocab: Vocab,
        /// Classes in output order.
        labels: LabelSet,
    },
    /// The source and target vocabularies of a seq2seq task.
    Pairs {
        /// Source-side vocabulary.
        source: Vocab,
        /// Target-side vocabulary (with `<bos>` and `<eos>`).
        target: Vocab,
    },
    /// The vocabulary of a language model's corpus.
    Corpus {
        /// Token vocabulary.
        vocab: Vocab,
    },
}

impl Fitted {
    /// Whether the model's outputs are in scaled units that only a reader knowing target scaling
    /// can undo (a series normalizer with residual scales); checkpoints record it in their
    /// header version.
    pub fn scales_targets(&self) -> bool {
        match self {
            Fitted::Series(n) => n.residuals.is_some(),
            Fitted::Text { .. } | Fitted::Pairs { .. } | Fitted::Corpus { .. } => false,
        }
    }
}

/// Loads and prepares the dataset of `spec`, fitting normalization or vocabulary on its train
/// split. A relative `spec.data.path` is resolved against `base_dir` (the spec file's directory);
/// `builtin:air-passengers` and `builtin:vic-elec` select the bundled series (see [`Builtin`]).
///
/// # Errors
/// Every [`DataError`] a bad file, column, cell, label or split size produces, naming the file,
/// line and column. (The data settings come with the task's [`TaskSpec`] variant, so a task cannot
/// be handed another kind's data.)
pub fn load(spec: &JobSpec, base_dir: &Path) -> Result<Prepared, DataError> {
    load_with(spec, base_dir, None)
}

/// Like [`load`], but tokens are encoded with `vocab`, a pretrained model's vocabulary
/// (`init_from` taking its embedding), instead of one built on the train split. Only token
/// tasks that read one vocabulary can adopt it: `classify` (its labels still come from the spec
/// or the train split) and `language_model`.
///
/// # Errors
/// As [`load`]; [`DataError::FittedMismatch`] when `vocab` uses another tokenizer or
/// lowercasing than the spec, or the task is `forecast` (no tokens) or `seq2seq` (two
/// vocabularies).
pub fn load_with_vocab(
    spec: &JobSpec,
    base_dir: &Path,
    vocab: &Vocab,
) -> Result<Prepared, DataError> {
    let source = Source::resolve(&spec.data.path, base_dir)?;
    check_file(&source, spec.limits.max_data_bytes)?;
    let refuse = |why: &str| {
        Err(DataError::FittedMismatch {
            reason: format!("a pretrained vocabulary cannot be used by {why}"),
        })
    };
    match &spec.task {
        TaskSpec::Classify { text: t, .. } => TextData::load_with_vocab(
            &source,
            spec.data.format,
            &spec.data.split,
            t,
            spec.seed,
            vocab,
        )
        .map(Prepared::Text),
        TaskSpec::LanguageModel { bptt, corpus: c } => CorpusData::load(
            &source,
            &spec.data.split,
            c,
            spec.train.batch_size,
            *bptt,
            Some(&vocab.clone().with_max_len(usize::MAX)),
        )
        .map(Prepared::Corpus),
        TaskSpec::Forecast { .. } => refuse("a forecast (its inputs are numbers, not tokens)"),
        TaskSpec::Seq2seq { .. } => {
            refuse("a seq2seq model (it has separate source and target vocabularies)")
        }
    }
}

/// Like [`load`], but with `fitted = Some(..)` reuses a trained model's normalizer or vocabulary
/// and labels instead of fitting them (evaluating a checkpoint on the same or another file).
///
/// # Errors
/// As [`load`], plus [`DataError::FittedMismatch`] when `fitted` is of the other data kind or
/// names other columns or another tokenizer than the spec.
pub fn load_with(
    spec: &JobSpec,
    base_dir: &Path,
    fitted: Option<&Fitted>,
) -> Result<Prepared, DataError> {
    let source = Source::resolve(&spec.data.path, base_dir)?;
    check_file(&source, spec.limits.max_data_bytes)?;
    let kind_mismatch = |data| DataError::FittedMismatch {
        reason: format!("the checkpoint holds {data} state but the spec describes other data"),
    };
    match &spec.task {
        TaskSpec::Forecast {
            horizon,
            season,
            series: s,
            ..
        } => {
            let normalizer = match fitted {
                None => None,
                Some(Fitted::Series(n)) => Some(n),
                Some(Fitted::Text { .. }) => return Err(kind_mismatch("text")),
                Some(Fitted::Pairs { .. }) => return Err(kind_mismatch("pairs")),
                Some(Fitted::Corpus { .. }) => return Err(kind_mismatch("corpus")),
            };
            SeriesData::load(
                &source,
                spec.data.format,
                &spec.data.split,
                s,
                *horizon,
                *season,
                normalizer,
            )
            .map(Prepared::Series)
        }
        TaskSpec::Classify { text: t, .. } => {
            let state = match fitted {
                None => None,
                Some(Fitted::Text { vocab, labels }) => Some((vocab, labels)),
                Some(Fitted::Series(_)) => return Err(kind_mismatch("series")),
                Some(Fitted::Pairs { .. }) => return Err(kind_mismatch("pairs")),
                Some(Fitted::Corpus { .. }) => return Err(kind_mismatch("corpus")),
            };
            TextData::load(
                &source,
                spec.data.format,
                &spec.data.split,
                t,
                spec.seed,
                state,
            )
            .map(Prepared::Text)
        }
        TaskSpec::Seq2seq { pairs: p, .. } => {
            let state = match fitted {
                None => None,
                Some(Fitted::Pairs { source, target }) => Some((source, target)),
                Some(Fitted::Series(_)) => return Err(kind_mismatch("series")),
                Some(Fitted::Text { .. }) => return Err(kind_mismatch("text")),
                Some(Fitted::Corpus { .. }) => return Err(kind_mismatch("corpus")),
            };
            PairData::load(
                &source,
                spec.data.format,
                &spec.data.split,
                p,
                spec.seed,
                state,
            )
            .map(Prepared::Pairs)
        }
        TaskSpec::LanguageModel { bptt, corpus: c } => {
            let vocab = match fitted {
                None => None,
                Some(Fitted::Corpus { vocab }) => Some(vocab),
                Some(Fitted::Series(_)) => return Err(kind_mismatch("series")),
                Some(Fitted::Text { .. }) => return Err(kind_mismatch("text")),
                Some(Fitted::Pairs { .. }) => return Err(kind_mismatch("pairs")),
            };
            CorpusData::load(
                &source,
                &spec.data.split,
                c,
                spec.train.batch_size,
                *bptt,
                vocab,
            )
            .map(Prepared::Corpus)
        }
    }
}
