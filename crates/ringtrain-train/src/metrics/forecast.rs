//! Forecasting metrics in original units (the caller undoes normalization first): MSE, RMSE,
//! MAE and MAPE for the model and for the naive (repeat the last observed value) and
//! seasonal-naive (repeat the value one season earlier) baselines on the same samples, so every
//! report says whether the network beats the trivial forecasts. Statistical baselines
//! (AutoETS, MSTL + AutoETS) are tracked the same way, as extra forecasters after those three.
//!
//! MAPE divides by the target, so targets equal to zero are skipped (and counted): including
//! them would make it infinite, and silently dropping them would overstate accuracy.

use super::{MetricsError, flat_count};
use serde::{Deserialize, Serialize};

/// Running sums of one forecaster's errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorSums {
    /// Values compared.
    pub count: u64,
    /// Σ (pred − target)².
    pub sum_sq: f64,
    /// Σ |pred − target|.
    pub sum_abs: f64,
    /// Σ |pred − target| / |target| over non-zero targets.
    pub sum_ape: f64,
    /// Non-zero targets, i.e. the terms of `sum_ape`.
    pub ape_count: u64,
}

/// Number of f64 values one [`ErrorSums`] takes in the flat form.
const SUMS_LEN: usize = 5;

impl ErrorSums {
    fn add(&mut self, pred: &[f32], target: &[f32]) {
        for (&p, &t) in pred.iter().zip(target) {
            let (p, t) = (f64::from(p), f64::from(t));
            let err = (p - t).abs();
            self.sum_sq += err * err;
            self.sum_abs += err;
            if t != 0.0 {
                self.sum_ape += err / t.abs();
                self.ape_count += 1;
            }
        }
        self.count += pred.len() as u64;
    }

    fn merge(&mut self, other: &ErrorSums) {
        self.count += other.count;
        self.sum_sq += other.sum_sq;
        self.sum_abs += other.sum_abs;
        self.sum_ape += other.sum_ape;
        self.ape_count += other.ape_count;
    }

    fn push_flat(&self, out: &mut Vec<f64>) {
        out.extend([
            self.count as f64,
            self.sum_sq,
            self.sum_abs,
            self.sum_ape,
            self.ape_count as f64,
        ]);
    }

    fn from_flat(offset: usize, v: &[f64]) -> Result<Self, MetricsError> {
        Ok(ErrorSums {
            count: flat_count(offset, v[0])?,
            sum_sq: v[1],
            sum_abs: v[2],
            sum_ape: v[3],
            ape_count: flat_count(offset + 4, v[4])?,
        })
    }

    /// The metrics these sums describe; all 0 when nothing was counted.
    pub fn metrics(&self) -> ForecastMetrics {
        let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
        let mse = mean(self.sum_sq, self.count);
        ForecastMetrics {
            count: self.count,
            mse,
            rmse: mse.sqrt(),
            mae: mean(self.sum_abs, self.count),
            mape_percent: (self.ape_count > 0).then(|| 100.0 * mean(self.sum_ape, self.ape_count)),
            mape_skipped_zero_targets: self.count - self.ape_count,
        }
    }
}

/// Error metrics of one forecaster.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastMetrics {
    /// Values compared (samples × horizon × target columns).
    pub count: u64,
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Mean absolute percentage error, in percent (`100 · mean |p − t| / |t|`), over the
    /// non-zero targets only; `None` when every target is zero.
    pub mape_percent: Option<f64>,
    /// Targets left out of MAPE because they are zero.
    pub mape_skipped_zero_targets: u64,
}

/// The model's errors relative to one baseline's: below 1 the model is better (0.5 = half the
/// baseline's error). `None` where the baseline's error is 0 and the ratio is undefined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// Model MSE / baseline MSE.
    pub mse_ratio: Option<f64>,
    /// Model MAE / baseline MAE.
    pub mae_ratio: Option<f64>,
}

impl BaselineComparison {
    fn new(model: &ForecastMetrics, baseline: &ForecastMetrics) -> Self {
        let ratio = |m: f64, b: f64| (b != 0.0).then(|| m / b);
        BaselineComparison {
            mse_ratio: ratio(model.mse, baseline.mse),
            mae_ratio: ratio(model.mae, baseline.mae),
        }
    }
}

/// Everything reported about a forecaster on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastReport {
    /// The trained model.
    pub model: ForecastMetrics,
    /// Naive baseline (last observed value repeated over the horizon).
    pub naive: ForecastMetrics,
    /// Seasonal-naive baseline, when the task has a season.
    pub seasonal_naive: Option<ForecastMetrics>,
    /// Model relative to the naive baseline.
    pub vs_naive: BaselineComparison,
    /// Model relative to the seasonal-naive baseline, when there is one.
    pub vs_seasonal_naive: Option<BaselineComparison>,
    /// Statistical baselines fitted on the training split (AutoETS; MSTL + AutoETS with a
    /// season), on the same windows and horizons; an unavailable one says why. Empty in
    /// reports written before they existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statistical: Vec<StatisticalBaseline>,
}

/// One statistical baseline's result on a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatisticalBaseline {
    /// `"AutoETS"` or `"MSTL + AutoETS"`.
    pub name: String,
    /// The ETS form selected per target column (e.g. `"AAdN"`), empty when unavailable.
    pub forms: Vec<String>,
    /// Its errors; `None` when it is unavailable.
    pub metrics: Option<ForecastMetrics>,
    /// Model relative to it; `None` when it is unavailable.
    pub vs_model: Option<BaselineComparison>,
    /// Why it is unavailable (the fit failed or could not be reproduced), if it is.
    pub unavailable: Option<String>,
}

impl StatisticalBaseline {
    /// The entry of a fitted baseline with errors `sums`, compared with the `model`.
    pub fn available(
        name: &str,
        forms: Vec<String>,
        sums: &ErrorSums,
        model: &ForecastMetrics,
    ) -> Self {
        let metrics = sums.metrics();
        StatisticalBaseline {
            name: name.to_owned(),
            forms,
            vs_model: Some(BaselineComparison::new(model, &metrics)),
            metrics: Some(metrics),
            unavailable: None,
        }
    }

    /// The entry of a baseline that could not be fitted, with the reason.
    pub fn unavailable(name: &str, reason: &str) -> Self {
        StatisticalBaseline {
            name: name.to_owned(),
            forms: Vec::new(),
            metrics: None,
            vs_model: None,
            unavailable: Some(reason.to_owned()),
        }
    }
}

/// Error sums of the model and its baselines over one evaluation, mergeable across shards.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastAccumulator {
    model: ErrorSums,
    naive: ErrorSums,
    seasonal: Option<ErrorSums>,
    /// Statistical baselines, in the task's order.
    statistical: Vec<ErrorSums>,
}

impl ForecastAccumulator {
    /// An empty accumulator; `seasonal` says whether a seasonal-naive baseline is tracked
    /// (the task has a season), which every [`Self::add`] must then match.
    pub fn new(seasonal: bool) -> Self {
        ForecastAccumulator {
            model: ErrorSums::default(),
            naive: ErrorSums::default(),
            seasonal: seasonal.then(ErrorSums::default),
            statistical: Vec::new(),
        }
    }

    /// The same accumulator also tracking `n` statistical baselines (fed with
    /// [`Self::add_statistical`]; every shard of one evaluation must track the same `n`).
    pub fn with_statistical(mut self, n: usize) -> Self {
        self.statistical = vec![ErrorSums::default(); n];
        self
    }

    /// Adds statistical baseline `i`'s forecasts `pred` of `target` (original units).
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] if the lengths differ, [`MetricsError::ShapeMismatch`]
    /// if `i` is not tracked. Nothing is counted on error.
    pub fn add_statistical(
        &mut self,
        i: usize,
        pred: &[f32],
        target: &[f32],
    ) -> Result<(), MetricsError> {
        let tracked = self.statistical.len();
        let sums = self
            .statistical
            .get_mut(i)
            .ok_or_else(|| MetricsError::ShapeMismatch {
                ours: format!("{tracked} statistical baselines"),
                theirs: format!("baseline {i}"),
            })?;
        if pred.len() != target.len() {
            return Err(MetricsError::LengthMismatch {
                what: "statistical baseline forecast",
                expected: target.len(),
                got: pred.len(),
            });
        }
        sums.add(pred, target);
        Ok(())
    }

    /// The statistical baselines' sums, in the order they were added.
    pub fn statistical_sums(&self) -> &[ErrorSums] {
        &self.statistical
    }

    /// Whether the seasonal-naive baseline is tracked.
    pub fn has_seasonal(&self) -> bool {
        self.seasonal.is_some()
    }

    /// Adds a batch: the model's predictions, the targets and the two baselines' forecasts for
    /// the same values, all flat slices of one shape, in original units.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] if a slice differs in length from `pred`, or a
    /// seasonal-naive forecast is missing for an accumulator that tracks one;
    /// [`MetricsError::ShapeMismatch`] if one is given to an accumulator that does not.
    /// Nothing is counted on error.
    pub fn add(
        &mut self,
        pred: &[f32],
        target: &[f32],
        naive: &[f32],
        seasonal_naive: Option<&[f32]>,
    ) -> Result<(), MetricsError> {
        let n = pred.len();
        let seasonal_len = match (&self.seasonal, seasonal_naive) {
            (Some(_), Some(s)) => s.len(),
            (Some(_), None) => 0,
            (None, None) => n,
            (None, Some(_)) => {
                return Err(MetricsError::ShapeMismatch {
                    ours: "no seasonal-naive baseline".to_owned(),
                    theirs: "a seasonal-naive forecast".to_owned(),
                });
            }
        };
        for (what, got) in [
            ("targets", target.len()),
            ("naive forecast", naive.len()),
            ("seasonal-naive forecast", seasonal_len),
        ] {
            if got != n {
                return Err(MetricsError::LengthMismatch {
                    what,
                    expected: n,
                    got,
                });
            }
        }
        self.model.add(pred, target);
        self.naive.add(naive, target);
        if let (Some(sums), Some(s)) = (&mut self.seasonal, seasonal_naive) {
            sums.add(s, target);
        }
        Ok(())
    }

    /// Adds another accumulator's sums (e.g. another rank's shard).
    ///
    /// # Errors
    /// [`MetricsError::ShapeMismatch`] if only one of them tracks the seasonal baseline.
    pub fn merge(&mut self, other: &Self) -> Result<(), MetricsError> {
        if self.statistical.len() != other.statistical.len() {
            return Err(MetricsError::ShapeMismatch {
                ours: format!("{} statistical baselines", self.statistical.len()),
                theirs: format!("{} statistical baselines", other.statistical.len()),
            });
        }
        if self.has_seasonal() != other.has_seasonal() {
            let shape = |s: bool| {
                if s {
                    "with seasonal-naive"
                } else {
                    "without seasonal-naive"
                }
            };
            return Err(MetricsError::ShapeMismatch {
                ours: shape(self.has_seasonal()).to_owned(),
                theirs: shape(other.has_seasonal()).to_owned(),
            });
        }
        self.model.merge(&other.model);
        self.naive.merge(&other.naive);
        if let (Some(a), Some(b)) = (&mut self.seasonal, &other.seasonal) {
            a.merge(b);
        }
        for (a, b) in self.statistical.iter_mut().zip(&other.statistical) {
            a.merge(b);
        }
        Ok(())
    }

    /// Length of the flat form: 5 values per forecaster (model, naive, seasonal-naive if any).
    pub fn flat_len(seasonal: bool) -> usize {
        SUMS_LEN * if seasonal { 3 } else { 2 }
    }

    /// The sums as a flat f64 buffer for an element-wise sum across ranks: for the model, the
    /// naive and (if tracked) the seasonal-naive forecaster in that order,
    /// `[count, Σ err², Σ |err|, Σ |err|/|target|, non-zero targets]`.
    pub fn to_flat(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(Self::flat_len(self.has_seasonal()));
        self.model.push_flat(&mut out);
        self.naive.push_flat(&mut out);
        if let Some(s) = &self.seasonal {
            s.push_flat(&mut out);
        }
        for s in &self.statistical {
            s.push_flat(&mut out);
        }
        out
    }

    /// [`Self::from_flat`] for an accumulator that also tracks `statistical` baselines (their
    /// sums follow the others in the flat form).
    ///
    /// # Errors
    /// As [`Self::from_flat`].
    pub fn from_flat_with(
        seasonal: bool,
        statistical: usize,
        flat: &[f64],
    ) -> Result<Self, MetricsError> {
        let base = Self::flat_len(seasonal);
        let expected = base + SUMS_LEN * statistical;
        if flat.len() != expected {
            return Err(MetricsError::FlatLength {
                expected,
                got: flat.len(),
            });
        }
        let mut acc = Self::from_flat(seasonal, &flat[..base])?;
        for i in 0..statistical {
            let at = base + i * SUMS_LEN;
            acc.statistical
                .push(ErrorSums::from_flat(at, &flat[at..at + SUMS_LEN])?);
        }
        Ok(acc)
    }

    /// Rebuilds an accumulator from a (summed) flat buffer written by [`Self::to_flat`].
    ///
    /// # Errors
    /// [`MetricsError::FlatLength`] if `flat` is not [`Self::flat_len`] long,
    /// [`MetricsError::FlatCount`] if a count is not an exact non-negative integer.
    pub fn from_flat(seasonal: bool, flat: &[f64]) -> Result<Self, MetricsError> {
        let expected = Self::flat_len(seasonal);
        if flat.len() != expected {
            return Err(MetricsError::FlatLength {
                expected,
                got: flat.len(),
            });
        }
        let block = |i: usize| ErrorSums::from_flat(i * SUMS_LEN, &flat[i * SUMS_LEN..]);
        Ok(ForecastAccumulator {
            model: block(0)?,
            naive: block(1)?,
            seasonal: if seasonal { Some(block(2)?) } else { None },
            statistical: Vec::new(),
        })
    }

    /// The raw sums of the model, the naive and the seasonal-naive forecaster.
    pub fn sums(&self) -> (&ErrorSums, &ErrorSums, Option<&ErrorSums>) {
        (&self.model, &self.naive, self.seasonal.as_ref())
    }

    /// Computes the report.
    pub fn report(&self) -> ForecastReport {
        let model = self.model.metrics();
        let naive = self.naive.metrics();
        let seasonal_naive = self.seasonal.as_ref().map(ErrorSums::metrics);
        ForecastReport {
            vs_naive: BaselineComparison::new(&model, &naive),
            vs_seasonal_naive: seasonal_naive
                .as_ref()
                .map(|s| BaselineComparison::new(&model, s)),
            model,
            naive,
            seasonal_naive,
            // Names and forms live with the task: it fills these from `statistical_sums`.
            statistical: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    // Targets [2, 0, 4, -5]. Model [3, 1, 4, -3] → errors [1, 1, 0, 2]:
    //   MSE (1 + 1 + 0 + 4) / 4 = 1.5, RMSE sqrt(1.5), MAE (1 + 1 + 0 + 2) / 4 = 1.0,
    //   MAPE over t ≠ 0 (target 0 skipped): (1/2 + 0/4 + 2/5) / 3 = 0.9 / 3 = 30 %.
    // Naive [2, 2, 0, 0] → errors [0, 2, 4, 5]: MSE (0 + 4 + 16 + 25) / 4 = 11.25,
    //   MAE 11 / 4 = 2.75, MAPE (0 + 1 + 1) / 3 = 66.67 %.
    // Seasonal [1, 0, 4, -5] → errors [1, 0, 0, 0]: MSE 0.25, MAE 0.25, MAPE (0.5) / 3 = 16.67 %.
    const TARGET: [f32; 4] = [2.0, 0.0, 4.0, -5.0];
    const MODEL: [f32; 4] = [3.0, 1.0, 4.0, -3.0];
    const NAIVE: [f32; 4] = [2.0, 2.0, 0.0, 0.0];
    const SEASONAL: [f32; 4] = [1.0, 0.0, 4.0, -5.0];

    fn example() -> ForecastAccumulator {
        let mut acc = ForecastAccumulator::new(true);
        acc.add(&MODEL, &TARGET, &NAIVE, Some(&SEASONAL))
            .expect("same shapes");
        acc
    }

    #[test]
    fn hand_computed_report() {
        let r = example().report();
        let m = r.model;
        assert_eq!((m.count, m.mape_skipped_zero_targets), (4, 1));
        close(m.mse, 1.5);
        close(m.rmse, 1.5f64.sqrt());
        close(m.mae, 1.0);
        close(m.mape_percent.expect("non-zero targets"), 30.0);

        close(r.naive.mse, 11.25);
        close(r.naive.rmse, 11.25f64.sqrt());
        close(r.naive.mae, 2.75);
        close(r.naive.mape_percent.expect("non-zero targets"), 200.0 / 3.0);

        let s = r.seasonal_naive.expect("tracked");
        close(s.mse, 0.25);
        close(s.mae, 0.25);
        close(s.mape_percent.expect("non-zero targets"), 50.0 / 3.0);
        assert_eq!(s.mape_skipped_zero_targets, 1);

        // Ratios: 1.5 / 11.25 = 0.1333…, 1.0 / 2.75 = 0.3636…; vs seasonal 1.5 / 0.25 = 6, 4.
        close(r.vs_naive.mse_ratio.expect("baseline error"), 1.5 / 11.25);
        close(r.vs_naive.mae_ratio.expect("baseline error"), 1.0 / 2.75);
        let vs = r.vs_seasonal_naive.expect("tracked");
        close(vs.mse_ratio.expect("baseline error"), 6.0);
        close(vs.mae_ratio.expect("baseline error"), 4.0);
    }

    #[test]
    fn all_zero_targets_have_no_mape_and_perfect_baseline_no_ratio() {
        let mut acc = ForecastAccumulator::new(false);
        acc.add(&[1.0, -1.0], &[0.0, 0.0], &[0.0, 0.0], None)
            .expect("same shapes");
        let r = acc.report();
        assert_eq!(r.model.mape_percent, None);
        assert_eq!(r.model.mape_skipped_zero_targets, 2);
        close(r.model.mse, 1.0);
        // The naive forecast is exact: its MSE/MAE are 0, so the ratios are undefined.
        close(r.naive.mse, 0.0);
        assert_eq!(
            r.vs_naive,
            BaselineComparison {
                mse_ratio: None,
                mae_ratio: None
            }
        );
        assert_eq!(r.seasonal_naive, None);
        assert_eq!(r.vs_seasonal_naive, None);
    }

    #[test]
    fn empty_accumulator_reports_zeros() {
        let m = ForecastAccumulator::new(false).report().model;
        assert_eq!((m.count, m.mse, m.rmse, m.mae), (0, 0.0, 0.0, 0.0));
        assert_eq!((m.mape_percent, m.mape_skipped_zero_targets), (None, 0));
    }

    #[test]
    fn batches_and_shards_add_up_like_one_pass() {
        // Two batches on two "ranks", summed through the flat form and through merge.
        let mut a = ForecastAccumulator::new(true);
        a.add(&MODEL[..1], &TARGET[..1], &NAIVE[..1], Some(&SEASONAL[..1]))
            .expect("shapes");
        let mut b = ForecastAccumulator::new(true);
        b.add(&MODEL[1..], &TARGET[1..], &NAIVE[1..], Some(&SEASONAL[1..]))
            .expect("shapes");
        let summed: Vec<f64> = a
            .to_flat()
            .iter()
            .zip(b.to_flat())
            .map(|(x, y)| x + y)
            .collect();
        assert_eq!(summed.len(), ForecastAccumulator::flat_len(true));
        let from_flat = ForecastAccumulator::from_flat(true, &summed).expect("valid");
        assert_eq!(from_flat.report(), example().report());
        a.merge(&b).expect("same shape");
        assert_eq!(a.report(), example().report());
    }

    #[test]
    fn mismatched_inputs_are_errors_and_count_nothing() {
        let mut acc = ForecastAccumulator::new(true);
        let err = acc
            .add(&MODEL, &TARGET[..3], &NAIVE, Some(&SEASONAL))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: targets has 3 elements, expected 4"
        );
        let err = acc
            .add(&MODEL, &TARGET, &NAIVE[..2], Some(&SEASONAL))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: naive forecast has 2 elements, expected 4"
        );
        let err = acc.add(&MODEL, &TARGET, &NAIVE, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: seasonal-naive forecast has 0 elements, expected 4"
        );
        assert_eq!(acc.report().model.count, 0);

        let mut plain = ForecastAccumulator::new(false);
        let err = plain
            .add(&MODEL, &TARGET, &NAIVE, Some(&SEASONAL))
            .unwrap_err();
        assert!(matches!(err, MetricsError::ShapeMismatch { .. }), "{err}");
        let err = plain.merge(&acc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: cannot merge accumulators of different shapes \
             (without seasonal-naive vs with seasonal-naive)"
        );
        let err = ForecastAccumulator::from_flat(true, &[0.0; 10]).unwrap_err();
        assert_eq!(
            err,
            MetricsError::FlatLength {
                expected: 15,
                got: 10
            }
        );
        let mut flat = example().to_flat();
        flat[5] = -1.0; // the naive block's count
        let err = ForecastAccumulator::from_flat(true, &flat).unwrap_err();
        assert_eq!(
            err,
            MetricsError::FlatCount {
                index: 5,
                value: -1.0
            }
        );
    }

    #[test]
    fn statistical_baselines_sum_across_shards_after_the_others() {
        let mut a = ForecastAccumulator::new(false).with_statistical(2);
        a.add(&MODEL[..2], &TARGET[..2], &NAIVE[..2], None)
            .expect("shapes");
        a.add_statistical(1, &SEASONAL[..2], &TARGET[..2])
            .expect("tracked");
        let mut b = ForecastAccumulator::new(false).with_statistical(2);
        b.add(&MODEL[2..], &TARGET[2..], &NAIVE[2..], None)
            .expect("shapes");
        b.add_statistical(1, &SEASONAL[2..], &TARGET[2..])
            .expect("tracked");
        let summed: Vec<f64> = a
            .to_flat()
            .iter()
            .zip(b.to_flat())
            .map(|(x, y)| x + y)
            .collect();
        assert_eq!(summed.len(), 20);
        let back = ForecastAccumulator::from_flat_with(false, 2, &summed).expect("valid");
        assert_eq!(back.statistical_sums()[0].count, 0);
        close(back.statistical_sums()[1].metrics().mse, 0.25);
        let m = back.report().model;
        let entry =
            StatisticalBaseline::available("AutoETS", vec![], &back.statistical_sums()[1], &m);
        close(
            entry.vs_model.expect("set").mse_ratio.expect("non-zero"),
            6.0,
        );
        assert!(a.add_statistical(2, &MODEL, &TARGET).is_err());
        assert!(a.add_statistical(0, &MODEL[..1], &TARGET).is_err());
        assert!(a.merge(&ForecastAccumulator::new(false)).is_err());
        assert!(ForecastAccumulator::from_flat_with(false, 1, &summed).is_err());
    }

    #[test]
    fn report_serializes_to_json() {
        let r = example().report();
        let json = serde_json::to_string(&r).expect("finite");
        let back: ForecastReport = serde_json::from_str(&json).expect("own output");
        // serde_json's default float parsing may be an ulp off, so compare floats loosely.
        close(back.model.rmse, r.model.rmse);
        close(
            back.vs_naive.mae_ratio.expect("kept"),
            r.vs_naive.mae_ratio.expect("set"),
        );
        assert_eq!(back.seasonal_naive.map(|s| s.count), Some(4));
        assert!(json.contains("\"mape_skipped_zero_targets\":1"));
    }
}
