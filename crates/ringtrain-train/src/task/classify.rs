//! Text classification: token sequences in, one class per sequence out (pooled over the steps),
//! cross-entropy with optional per-class weights, accuracy/precision/recall/F1 next to the
//! majority-class baseline.

use super::{EvalSums, LossSums, Task};
use crate::error::TrainError;
use crate::metrics::ClassificationAccumulator;
use crate::report::{EvalReport, TaskMetrics, shard_range};
use crate::tensors::{Targets, argmax, plain_loss, text_batch, to_vec};
use burn::prelude::*;
use burn::tensor::TensorData;
use ringtrain_data::{Fitted, SplitName, TextData, sequential_batches};
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Model, loss};
use ringtrain_spec::{Pooling, TaskKind};

/// The classification task over its labelled texts.
#[derive(Debug)]
pub struct Classify {
    data: TextData,
    pooling: Pooling,
    /// Per-class loss weights in class-index order (`task.class_weights`), as the spec gives
    /// them; the loss tensor takes them rounded to f32.
    class_weights: Option<Vec<f64>>,
}

impl Classify {
    /// Classification of `data` with `pooling`, the loss weighted by `class_weights` (by class
    /// name; classes not named weigh 1).
    ///
    /// # Errors
    /// [`TrainError::UnknownClassWeight`] when `class_weights` names a class the data does not
    /// have.
    pub fn new(
        data: TextData,
        pooling: Pooling,
        class_weights: &[(String, f64)],
    ) -> Result<Classify, TrainError> {
        let class_weights = if class_weights.is_empty() {
            None
        } else {
            let names = data.labels().names();
            let mut weights = vec![1.0f64; names.len()];
            for (label, w) in class_weights {
                let Some(id) = data.labels().id(label) else {
                    return Err(TrainError::UnknownClassWeight {
                        label: label.clone(),
                        known: names.join(", "),
                    });
                };
                weights[id as usize] = *w;
            }
            Some(weights)
        };
        Ok(Classify {
            data,
            pooling,
            class_weights,
        })
    }
}

/// The model shape of a classifier checkpoint (`None` when `fitted` is not a text vocabulary
/// with labels).
pub(super) fn shape(pooling: Pooling, fitted: &Fitted) -> Option<(InputKind, HeadKind)> {
    let Fitted::Text { vocab, labels } = fitted else {
        return None;
    };
    Some((
        InputKind::Tokens { vocab: vocab.len() },
        HeadKind::Classes {
            classes: labels.len(),
            pooling,
        },
    ))
}

impl Task for Classify {
    fn kind(&self) -> TaskKind {
        TaskKind::Classify
    }

    fn len(&self, split: SplitName) -> usize {
        self.data.len(split)
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Tokens {
            vocab: self.data.vocab().len(),
        }
    }

    fn head_kind(&self) -> HeadKind {
        HeadKind::Classes {
            classes: self.data.labels().len(),
            pooling: self.pooling,
        }
    }

    fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        text_batch(&self.data, split, indices, device)
    }

    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match targets {
            Targets::Classes(labels) => {
                let weights = self.class_weights.as_ref().map(|w| {
                    let w: Vec<f32> = w.iter().map(|&x| x as f32).collect();
                    let n = w.len();
                    Tensor::<1>::from_data(TensorData::new(w, [n]), &output.device())
                });
                loss::cross_entropy(output, labels, weights)
            }
            other @ (Targets::Regression(_) | Targets::Tokens { .. }) => plain_loss(output, other),
        }
    }

    /// `w_i` is the weight of sample `i`'s class (with `task.class_weights`).
    fn sample_weights(&self, targets: &Targets) -> Option<Vec<f64>> {
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

    fn eval_shard(
        &self,
        model: &Model,
        split: SplitName,
        rank: usize,
        world: usize,
        batch_size: usize,
        device: &Device,
    ) -> Result<EvalSums, TrainError> {
        let t = &self.data;
        let range = shard_range(self.len(split), rank, world);
        let offset = range.start;
        let ctx = ForwardCtx::eval();
        let classes = t.labels().len();
        let mut sums = LossSums::default();
        let mut acc = ClassificationAccumulator::new(classes);
        for r in sequential_batches(range.len(), batch_size) {
            let idx: Vec<usize> = ((r.start + offset)..(r.end + offset)).collect();
            let (batch, targets) = self.batch(split, &idx, device);
            let out = model.forward(batch, &ctx);
            let logits = to_vec(out.clone());
            sums.add(self, out, targets, idx.len());
            let predicted: Vec<usize> = logits.chunks_exact(classes).map(argmax).collect();
            let truth: Vec<usize> = idx
                .iter()
                .map(|&i| t.class_ids(split)[i] as usize)
                .collect();
            acc.add_batch(&predicted, &truth)?;
        }
        Ok(EvalSums {
            flat: sums.flat(acc.to_flat()),
            forecasts: None,
        })
    }

    fn report(&self, split: SplitName, sums: EvalSums) -> Result<EvalReport, TrainError> {
        let t = &self.data;
        let (loss, rest) = LossSums::parse(&sums.flat)?;
        let acc = ClassificationAccumulator::from_flat(t.labels().len(), rest)?;
        let mut train_counts = vec![0u64; t.labels().len()];
        for &c in t.class_ids(SplitName::Train) {
            train_counts[c as usize] += 1;
        }
        Ok(EvalReport {
            split,
            samples: loss.samples,
            loss: loss.mean(),
            metrics: TaskMetrics::Classification(acc.report(t.labels().names(), &train_counts)?),
            forecasts: None,
        })
    }
}
