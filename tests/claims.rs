//! README promises that only real processes and real signals can check: Ctrl-C (SIGINT) to a
//! running `ringtrain train` finishes the step, saves a checkpoint and exits cleanly, and
//! `--resume` ends with exactly the parameters of an uninterrupted run; a language model's job
//! interrupted on two workers resumes in one process with every stream's carried state (the
//! checkpoint holds it in one process's layout), ending where an uninterrupted process ends.

// Tests report measured numbers on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::{examples, max_abs_diff, params, ringtrain};
use ringtrain_train::Checkpoint;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Sends SIGINT (what Ctrl-C sends) to `child`.
fn sigint(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT {} failed", child.id());
}

/// Waits until `path` exists while `child` still runs; panics if the child ends first or after
/// `secs` (a hang).
fn wait_for_file(child: &mut Child, path: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited ({status}) before {} appeared", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear in {secs} s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (at most `secs`) for `child` to exit and returns its output.
fn finish(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {secs} s of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ringtrain train SPEC --quiet --output json [extra]`, asserting success.
fn train(spec: &Path, extra: &[&str]) -> (Value, String) {
    let out = ringtrain()
        .args([
            "train",
            spec.to_str().unwrap(),
            "--quiet",
            "--output",
            "json",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        text(&out.stderr),
    )
}

/// A forecasting spec with dropout, a cosine schedule and momentum-carrying Adam (all state a
/// resume must restore) and enough epochs that the interrupt lands mid-run.
fn forecast_spec(dir: &Path) -> PathBuf {
    let path = dir.join("interrupted.toml");
    std::fs::write(
        &path,
        format!(
            r#"seed = 9
[model]
cell = "lstm"
hidden = 16
layers = 2
dropout = 0.2
[task]
kind = "forecast"
horizon = 2
season = 12
[data]
path = "{data}"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = 40
batch_size = 16
optimizer = {{ kind = "adam", lr = 0.01 }}
schedule = {{ kind = "cosine", warmup_steps = 5 }}
clip = {{ norm = 1.0 }}
[checkpoint]
dir = "runs/interrupted"
"#,
            data = examples().join("data/seasonal.csv").display()
        ),
    )
    .unwrap();
    path
}

/// README ("Commands"): Ctrl-C finishes the current step, saves a checkpoint and exits; `--resume`
/// continues it and ends with exactly the parameters an uninterrupted run has.
#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_ends_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = forecast_spec(dir.path());
    let ckpt_dir = dir.path().join("runs/interrupted");
    let mut child = ringtrain()
        .args([
            "train",
            spec.to_str().unwrap(),
            "--quiet",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first epoch's checkpoint: the run is under way, 39 epochs from its end.
    wait_for_file(&mut child, &ckpt_dir.join("latest.ckpt"), 120);
    sigint(&child);
    let out = finish(child, 60);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("interrupted: saving a checkpoint after this step"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stop"], "interrupted", "{report:#}");
    let at = report["steps"].as_u64().unwrap();
    let saved = Checkpoint::load(&ckpt_dir.join("latest.ckpt")).unwrap();
    // The checkpoint is of the step the interrupt let finish, not of the last epoch boundary.
    assert_eq!(saved.header.progress.step, at);
    assert!(!saved.header.progress.finished);
    assert_eq!(saved.optimizer.step, at);
    eprintln!("interrupted after step {at}");

    let (resumed, _) = train(&spec, &["--resume", ckpt_dir.to_str().unwrap()]);
    let whole_dir = dir.path().join("runs/whole");
    let (whole, _) = train(&spec, &["--checkpoint-dir", whole_dir.to_str().unwrap()]);
    assert!(
        at < whole["steps"].as_u64().unwrap(),
        "the interrupt came after the last step"
    );
    assert_eq!(resumed["steps"], whole["steps"]);
    let a = Checkpoint::load(&whole_dir.join("latest.ckpt")).unwrap();
    let b = Checkpoint::load(&ckpt_dir.join("latest.ckpt")).unwrap();
    assert!(a.params == b.params, "parameters differ after the resume");
    assert_eq!(a.optimizer, b.optimizer);
}

/// A character language model on a generated corpus, 1 epoch of ~300 steps, data-parallel over
/// `parallel.data = 2` (`ringtrain train` runs the same steps in one process). SGD: over this
/// many steps Adam's rounding amplification alone reaches 1.6e-5 (README, numerics contract).
fn lm_spec(dir: &Path) -> PathBuf {
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, ringtrain_data::synth::keyed_lines(2000, 3)).unwrap();
    let path = dir.join("lm.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "lm"
seed = 11
[model]
cell = "lstm"
hidden = 32
layers = 2
embedding_dim = 16
[task]
kind = "language_model"
bptt = 16
[data]
path = "{corpus}"
split = [0.8, 0.1, 0.1]
[train]
epochs = 1
batch_size = 16
optimizer = {{ kind = "sgd", lr = 0.2, momentum = 0.9 }}
clip = {{ norm = 1.0 }}
[parallel]
data = 2
[checkpoint]
dir = "runs/dp"
every_steps = 3
"#,
            corpus = corpus.display()
        ),
    )
    .unwrap();
    path
}

/// README ("[task]", language_model): a run resumed with another number of workers continues
/// every stream. A 2-worker job (`ringtrain local`, real coordinator and worker processes)
/// interrupted with Ctrl-C mid-epoch is resumed by one process and ends within 1e-5 of one
/// uninterrupted process, without the "restart from the zero state" warning. Two stacked LSTM
/// layers make the state several segments (h and c per layer), so a checkpoint laid out rank by
/// rank instead of stream by stream would hand the streams each other's state.
#[test]
fn a_language_model_interrupted_on_two_workers_resumes_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let spec = lm_spec(dir.path());
    // A cluster job writes under `<checkpoint.dir>/<job id>`; `local` submits job-1.
    let dp_dir = dir.path().join("runs/dp/job-1");
    let mut local = ringtrain()
        .args(["local", spec.to_str().unwrap(), "--workers", "2"])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&mut local, &dp_dir.join("latest.ckpt"), 120);
    sigint(&local);
    let out = finish(local, 120);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("interrupted: cancelling the job"),
        "{stderr}"
    );
    let halted = Checkpoint::load(&dp_dir.join("latest.ckpt")).unwrap();
    let progress = &halted.header.progress;
    assert!(
        !progress.finished && progress.batch_in_epoch > 0,
        "not stopped mid-epoch: {progress:?}"
    );
    assert!(!halted.carried.is_empty(), "no carried state saved");
    eprintln!("2-worker job interrupted after step {}", progress.step);

    let resumed_dir = dir.path().join("runs/resumed");
    let (resumed, resumed_log) = train(
        &spec,
        &[
            "--resume",
            dp_dir.to_str().unwrap(),
            "--checkpoint-dir",
            resumed_dir.to_str().unwrap(),
        ],
    );
    assert!(
        !resumed_log.contains("restart from the zero state"),
        "{resumed_log}"
    );
    let single_dir = dir.path().join("runs/single");
    let (single, _) = train(&spec, &["--checkpoint-dir", single_dir.to_str().unwrap()]);
    assert_eq!(resumed["steps"], single["steps"]);
    assert!(progress.step < single["steps"].as_u64().unwrap());
    let diff = max_abs_diff(&params(&resumed_dir), &params(&single_dir));
    eprintln!("resumed in one process vs one process: max abs diff {diff:e}");
    assert!(diff <= 1e-5, "max abs diff {diff}");
}
