//! Attacks on a secured cluster, one test per attack class of issue 12 ("Forge and cancel",
//! "Crash the coordinator with one request"): a real coordinator started with a cluster secret
//! and a client tokens file, real workers with the secret, all on 127.0.0.1 with ephemeral ports,
//! a real SQLite file and real gRPC. The attacker is a raw tonic client from `ringtrain-proto`
//! that can reach every port and knows every id, but none of the secrets. Each test checks the
//! attack is refused with the right status and that the honest job still ends with its own,
//! real result.
//!
//! Every attack runs twice (`both_wires!`): over plain TCP, where the credentials alone keep the
//! attacker out, and over mutual TLS, where the attacker even holds a certificate the cluster
//! trusts (an insider's), so the refusals shown are the credentials' and not the handshake's.

mod common;

use common::services::{Cluster, SECRET, USERS, Wire};
use common::{examples, ringtrain};
use ringtrain_proto::auth;
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::cluster_service_client::ClusterServiceClient;
use ringtrain_proto::v1::job_service_client::JobServiceClient;
use ringtrain_proto::v1::peer_service_client::PeerServiceClient;
use ringtrain_proto::v1::rendezvous_service_client::RendezvousServiceClient;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tonic::Code;

/// The client token of the test's user (`alice`).
const TOKEN: &str = USERS[0].1;

/// One `#[test]` per attack and wire: `plain::NAME` and `mutual_tls::NAME` call `NAME(wire)`.
macro_rules! both_wires {
    ($($name:ident),* $(,)?) => {
        mod plain {
            $(#[test]
            fn $name() {
                super::$name(super::Wire::Plain)
            })*
        }
        mod mutual_tls {
            $(#[test]
            fn $name() {
                super::$name(super::Wire::MutualTls)
            })*
        }
    };
}

both_wires!(
    job_api_calls_without_a_valid_token_are_unauthenticated_and_change_nothing,
    a_client_that_knows_a_worker_id_cannot_report_for_it,
    a_rendezvous_join_with_a_huge_world_is_refused_and_the_coordinator_still_serves,
    a_pre_joined_session_with_the_wrong_world_is_refused_and_the_real_job_succeeds,
    a_forged_peer_connection_is_refused_and_the_job_finishes,
    a_worker_without_the_cluster_secret_cannot_start,
    a_job_is_cancelled_only_by_its_owner_or_an_admin,
);

/// A forecasting job of `data` ranks that trains for a few seconds.
fn spec(dir: &Path, name: &str, data: u32, epochs: u32) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
seed = 5
[model]
cell = "lstm"
hidden = 12
[task]
kind = "forecast"
horizon = 1
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
[parallel]
data = {data}
[checkpoint]
dir = "{ckpt}"
"#,
            data_path = examples().join("data/seasonal.csv").display(),
            batch = 4 * data,
            ckpt = dir.join(format!("runs/{name}")).display()
        ),
    )
    .unwrap();
    path
}

/// The TLS flags of a worker of `cluster` (none over plain TCP), without the cluster secret.
fn worker_tls(cluster: &Cluster) -> Vec<String> {
    cluster
        .pki
        .as_ref()
        .map(|p| p.flags(true).worker)
        .unwrap_or_default()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A request carrying `header: value`.
fn with<T>(message: T, header: &'static str, value: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    auth::set_header(r.metadata_mut(), header, value);
    r
}

/// A request carrying `header: value` when `value` is given.
fn maybe<T>(message: T, header: &'static str, value: Option<&str>) -> tonic::Request<T> {
    match value {
        Some(v) => with(message, header, v),
        None => tonic::Request::new(message),
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn job_api_calls_without_a_valid_token_are_unauthenticated_and_change_nothing(wire: Wire) {
    let cluster = Cluster::secured(1, wire);
    let dir = tempfile::tempdir().unwrap();
    let id = cluster.submit(&spec(dir.path(), "mine", 1, 30));
    cluster.wait_job(&id, 120, |j| j["state"] == "running");
    runtime().block_on(async {
        let mut jobs = JobServiceClient::new(cluster.channel(&cluster.addr).await);
        let mut workers = ClusterServiceClient::new(cluster.channel(&cluster.addr).await);
        let submit = || pb::SubmitJobRequest {
            spec: std::fs::read_to_string(spec(dir.path(), "forged", 1, 1)).unwrap(),
            format: pb::SpecFormat::Toml as i32,
            base_dir: dir.path().display().to_string(),
            origin: "forged.toml".into(),
        };
        let cancel = || pb::CancelJobRequest {
            job_id: id.clone(),
            reason: "forged".into(),
        };
        for bad in [None, Some("Bearer eve-token-0123456789abcdef"), Some(TOKEN)] {
            // The right token without "Bearer" is not a bearer token either.
            let h = auth::AUTHORIZATION_HEADER;
            assert_eq!(
                code(jobs.submit_job(maybe(submit(), h, bad)).await),
                Code::Unauthenticated
            );
            assert_eq!(
                code(jobs.cancel_job(maybe(cancel(), h, bad)).await),
                Code::Unauthenticated
            );
            let list = jobs
                .list_jobs(maybe(pb::ListJobsRequest::default(), h, bad))
                .await;
            assert_eq!(code(list), Code::Unauthenticated);
            let logs = pb::GetJobLogsRequest {
                job_id: id.clone(),
                ..Default::default()
            };
            assert_eq!(
                code(jobs.get_job_logs(maybe(logs, h, bad)).await),
                Code::Unauthenticated
            );
            let get = pb::GetJobRequest { job_id: id.clone() };
            assert_eq!(
                code(jobs.get_job(maybe(get, h, bad)).await),
                Code::Unauthenticated
            );
            let watch = pb::WatchJobRequest { job_id: id.clone() };
            assert_eq!(
                code(jobs.watch_job(maybe(watch, h, bad)).await),
                Code::Unauthenticated
            );
            let list = workers
                .list_workers(maybe(pb::ListWorkersRequest::default(), h, bad))
                .await;
            assert_eq!(code(list), Code::Unauthenticated);
        }
        // Registering without the cluster secret, or with a wrong one, is refused too.
        let register = pb::RegisterWorkerRequest {
            protocol_version: pb::ProtocolVersion::Current as u32,
            peer_address: "127.0.0.1:9".into(),
            ..Default::default()
        };
        let r = workers.register_worker(register.clone()).await;
        assert_eq!(code(r), Code::Unauthenticated);
        let wrong = with(
            register,
            auth::CLUSTER_SECRET_HEADER,
            "cluster-secret-0123456789abcdeX",
        );
        assert_eq!(
            code(workers.register_worker(wrong).await),
            Code::Unauthenticated
        );
    });
    // The CLI without a token says what to pass; with it, the job is untouched and finishes.
    let out = cluster.cli_with(&["status"], &cluster.tls_client_flags());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unauthenticated") && err.contains("--token-file"),
        "{err}"
    );
    let done = cluster.wait_job(&id, 300, |j| j["state"] != "running");
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    let all = cluster.json(&["status"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "no forged job: {all:#}");
    // Nothing the attacker sent reached the state machine: the only registered worker is ours.
    let workers = cluster.json(&["workers"]);
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers:#}");
}

fn a_client_that_knows_a_worker_id_cannot_report_for_it(wire: Wire) {
    let cluster = Cluster::secured(1, wire);
    let dir = tempfile::tempdir().unwrap();
    let id = cluster.submit(&spec(dir.path(), "real", 1, 30));
    let running = cluster.wait_job(&id, 120, |j| {
        j["state"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 0
    });
    let worker = running["workers"][0].as_str().unwrap().to_string();
    runtime().block_on(async {
        let mut client = ClusterServiceClient::new(cluster.channel(&cluster.addr).await);
        let forged = || pb::ReportResultRequest {
            worker_id: worker.clone(),
            job_id: id.clone(),
            attempt: 1,
            rank: 0,
            outcome: Some(pb::report_result_request::Outcome::Success(pb::JobResult {
                metrics: [("test.mse".to_string(), 123.0)].into_iter().collect(),
                report_json: "{}".into(),
                steps: 1,
                ..Default::default()
            })),
        };
        let progress = || pb::ReportProgressRequest {
            worker_id: worker.clone(),
            job_id: id.clone(),
            attempt: 1,
            rank: 0,
            step: 1,
            ..Default::default()
        };
        let heartbeat = || pb::HeartbeatRequest {
            worker_id: worker.clone(),
            running: Vec::new(),
        };
        // Without a credential, with a made-up one, and with the cluster secret in its place.
        let guesses = [
            None,
            Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
            Some(SECRET),
        ];
        for guess in guesses {
            let h = auth::WORKER_CREDENTIAL_HEADER;
            assert_eq!(
                code(client.report_result(maybe(forged(), h, guess)).await),
                Code::Unauthenticated
            );
            let p = client.report_progress(maybe(progress(), h, guess)).await;
            assert_eq!(code(p), Code::Unauthenticated);
            let h = client.heartbeat(maybe(heartbeat(), h, guess)).await;
            assert_eq!(code(h), Code::Unauthenticated);
        }
    });
    // The real worker was not told to stop: the job ends with its own result.
    let done = cluster.wait_job(&id, 300, |j| j["state"] != "running");
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    let mse = done["result"]["metrics"]["test.mse"].as_f64().unwrap();
    assert!(mse != 123.0 && mse > 0.0, "{done:#}");
    assert!(done["result"]["steps"].as_u64().unwrap() > 1, "{done:#}");
}

fn a_rendezvous_join_with_a_huge_world_is_refused_and_the_coordinator_still_serves(wire: Wire) {
    let cluster = Cluster::secured(1, wire);
    runtime().block_on(async {
        let mut rdv = RendezvousServiceClient::new(cluster.channel(&cluster.addr).await);
        for i in 0..200u32 {
            let join = pb::JoinRequest {
                session: format!("job-{i}/1"),
                rank: i,
                world: u32::MAX,
                peer_address: "127.0.0.1:9".into(),
                wait_ms: 0,
                token: String::new(),
            };
            let status = rdv.join(join).await.unwrap_err();
            assert!(
                matches!(status.code(), Code::InvalidArgument | Code::Unauthenticated),
                "{status:?}"
            );
        }
    });
    // Still alive and serving: a real job runs to the end.
    let dir = tempfile::tempdir().unwrap();
    let id = cluster.submit(&spec(dir.path(), "after", 1, 1));
    let done = cluster.wait_job(&id, 300, |j| {
        j["state"] != "queued" && j["state"] != "running" && j["state"] != "starting"
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
}

fn a_pre_joined_session_with_the_wrong_world_is_refused_and_the_real_job_succeeds(wire: Wire) {
    let cluster = Cluster::secured(2, wire);
    runtime().block_on(async {
        let mut rdv = RendezvousServiceClient::new(cluster.channel(&cluster.addr).await);
        // The session names are predictable (`job-1/1`); the tokens are not.
        for (world, token) in [(3, ""), (2, "guess"), (1, "")] {
            let join = pb::JoinRequest {
                session: "job-1/1".into(),
                rank: 0,
                world,
                peer_address: "127.0.0.1:9".into(),
                wait_ms: 0,
                token: token.into(),
            };
            let status = rdv.join(join).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let id = cluster.submit(&spec(dir.path(), "pair", 2, 2));
    assert_eq!(id, "job-1", "the attacked session is this job's");
    let done = cluster.wait_job(&id, 300, |j| {
        !matches!(j["state"].as_str(), Some("queued" | "starting" | "running"))
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
}

fn a_forged_peer_connection_is_refused_and_the_job_finishes(wire: Wire) {
    let cluster = Cluster::secured(2, wire);
    let dir = tempfile::tempdir().unwrap();
    let id = cluster.submit(&spec(dir.path(), "ring", 2, 30));
    let running = cluster.wait_job(&id, 120, |j| {
        j["state"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 0
    });
    // Rank 1 accepts the link from rank 0; the attacker dials rank 1's peer port as rank 0.
    let rank1 = running["workers"][1].as_str().unwrap();
    let workers = cluster.json(&["workers"]);
    let peer = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == rank1)
        .unwrap()["peer_address"]
        .as_str()
        .unwrap()
        .to_string();
    runtime().block_on(async {
        let mut client = PeerServiceClient::new(cluster.channel(&peer).await);
        for token in ["", "0123456789abcdef0123456789abcdef"] {
            let frames = vec![
                pb::PeerFrame {
                    body: Some(pb::peer_frame::Body::Hello(pb::Hello {
                        rank: 0,
                        world: 2,
                        session: format!("{id}/1"),
                        token: token.into(),
                    })),
                },
                pb::PeerFrame {
                    body: Some(pb::peer_frame::Body::Abort(pb::Abort {
                        rank: 0,
                        reason: "forged abort".into(),
                    })),
                },
            ];
            let status = client
                .link(tokio_stream::iter(frames))
                .await
                .expect_err("a link without the session token is refused");
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        }
    });
    let done = cluster.wait_job(&id, 300, |j| j["state"] != "running");
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    assert!(!cluster.logs().contains("forged abort"));
}

fn a_worker_without_the_cluster_secret_cannot_start(wire: Wire) {
    let cluster = Cluster::secured(0, wire);
    let out = ringtrain()
        .args([
            "worker",
            "--coordinator",
            &cluster.addr,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(worker_tls(&cluster))
        .env_remove("RINGTRAIN_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster secret"), "{err}");
    // A secret that is too short, or a secret file others can read, is refused before anything
    // is sent.
    let short = ringtrain()
        .args(["worker", "--coordinator", &cluster.addr])
        .args(worker_tls(&cluster))
        .env("RINGTRAIN_CLUSTER_SECRET", "short")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(
        !short.status.success()
            && err.contains("RINGTRAIN_CLUSTER_SECRET")
            && err.contains("at least 16"),
        "{err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let open = cluster.dir.path().join("open-secret");
        std::fs::write(&open, SECRET).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = ringtrain()
            .args([
                "worker",
                "--coordinator",
                &cluster.addr,
                "--cluster-secret-file",
            ])
            .arg(&open)
            .args(worker_tls(&cluster))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    }
}

fn a_job_is_cancelled_only_by_its_owner_or_an_admin(wire: Wire) {
    let cluster = Cluster::secured(1, wire);
    let dir = tempfile::tempdir().unwrap();
    // Long enough to be still active when cancelled, however loaded the machine is.
    let alice = cluster.submit(&spec(dir.path(), "alices", 1, 1000));
    let bob_flags = cluster.client_flags_as("bob");
    let bob_submit = cluster.cli_with(
        &[
            "submit",
            spec(dir.path(), "bobs", 1, 1000).to_str().unwrap(),
            "--output",
            "json",
        ],
        &bob_flags,
    );
    assert!(bob_submit.status.success(), "{bob_submit:?}");
    let bob: serde_json::Value = serde_json::from_slice(&bob_submit.stdout).unwrap();
    let bob = bob["id"].as_str().unwrap().to_string();
    // The owner is the token's user name, shown to every client; the token never is.
    let job = cluster.json(&["status", &alice]);
    assert_eq!(job["owner"], "alice", "{job:#}");
    assert_eq!(cluster.json(&["status", &bob])["owner"], "bob");
    let text = cluster.cli_ok(&["status", &alice]);
    assert!(
        text.contains("owner: alice") && !text.contains(USERS[0].1),
        "{text}"
    );
    // Bob cannot cancel Alice's job, nor Alice Bob's: PERMISSION_DENIED, nothing changes.
    let out = cluster.cli_with(&["cancel", &alice], &bob_flags);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("PermissionDenied")
            && err.contains("bob may not cancel")
            && err.contains("owner alice"),
        "{err}"
    );
    let out = cluster.cli(&["cancel", &bob]);
    assert!(!out.status.success(), "{out:?}");
    runtime().block_on(async {
        let mut jobs = JobServiceClient::new(cluster.channel(&cluster.addr).await);
        let cancel = pb::CancelJobRequest {
            job_id: alice.clone(),
            reason: "not yours".into(),
        };
        let bearer = format!("Bearer {}", USERS[1].1);
        let r = jobs
            .cancel_job(with(cancel, auth::AUTHORIZATION_HEADER, &bearer))
            .await;
        assert_eq!(code(r), Code::PermissionDenied);
    });
    for id in [&alice, &bob] {
        let state = cluster.json(&["status", id])["state"].clone();
        assert!(
            matches!(state.as_str(), Some("queued" | "starting" | "running")),
            "{id}: {state}"
        );
    }
    // The owner may cancel their own job; a user with the admin role may cancel anyone's.
    cluster.cli_ok(&["cancel", &alice]);
    let ops = cluster.cli_with(&["cancel", &bob], &cluster.client_flags_as("ops"));
    assert!(ops.status.success(), "{ops:?}");
    for id in [&alice, &bob] {
        assert_eq!(cluster.json(&["status", id])["state"], "cancelled");
    }
}
