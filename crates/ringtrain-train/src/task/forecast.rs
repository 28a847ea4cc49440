//! Forecasting: numeric windows in, the next `horizon` values of the target columns out
//! (normalized), MSE or MAE as the loss, metrics in original units next to the naive and
//! seasonal-naive baselines and the statistical ones (AutoETS, MSTL + AutoETS), which are
//! fitted on the training split once, the first time the task is evaluated.

use super::{EvalSums, LossSums, Task};
use crate::error::TrainError;
use crate::metrics::{ForecastAccumulator, StatisticalBaseline};
use crate::report::{EvalReport, TaskMetrics, shard_range};
use crate::tensors::{Targets, plain_loss, series_batch, to_vec};
use burn::prelude::*;
use ringtrain_data::stat_baseline::{StatBaseline, StatKind};
use ringtrain_data::{Fitted, SeriesData, SplitName, sequential_batches};
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Model, loss};
use ringtrain_spec::{ForecastLoss, TaskKind};
use std::sync::OnceLock;

/// The forecasting task over its windows.
#[derive(Debug)]
pub struct Forecast {
    data: SeriesData,
    loss: ForecastLoss,
    /// The statistical baselines, fitted on first use (training never needs them).
    stats: OnceLock<Vec<(StatKind, Result<StatBaseline, String>)>>,
}

impl Forecast {
    /// Forecasting over `data`, trained with `loss`.
    pub fn new(data: SeriesData, loss: ForecastLoss) -> Forecast {
        Forecast {
            data,
            loss,
            stats: OnceLock::new(),
        }
    }

    /// The statistical baselines (fitted the first time).
    fn stats(&self) -> &[(StatKind, Result<StatBaseline, String>)] {
        self.stats.get_or_init(|| {
            let started = std::time::Instant::now();
            let fitted = self.data.fit_stat_baselines();
            tracing::debug!(
                seconds = started.elapsed().as_secs_f64(),
                "forecast.stat_baselines"
            );
            fitted
        })
    }
}

/// The model shape of a forecasting checkpoint (`None` when `fitted` is not a normalizer).
pub(super) fn shape(horizon: usize, fitted: &Fitted) -> Option<(InputKind, HeadKind)> {
    let Fitted::Series(n) = fitted else {
        return None;
    };
    Some((
        InputKind::Numeric {
            features: n.features.len(),
        },
        HeadKind::Regression {
            outputs: horizon * n.targets.len(),
        },
    ))
}

impl Task for Forecast {
    fn kind(&self) -> TaskKind {
        TaskKind::Forecast
    }

    fn len(&self, split: SplitName) -> usize {
        self.data.len(split)
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Numeric {
            features: self.data.features().len(),
        }
    }

    fn head_kind(&self) -> HeadKind {
        HeadKind::Regression {
            outputs: self.data.horizon() * self.data.targets().len(),
        }
    }

    fn zero_head(&self) -> bool {
        // With target scaling the outputs are standardized corrections: zero output is the
        // mode's reference forecast plus the mean training correction, where a random head
        // would start with noise of the corrections' full spread.
        self.data.normalizer().residuals.is_some()
    }

    fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        series_batch(&self.data, split, indices, device)
    }

    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match (targets, self.loss) {
            (Targets::Regression(y), ForecastLoss::Mse) => loss::mse(output, y),
            (Targets::Regression(y), ForecastLoss::Mae) => loss::mae(output, y),
            (other @ (Targets::Classes(_) | Targets::Tokens { .. }), _) => {
                plain_loss(output, other)
            }
        }
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
        let s = &self.data;
        let range = shard_range(self.len(split), rank, world);
        let offset = range.start;
        let ctx = ForwardCtx::eval();
        let mut sums = LossSums::default();
        let stats = self.stats();
        let mut acc = ForecastAccumulator::new(s.season().is_some()).with_statistical(stats.len());
        let (mut all_pred, mut all_target) = (Vec::new(), Vec::new());
        for r in sequential_batches(range.len(), batch_size) {
            let idx: Vec<usize> = ((r.start + offset)..(r.end + offset)).collect();
            let (batch, targets) = self.batch(split, &idx, device);
            let out = model.forward(batch, &ctx);
            let mut pred = to_vec(out.clone());
            sums.add(self, out, targets, idx.len());
            // Delta-mode outputs are (scaled) changes from the mode's reference forecast.
            s.normalizer()
                .outputs_to_original(&mut pred, &s.offsets(split, &idx));
            let target = s.targets_original(split, &idx);
            let naive = s.naive_forecast(split, &idx);
            let seasonal = s.seasonal_naive_forecast(split, &idx);
            acc.add(&pred, &target, &naive, seasonal.as_deref())?;
            for (i, (_, fit)) in stats.iter().enumerate() {
                if let Ok(b) = fit {
                    acc.add_statistical(i, &s.stat_forecast(b, split, &idx), &target)?;
                }
            }
            all_pred.extend_from_slice(&pred);
            all_target.extend_from_slice(&target);
        }
        Ok(EvalSums {
            flat: sums.flat(acc.to_flat()),
            forecasts: Some((all_pred, all_target)),
        })
    }

    fn report(&self, split: SplitName, sums: EvalSums) -> Result<EvalReport, TrainError> {
        let (loss, rest) = LossSums::parse(&sums.flat)?;
        let stats = self.stats();
        let acc =
            ForecastAccumulator::from_flat_with(self.data.season().is_some(), stats.len(), rest)?;
        let mut report = acc.report();
        report.statistical = stats
            .iter()
            .zip(acc.statistical_sums())
            .map(|((kind, fit), sums)| match fit {
                Ok(b) => {
                    StatisticalBaseline::available(kind.name(), b.forms(), sums, &report.model)
                }
                Err(why) => StatisticalBaseline::unavailable(kind.name(), why),
            })
            .collect();
        Ok(EvalReport {
            split,
            samples: loss.samples,
            loss: loss.mean(),
            metrics: TaskMetrics::Forecast(report),
            forecasts: sums.forecasts,
        })
    }
}
