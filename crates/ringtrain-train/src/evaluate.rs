//! Evaluation of a model on one split: loss and the task's metrics in original units, next to
//! the trivial baselines a practitioner compares against (majority class; naive and
//! seasonal-naive forecasts).

use crate::error::TrainError;
use crate::group::Group;
use crate::metrics::{
    ClassificationAccumulator, ClassificationReport, ForecastAccumulator, ForecastReport,
    LanguageModelReport, TranslationAccumulator, TranslationReport,
};
use crate::task::{Objective, Targets, TaskData};
use burn::prelude::*;
use ringtrain_data::{Prepared, SplitName, sequential_batches};
use ringtrain_models::{ForwardCtx, Model};
use ringtrain_spec::MonitorMetric;
use serde::{Deserialize, Serialize};

/// The task-specific metrics of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskMetrics {
    /// Accuracy, precision/recall/F1, confusion matrix, majority baseline.
    Classification(ClassificationReport),
    /// MSE/RMSE/MAE/MAPE of the model and the baselines.
    Forecast(ForecastReport),
    /// Corpus BLEU-4, token accuracy and exact match (seq2seq).
    Translation(TranslationReport),
    /// Perplexity, bits per token, next-token accuracy, unigram baseline.
    LanguageModel(LanguageModelReport),
}

/// Result of evaluating one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Split evaluated.
    pub split: SplitName,
    /// Samples evaluated (each exactly once).
    pub samples: usize,
    /// The training loss of the whole split (normalized units for forecasts): the mean over the
    /// samples, or for a class-weighted loss the weighted mean `Σ w·l / Σ w`, independent of
    /// how the split was batched or sharded.
    pub loss: f64,
    /// Task metrics.
    pub metrics: TaskMetrics,
    /// Forecasts and targets in original units, `[samples, outputs]` row-major (forecasting
    /// only; used for plots).
    #[serde(skip)]
    pub forecasts: Option<(Vec<f32>, Vec<f32>)>,
}

impl EvalReport {
    /// The value of a monitored metric, if this task reports it.
    pub fn monitored(&self, metric: MonitorMetric) -> Option<f64> {
        match (metric, &self.metrics) {
            (MonitorMetric::ValLoss, _) => Some(self.loss),
            (MonitorMetric::ValAccuracy, TaskMetrics::Classification(c)) => Some(c.accuracy),
            (MonitorMetric::ValF1, TaskMetrics::Classification(c)) => Some(c.macro_avg.f1),
            (MonitorMetric::ValRmse, TaskMetrics::Forecast(f)) => Some(f.model.rmse),
            (MonitorMetric::ValMae, TaskMetrics::Forecast(f)) => Some(f.model.mae),
            (MonitorMetric::ValBleu, TaskMetrics::Translation(t)) => Some(t.bleu),
            _ => None,
        }
    }

    /// The headline numbers (`accuracy`, `macro_f1` or `rmse`, `mae`) for progress lines.
    pub fn headline(&self) -> Vec<(String, f64)> {
        match &self.metrics {
            TaskMetrics::Classification(c) => vec![
                ("accuracy".into(), c.accuracy),
                ("macro_f1".into(), c.macro_avg.f1),
            ],
            TaskMetrics::Forecast(f) => {
                vec![("rmse".into(), f.model.rmse), ("mae".into(), f.model.mae)]
            }
            TaskMetrics::Translation(t) => vec![
                ("bleu".into(), t.bleu),
                ("exact_match".into(), t.exact_match),
                ("token_accuracy".into(), t.token_accuracy),
            ],
            TaskMetrics::LanguageModel(l) => vec![
                ("perplexity".into(), l.perplexity),
                (
                    if l.unit == "character" {
                        "bits_per_char".into()
                    } else {
                        "bits_per_token".into()
                    },
                    l.bits_per_token,
                ),
            ],
        }
    }
}

/// Evaluates `model` (on any device, usually the plain one) over every sample of `split`, in
/// file order, `batch_size` samples at a time. A language model is scored stream by stream with
/// its state carried ([`crate::lm::evaluate_lm`]; `batch_size` does not apply).
///
/// # Errors
/// [`TrainError::EmptySplit`] when the split has no samples; [`TrainError::Metrics`] on shape
/// disagreements (a bug, reported rather than hidden).
pub fn evaluate(
    model: &Model,
    task: &TaskData,
    split: SplitName,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport, TrainError> {
    if task.is_language_model() {
        return crate::lm::evaluate_lm(model, task, split, device, &mut crate::group::Solo::new());
    }
    let n = task.len(split);
    check_not_empty(n, split)?;
    let partial = accumulate(model, task, split, 0..n, batch_size, device)?;
    finish(task, split, partial, true)
}

/// Evaluates `split` across the replicas of `group`: each rank scores its own contiguous shard
/// (rank `r` of `N` takes samples `r·n/N .. (r+1)·n/N`), then the loss and metric sums are
/// summed over the ranks, so every rank returns the same report — the report of the whole split.
/// Forecast values for plots are not gathered (`forecasts` is `None` when `N > 1`).
///
/// # Errors
/// As [`evaluate`], plus [`TrainError::Collective`] when the sum across ranks fails.
pub fn evaluate_distributed(
    model: &Model,
    task: &TaskData,
    split: SplitName,
    batch_size: usize,
    device: &Device,
    group: &mut dyn Group,
) -> Result<EvalReport, TrainError> {
    if task.is_language_model() {
        // Streams and chunks, not batches of samples: see crate::lm.
        return crate::lm::evaluate_lm(model, task, split, device, group);
    }
    let n = task.len(split);
    check_not_empty(n, split)?;
    let world = group.world();
    if world == 1 {
        return evaluate(model, task, split, batch_size, device);
    }
    let shard = shard_range(n, group.rank(), world);
    let partial = accumulate(model, task, split, shard, batch_size, device)?;
    let mut flat = vec![
        partial.loss_sum,
        partial.samples as f64,
        partial.loss_weight,
    ];
    flat.extend(partial.acc.to_flat());
    group
        .sum_f64(&mut flat)
        .map_err(|source| TrainError::Collective {
            what: format!("{} metrics all-reduce", split_name(split)),
            source,
        })?;
    let acc = match &partial.acc {
        Acc::Forecast(a) => Acc::Forecast(ForecastAccumulator::from_flat(
            a.has_seasonal(),
            &flat[3..],
        )?),
        Acc::Classes(a) => Acc::Classes(ClassificationAccumulator::from_flat(
            a.n_classes(),
            &flat[3..],
        )?),
        Acc::Translation(_) => Acc::Translation(TranslationAccumulator::from_flat(&flat[3..])?),
    };
    let total = Partial {
        loss_sum: flat[0],
        samples: flat[1] as usize,
        loss_weight: flat[2],
        acc,
        forecasts: None,
    };
    finish(task, split, total, false)
}

/// The contiguous shard of `n` samples that rank `rank` of `world` evaluates.
pub fn shard_range(n: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let world = world.max(1);
    (rank * n / world)..((rank + 1) * n / world)
}

fn check_not_empty(n: usize, split: SplitName) -> Result<(), TrainError> {
    if n == 0 {
        return Err(TrainError::EmptySplit {
            split: split_name(split),
            hint: "adjust data.split so this split gets samples".into(),
        });
    }
    Ok(())
}

/// A task's metric accumulator.
enum Acc {
    Forecast(ForecastAccumulator),
    Classes(ClassificationAccumulator),
    Translation(TranslationAccumulator),
}

impl Acc {
    fn to_flat(&self) -> Vec<f64> {
        match self {
            Acc::Forecast(a) => a.to_flat(),
            Acc::Classes(a) => a.to_flat(),
            Acc::Translation(a) => a.to_flat(),
        }
    }
}

/// Sums over some samples of a split, before they become a report.
struct Partial {
    /// Σ batch loss × batch weight ([`batch_weight`]).
    loss_sum: f64,
    samples: usize,
    /// Σ batch weight: the samples, or the sum of their class weights.
    loss_weight: f64,
    acc: Acc,
    /// Forecasts and targets in original units (forecasting only).
    forecasts: Option<(Vec<f32>, Vec<f32>)>,
}

fn accumulate(
    model: &Model,
    task: &TaskData,
    split: SplitName,
    range: std::ops::Range<usize>,
    batch_size: usize,
    device: &Device,
) -> Result<Partial, TrainError> {
    let ctx = ForwardCtx::eval();
    let mut loss_sum = 0.0f64;
    let mut loss_weight = 0.0f64;
    let samples = range.len();
    let offset = range.start;
    let batches =
        sequential_batches(samples, batch_size).map(|r| (r.start + offset)..(r.end + offset));
    match task.data() {
        Prepared::Series(s) => {
            let mut acc = ForecastAccumulator::new(s.season().is_some());
            let (mut all_pred, mut all_target) = (Vec::new(), Vec::new());
            for range in batches {
                let idx: Vec<usize> = range.collect();
                let (batch, targets) = task.batch(split, &idx, device);
                let out = model.forward(batch, &ctx);
                let mut pred = to_vec(out.clone());
                let weight = batch_weight(task, &targets, idx.len());
                loss_sum += f64::from(task.loss(out, targets).into_scalar::<f32>()) * weight;
                loss_weight += weight;
                // Delta-mode outputs are changes from the window's last value.
                for (p, o) in pred.iter_mut().zip(s.offsets(split, &idx)) {
                    *p += o;
                }
                s.normalizer().invert_targets(&mut pred);
                let target = s.targets_original(split, &idx);
                let naive = s.naive_forecast(split, &idx);
                let seasonal = s.seasonal_naive_forecast(split, &idx);
                acc.add(&pred, &target, &naive, seasonal.as_deref())?;
                all_pred.extend_from_slice(&pred);
                all_target.extend_from_slice(&target);
            }
            Ok(Partial {
                loss_sum,
                samples,
                loss_weight,
                acc: Acc::Forecast(acc),
                forecasts: Some((all_pred, all_target)),
            })
        }
        Prepared::Text(t) => {
            let classes = t.labels().len();
            let mut acc = ClassificationAccumulator::new(classes);
            for range in batches {
                let idx: Vec<usize> = range.collect();
                let (batch, targets) = task.batch(split, &idx, device);
                let out = model.forward(batch, &ctx);
                let logits = to_vec(out.clone());
                let weight = batch_weight(task, &targets, idx.len());
                loss_sum += f64::from(task.loss(out, targets).into_scalar::<f32>()) * weight;
                loss_weight += weight;
                let predicted: Vec<usize> = logits.chunks_exact(classes).map(argmax).collect();
                let truth: Vec<usize> = idx
                    .iter()
                    .map(|&i| t.class_ids(split)[i] as usize)
                    .collect();
                acc.add_batch(&predicted, &truth)?;
            }
            Ok(Partial {
                loss_sum,
                samples,
                loss_weight,
                acc: Acc::Classes(acc),
                forecasts: None,
            })
        }
        Prepared::Pairs(p) => {
            let sums =
                crate::seq2seq_task::accumulate_pairs(model, task, p, split, batches, device)?;
            Ok(Partial {
                loss_sum: sums.loss_sum,
                samples,
                loss_weight: sums.loss_weight,
                acc: Acc::Translation(sums.acc),
                forecasts: None,
            })
        }
        Prepared::Corpus(_) => Err(TrainError::Input(
            "a language model is evaluated by crate::lm::evaluate_lm".into(),
        )),
    }
}

/// The weight of a batch's mean loss in the split's loss: its sample count when every sample
/// weighs the same (exact in an f64, so the split loss is `Σ loss·len / samples` as it always
/// was), else the sum of its samples' class weights, so that `Σ loss·weight / Σ weight` is the
/// weighted mean of the whole split however it was batched or sharded over replicas.
fn batch_weight(task: &TaskData, targets: &Targets, samples: usize) -> f64 {
    task.sample_weights(targets)
        .map_or(samples as f64, |w| w.iter().sum())
}

/// Turns sums over the whole split into its report (`keep_forecasts`: attach the forecasts).
fn finish(
    task: &TaskData,
    split: SplitName,
    partial: Partial,
    keep_forecasts: bool,
) -> Result<EvalReport, TrainError> {
    let n = partial.samples;
    let loss = if partial.loss_weight > 0.0 {
        partial.loss_sum / partial.loss_weight
    } else {
        partial.loss_sum / n.max(1) as f64
    };
    match (partial.acc, task.data()) {
        (Acc::Forecast(acc), _) => Ok(EvalReport {
            split,
            samples: n,
            loss,
            metrics: TaskMetrics::Forecast(acc.report()),
            forecasts: if keep_forecasts {
                partial.forecasts
            } else {
                None
            },
        }),
        (Acc::Classes(acc), Prepared::Text(t)) => {
            let mut train_counts = vec![0u64; t.labels().len()];
            for &c in t.class_ids(SplitName::Train) {
                train_counts[c as usize] += 1;
            }
            Ok(EvalReport {
                split,
                samples: n,
                loss,
                metrics: TaskMetrics::Classification(
                    acc.report(t.labels().names(), &train_counts)?,
                ),
                forecasts: None,
            })
        }
        (Acc::Translation(acc), _) => Ok(EvalReport {
            split,
            samples: n,
            loss,
            metrics: TaskMetrics::Translation(acc.report()),
            forecasts: None,
        }),
        (Acc::Classes(_), _) => Err(TrainError::Input(
            "classification metrics for data that is not labelled text".into(),
        )),
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

pub(crate) fn split_name(split: SplitName) -> &'static str {
    match split {
        SplitName::Train => "train",
        SplitName::Val => "val",
        SplitName::Test => "test",
    }
}
