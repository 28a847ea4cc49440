//! End-to-end tests of the `ringtrain` binary: train, evaluate and predict through the CLI on
//! the bundled example data, exact resumption, determinism, and the error messages a user sees.

use ringtrain_train::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

mod common;

use common::{examples, ringtrain, run_fail, run_ok};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a spec into `dir` whose data path points at the examples folder.
fn write_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let body = body.replace("EXAMPLES", &examples().display().to_string());
    let ckpt = dir.join(format!("runs/{name}"));
    std::fs::write(
        &path,
        format!(
            "{body}\n[checkpoint]\ndir = {:?}\n",
            ckpt.display().to_string()
        ),
    )
    .unwrap();
    path
}

const FORECAST: &str = r#"
seed = 9
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
path = "EXAMPLES/data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = 3
batch_size = 16
optimizer = { kind = "adam", lr = 0.01 }
schedule = { kind = "cosine", warmup_steps = 5 }
clip = { norm = 1.0 }
"#;

#[test]
fn train_eval_predict_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "fc", FORECAST);
    let plot = dir.path().join("fc.png");
    let out = run_ok(&[
        "train",
        spec.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    for want in [
        "job fc: Completed",
        "test split",
        "seasonal naive",
        "naive (last value)",
        "MAPE %",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Log lines into a pipe carry no terminal colour codes.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("epoch"), "no epoch log lines in:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in piped logs:\n{log:?}"
    );
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[1..4], b"PNG", "plot is a PNG");

    let ckpt = dir.path().join("runs/fc");
    let out = run_ok(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let eval: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["split"], "test");
    assert!(eval["metrics"]["model"]["rmse"].as_f64().unwrap() > 0.0);

    // Another file prepared with the checkpoint's normalizer: every window is scored once.
    let data = examples().join("data/seasonal.csv");
    let out = run_ok(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let whole: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 400 rows, window 12, horizon 2: windows start at rows 0..=386.
    assert_eq!(whole["samples"], 387);

    // Forecast past the end of a file: two steps of one target.
    let out = run_ok(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["demand"].as_f64().unwrap().is_finite());
}

const CLASSIFY: &str = r#"
seed = 4
[model]
cell = "gru"
hidden = 24
embedding_dim = 16
[task]
kind = "classify"
pooling = "mean"
[data]
path = "EXAMPLES/data/sentiment-synth.csv"
split = [0.8, 0.1, 0.1]
[train]
epochs = 4
batch_size = 32
optimizer = { kind = "adam", lr = 0.01 }
"#;

#[test]
fn train_and_classify_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "cls", CLASSIFY);
    let text = stdout(&run_ok(&["train", spec.to_str().unwrap()]));
    for want in [
        "accuracy",
        "macro F1",
        "majority baseline",
        "true \\ predicted",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let ckpt = dir.path().join("runs/cls");
    let mut child = ringtrain()
        .args([
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--output",
            "json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"the food was great\nthe service was not good at all\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let p = &l["probabilities"];
        let sum = p["pos"].as_f64().unwrap() + p["neg"].as_f64().unwrap();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    }
}

#[test]
fn resumed_run_ends_with_the_uninterrupted_parameters() {
    let dir = tempfile::tempdir().unwrap();
    // Dropout, a warm-up + cosine schedule, momentum state and early-stopping bookkeeping all
    // have to survive the interruption for the parameters to match bit for bit.
    let body = format!("{FORECAST}early_stopping = {{ metric = \"val_loss\", patience = 10 }}\n");
    let full = write_spec(dir.path(), "full", &body);
    run_ok(&["train", full.to_str().unwrap(), "--quiet"]);

    let parted = write_spec(dir.path(), "parted", &body);
    // Stop mid-epoch (the epoch has 16 steps), then resume twice more from the saved state.
    let out = run_ok(&[
        "train",
        parted.to_str().unwrap(),
        "--halt-after-steps",
        "7",
        "--quiet",
    ]);
    assert!(
        stdout(&out).contains("Halted after 7 steps"),
        "{}",
        stdout(&out)
    );
    let ckpt_dir = dir.path().join("runs/parted");
    run_ok(&[
        "train",
        parted.to_str().unwrap(),
        "--resume",
        ckpt_dir.to_str().unwrap(),
        "--halt-after-steps",
        "20",
        "--quiet",
    ]);
    run_ok(&[
        "train",
        parted.to_str().unwrap(),
        "--resume",
        ckpt_dir.to_str().unwrap(),
        "--quiet",
    ]);

    let a = Checkpoint::load(&dir.path().join("runs/full/latest.ckpt")).unwrap();
    let b = Checkpoint::load(&ckpt_dir.join("latest.ckpt")).unwrap();
    assert_eq!(a.header.progress.step, b.header.progress.step);
    assert!(a.params == b.params, "parameters differ after resume");
    assert_eq!(a.optimizer, b.optimizer);
    assert_eq!(a.header.history, b.header.history);
}

#[test]
fn same_seed_gives_the_same_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let curve = |name: &str, seed: u64| {
        let spec = write_spec(
            dir.path(),
            name,
            &FORECAST.replace("seed = 9", &format!("seed = {seed}")),
        );
        let out = run_ok(&[
            "train",
            spec.to_str().unwrap(),
            "--output",
            "json",
            "--quiet",
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["history"].clone()
    };
    let a = curve("a", 9);
    let b = curve("b", 9);
    let c = curve("c", 10);
    assert_eq!(a, b, "same seed, different curves");
    assert_ne!(a, c, "different seeds gave identical curves");
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_spec(
        dir.path(),
        "bad",
        &FORECAST
            .replace("lr = 0.01", "lr = -1.0")
            .replace("layers = 2", "layers = 0"),
    );
    let err = run_fail(&["train", bad.to_str().unwrap()]);
    assert!(
        err.contains("train.optimizer.lr = -1: must be a finite number > 0"),
        "{err}"
    );
    assert!(err.contains("model.layers = 0"), "{err}");

    let missing = write_spec(
        dir.path(),
        "missing",
        &FORECAST.replace("seasonal.csv", "nope.csv"),
    );
    let err = run_fail(&["train", missing.to_str().unwrap()]);
    assert!(err.contains("nope.csv"), "{err}");

    let column = write_spec(
        dir.path(),
        "column",
        &FORECAST.replace("\"temperature\"]", "\"temp\"]"),
    );
    let err = run_fail(&["train", column.to_str().unwrap()]);
    assert!(
        err.contains("temp") && err.contains("seasonal.csv"),
        "{err}"
    );

    // A truncated checkpoint is refused with a clear message, never half-loaded.
    let spec = write_spec(
        dir.path(),
        "ok",
        &FORECAST.replace("epochs = 3", "epochs = 1"),
    );
    run_ok(&["train", spec.to_str().unwrap(), "--quiet"]);
    let latest = dir.path().join("runs/ok/latest.ckpt");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() - 10]).unwrap();
    let _ = std::fs::remove_file(dir.path().join("runs/ok/best.ckpt"));
    let err = run_fail(&[
        "eval",
        "--checkpoint",
        dir.path().join("runs/ok").to_str().unwrap(),
    ]);
    assert!(
        err.contains("is corrupt") && err.contains("truncated"),
        "{err}"
    );

    // Resuming with a different architecture names the differing field.
    std::fs::write(&latest, &bytes).unwrap();
    let other = write_spec(
        dir.path(),
        "ok",
        &FORECAST
            .replace("epochs = 3", "epochs = 1")
            .replace("hidden = 16", "hidden = 8"),
    );
    let err = run_fail(&[
        "train",
        other.to_str().unwrap(),
        "--resume",
        dir.path().join("runs/ok").to_str().unwrap(),
    ]);
    assert!(
        err.contains("model.hidden is 16 in the checkpoint but 8 in the spec"),
        "{err}"
    );
}

#[test]
fn check_prints_the_validated_spec() {
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        // `sweep-*.toml` are sweep specs (`ringtrain sweep submit`), checked by ringtrain-sweep's
        // tests.
        let sweep = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sweep-"));
        if path.extension().is_some_and(|e| e == "toml") && !sweep {
            let out = run_ok(&["check", path.to_str().unwrap()]);
            let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                spec["model"]["hidden"].as_u64().unwrap() > 0,
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "logs",
        &FORECAST.replace("epochs = 3", "epochs = 1"),
    );
    // Not --quiet: that hides the progress events this test reads (stderr is a pipe, so there is
    // no progress bar either way).
    let out = run_ok(&["--log-format", "json", "train", spec.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let start = events
        .iter()
        .find(|e| e["message"] == "training")
        .expect("a start event");
    assert_eq!(start["job"], "logs");
    assert!(start["params"].as_u64().unwrap() > 0);
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "progress" && e["step"].is_u64())
    );
}

#[test]
fn a_fresh_run_does_not_inherit_an_earlier_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "again",
        &FORECAST.replace("epochs = 3", "epochs = 1"),
    );
    run_ok(&["train", spec.to_str().unwrap(), "--quiet"]);
    let best = dir.path().join("runs/again/best.ckpt");
    assert!(
        best.is_file(),
        "a run with a validation split keeps its best epoch"
    );
    // Same job name and directory, now without a validation split: no best epoch exists, so
    // eval/predict must use this run's latest.ckpt, not the earlier run's best.
    let spec = write_spec(
        dir.path(),
        "again",
        &FORECAST
            .replace("epochs = 3", "epochs = 1")
            .replace("[0.7, 0.15, 0.15]", "[0.8, 0.0, 0.2]"),
    );
    // Without --resume or --overwrite the finished run is refused, and left as it was.
    let before = std::fs::read(&best).unwrap();
    let out = ringtrain()
        .args(["train", spec.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("already holds a run")
            && err.contains("--resume")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&best).unwrap(),
        before,
        "a refused run touched best.ckpt"
    );
    run_ok(&["train", spec.to_str().unwrap(), "--quiet", "--overwrite"]);
    assert!(!best.exists(), "stale best.ckpt survived a fresh run");
}

#[test]
fn quiet_hides_per_step_and_per_epoch_lines_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "quiet",
        &FORECAST.replace("epochs = 3", "epochs = 2"),
    );
    let loud = run_ok(&["train", spec.to_str().unwrap()]);
    let loud_err = String::from_utf8_lossy(&loud.stderr);
    assert!(loud_err.contains("epoch 1 step"), "{loud_err}");
    assert!(loud_err.contains("progress"), "{loud_err}");

    let quiet = run_ok(&["train", spec.to_str().unwrap(), "--quiet", "--overwrite"]);
    let quiet_err = String::from_utf8_lossy(&quiet.stderr);
    assert!(!quiet_err.contains("epoch 1 step"), "{quiet_err}");
    assert!(!quiet_err.contains("epoch 2 step"), "{quiet_err}");
    assert!(!quiet_err.contains("progress"), "{quiet_err}");
    // The start line and the final report stay.
    assert!(quiet_err.contains("training"), "{quiet_err}");
    assert!(stdout(&quiet).contains("test split"), "{}", stdout(&quiet));

    let help = stdout(&run_ok(&["train", "--help"]));
    assert!(
        help.contains("--quiet") && help.contains("per-epoch lines"),
        "--help says what --quiet hides:\n{help}"
    );
}

#[test]
fn io_errors_print_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let cause = "No such file or directory";

    let missing_spec = dir.path().join("absent.toml");
    let err = run_fail(&["train", missing_spec.to_str().unwrap()]);
    assert!(err.contains("cannot read job spec"), "{err}");
    assert!(err.contains("absent.toml"), "{err}");
    assert_eq!(err.matches(cause).count(), 1, "{err}");

    let missing_data = write_spec(
        dir.path(),
        "nodata",
        &FORECAST.replace("EXAMPLES/data/seasonal.csv", "absent.csv"),
    );
    let err = run_fail(&["train", missing_data.to_str().unwrap()]);
    assert!(err.contains("absent.csv: cannot read"), "{err}");
    assert_eq!(err.matches(cause).count(), 1, "{err}");

    // The coordinator's secret file and state lock (auth and store errors) say it once too.
    let state = dir.path().join("state.db");
    let secret = dir.path().join("absent-secret");
    let err = run_fail(&[
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--state",
        state.to_str().unwrap(),
        "--cluster-secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(err.contains("absent-secret"), "{err}");
    assert_eq!(err.matches(cause).count(), 1, "{err}");
    let nowhere = dir.path().join("absent-dir/state.db");
    let err = run_fail(&[
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--state",
        nowhere.to_str().unwrap(),
    ]);
    assert!(err.contains("state database lock"), "{err}");
    assert_eq!(err.matches(cause).count(), 1, "{err}");
}

/// An example whose dataset is downloaded (not committed) names its fetch script instead of
/// failing with a bare "cannot read" — for `train` and for `local`, before any training or
/// cluster start-up. The example is copied without its data, as a fresh checkout has it.
#[test]
fn an_example_without_its_fetched_data_names_the_fetch_script() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "shakespeare-char-lm.toml",
        "fetch-shakespeare.sh",
        "fetch-translation.sh",
    ] {
        std::fs::copy(examples().join(f), dir.path().join(f)).unwrap();
    }
    let spec = dir.path().join("shakespeare-char-lm.toml");
    for command in ["train", "local"] {
        let err = run_fail(&[command, spec.to_str().unwrap()]);
        assert!(
            err.contains("shakespeare.txt does not exist")
                && err.contains("fetch-shakespeare.sh")
                && !err.contains("fetch-translation.sh"),
            "{command}: {err}"
        );
    }
    // A missing file that no fetch script names is still the reader's error, naming the file.
    std::fs::remove_file(dir.path().join("fetch-shakespeare.sh")).unwrap();
    let err = run_fail(&["train", spec.to_str().unwrap()]);
    assert!(
        err.contains("shakespeare.txt: cannot read") && !err.contains("fetch-"),
        "{err}"
    );
}

/// Every file under `dir` with its length, for comparing a tree before and after.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else {
            out.push((path.clone(), std::fs::metadata(&path).unwrap().len()));
        }
    }
    out.sort();
    out
}

/// The examples set no `checkpoint.dir`: their runs go to `runs/<name>` under the current
/// directory, so an example trains from a read-only checkout and leaves it unchanged (checked by
/// its file list too, since tests may run as root, whom permissions do not stop).
#[test]
fn an_example_trains_from_a_read_only_copy_into_the_current_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("checkout");
    std::fs::create_dir_all(ro.join("data")).unwrap();
    std::fs::copy(
        examples().join("seasonal-gru.toml"),
        ro.join("seasonal-gru.toml"),
    )
    .unwrap();
    std::fs::copy(
        examples().join("data/seasonal.csv"),
        ro.join("data/seasonal.csv"),
    )
    .unwrap();
    let text = std::fs::read_to_string(ro.join("seasonal-gru.toml")).unwrap();
    assert!(!text.contains("[checkpoint]"), "{text}");
    let before = tree(&ro);
    for d in [ro.join("data"), ro.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = ringtrain()
        .args([
            "train",
            ro.join("seasonal-gru.toml").to_str().unwrap(),
            "--quiet",
        ])
        .current_dir(&work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for d in [ro.clone(), ro.join("data")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(out.status.success(), "{stderr}");
    assert!(
        work.join("runs/seasonal-gru/best.ckpt").is_file(),
        "{stderr}"
    );
    assert!(
        stdout(&out).contains("runs/seasonal-gru"),
        "{}",
        stdout(&out)
    );
    assert_eq!(tree(&ro), before, "the checkout was written to");
}

/// `ringtrain local` starts a fresh cluster whose jobs are numbered from 1 again: a second run
/// of a spec without `checkpoint.dir` goes to `runs/<name>-2` instead of writing over the first
/// run's `job-1`, and a spec whose own `checkpoint.dir` already holds `job-1` is refused,
/// naming the ways out, with the first run's checkpoint left as it was.
#[test]
fn a_second_local_run_keeps_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let body = FORECAST
        .replace("EXAMPLES", &examples().display().to_string())
        .replace("epochs = 3", "epochs = 1");
    let spec = dir.path().join("twice.toml");
    std::fs::write(&spec, &body).unwrap();
    let runs = dir.path().join("runs");
    let local = || {
        let out = ringtrain()
            .args(["local", spec.to_str().unwrap(), "--output", "json"])
            .env("RINGTRAIN_RUNS", &runs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    local();
    let first = runs.join("twice/job-1/best.ckpt");
    let kept = std::fs::read(&first).unwrap_or_else(|e| panic!("{}: {e}", first.display()));
    local();
    assert!(runs.join("twice-2/job-1/best.ckpt").is_file());
    assert_eq!(
        std::fs::read(&first).unwrap(),
        kept,
        "the first run was written over"
    );

    let placed = write_spec(
        dir.path(),
        "placed",
        &FORECAST.replace("epochs = 3", "epochs = 1"),
    );
    run_ok(&["local", placed.to_str().unwrap(), "--output", "json"]);
    let ckpt = dir.path().join("runs/placed/job-1/best.ckpt");
    let kept = std::fs::read(&ckpt).unwrap();
    let err = run_fail(&["local", placed.to_str().unwrap()]);
    assert!(
        err.contains("already holds job-1") && err.contains("--state"),
        "{err}"
    );
    assert_eq!(std::fs::read(&ckpt).unwrap(), kept);
}

/// Every forecast report carries the statistical baselines (AutoETS; MSTL + AutoETS with a
/// season) next to naive and seasonal-naive: the table, metrics.json and `eval`'s JSON.
#[test]
fn forecast_reports_carry_the_statistical_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "ets",
        &FORECAST.replace("epochs = 3", "epochs = 1"),
    );
    let out = run_ok(&["train", spec.to_str().unwrap()]);
    let text = stdout(&out);
    for want in ["AutoETS (", "MSTL + AutoETS (", "seasonal naive"] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("unavailable"), "{text}");
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/ets/metrics.json")).unwrap(),
    )
    .unwrap();
    for split in ["val", "test"] {
        let m = &metrics[split]["metrics"];
        let stats = m["statistical"]
            .as_array()
            .unwrap_or_else(|| panic!("{m:#}"));
        let names: Vec<&str> = stats.iter().map(|b| b["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["AutoETS", "MSTL + AutoETS"], "{split}");
        for b in stats {
            // Scored on exactly the model's values (samples × horizon).
            assert_eq!(b["metrics"]["count"], m["model"]["count"], "{b:#}");
            let mse = b["metrics"]["mse"].as_f64().unwrap();
            assert!(mse.is_finite() && mse > 0.0, "{b:#}");
            let ratio = b["vs_model"]["mse_ratio"].as_f64().unwrap();
            let model = m["model"]["mse"].as_f64().unwrap();
            assert!(
                (ratio - model / mse).abs() < 1e-9 * ratio.abs().max(1.0),
                "{b:#}"
            );
            assert!(b["unavailable"].is_null(), "{b:#}");
            assert!(!b["forms"][0].as_str().unwrap().is_empty(), "{b:#}");
        }
    }
    let eval = run_ok(&[
        "eval",
        "--checkpoint",
        dir.path().join("runs/ets").to_str().unwrap(),
        "--output",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(
        report["metrics"]["statistical"], metrics["test"]["metrics"]["statistical"],
        "eval scores the baselines exactly as training did"
    );
}
