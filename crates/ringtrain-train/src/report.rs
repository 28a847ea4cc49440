//! What an evaluation reports: the loss and the task's metrics of one split ([`EvalReport`],
//! [`TaskMetrics`]), and the one table of each task's scalar metrics by name ([`Scalar`]):
//! progress lines, epoch records, early stopping and the worker's result all read it, so a
//! metric's name is written once.

use crate::metrics::{
    ClassificationReport, ForecastReport, LanguageModelReport, TranslationReport,
};
use ringtrain_data::SplitName;
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

/// One scalar metric of a report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scalar {
    /// Its name (`rmse`, `accuracy`, …), the key under which results and records carry it.
    pub name: &'static str,
    /// Its value.
    pub value: f64,
    /// Whether it is one of the task's headline numbers (progress lines, epoch records).
    pub headline: bool,
    /// The monitored metric it is, if early stopping can watch it.
    pub monitor: Option<MonitorMetric>,
}

impl Scalar {
    fn new(name: &'static str, value: f64) -> Scalar {
        Scalar {
            name,
            value,
            headline: false,
            monitor: None,
        }
    }

    fn headline(self) -> Scalar {
        Scalar {
            headline: true,
            ..self
        }
    }

    fn monitor(self, metric: MonitorMetric) -> Scalar {
        Scalar {
            monitor: Some(metric),
            ..self
        }
    }
}

impl TaskMetrics {
    /// Every scalar metric of the report, headline numbers first in their display order.
    pub fn scalars(&self) -> Vec<Scalar> {
        match self {
            TaskMetrics::Forecast(f) => {
                let mut out = vec![
                    Scalar::new("rmse", f.model.rmse)
                        .headline()
                        .monitor(MonitorMetric::ValRmse),
                    Scalar::new("mae", f.model.mae)
                        .headline()
                        .monitor(MonitorMetric::ValMae),
                    Scalar::new("mse", f.model.mse),
                ];
                if let Some(m) = f.model.mape_percent {
                    out.push(Scalar::new("mape_percent", m));
                }
                out.push(Scalar::new("naive_mse", f.naive.mse));
                if let Some(s) = &f.seasonal_naive {
                    out.push(Scalar::new("seasonal_naive_mse", s.mse));
                }
                out
            }
            TaskMetrics::Classification(c) => vec![
                Scalar::new("accuracy", c.accuracy)
                    .headline()
                    .monitor(MonitorMetric::ValAccuracy),
                Scalar::new("macro_f1", c.macro_avg.f1)
                    .headline()
                    .monitor(MonitorMetric::ValF1),
                Scalar::new("weighted_f1", c.weighted_avg.f1),
                Scalar::new("majority_accuracy", c.majority_baseline.accuracy),
            ],
            TaskMetrics::Translation(t) => vec![
                Scalar::new("bleu", t.bleu)
                    .headline()
                    .monitor(MonitorMetric::ValBleu),
                Scalar::new("exact_match", t.exact_match).headline(),
                Scalar::new("token_accuracy", t.token_accuracy).headline(),
            ],
            TaskMetrics::LanguageModel(l) => {
                // A character model's headline says bits per character; results keep the
                // unit-independent name too.
                let per_char = l.unit == "character";
                let mut out = vec![Scalar::new("perplexity", l.perplexity).headline()];
                if per_char {
                    out.push(Scalar::new("bits_per_char", l.bits_per_token).headline());
                }
                let bits = Scalar::new("bits_per_token", l.bits_per_token);
                out.push(if per_char { bits } else { bits.headline() });
                out.push(Scalar::new("accuracy", l.accuracy));
                out.push(Scalar::new("unigram_perplexity", l.unigram_perplexity));
                out
            }
        }
    }
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
        if metric == MonitorMetric::ValLoss {
            return Some(self.loss);
        }
        self.metrics
            .scalars()
            .into_iter()
            .find(|s| s.monitor == Some(metric))
            .map(|s| s.value)
    }

    /// The headline numbers (`accuracy`, `macro_f1` or `rmse`, `mae`, …) for progress lines
    /// and epoch records.
    pub fn headline(&self) -> Vec<(String, f64)> {
        self.metrics
            .scalars()
            .into_iter()
            .filter(|s| s.headline)
            .map(|s| (s.name.to_string(), s.value))
            .collect()
    }

    /// `loss` and every scalar metric, by name (what a worker reports as `split.name`).
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![("loss", self.loss)];
        out.extend(
            self.metrics
                .scalars()
                .into_iter()
                .map(|s| (s.name, s.value)),
        );
        out
    }
}

/// The contiguous shard of `n` samples (or streams) that rank `rank` of `world` evaluates.
pub fn shard_range(n: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let world = world.max(1);
    (rank * n / world)..((rank + 1) * n / world)
}

/// A split's name as specs and messages write it.
pub(crate) fn split_name(split: SplitName) -> &'static str {
    match split {
        SplitName::Train => "train",
        SplitName::Val => "val",
        SplitName::Test => "test",
    }
}
