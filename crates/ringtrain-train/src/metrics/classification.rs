//! Classification metrics from a confusion matrix: accuracy, per-class precision/recall/F1 and
//! support, macro and support-weighted averages, and the majority-class baseline. All of them
//! are functions of the confusion counts, which is what the accumulator keeps.

use super::{MetricsError, flat_count};
use serde::{Deserialize, Serialize};

/// Confusion counts of one evaluation, mergeable across shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationAccumulator {
    n_classes: usize,
    /// Row-major `[true class][predicted class]`.
    confusion: Vec<u64>,
}

/// Precision, recall and F1 of one class (0 where undefined, see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class label.
    pub label: String,
    /// `tp / (tp + fp)`: of the samples predicted as this class, the fraction that are.
    pub precision: f64,
    /// `tp / (tp + fn)`: of the samples of this class, the fraction found.
    pub recall: f64,
    /// `2 tp / (2 tp + fp + fn)`, the harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of samples whose true class is this one.
    pub support: u64,
}

/// Precision, recall and F1 averaged over classes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AveragedMetrics {
    /// Averaged precision.
    pub precision: f64,
    /// Averaged recall.
    pub recall: f64,
    /// Averaged F1 (the average of per-class F1s, not the F1 of the averages).
    pub f1: f64,
}

/// The classifier that always predicts the most frequent class of the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MajorityBaseline {
    /// Index of that class (the lowest index among ties).
    pub class: usize,
    /// Its label.
    pub label: String,
    /// Its accuracy on the evaluated split: the class's share of this split's samples.
    pub accuracy: f64,
}

/// Everything reported about a classifier on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Samples evaluated.
    pub samples: u64,
    /// Fraction predicted correctly (0 for an empty split).
    pub accuracy: f64,
    /// One entry per class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted mean over all classes, including classes absent from the split (as
    /// scikit-learn does when the label list is given).
    pub macro_avg: AveragedMetrics,
    /// Mean over classes weighted by support (0 for an empty split).
    pub weighted_avg: AveragedMetrics,
    /// Class labels in index order.
    pub labels: Vec<String>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Majority-class baseline on the same split.
    pub majority_baseline: MajorityBaseline,
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl ClassificationAccumulator {
    /// An empty accumulator for `n_classes` classes.
    pub fn new(n_classes: usize) -> Self {
        ClassificationAccumulator {
            n_classes,
            confusion: vec![0; n_classes * n_classes],
        }
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Samples added so far.
    pub fn samples(&self) -> u64 {
        self.confusion.iter().sum()
    }

    /// Adds one sample.
    ///
    /// # Errors
    /// [`MetricsError::ClassOutOfRange`] if either index is `>= n_classes`; nothing is counted.
    pub fn add(&mut self, predicted: usize, truth: usize) -> Result<(), MetricsError> {
        let n_classes = self.n_classes;
        for (role, class) in [("predicted", predicted), ("true", truth)] {
            if class >= n_classes {
                return Err(MetricsError::ClassOutOfRange {
                    role,
                    class,
                    n_classes,
                });
            }
        }
        self.confusion[truth * n_classes + predicted] += 1;
        Ok(())
    }

    /// Adds a batch of `(predicted, truth)` pairs given as two parallel slices.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] if the slices differ in length, or
    /// [`MetricsError::ClassOutOfRange`]; in either case nothing from the batch is counted.
    pub fn add_batch(&mut self, predicted: &[usize], truth: &[usize]) -> Result<(), MetricsError> {
        if predicted.len() != truth.len() {
            return Err(MetricsError::LengthMismatch {
                what: "true classes",
                expected: predicted.len(),
                got: truth.len(),
            });
        }
        let n_classes = self.n_classes;
        let bad = predicted
            .iter()
            .map(|&c| ("predicted", c))
            .chain(truth.iter().map(|&c| ("true", c)))
            .find(|&(_, c)| c >= n_classes);
        if let Some((role, class)) = bad {
            return Err(MetricsError::ClassOutOfRange {
                role,
                class,
                n_classes,
            });
        }
        for (&p, &t) in predicted.iter().zip(truth) {
            self.confusion[t * n_classes + p] += 1;
        }
        Ok(())
    }

    /// Adds another accumulator's counts (e.g. another rank's shard).
    ///
    /// # Errors
    /// [`MetricsError::ShapeMismatch`] if the class counts differ.
    pub fn merge(&mut self, other: &Self) -> Result<(), MetricsError> {
        if other.n_classes != self.n_classes {
            return Err(MetricsError::ShapeMismatch {
                ours: format!("{} classes", self.n_classes),
                theirs: format!("{} classes", other.n_classes),
            });
        }
        for (a, b) in self.confusion.iter_mut().zip(&other.confusion) {
            *a += b;
        }
        Ok(())
    }

    /// The counts as a flat f64 buffer of `n_classes²` values (row-major `[true][predicted]`),
    /// for an element-wise sum across ranks.
    pub fn to_flat(&self) -> Vec<f64> {
        self.confusion.iter().map(|&c| c as f64).collect()
    }

    /// Rebuilds an accumulator from a (summed) flat buffer written by [`Self::to_flat`].
    ///
    /// # Errors
    /// [`MetricsError::FlatLength`] if `flat` is not `n_classes²` long,
    /// [`MetricsError::FlatCount`] if a value is not an exact non-negative integer.
    pub fn from_flat(n_classes: usize, flat: &[f64]) -> Result<Self, MetricsError> {
        let expected = n_classes * n_classes;
        if flat.len() != expected {
            return Err(MetricsError::FlatLength {
                expected,
                got: flat.len(),
            });
        }
        let confusion = flat
            .iter()
            .enumerate()
            .map(|(i, &v)| flat_count(i, v))
            .collect::<Result<_, _>>()?;
        Ok(ClassificationAccumulator {
            n_classes,
            confusion,
        })
    }

    /// Computes the report. `labels` names the classes in index order; `train_counts[c]` is the
    /// number of training samples of class `c`, which picks the majority-class baseline.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] if `labels` or `train_counts` is not `n_classes` long.
    pub fn report(
        &self,
        labels: &[String],
        train_counts: &[u64],
    ) -> Result<ClassificationReport, MetricsError> {
        let n = self.n_classes;
        for (what, got) in [
            ("label names", labels.len()),
            ("train class counts", train_counts.len()),
        ] {
            if got != n {
                return Err(MetricsError::LengthMismatch {
                    what,
                    expected: n,
                    got,
                });
            }
        }
        // chunks(0) would panic; with no classes the matrix is empty and so is `rows`.
        let rows: Vec<Vec<u64>> = self
            .confusion
            .chunks(n.max(1))
            .map(<[u64]>::to_vec)
            .collect();
        let samples = self.samples();
        let correct: u64 = (0..n).map(|c| rows[c][c]).sum();

        let per_class: Vec<ClassMetrics> = (0..n)
            .map(|c| {
                let tp = rows[c][c];
                let support: u64 = rows[c].iter().sum();
                let predicted: u64 = rows.iter().map(|r| r[c]).sum();
                let (fp, fn_) = (predicted - tp, support - tp);
                ClassMetrics {
                    label: labels[c].clone(),
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, support),
                    f1: ratio(2 * tp, 2 * tp + fp + fn_),
                    support,
                }
            })
            .collect();

        let average = |weight: &dyn Fn(&ClassMetrics) -> f64| {
            let total: f64 = per_class.iter().map(weight).sum();
            let mean = |get: fn(&ClassMetrics) -> f64| {
                if total == 0.0 {
                    0.0
                } else {
                    per_class.iter().map(|m| weight(m) * get(m)).sum::<f64>() / total
                }
            };
            AveragedMetrics {
                precision: mean(|m| m.precision),
                recall: mean(|m| m.recall),
                f1: mean(|m| m.f1),
            }
        };
        let macro_avg = average(&|_| 1.0);
        let weighted_avg = average(&|m| m.support as f64);

        // max_by_key keeps the last maximum; scanning in reverse makes that the lowest index.
        let majority = (0..n).rev().max_by_key(|&c| train_counts[c]).unwrap_or(0);
        let majority_baseline = MajorityBaseline {
            class: majority,
            label: labels.get(majority).cloned().unwrap_or_default(),
            accuracy: per_class
                .get(majority)
                .map_or(0.0, |m| ratio(m.support, samples)),
        };

        Ok(ClassificationReport {
            samples,
            accuracy: ratio(correct, samples),
            per_class,
            macro_avg,
            weighted_avg,
            labels: labels.to_vec(),
            confusion: rows,
            majority_baseline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    /// Three classes, ten samples, class 2 ("neu") never predicted:
    ///
    /// ```text
    ///              predicted
    ///              neg pos neu
    /// true neg      3   1   0     support 4
    ///      pos      1   3   0     support 4
    ///      neu      1   1   0     support 2
    /// ```
    /// (predicted, true) pairs of the example above.
    const EXAMPLE_PAIRS: [(usize, usize); 10] = [
        (0, 0),
        (0, 0),
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
        (1, 1),
        (1, 1),
        (0, 2),
        (1, 2),
    ];

    fn example() -> ClassificationAccumulator {
        let mut acc = ClassificationAccumulator::new(3);
        for (p, t) in EXAMPLE_PAIRS {
            acc.add(p, t).expect("in range");
        }
        acc
    }

    #[test]
    fn hand_computed_report() {
        let r = example()
            .report(&labels(&["neg", "pos", "neu"]), &[50, 30, 20])
            .expect("shapes");
        assert_eq!(r.samples, 10);
        assert_eq!(
            r.confusion,
            vec![vec![3, 1, 0], vec![1, 3, 0], vec![1, 1, 0]]
        );
        // accuracy = (3 + 3 + 0) / 10
        close(r.accuracy, 0.6);
        // neg: tp 3, predicted 3+1+1 = 5, support 4 → P 3/5, R 3/4, F1 6/(6+2+1) = 2/3
        let neg = &r.per_class[0];
        assert_eq!((neg.label.as_str(), neg.support), ("neg", 4));
        close(neg.precision, 0.6);
        close(neg.recall, 0.75);
        close(neg.f1, 2.0 / 3.0);
        // pos: the same counts by symmetry
        close(r.per_class[1].precision, 0.6);
        close(r.per_class[1].recall, 0.75);
        close(r.per_class[1].f1, 2.0 / 3.0);
        // neu: never predicted → precision 0/0 → 0; recall 0/2 = 0; F1 0/(0+0+2) = 0
        let neu = &r.per_class[2];
        assert_eq!(neu.support, 2);
        close(neu.precision, 0.0);
        close(neu.recall, 0.0);
        close(neu.f1, 0.0);
        // macro: (0.6 + 0.6 + 0) / 3 = 0.4; (0.75 + 0.75 + 0) / 3 = 0.5; (2/3 + 2/3) / 3 = 4/9
        close(r.macro_avg.precision, 0.4);
        close(r.macro_avg.recall, 0.5);
        close(r.macro_avg.f1, 4.0 / 9.0);
        // weighted by support 4, 4, 2: (4·0.6 + 4·0.6) / 10 = 0.48; (4·0.75 + 4·0.75) / 10 = 0.6
        // (weighted recall always equals accuracy); F1 (8 · 2/3) / 10 = 0.5333…
        close(r.weighted_avg.precision, 0.48);
        close(r.weighted_avg.recall, 0.6);
        close(r.weighted_avg.f1, 16.0 / 30.0);
        // majority of train counts [50, 30, 20] is "neg", 4 of 10 test samples → 0.4
        assert_eq!(
            (
                r.majority_baseline.class,
                r.majority_baseline.label.as_str()
            ),
            (0, "neg")
        );
        close(r.majority_baseline.accuracy, 0.4);
    }

    #[test]
    fn majority_baseline_uses_train_counts_and_lowest_index_on_ties() {
        let acc = example();
        let names = labels(&["neg", "pos", "neu"]);
        // "neu" dominates training although it is the rarest here: 2 of 10 → 0.2
        let r = acc.report(&names, &[1, 1, 9]).expect("shapes");
        assert_eq!(r.majority_baseline.label, "neu");
        close(r.majority_baseline.accuracy, 0.2);
        // tie between pos and neu → pos (index 1), 4 of 10
        let r = acc.report(&names, &[1, 5, 5]).expect("shapes");
        assert_eq!(r.majority_baseline.class, 1);
        close(r.majority_baseline.accuracy, 0.4);
    }

    #[test]
    fn empty_split_is_all_zeros() {
        let r = ClassificationAccumulator::new(2)
            .report(&labels(&["a", "b"]), &[3, 1])
            .expect("ok");
        assert_eq!(r.samples, 0);
        close(r.accuracy, 0.0);
        close(r.macro_avg.f1, 0.0);
        close(r.weighted_avg.precision, 0.0);
        close(r.majority_baseline.accuracy, 0.0);
        assert!(
            r.per_class
                .iter()
                .all(|m| m.precision == 0.0 && m.recall == 0.0 && m.f1 == 0.0)
        );
    }

    #[test]
    fn perfect_predictions_score_one() {
        let mut acc = ClassificationAccumulator::new(2);
        acc.add_batch(&[0, 1, 1], &[0, 1, 1]).expect("in range");
        let r = acc.report(&labels(&["a", "b"]), &[1, 1]).expect("shapes");
        close(r.accuracy, 1.0);
        close(r.macro_avg.f1, 1.0);
        close(r.weighted_avg.f1, 1.0);
        // majority "a" (tie → index 0) is 1 of 3
        close(r.majority_baseline.accuracy, 1.0 / 3.0);
    }

    #[test]
    fn bad_inputs_are_errors_and_count_nothing() {
        let mut acc = ClassificationAccumulator::new(2);
        let err = acc.add(2, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "predicted class 2 is out of range for 2 classes"
        );
        let err = acc.add_batch(&[0, 1], &[1, 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "true class 5 is out of range for 2 classes"
        );
        let err = acc.add_batch(&[0, 1], &[1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: true classes has 1 elements, expected 2"
        );
        assert_eq!(acc.samples(), 0);
        let err = acc.report(&labels(&["a"]), &[1, 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: label names has 1 elements, expected 2"
        );
        let err = acc.report(&labels(&["a", "b"]), &[1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: train class counts has 1 elements, expected 2"
        );
    }

    #[test]
    fn shards_merge_and_survive_a_flat_sum() {
        // Split the example's samples over two "ranks" and sum their flat buffers.
        let pairs = EXAMPLE_PAIRS;
        let (mut a, mut b) = (
            ClassificationAccumulator::new(3),
            ClassificationAccumulator::new(3),
        );
        for (i, &(p, t)) in pairs.iter().enumerate() {
            if i % 2 == 0 { a.add(p, t) } else { b.add(p, t) }.expect("in range");
        }
        let summed: Vec<f64> = a
            .to_flat()
            .iter()
            .zip(b.to_flat())
            .map(|(x, y)| x + y)
            .collect();
        assert_eq!(
            ClassificationAccumulator::from_flat(3, &summed).expect("valid"),
            example()
        );
        a.merge(&b).expect("same shape");
        assert_eq!(a, example());

        let err = a.merge(&ClassificationAccumulator::new(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: cannot merge accumulators of different shapes (3 classes vs 2 classes)"
        );
        let err = ClassificationAccumulator::from_flat(3, &summed[..8]).unwrap_err();
        assert_eq!(
            err,
            MetricsError::FlatLength {
                expected: 9,
                got: 8
            }
        );
        let mut bad = summed;
        bad[4] = 2.5;
        let err = ClassificationAccumulator::from_flat(3, &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metrics: flat buffer value 2.5 at index 4 is not a valid count"
        );
    }

    #[test]
    fn report_serializes_to_json() {
        let r = example()
            .report(&labels(&["neg", "pos", "neu"]), &[5, 3, 2])
            .expect("shapes");
        let json = serde_json::to_string(&r).expect("finite");
        let back: ClassificationReport = serde_json::from_str(&json).expect("own output");
        // serde_json's default float parsing may be an ulp off, so compare floats loosely.
        assert_eq!((&back.labels, &back.confusion), (&r.labels, &r.confusion));
        close(back.macro_avg.f1, r.macro_avg.f1);
        close(back.per_class[0].precision, r.per_class[0].precision);
        assert!(json.contains("\"macro_avg\"") && json.contains("\"majority_baseline\""));
    }
}
