//! Batches of plain buffers as tensors on a device, the targets a loss takes and the
//! [`Objective`] trait: the task-independent vocabulary below [`crate::task`] (no module of this
//! crate is imported here, so every task module and the loop can use it without a cycle).

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::log_softmax;
use ringtrain_data::{CorpusData, LmBatch, SeriesData, SplitName, TextBatch, TextData};
use ringtrain_models::{Batch, Inputs, loss};

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

/// The natural loss of a form of targets with no task settings: MSE on regression targets,
/// unweighted cross-entropy on class indices, the masked token cross-entropy on tokens. A
/// task's own loss handles its own targets and falls back on this for the forms it never
/// produces, so no combination panics.
pub fn plain_loss(output: Tensor<2>, targets: Targets) -> Tensor<1> {
    match targets {
        Targets::Regression(y) => loss::mse(output, y),
        Targets::Classes(labels) => loss::cross_entropy(output, labels, None),
        Targets::Tokens { ids, mask, .. } => token_loss(output, ids, mask),
    }
}

/// Mean cross-entropy of logits `[N, V]` against ids `[N]` over the rows where `mask` is 1.
pub fn token_loss(logits: Tensor<2>, ids: Tensor<1, Int>, mask: Tensor<1>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let nll = log_softmax(logits, 1)
        .gather(1, ids.reshape([n, 1]))
        .reshape([n])
        .neg();
    (nll * mask.clone()).sum() / mask.sum()
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

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// A float tensor's values, row-major.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    let data = t.into_data();
    match data.as_slice::<f32>() {
        Ok(s) => s.to_vec(),
        Err(_) => data
            .convert::<f32>()
            .as_slice::<f32>()
            .map(<[f32]>::to_vec)
            .unwrap_or_default(),
    }
}
