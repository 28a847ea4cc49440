//! Flagging sensor rows that the model did not expect: `ringtrain export` stores the mean and
//! standard deviation of the one-step-ahead residuals (actual − forecast, raw units, per target)
//! over the validation split in the `ringtrain.residuals` metadata; a [`Detector`] compares each
//! new row's targets with the forecast made one step before and scores the residual in those
//! standard deviations. A score above `K` is an anomaly. No allocation after construction.

use crate::error::InferError;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use serde_json::Value;

/// One-step-ahead residual statistics per target, from the validation split.
#[derive(Debug, Clone, PartialEq)]
pub struct Residuals {
    /// Mean residual per target (raw units).
    pub mean: Vec<f64>,
    /// Standard deviation per target (raw units, > 0).
    pub std: Vec<f64>,
    /// Validation samples they were measured on.
    pub samples: u64,
    /// The split they come from (`val`, or `test` when the run had no validation split).
    pub split: String,
}

impl Residuals {
    /// Parses the `ringtrain.residuals` metadata JSON.
    ///
    /// # Errors
    /// [`InferError::Metadata`] when it is not `{"split", "samples", "mean": [..], "std": [..]}`
    /// with equally long lists of finite values and positive deviations.
    pub fn parse(json: &str) -> Result<Residuals, InferError> {
        let bad = |why: &str| InferError::Metadata(format!("ringtrain.residuals: {why}"));
        let v: Value = serde_json::from_str(json).map_err(|e| bad(&format!("{e}")))?;
        let list = |key: &str| -> Result<Vec<f64>, InferError> {
            v.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&format!("{key} is not a list")))?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| bad(&format!("{key} holds a non-finite value")))
                })
                .collect()
        };
        let (mean, std) = (list("mean")?, list("std")?);
        if mean.len() != std.len() || mean.is_empty() {
            return Err(bad(
                "mean and std must be non-empty lists of one value per target",
            ));
        }
        if std.iter().any(|s| *s <= 0.0) {
            return Err(bad("a standard deviation is not positive"));
        }
        Ok(Residuals {
            mean,
            std,
            samples: v.get("samples").and_then(Value::as_u64).unwrap_or(0),
            split: v
                .get("split")
                .and_then(Value::as_str)
                .unwrap_or("val")
                .into(),
        })
    }

    /// Number of targets.
    pub fn targets(&self) -> usize {
        self.mean.len()
    }
}

/// Scores each row against the forecast made one step before it.
#[derive(Debug, Clone)]
pub struct Detector {
    residuals: Residuals,
    threshold: f64,
    /// One-step-ahead forecast of each target made at the previous row, once there is one.
    expected: Vec<f32>,
    primed: bool,
}

/// The score of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The largest `|residual − mean| / std` over the targets.
    pub z: f64,
    /// The target it was largest for.
    pub target: usize,
    /// Whether `z` exceeds the threshold.
    pub anomaly: bool,
}

impl Detector {
    /// A detector flagging residuals beyond `threshold` standard deviations.
    ///
    /// # Errors
    /// [`InferError::Argument`] when `threshold` is not a positive finite number.
    pub fn new(residuals: Residuals, threshold: f64) -> Result<Detector, InferError> {
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(InferError::Argument(format!(
                "anomaly threshold {threshold}: must be a positive number of standard deviations"
            )));
        }
        let n = residuals.targets();
        Ok(Detector {
            residuals,
            threshold,
            expected: vec![0.0; n],
            primed: false,
        })
    }

    /// Scores `actual` (the raw target values of the row just read) against the forecast made
    /// at the previous row (`None` for the first row), then keeps the first `targets` values of
    /// `forecast` (the raw forecast made after this row, step 1 first) for the next row.
    ///
    /// # Errors
    /// [`InferError::Input`] when `actual` does not hold one value per target or `forecast` has
    /// fewer.
    pub fn observe(
        &mut self,
        actual: &[f32],
        forecast: &[f32],
    ) -> Result<Option<Score>, InferError> {
        let n = self.residuals.targets();
        for (what, got, ok) in [
            ("row targets", actual.len(), actual.len() == n),
            ("forecast", forecast.len(), forecast.len() >= n),
        ] {
            if !ok {
                return Err(InferError::Input {
                    what,
                    expected: n,
                    got,
                });
            }
        }
        let score = self.primed.then(|| {
            let mut best = Score {
                z: 0.0,
                target: 0,
                anomaly: false,
            };
            for (i, (a, e)) in actual.iter().zip(&self.expected).enumerate() {
                let r = f64::from(*a) - f64::from(*e);
                let z = ((r - self.residuals.mean[i]) / self.residuals.std[i]).abs();
                // A NaN reading scores infinitely far from any forecast.
                let z = if z.is_nan() { f64::INFINITY } else { z };
                if z > best.z || i == 0 {
                    best = Score {
                        z,
                        target: i,
                        anomaly: z > self.threshold,
                    };
                }
            }
            best
        });
        self.expected.copy_from_slice(&forecast[..n]);
        self.primed = true;
        Ok(score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_against_the_previous_forecast() {
        let r =
            Residuals::parse(r#"{"split":"val","samples":9,"mean":[1.0],"std":[2.0]}"#).unwrap();
        assert_eq!(r.samples, 9);
        let mut d = Detector::new(r, 3.0).unwrap();
        assert_eq!(d.observe(&[10.0], &[12.0, 13.0]).unwrap(), None);
        // residual 19 − 12 = 7, (7 − 1) / 2 = 3: not beyond 3
        let s = d.observe(&[19.0], &[20.0, 0.0]).unwrap().unwrap();
        assert_eq!((s.z, s.anomaly), (3.0, false));
        // residual 28 − 20 = 8 → 3.5
        let s = d.observe(&[28.0], &[0.0, 0.0]).unwrap().unwrap();
        assert_eq!((s.z, s.anomaly), (3.5, true));
        let s = d.observe(&[f32::NAN], &[0.0, 0.0]).unwrap().unwrap();
        assert!(s.anomaly);
        assert!(d.observe(&[1.0, 2.0], &[0.0]).is_err());
    }

    #[test]
    fn malformed_statistics_are_refused() {
        for bad in [
            r#"{"mean":[1.0],"std":[0.0]}"#,
            r#"{"mean":[1.0,2.0],"std":[1.0]}"#,
            r#"{"mean":[],"std":[]}"#,
            r#"{"mean":"x","std":[1.0]}"#,
            "not json",
        ] {
            assert!(Residuals::parse(bad).is_err(), "{bad}");
        }
        let r = Residuals::parse(r#"{"mean":[0.0],"std":[1.0]}"#).unwrap();
        assert!(Detector::new(r, 0.0).is_err());
    }
}
