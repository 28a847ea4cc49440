//! Every cell type learns through the public trainer: forecasting beats the seasonal-naive
//! baseline on the generated noisy seasonal series, classification reaches high accuracy on the
//! generated sentiment grammar.

// The measured metrics are printed so a run shows how far above the thresholds each cell is.
#![allow(clippy::print_stderr)]

use burn::prelude::*;
use ringtrain_spec::{SpecFormat, parse_str};
use ringtrain_train::{Silent, TaskMetrics, TrainOptions, train};
use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn run(toml: &str) -> ringtrain_train::TrainReport {
    run_in(tempfile::tempdir().unwrap().path(), toml)
}

/// Trains `toml` with its checkpoints in `dir`.
fn run_in(dir: &std::path::Path, toml: &str) -> ringtrain_train::TrainReport {
    let toml = format!(
        "{toml}\n[checkpoint]\ndir = {:?}\n",
        dir.display().to_string()
    );
    let spec = parse_str(&toml, SpecFormat::Toml, "<test>", "t").unwrap();
    let opts = TrainOptions {
        base_dir: examples(),
        resume: None,
        halt_after_steps: None,
        stop: None,
        device: Device::flex(),
        run_id: None,
        commit: None,
        attempt: 1,
    };
    train(&spec, &opts, &mut Silent).unwrap()
}

fn forecast_spec(cell: &str) -> String {
    format!(
        r#"
seed = 3
[model]
cell = "{cell}"
hidden = 32
[task]
kind = "forecast"
horizon = 1
season = 12
[data]
path = "data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 24
split = [0.7, 0.15, 0.15]
[train]
epochs = 30
batch_size = 16
optimizer = {{ kind = "adam", lr = 0.01 }}
clip = {{ norm = 1.0 }}
"#
    )
}

#[test]
fn every_cell_beats_seasonal_naive_by_2x() {
    for cell in ["lstm", "gru", "rnn"] {
        let report = run(&forecast_spec(cell));
        let test = report.test.expect("test split");
        let TaskMetrics::Forecast(f) = &test.metrics else {
            panic!("forecast metrics")
        };
        let seasonal = f.seasonal_naive.as_ref().expect("seasonal baseline");
        eprintln!(
            "{cell}: test mse {:.3} seasonal-naive {:.3} naive {:.3} ({} steps, {:.0} samples/s)",
            f.model.mse, seasonal.mse, f.naive.mse, report.steps, report.samples_per_sec
        );
        assert!(
            f.model.mse * 2.0 <= seasonal.mse,
            "{cell}: test MSE {} is not 2x better than seasonal-naive {}",
            f.model.mse,
            seasonal.mse
        );
    }
}

fn classify_spec(cell: &str, pooling: &str) -> String {
    format!(
        r#"
seed = 5
[model]
cell = "{cell}"
hidden = 48
embedding_dim = 32
bidirectional = true
[task]
kind = "classify"
pooling = "{pooling}"
[data]
path = "data/sentiment-synth.csv"
tokenizer = "word"
split = [0.8, 0.1, 0.1]
[train]
epochs = 12
batch_size = 32
optimizer = {{ kind = "adam", lr = 0.005 }}
clip = {{ norm = 1.0 }}
"#
    )
}

#[test]
fn every_cell_classifies_the_sentiment_grammar() {
    for (cell, pooling) in [("lstm", "last"), ("gru", "max"), ("rnn", "mean")] {
        let report = run(&classify_spec(cell, pooling));
        let test = report.test.expect("test split");
        let TaskMetrics::Classification(c) = &test.metrics else {
            panic!("classification")
        };
        eprintln!(
            "{cell}/{pooling}: test accuracy {:.3} macro F1 {:.3} majority {:.3} ({:.0} samples/s)",
            c.accuracy, c.macro_avg.f1, c.majority_baseline.accuracy, report.samples_per_sec
        );
        assert!(
            c.accuracy >= 0.95,
            "{cell}: test accuracy {} < 0.95",
            c.accuracy
        );
    }
}

/// A run that ends at `train.max_steps` in the middle of an epoch validates that partial epoch
/// too, so the final metrics can come from the parameters trained last.
#[test]
fn max_steps_mid_epoch_validates_the_partial_epoch() {
    // 16 full batches of 16 per epoch: 40 steps end 8 steps into epoch 2.
    let spec = forecast_spec("gru").replace("epochs = 30", "epochs = 30\nmax_steps = 40");
    let report = run(&spec);
    assert_eq!(report.steps, 40);
    let steps: Vec<u64> = report.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, [16, 32, 40], "{:?}", report.history);
    let last = report.history.last().unwrap();
    assert_eq!(last.epoch, 2);
    assert!(last.val_loss.is_some());
    // The partial epoch was the best here (the loss still falls at 40 steps), so the final
    // metrics use it.
    let best = report
        .history
        .iter()
        .min_by(|a, b| a.val_loss.partial_cmp(&b.val_loss).unwrap())
        .unwrap();
    assert_eq!(report.evaluated_epoch, Some(best.epoch));
}

/// The smooth daily series of `examples/smooth-daily-seasonal-delta.toml` (corrections to
/// seasonal-naive ~1/20 of the level's spread), `epochs` epochs, with `extra` `[data]` keys.
fn smooth_spec(epochs: u32, extra: &str) -> String {
    format!(
        r#"
seed = 5
[model]
cell = "gru"
hidden = 32
[task]
kind = "forecast"
horizon = 6
season = 24
[data]
path = "data/smooth-daily.csv"
features = ["load", "temperature"]
targets = ["load"]
window = 48
split = [0.7, 0.15, 0.15]
forecast_mode = "seasonal_delta"
{extra}
[train]
epochs = {epochs}
batch_size = 32
optimizer = {{ kind = "adam", lr = 0.003 }}
clip = {{ norm = 1.0 }}
"#
    )
}

/// (model MSE, seasonal-naive MSE) of a split's report.
fn mse_and_seasonal(report: Option<&ringtrain_train::EvalReport>) -> (f64, f64) {
    let Some(TaskMetrics::Forecast(f)) = report.map(|r| &r.metrics) else {
        panic!("no forecast report");
    };
    let seasonal = f.seasonal_naive.as_ref().expect("seasonal baseline");
    (f.model.mse, seasonal.mse)
}

#[test]
fn scaled_targets_make_epoch_0_no_worse_than_seasonal_naive() {
    // With target scaling (the default in the delta modes) the head starts at "no
    // correction" and learns the corrections on their own scale: after the first epoch the
    // model is at least as good as the seasonal-naive forecast it corrects.
    let scaled = run(&smooth_spec(1, ""));
    let (val, val_naive) = mse_and_seasonal(scaled.val.as_ref());
    let (test, test_naive) = mse_and_seasonal(scaled.test.as_ref());
    // Without it (the behaviour before target scaling) the same epoch is measured too.
    let unscaled = run(&smooth_spec(1, "scale_targets = false"));
    let (raw_val, _) = mse_and_seasonal(unscaled.val.as_ref());
    eprintln!(
        "epoch 0: val MSE {val:.4} (seasonal-naive {val_naive:.4}, unscaled {raw_val:.4}), \
         test MSE {test:.4} (seasonal-naive {test_naive:.4})"
    );
    assert!(val <= val_naive, "val {val} vs seasonal-naive {val_naive}");
    assert!(
        test <= test_naive,
        "test {test} vs seasonal-naive {test_naive}"
    );
}

#[test]
fn checkpoints_with_target_scaling_need_a_reader_that_knows_it() {
    // A scaled model's outputs mean nothing without its residual scales, so its checkpoints
    // carry header version 3, which readers from before target scaling refuse; an unscaled
    // run still writes version 2, which they read.
    for (extra, version, scaled) in [("", 3, true), ("scale_targets = false", 2, false)] {
        let dir = tempfile::tempdir().unwrap();
        let toml = smooth_spec(1, extra).replace("epochs = 1", "epochs = 1\nmax_steps = 3");
        run_in(dir.path(), &toml);
        let ckpt = ringtrain_train::Checkpoint::load(&dir.path().join("latest.ckpt")).unwrap();
        assert_eq!(ckpt.header.format_version, version, "{extra:?}");
        assert_eq!(ckpt.header.fitted.scales_targets(), scaled, "{extra:?}");
    }
}
