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
