//! gRPC adapters: `JobService` for clients and `ClusterService` for workers
//! (`proto/ringtrain/v1/{job,cluster}.proto`). Each handler validates its request, turns it into
//! one state-machine event through [`Shared::apply`] (durable before the answer) and converts
//! the result to wire types. Every handler first checks the caller's credential (see `auth`):
//! a refused call never reaches the machine. Every call runs in a `coordinator.rpc{method}` span
//! and is timed in `ringtrain_coordinator_rpc_duration_seconds{method}`.

use crate::clock::{ms, stopped};
use crate::config::MAX_SPEC_BYTES;
use crate::convert::{
    assignment_to_proto, job_to_proto, level_from_proto, log_to_proto, state_from_proto,
    worker_to_proto,
};
use crate::limits::{
    MAX_ADDRESS_BYTES, MAX_ID_BYTES, MAX_LOG_LINES_PER_REPORT, MAX_METRIC_NAME_BYTES, MAX_METRICS,
    MAX_PATH_BYTES, MAX_REASON_BYTES, MAX_REPORT_JSON_BYTES, MAX_RUNNING_RANKS, MAX_STATE_FILTERS,
    check_count, check_len, check_name, cut, snippet,
};
use crate::machine::{
    Elastic, JobResultData, JobState, NewJob, NewWorker, ProgressReport, RankOutcome, RankPhase,
    RankReport, Resources, ResultReport, RunningRank,
};
use crate::shared::{Shared, machine_status};
use ringtrain_core::{JobId, WorkerId};
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::cluster_service_server::ClusterService;
use ringtrain_proto::v1::job_service_server::JobService;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// Most log lines one GetJobLogs answer carries.
const MAX_LOG_LINES: u32 = 10_000;
/// Jobs per ListJobs page when the request says 0.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most jobs per ListJobs page (larger requests are refused).
const MAX_PAGE_SIZE: u32 = 1000;
/// A ListJobs page ends before the job that would take it over this many bytes (half a
/// client's default 4 MiB decode limit, leaving room for framing).
const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;
/// ListJobs page tokens are `"before-N"`: list jobs numbered below N.
const PAGE_TOKEN_PREFIX: &str = "before-";
/// ListWorkers page tokens are `"after-N"`: list workers numbered above N.
const WORKER_PAGE_TOKEN_PREFIX: &str = "after-";

/// The page size a List request asked for: 0 means the default, above the maximum is refused.
fn page_size(requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n > MAX_PAGE_SIZE => Err(invalid(format!(
            "page_size {n} is above the maximum of {MAX_PAGE_SIZE}; follow next_page_token for more"
        ))),
        n => Ok(n as usize),
    }
}

/// Times and traces one RPC.
async fn rpc<T>(
    shared: &Shared,
    method: &'static str,
    body: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let _timer = shared.metrics.time(method);
    let span = tracing::info_span!("coordinator.rpc", method);
    let out = body.instrument(span.clone()).await;
    if let Err(status) = &out {
        span.in_scope(|| {
            tracing::debug!(code = ?status.code(), message = %status.message(), "rpc refused");
        });
    }
    out
}

fn invalid(message: impl Into<String>) -> Status {
    to_status(ErrorKind::InvalidArgument, message)
}

/// The client-facing job service.
#[derive(Clone)]
pub(crate) struct JobApi {
    shared: Arc<Shared>,
}

impl JobApi {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        JobApi { shared }
    }

    fn job(&self, id: &str) -> Result<pb::Job, Status> {
        check_len("job_id", id, MAX_ID_BYTES)?;
        let core = self.shared.read()?;
        core.machine
            .job(&JobId::new(id))
            .map(|j| job_to_proto(j, true))
            .ok_or_else(|| {
                machine_status(&crate::machine::MachineError::UnknownJob(JobId::new(id)))
            })
    }
}

/// A request's `base_dir`: an absolute directory, or empty for the coordinator's working
/// directory, resolved now so that every worker gets an explicit absolute directory (jobs and
/// sweeps alike).
pub(crate) fn resolve_base_dir(base_dir: String) -> Result<String, Status> {
    if base_dir.is_empty() {
        Ok(std::env::current_dir()
            .map_err(|e| {
                to_status(
                    ErrorKind::Internal,
                    format!("coordinator working directory: {e}"),
                )
            })?
            .display()
            .to_string())
    } else if Path::new(&base_dir).is_absolute() {
        Ok(base_dir)
    } else {
        Err(invalid(format!(
            "base_dir must be an absolute directory, got {base_dir:?}"
        )))
    }
}

/// Checks and parses a submitted spec into the machine's new-job form; `roots` is the
/// coordinator's sandbox (see [`CoordinatorConfig::roots`](crate::CoordinatorConfig)).
fn new_job(
    req: pb::SubmitJobRequest,
    roots: &ringtrain_spec::Roots,
    owner: String,
) -> Result<NewJob, Status> {
    if req.spec.len() > MAX_SPEC_BYTES {
        // Not in the shared status table (which has no size category); the proto documents
        // RESOURCE_EXHAUSTED for oversized requests.
        return Err(Status::resource_exhausted(format!(
            "job spec is {} bytes; the limit is {MAX_SPEC_BYTES} bytes",
            req.spec.len()
        )));
    }
    let format = match pb::SpecFormat::try_from(req.format) {
        Ok(pb::SpecFormat::Unspecified | pb::SpecFormat::Toml) => ringtrain_spec::SpecFormat::Toml,
        Ok(pb::SpecFormat::Json) => ringtrain_spec::SpecFormat::Json,
        Err(_) => return Err(invalid(format!("unknown spec format {}", req.format))),
    };
    let base_dir = resolve_base_dir(req.base_dir)?;
    check_len("base_dir", &base_dir, MAX_PATH_BYTES)?;
    check_len("origin", &req.origin, MAX_PATH_BYTES)?;
    let origin = if req.origin.is_empty() {
        "<submitted>".to_string()
    } else {
        req.origin
    };
    let spec = ringtrain_spec::parse_str(&req.spec, format, &origin, "job")
        .map_err(|e| invalid(e.to_string()))?;
    ringtrain_spec::sandbox::check(&spec, Path::new(&base_dir), roots)
        .map_err(|e| invalid(format!("job sandbox: {e}")))?;
    // Spec validation already bounds names (128 characters of [A-Za-z0-9._-]); the RPC checks
    // again with the same rule it applies to worker names, since the name is shown to every
    // client and becomes a directory name on workers.
    check_name("name", &spec.name, true)?;
    let world = spec
        .parallel
        .data
        .checked_mul(spec.parallel.pipeline)
        .and_then(|w| u32::try_from(w).ok())
        .filter(|w| *w >= 1)
        .ok_or_else(|| {
            invalid(format!(
                "parallel.data × parallel.pipeline = {} × {} is not a usable number of workers",
                spec.parallel.data, spec.parallel.pipeline
            ))
        })?;
    let elastic = Elastic::of(&spec);
    Ok(NewJob {
        name: spec.name,
        spec: req.spec,
        format,
        base_dir,
        world,
        max_restarts: spec.checkpoint.max_restarts,
        owner,
        elastic,
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        rpc(&self.shared, "SubmitJob", async {
            let user = self.shared.auth.client(request.metadata())?;
            let owner = user.clone().unwrap_or_default();
            let new = new_job(request.into_inner(), &self.shared.config.roots, owner)?;
            let name = new.name.clone();
            let id = self.shared.apply(|m, now| Ok(m.submit(new, now)))?;
            self.shared.metrics.submitted();
            tracing::info!(job = %id, name = %name, user = user.as_deref().unwrap_or("-"), "job submitted");
            Ok(Response::new(pb::SubmitJobResponse {
                job: Some(self.job(id.as_str())?),
            }))
        })
        .await
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        rpc(&self.shared, "GetJob", async {
            self.shared.auth.client(request.metadata())?;
            Ok(Response::new(self.job(&request.into_inner().job_id)?))
        })
        .await
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        rpc(&self.shared, "ListJobs", async {
            self.shared.auth.client(request.metadata())?;
            let req = request.into_inner();
            check_count("states", req.states.len(), MAX_STATE_FILTERS)?;
            let mut states = Vec::new();
            for s in &req.states {
                match pb::JobState::try_from(*s).ok().and_then(state_from_proto) {
                    Some(st) => states.push(st),
                    None => return Err(invalid(format!("unknown job state {s}"))),
                }
            }
            let page_size = page_size(req.page_size)?;
            // The token is the number of the last job of the previous page: this page starts
            // with the next older job.
            let before = if req.page_token.is_empty() {
                u64::MAX
            } else {
                req.page_token
                    .strip_prefix(PAGE_TOKEN_PREFIX)
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        invalid(format!(
                            "page_token {} was not issued by this coordinator; send the next_page_token of the previous answer, or none for the first page",
                            snippet(&req.page_token)
                        ))
                    })?
            };
            let core = self.shared.read()?;
            let mut jobs = Vec::new();
            let mut bytes = 0usize;
            let mut last_num = 0;
            let mut next_page_token = String::new();
            for j in core
                .machine
                .jobs()
                .rev()
                .filter(|j| j.num < before)
                .filter(|j| states.is_empty() || states.contains(&j.state))
            {
                let mut job = job_to_proto(j, false);
                if let Some(r) = job.result.as_mut() {
                    r.report_json.clear();
                }
                let len = prost::Message::encoded_len(&job);
                if jobs.len() == page_size || (!jobs.is_empty() && bytes + len > MAX_PAGE_BYTES) {
                    next_page_token = format!("{PAGE_TOKEN_PREFIX}{last_num}");
                    break;
                }
                bytes += len;
                last_num = j.num;
                jobs.push(job);
            }
            Ok(Response::new(pb::ListJobsResponse {
                jobs,
                next_page_token,
            }))
        })
        .await
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        rpc(&self.shared, "CancelJob", async {
            let user = self.shared.auth.client(request.metadata())?;
            let req = request.into_inner();
            check_len("job_id", &req.job_id, MAX_ID_BYTES)?;
            check_len("reason", &req.reason, MAX_REASON_BYTES)?;
            let id = JobId::new(req.job_id);
            // The owner never changes, so checking it before the event cannot race.
            let owner = self
                .shared
                .read()?
                .machine
                .job(&id)
                .map(|j| j.owner.clone());
            if let Some(owner) = owner {
                self.shared.auth.may_cancel(user.as_deref(), &owner, &id)?;
            }
            self.shared
                .apply(|m, now| m.cancel(&id, &req.reason, now))?;
            Ok(Response::new(self.job(id.as_str())?))
        })
        .await
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        rpc(&self.shared, "WatchJob", async {
            self.shared.auth.client(request.metadata())?;
            let id = request.into_inner().job_id;
            check_len("job_id", &id, MAX_ID_BYTES)?;
            let id = JobId::new(id);
            let (snapshot, rx) = self.shared.subscribe(&id)?;
            let (tx, out) = tokio::sync::mpsc::channel(64);
            let shared = self.shared.clone();
            tokio::spawn(
                watch(shared, id.clone(), snapshot, rx, tx)
                    .instrument(tracing::debug_span!("coordinator.watch", job = %id)),
            );
            let stream: EventStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(out));
            Ok(Response::new(stream))
        })
        .await
    }

    async fn get_job_logs(
        &self,
        request: Request<pb::GetJobLogsRequest>,
    ) -> Result<Response<pb::GetJobLogsResponse>, Status> {
        rpc(&self.shared, "GetJobLogs", async {
            self.shared.auth.client(request.metadata())?;
            let req = request.into_inner();
            check_len("job_id", &req.job_id, MAX_ID_BYTES)?;
            let id = JobId::new(req.job_id);
            let limit = if req.limit == 0 {
                1000
            } else {
                req.limit.min(MAX_LOG_LINES)
            };
            let core = self.shared.read()?;
            let job = core.machine.job(&id).ok_or_else(|| {
                machine_status(&crate::machine::MachineError::UnknownJob(id.clone()))
            })?;
            let lines = core
                .store
                .logs(job, req.after_seq, limit)
                .map_err(|e| to_status(ErrorKind::Unavailable, e.to_string()))?;
            Ok(Response::new(pb::GetJobLogsResponse {
                lines: lines.iter().map(log_to_proto).collect(),
            }))
        })
        .await
    }
}

/// Feeds one WatchJob stream: the snapshot, then events until the job is final. A watcher that
/// lags behind the channel re-reads the job, so it never misses a state change or the end.
async fn watch(
    shared: Arc<Shared>,
    id: JobId,
    snapshot: pb::Job,
    rx: Option<tokio::sync::broadcast::Receiver<pb::JobEvent>>,
    tx: tokio::sync::mpsc::Sender<Result<pb::JobEvent, Status>>,
) {
    use pb::job_event::Kind;
    let mut last_state = snapshot.state;
    let event = |kind: Kind, job: pb::Job| pb::JobEvent {
        kind: kind as i32,
        job: Some(job),
        log: None,
    };
    if tx.send(Ok(event(Kind::Snapshot, snapshot))).await.is_err() {
        return;
    }
    let Some(mut rx) = rx else {
        return; // Final already: the snapshot was everything.
    };
    let is_final = |s: i32| {
        pb::JobState::try_from(s)
            .ok()
            .and_then(state_from_proto)
            .is_some_and(JobState::is_final)
    };
    let mut shutdown = shared.shutdown.clone();
    loop {
        let received = tokio::select! {
            r = rx.recv() => r,
            _ = tx.closed() => return,
            _ = stopped(&mut shutdown) => {
                let _ = tx.send(Err(Status::unavailable("coordinator shutting down"))).await;
                return;
            }
        };
        let (ev, closed) = match received {
            Ok(ev) => (ev, false),
            Err(e) => {
                // The channel overflowed (progress events were missed) or closed (the job is
                // final and its final event may have been among the missed): re-read the job.
                tracing::debug!(job = %id, error = %e, "watcher catches up from the job itself");
                // The guard is dropped inside the closure, before any await.
                let read = shared
                    .read()
                    .map(|core| core.machine.job(&id).map(|j| job_to_proto(j, false)));
                let job = match read {
                    Ok(job) => job,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let Some(job) = job else { return };
                let kind = if job.state != last_state || is_final(job.state) {
                    Kind::State
                } else {
                    Kind::Progress
                };
                (event(kind, job), matches!(e, RecvError::Closed))
            }
        };
        let state = ev.job.as_ref().map_or(last_state, |j| j.state);
        // Log and progress events of the final event carry the final job too; the stream ends
        // with the State event (which comes last, or with a catch-up re-read).
        let done = is_final(state) && ev.kind == Kind::State as i32;
        last_state = state;
        if tx.send(Ok(ev)).await.is_err() || done || closed {
            return;
        }
    }
}

/// The worker-facing cluster service.
#[derive(Clone)]
pub(crate) struct ClusterApi {
    shared: Arc<Shared>,
}

impl ClusterApi {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ClusterApi { shared }
    }
}

/// Checks a "host:port" address.
fn check_address(field: &str, addr: &str, required: bool) -> Result<(), Status> {
    check_len(field, addr, MAX_ADDRESS_BYTES)?;
    if addr.is_empty() {
        return if required {
            Err(invalid(format!("{field} is empty; expected \"host:port\"")))
        } else {
            Ok(())
        };
    }
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !host.is_empty()
            && !host.contains(|c: char| c.is_whitespace() || c.is_control())
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} {} is not \"host:port\" with a port in 1..65535",
            snippet(addr)
        )))
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        rpc(&self.shared, "RegisterWorker", async {
            self.shared.auth.register(request.metadata())?;
            let req = request.into_inner();
            check_name("name", &req.name, false)?;
            check_name("version", &req.version, false)?;
            let ours = pb::ProtocolVersion::Current as u32;
            if req.protocol_version != ours {
                return Err(to_status(
                    ErrorKind::FailedPrecondition,
                    format!(
                        "worker {:?} speaks protocol version {}, this coordinator speaks version {ours}",
                        req.name, req.protocol_version
                    ),
                ));
            }
            check_address("peer_address", &req.peer_address, true)?;
            check_address("metrics_address", &req.metrics_address, false)?;
            let res = req.resources.unwrap_or_default();
            let new = NewWorker {
                name: req.name,
                peer_address: req.peer_address,
                metrics_address: req.metrics_address,
                version: req.version,
                resources: Resources {
                    threads: res.threads,
                    gpus: res.gpus,
                    memory_bytes: res.memory_bytes,
                },
            };
            let (name, peer) = (new.name.clone(), new.peer_address.clone());
            let id = self.shared.apply(|m, now| Ok(m.register(new, now)))?;
            tracing::info!(worker = %id, name = %name, peer = %peer, "worker registered");
            Ok(Response::new(pb::RegisterWorkerResponse {
                credential: self.shared.auth.worker_credential(&id),
                worker_id: id.to_string(),
                lease_ms: ms(self.shared.config.lease) as u64,
                heartbeat_wait_ms: ms(self.shared.config.heartbeat_wait) as u64,
                coordinator_version: env!("CARGO_PKG_VERSION").to_string(),
            }))
        })
        .await
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        rpc(&self.shared, "Heartbeat", async {
            self.shared
                .auth
                .worker(request.metadata(), &request.get_ref().worker_id)?;
            let req = request.into_inner();
            check_len("worker_id", &req.worker_id, MAX_ID_BYTES)?;
            check_count("running", req.running.len(), MAX_RUNNING_RANKS)?;
            for r in &req.running {
                check_len("running.job_id", &r.job_id, MAX_ID_BYTES)?;
            }
            let worker = WorkerId::new(req.worker_id);
            let running = req
                .running
                .into_iter()
                .map(|r| RunningRank {
                    job: JobId::new(r.job_id),
                    attempt: r.attempt,
                    rank: r.rank,
                })
                .collect();
            self.shared
                .apply(|m, now| m.heartbeat(&worker, running, now))?;
            let waker = self.shared.waker(&worker);
            let mut cmds = self.shared.apply(|m, now| m.take_commands(&worker, now))?;
            if cmds.start.is_empty() && cmds.stop.is_empty() {
                let mut shutdown = self.shared.shutdown.clone();
                tokio::select! {
                    _ = waker.notified() => {}
                    _ = tokio::time::sleep(self.shared.config.heartbeat_wait) => {}
                    _ = stopped(&mut shutdown) => {}
                }
                cmds = self.shared.apply(|m, now| m.take_commands(&worker, now))?;
            }
            if !cmds.start.is_empty() || !cmds.stop.is_empty() {
                tracing::info!(
                    worker = %worker,
                    start = ?cmds.start.iter().map(|a| format!("{} rank {}", a.job, a.rank)).collect::<Vec<_>>(),
                    stop = ?cmds.stop.iter().map(|s| s.job.to_string()).collect::<Vec<_>>(),
                    "commands delivered"
                );
            }
            Ok(Response::new(pb::HeartbeatResponse {
                start: cmds
                    .start
                    .iter()
                    .map(|a| pb::Assignment {
                        session_token: self.shared.auth.session_token(&a.session),
                        ..assignment_to_proto(a)
                    })
                    .collect(),
                stop: cmds
                    .stop
                    .into_iter()
                    .map(|s| pb::StopJob {
                        job_id: s.job.to_string(),
                        reason: s.reason,
                        abort: s.abort,
                    })
                    .collect(),
                lease_ms: ms(self.shared.config.lease) as u64,
            }))
        })
        .await
    }

    async fn report_progress(
        &self,
        request: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        rpc(&self.shared, "ReportProgress", async {
            self.shared
                .auth
                .worker(request.metadata(), &request.get_ref().worker_id)?;
            let req = request.into_inner();
            let phase = match pb::RankPhase::try_from(req.phase) {
                Ok(pb::RankPhase::Unspecified) => None,
                Ok(pb::RankPhase::Starting) => Some(RankPhase::Starting),
                Ok(pb::RankPhase::Training) => Some(RankPhase::Training),
                Ok(pb::RankPhase::Evaluating) => Some(RankPhase::Evaluating),
                Err(_) => return Err(invalid(format!("unknown rank phase {}", req.phase))),
            };
            check_len("worker_id", &req.worker_id, MAX_ID_BYTES)?;
            check_len("job_id", &req.job_id, MAX_ID_BYTES)?;
            check_count("logs", req.logs.len(), MAX_LOG_LINES_PER_REPORT)?;
            let report = ProgressReport {
                worker: WorkerId::new(req.worker_id),
                job: JobId::new(req.job_id),
                attempt: req.attempt,
                rank: req.rank,
                phase,
                report: RankReport {
                    step: req.step,
                    total_steps: req.total_steps,
                    epoch: req.epoch,
                    epochs: req.epochs,
                    loss: req.loss,
                    lr: req.lr,
                    samples_per_sec: req.samples_per_sec,
                    compute_seconds: req.compute_seconds,
                    comm_seconds: req.comm_seconds,
                    val_loss: req.val_loss,
                    reported_ms: 0,
                },
                logs: req
                    .logs
                    .into_iter()
                    .map(|l| (level_from_proto(l.level), cut(l.message)))
                    .collect(),
            };
            let ack = self.shared.apply(|m, now| m.progress(report, now))?;
            Ok(Response::new(pb::ReportProgressResponse {
                stop: ack.stop.is_some(),
                reason: ack.stop.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn report_result(
        &self,
        request: Request<pb::ReportResultRequest>,
    ) -> Result<Response<pb::ReportResultResponse>, Status> {
        rpc(&self.shared, "ReportResult", async {
            use pb::report_result_request::Outcome;
            self.shared
                .auth
                .worker(request.metadata(), &request.get_ref().worker_id)?;
            let req = request.into_inner();
            check_len("worker_id", &req.worker_id, MAX_ID_BYTES)?;
            check_len("job_id", &req.job_id, MAX_ID_BYTES)?;
            if let Some(Outcome::Success(r)) = &req.outcome {
                check_count("success.metrics", r.metrics.len(), MAX_METRICS)?;
                for name in r.metrics.keys() {
                    check_len("success.metrics key", name, MAX_METRIC_NAME_BYTES)?;
                }
                check_len("success.report_json", &r.report_json, MAX_REPORT_JSON_BYTES)?;
                check_len("success.checkpoint_dir", &r.checkpoint_dir, MAX_PATH_BYTES)?;
                check_len("success.stop_reason", &r.stop_reason, MAX_REASON_BYTES)?;
            }
            let mut blamed = None;
            let outcome = match req.outcome {
                Some(Outcome::Success(r)) => RankOutcome::Succeeded(Some(JobResultData {
                    metrics: r.metrics.into_iter().collect(),
                    report_json: r.report_json,
                    checkpoint_dir: r.checkpoint_dir,
                    steps: r.steps,
                    stop_reason: r.stop_reason,
                    samples_per_sec: r.samples_per_sec,
                })),
                Some(Outcome::Failure(f)) => {
                    blamed = u32::try_from(f.blamed_rank).ok();
                    RankOutcome::Failed(cut(f.message))
                }
                Some(Outcome::Stopped(why)) => RankOutcome::Stopped(cut(why)),
                None => {
                    return Err(invalid(
                        "outcome is missing: send success, failure or stopped",
                    ));
                }
            };
            let report = ResultReport {
                worker: WorkerId::new(req.worker_id),
                job: JobId::new(req.job_id),
                attempt: req.attempt,
                rank: req.rank,
                outcome,
                blamed,
            };
            self.shared.apply(|m, now| m.result(report, now))?;
            Ok(Response::new(pb::ReportResultResponse {}))
        })
        .await
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        rpc(&self.shared, "ListWorkers", async {
            // A client call (`ringtrain workers`), so a client token, not a worker credential.
            self.shared.auth.client(request.metadata())?;
            let req = request.into_inner();
            let page_size = page_size(req.page_size)?;
            let after = if req.page_token.is_empty() {
                None
            } else {
                Some(
                    req.page_token
                        .strip_prefix(WORKER_PAGE_TOKEN_PREFIX)
                        .and_then(|n| n.parse::<u64>().ok())
                        .ok_or_else(|| {
                            invalid(format!(
                                "page_token {} was not issued by this coordinator; send the next_page_token of the previous answer, or none for the first page",
                                snippet(&req.page_token)
                            ))
                        })?,
                )
            };
            let core = self.shared.read()?;
            let mut workers = Vec::new();
            let mut bytes = 0usize;
            let mut last_num = 0;
            let mut next_page_token = String::new();
            for w in core
                .machine
                .workers()
                .filter(|w| after.is_none_or(|a| w.num > a))
            {
                let info = worker_to_proto(w);
                let len = prost::Message::encoded_len(&info);
                if workers.len() == page_size
                    || (!workers.is_empty() && bytes + len > MAX_PAGE_BYTES)
                {
                    next_page_token = format!("{WORKER_PAGE_TOKEN_PREFIX}{last_num}");
                    break;
                }
                bytes += len;
                last_num = w.num;
                workers.push(info);
            }
            Ok(Response::new(pb::ListWorkersResponse {
                workers,
                next_page_token,
            }))
        })
        .await
    }
}
