//! Pipeline parallelism through the public interface: `ringtrain local` runs a coordinator and
//! `parallel.data × parallel.pipeline` real worker processes on 127.0.0.1, each rank one stage of
//! one replica, activations and gradients crossing processes over gRPC. The numerics contract
//! (DESIGN.md, "Pipeline"): the pipelined job's checkpoint ends within 1e-5 (max abs) of
//! `ringtrain train` on the same spec, for GPipe and 1F1B with 4 micro-batches, with 2 stages and
//! with 2 replicas × 2 stages; the job's result carries the test metrics that stage 0 of replica 0
//! reports.

// Tests report measured differences on stderr.
#![allow(clippy::print_stderr)]

use ringtrain_train::Checkpoint;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ringtrain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringtrain"))
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A small forecasting job (projection, 2 LSTM layers, head: 4 layers) with dropout off, so
/// that micro-batched and single-process runs are comparable.
fn spec(dir: &Path, name: &str, parallel: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let ckpt = dir.join(format!("runs/{name}"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
seed = 9
[model]
cell = "lstm"
hidden = 12
layers = 2
projection = 8
[task]
kind = "forecast"
horizon = 1
season = 12
[data]
path = "{data_path}"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = 1
batch_size = 8
optimizer = {{ kind = "adam", lr = 0.01 }}
clip = {{ norm = 1.0 }}
[parallel]
{parallel}
[checkpoint]
dir = "{ckpt}"
"#,
            data_path = examples().join("data/seasonal.csv").display(),
            ckpt = ckpt.display()
        ),
    )
    .unwrap();
    path
}

fn params(dir: &Path) -> Vec<f32> {
    Checkpoint::load(&dir.join("latest.ckpt"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .params
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `parallel` on `data × pipeline` workers and the same spec in one process; compares.
fn pipelined_matches_single_process(data: usize, pipeline: usize, schedule: &str) {
    let dir = tempfile::tempdir().unwrap();
    let workers = data * pipeline;
    let name = format!("pp{data}x{pipeline}{}", schedule.replace('1', "one"));
    let pp = spec(
        dir.path(),
        &name,
        &format!(
            "data = {data}\npipeline = {pipeline}\nmicrobatches = 4\nschedule = \"{schedule}\""
        ),
    );
    let single = spec(dir.path(), "single", "data = 1");
    let out = ringtrain()
        .args([
            "local",
            pp.to_str().unwrap(),
            "--workers",
            &workers.to_string(),
        ])
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "local failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["job"]["state"], "succeeded", "{done:#}");
    assert_eq!(done["job"]["world"], workers as u64);
    let result = &done["job"]["result"];
    assert!(
        result["metrics"]["test.mse"].as_f64().unwrap() > 0.0,
        "{result:#}"
    );
    let train = ringtrain()
        .args([
            "train",
            single.to_str().unwrap(),
            "--quiet",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let a = params(&dir.path().join(format!("runs/{name}")));
    let b = params(&dir.path().join("runs/single"));
    let diff = max_abs_diff(&a, &b);
    eprintln!("D = {data} x P = {pipeline}, M = 4, {schedule}: max abs diff {diff:e}");
    assert!(
        diff <= 1e-5,
        "D = {data} x P = {pipeline} {schedule} vs one process: max abs diff {diff}"
    );
    let single_report: Value = serde_json::from_slice(&train.stdout).unwrap();
    let want = single_report["test"]["loss"].as_f64().unwrap();
    let got = result["report"]["test"]["loss"].as_f64().unwrap();
    assert!(
        (want - got).abs() <= 1e-4 * want.abs().max(1.0),
        "test loss {got} vs {want}"
    );
    assert_eq!(result["steps"], single_report["steps"], "{result:#}");
}

#[test]
fn two_stages_gpipe_match_one_process() {
    pipelined_matches_single_process(1, 2, "gpipe");
}

#[test]
fn two_stages_1f1b_match_one_process() {
    pipelined_matches_single_process(1, 2, "1f1b");
}

#[test]
fn two_replicas_of_two_stages_match_one_process() {
    pipelined_matches_single_process(2, 2, "1f1b");
}
