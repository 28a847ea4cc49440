//! Per-column feature scaling. A [`Normalizer`] is fitted on the training rows only (fitting on
//! all rows would leak the validation and test distribution into training), stored in the
//! checkpoint, and applied unchanged at evaluation and predict time. Every column is mapped as
//! `(v - shift) / scale`; [`Normalizer::invert_targets`] brings model outputs back to original units.
//!
//! Target scaling is a second affine map per target column, fitted on what the model is trained
//! to output (the normalized levels, or in the delta modes their changes from the mode's
//! reference forecast): in the delta modes those changes are a small fraction of the level's
//! spread, so without it the head's initial noise dwarfs them. It lives in
//! [`Normalizer::residuals`]; absent (checkpoints written before it existed) means identity.

use ringtrain_spec::Normalization;
use serde::{Deserialize, Serialize};

/// The affine map of one column: normalized = `(value - shift) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScale {
    /// Header name of the column.
    pub column: String,
    /// Subtracted first (mean for z-score, minimum for min-max, 0 for none).
    pub shift: f64,
    /// Divided by next (standard deviation, range, or 1). Never 0: a constant training column
    /// gets scale 1 so it maps to 0 instead of dividing by zero.
    pub scale: f64,
}

impl ColumnScale {
    fn fit(kind: Normalization, column: &str, values: &[f64]) -> ColumnScale {
        let (shift, scale) = match kind {
            Normalization::None => (0.0, 1.0),
            Normalization::Zscore => {
                let n = values.len().max(1) as f64;
                let mean = values.iter().sum::<f64>() / n;
                let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                (mean, var.sqrt())
            }
            Normalization::Minmax => {
                let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (min, max - min)
            }
        };
        let scale = if scale > 0.0 && scale.is_finite() {
            scale
        } else {
            1.0
        };
        let shift = if shift.is_finite() { shift } else { 0.0 };
        ColumnScale {
            column: column.to_string(),
            shift,
            scale,
        }
    }

    /// Maps an original value to model units.
    pub fn apply(&self, v: f64) -> f64 {
        (v - self.shift) / self.scale
    }

    /// Maps a model-unit value back to original units.
    pub fn invert(&self, v: f64) -> f64 {
        v * self.scale + self.shift
    }
}

/// Scaling of the feature and target columns of a series, fitted on the training split.
/// A column that is both a feature and a target appears in both lists with the same numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// The method the scales were fitted with.
    pub kind: Normalization,
    /// One entry per feature column, in model input order.
    pub features: Vec<ColumnScale>,
    /// One entry per target column, in model output order.
    pub targets: Vec<ColumnScale>,
    /// Target scaling: one z-score map per target column from the normalized model target
    /// (level, or change from the mode's reference) to the model's output units, fitted on the
    /// training windows. `None` is the identity (no scaling, or a checkpoint written before the
    /// field existed); the serialized form then has no such key, so such checkpoints keep
    /// their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residuals: Option<Vec<ColumnScale>>,
}

impl Normalizer {
    /// Fits one scale per column from the training values of each column (`feature_values[i]`
    /// holds all training rows of `feature_names[i]`).
    pub fn fit(
        kind: Normalization,
        feature_names: &[String],
        feature_values: &[&[f64]],
        target_names: &[String],
        target_values: &[&[f64]],
    ) -> Normalizer {
        let fit = |names: &[String], values: &[&[f64]]| {
            names
                .iter()
                .zip(values)
                .map(|(n, v)| ColumnScale::fit(kind, n, v))
                .collect()
        };
        Normalizer {
            kind,
            features: fit(feature_names, feature_values),
            targets: fit(target_names, target_values),
            residuals: None,
        }
    }

    /// Fits the target scaling (mean and standard deviation per target column) on `values`,
    /// the normalized model targets of the training windows laid out as the model's outputs
    /// (element `i` belongs to target `i % targets`), and stores it in
    /// [`Normalizer::residuals`]. A column with zero spread (or no values) gets scale 1.
    pub fn fit_residuals(&mut self, values: &[f32]) {
        let t = self.targets.len();
        if t == 0 {
            return;
        }
        let per_column: Vec<Vec<f64>> = (0..t)
            .map(|c| {
                values
                    .iter()
                    .skip(c)
                    .step_by(t)
                    .map(|&v| f64::from(v))
                    .collect()
            })
            .collect();
        self.residuals = Some(
            self.targets
                .iter()
                .zip(&per_column)
                .map(|(col, v)| ColumnScale::fit(Normalization::Zscore, &col.column, v))
                .collect(),
        );
    }

    /// Maps normalized model targets to the model's output units in place (the target
    /// scaling; identity when [`Normalizer::residuals`] is `None`). Same layout as
    /// [`Normalizer::apply_targets`].
    pub fn scale_residuals(&self, y: &mut [f32]) {
        if let Some(r) = &self.residuals {
            apply_cyclic(r, y, ColumnScale::apply);
        }
    }

    /// Model outputs to forecasts in original units, in place: undoes the target scaling, adds
    /// the mode's reference forecast `offsets` (normalized, same layout; zeros in level mode),
    /// then inverts the target normalization.
    pub fn outputs_to_original(&self, y: &mut [f32], offsets: &[f32]) {
        self.unscale_residuals(y);
        for (v, o) in y.iter_mut().zip(offsets) {
            *v += o;
        }
        self.invert_targets(y);
    }

    /// Inverse of [`Normalizer::scale_residuals`]: model outputs back to normalized model
    /// targets (before the mode's reference is added back).
    pub fn unscale_residuals(&self, y: &mut [f32]) {
        if let Some(r) = &self.residuals {
            apply_cyclic(r, y, ColumnScale::invert);
        }
    }

    /// Normalizes row-major feature values in place (`x.len()` a multiple of the feature count;
    /// element `i` belongs to feature `i % features`).
    pub fn apply_features(&self, x: &mut [f32]) {
        apply_cyclic(&self.features, x, ColumnScale::apply);
    }

    /// Normalizes target values in place (layout: element `i` belongs to target
    /// `i % targets`, as in h-major forecasts).
    pub fn apply_targets(&self, y: &mut [f32]) {
        apply_cyclic(&self.targets, y, ColumnScale::apply);
    }

    /// Maps normalized target values (model outputs, element `i` belongs to target
    /// `i % targets`) back to original units in place.
    pub fn invert_targets(&self, y: &mut [f32]) {
        apply_cyclic(&self.targets, y, ColumnScale::invert);
    }
}

fn apply_cyclic(cols: &[ColumnScale], v: &mut [f32], f: fn(&ColumnScale, f64) -> f64) {
    if cols.is_empty() {
        return;
    }
    for (i, x) in v.iter_mut().enumerate() {
        *x = f(&cols[i % cols.len()], f64::from(*x)) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_minmax_and_constant_columns() {
        let names = vec!["a".to_string()];
        let z = Normalizer::fit(
            Normalization::Zscore,
            &names,
            &[&[1.0, 3.0]],
            &names,
            &[&[5.0]],
        );
        assert_eq!((z.features[0].shift, z.features[0].scale), (2.0, 1.0));
        // A constant column must not divide by zero.
        assert_eq!((z.targets[0].shift, z.targets[0].scale), (5.0, 1.0));
        let m = Normalizer::fit(Normalization::Minmax, &names, &[&[2.0, 6.0, 4.0]], &[], &[]);
        assert_eq!(m.features[0].apply(6.0), 1.0);
        assert_eq!(m.features[0].apply(2.0), 0.0);
        let mut y = [0.5f32, 1.0];
        let t = Normalizer {
            targets: m.features.clone(),
            ..m
        };
        t.invert_targets(&mut y);
        assert_eq!(y, [4.0, 6.0]);
    }

    #[test]
    fn target_scaling_fits_each_column_and_inverts() {
        let names = vec!["a".to_string(), "b".to_string()];
        let mut n = Normalizer::fit(
            Normalization::Zscore,
            &[],
            &[],
            &names,
            &[&[0.0, 1.0], &[0.0, 1.0]],
        );
        let mut y = [5.0f32, -1.0];
        n.scale_residuals(&mut y);
        assert_eq!(y, [5.0, -1.0], "no residual scaling is the identity");
        // Column a: 0.01, 0.03 (mean 0.02, sd 0.01); column b: constant 7 (scale 1).
        n.fit_residuals(&[0.01, 7.0, 0.03, 7.0]);
        let r = n.residuals.as_ref().unwrap();
        assert!((r[0].shift - 0.02).abs() < 1e-9 && (r[0].scale - 0.01).abs() < 1e-9);
        assert_eq!((r[1].shift, r[1].scale), (7.0, 1.0));
        let mut y = [0.03f32, 8.0];
        n.scale_residuals(&mut y);
        assert!((y[0] - 1.0).abs() < 1e-4 && y[1] == 1.0, "{y:?}");
        n.unscale_residuals(&mut y);
        assert!((y[0] - 0.03).abs() < 1e-6 && y[1] == 8.0, "{y:?}");
    }

    #[test]
    fn a_normalizer_without_residuals_keeps_its_serialized_form() {
        let old =
            r#"{"kind":"zscore","features":[],"targets":[{"column":"y","shift":1.0,"scale":2.0}]}"#;
        let n: Normalizer = serde_json::from_str(old).unwrap();
        assert_eq!(n.residuals, None);
        assert_eq!(serde_json::to_string(&n).unwrap(), old);
    }
}
