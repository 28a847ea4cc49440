//! Workers against a scripted stand-in for the coordinator (the cluster service and the
//! rendezvous on one address, as the real coordinator serves them): registration, assignments,
//! a two-rank job over the gRPC ring whose parameters match one process on the same spec, result
//! and progress reports, timelines and metrics, a dataset missing on the workers, a stop, a
//! forgotten worker registering again, and a refused protocol version.

use burn::prelude::*;
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use ringtrain_proto::v1::report_result_request::Outcome;
use ringtrain_spec::{SpecFormat, parse_str};
use ringtrain_train::{Checkpoint, Silent, TrainOptions, train};
use ringtrain_worker::{RunningWorker, Worker, WorkerConfig, WorkerError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

/// What the fake coordinator saw and what it will say.
#[derive(Default)]
struct State {
    next_id: u32,
    registrations: Vec<pb::RegisterWorkerRequest>,
    /// Assignments waiting for a worker's next heartbeat.
    start: HashMap<String, Vec<pb::Assignment>>,
    /// Workers whose next heartbeat gets NOT_FOUND.
    forget: Vec<String>,
    /// Jobs whose progress reports are answered with `stop`.
    stop_jobs: Vec<String>,
    progress: Vec<pb::ReportProgressRequest>,
    results: Vec<pb::ReportResultRequest>,
    /// Running lists of heartbeats, by worker.
    running: HashMap<String, Vec<Vec<pb::RunningRank>>>,
    refuse: bool,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

#[tonic::async_trait]
impl ClusterService for Fake {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let mut s = self.state.lock().unwrap();
        if s.refuse {
            return Err(Status::failed_precondition(
                "protocol version 1 (worker) differs from 2 (coordinator)",
            ));
        }
        s.next_id += 1;
        let id = format!("w-{}", s.next_id);
        s.registrations.push(request.into_inner());
        self.changed.notify_waiters();
        Ok(Response::new(pb::RegisterWorkerResponse {
            credential: format!("credential-of-{id}"),
            worker_id: id,
            lease_ms: 10_000,
            heartbeat_wait_ms: 200,
            coordinator_version: "fake".into(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        // Every later call carries the credential registration issued.
        let presented = request
            .metadata()
            .get(ringtrain_proto::auth::WORKER_CREDENTIAL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let req = request.into_inner();
        if presented.as_deref() != Some(format!("credential-of-{}", req.worker_id).as_str()) {
            return Err(Status::unauthenticated(format!(
                "worker {} presented {presented:?}",
                req.worker_id
            )));
        }
        {
            let mut s = self.state.lock().unwrap();
            if let Some(i) = s.forget.iter().position(|w| *w == req.worker_id) {
                s.forget.remove(i);
                return Err(Status::not_found(format!(
                    "unknown worker {}",
                    req.worker_id
                )));
            }
            s.running
                .entry(req.worker_id.clone())
                .or_default()
                .push(req.running.clone());
        }
        self.changed.notify_waiters();
        // Hold the poll briefly unless there is something to deliver.
        for _ in 0..4 {
            let start = self
                .state
                .lock()
                .unwrap()
                .start
                .remove(&req.worker_id)
                .unwrap_or_default();
            if !start.is_empty() {
                return Ok(Response::new(pb::HeartbeatResponse {
                    start,
                    stop: Vec::new(),
                    lease_ms: 10_000,
                }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(pb::HeartbeatResponse {
            start: Vec::new(),
            stop: Vec::new(),
            lease_ms: 10_000,
        }))
    }

    async fn report_progress(
        &self,
        request: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        let req = request.into_inner();
        let mut s = self.state.lock().unwrap();
        let stop = s.stop_jobs.contains(&req.job_id);
        s.progress.push(req);
        self.changed.notify_waiters();
        Ok(Response::new(pb::ReportProgressResponse {
            stop,
            reason: if stop {
                "cancelled by test".into()
            } else {
                String::new()
            },
        }))
    }

    async fn report_result(
        &self,
        request: Request<pb::ReportResultRequest>,
    ) -> Result<Response<pb::ReportResultResponse>, Status> {
        self.state
            .lock()
            .unwrap()
            .results
            .push(request.into_inner());
        self.changed.notify_waiters();
        Ok(Response::new(pb::ReportResultResponse {}))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        Ok(Response::new(pb::ListWorkersResponse::default()))
    }
}

impl Fake {
    /// Serves the fake and a rendezvous on an ephemeral port; returns its URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder()
            .add_service(ClusterServiceServer::new(self.clone()))
            .add_service(ringtrain_collective::rendezvous::RendezvousServer::new().into_service());
        tokio::spawn(async move {
            router
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        format!("http://{addr}")
    }

    /// Waits (at most 120 s) until `done` holds for the state.
    async fn wait(&self, what: &str, done: impl Fn(&State) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let notified = self.changed.notified();
                if done(&self.state.lock().unwrap()) {
                    return;
                }
                // Also poll: a change may land between the check and the wait.
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting for {what}");
    }
}

fn config(url: &str, timeline: Option<PathBuf>) -> WorkerConfig {
    WorkerConfig {
        coordinator: url.to_string(),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise_host: None,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        threads: 1,
        name: "test".into(),
        timeline_dir: timeline,
        roots: ringtrain_spec::Roots::default(),
        tls: None,
        cluster_secret: None,
        limits: ringtrain_spec::LimitsSpec::default(),
    }
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A small forecasting job; `batch` is the global batch.
fn spec_text(data_path: &str, ckpt: &Path, data: u32, batch: usize, epochs: u32) -> String {
    format!(
        r#"name = "fake"
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
[parallel]
data = {data}
[checkpoint]
dir = "{}"
"#,
        ckpt.display()
    )
}

fn assignment(
    job: &str,
    rank: u32,
    world: u32,
    spec: &str,
    workers: &[String],
    base_dir: &Path,
) -> pb::Assignment {
    pb::Assignment {
        job_id: job.into(),
        attempt: 1,
        rank,
        world,
        spec: spec.into(),
        spec_format: pb::SpecFormat::Toml as i32,
        base_dir: base_dir.display().to_string(),
        workers: workers.to_vec(),
        session: format!("{job}/1"),
        rendezvous: String::new(),
        collective_timeout_ms: 20_000,
        checksum_every: 5,
        session_token: String::new(),
    }
}

async fn start_workers(
    fake: &Fake,
    url: &str,
    n: usize,
    timeline: Option<PathBuf>,
) -> Vec<RunningWorker> {
    let mut workers = Vec::new();
    for _ in 0..n {
        workers.push(Worker::start(config(url, timeline.clone())).await.unwrap());
    }
    fake.wait("registrations", |s| s.registrations.len() >= n)
        .await;
    workers
}

fn assign(fake: &Fake, workers: &[RunningWorker], job: &str, spec: &str, base_dir: &Path) {
    let ids: Vec<String> = workers.iter().map(|w| w.worker_id().to_string()).collect();
    let mut s = fake.state.lock().unwrap();
    for (rank, id) in ids.iter().enumerate() {
        s.start.insert(
            id.clone(),
            vec![assignment(
                job,
                rank as u32,
                ids.len() as u32,
                spec,
                &ids,
                base_dir,
            )],
        );
    }
}

fn results_of<'a>(s: &'a State, job: &str) -> Vec<&'a pb::ReportResultRequest> {
    let mut r: Vec<_> = s.results.iter().filter(|r| r.job_id == job).collect();
    r.sort_by_key(|r| r.rank);
    r
}

async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out))
        .await
        .expect("the metrics endpoint answers within 10 s")
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_train_a_job_like_one_process() {
    let fake = Fake::default();
    let url = fake.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let timeline = dir.path().join("timeline");
    let workers = start_workers(&fake, &url, 2, Some(timeline.clone())).await;
    // Registered addresses are the bound ones.
    {
        let s = fake.state.lock().unwrap();
        for w in &workers {
            let peer = w.peer_addr().to_string();
            assert!(
                s.registrations.iter().any(|r| r.peer_address == peer),
                "{peer}"
            );
            assert_ne!(w.peer_addr().port(), 0);
        }
    }
    let data = examples().join("data/seasonal.csv").display().to_string();
    let spec = spec_text(&data, Path::new("runs/dp"), 2, 16, 2);
    assign(&fake, &workers, "job-1", &spec, dir.path());
    fake.wait("two results", |s| results_of(s, "job-1").len() == 2)
        .await;

    let (result0, rank1) = {
        let s = fake.state.lock().unwrap();
        let r = results_of(&s, "job-1");
        let Some(Outcome::Success(r0)) = r[0].outcome.clone() else {
            panic!("rank 0: {:?}", r[0].outcome)
        };
        (r0, r[1].outcome.clone())
    };
    let Some(Outcome::Success(r1)) = rank1 else {
        panic!("rank 1: {rank1:?}")
    };
    assert!(r1.metrics.is_empty(), "only rank 0 reports metrics");
    assert_eq!(r1.steps, result0.steps);
    assert_eq!(result0.stop_reason, "completed");
    assert!(result0.metrics["test.mse"] > 0.0, "{:?}", result0.metrics);
    assert!(result0.metrics.contains_key("val.loss"));
    assert!(result0.samples_per_sec > 0.0);
    // The checkpoint directory resolved against the job's base directory and made unique to
    // the job (`<checkpoint.dir>/<job id>`), written by rank 0.
    let ckpt = dir.path().join("runs/dp/job-1");
    assert_eq!(Path::new(&result0.checkpoint_dir), ckpt);
    let metrics_json = std::fs::read_to_string(ckpt.join("metrics.json")).unwrap();
    assert_eq!(metrics_json, result0.report_json);
    let dp = Checkpoint::load(&ckpt.join("latest.ckpt")).unwrap().params;

    // One process on the same spec (same global batch, same sample order).
    let single_dir = tempfile::tempdir().unwrap();
    let single_spec = parse_str(
        &spec_text(&data, single_dir.path(), 2, 16, 2),
        SpecFormat::Toml,
        "<test>",
        "t",
    )
    .unwrap();
    let opts = TrainOptions {
        base_dir: examples(),
        resume: None,
        halt_after_steps: None,
        stop: None,
        device: Device::flex(),
        run_id: None,
        commit: None,
        attempt: 1,
    };
    let single = tokio::task::spawn_blocking(move || train(&single_spec, &opts, &mut Silent))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(single.steps, result0.steps);
    let diff = dp
        .iter()
        .zip(&single.params)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= 1e-5,
        "2 workers vs one process: max abs diff {diff}"
    );

    // Progress: STARTING, then TRAINING with steps, compute and communication times, and logs.
    {
        let s = fake.state.lock().unwrap();
        let p: Vec<_> = s.progress.iter().filter(|p| p.job_id == "job-1").collect();
        assert!(p.iter().any(|p| p.phase == pb::RankPhase::Starting as i32));
        let training: Vec<_> = p
            .iter()
            .filter(|p| p.phase == pb::RankPhase::Training as i32 && p.step > 0)
            .collect();
        assert!(!training.is_empty());
        assert!(
            training
                .iter()
                .all(|p| p.compute_seconds > 0.0 && p.total_steps == single.steps)
        );
        assert!(
            p.iter()
                .flat_map(|p| &p.logs)
                .any(|l| l.message.starts_with("epoch 1:"))
        );
        // While running, heartbeats listed the rank.
        for w in &workers {
            let lists = &s.running[&w.worker_id().to_string()];
            assert!(lists.iter().any(|l| l.iter().any(|r| r.job_id == "job-1")));
        }
    }

    // Timelines: one file per rank with compute and all-reduce phases.
    for rank in 0..2 {
        let path = timeline.join(format!("job-1-rank{rank}.trace.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        for phase in ["compute", "allreduce", "eval", "checksum", "broadcast"] {
            assert!(
                events
                    .iter()
                    .any(|e| e["name"] == phase && e["pid"] == rank),
                "rank {rank}: no {phase}"
            );
        }
    }

    // Metrics endpoint: the worker series with job and rank labels.
    let text = scrape(workers[1].metrics_addr().unwrap()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for name in ringtrain_worker::metrics::SERIES {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "ringtrain_worker_steps_total{{job_id=\"job-1\",rank=\"1\"}} {}",
            single.steps
        )),
        "{text}"
    );
    assert!(text.contains("ringtrain_worker_busy 0"), "{text}");

    for w in workers {
        w.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_dataset_fails_the_ranks_with_its_path() {
    let fake = Fake::default();
    let url = fake.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let workers = start_workers(&fake, &url, 2, None).await;
    let missing = dir.path().join("nowhere.csv").display().to_string();
    let spec = spec_text(&missing, &dir.path().join("ckpt"), 2, 16, 1);
    assign(&fake, &workers, "job-2", &spec, dir.path());
    fake.wait("two results", |s| results_of(s, "job-2").len() == 2)
        .await;
    {
        let s = fake.state.lock().unwrap();
        for (rank, r) in results_of(&s, "job-2").iter().enumerate() {
            let Some(Outcome::Failure(f)) = &r.outcome else {
                panic!("rank {rank}: {:?}", r.outcome)
            };
            assert!(
                f.message.starts_with(&format!("rank {rank}: ")),
                "{}",
                f.message
            );
            assert!(f.message.contains("nowhere.csv"), "{}", f.message);
        }
    }
    // Both workers are free again: a later heartbeat lists nothing.
    for w in &workers {
        let id = w.worker_id().to_string();
        fake.wait("an empty heartbeat", |s| {
            s.running[&id].last().is_some_and(Vec::is_empty)
        })
        .await;
    }
    for w in workers {
        w.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_answer_stops_every_rank_and_frees_the_workers() {
    let fake = Fake::default();
    let url = fake.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let workers = start_workers(&fake, &url, 2, None).await;
    let data = examples().join("data/seasonal.csv").display().to_string();
    let spec = spec_text(&data, &dir.path().join("ckpt"), 2, 4, 1000);
    assign(&fake, &workers, "job-3", &spec, dir.path());
    fake.wait("training progress", |s| {
        s.progress.iter().any(|p| p.job_id == "job-3" && p.step > 0)
    })
    .await;
    fake.state.lock().unwrap().stop_jobs.push("job-3".into());
    fake.wait("two results", |s| results_of(s, "job-3").len() == 2)
        .await;
    {
        let s = fake.state.lock().unwrap();
        for r in results_of(&s, "job-3") {
            assert!(
                matches!(&r.outcome, Some(Outcome::Stopped(_))),
                "rank {}: {:?}",
                r.rank,
                r.outcome
            );
        }
    }
    for w in workers {
        w.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_worker_registers_again() {
    let fake = Fake::default();
    let url = fake.serve().await;
    let workers = start_workers(&fake, &url, 1, None).await;
    let first = workers[0].worker_id().to_string();
    fake.state.lock().unwrap().forget.push(first.clone());
    fake.wait("a second registration", |s| s.registrations.len() == 2)
        .await;
    fake.wait("heartbeats under the new id", |s| {
        s.running.contains_key("w-2")
    })
    .await;
    assert_eq!(workers[0].worker_id().to_string(), "w-2");
    for w in workers {
        w.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_fails_the_start_with_the_reason() {
    let fake = Fake::default();
    fake.state.lock().unwrap().refuse = true;
    let url = fake.serve().await;
    let err = Worker::start(config(&url, None)).await.unwrap_err();
    assert!(
        matches!(&err, WorkerError::Refused { message, .. } if message.contains("protocol version")),
        "{err}"
    );
}
