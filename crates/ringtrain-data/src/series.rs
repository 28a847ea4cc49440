//! Windowed multivariate time series for forecasting.
//!
//! The rows are split chronologically (train first, then val, then test). A window's input is
//! `window` consecutive rows of the feature columns; its target is the next `horizon` rows of the
//! target columns, laid out h-major (step 1: all targets, step 2: all targets, ...). Train windows
//! lie wholly inside the train rows. Val and test windows may take their input from earlier rows —
//! the past is known at forecast time — but their targets lie wholly inside their own split, so
//! no target is ever seen by two splits. Consecutive windows of a split start `stride` rows apart.
//!
//! Beside the normalized buffers the model trains on, each window keeps its targets in original
//! units and two baselines the trainer reports next to the model: the naive forecast (the last
//! observed target value repeated) and, with a season `m`, the seasonal-naive forecast
//! `ŷ[t+h] = y[t+h − m·⌈h/m⌉]` (the value one season before each target step).

use crate::SplitName;
use crate::batch::SeriesBatch;
use crate::error::DataError;
use crate::normalize::{ColumnScale, Normalizer};
use crate::order::{fraction, split_sizes};
use crate::source::{Source, read_table};
use crate::stat_baseline::{StatBaseline, StatKind};
use crate::table::Table;
use ringtrain_spec::{DataFormat, ForecastMode, SeriesSpec, Split};
use std::ops::Range;

/// A prepared, normalized series with its train/val/test windows.
#[derive(Debug, Clone)]
pub struct SeriesData {
    file: String,
    features: Vec<String>,
    targets: Vec<String>,
    window: usize,
    horizon: usize,
    season: Option<usize>,
    mode: ForecastMode,
    normalizer: Normalizer,
    rows: usize,
    /// Normalized features, row-major `[rows, features]`.
    x: Vec<f32>,
    /// Normalized targets, row-major `[rows, targets]`.
    y: Vec<f32>,
    /// Targets in original units, row-major `[rows, targets]`.
    y_orig: Vec<f32>,
    row_ranges: [Range<usize>; 3],
    /// Row of the first target of each window, per split.
    target_starts: [Vec<usize>; 3],
}

/// The feature and target columns to read, features first, each name once.
fn wanted_columns(spec: &SeriesSpec) -> Vec<&str> {
    let mut cols: Vec<&str> = Vec::new();
    for c in spec.features.iter().chain(&spec.targets) {
        if !cols.contains(&c.as_str()) {
            cols.push(c);
        }
    }
    cols
}

/// Parses every cell of every column of `table` as a number, column-major.
fn numeric_columns(table: &Table) -> Result<Vec<Vec<f64>>, DataError> {
    let mut cols = vec![Vec::with_capacity(table.rows.len()); table.columns.len()];
    for r in 0..table.rows.len() {
        for (c, col) in cols.iter_mut().enumerate() {
            col.push(table.number(r, c)?);
        }
    }
    Ok(cols)
}

fn check_names(what: &str, fitted: &[ColumnScale], spec: &[String]) -> Result<(), DataError> {
    let names: Vec<&str> = fitted.iter().map(|c| c.column.as_str()).collect();
    if names.iter().copied().eq(spec.iter().map(String::as_str)) {
        Ok(())
    } else {
        Err(DataError::FittedMismatch {
            reason: format!(
                "the normalizer was fitted for {what} [{}] but the spec names [{}]",
                names.join(", "),
                spec.join(", ")
            ),
        })
    }
}

impl SeriesData {
    /// Reads, splits, normalizes and windows a series. `horizon` and `season` come from the
    /// forecast task. With `fitted = Some(n)` the normalizer is reused (evaluation of a trained
    /// model) instead of being fitted on the train rows.
    ///
    /// # Errors
    /// Any read error of the file; [`DataError::NonNumeric`]/[`DataError::NonFinite`] for a bad
    /// cell in a feature or target column; [`DataError::SeriesTooShort`] when a split cannot hold
    /// one window; [`DataError::FittedMismatch`] when `fitted` names other columns.
    pub fn load(
        source: &Source,
        format: DataFormat,
        split: &Split,
        spec: &SeriesSpec,
        horizon: usize,
        season: Option<usize>,
        fitted: Option<&Normalizer>,
    ) -> Result<SeriesData, DataError> {
        let wanted = wanted_columns(spec);
        let table = read_table(source, format, &wanted)?;
        let cols = numeric_columns(&table)?;
        let rows = table.rows.len();
        let col_of = |name: &String| wanted.iter().position(|w| w == name).unwrap_or(0);
        let f_idx: Vec<usize> = spec.features.iter().map(col_of).collect();
        let t_idx: Vec<usize> = spec.targets.iter().map(col_of).collect();
        let window = spec.window;

        let sizes = split_sizes(rows, split);
        let mut start = 0;
        let row_ranges = sizes.map(|n| {
            let r = start..start + n;
            start += n;
            r
        });
        let mut target_starts: [Vec<usize>; 3] = Default::default();
        for name in SplitName::ALL {
            let range = &row_ranges[name.index()];
            let needed = match name {
                SplitName::Train => window + horizon,
                _ => horizon,
            };
            let requested = fraction(split, name) > 0.0 || name == SplitName::Train;
            if !requested {
                continue;
            }
            if range.len() < needed {
                return Err(DataError::SeriesTooShort {
                    file: table.file.clone(),
                    split: name,
                    rows: range.len(),
                    needed,
                    window,
                    horizon,
                });
            }
            let first = range.start.max(window);
            let mut t0 = first;
            while t0 + horizon <= range.end {
                target_starts[name.index()].push(t0);
                t0 += spec.stride;
            }
        }

        let normalizer = match fitted {
            Some(n) => {
                check_names("features", &n.features, &spec.features)?;
                check_names("targets", &n.targets, &spec.targets)?;
                n.clone()
            }
            None => {
                let train = row_ranges[0].clone();
                let slices = |idx: &[usize]| -> Vec<&[f64]> {
                    idx.iter().map(|&c| &cols[c][train.clone()]).collect()
                };
                Normalizer::fit(
                    spec.normalize,
                    &spec.features,
                    &slices(&f_idx),
                    &spec.targets,
                    &slices(&t_idx),
                )
            }
        };

        // Normalize in f64 before rounding to f32, so stored inputs are the correctly rounded
        // normalized values.
        let gather = |idx: &[usize], scales: Option<&[ColumnScale]>| -> Vec<f32> {
            let mut out = Vec::with_capacity(rows * idx.len());
            for r in 0..rows {
                out.extend(idx.iter().enumerate().map(|(k, &c)| match scales {
                    Some(s) => s[k].apply(cols[c][r]) as f32,
                    None => cols[c][r] as f32,
                }));
            }
            out
        };
        let x = gather(&f_idx, Some(&normalizer.features));
        let y = gather(&t_idx, Some(&normalizer.targets));
        let y_orig = gather(&t_idx, None);

        let mut data = SeriesData {
            file: table.file,
            features: spec.features.clone(),
            targets: spec.targets.clone(),
            window,
            horizon,
            mode: spec.forecast_mode,
            season,
            normalizer,
            rows,
            x,
            y,
            y_orig,
            row_ranges,
            target_starts,
        };
        // A fresh fit scales the targets when asked; a reused normalizer brings its own
        // scaling (none for checkpoints written before target scaling existed).
        if fitted.is_none() && spec.scale_targets {
            let starts = &data.target_starts[SplitName::Train.index()];
            let mut y = Vec::with_capacity(starts.len() * horizon * spec.targets.len());
            for &t0 in starts {
                data.push_model_targets(t0, &mut y);
            }
            data.normalizer.fit_residuals(&y);
        }
        Ok(data)
    }

    /// Name of the source file (or `builtin:NAME`).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Feature column names, in model input order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Target column names, in model output order.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// Input window length in rows.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Forecast horizon in rows.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Season length of the seasonal-naive baseline, if any.
    pub fn season(&self) -> Option<usize> {
        self.season
    }

    /// The scaling fitted on the train rows (store it in the checkpoint).
    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// Total data rows in the file.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows of a split (chronological, contiguous).
    pub fn split_rows(&self, split: SplitName) -> Range<usize> {
        self.row_ranges[split.index()].clone()
    }

    /// Number of windows (samples) in a split; 0 for a split with fraction 0.
    pub fn len(&self, split: SplitName) -> usize {
        self.target_starts[split.index()].len()
    }

    /// Whether a split has no windows.
    pub fn is_empty(&self, split: SplitName) -> bool {
        self.len(split) == 0
    }

    /// Rows holding the targets of window `i` of `split` (for plotting against time).
    ///
    /// # Panics
    /// If `i >= len(split)`.
    pub fn target_rows(&self, split: SplitName, i: usize) -> Range<usize> {
        let t0 = self.target_starts[split.index()][i];
        t0..t0 + self.horizon
    }

    /// Normalized inputs and targets of the windows `indices` of `split`.
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn batch(&self, split: SplitName, indices: &[usize]) -> SeriesBatch {
        let (f, t, w, h) = (
            self.features.len(),
            self.targets.len(),
            self.window,
            self.horizon,
        );
        let mut x = Vec::with_capacity(indices.len() * w * f);
        let mut y = Vec::with_capacity(indices.len() * h * t);
        for &i in indices {
            let t0 = self.target_starts[split.index()][i];
            x.extend_from_slice(&self.x[(t0 - w) * f..t0 * f]);
            let start = y.len();
            self.push_model_targets(t0, &mut y);
            self.normalizer.scale_residuals(&mut y[start..]);
        }
        SeriesBatch {
            x,
            y,
            batch: indices.len(),
            window: w,
            features: f,
            horizon: h,
            outputs: t,
        }
    }

    /// Appends the normalized targets of the window whose first target row is `t0`, minus the
    /// mode's reference (the delta modes), before target scaling.
    fn push_model_targets(&self, t0: usize, y: &mut Vec<f32>) {
        let (t, h) = (self.targets.len(), self.horizon);
        let start = y.len();
        y.extend_from_slice(&self.y[t0 * t..(t0 + h) * t]);
        if self.mode != ForecastMode::Level {
            let offsets = self.window_offsets(t0 - 1);
            for (v, o) in y[start..].iter_mut().zip(offsets) {
                *v -= o;
            }
        }
    }

    /// What the model's outputs mean for this series.
    pub fn forecast_mode(&self) -> ForecastMode {
        self.mode
    }

    /// What to add to the model's outputs, after [`Normalizer::unscale_residuals`], for the
    /// windows `indices` to get normalized target levels: zeros in [`ForecastMode::Level`], the window's last normalized target values
    /// repeated over the horizon in [`ForecastMode::Delta`], the seasonal-naive values in
    /// [`ForecastMode::SeasonalDelta`]. Layout of [`SeriesBatch::y`].
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn offsets(&self, split: SplitName, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.horizon * self.targets.len());
        for &i in indices {
            out.extend(self.window_offsets(self.target_starts[split.index()][i] - 1));
        }
        out
    }

    /// [`SeriesData::offsets`] of the window whose last observed row is `last`.
    fn window_offsets(&self, last: usize) -> Vec<f32> {
        let t = self.targets.len();
        let mut out = Vec::with_capacity(self.horizon * t);
        for h in 1..=self.horizon {
            match self.mode.reference_lag(self.season, h) {
                // Validation keeps the lag inside the window (window >= season).
                Some(lag) => {
                    let row = last - lag;
                    out.extend_from_slice(&self.y[row * t..(row + 1) * t]);
                }
                None => out.extend(std::iter::repeat_n(0.0, t)),
            }
        }
        out
    }

    /// Targets of the windows `indices` in original units, `[B, horizon, targets]` h-major, the
    /// same layout as [`SeriesBatch::y`] after [`Normalizer::invert_targets`].
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn targets_original(&self, split: SplitName, indices: &[usize]) -> Vec<f32> {
        let t = self.targets.len();
        let mut out = Vec::with_capacity(indices.len() * self.horizon * t);
        for &i in indices {
            let t0 = self.target_starts[split.index()][i];
            out.extend_from_slice(&self.y_orig[t0 * t..(t0 + self.horizon) * t]);
        }
        out
    }

    /// The naive forecast in original units: each window's last observed target values repeated
    /// over the horizon. Same layout as [`SeriesData::targets_original`].
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn naive_forecast(&self, split: SplitName, indices: &[usize]) -> Vec<f32> {
        let t = self.targets.len();
        let mut out = Vec::with_capacity(indices.len() * self.horizon * t);
        for &i in indices {
            let last = self.target_starts[split.index()][i] - 1;
            for _ in 0..self.horizon {
                out.extend_from_slice(&self.y_orig[last * t..(last + 1) * t]);
            }
        }
        out
    }

    /// The seasonal-naive forecast in original units: for target step `h` (1-based) after the
    /// last observed row `t`, the value at row `t + h − m·⌈h/m⌉`. `None` when the task has no
    /// season, or when some requested window has less than one season of history before its
    /// targets (possible only for early train windows when `window < season`).
    ///
    /// # Panics
    /// If an index is `>= len(split)`.
    pub fn seasonal_naive_forecast(&self, split: SplitName, indices: &[usize]) -> Option<Vec<f32>> {
        let m = self.season?;
        let t = self.targets.len();
        let mut out = Vec::with_capacity(indices.len() * self.horizon * t);
        for &i in indices {
            let last = self.target_starts[split.index()][i] - 1;
            for h in 1..=self.horizon {
                let row = (last + h).checked_sub(m * h.div_ceil(m))?;
                out.extend_from_slice(&self.y_orig[row * t..(row + 1) * t]);
            }
        }
        Some(out)
    }
}

impl SeriesData {
    /// Fits the statistical baselines on the training rows of each target column: AutoETS,
    /// and with a season MSTL + AutoETS (see [`crate::stat_baseline`]). Each entry is the
    /// fitted baseline or a short reason why it is unavailable, so a report can say so instead
    /// of leaving it out. Costs one fit per baseline and column plus one pass over the rows.
    pub fn fit_stat_baselines(&self) -> Vec<(StatKind, Result<StatBaseline, String>)> {
        let t = self.targets.len();
        let columns: Vec<Vec<f64>> = (0..t)
            .map(|c| {
                self.y_orig
                    .iter()
                    .skip(c)
                    .step_by(t)
                    .map(|&v| f64::from(v))
                    .collect()
            })
            .collect();
        let train = self.row_ranges[SplitName::Train.index()].end;
        let mut kinds = vec![StatKind::AutoEts];
        if self.season.is_some() {
            kinds.push(StatKind::MstlEts);
        }
        kinds
            .into_iter()
            .map(|k| (k, StatBaseline::fit(k, &columns, train, self.season)))
            .collect()
    }

    /// A statistical baseline's forecasts for the windows `indices` of `split` in original
    /// units, each from the window's last input row: the layout of
    /// [`SeriesData::targets_original`].
    ///
    /// # Panics
    /// If an index is `>= len(split)`, or `baseline` was fitted on another series.
    pub fn stat_forecast(
        &self,
        baseline: &StatBaseline,
        split: SplitName,
        indices: &[usize],
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.horizon * self.targets.len());
        for &i in indices {
            let last = self.target_starts[split.index()][i] - 1;
            baseline.push_forecast(last, self.horizon, &mut out);
        }
        out
    }
}

/// The model input for forecasting past the end of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictInput {
    /// The last `window` rows of the feature columns, normalized, `[window, features]` row-major
    /// (one sample; the model sees it as a batch of 1).
    pub x: Vec<f32>,
    /// The last row's target values, normalized (the offset a [`ForecastMode::Delta`] model's
    /// outputs are relative to).
    pub last_targets: Vec<f32>,
    /// The target values of the window's rows, normalized, `[window, targets]` row-major (what
    /// [`PredictInput::offsets`] reads).
    pub recent_targets: Vec<f32>,
    /// Rows in the window.
    pub window: usize,
    /// Feature columns per row.
    pub features: usize,
    /// Data rows in the file (all validated, not only the window).
    pub rows: usize,
    /// Line of the last row, the one the forecast continues from.
    pub last_line: u64,
}

impl PredictInput {
    /// What to add to a model's normalized outputs for the `horizon` steps after the window
    /// (layout `[horizon, targets]` h-major), as [`SeriesData::offsets`] does for a split:
    /// zeros for [`ForecastMode::Level`], the last values for [`ForecastMode::Delta`], the
    /// seasonal-naive values for [`ForecastMode::SeasonalDelta`] with `season`.
    pub fn offsets(&self, mode: ForecastMode, season: Option<usize>, horizon: usize) -> Vec<f32> {
        let t = self.last_targets.len();
        let mut out = Vec::with_capacity(horizon * t);
        for h in 1..=horizon {
            match mode.reference_lag(season, h) {
                // The spec guarantees window >= season, so the row is inside the window.
                Some(lag) if lag < self.window => {
                    let row = self.window - 1 - lag;
                    out.extend_from_slice(&self.recent_targets[row * t..(row + 1) * t]);
                }
                Some(_) | None => out.extend(std::iter::repeat_n(0.0, t)),
            }
        }
        out
    }
}

/// Reads a series with the spec's feature columns (every row is validated) and returns its last
/// full input window normalized with `normalizer`, ready for the model. Map the model's output
/// with [`Normalizer::outputs_to_original`] and [`PredictInput::offsets`] to get the forecast in
/// original units.
///
/// # Errors
/// Read and cell errors as in [`SeriesData::load`]; [`DataError::TooFewRowsToPredict`] when the
/// file has fewer than `spec.window` rows; [`DataError::FittedMismatch`] when the normalizer was
/// fitted for other feature columns.
pub fn predict_input(
    source: &Source,
    format: DataFormat,
    spec: &SeriesSpec,
    normalizer: &Normalizer,
) -> Result<PredictInput, DataError> {
    check_names("features", &normalizer.features, &spec.features)?;
    check_names("targets", &normalizer.targets, &spec.targets)?;
    crate::source::check_file(source, ringtrain_spec::LimitsSpec::DEFAULT_MAX_DATA_BYTES)?;
    let wanted = wanted_columns(spec);
    let table = read_table(source, format, &wanted)?;
    let all = numeric_columns(&table)?;
    let col = |name: &String| {
        &all[wanted
            .iter()
            .position(|w| w == name)
            .expect("wanted column")]
    };
    let cols: Vec<&Vec<f64>> = spec.features.iter().map(col).collect();
    let rows = table.rows.len();
    if rows < spec.window {
        return Err(DataError::TooFewRowsToPredict {
            file: table.file,
            rows,
            window: spec.window,
        });
    }
    let mut x = Vec::with_capacity(spec.window * cols.len());
    for r in rows - spec.window..rows {
        x.extend(
            cols.iter()
                .zip(&normalizer.features)
                .map(|(c, s)| s.apply(c[r]) as f32),
        );
    }
    let last_targets = spec
        .targets
        .iter()
        .zip(&normalizer.targets)
        .map(|(name, scale)| scale.apply(col(name)[rows - 1]) as f32)
        .collect();
    let mut recent_targets = Vec::with_capacity(spec.window * spec.targets.len());
    for r in rows - spec.window..rows {
        recent_targets.extend(
            spec.targets
                .iter()
                .zip(&normalizer.targets)
                .map(|(name, scale)| scale.apply(col(name)[r]) as f32),
        );
    }
    Ok(PredictInput {
        x,
        last_targets,
        recent_targets,
        window: spec.window,
        features: cols.len(),
        rows,
        last_line: table.rows[rows - 1].line,
    })
}
