//! Hyperparameter sweeps through real processes: a coordinator and workers on 127.0.0.1 with a
//! real SQLite state file, driven by `ringtrain sweep ...` like a user would. Trials are tiny
//! (a few epochs of a small GRU on the bundled seasonal series) so the file runs in about a
//! minute on two busy cores.

mod common;

use common::examples;
use common::services::{Cluster, Flags};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A tiny forecast job on the bundled seasonal series (absolute data path, so the sweep file
/// can live anywhere).
fn base_job(dir: &Path, epochs: u32) -> PathBuf {
    let data = examples().join("data/seasonal.csv");
    let path = dir.join("base.toml");
    std::fs::write(
        &path,
        format!(
            r#"seed = 5
[model]
cell = "gru"
hidden = 8
[task]
kind = "forecast"
horizon = 1
[data]
path = "{}"
features = ["demand"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = {epochs}
batch_size = 32
max_steps = 40
optimizer = {{ kind = "adam", lr = 0.01 }}
[checkpoint]
# A trial whose ranks were forming their ring when the coordinator died restarts, as any job.
max_restarts = 2
"#,
            data.display()
        ),
    )
    .unwrap();
    path
}

/// A sweep file next to the base job.
fn sweep_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("name = \"{name}\"\nbase = \"base.toml\"\n{body}"),
    )
    .unwrap();
    path
}

const SPACE: &str = r#"
objective = { metric = "val_rmse" }
[[param]]
path = "train.optimizer.lr"
kind = "log_uniform"
low = 0.001
high = 0.05
[[param]]
path = "model.hidden"
kind = "int"
low = 4
high = 12
"#;

fn status(c: &Cluster, id: &str) -> Value {
    c.json(&["sweep", "status", id])
}

#[test]
fn a_small_sweep_completes_and_best_writes_a_valid_spec() {
    let c = Cluster::start_with(2, Flags::default());
    let dir = c.dir.path().to_path_buf();
    base_job(&dir, 2);
    let sweep = sweep_file(
        &dir,
        "small",
        &format!(
            "algorithm = \"random\"\nseed = 11\nmax_concurrent = 2\nbudget = {{ trials = 4 }}\n{SPACE}"
        ),
    );
    let out = c.cli(&["sweep", "submit", sweep.to_str().unwrap(), "--watch"]);
    assert!(
        out.status.success(),
        "sweep failed\nstdout:\n{}\nstderr:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("model.hidden") && table.contains("val_rmse"),
        "{table}"
    );

    let s = status(&c, "sweep-1");
    assert_eq!(s["state"], "succeeded", "{s:#}");
    let trials = s["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{s:#}");
    for t in trials {
        assert_eq!(t["state"], "complete", "{s:#}");
        assert!(t["value"].as_f64().is_some_and(f64::is_finite), "{t:#}");
        let h = t["params"]["model.hidden"].as_i64().unwrap();
        assert!((4..=12).contains(&h), "{t:#}");
    }
    // Every trial is an ordinary job of the same owner, named after the sweep.
    let jobs = c.json(&["status"]);
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    for i in 0..4 {
        assert!(names.contains(&format!("small-t{i}").as_str()), "{names:?}");
    }

    // `best` writes the best trial's full job spec: it validates, and carries its parameters.
    let best = s["best_trial"].as_u64().unwrap() as usize;
    let values: Vec<f64> = trials
        .iter()
        .map(|t| t["value"].as_f64().unwrap())
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(values[best], min, "val_rmse is minimized: {values:?}");
    let out_path = dir.join("best.toml");
    c.cli_ok(&[
        "sweep",
        "best",
        "sweep-1",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    let checked = common::run_ok(&["check", out_path.to_str().unwrap()]);
    let checked: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(
        checked["model"]["hidden"], trials[best]["params"]["model.hidden"],
        "{checked:#}"
    );
    assert_eq!(checked["name"], format!("small-t{best}"), "{checked:#}");

    // The plots of the sweep.
    let plots = dir.join("plots");
    c.cli_ok(&[
        "sweep",
        "status",
        "sweep-1",
        "--plot",
        plots.to_str().unwrap(),
    ]);
    for f in ["objective.png", "param-0.png", "param-1.png"] {
        assert!(
            std::fs::metadata(plots.join(f)).unwrap().len() > 1000,
            "{f}"
        );
    }
    // The Prometheus gauge of trials by state.
    let metrics_addr = c.coordinator.as_ref().unwrap().ready["metrics"]
        .as_str()
        .unwrap()
        .to_string();
    let text = http_get(&metrics_addr, "/metrics");
    assert!(
        text.contains("ringtrain_coordinator_sweep_trials{state=\"complete\"} 4"),
        "{text}"
    );
    c.stop();
}

#[test]
fn a_bad_sweep_is_refused_naming_the_parameter_and_value() {
    let c = Cluster::start_with(0, Flags::default());
    let dir = c.dir.path().to_path_buf();
    base_job(&dir, 2);
    let sweep = sweep_file(
        &dir,
        "bad",
        &format!(
            "algorithm = \"random\"\nbudget = {{ trials = 2 }}\n{}",
            SPACE.replace("low = 4", "low = 0")
        ),
    );
    let out = c.cli(&["sweep", "submit", sweep.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("param[1] = model.hidden = 0"), "{err}");
    // Nothing was stored.
    let list = c.json(&["sweep", "status"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "{list:#}");
    c.stop();
}

/// A plain HTTP GET of `path` on `addr`; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The trial table as (index, parameters) pairs.
fn params_table(s: &Value) -> Vec<(u64, Value)> {
    s["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["index"].as_u64().unwrap(), t["params"].clone()))
        .collect()
}

/// Polls the sweep until `pred` holds (at most `secs`).
fn wait_sweep(c: &Cluster, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let s = status(c, id);
        if pred(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} did not get there in {secs} s: {s:#}\n{}",
            c.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Same seed, same trials: the parameters of every trial index do not depend on how many
/// trials ran at once (TPE's start-up trials; random and grid search are pure functions of the
/// index at any length).
#[test]
fn the_same_seed_gives_the_same_trial_table_at_any_concurrency() {
    let c = Cluster::start_with(3, Flags::default());
    let dir = c.dir.path().to_path_buf();
    base_job(&dir, 1);
    let mut tables = vec![];
    for (i, concurrent) in [1, 3].into_iter().enumerate() {
        let sweep = sweep_file(
            &dir,
            &format!("det{concurrent}"),
            &format!(
                "algorithm = \"tpe\"\nseed = 42\nmax_concurrent = {concurrent}\nbudget = {{ trials = 6 }}\n{SPACE}"
            ),
        );
        c.cli_ok(&["sweep", "submit", sweep.to_str().unwrap(), "--watch"]);
        let s = status(&c, &format!("sweep-{}", i + 1));
        assert_eq!(s["state"], "succeeded", "{s:#}");
        tables.push(params_table(&s));
    }
    assert_eq!(tables[0].len(), 6);
    assert_eq!(tables[0], tables[1]);
    c.stop();
}

/// kill -9 of the coordinator in the middle of a sweep, then a restart on the same state file
/// and address: completed trials keep their values and jobs (not rerun), the active trial's job
/// goes on, and the sweep finishes with exactly its budget of trials, each index once.
#[test]
fn a_sweep_survives_a_coordinator_killed_and_restarted() {
    let mut c = Cluster::start_with(1, Flags::default());
    let dir = c.dir.path().to_path_buf();
    base_job(&dir, 3);
    let sweep = sweep_file(
        &dir,
        "survivor",
        &format!(
            "algorithm = \"random\"\nseed = 3\nmax_concurrent = 1\nbudget = {{ trials = 4 }}\n{SPACE}"
        ),
    );
    c.cli_ok(&["sweep", "submit", sweep.to_str().unwrap()]);
    let before = wait_sweep(&c, "sweep-1", 120, |s| {
        let trials = s["trials"].as_array().unwrap();
        trials.iter().filter(|t| t["state"] == "complete").count() >= 1
            && trials
                .iter()
                .any(|t| t["state"] == "queued" || t["state"] == "running")
    });
    let addr = c.addr.clone();
    c.coordinator.as_mut().unwrap().kill9();
    let state = dir.join("state.db");
    let restarted = common::services::Service::start(
        &[
            "coordinator",
            "--listen",
            &addr,
            "--metrics-listen",
            "127.0.0.1:0",
            "--state",
            state.to_str().unwrap(),
            "--lease-ms",
            "3000",
            "--heartbeat-wait-ms",
            "300",
        ],
        dir.join("coordinator-restarted.log"),
    );
    c.coordinator = Some(restarted);
    let after = status(&c, "sweep-1");
    let done_before: Vec<&Value> = before["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "complete")
        .collect();
    for t in &done_before {
        let same = &after["trials"][t["index"].as_u64().unwrap() as usize];
        assert_eq!(
            same["value"], t["value"],
            "completed trials are kept: {after:#}"
        );
        assert_eq!(same["job_id"], t["job_id"], "{after:#}");
        assert_eq!(same["state"], "complete", "{after:#}");
    }
    let end = wait_sweep(&c, "sweep-1", 180, |s| s["state"] != "running");
    assert_eq!(end["state"], "succeeded", "{end:#}\n{}", c.logs());
    let trials = end["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "the budget is honoured: {end:#}");
    assert!(trials.iter().all(|t| t["state"] == "complete"), "{end:#}");
    for t in &done_before {
        assert_eq!(
            trials[t["index"].as_u64().unwrap() as usize]["value"],
            t["value"]
        );
    }
    // One job per trial: nothing was submitted twice.
    let jobs = c.json(&["status"]);
    let mut names: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        (0..4).map(|i| format!("survivor-t{i}")).collect::<Vec<_>>()
    );
    c.stop();
}

/// ASHA through real workers: every trial is data-parallel over both workers; a trial with a
/// useless learning rate is pruned at its first rung, its job cancelled with "pruned at epoch E",
/// both ranks stop after the same step, and the workers take the next trial. Looped over
/// several trials (grid: seed × learning rate, a bad one every other trial).
#[test]
fn asha_prunes_a_data_parallel_trial_on_every_rank_at_the_same_step() {
    let c = Cluster::start_with(2, Flags::default());
    let dir = c.dir.path().to_path_buf();
    let data = examples().join("data/seasonal.csv");
    std::fs::write(
        dir.join("base.toml"),
        format!(
            r#"seed = 5
[model]
cell = "gru"
hidden = 48
[task]
kind = "forecast"
horizon = 1
[data]
path = "{}"
features = ["demand"]
targets = ["demand"]
window = 24
split = [0.7, 0.15, 0.15]
[train]
epochs = 16
batch_size = 8
optimizer = {{ kind = "adam", lr = 0.01 }}
[parallel]
data = 2
"#,
            data.display()
        ),
    )
    .unwrap();
    let sweep = sweep_file(
        &dir,
        "asha",
        r#"algorithm = "grid"
max_concurrent = 1
objective = { metric = "val_rmse" }
[[param]]
path = "seed"
kind = "grid"
values = [1, 2, 3]
[[param]]
path = "train.optimizer.lr"
kind = "grid"
values = [0.01, 1e-7]
[pruner]
kind = "asha"
grace_epochs = 1
reduction_factor = 2
"#,
    );
    c.cli_ok(&["sweep", "submit", sweep.to_str().unwrap()]);
    let end = wait_sweep(&c, "sweep-1", 300, |s| s["state"] != "running");
    assert_eq!(end["state"], "succeeded", "{end:#}\n{}", c.logs());
    let trials = end["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6, "{end:#}");
    let mut pruned = 0;
    for t in trials {
        let bad = t["params"]["train.optimizer.lr"].as_f64().unwrap() < 1e-6;
        if t["state"] != "pruned" {
            assert!(!bad, "a useless learning rate is pruned: {t:#}\n{end:#}");
            assert_eq!(t["state"], "complete", "{t:#}");
            continue;
        }
        pruned += 1;
        let reason = t["reason"].as_str().unwrap();
        assert!(reason.starts_with("pruned at epoch"), "{t:#}");
        let job = c.json(&["status", t["job_id"].as_str().unwrap()]);
        assert_eq!(job["state"], "cancelled", "{job:#}");
        assert!(
            job["reason"].as_str().unwrap().contains("pruned at epoch"),
            "{job:#}"
        );
        // Both ranks report the step they stopped after: the same one.
        let log = c.cli_ok(&["logs", t["job_id"].as_str().unwrap()]);
        let steps: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split("stopped after step ").nth(1))
            .map(|rest| {
                rest.trim_end_matches(')')
                    .trim_end_matches(|ch: char| !ch.is_ascii_digit())
            })
            .collect();
        assert_eq!(steps.len(), 2, "one stop line per rank:\n{log}");
        assert_eq!(
            steps[0], steps[1],
            "ranks stopped after different steps:\n{log}"
        );
    }
    assert!(pruned >= 3, "every bad trial is pruned: {end:#}");
    // The workers are free again.
    c.wait_idle_workers(2);
    c.stop();
}

/// `ringtrain local --sweep`: a whole cluster on this machine runs a sweep to its end.
#[test]
fn local_runs_a_sweep_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    base_job(dir.path(), 1);
    let sweep = sweep_file(
        dir.path(),
        "local",
        &format!(
            "algorithm = \"grid\"\nmax_concurrent = 2\n{}",
            SPACE
                .replace(
                    "kind = \"log_uniform\"\nlow = 0.001\nhigh = 0.05",
                    "kind = \"grid\"\nvalues = [0.01, 0.02]"
                )
                .replace("high = 12", "high = 5")
        ),
    );
    let out = common::ringtrain()
        .args([
            "local",
            "--sweep",
            sweep.to_str().unwrap(),
            "--workers",
            "2",
        ])
        .env("RINGTRAIN_RUNS", dir.path().join("runs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("complete").count(), 4, "{stdout}");
}

/// SweepService takes the job API's credentials: no token, no sweep; another user may not
/// cancel alice's sweep, an admin may.
#[test]
fn sweeps_are_authenticated_and_only_their_owner_or_an_admin_cancels_them() {
    use common::services::Wire;
    let c = Cluster::secured(0, Wire::Plain);
    let dir = c.dir.path().to_path_buf();
    base_job(&dir, 1);
    let sweep = sweep_file(
        &dir,
        "owned",
        &format!("algorithm = \"random\"\nbudget = {{ trials = 2 }}\n{SPACE}"),
    );
    let anonymous = c.cli_with(&["sweep", "submit", sweep.to_str().unwrap()], &[]);
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("Unauthenticated"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    c.cli_ok(&["sweep", "submit", sweep.to_str().unwrap()]);
    let s = status(&c, "sweep-1");
    assert_eq!(s["owner"], "alice", "{s:#}");
    // Its trials' jobs are alice's too (no workers: they wait queued).
    let jobs = c.json(&["status"]);
    assert_eq!(
        jobs.as_array().unwrap().len(),
        1,
        "max_concurrent 1: {jobs:#}"
    );
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["owner"] == "alice"),
        "{jobs:#}"
    );
    let bob = c.cli_with(&["sweep", "cancel", "sweep-1"], &c.client_flags_as("bob"));
    assert!(!bob.status.success());
    assert!(
        String::from_utf8_lossy(&bob.stderr).contains("PermissionDenied"),
        "{}",
        String::from_utf8_lossy(&bob.stderr)
    );
    assert_eq!(status(&c, "sweep-1")["state"], "running");
    let ops = c.cli_with(&["sweep", "cancel", "sweep-1"], &c.client_flags_as("ops"));
    assert!(
        ops.status.success(),
        "{}",
        String::from_utf8_lossy(&ops.stderr)
    );
    let s = status(&c, "sweep-1");
    assert_eq!(s["state"], "cancelled", "{s:#}");
    assert!(
        s["trials"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "cancelled"),
        "{s:#}"
    );
    c.stop();
}
