//! The forecaster's units: the normalizer a ringtrain export stores in its `ringtrain.fitted`
//! metadata, applied to raw sensor rows on the way in and inverted on the forecast on the way
//! out, exactly as `ringtrain predict` does (f64 arithmetic per value).

use crate::error::InferError;
use alloc::format;
use alloc::vec::Vec;
use serde_json::Value;

/// `(shift, scale)` of one column: model units are `(v − shift) / scale`.
type Column = (f64, f64);

/// Feature and target scaling of a forecaster.
#[derive(Debug, Clone)]
pub struct Scaling {
    features: Vec<Column>,
    targets: Vec<Column>,
    residuals: Option<Vec<Column>>,
    /// Position of each target among the feature columns (matched by column name), when every
    /// target is also a feature.
    target_positions: Option<Vec<usize>>,
    /// `data.forecast_mode = "delta"`: outputs are changes from the last observed target.
    delta: bool,
}

fn columns(v: Option<&Value>, what: &str) -> Result<Vec<Column>, InferError> {
    let bad = || InferError::Metadata(format!("ringtrain.fitted: {what} is not a list of scales"));
    v.and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            let shift = c.get("shift").and_then(Value::as_f64);
            let scale = c.get("scale").and_then(Value::as_f64);
            match (shift, scale) {
                (Some(shift), Some(scale)) if scale != 0.0 && scale.is_finite() => {
                    Ok((shift, scale))
                }
                _ => Err(bad()),
            }
        })
        .collect()
}

impl Scaling {
    /// The scaling in `fitted` (the `ringtrain.fitted` JSON), given the forecast mode named in
    /// the spec; `None` when the file has no series normalizer.
    pub(crate) fn parse(fitted: &str, mode: Option<&str>) -> Result<Option<Scaling>, InferError> {
        let v: Value = serde_json::from_str(fitted)
            .map_err(|e| InferError::Metadata(format!("ringtrain.fitted: {e}")))?;
        // `{"kind": "series", "state": {...}}`; a text model's vocabulary has another kind.
        if v.get("kind").and_then(Value::as_str) != Some("series") {
            return Ok(None);
        }
        let Some(series) = v.get("state") else {
            return Ok(None);
        };
        let delta = match mode.unwrap_or("level") {
            "level" => false,
            "delta" => true,
            other => {
                return Err(InferError::Unsupported(format!(
                    "data.forecast_mode = {other:?}"
                )));
            }
        };
        let residuals = match series.get("residuals") {
            None | Some(Value::Null) => None,
            Some(r) => Some(columns(Some(r), "residuals")?),
        };
        let names = |key: &str| -> Vec<Option<&str>> {
            series
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|c| c.get("column").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default()
        };
        let feature_names = names("features");
        let target_positions = names("targets")
            .iter()
            .map(|t| t.and_then(|t| feature_names.iter().position(|f| *f == Some(t))))
            .collect::<Option<Vec<usize>>>();
        Ok(Some(Scaling {
            target_positions,
            features: columns(series.get("features"), "features")?,
            targets: columns(series.get("targets"), "targets")?,
            residuals,
            delta,
        }))
    }

    /// Raw values per input row.
    pub fn features(&self) -> usize {
        self.features.len()
    }

    /// Target columns (a forecast holds `horizon × targets` values, target `i % targets`).
    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    /// Where each target sits in a raw row (`None` when a target is not among the features,
    /// so a row does not carry its actual value).
    pub fn target_positions(&self) -> Option<&[usize]> {
        self.target_positions.as_deref()
    }

    /// Whether outputs are changes from the last observed targets (`data.forecast_mode =
    /// "delta"`), which [`Scaling::denormalize`] then needs.
    pub fn is_delta(&self) -> bool {
        self.delta
    }

    /// Writes the model-unit values of the raw `row` into `out`.
    ///
    /// # Errors
    /// [`InferError::Input`] when `row` or `out` has the wrong length.
    pub fn normalize(&self, row: &[f32], out: &mut [f32]) -> Result<(), InferError> {
        for (what, got) in [("row", row.len()), ("normalized row", out.len())] {
            if got != self.features.len() {
                return Err(InferError::Input {
                    what,
                    expected: self.features.len(),
                    got,
                });
            }
        }
        for ((o, v), (shift, scale)) in out.iter_mut().zip(row).zip(&self.features) {
            *o = ((f64::from(*v) - shift) / scale) as f32;
        }
        Ok(())
    }

    /// Turns a forecast in model units into raw units in place. `last_targets` holds the raw
    /// value of each target at the last step fed (read only in the delta mode, whose outputs
    /// are changes from it).
    ///
    /// # Errors
    /// [`InferError::Input`] when `last_targets` is needed and has the wrong length.
    pub fn denormalize(&self, y: &mut [f32], last_targets: &[f32]) -> Result<(), InferError> {
        let t = self.targets.len().max(1);
        if self.delta && last_targets.len() != self.targets.len() {
            return Err(InferError::Input {
                what: "last targets",
                expected: self.targets.len(),
                got: last_targets.len(),
            });
        }
        for (i, v) in y.iter_mut().enumerate() {
            let mut x = f64::from(*v);
            if let Some(r) = &self.residuals
                && let Some((shift, scale)) = r.get(i % r.len().max(1))
            {
                x = f64::from((x * scale + shift) as f32);
            }
            if self.delta
                && let (Some(last), Some((shift, scale))) =
                    (last_targets.get(i % t), self.targets.get(i % t))
            {
                x = f64::from((x as f32) + ((f64::from(*last) - shift) / scale) as f32);
            }
            if let Some((shift, scale)) = self.targets.get(i % t) {
                x = x * scale + shift;
            }
            *v = x as f32;
        }
        Ok(())
    }
}

impl core::fmt::Display for Scaling {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} features, {} targets{}",
            self.features.len(),
            self.targets.len(),
            if self.delta { ", delta mode" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_round_trip_and_seasonal_delta_refused() {
        let fitted = r#"{"kind":"series","state":{"kind":"zscore","features":[{"column":"a","shift":10.0,"scale":2.0}],"targets":[{"column":"a","shift":10.0,"scale":2.0}]}}"#;
        let s = Scaling::parse(fitted, None).unwrap().unwrap();
        let mut out = [0.0f32];
        s.normalize(&[14.0], &mut out).unwrap();
        assert_eq!(out, [2.0]);
        let mut y = [2.0f32, -1.0];
        s.denormalize(&mut y, &[]).unwrap();
        assert_eq!(y, [14.0, 8.0]);
        let e = Scaling::parse(fitted, Some("seasonal_delta")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.forecast_mode = \"seasonal_delta\" is not supported by ringtrain-infer \
             (numeric input, rnn/lstm/gru layers and a forecast head only)"
        );
        assert!(
            Scaling::parse(r#"{"kind":"text","state":{}}"#, None)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            alloc::string::ToString::to_string(&s),
            "1 features, 1 targets"
        );
    }
}
