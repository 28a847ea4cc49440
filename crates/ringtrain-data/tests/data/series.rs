//! Forecasting data: window layout, baselines, chronological splits without target leakage,
//! normalization fitted on train only, builtin series, predict input and format round trips.

use super::{forecast, write};
use ringtrain_data::synth::seasonal_series;
use ringtrain_data::{
    Fitted, Prepared, SeriesData, Source, SplitName, load, load_with, predict_input,
};
use ringtrain_spec::{DataFormat, TaskSpec};
use std::path::Path;
use tempfile::TempDir;

fn series(p: Prepared) -> SeriesData {
    match p {
        Prepared::Series(s) => s,
        other => panic!("expected series, got {other:?}"),
    }
}

/// 20 rows: `a` = row, `b` = 100 + 2·row.
fn linear_csv(dir: &Path) {
    let mut s = String::from("date,a,b\n");
    for i in 0..20 {
        s.push_str(&format!("2020-{i},{i},{}\n", 100 + 2 * i));
    }
    write(dir, "lin.csv", s);
}

fn linear(horizon: usize, season: Option<usize>, window: usize) -> SeriesData {
    let dir = TempDir::new().unwrap();
    linear_csv(dir.path());
    let task = match season {
        Some(m) => format!("horizon = {horizon}\nseason = {m}"),
        None => format!("horizon = {horizon}"),
    };
    let data = format!(
        "features = [\"a\", \"b\"]\ntargets = [\"b\", \"a\"]\nwindow = {window}\nnormalize = \"none\"\n\
         split = {{ train = 0.6, val = 0.2, test = 0.2 }}"
    );
    series(load(&forecast("lin.csv", &data, &task), dir.path()).unwrap())
}

#[test]
fn windows_are_laid_out_row_major_and_h_major() {
    let d = linear(3, Some(2), 3);
    assert_eq!(d.split_rows(SplitName::Train), 0..12);
    assert_eq!(d.split_rows(SplitName::Val), 12..16);
    assert_eq!(d.split_rows(SplitName::Test), 16..20);
    // Train targets start at rows 3..=9, val at 12..=13, test at 16..=17.
    assert_eq!(
        [
            d.len(SplitName::Train),
            d.len(SplitName::Val),
            d.len(SplitName::Test)
        ],
        [7, 2, 2]
    );
    let b = d.batch(SplitName::Train, &[0, 6]);
    assert_eq!(
        (b.batch, b.window, b.features, b.horizon, b.outputs),
        (2, 3, 2, 3, 2)
    );
    assert_eq!(&b.x[..6], [0., 100., 1., 102., 2., 104.]);
    assert_eq!(&b.y[..6], [106., 3., 108., 4., 110., 5.]);
    assert_eq!(&b.x[6..], [6., 112., 7., 114., 8., 116.]);
    assert_eq!(&b.y[6..], [118., 9., 120., 10., 122., 11.]);
    // Val window 0: input rows 9..12 come from train (known history), targets 12..15.
    let v = d.batch(SplitName::Val, &[0]);
    assert_eq!(v.x, [9., 118., 10., 120., 11., 122.]);
    assert_eq!(v.y, [124., 12., 126., 13., 128., 14.]);
}

#[test]
fn naive_and_seasonal_naive_baselines() {
    let d = linear(3, Some(2), 3);
    assert_eq!(
        d.targets_original(SplitName::Train, &[0]),
        [106., 3., 108., 4., 110., 5.]
    );
    assert_eq!(
        d.naive_forecast(SplitName::Train, &[0]),
        [104., 2., 104., 2., 104., 2.]
    );
    // Last observed row 2, m = 2: h=1 → row 1, h=2 → row 2, h=3 → row 1.
    assert_eq!(
        d.seasonal_naive_forecast(SplitName::Train, &[0]).unwrap(),
        [102., 1., 104., 2., 102., 1.]
    );
    // Season 4 with window 1: the first train window has no season of history; val does.
    let d = linear(1, Some(4), 1);
    assert_eq!(d.seasonal_naive_forecast(SplitName::Train, &[0]), None);
    assert_eq!(
        d.seasonal_naive_forecast(SplitName::Val, &[0]).unwrap(),
        [116., 8.]
    );
    assert_eq!(
        linear(1, None, 1).seasonal_naive_forecast(SplitName::Val, &[0]),
        None
    );
}

fn seasonal_file(dir: &Path, format: DataFormat, name: &str) {
    write(dir, name, seasonal_series(300, 3).to_text(format));
}

fn seasonal_spec(path: &str, extra: &str) -> ringtrain_spec::JobSpec {
    forecast(
        path,
        &format!(
            "features = [\"demand\", \"temperature\"]\ntargets = [\"demand\"]\nwindow = 24\n\
             split = {{ train = 0.7, val = 0.15, test = 0.15 }}\n{extra}"
        ),
        "horizon = 3\nseason = 12",
    )
}

#[test]
fn no_target_leakage_across_splits() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    for stride in [1, 3, 7] {
        let d = series(
            load(
                &seasonal_spec("s.csv", &format!("stride = {stride}")),
                dir.path(),
            )
            .unwrap(),
        );
        let mut owner = vec![None; d.rows()];
        for split in SplitName::ALL {
            let rows = d.split_rows(split);
            assert!(!d.is_empty(split));
            for i in 0..d.len(split) {
                let t = d.target_rows(split, i);
                assert!(
                    rows.start <= t.start && t.end <= rows.end,
                    "{split} window {i}: {t:?}"
                );
                if split == SplitName::Train {
                    assert!(t.start >= d.window(), "train inputs inside train rows");
                }
                if i > 0 {
                    assert_eq!(t.start - d.target_rows(split, i - 1).start, stride);
                }
                for r in t {
                    assert!(
                        owner[r].is_none_or(|o| o == split),
                        "row {r} is a target of two splits"
                    );
                    owner[r] = Some(split);
                }
            }
        }
    }
}

#[test]
fn normalization_is_fitted_on_train_rows_only() {
    let dir = TempDir::new().unwrap();
    let s = seasonal_series(300, 3);
    write(dir.path(), "s.csv", s.to_text(DataFormat::Csv));
    let d = series(load(&seasonal_spec("s.csv", ""), dir.path()).unwrap());
    let train = d.split_rows(SplitName::Train);
    let vals: Vec<f64> = s.demand[train.clone()]
        .iter()
        .map(|v| format!("{v:.3}").parse().unwrap())
        .collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
    let n = d.normalizer();
    assert!((n.features[0].shift - mean).abs() < 1e-9 && (n.features[0].scale - std).abs() < 1e-9);
    assert_eq!(n.targets[0], n.features[0]);

    // Rewriting every val/test value leaves the normalizer unchanged.
    let mut wild = s.clone();
    for r in train.end..wild.demand.len() {
        wild.demand[r] = 1e6;
        wild.temperature[r] = -1e6;
    }
    write(dir.path(), "w.csv", wild.to_text(DataFormat::Csv));
    let w = series(load(&seasonal_spec("w.csv", ""), dir.path()).unwrap());
    assert_eq!(w.normalizer(), n);

    // Min-max maps the train range onto [0, 1].
    let m = series(
        load(
            &seasonal_spec("s.csv", "normalize = \"minmax\""),
            dir.path(),
        )
        .unwrap(),
    );
    let all: Vec<usize> = (0..m.len(SplitName::Train)).collect();
    let b = m.batch(SplitName::Train, &all);
    let (lo, hi) =
        b.x.iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(lo >= -1e-6 && hi <= 1.0 + 1e-6, "{lo} {hi}");
}

#[test]
fn inverted_targets_match_original_units() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    let d = series(load(&seasonal_spec("s.csv", ""), dir.path()).unwrap());
    let idx: Vec<usize> = (0..d.len(SplitName::Test)).collect();
    let mut y = d.batch(SplitName::Test, &idx).y;
    d.normalizer().invert_targets(&mut y);
    let orig = d.targets_original(SplitName::Test, &idx);
    for (a, b) in y.iter().zip(&orig) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn csv_tsv_and_jsonl_load_identically() {
    let dir = TempDir::new().unwrap();
    let mut loaded = Vec::new();
    for (format, name) in [
        (DataFormat::Csv, "s.csv"),
        (DataFormat::Tsv, "s.tsv"),
        (DataFormat::Jsonl, "s.jsonl"),
    ] {
        seasonal_file(dir.path(), format, name);
        loaded.push(series(load(&seasonal_spec(name, ""), dir.path()).unwrap()));
    }
    for d in &loaded[1..] {
        assert_eq!(d.normalizer(), loaded[0].normalizer());
        for split in SplitName::ALL {
            let idx: Vec<usize> = (0..d.len(split)).collect();
            assert_eq!(d.batch(split, &idx), loaded[0].batch(split, &idx));
        }
    }
}

#[test]
fn fitted_normalizer_round_trips_through_serde_and_is_reused() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    let spec = seasonal_spec("s.csv", "");
    let p = load(&spec, dir.path()).unwrap();
    let fitted: Fitted =
        serde_json::from_str(&serde_json::to_string(&p.fitted()).unwrap()).unwrap();
    assert_eq!(fitted, p.fitted());
    // Another file evaluated with the stored state keeps the stored scaling.
    let mut other = seasonal_series(300, 9);
    other.demand.iter_mut().for_each(|v| *v += 40.0);
    write(dir.path(), "o.csv", other.to_text(DataFormat::Csv));
    let o = series(load_with(&seasonal_spec("o.csv", ""), dir.path(), Some(&fitted)).unwrap());
    assert_eq!(Fitted::Series(o.normalizer().clone()), fitted);
}

#[test]
fn predict_input_is_the_last_window_normalized() {
    let dir = TempDir::new().unwrap();
    let s = seasonal_series(300, 3);
    write(dir.path(), "s.csv", s.to_text(DataFormat::Csv));
    let spec = seasonal_spec("s.csv", "");
    let d = series(load(&spec, dir.path()).unwrap());
    let TaskSpec::Forecast { series: ss, .. } = &spec.task else {
        unreachable!()
    };
    let p = predict_input(
        &Source::File(dir.path().join("s.csv")),
        DataFormat::Csv,
        ss,
        d.normalizer(),
    )
    .unwrap();
    assert_eq!(
        (p.window, p.features, p.rows, p.last_line),
        (24, 2, 300, 301)
    );
    let n = d.normalizer();
    let r = 299;
    let want_demand = n.features[0].apply(format!("{:.3}", s.demand[r]).parse().unwrap()) as f32;
    let want_temp = n.features[1].apply(format!("{:.3}", s.temperature[r]).parse().unwrap()) as f32;
    assert_eq!(&p.x[46..], [want_demand, want_temp]);
    assert_eq!(p.last_targets, [want_demand]);
    // The last test window's input ends `horizon` rows before the file does.
    let last = d.len(SplitName::Test) - 1;
    let b = d.batch(SplitName::Test, &[last]);
    assert_eq!(d.target_rows(SplitName::Test, last).end, 300);
    assert_eq!(&b.x[6..], &p.x[..p.x.len() - 6]);
}

#[test]
fn builtin_series_load_with_named_columns() {
    let spec = forecast(
        "builtin:air-passengers",
        "features = [\"passengers\", \"month\"]\ntargets = [\"passengers\"]\nwindow = 12\nnormalize = \"none\"",
        "horizon = 1\nseason = 12",
    );
    let d = series(load(&spec, "/nonexistent".as_ref()).unwrap());
    assert_eq!(d.rows(), 144);
    assert_eq!(d.file(), "builtin:air-passengers");
    let b = d.batch(SplitName::Train, &[0]);
    assert_eq!(&b.x[..4], [112., 1., 118., 2.]);
    assert_eq!(d.targets_original(SplitName::Train, &[0]), [115.]);
    assert_eq!(
        d.seasonal_naive_forecast(SplitName::Train, &[0]).unwrap(),
        [112.]
    );

    let spec = forecast(
        "builtin:vic-elec",
        "features = [\"y\", \"hour\"]\ntargets = [\"y\"]\nwindow = 48\nnormalize = \"none\"",
        "horizon = 24\nseason = 24",
    );
    let d = series(load(&spec, ".".as_ref()).unwrap());
    assert_eq!(d.rows(), 3600);
    let b = d.batch(SplitName::Train, &[0]);
    assert!((b.x[0] - 7926.529).abs() < 1e-2);
    let hours: Vec<f32> = b.x.iter().skip(1).step_by(2).take(26).copied().collect();
    assert_eq!(hours[..3], [0., 1., 2.]);
    assert_eq!(hours[24..], [0., 1.]);
}

#[test]
fn committed_seasonal_example_loads() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let d = series(load(&seasonal_spec("data/seasonal.csv", ""), &examples).unwrap());
    assert_eq!(d.rows(), 400);
    assert_eq!(d.split_rows(SplitName::Train), 0..280);
}

#[test]
fn delta_mode_targets_are_changes_from_the_last_observed_value() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    let level = series(load(&seasonal_spec("s.csv", ""), dir.path()).unwrap());
    let delta = series(
        load(
            // Unscaled, so the targets are the plain changes.
            &seasonal_spec("s.csv", "forecast_mode = \"delta\"\nscale_targets = false"),
            dir.path(),
        )
        .unwrap(),
    );
    for split in SplitName::ALL {
        let idx: Vec<usize> = (0..delta.len(split)).collect();
        let (l, d) = (level.batch(split, &idx), delta.batch(split, &idx));
        assert_eq!(l.x, d.x, "inputs do not depend on the mode");
        assert!(level.offsets(split, &idx).iter().all(|&o| o == 0.0));
        let offsets = delta.offsets(split, &idx);
        for ((lv, dv), o) in l.y.iter().zip(&d.y).zip(&offsets) {
            assert!(
                (lv - (dv + o)).abs() <= 1e-6,
                "level {lv} != delta {dv} + offset {o}"
            );
        }
        // The offset of a window is its last input row's (normalized) demand.
        let b = delta.batch(split, &idx[..1]);
        assert_eq!(offsets[0], b.x[(b.window - 1) * b.features]);
    }
}

#[test]
fn seasonal_delta_targets_are_changes_from_the_seasonal_naive_forecast() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    let level = series(load(&seasonal_spec("s.csv", ""), dir.path()).unwrap());
    let spec = seasonal_spec(
        "s.csv",
        "forecast_mode = \"seasonal_delta\"\nscale_targets = false",
    );
    let sd = series(load(&spec, dir.path()).unwrap());
    for split in SplitName::ALL {
        let idx: Vec<usize> = (0..sd.len(split)).collect();
        let (l, d) = (level.batch(split, &idx), sd.batch(split, &idx));
        assert_eq!(l.x, d.x, "inputs do not depend on the mode");
        let offsets = sd.offsets(split, &idx);
        for ((lv, dv), o) in l.y.iter().zip(&d.y).zip(&offsets) {
            assert!(
                (lv - (dv + o)).abs() <= 1e-6,
                "level {lv} != seasonal delta {dv} + offset {o}"
            );
        }
        // In original units the offsets are the seasonal-naive forecast.
        let mut back = offsets.clone();
        sd.normalizer().invert_targets(&mut back);
        let naive = sd.seasonal_naive_forecast(split, &idx).unwrap();
        for (b, n) in back.iter().zip(&naive) {
            assert!((b - n).abs() <= 1e-3 * n.abs().max(1.0), "{b} vs {n}");
        }
    }
    // Past the end of the file: step h (season 12) is relative to the value 12 − h rows before
    // the last row, i.e. row 299 − 12 + h.
    let TaskSpec::Forecast { series: ss, .. } = &spec.task else {
        unreachable!()
    };
    let p = predict_input(
        &Source::File(dir.path().join("s.csv")),
        DataFormat::Csv,
        ss,
        sd.normalizer(),
    )
    .unwrap();
    let mut back = p.offsets(ss.forecast_mode, Some(12), 3);
    sd.normalizer().invert_targets(&mut back);
    let s = seasonal_series(300, 3);
    for (h, b) in (1..=3).zip(&back) {
        let want: f32 = format!("{:.3}", s.demand[299 - 12 + h]).parse().unwrap();
        assert!(
            (b - want).abs() <= 1e-3 * want.abs(),
            "h = {h}: {b} vs {want}"
        );
    }
}

#[test]
fn target_scaling_standardizes_the_training_corrections_and_inverts_exactly() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    let plain = series(
        load(
            &seasonal_spec(
                "s.csv",
                "forecast_mode = \"seasonal_delta\"\nscale_targets = false",
            ),
            dir.path(),
        )
        .unwrap(),
    );
    assert_eq!(plain.normalizer().residuals, None);
    // On by default in the delta modes, off in level mode unless asked for.
    let spec = seasonal_spec("s.csv", "forecast_mode = \"seasonal_delta\"");
    let scaled = series(load(&spec, dir.path()).unwrap());
    let level = series(load(&seasonal_spec("s.csv", ""), dir.path()).unwrap());
    assert_eq!(level.normalizer().residuals, None);
    let level_scaled =
        series(load(&seasonal_spec("s.csv", "scale_targets = true"), dir.path()).unwrap());
    assert!(level_scaled.normalizer().residuals.is_some());

    let r = &scaled.normalizer().residuals.as_ref().expect("fitted")[0];
    let idx: Vec<usize> = (0..scaled.len(SplitName::Train)).collect();
    let (p, s) = (
        plain.batch(SplitName::Train, &idx),
        scaled.batch(SplitName::Train, &idx),
    );
    // The scale is the corrections' own training mean and spread: scaled targets have mean 0
    // and standard deviation 1 over the training windows.
    let n = s.y.len() as f64;
    let mean = s.y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var =
        s.y.iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
    assert!(
        mean.abs() < 1e-4 && (var.sqrt() - 1.0).abs() < 1e-3,
        "{mean} {var}"
    );
    // The corrections are much smaller than the level's spread (what scaling is for).
    assert!(
        r.scale < 0.5,
        "correction spread {} in level units",
        r.scale
    );
    for (pv, sv) in p.y.iter().zip(&s.y) {
        let back = f64::from(*sv) * r.scale + r.shift;
        assert!((back - f64::from(*pv)).abs() < 1e-5, "{back} vs {pv}");
    }
    // Model outputs equal to the scaled targets map back to the targets in original units, on
    // every split.
    for split in SplitName::ALL {
        let idx: Vec<usize> = (0..scaled.len(split)).collect();
        let mut y = scaled.batch(split, &idx).y;
        scaled
            .normalizer()
            .outputs_to_original(&mut y, &scaled.offsets(split, &idx));
        for (got, want) in y.iter().zip(scaled.targets_original(split, &idx)) {
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }
    // A zero output is the seasonal-naive forecast plus the mean training correction.
    let mut zero = vec![0.0f32; 3];
    let offsets = scaled.offsets(SplitName::Test, &[0]);
    scaled.normalizer().outputs_to_original(&mut zero, &offsets);
    let naive = scaled
        .seasonal_naive_forecast(SplitName::Test, &[0])
        .unwrap();
    let t = &scaled.normalizer().targets[0];
    for (z, nv) in zero.iter().zip(&naive) {
        let want = f64::from(*nv) + r.shift * t.scale;
        assert!((f64::from(*z) - want).abs() < 1e-3, "{z} vs {want}");
    }
}

#[test]
fn statistical_baselines_forecast_every_window_from_its_origin() {
    let dir = TempDir::new().unwrap();
    seasonal_file(dir.path(), DataFormat::Csv, "s.csv");
    let sd = series(load(&seasonal_spec("s.csv", ""), dir.path()).unwrap());
    let fits = sd.fit_stat_baselines();
    let names: Vec<&str> = fits.iter().map(|(k, _)| k.name()).collect();
    assert_eq!(names, ["AutoETS", "MSTL + AutoETS"]);
    for (kind, fit) in &fits {
        let b = fit
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
        let idx: Vec<usize> = (0..sd.len(SplitName::Test)).collect();
        let f = sd.stat_forecast(b, SplitName::Test, &idx);
        let target = sd.targets_original(SplitName::Test, &idx);
        assert_eq!(f.len(), target.len());
        assert!(f.iter().all(|v| v.is_finite()));
        // Forecasts from different origins differ: the model is filtered through the split.
        assert_ne!(f[0], f[3], "{}", kind.name());
        let mse = f
            .iter()
            .zip(&target)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / f.len() as f64;
        let naive = sd.naive_forecast(SplitName::Test, &idx);
        let naive_mse = naive
            .iter()
            .zip(&target)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / f.len() as f64;
        if *kind == ringtrain_data::stat_baseline::StatKind::MstlEts {
            // The series is strongly seasonal: removing the season must beat the naive forecast.
            assert!(mse < naive_mse, "{mse} vs naive {naive_mse}");
        }
    }
}
