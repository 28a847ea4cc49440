//! Statistical baselines for forecasting: AutoETS (exponential smoothing with the error and
//! trend form chosen by AICc, from the `augurs-ets` crate) and, where the task has a season,
//! MSTL + AutoETS (the series deseasonalized by MSTL from `augurs-mstl`, AutoETS on the rest,
//! the training split's last seasonal cycle added back).
//!
//! Each target column is fitted once, on the training rows only. The fitted model is then run
//! forward (filtered) through every later row with its parameters fixed, so a window's forecast
//! uses exactly the observations up to that window's last input row, like the network's — no
//! refit per window (too slow on long series) and no look at a window's targets. `augurs-ets`
//! 0.10 has no seasonal ETS forecasts and no public way to run a fitted model forward, so the
//! filter here re-implements its level/trend recursions; the fitted parameters and initial
//! state are read from the fitted model's `Debug` form, and the filter is checked to reproduce
//! the crate's own one-step fitted values on the training rows (any mismatch, as a different
//! crate version could cause, makes the baseline unavailable with that reason rather than
//! wrong).

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::stlrs;

/// Relative tolerance of the self-check against the crate's fitted values.
const CHECK_TOLERANCE: f64 = 1e-6;

/// The trend component of a non-seasonal ETS model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trend {
    None,
    Additive,
    Multiplicative,
}

/// A fitted non-seasonal ETS model of one series with its state after every row, so a forecast
/// can start at any row.
#[derive(Debug, Clone)]
struct EtsPath {
    trend: Trend,
    alpha: f64,
    beta: f64,
    phi: f64,
    /// `(level, growth)` after observing rows `0..=r`, for every row `r` of the series.
    states: Vec<(f64, f64)>,
    /// The selected form, as `augurs-ets` names it (e.g. `AAdN`).
    form: String,
}

impl EtsPath {
    /// Fits AutoETS on `y[..train]` and filters the whole of `y` with the fitted parameters.
    fn fit(y: &[f64], train: usize) -> Result<EtsPath, String> {
        let fitted = AutoETS::non_seasonal()
            .fit(&y[..train])
            .map_err(|e| format!("fit failed: {e}"))?;
        let model = fitted.model();
        let mt = model.model_type();
        let trend = match mt.trend {
            augurs_ets::model::TrendComponent::None => Trend::None,
            augurs_ets::model::TrendComponent::Additive => Trend::Additive,
            augurs_ets::model::TrendComponent::Multiplicative => Trend::Multiplicative,
        };
        let form = {
            let s = mt.to_string();
            if model.damped() {
                // "AAN" → "AAdN": the conventional name of a damped trend.
                format!("{}{}d{}", &s[..1], &s[1..2], &s[2..])
            } else {
                s
            }
        };
        let debug = format!("{model:?}");
        let (alpha, beta, phi, init) = parse_fit(&debug, trend != Trend::None)
            .ok_or_else(|| "cannot read the fitted parameters of augurs-ets".to_string())?;
        let phi = if model.damped() { phi } else { 1.0 };
        let mut path = EtsPath {
            trend,
            alpha,
            beta,
            phi,
            states: Vec::with_capacity(y.len()),
            form,
        };
        let fitted_values = fitted
            .predict_in_sample(None)
            .map_err(|e| format!("in-sample prediction failed: {e}"))?
            .point;
        let mut state = init;
        for (r, &v) in y.iter().enumerate() {
            if r < train {
                // The self-check: the one-step forecast from the previous state must be the
                // crate's fitted value.
                let mine = path.forecast_from(state, 1);
                let theirs = fitted_values.get(r).copied().unwrap_or(f64::NAN);
                // Written so that a NaN on either side also fails the check.
                let close = (mine - theirs).abs() <= CHECK_TOLERANCE * theirs.abs().max(1.0);
                if !close {
                    return Err(format!(
                        "the filter does not reproduce augurs-ets's fitted value at row {r} \
                         ({mine} vs {theirs})"
                    ));
                }
            }
            state = path.update(state, v);
            path.states.push(state);
        }
        Ok(path)
    }

    /// The state after observing `y` in state `(l, b)` (augurs-ets's recursions; the error
    /// form changes the likelihood only, not the update).
    fn update(&self, (l, b): (f64, f64), y: f64) -> (f64, f64) {
        let (q, phi_b) = match self.trend {
            Trend::None => (l, 0.0),
            Trend::Additive => (l + self.phi * b, self.phi * b),
            Trend::Multiplicative => {
                let pb = b.powf(self.phi);
                (l * pb, pb)
            }
        };
        let new_l = q + self.alpha * (y - q);
        let new_b = match self.trend {
            Trend::None => 0.0,
            Trend::Additive => phi_b + (self.beta / self.alpha) * ((new_l - l) - phi_b),
            Trend::Multiplicative => {
                let r = if l.abs() < 1e-10 { 1e10 } else { new_l / l };
                phi_b + (self.beta / self.alpha) * (r - phi_b)
            }
        };
        (new_l, new_b)
    }

    /// The `h`-step forecast (h ≥ 1) from state `(l, b)`.
    fn forecast_from(&self, (l, b): (f64, f64), h: usize) -> f64 {
        // φ + φ² + … + φʰ (h when undamped).
        let phi_star = if (self.phi - 1.0).abs() < 1e-10 {
            h as f64
        } else {
            (1..=h).map(|k| self.phi.powi(k as i32)).sum()
        };
        match self.trend {
            Trend::None => l,
            Trend::Additive => l + phi_star * b,
            Trend::Multiplicative => l * b.powf(phi_star),
        }
    }

    /// The `h`-step forecast after observing rows `0..=last`.
    fn forecast(&self, last: usize, h: usize) -> f64 {
        self.forecast_from(self.states[last], h)
    }
}

/// Reads `alpha`, `beta`, `phi` and the initial `(level, growth)` from the `Debug` form of a
/// fitted `augurs_ets::model::Model` (the fit state's `x` holds the initial state first).
fn parse_fit(debug: &str, has_trend: bool) -> Option<(f64, f64, f64, (f64, f64))> {
    let fit = &debug[debug.find("model_fit: FitState {")?..];
    let x = &fit[fit.find("x: [")? + 4..];
    let mut init = x[..x.find(']')?]
        .split(',')
        .map(|v| v.trim().parse::<f64>());
    let level = init.next()?.ok()?;
    let growth = if has_trend { init.next()?.ok()? } else { 0.0 };
    let params = &fit[fit.find("params: Params {")?..];
    let field = |name: &str| -> Option<f64> {
        let rest = &params[params.find(&format!("{name}: "))? + name.len() + 2..];
        let end = rest.find([',', ' ', '}'])?;
        rest[..end].parse().ok()
    };
    let (alpha, beta, phi) = (field("alpha")?, field("beta")?, field("phi")?);
    alpha
        .is_finite()
        .then_some((alpha, beta, phi, (level, growth)))
}

/// One target column's fitted baseline: ETS on the series minus a fixed seasonal pattern.
#[derive(Debug, Clone)]
struct ColumnModel {
    ets: EtsPath,
    /// Seasonal component of every row (zeros without MSTL): the MSTL fit on the training
    /// rows, then the training split's last cycle repeated.
    seasonal: Vec<f64>,
}

impl ColumnModel {
    fn fit(y: &[f64], train: usize, season: Option<usize>) -> Result<ColumnModel, String> {
        let seasonal = match season {
            None => vec![0.0; y.len()],
            Some(m) => {
                if train < 2 * m {
                    return Err(format!(
                        "MSTL needs two seasons ({}) of training rows, there are {train}",
                        2 * m
                    ));
                }
                let train_f32: Vec<f32> = y[..train].iter().map(|&v| v as f32).collect();
                let fit = stlrs::MstlParams::new()
                    .fit(&train_f32, &[m])
                    .map_err(|e| format!("MSTL failed: {e}"))?;
                let fitted = fit
                    .seasonal()
                    .first()
                    .ok_or_else(|| "MSTL returned no seasonal component".to_string())?;
                let mut s: Vec<f64> = fitted.iter().map(|&v| f64::from(v)).collect();
                let cycle = s[train - m..train].to_vec();
                s.extend((train..y.len()).map(|r| cycle[(r - train) % m]));
                s
            }
        };
        let rest: Vec<f64> = y.iter().zip(&seasonal).map(|(v, s)| v - s).collect();
        Ok(ColumnModel {
            ets: EtsPath::fit(&rest, train)?,
            seasonal,
        })
    }

    fn forecast(&self, last: usize, h: usize) -> f64 {
        let season = self.seasonal.get(last + h).copied().unwrap_or(0.0);
        self.ets.forecast(last, h) + season
    }
}

/// Which statistical baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// Non-seasonal AutoETS on the series itself.
    AutoEts,
    /// MSTL with the task's season, AutoETS on the deseasonalized series.
    MstlEts,
}

impl StatKind {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            StatKind::AutoEts => "AutoETS",
            StatKind::MstlEts => "MSTL + AutoETS",
        }
    }
}

/// A statistical baseline fitted on a series' training rows, for every target column.
#[derive(Debug, Clone)]
pub struct StatBaseline {
    kind: StatKind,
    columns: Vec<ColumnModel>,
}

impl StatBaseline {
    /// Fits `kind` on the first `train` rows of each target column (`columns[c]` holds every
    /// row of column `c`, original units); `season` is required for [`StatKind::MstlEts`].
    ///
    /// # Errors
    /// A short reason when a fit fails or cannot be reproduced (for the report).
    pub(crate) fn fit(
        kind: StatKind,
        columns: &[Vec<f64>],
        train: usize,
        season: Option<usize>,
    ) -> Result<StatBaseline, String> {
        let season = match kind {
            StatKind::AutoEts => None,
            StatKind::MstlEts => Some(season.ok_or("MSTL needs a season")?),
        };
        let columns = columns
            .iter()
            .map(|y| ColumnModel::fit(y, train, season))
            .collect::<Result<_, _>>()?;
        Ok(StatBaseline { kind, columns })
    }

    /// Which baseline this is.
    pub fn kind(&self) -> StatKind {
        self.kind
    }

    /// The ETS form selected per target column (e.g. `["AAdN"]`).
    pub fn forms(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.ets.form.clone()).collect()
    }

    /// Forecasts for steps `1..=horizon` after row `last`, h-major over the target columns
    /// (the layout of a window's targets), pushed onto `out`.
    pub(crate) fn push_forecast(&self, last: usize, horizon: usize, out: &mut Vec<f32>) {
        for h in 1..=horizon {
            out.extend(self.columns.iter().map(|c| c.forecast(last, h) as f32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augurs_testing::data::AIR_PASSENGERS;

    #[test]
    fn the_filter_continues_the_fitted_model_exactly() {
        let y: Vec<f64> = AIR_PASSENGERS.to_vec();
        let train = 100;
        // Fitting already checks the filter against the crate's fitted values on the train
        // rows; past them the filter's forecast from the last train row is the crate's own.
        let path = EtsPath::fit(&y, train).expect("AirPassengers fits");
        let fitted = AutoETS::non_seasonal().fit(&y[..train]).unwrap();
        let theirs = fitted.predict(12, None).unwrap().point;
        for (h, t) in (1..=12).zip(&theirs) {
            let mine = path.forecast(train - 1, h);
            assert!((mine - t).abs() < 1e-6 * t.abs(), "h {h}: {mine} vs {t}");
        }
        // After a further observation the state moves towards it.
        let (before, after) = (path.forecast(train - 1, 2), path.forecast(train, 1));
        assert!(before.is_finite() && after.is_finite());
        assert_eq!(path.states.len(), y.len());
    }

    #[test]
    fn mstl_adds_the_training_season_back_and_refuses_short_training() {
        // A clean period-4 cycle on a level: MSTL + ETS forecasts it almost exactly.
        let y: Vec<f64> = (0..80)
            .map(|i| 10.0 + [1.0, -2.0, 3.0, -2.0][i % 4])
            .collect();
        let b = StatBaseline::fit(StatKind::MstlEts, std::slice::from_ref(&y), 60, Some(4))
            .expect("fits");
        let mut out = Vec::new();
        b.push_forecast(69, 4, &mut out);
        for (h, v) in out.iter().enumerate() {
            let want = y[70 + h];
            assert!(
                (f64::from(*v) - want).abs() < 0.2,
                "h {}: {v} vs {want}",
                h + 1
            );
        }
        let err = StatBaseline::fit(StatKind::MstlEts, &[y], 7, Some(4)).unwrap_err();
        assert!(err.contains("two seasons"), "{err}");
    }
}
