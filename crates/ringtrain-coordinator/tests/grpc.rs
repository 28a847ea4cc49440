//! The coordinator's gRPC services end to end: a real server on 127.0.0.1:0 driven by generated
//! tonic clients, some of them acting as fake workers (register, long-poll heartbeats, progress
//! and result reports). No test relies on timing thresholds: waits poll for a condition with a
//! generous deadline.

use ringtrain_coordinator::{Coordinator, CoordinatorConfig, RunningCoordinator};
use ringtrain_proto::v1::cluster_service_client::ClusterServiceClient;
use ringtrain_proto::v1::job_service_client::JobServiceClient;
use ringtrain_proto::v1::report_result_request::Outcome;
use ringtrain_proto::v1::*;
use std::path::Path;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// Deadline of every wait for a condition (far above what any step needs).
const PATIENCE: Duration = Duration::from_secs(30);

fn spec(data: u32) -> String {
    format!(
        r#"
name = "tiny"
seed = 1

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
batch_size = {batch}
optimizer = {{ kind = "adam", lr = 0.01 }}

[parallel]
data = {data}

[checkpoint]
dir = "runs/tiny"
"#,
        batch = 4 * data
    )
}

async fn start(dir: &Path, lease_ms: u64) -> RunningCoordinator {
    let mut config = CoordinatorConfig::new("127.0.0.1:0".parse().unwrap(), dir.join("state.db"));
    config.lease = Duration::from_millis(lease_ms);
    config.heartbeat_wait = Duration::from_millis(200);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    Coordinator::start(config)
        .await
        .expect("coordinator starts")
}

struct Clients {
    jobs: JobServiceClient<Channel>,
    cluster: ClusterServiceClient<Channel>,
    /// Credential of every fake worker registered through these clients.
    creds: std::collections::HashMap<String, String>,
}

/// A worker call carrying `worker`'s credential (empty when it never registered here).
fn as_worker<T>(c: &Clients, worker: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(cred) = c.creds.get(worker) {
        request.metadata_mut().insert(
            ringtrain_proto::auth::WORKER_CREDENTIAL_HEADER,
            cred.parse().unwrap(),
        );
    }
    request
}

async fn clients(c: &RunningCoordinator) -> Clients {
    let url = format!("http://{}", c.grpc_addr());
    Clients {
        jobs: JobServiceClient::connect(url.clone()).await.unwrap(),
        cluster: ClusterServiceClient::connect(url).await.unwrap(),
        creds: Default::default(),
    }
}

async fn submit(c: &mut Clients, data: u32) -> Job {
    c.jobs
        .submit_job(SubmitJobRequest {
            spec: spec(data),
            format: SpecFormat::Toml as i32,
            base_dir: "/data".into(),
            origin: "tiny.toml".into(),
        })
        .await
        .expect("submitted")
        .into_inner()
        .job
        .expect("job")
}

async fn get(c: &mut Clients, id: &str) -> Job {
    c.jobs
        .get_job(GetJobRequest { job_id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn register(c: &mut Clients, port: u16) -> String {
    let resp = c
        .cluster
        .register_worker(RegisterWorkerRequest {
            protocol_version: ProtocolVersion::Current as u32,
            version: "0.1.0".into(),
            name: format!("fake-{port}"),
            peer_address: format!("127.0.0.1:{port}"),
            metrics_address: String::new(),
            resources: Some(Resources {
                threads: 1,
                gpus: 0,
                memory_bytes: 0,
            }),
        })
        .await
        .expect("registered")
        .into_inner();
    assert!(
        resp.credential.len() >= 32,
        "a credential of 128 bits or more"
    );
    c.creds.insert(resp.worker_id.clone(), resp.credential);
    resp.worker_id
}

async fn heartbeat(c: &mut Clients, worker: &str, running: &[(&str, u32)]) -> HeartbeatResponse {
    let request = as_worker(
        c,
        worker,
        HeartbeatRequest {
            worker_id: worker.into(),
            running: running
                .iter()
                .map(|(job, rank)| RunningRank {
                    job_id: job.to_string(),
                    attempt: 1,
                    rank: *rank,
                })
                .collect(),
        },
    );
    c.cluster
        .heartbeat(request)
        .await
        .expect("heartbeat")
        .into_inner()
}

/// Heartbeats (long polls) until an assignment arrives.
async fn assignment(c: &mut Clients, worker: &str) -> Assignment {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = heartbeat(c, worker, &[]).await;
        if let Some(a) = r.start.into_iter().next() {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no assignment for {worker}"
        );
    }
}

async fn progress(
    c: &mut Clients,
    worker: &str,
    a: &Assignment,
    phase: RankPhase,
    step: u64,
) -> ReportProgressResponse {
    let request = as_worker(
        c,
        worker,
        ReportProgressRequest {
            worker_id: worker.into(),
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: a.rank,
            phase: phase as i32,
            step,
            total_steps: 10,
            epoch: 0,
            epochs: 1,
            loss: 0.5 + a.rank as f64,
            lr: 0.01,
            samples_per_sec: 100.0,
            compute_seconds: 0.01,
            comm_seconds: 0.002,
            val_loss: f64::NAN,
            logs: vec![LogLine {
                seq: 0,
                at_ms: 0,
                rank: 0,
                level: LogLevel::Info as i32,
                message: format!("rank {} at step {step}", a.rank),
            }],
        },
    );
    c.cluster
        .report_progress(request)
        .await
        .expect("progress")
        .into_inner()
}

async fn result(c: &mut Clients, worker: &str, a: &Assignment, outcome: Outcome) {
    let request = as_worker(
        c,
        worker,
        ReportResultRequest {
            worker_id: worker.into(),
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: a.rank,
            outcome: Some(outcome),
        },
    );
    c.cluster
        .report_result(request)
        .await
        .expect("result accepted");
}

fn success(rank: u32) -> Outcome {
    Outcome::Success(JobResult {
        metrics: if rank == 0 {
            [("test.mse".to_string(), 0.125)].into_iter().collect()
        } else {
            Default::default()
        },
        report_json: if rank == 0 {
            "{\"history\":[]}".into()
        } else {
            String::new()
        },
        checkpoint_dir: "/data/runs/tiny".into(),
        steps: 10,
        stop_reason: "completed".into(),
        samples_per_sec: 200.0,
    })
}

async fn wait_state(c: &mut Clients, id: &str, state: JobState) -> Job {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job = get(c, id).await;
        if job.state == state as i32 {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never reached {state:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_text(c: &RunningCoordinator) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(c.metrics_addr().unwrap())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_string(&mut out),
    )
    .await
    .expect("the metrics endpoint answers within 10 s")
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_assign_progress_result_succeeds_with_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let job = submit(&mut c, 2).await;
    assert_eq!(job.id, "job-1");
    assert_eq!(job.name, "tiny");
    assert_eq!(job.world, 2);
    assert_eq!(job.state, JobState::Queued as i32);

    let mut watch = c
        .jobs
        .clone()
        .watch_job(WatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let w0 = register(&mut c, 41_000).await;
    let w1 = register(&mut c, 41_001).await;

    let a0 = assignment(&mut c, &w0).await;
    let a1 = assignment(&mut c, &w1).await;
    assert_eq!((a0.rank, a1.rank), (0, 1));
    assert_eq!(a0.world, 2);
    assert_eq!(a0.session, "job-1/1");
    assert_eq!(a0.rendezvous, "");
    assert_eq!(a0.workers, vec![w0.clone(), w1.clone()]);
    assert_eq!(a0.spec, spec(2));
    assert_eq!(a0.base_dir, "/data");
    assert_eq!(get(&mut c, &job.id).await.state, JobState::Starting as i32);

    heartbeat(&mut c, &w0, &[(&job.id, 0)]).await;
    progress(&mut c, &w0, &a0, RankPhase::Starting, 0).await;
    progress(&mut c, &w0, &a0, RankPhase::Training, 1).await;
    assert_eq!(get(&mut c, &job.id).await.state, JobState::Starting as i32);
    let ack = progress(&mut c, &w1, &a1, RankPhase::Training, 1).await;
    assert!(!ack.stop);
    let running = get(&mut c, &job.id).await;
    assert_eq!(running.state, JobState::Running as i32);
    let p = running.progress.expect("progress");
    assert_eq!(p.ranks.len(), 2);
    assert_eq!(p.samples_per_sec, 200.0);
    assert_eq!(p.loss, 1.0);

    result(&mut c, &w1, &a1, success(1)).await;
    result(&mut c, &w0, &a0, success(0)).await;
    let done = get(&mut c, &job.id).await;
    assert_eq!(done.state, JobState::Succeeded as i32);
    let r = done.result.expect("result");
    assert_eq!(r.metrics["test.mse"], 0.125);
    assert_eq!(r.report_json, "{\"history\":[]}");
    let states: Vec<i32> = done.history.iter().map(|h| h.state).collect();
    assert_eq!(
        states,
        [
            JobState::Queued as i32,
            JobState::Starting as i32,
            JobState::Running as i32,
            JobState::Succeeded as i32
        ]
    );

    // The watch stream: snapshot first, then the state changes, ending after Succeeded.
    let mut kinds = Vec::new();
    let mut seen_states = Vec::new();
    while let Some(ev) = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("stream ends")
    {
        let ev = ev.unwrap();
        if ev.kind == job_event::Kind::State as i32 {
            seen_states.push(ev.job.as_ref().unwrap().state);
        }
        kinds.push(ev.kind);
    }
    assert_eq!(kinds[0], job_event::Kind::Snapshot as i32);
    assert_eq!(
        seen_states,
        [
            JobState::Starting as i32,
            JobState::Running as i32,
            JobState::Succeeded as i32
        ]
    );
    assert!(kinds.contains(&(job_event::Kind::Progress as i32)));
    assert!(kinds.contains(&(job_event::Kind::Log as i32)));

    // Logs: numbered from 1, workers' lines with their rank.
    let logs = c
        .jobs
        .get_job_logs(GetJobLogsRequest {
            job_id: job.id.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    assert_eq!(
        logs.iter().map(|l| l.seq).collect::<Vec<_>>(),
        (1..=logs.len() as u64).collect::<Vec<_>>()
    );
    assert!(
        logs.iter()
            .any(|l| l.rank == 1 && l.message == "rank 1 at step 1")
    );

    // Workers: idle again once their heartbeats no longer list the job.
    heartbeat(&mut c, &w0, &[]).await;
    heartbeat(&mut c, &w1, &[]).await;
    let workers = c
        .cluster
        .list_workers(ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.state == WorkerState::Idle as i32));

    let text = metrics_text(&coord).await;
    for needle in [
        "ringtrain_coordinator_jobs{state=\"succeeded\"} 1",
        "ringtrain_coordinator_jobs{state=\"queued\"} 0",
        "ringtrain_coordinator_workers{state=\"idle\"} 2",
        "ringtrain_coordinator_workers{state=\"lost\"} 0",
        "ringtrain_coordinator_jobs_submitted_total 1",
        "ringtrain_coordinator_queue_wait_seconds_count 1",
        "ringtrain_coordinator_rpc_duration_seconds_bucket{method=\"SubmitJob\",le=",
        "ringtrain_coordinator_rpc_duration_seconds_count{method=\"Heartbeat\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_ranks_and_frees_the_workers_once_they_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let w = register(&mut c, 42_000).await;
    let job = submit(&mut c, 1).await;
    let a = assignment(&mut c, &w).await;
    heartbeat(&mut c, &w, &[(&job.id, 0)]).await;
    progress(&mut c, &w, &a, RankPhase::Training, 1).await;

    let cancelled = c
        .jobs
        .cancel_job(CancelJobRequest {
            job_id: job.id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, JobState::Cancelled as i32);
    assert_eq!(cancelled.reason, "changed my mind");

    let hb = heartbeat(&mut c, &w, &[(&job.id, 0)]).await;
    assert_eq!(hb.stop.len(), 1);
    assert_eq!(hb.stop[0].job_id, job.id);
    let ack = progress(&mut c, &w, &a, RankPhase::Training, 2).await;
    assert!(ack.stop);

    // Still running it: a new job must wait.
    let next = submit(&mut c, 1).await;
    heartbeat(&mut c, &w, &[(&job.id, 0)]).await;
    assert_eq!(get(&mut c, &next.id).await.state, JobState::Queued as i32);
    // Stopped: the new job gets the worker.
    let a2 = assignment(&mut c, &w).await;
    assert_eq!(a2.job_id, next.id);

    // Cancelling a cancelled job returns it; an unknown job is NOT_FOUND.
    let again = c
        .jobs
        .cancel_job(CancelJobRequest {
            job_id: job.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.reason, "changed my mind");
    let err = c
        .jobs
        .cancel_job(CancelJobRequest {
            job_id: "job-404".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_fails_the_job_naming_the_rank_worker_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 1_000).await;
    let mut c = clients(&coord).await;
    let w0 = register(&mut c, 43_000).await;
    let w1 = register(&mut c, 43_001).await;
    let job = submit(&mut c, 2).await;
    assignment(&mut c, &w0).await;
    assignment(&mut c, &w1).await;
    heartbeat(&mut c, &w1, &[(&job.id, 1)]).await;
    // Worker 0 keeps heartbeating, worker 1 falls silent.
    let hb = {
        let mut c0 = clients(&coord).await;
        c0.creds = c.creds.clone();
        let id = job.id.clone();
        let w0 = w0.clone();
        tokio::spawn(async move {
            loop {
                heartbeat(&mut c0, &w0, &[(&id, 0)]).await;
            }
        })
    };
    let failed = wait_state(&mut c, &job.id, JobState::Failed).await;
    hb.abort();
    assert!(
        failed
            .reason
            .starts_with("rank 1 (worker w-2, 127.0.0.1:43001) lost: no heartbeat for"),
        "{}",
        failed.reason
    );
    let request = as_worker(
        &c,
        &w1,
        HeartbeatRequest {
            worker_id: w1.clone(),
            running: vec![],
        },
    );
    let err = c.cluster.heartbeat(request).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_bigger_than_the_cluster_waits_with_its_reason_and_two_jobs_share_disjoint_workers() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let ws = [
        register(&mut c, 44_000).await,
        register(&mut c, 44_001).await,
    ];
    let big = submit(&mut c, 3).await;
    assert_eq!(big.state, JobState::Queued as i32);
    assert_eq!(big.reason, "needs 3 workers, 2 of 2 alive are idle");
    assert!(big.workers.is_empty());

    let a = submit(&mut c, 1).await;
    let b = submit(&mut c, 1).await;
    let ja = get(&mut c, &a.id).await;
    let jb = get(&mut c, &b.id).await;
    assert_eq!(ja.state, JobState::Starting as i32);
    assert_eq!(jb.state, JobState::Starting as i32);
    assert_eq!(ja.workers, vec![ws[0].clone()]);
    assert_eq!(jb.workers, vec![ws[1].clone()]);
    assert_eq!(
        get(&mut c, &big.id).await.reason,
        "needs 3 workers, 0 of 2 alive are idle"
    );
    let listed = c
        .jobs
        .list_jobs(ListJobsRequest {
            states: vec![JobState::Queued as i32],
            ..ListJobsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, big.id);
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_documented_codes_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;

    // Invalid spec: INVALID_ARGUMENT naming the field.
    let err = c
        .jobs
        .submit_job(SubmitJobRequest {
            spec: spec(1).replace("lr = 0.01", "lr = -1.0"),
            format: SpecFormat::Toml as i32,
            base_dir: String::new(),
            origin: "bad.toml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("train.optimizer.lr"),
        "{}",
        err.message()
    );

    // Relative base_dir.
    let err = c
        .jobs
        .submit_job(SubmitJobRequest {
            spec: spec(1),
            format: 0,
            base_dir: "relative/dir".into(),
            origin: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Spec over 1 MiB: RESOURCE_EXHAUSTED.
    let err = c
        .jobs
        .submit_job(SubmitJobRequest {
            spec: format!("{}\n#{}", spec(1), "x".repeat(1 << 20)),
            format: 0,
            base_dir: String::new(),
            origin: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // A request over the 4 MiB decode limit is refused (tonic answers OUT_OF_RANGE).
    let err = c
        .jobs
        .submit_job(SubmitJobRequest {
            spec: "x".repeat(5 << 20),
            format: 0,
            base_dir: String::new(),
            origin: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );

    // Unknown job: NOT_FOUND.
    let err = c
        .jobs
        .get_job(GetJobRequest {
            job_id: "job-77".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Protocol version mismatch: FAILED_PRECONDITION naming both versions.
    let err = c
        .cluster
        .register_worker(RegisterWorkerRequest {
            protocol_version: 99,
            version: "9.9.9".into(),
            name: "future".into(),
            peer_address: "127.0.0.1:45000".into(),
            metrics_address: String::new(),
            resources: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("version 99") && err.message().contains("version 2"),
        "{}",
        err.message()
    );

    // Malformed peer address.
    let err = c
        .cluster
        .register_worker(RegisterWorkerRequest {
            protocol_version: ProtocolVersion::Current as u32,
            peer_address: "no-port".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A heartbeat without the worker's credential: UNAUTHENTICATED before anything else (a
    // worker that gets it registers again).
    let err = c
        .cluster
        .heartbeat(HeartbeatRequest {
            worker_id: "w-99".into(),
            running: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Still serving.
    let job = submit(&mut c, 1).await;
    assert_eq!(job.id, "job-1");
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rank_fails_the_job_and_the_other_rank_is_told_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let w0 = register(&mut c, 46_000).await;
    let w1 = register(&mut c, 46_001).await;
    let job = submit(&mut c, 2).await;
    let a0 = assignment(&mut c, &w0).await;
    let a1 = assignment(&mut c, &w1).await;
    progress(&mut c, &w0, &a0, RankPhase::Training, 1).await;
    result(
        &mut c,
        &w1,
        &a1,
        Outcome::Failure(RankFailure {
            message: "data.path: /data/series.csv not found".into(),
            blamed_rank: -1,
        }),
    )
    .await;
    let failed = get(&mut c, &job.id).await;
    assert_eq!(failed.state, JobState::Failed as i32);
    assert_eq!(
        failed.reason,
        "rank 1: data.path: /data/series.csv not found"
    );
    let hb = heartbeat(&mut c, &w0, &[(&job.id, 0)]).await;
    assert_eq!(hb.stop.len(), 1);
    assert!(
        hb.stop[0].reason.contains("rank 1"),
        "{}",
        hb.stop[0].reason
    );
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_lists_every_job_and_keeps_queued_ones_queued() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 1_000).await;
    let mut c = clients(&coord).await;
    let w = register(&mut c, 47_000).await;
    let running = submit(&mut c, 1).await;
    let queued = submit(&mut c, 2).await;
    let a = assignment(&mut c, &w).await;
    progress(&mut c, &w, &a, RankPhase::Training, 1).await;
    // Dropped without a graceful shutdown: only what was acknowledged is in the file.
    let creds = c.creds.clone();
    drop(c);
    drop(coord);

    let coord = start(dir.path(), 1_000).await;
    let mut c = clients(&coord).await;
    c.creds = creds;
    let jobs = c
        .jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(
        jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [queued.id.as_str(), running.id.as_str()]
    );
    assert_eq!(jobs[0].state, JobState::Queued as i32);
    // The worker never comes back: the running job fails truthfully within the lease.
    let failed = wait_state(&mut c, &running.id, JobState::Failed).await;
    assert!(
        failed
            .reason
            .starts_with("coordinator restarted; rank 0 (worker w-1, 127.0.0.1:47000)"),
        "{}",
        failed.reason
    );
    // The credential issued before the restart is still recognised: the worker is told it is
    // lost (NOT_FOUND, so it registers again), not that it is an impostor.
    let request = as_worker(
        &c,
        &w,
        HeartbeatRequest {
            worker_id: w.clone(),
            running: vec![],
        },
    );
    let err = c.cluster.heartbeat(request).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Ids continue.
    assert_eq!(register(&mut c, 47_001).await, "w-2");
    assert_eq!(submit(&mut c, 1).await.id, "job-3");
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_still_gets_the_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let job = submit(&mut c, 1).await;
    let mut watch = c
        .jobs
        .clone()
        .watch_job(WatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let w = register(&mut c, 48_000).await;
    let a = assignment(&mut c, &w).await;
    // Far more events (and bytes: 4 KiB log lines, ~16 MiB in all) than the watch channel and
    // every HTTP/2 buffer hold, while the watcher reads nothing.
    let produced = 2_000;
    for step in 0..produced {
        let request = as_worker(
            &c,
            &w,
            ReportProgressRequest {
                worker_id: w.clone(),
                job_id: a.job_id.clone(),
                attempt: 1,
                rank: 0,
                phase: RankPhase::Training as i32,
                step,
                logs: vec![LogLine {
                    message: format!("{step} {}", "x".repeat(4096)),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        c.cluster.report_progress(request).await.unwrap();
    }
    result(&mut c, &w, &a, success(0)).await;
    let mut last = None;
    let mut count = 0;
    while let Some(ev) = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("stream ends")
    {
        last = Some(ev.unwrap());
        count += 1;
    }
    let last = last.expect("events");
    assert_eq!(last.kind, job_event::Kind::State as i32);
    assert_eq!(last.job.unwrap().state, JobState::Succeeded as i32);
    // Progress and log events were dropped, state changes were not.
    assert!(
        count < 2 * produced,
        "{count} events: the watcher did not lag"
    );
    coord.shutdown().await.unwrap();
}

// ----- hardening: commit or roll back, retention, pagination, bounds -----

async fn start_with(dir: &Path, edit: impl FnOnce(&mut CoordinatorConfig)) -> RunningCoordinator {
    let mut config = CoordinatorConfig::new("127.0.0.1:0".parse().unwrap(), dir.join("state.db"));
    config.lease = Duration::from_millis(10_000);
    config.heartbeat_wait = Duration::from_millis(200);
    edit(&mut config);
    Coordinator::start(config)
        .await
        .expect("coordinator starts")
}

async fn list_ids(c: &mut Clients) -> Vec<String> {
    c.jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_commit_fails_leaves_no_trace_and_the_next_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let w = register(&mut c, 45101).await;

    // A submit whose commit fails: UNAVAILABLE, and the job exists nowhere.
    coord.fail_next_commits(1);
    let err = c
        .jobs
        .submit_job(SubmitJobRequest {
            spec: spec(1),
            format: SpecFormat::Toml as i32,
            base_dir: "/data".into(),
            origin: "tiny.toml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("injected commit failure"),
        "{}",
        err.message()
    );
    assert_eq!(list_ids(&mut c).await, Vec::<String>::new());
    let err = c
        .jobs
        .get_job(GetJobRequest {
            job_id: "job-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The idle worker is never given it: a held heartbeat ends without a command, twice.
    for _ in 0..2 {
        let r = heartbeat(&mut c, &w, &[]).await;
        assert!(r.start.is_empty() && r.stop.is_empty(), "{r:?}");
    }
    let metrics = metrics_text(&coord).await;
    for state in ["queued", "starting"] {
        assert!(
            metrics.contains(&format!(
                "ringtrain_coordinator_jobs{{state=\"{state}\"}} 0"
            )),
            "{metrics}"
        );
    }

    // The next submit is stored, listed and scheduled as usual.
    let job = submit(&mut c, 1).await;
    assert_eq!(list_ids(&mut c).await, vec![job.id.clone()]);
    let a = assignment(&mut c, &w).await;
    assert_eq!(a.job_id, job.id);

    // A result whose commit fails is not kept either: the job is still unfinished, and the
    // worker's retried report finishes it.
    progress(&mut c, &w, &a, RankPhase::Training, 5).await;
    coord.fail_next_commits(1);
    let request = as_worker(
        &c,
        &w,
        ReportResultRequest {
            worker_id: w.clone(),
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: a.rank,
            outcome: Some(success(0)),
        },
    );
    let err = c.cluster.report_result(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let now = get(&mut c, &job.id).await;
    assert!(
        now.state == JobState::Running as i32 && now.result.is_none(),
        "{now:?}"
    );
    result(&mut c, &w, &a, success(0)).await;
    let done = wait_state(&mut c, &job.id, JobState::Succeeded).await;
    assert_eq!(done.result.unwrap().metrics["test.mse"], 0.125);

    // A registration whose commit fails leaves no worker behind.
    coord.fail_next_commits(1);
    let err = c
        .cluster
        .register_worker(RegisterWorkerRequest {
            protocol_version: ProtocolVersion::Current as u32,
            name: "ghost".into(),
            peer_address: "127.0.0.1:45102".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let workers = c
        .cluster
        .list_workers(ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(
        workers.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        vec!["fake-45101"]
    );

    // What the clients saw is what a restarted coordinator reads back.
    coord.shutdown().await.unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    assert_eq!(list_ids(&mut c).await, vec![job.id.clone()]);
    coord.shutdown().await.unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_progress_reports_leave_the_database_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start_with(dir.path(), |config| {
        config.retention.log_lines_per_job = 200;
    })
    .await;
    let mut c = clients(&coord).await;
    let w = register(&mut c, 45111).await;
    let job = submit(&mut c, 1).await;
    let a = assignment(&mut c, &w).await;
    // 10,000 reports, each with a 2 KiB log line: 20 MB of log text without retention.
    let line = "x".repeat(2048);
    let mut last = ReportProgressResponse::default();
    for step in 1..=10_000u64 {
        let request = as_worker(
            &c,
            &w,
            ReportProgressRequest {
                worker_id: w.clone(),
                job_id: a.job_id.clone(),
                attempt: a.attempt,
                rank: 0,
                phase: RankPhase::Training as i32,
                step,
                total_steps: 10_000,
                epochs: 1,
                loss: 1.0 / step as f64,
                val_loss: f64::NAN,
                logs: vec![LogLine {
                    level: LogLevel::Info as i32,
                    message: format!("{step} {line}"),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        last = c
            .cluster
            .report_progress(request)
            .await
            .expect("progress")
            .into_inner();
    }
    assert!(!last.stop, "{last:?}");
    // The latest report is served (from memory) even though most were not written.
    let now = get(&mut c, &job.id).await;
    assert_eq!(now.progress.unwrap().step, 10_000);
    // The log keeps the newest 200 lines.
    let lines = c
        .jobs
        .get_job_logs(GetJobLogsRequest {
            job_id: job.id.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    assert_eq!(lines.len(), 200);
    assert!(
        lines.last().unwrap().message.starts_with("10000 "),
        "{:?}",
        &lines.last().unwrap().message[..20]
    );
    let db = dir.path().join("state.db");
    let total = file_len(&db) + file_len(&dir.path().join("state.db-wal"));
    assert!(
        total < 10 << 20,
        "state database {total} bytes after 20 MB of reports"
    );
    coord.shutdown().await.unwrap();
}

/// A spec of about `bytes` bytes (padded with a TOML comment).
fn padded_spec(bytes: usize) -> String {
    let base = spec(1);
    format!("{base}\n#{}\n", "p".repeat(bytes - base.len() - 3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_one_mebibyte_specs_list_in_pages_without_their_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let url = format!("http://{}", coord.grpc_addr());
    // A client with tonic's default 4 MiB decode limit: listings must fit it.
    let mut jobs = JobServiceClient::connect(url).await.unwrap();
    let text = padded_spec(ringtrain_coordinator::MAX_SPEC_BYTES - 16);
    let mut ids = Vec::new();
    for _ in 0..60 {
        let job = jobs
            .submit_job(SubmitJobRequest {
                spec: text.clone(),
                format: SpecFormat::Toml as i32,
                base_dir: "/data".into(),
                origin: "big.toml".into(),
            })
            .await
            .expect("submitted")
            .into_inner()
            .job
            .unwrap();
        ids.push(job.id);
    }
    ids.reverse(); // Listings are newest first.

    // One default page holds every job, without spec text.
    let page = jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .expect("listing fits the default message limit")
        .into_inner();
    assert_eq!(page.jobs.len(), 60);
    assert!(page.next_page_token.is_empty());
    assert!(page.jobs.iter().all(|j| j.spec.is_empty()));
    // GetJob still has the spec.
    let one = jobs
        .get_job(GetJobRequest {
            job_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.spec, text);

    // Pages of 7, followed by their tokens, list every job once, newest first.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = jobs
            .list_jobs(ListJobsRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 7);
        pages += 1;
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 9);
    assert_eq!(seen, ids);

    // Above the maximum page size, and a forged token: INVALID_ARGUMENT naming the field.
    let err = jobs
        .list_jobs(ListJobsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("page_size 5000"),
        "{}",
        err.message()
    );
    let err = jobs
        .list_jobs(ListJobsRequest {
            page_token: "\u{1b}[2J".repeat(1000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("page_token") && err.message().len() < 600,
        "{}",
        err.message()
    );
    assert!(!err.message().contains('\u{1b}'));
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_wire_sized_fields_are_bounded_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let reg = |name: String| RegisterWorkerRequest {
        protocol_version: ProtocolVersion::Current as u32,
        name,
        peer_address: "127.0.0.1:45121".into(),
        ..Default::default()
    };
    // Worker names: control characters and length.
    for name in ["evil\u{1b}]0;owned\u{7}".to_string(), "n".repeat(129)] {
        let err = c.cluster.register_worker(reg(name)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("name "), "{}", err.message());
        assert!(!err.message().contains('\u{1b}'));
    }
    // Job names: length (the spec already allows only [A-Za-z0-9._-]).
    let err = c
        .jobs
        .submit_job(SubmitJobRequest {
            spec: spec(1).replace(
                "name = \"tiny\"",
                &format!("name = \"{}\"", "j".repeat(300)),
            ),
            format: SpecFormat::Toml as i32,
            base_dir: "/data".into(),
            origin: "long.toml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("name = 300 characters: must be at most 128"),
        "{}",
        err.message()
    );
    assert!(list_ids(&mut c).await.is_empty());

    let w = register(&mut c, 45122).await;
    let job = submit(&mut c, 1).await;
    let a = assignment(&mut c, &w).await;
    // Too many running ranks in a heartbeat.
    let request = as_worker(
        &c,
        &w,
        HeartbeatRequest {
            worker_id: w.clone(),
            running: (0..10_000)
                .map(|i| RunningRank {
                    job_id: format!("job-{i}"),
                    attempt: 1,
                    rank: 0,
                })
                .collect(),
        },
    );
    let err = c.cluster.heartbeat(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().starts_with("running has 10000 entries"),
        "{}",
        err.message()
    );
    // Too many log lines in one progress report.
    let request = as_worker(
        &c,
        &w,
        ReportProgressRequest {
            worker_id: w.clone(),
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            phase: RankPhase::Training as i32,
            logs: vec![LogLine::default(); 5000],
            ..Default::default()
        },
    );
    let err = c.cluster.report_progress(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().starts_with("logs has 5000 entries"),
        "{}",
        err.message()
    );
    // Too many metrics in a result.
    let request = as_worker(
        &c,
        &w,
        ReportResultRequest {
            worker_id: w.clone(),
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: 0,
            outcome: Some(Outcome::Success(JobResult {
                metrics: (0..5000).map(|i| (format!("m{i}"), 1.0)).collect(),
                ..Default::default()
            })),
        },
    );
    let err = c.cluster.report_result(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().starts_with("success.metrics has 5000"),
        "{}",
        err.message()
    );
    // A huge job id is refused without being echoed whole.
    let err = c
        .jobs
        .get_job(GetJobRequest {
            job_id: "j".repeat(1 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().len() < 300, "{} bytes", err.message().len());
    // None of it reached the job, which still finishes normally.
    result(&mut c, &w, &a, success(0)).await;
    wait_state(&mut c, &job.id, JobState::Succeeded).await;
    coord.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_list_in_pages_in_registration_order() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path(), 10_000).await;
    let mut c = clients(&coord).await;
    let mut ids = Vec::new();
    for port in 0..11 {
        ids.push(register(&mut c, 9000 + port).await);
    }
    // The default page holds them all.
    let page = c
        .cluster
        .list_workers(ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.next_page_token.is_empty());
    assert_eq!(
        page.workers.into_iter().map(|w| w.id).collect::<Vec<_>>(),
        ids
    );
    // Pages of 4, followed by their tokens, list every worker once, in registration order.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .cluster
            .list_workers(ListWorkersRequest {
                page_size: 4,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.workers.len() <= 4);
        pages += 1;
        seen.extend(page.workers.into_iter().map(|w| w.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
    // Above the maximum page size, and a forged token: INVALID_ARGUMENT naming the field.
    let err = c
        .cluster
        .list_workers(ListWorkersRequest {
            page_size: 1001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("page_size 1001"),
        "{}",
        err.message()
    );
    let err = c
        .cluster
        .list_workers(ListWorkersRequest {
            page_token: "before-3".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_token"), "{}", err.message());
}
