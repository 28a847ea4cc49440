//! Pipeline parallelism through the public interface: `ringtrain local` runs a coordinator and
//! `parallel.data × parallel.pipeline` real worker processes on 127.0.0.1, each rank one stage of
//! one replica, activations and gradients crossing processes over gRPC. The numerics contract
//! (DESIGN.md, "Pipeline"): the pipelined job's checkpoint ends within 1e-5 (max abs) of
//! `ringtrain train` on the same spec — 2 stages with GPipe and 1F1B (4 micro-batches), 2 replicas ×
//! 2 stages, and 3 stages with 1 and 4 micro-batches, over LSTM, GRU and RNN models — and the job's
//! result carries the test metrics that stage 0 of replica 0 reports. Each stage keeps only its
//! slice of the optimizer state, so the checkpoint's optimizer state, gathered from the stages
//! when it is written, is compared with the single process's too.

// Tests report measured differences on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::{assert_same_training, examples, max_abs_diff, run_local, run_train};
use ringtrain_train::Checkpoint;
use std::path::{Path, PathBuf};

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

/// Runs a `cell` model on `data × pipeline` workers with `micro` micro-batches and the same spec in
/// one process; compares.
fn pipelined_matches_single_process(
    cell: &str,
    data: usize,
    pipeline: usize,
    micro: usize,
    schedule: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let workers = data * pipeline;
    let name = format!(
        "pp{data}x{pipeline}m{micro}{}",
        schedule.replace('1', "one")
    );
    let with_cell = |path: PathBuf| {
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("cell = \"lstm\"", &format!("cell = \"{cell}\"")),
        )
        .unwrap();
        path
    };
    let pp = with_cell(spec(
        dir.path(),
        &name,
        &format!(
            "data = {data}\npipeline = {pipeline}\nmicrobatches = {micro}\nschedule = \"{schedule}\""
        ),
    ));
    let single = with_cell(spec(dir.path(), "single", "data = 1"));
    let done = run_local(&pp, workers, workers, &[]);
    let report = run_train(&single);
    let what = format!("{cell}: D = {data} x P = {pipeline}, M = {micro}, {schedule}");
    let diff = assert_same_training(
        &what,
        &dir.path().join(format!("runs/{name}")),
        &done,
        &dir.path().join("runs/single"),
        &report,
    );
    let state = |run: &Path| {
        Checkpoint::load(&run.join("latest.ckpt"))
            .unwrap()
            .optimizer
    };
    let (pipe, one) = (
        state(&common::run_dir_of_job(
            &dir.path().join(format!("runs/{name}")),
        )),
        state(&dir.path().join("runs/single")),
    );
    assert_eq!(
        (pipe.kind, pipe.step, pipe.n_params),
        (one.kind, one.step, one.n_params),
        "{what}"
    );
    let moments = max_abs_diff(&pipe.exp_avg, &one.exp_avg)
        .max(max_abs_diff(&pipe.exp_avg_sq, &one.exp_avg_sq));
    assert!(moments <= 1e-5, "{what}: Adam moments differ by {moments}");
    eprintln!("{what}: max abs diff {diff:e}, Adam moments {moments:e}");
}

#[test]
fn two_stages_gpipe_match_one_process() {
    pipelined_matches_single_process("lstm", 1, 2, 4, "gpipe");
}

#[test]
fn two_stages_1f1b_match_one_process() {
    pipelined_matches_single_process("lstm", 1, 2, 4, "1f1b");
}

#[test]
fn two_replicas_of_two_stages_match_one_process() {
    pipelined_matches_single_process("lstm", 2, 2, 4, "1f1b");
}

#[test]
fn three_stages_with_one_micro_batch_match_one_process() {
    pipelined_matches_single_process("gru", 1, 3, 1, "gpipe");
}

#[test]
fn three_stages_1f1b_with_four_micro_batches_match_one_process() {
    pipelined_matches_single_process("rnn", 1, 3, 4, "1f1b");
}

/// The example `examples/seasonal-lstm-pipeline.toml` (2 replicas × 2 stages) runs with
/// `ringtrain local` as a user would run it, and its final report has the measured bubble of
/// every rank over the run next to the ideal (P-1)/(M+P-1) = 1/5. The spec sets no
/// `checkpoint.dir`, so the run goes to `$RINGTRAIN_RUNS/<name>` (set to a temporary directory).
#[test]
fn the_pipeline_example_runs_with_local_and_reports_the_bubble() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy(
        examples().join("data/seasonal.csv"),
        dir.path().join("data/seasonal.csv"),
    )
    .unwrap();
    let spec = dir.path().join("seasonal-lstm-pipeline.toml");
    std::fs::copy(examples().join("seasonal-lstm-pipeline.toml"), &spec).unwrap();
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(
        text.contains("pipeline = 2") && text.contains("data = 2"),
        "the example is 2 replicas × 2 stages:\n{text}"
    );

    let runs = dir.path().join("runs-here");
    let out = common::ringtrain()
        .args(["local", spec.to_str().unwrap()])
        .env("RINGTRAIN_RUNS", &runs)
        .output()
        .expect("ringtrain runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("test split"), "{stdout}");
    let table = stdout
        .split_once("pipeline bubble per rank")
        .unwrap_or_else(|| panic!("no pipeline bubble table in the report:\n{stdout}"))
        .1;
    // One row per rank: rank, placement, steps, busy s, idle s, bubble, ideal bubble.
    let rows: Vec<Vec<String>> = table
        .lines()
        .map(|l| {
            l.split(['│', '┆'])
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.len() == 7 && cells[0].parse::<u32>().is_ok())
        .collect();
    let ranks: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ranks, ["0", "1", "2", "3"], "{table}");
    for r in &rows {
        let rank: usize = r[0].parse().unwrap();
        assert_eq!(
            r[1],
            format!("stage {} of replica {}", rank % 2, rank / 2),
            "{table}"
        );
        let steps: u64 = r[2].parse().unwrap();
        assert!(steps > 0, "{table}");
        let (busy, idle): (f64, f64) = (r[3].parse().unwrap(), r[4].parse().unwrap());
        let bubble: f64 = r[5].parse().unwrap();
        assert!(busy > 0.0 && idle >= 0.0, "{table}");
        assert!((0.0..1.0).contains(&bubble), "{table}");
        // The measured bubble is idle / (busy + idle) of the printed (rounded) seconds.
        assert!(
            (bubble - idle / (busy + idle)).abs() < 0.01,
            "bubble {bubble} vs busy {busy} idle {idle}\n{table}"
        );
        assert_eq!(r[6], "0.2000", "ideal for P = 2, M = 4\n{table}");
    }
    assert!(
        runs.join("seasonal-lstm-pipeline/job-1/best.ckpt")
            .is_file(),
        "{stdout}"
    );
}
