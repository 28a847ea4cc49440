//! Evaluation metrics: classification ([`ClassificationAccumulator`] → [`ClassificationReport`])
//! and forecasting ([`ForecastAccumulator`] → [`ForecastReport`], with the naive and
//! seasonal-naive baselines), plus the improvement test early stopping uses ([`improved`]).
//!
//! Metrics are gathered in accumulators of sums and counts rather than computed from whole
//! prediction lists, so a distributed evaluation can have every rank accumulate its shard,
//! all-reduce (sum) the flat form ([`ClassificationAccumulator::to_flat`],
//! [`ForecastAccumulator::to_flat`]) and build the report from the total. The flat form is f64:
//! counts stay exact up to 2^53, where f32 would lose them past 2^24 (≈ 16.7 M).
//!
//! Division by zero (precision of a class never predicted, accuracy of an empty split, ...)
//! yields 0, scikit-learn's `zero_division=0` convention; the one exception is MAPE over a split
//! whose targets are all zero, which is reported as absent (`None`) with the skip count.

mod classification;
mod forecast;
mod language_model;
pub mod translation;

pub use classification::{
    AveragedMetrics, ClassMetrics, ClassificationAccumulator, ClassificationReport,
    MajorityBaseline,
};
pub use forecast::{
    BaselineComparison, ErrorSums, ForecastAccumulator, ForecastMetrics, ForecastReport,
    StatisticalBaseline,
};
pub use language_model::{LanguageModelReport, LmAccumulator, unigram_logp};
pub use translation::{GreedyScores, TranslationAccumulator, TranslationReport, corpus_bleu};

use ringtrain_spec::types::MonitorMetric;

/// Errors of metric accumulation: inputs that do not fit the accumulator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A class index is not below the number of classes.
    #[error("{role} class {class} is out of range for {n_classes} classes")]
    ClassOutOfRange {
        /// `predicted` or `true`.
        role: &'static str,
        /// The offending index.
        class: usize,
        /// Number of classes of the accumulator.
        n_classes: usize,
    },
    /// Two slices that must pair up element by element differ in length.
    #[error("metrics: {what} has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which input (e.g. `targets`, `naive forecast`, `label names`).
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length passed in.
        got: usize,
    },
    /// A flat buffer (e.g. after an all-reduce) has the wrong length for its layout.
    #[error("metrics: flat buffer has {got} values, expected {expected}")]
    FlatLength {
        /// Length the layout requires.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A flat buffer holds something that cannot be a count (negative, fractional, not finite
    /// or beyond 2^53).
    #[error("metrics: flat buffer value {value} at index {index} is not a valid count")]
    FlatCount {
        /// Position in the flat buffer.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// Two accumulators with different layouts were merged.
    #[error("metrics: cannot merge accumulators of different shapes ({ours} vs {theirs})")]
    ShapeMismatch {
        /// Shape of the receiving accumulator.
        ours: String,
        /// Shape of the merged one.
        theirs: String,
    },
}

/// Converts a summed count from a flat buffer back to an integer, rejecting anything that is
/// not exactly one (a corrupted or mis-laid-out all-reduce result).
fn flat_count(index: usize, value: f64) -> Result<u64, MetricsError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= EXACT {
        Ok(value as u64)
    } else {
        Err(MetricsError::FlatCount { index, value })
    }
}

/// Whether `value` improves on `best` for `metric` by more than `min_delta`: strictly below
/// `best - min_delta` for lower-is-better metrics (losses, errors), strictly above
/// `best + min_delta` for higher-is-better ones ([`MonitorMetric::higher_is_better`]). The
/// first finite value (`best = None`) always improves; a NaN or infinite value never does, so a
/// diverged evaluation cannot become the best checkpoint.
pub fn improved(metric: MonitorMetric, best: Option<f64>, value: f64, min_delta: f64) -> bool {
    if !value.is_finite() {
        return false;
    }
    match best {
        None => true,
        Some(best) if metric.higher_is_better() => value > best + min_delta,
        Some(best) => value < best - min_delta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn improvement_direction_follows_the_metric() {
        use MonitorMetric::*;
        for m in [ValLoss, ValRmse, ValMae] {
            assert!(improved(m, Some(1.0), 0.9, 0.0));
            assert!(!improved(m, Some(1.0), 1.1, 0.0));
            assert!(!improved(m, Some(1.0), 1.0, 0.0), "equal is not better");
        }
        for m in [ValAccuracy, ValF1] {
            assert!(improved(m, Some(0.8), 0.81, 0.0));
            assert!(!improved(m, Some(0.8), 0.79, 0.0));
            assert!(!improved(m, Some(0.8), 0.8, 0.0), "equal is not better");
        }
    }

    #[test]
    fn min_delta_must_be_exceeded() {
        // loss 1.0 → 0.95 is an improvement of 0.05: not more than 0.1, more than 0.01.
        assert!(!improved(MonitorMetric::ValLoss, Some(1.0), 0.95, 0.1));
        assert!(improved(MonitorMetric::ValLoss, Some(1.0), 0.95, 0.01));
        // accuracy 0.5 → 0.75 (+0.25): more than 0.125, not more than 0.25.
        assert!(improved(MonitorMetric::ValAccuracy, Some(0.5), 0.75, 0.125));
        assert!(!improved(MonitorMetric::ValAccuracy, Some(0.5), 0.75, 0.25));
    }

    #[test]
    fn first_value_improves_unless_not_finite() {
        assert!(improved(MonitorMetric::ValLoss, None, 123.0, 10.0));
        assert!(!improved(MonitorMetric::ValLoss, None, f64::NAN, 0.0));
        assert!(!improved(MonitorMetric::ValLoss, Some(1.0), f64::NAN, 0.0));
        assert!(!improved(
            MonitorMetric::ValAccuracy,
            Some(0.5),
            f64::INFINITY,
            0.0
        ));
        assert!(!improved(
            MonitorMetric::ValLoss,
            Some(1.0),
            f64::NEG_INFINITY,
            0.0
        ));
    }

    #[test]
    fn flat_counts_must_be_exact_integers() {
        assert_eq!(flat_count(0, 3.0), Ok(3));
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 1e17] {
            assert!(matches!(
                flat_count(4, bad),
                Err(MetricsError::FlatCount { index: 4, .. })
            ));
        }
    }
}
