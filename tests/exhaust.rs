//! Exhausting the coordinator through its public interfaces: a real `ringtrain coordinator`
//! process on 127.0.0.1 (ephemeral port, real SQLite file), the `ringtrain` CLI, and a client
//! speaking the worker protocol the way a forged or buggy worker would. Covers listings of many
//! large specs (`ringtrain status` pages through them), bounded names refused at the RPC, and
//! text that workers control (log lines, failure messages) escaped before it reaches a terminal.

mod common;

use common::ringtrain;
use common::services::Service;
use ringtrain_proto::v1::cluster_service_client::ClusterServiceClient;
use ringtrain_proto::v1::report_result_request::Outcome;
use ringtrain_proto::v1::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A worker call carrying the credential its registration returned.
fn as_worker<T>(credential: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        ringtrain_proto::auth::WORKER_CREDENTIAL_HEADER,
        credential
            .parse()
            .expect("a credential is a valid header value"),
    );
    request
}

/// Terminal escape sequences a hostile worker would like printed: set the window title, clear
/// the screen, a C1 CSI, a right-to-left override and a carriage return.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}\r";

/// A `ringtrain coordinator` process, stopped by closing its stdin.
struct Coordinator {
    service: Service,
    addr: String,
}

impl Coordinator {
    fn start(dir: &Path, extra: &[&str]) -> Coordinator {
        let state = dir.join("state.db");
        let mut args = vec!["coordinator", "--listen", "127.0.0.1:0", "--state"];
        args.push(state.to_str().unwrap());
        args.extend_from_slice(extra);
        let service = Service::start(&args, dir.join("coordinator.log"));
        let addr = service.ready["grpc"].as_str().unwrap().to_string();
        Coordinator { service, addr }
    }

    fn cli(&self, args: &[&str]) -> Output {
        ringtrain()
            .args(args)
            .args(["--coordinator", &self.addr])
            .output()
            .expect("ringtrain runs")
    }

    /// Runs a client command that must succeed; returns its stdout.
    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ringtrain {args:?} failed\nstdout:\n{}\nstderr:\n{}\ncoordinator:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.service.log_text()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn stop(self) {
        self.service.stop();
    }
}

/// A valid forecast spec of `bytes` bytes (padded with a TOML comment).
fn big_spec(dir: &Path, name: &str, bytes: usize) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
[model]
cell = "lstm"
hidden = 8
[task]
kind = "forecast"
horizon = 1
[data]
path = "series.csv"
features = ["y"]
targets = ["y"]
window = 4
split = [0.8, 0.1, 0.1]
[train]
epochs = 1
batch_size = 4
optimizer = {{ kind = "adam", lr = 0.01 }}
[checkpoint]
dir = "runs/{name}"
"#
    );
    let padded = format!("{text}#{}\n", "p".repeat(bytes - text.len() - 2));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, padded).unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Jobs of about 1 MiB each that `status` lists.
const JOBS: usize = 70;

#[test]
fn status_pages_through_seventy_mebibyte_specs() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &[]);
    // Just under the 1 MiB spec limit each: 70 MiB of specs, over the CLI's 64 MiB message
    // limit and far over gRPC's default 4 MiB, had listings carried them.
    let spec = big_spec(dir.path(), "big", (1 << 20) - 64);
    for i in 1..=JOBS {
        let out = coord.cli_ok(&["submit", spec.to_str().unwrap()]);
        assert!(
            out.starts_with(&format!("submitted job-{i} (big): queued")),
            "{out}"
        );
    }
    let table = coord.cli_ok(&["status"]);
    assert_eq!(table.matches("┆ big ").count(), JOBS, "{table}");
    assert!(table.len() < 64 * 1024, "{} bytes", table.len());
    let json: Value = serde_json::from_str(&coord.cli_ok(&["status", "--output", "json"])).unwrap();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (1..=JOBS).rev().map(|i| format!("job-{i}")).collect();
    assert_eq!(ids, want);
    // The full spec is still one `status JOB` away.
    let one: Value =
        serde_json::from_str(&coord.cli_ok(&["status", "job-7", "--output", "json"])).unwrap();
    assert_eq!(
        one["spec"].as_str().unwrap().len(),
        std::fs::metadata(&spec).unwrap().len() as usize
    );
    coord.stop();
}

#[test]
fn names_are_bounded_and_worker_text_is_escaped_on_every_terminal_output() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--log-retention", "50"]);
    let spec = big_spec(dir.path(), "small", 1024);
    coord.cli_ok(&["submit", spec.to_str().unwrap()]);
    let url = format!("http://{}", coord.addr);
    runtime().block_on(async {
        let mut cluster = ClusterServiceClient::connect(url).await.unwrap();
        let register = |name: &str| RegisterWorkerRequest {
            protocol_version: ProtocolVersion::Current as u32,
            version: "0.1.0".into(),
            name: name.into(),
            peer_address: "127.0.0.1:45301".into(),
            ..Default::default()
        };
        // A name with escape sequences, or of 200 bytes, is refused naming the field.
        for name in [format!("w{HOSTILE}"), "w".repeat(200)] {
            let err = cluster.register_worker(register(&name)).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with("name "), "{}", err.message());
        }
        let registered = cluster
            .register_worker(register("forger"))
            .await
            .unwrap()
            .into_inner();
        let worker = registered.worker_id;
        // Every later worker call carries the credential issued at registration.
        let cred = registered.credential.as_str();
        let a = loop {
            let r = cluster
                .heartbeat(as_worker(
                    cred,
                    HeartbeatRequest {
                        worker_id: worker.clone(),
                        running: vec![],
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if let Some(a) = r.start.into_iter().next() {
                break a;
            }
        };
        // 300 reports of hostile log lines (only the newest 50 lines are kept), then a
        // hostile failure message.
        for step in 1..=300 {
            cluster
                .report_progress(as_worker(
                    cred,
                    ReportProgressRequest {
                        worker_id: worker.clone(),
                        job_id: a.job_id.clone(),
                        attempt: a.attempt,
                        rank: 0,
                        phase: RankPhase::Training as i32,
                        step,
                        total_steps: 300,
                        epochs: 1,
                        logs: vec![LogLine {
                            level: LogLevel::Warn as i32,
                            message: format!("step {step} {HOSTILE}"),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        }
        cluster
            .report_result(as_worker(
                cred,
                ReportResultRequest {
                    worker_id: worker.clone(),
                    job_id: a.job_id.clone(),
                    attempt: a.attempt,
                    rank: 0,
                    outcome: Some(Outcome::Failure(RankFailure {
                        message: format!("boom {HOSTILE}"),
                        ..Default::default()
                    })),
                },
            ))
            .await
            .unwrap();
    });
    let logs = coord.cli_ok(&["logs", "job-1"]);
    let status = coord.cli_ok(&["status"]);
    let one = coord.cli_ok(&["status", "job-1"]);
    let workers = coord.cli_ok(&["workers"]);
    for text in [&logs, &status, &one, &workers] {
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "raw control characters in:\n{text:?}"
        );
    }
    assert!(
        logs.contains("rank 0 warn: step 300 \\u{1b}]0;owned\\u{7}"),
        "{logs}"
    );
    assert!(
        !logs.contains("step 250 "),
        "retention keeps 50 lines:\n{logs}"
    );
    assert!(one.contains("rank 0: boom \\u{1b}]0;owned"), "{one}");
    assert!(status.contains("failed"), "{status}");
    assert!(workers.contains("forger"), "{workers}");
    // The retention cut is said on stderr, not hidden.
    let out = coord.cli(&["logs", "job-1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("earlier line(s) of this job are no longer kept"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    coord.stop();
}

/// A forecast spec on the bundled seasonal series with `hidden` units in each of 2 LSTM layers.
fn lstm_spec(dir: &Path, name: &str, hidden: usize) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
[model]
cell = "lstm"
hidden = {hidden}
layers = 2
[task]
kind = "forecast"
horizon = 1
[data]
path = "{data}"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = 1
batch_size = 8
optimizer = {{ kind = "adam", lr = 0.01 }}
[checkpoint]
dir = "{ckpt}"
"#,
            data = common::examples().join("data/seasonal.csv").display(),
            ckpt = dir.join("runs").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_job_over_the_workers_budget_fails_and_the_worker_runs_the_next_one() {
    let flags = common::services::Flags {
        worker: vec!["--max-memory-mb".into(), "4".into()],
        ..Default::default()
    };
    let cluster = common::services::Cluster::start_with(1, flags);
    let dir = tempfile::tempdir().unwrap();
    let worker = cluster.json(&["workers"])[0]["id"].clone();
    // About 800 thousand parameters: 12 MiB with gradients and Adam state, within the spec's
    // default limits but over this worker's 4 MiB.
    let big = cluster.submit(&lstm_spec(dir.path(), "big", 256));
    let failed = cluster.wait_job(&big, 120, |j| j["state"] == "failed");
    let reason = failed["reason"].as_str().unwrap();
    for needle in [
        "rank 0",
        "worker's budget",
        "limits.max_memory_mb",
        "training is estimated to need",
        "above the limit of 4.0 MiB",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
    }
    assert!(!dir.path().join("runs").exists(), "nothing was written");
    // The worker survived, is still registered under the same id and runs the next job.
    let small = cluster.submit(&lstm_spec(dir.path(), "small", 8));
    let done = cluster.wait_job(&small, 300, |j| {
        !matches!(j["state"].as_str(), Some("queued" | "starting" | "running"))
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    assert_eq!(done["workers"][0], worker);
    let workers = cluster.json(&["workers"]);
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers:#}");
    cluster.stop();
}
