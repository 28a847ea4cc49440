//! Evaluation of a model on one split: loss and the task's metrics in original units, next to
//! the trivial baselines a practitioner compares against (majority class; naive and
//! seasonal-naive forecasts).

use crate::error::TrainError;
use crate::metrics::{
    ClassificationAccumulator, ClassificationReport, ForecastAccumulator, ForecastReport,
};
use crate::task::{Objective, TaskData};
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
}

/// Result of evaluating one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Split evaluated.
    pub split: SplitName,
    /// Samples evaluated (each exactly once).
    pub samples: usize,
    /// Mean training loss over the samples (normalized units for forecasts).
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
        }
    }
}

/// Evaluates `model` (on any device, usually the plain one) over every sample of `split`, in
/// file order, `batch_size` samples at a time.
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
    let n = task.len(split);
    if n == 0 {
        return Err(TrainError::EmptySplit {
            split: split_name(split),
            hint: "adjust data.split so this split gets samples".into(),
        });
    }
    let ctx = ForwardCtx::eval();
    let mut loss_sum = 0.0f64;
    match task.data() {
        Prepared::Series(s) => {
            let mut acc = ForecastAccumulator::new(s.season().is_some());
            let (mut all_pred, mut all_target) = (Vec::new(), Vec::new());
            for range in sequential_batches(n, batch_size) {
                let idx: Vec<usize> = range.collect();
                let (batch, targets) = task.batch(split, &idx, device);
                let out = model.forward(batch, &ctx);
                let mut pred = to_vec(out.clone());
                loss_sum +=
                    f64::from(task.loss(out, targets).into_scalar::<f32>()) * idx.len() as f64;
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
            Ok(EvalReport {
                split,
                samples: n,
                loss: loss_sum / n as f64,
                metrics: TaskMetrics::Forecast(acc.report()),
                forecasts: Some((all_pred, all_target)),
            })
        }
        Prepared::Text(t) => {
            let classes = t.labels().len();
            let mut acc = ClassificationAccumulator::new(classes);
            for range in sequential_batches(n, batch_size) {
                let idx: Vec<usize> = range.collect();
                let (batch, targets) = task.batch(split, &idx, device);
                let out = model.forward(batch, &ctx);
                let logits = to_vec(out.clone());
                loss_sum +=
                    f64::from(task.loss(out, targets).into_scalar::<f32>()) * idx.len() as f64;
                let predicted: Vec<usize> = logits.chunks_exact(classes).map(argmax).collect();
                let truth: Vec<usize> = idx
                    .iter()
                    .map(|&i| t.class_ids(split)[i] as usize)
                    .collect();
                acc.add_batch(&predicted, &truth)?;
            }
            let mut train_counts = vec![0u64; classes];
            for &c in t.class_ids(SplitName::Train) {
                train_counts[c as usize] += 1;
            }
            Ok(EvalReport {
                split,
                samples: n,
                loss: loss_sum / n as f64,
                metrics: TaskMetrics::Classification(
                    acc.report(t.labels().names(), &train_counts)?,
                ),
                forecasts: None,
            })
        }
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
