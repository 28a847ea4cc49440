//! Helpers shared by the end-to-end tests (`cli.rs`, `cluster.rs`, `pipeline.rs`, `seq2seq.rs`,
//! `language_model.rs`): the binary under test, the bundled examples, running a command that
//! must succeed or fail, running a job through `ringtrain local` and through `ringtrain train`,
//! and comparing the parameters their checkpoints end with. `services` starts real coordinator and
//! worker processes with extra flags per process kind (on 127.0.0.1, or each on a host of its
//! own: `netns` makes those hosts with network namespaces and cuts their links; `faults` injects
//! and heals the faults the fault and elastic tests use); `tls` makes throwaway certificates and
//! the flags of a TLS or mutual-TLS cluster.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use ringtrain_train::Checkpoint;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ringtrain` binary built for these tests.
pub fn ringtrain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringtrain"))
}

/// The repository's `examples/` folder.
pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The flat parameters of `dir/latest.ckpt`.
pub fn params(dir: &Path) -> Vec<f32> {
    Checkpoint::load(&dir.join("latest.ckpt"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .params
}

/// Where the one cluster job that used `checkpoint_dir` wrote its run: workers write each job
/// under `<checkpoint.dir>/<job id>`, so two jobs never share a directory. Panics unless exactly
/// one job directory is there.
pub fn run_dir_of_job(checkpoint_dir: &Path) -> PathBuf {
    let jobs: Vec<PathBuf> = std::fs::read_dir(checkpoint_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", checkpoint_dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("job-"))
        })
        .collect();
    assert_eq!(
        jobs.len(),
        1,
        "expected one job directory in {}: {jobs:?}",
        checkpoint_dir.display()
    );
    jobs.into_iter().next().unwrap()
}

/// Largest element-wise absolute difference of two equally long buffers.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `ringtrain ARGS`, asserting success (stdout and stderr in the failure message).
pub fn run_ok(args: &[&str]) -> Output {
    let out = ringtrain().args(args).output().expect("ringtrain runs");
    assert!(
        out.status.success(),
        "ringtrain {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `ringtrain ARGS`, asserting failure; returns stderr.
pub fn run_fail(args: &[&str]) -> String {
    let out = ringtrain().args(args).output().expect("ringtrain runs");
    assert!(!out.status.success(), "ringtrain {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `ringtrain local SPEC --workers N --output json [extra]` for a job of any task: asserts the
/// job succeeded on `world` ranks and returns the final job document (`{"job": ...}`).
pub fn run_local_any_task(spec: &Path, workers: usize, world: usize, extra: &[&str]) -> Value {
    let out = ringtrain()
        .args([
            "local",
            spec.to_str().unwrap(),
            "--workers",
            &workers.to_string(),
        ])
        .args(["--output", "json"])
        .args(extra)
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
    assert_eq!(done["job"]["world"], world as u64);
    done
}

/// [`run_local_any_task`] for a forecasting job: also asserts the test MSE was reported.
pub fn run_local(spec: &Path, workers: usize, world: usize, extra: &[&str]) -> Value {
    let done = run_local_any_task(spec, workers, world, extra);
    let result = &done["job"]["result"];
    assert!(
        result["metrics"]["test.mse"].as_f64().unwrap() > 0.0,
        "{result:#}"
    );
    done
}

/// `ringtrain train SPEC --quiet --output json`: asserts success, returns the report.
pub fn run_train(spec: &Path) -> Value {
    let out = ringtrain()
        .args([
            "train",
            spec.to_str().unwrap(),
            "--quiet",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The numerics contract: the cluster job (checkpoints in `job_dir`, final document `done`)
/// ended within 1e-5 of the single process (checkpoints in `single_dir`, report `single`),
/// after the same number of steps and with the same test loss. Returns the max abs difference.
pub fn assert_same_training(
    what: &str,
    job_dir: &Path,
    done: &Value,
    single_dir: &Path,
    single: &Value,
) -> f32 {
    let diff = max_abs_diff(&params(&run_dir_of_job(job_dir)), &params(single_dir));
    assert!(diff <= 1e-5, "{what} vs one process: max abs diff {diff}");
    let result = &done["job"]["result"];
    assert_eq!(result["steps"], single["steps"], "{what}: {result:#}");
    let want = single["test"]["loss"].as_f64().unwrap();
    let got = result["report"]["test"]["loss"].as_f64().unwrap();
    assert!(
        (want - got).abs() <= 1e-4 * want.abs().max(1.0),
        "{what}: test loss {got} vs {want}"
    );
    diff
}

/// A small forecasting job on the bundled seasonal series (`NAME.toml` in `dir`, checkpoints in
/// `dir/runs/NAME`), with dropout off so that data-parallel and single-process runs are comparable;
/// `data` ranks, global batch `batch`, `extra` lines appended to `[train]`.
pub fn cluster_spec(
    dir: &Path,
    name: &str,
    data: u32,
    batch: usize,
    epochs: u32,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let ckpt = dir.join(format!("runs/{name}"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
seed = 5
[model]
cell = "lstm"
hidden = 12
layers = 2
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
epochs = {epochs}
batch_size = {batch}
optimizer = {{ kind = "adam", lr = 0.01 }}
clip = {{ norm = 1.0 }}
{extra}
[parallel]
data = {data}
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

pub mod faults;
pub mod netns;
pub mod services;
pub mod tls;
