//! Glue between prepared data and the model: which input block and head the task needs, how a
//! batch of plain buffers becomes tensors on a device, and which loss the task trains with.

use crate::error::TrainError;
use burn::prelude::*;
use burn::tensor::TensorData;
use ringtrain_data::{CorpusData, LmBatch, Prepared, SeriesData, SplitName, TextBatch, TextData};
use ringtrain_models::{Batch, HeadKind, InputKind, Inputs, loss};
use ringtrain_spec::{ForecastLoss, JobSpec, TaskSpec};

pub use crate::seq2seq_task::{decoder_config, pair_batch};

/// The targets of a batch, in the form the task's loss takes.
// One per batch in flight: the size difference of the token variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Targets {
    /// Normalized future values `[B, horizon * targets]`.
    Regression(Tensor<2>),
    /// Class indices `[B]`.
    Classes(Tensor<1, Int>),
    /// Decoder targets of a seq2seq batch, flattened like the model's `[B·T, V]` logits.
    Tokens {
        /// Target ids `[B·T]` (`y_1 … y_n <eos>`, padded).
        ids: Tensor<1, Int>,
        /// `[B·T]`: 1 at real target tokens, 0 at padding.
        mask: Tensor<1>,
        /// The mask on the host (the loss weights of the tokens).
        host_mask: Vec<f32>,
        /// Decoder steps `T` per sample.
        steps: usize,
    },
}

/// The training loss of a task: maps the model output and the batch targets to a one-element
/// loss tensor.
pub trait Objective {
    /// The mean loss of a batch.
    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1>;
}

/// Mean squared error on regression targets (the benchmark's objective).
#[derive(Debug, Default, Clone, Copy)]
pub struct MseObjective;

impl Objective for MseObjective {
    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match targets {
            Targets::Regression(y) => loss::mse(output, y),
            Targets::Classes(_) | Targets::Tokens { .. } => {
                panic!("MseObjective needs regression targets")
            }
        }
    }
}

/// Prepared data plus what the task derives from the spec.
#[derive(Debug, Clone)]
pub struct TaskData {
    data: Prepared,
    task: TaskSpec,
    /// Per-class loss weights in class-index order (classification with `class_weights`), as
    /// the spec gives them; the loss tensor takes them rounded to f32.
    class_weights: Option<Vec<f64>>,
}

impl TaskData {
    /// Wraps prepared data for the spec's task.
    ///
    /// # Errors
    /// [`TrainError::UnknownClassWeight`] when `task.class_weights` names a class the data does
    /// not have.
    pub fn new(spec: &JobSpec, data: Prepared) -> Result<TaskData, TrainError> {
        let class_weights = match (&spec.task, &data) {
            (TaskSpec::Classify { class_weights, .. }, Prepared::Text(t))
                if !class_weights.is_empty() =>
            {
                let names = t.labels().names();
                let mut weights = vec![1.0f64; names.len()];
                for (label, w) in class_weights {
                    let Some(id) = t.labels().id(label) else {
                        return Err(TrainError::UnknownClassWeight {
                            label: label.clone(),
                            known: names.join(", "),
                        });
                    };
                    weights[id as usize] = *w;
                }
                Some(weights)
            }
            _ => None,
        };
        Ok(TaskData {
            data,
            task: spec.task.clone(),
            class_weights,
        })
    }

    /// The prepared data.
    pub fn data(&self) -> &Prepared {
        &self.data
    }

    /// Number of samples in a split.
    pub fn len(&self, split: SplitName) -> usize {
        self.data.len(split)
    }

    /// The model's input block for this data.
    pub fn input_kind(&self) -> InputKind {
        match &self.data {
            Prepared::Series(s) => InputKind::Numeric {
                features: s.features().len(),
            },
            Prepared::Text(t) => InputKind::Tokens {
                vocab: t.vocab().len(),
            },
            Prepared::Pairs(p) => InputKind::Tokens {
                vocab: p.source_vocab().len(),
            },
            Prepared::Corpus(c) => InputKind::Tokens {
                vocab: c.vocab().len(),
            },
        }
    }

    /// Whether this is a language model: windows are consecutive chunks of streams, taken in
    /// order, and the recurrent state is carried from one chunk to the next.
    pub fn is_language_model(&self) -> bool {
        matches!(self.data, Prepared::Corpus(_))
    }

    /// The model's head for this task.
    pub fn head_kind(&self) -> HeadKind {
        match (&self.data, &self.task) {
            (Prepared::Pairs(p), task) => HeadKind::Decoder(decoder_config(task, p.target_vocab())),
            (Prepared::Corpus(c), _) => HeadKind::NextToken {
                vocab: c.vocab().len(),
            },
            (Prepared::Text(t), TaskSpec::Classify { pooling, .. }) => HeadKind::Classes {
                classes: t.labels().len(),
                pooling: *pooling,
            },
            (Prepared::Series(s), _) => HeadKind::Regression {
                outputs: s.horizon() * s.targets().len(),
            },
            (Prepared::Text(t), _) => HeadKind::Classes {
                classes: t.labels().len(),
                pooling: ringtrain_spec::Pooling::Last,
            },
        }
    }

    /// The loss weight of every sample of `targets`, in batch order, when the task's loss is a
    /// weighted mean `Σ w_i · l_i / Σ w_i` with unequal weights (cross-entropy with
    /// `task.class_weights`: `w_i` is the weight of sample `i`'s class); `None` when the loss is
    /// a plain mean (MSE, MAE, unweighted cross-entropy), where every sample weighs the same.
    ///
    /// Combining the losses of parts of a batch (micro-batches, data-parallel replicas) into the
    /// loss of the whole needs these: part `k` weighs `Σ_{i∈k} w_i / Σ_i w_i`.
    ///
    /// For seq2seq the loss is the mean over the batch's valid target tokens, so the weights
    /// are per token (1 valid, 0 padding) in the `[B·T]` order of [`Targets::Tokens`].
    pub fn sample_weights(&self, targets: &Targets) -> Option<Vec<f64>> {
        if let Targets::Tokens { host_mask, .. } = targets {
            return Some(host_mask.iter().map(|&m| f64::from(m)).collect());
        }
        let (Some(weights), Targets::Classes(y)) = (&self.class_weights, targets) else {
            return None;
        };
        // Labels are class indices the data produced, so they index `weights`; an int tensor
        // always converts to i64.
        let labels: Vec<i64> = y
            .to_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default();
        Some(
            labels
                .iter()
                .map(|&l| {
                    usize::try_from(l)
                        .ok()
                        .and_then(|l| weights.get(l))
                        .copied()
                        .unwrap_or(1.0)
                })
                .collect(),
        )
    }

    /// Builds the tensors of the samples `indices` of `split` on `device`.
    pub fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        match &self.data {
            Prepared::Series(s) => series_batch(s, split, indices, device),
            Prepared::Text(t) => text_batch(t, split, indices, device),
            Prepared::Pairs(p) => pair_batch(p.batch(split, indices), device),
            Prepared::Corpus(c) => corpus_batch(c, split, indices, device),
        }
    }
}

impl Objective for TaskData {
    /// MSE or MAE on normalized targets, or (weighted) cross-entropy on logits.
    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match (targets, &self.task) {
            (Targets::Regression(y), TaskSpec::Forecast { loss: l, .. }) => match l {
                ForecastLoss::Mse => loss::mse(output, y),
                ForecastLoss::Mae => loss::mae(output, y),
            },
            (Targets::Regression(y), _) => loss::mse(output, y),
            (Targets::Tokens { ids, mask, .. }, _) => {
                crate::seq2seq_task::token_loss(output, ids, mask)
            }
            (Targets::Classes(labels), _) => {
                let weights = self.class_weights.as_ref().map(|w| {
                    let w: Vec<f32> = w.iter().map(|&x| x as f32).collect();
                    let n = w.len();
                    Tensor::<1>::from_data(TensorData::new(w, [n]), &output.device())
                });
                loss::cross_entropy(output, labels, weights)
            }
        }
    }
}

/// Numeric windows as `[B, window, features]` inputs with an all-valid mask.
pub fn series_batch(
    s: &SeriesData,
    split: SplitName,
    indices: &[usize],
    device: &Device,
) -> (Batch, Targets) {
    let b = s.batch(split, indices);
    let y = Tensor::<2>::from_data(
        TensorData::new(b.y, [b.batch, b.horizon * b.outputs]),
        device,
    );
    (
        numeric_batch(b.x, b.batch, b.window, b.features, device),
        Targets::Regression(y),
    )
}

/// Windows of a corpus (one chunk of some streams, see [`CorpusData::batch`]) as `[B, T]`
/// token ids with next-token targets `[B·T]` (row `b·T + t`, the order of the model's
/// per-step logits), so the classification cross-entropy is the mean loss per token.
pub fn corpus_batch(
    c: &CorpusData,
    split: SplitName,
    indices: &[usize],
    device: &Device,
) -> (Batch, Targets) {
    lm_tensors(c.batch(split, indices), device)
}

/// The tensors of a language-model batch: inputs with an all-valid mask, and targets.
pub fn lm_tensors(b: LmBatch, device: &Device) -> (Batch, Targets) {
    let ids: Vec<i64> = b.ids.iter().map(|&i| i64::from(i)).collect();
    let targets: Vec<i64> = b.targets.iter().map(|&i| i64::from(i)).collect();
    let n = targets.len();
    let batch = Batch {
        inputs: Inputs::Tokens(Tensor::<2, Int>::from_data(
            TensorData::new(ids, [b.batch, b.seq_len]),
            device,
        )),
        mask: Tensor::<2>::ones([b.batch, b.seq_len], device),
    };
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device);
    (batch, Targets::Classes(targets))
}

/// Token sequences padded to the longest in the batch, with their mask and class indices.
pub fn text_batch(
    t: &TextData,
    split: SplitName,
    indices: &[usize],
    device: &Device,
) -> (Batch, Targets) {
    let b = t.batch(split, indices);
    let labels: Vec<i64> = b.labels.iter().map(|&l| i64::from(l)).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [b.batch]), device);
    (token_batch(b, device), Targets::Classes(labels))
}

/// The model input of a padded token batch (labels, if any, are ignored).
pub fn token_batch(b: TextBatch, device: &Device) -> Batch {
    let ids: Vec<i64> = b.ids.iter().map(|&i| i64::from(i)).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b.batch, b.seq_len]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(b.mask, [b.batch, b.seq_len]), device);
    Batch {
        inputs: Inputs::Tokens(ids),
        mask,
    }
}

/// The model input of numeric windows `[batch, window, features]` (all steps valid).
pub fn numeric_batch(
    x: Vec<f32>,
    batch: usize,
    window: usize,
    features: usize,
    device: &Device,
) -> Batch {
    let x = Tensor::<3>::from_data(TensorData::new(x, [batch, window, features]), device);
    Batch {
        inputs: Inputs::Numeric(x),
        mask: Tensor::<2>::ones([batch, window], device),
    }
}
