//! One rank of one job, from its assignment to its one result report: parse the spec, form the
//! communicator through the job's rendezvous, train on a blocking thread (the async communicator
//! is driven through the runtime handle), report progress about once a second and at every epoch
//! end, shut the communicator down, and report success, failure or stopped.
//!
//! Stops requested by the coordinator (a heartbeat command or a progress answer) and by the
//! worker's own shutdown set the trainer's stop flag, which travels as a vote with the next
//! gradients, so every rank stops after the same step. A stop that says the attempt is over
//! for good (an abort: the job failed or restarts without this attempt) also fails the
//! communicator, so a rank waiting for a lost peer stops at once. Failures name this rank; collective
//! failures also name the peer they blame.
//!
//! A pipelined job (`parallel.pipeline = P > 1`) has `parallel.data × P` ranks on a grid: rank
//! `r = d · P + s` runs stage `s` of replica `d` ([`GridPlace`]) with
//! [`ringtrain_train::train_pipelined`], over two sub-communicators of the one world
//! communicator: its stage's replicas (the all-reduce of the stage's gradient slice) and its
//! replica's stages (activations, gradients, the per-step norm record, the gathers of the whole
//! parameters for checkpoints and evaluations). Each rank keeps only its stage's parameters and
//! optimizer state; rank 0 (stage 0 of replica 0) writes the usual full checkpoints and reports
//! the metrics, which the stages evaluate on the whole model. Failures name the stage too. The
//! all-reduce series of a pipelined rank count its slice among its stage's replicas.

use crate::control::{JobControl, StopCause};
use crate::group::{CommGroup, CommLink, GridPlace, blamed_rank};
use crate::metrics::{RankSeries, StageSeries};
use crate::shared::Shared;
use crate::timeline::{RankTimeline, rank_file};
use burn::prelude::Device;
use ringtrain_collective::{
    CollectiveError, CommConfig, Communicator, GrpcConfig, GrpcTransport, Transport,
};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::report_result_request::Outcome as PbOutcome;
use ringtrain_spec::{JobSpec, LimitsSpec, SpecFormat, parse_str};
use ringtrain_train::{
    Checkpoint, DistOptions, EpochRecord, EvalReport, Observer, PhaseSpan, PipelineError,
    PipelineStepStats, RunInfo, StepEvent, StopReason, TrainError, TrainOptions, TrainReport,
    train_distributed, train_pipelined,
};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Deadline of a progress report.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(5);
/// Deadline of one result report attempt, and how many attempts are made.
const RESULT_DEADLINE: Duration = Duration::from_secs(10);
const RESULT_ATTEMPTS: u32 = 5;
/// Progress is reported at least this often while a rank runs.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Log lines kept for the next report while the coordinator cannot be reached.
const MAX_PENDING_LOGS: usize = 1000;
/// Steps over which samples per second are measured.
const RATE_WINDOW: usize = 50;
/// Longest wait for the peers' goodbyes when shutting the communicator down.
const COMM_SHUTDOWN: Duration = Duration::from_secs(30);

/// How a rank ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Success(Box<pb::JobResult>),
    Failure {
        message: String,
        blamed: Option<u32>,
    },
    Stopped(String),
}

impl Outcome {
    pub(crate) fn failure(message: String, blamed: Option<u32>) -> Outcome {
        Outcome::Failure { message, blamed }
    }
}

/// Runs the rank and reports its result.
pub(crate) async fn run(shared: Arc<Shared>, a: pb::Assignment, control: Arc<JobControl>) {
    let started = Instant::now();
    let progress = Arc::new(Progress::new(&a));
    let (done_tx, done_rx) = watch::channel(false);
    let reporter = tokio::spawn(report_loop(
        shared.clone(),
        a.clone(),
        control.clone(),
        progress.clone(),
        done_rx,
    ));
    let outcome = execute(&shared, &a, &control, &progress).await;
    let _ = done_tx.send(true);
    let _ = reporter.await;
    match &outcome {
        Outcome::Success(r) => tracing::info!(
            steps = r.steps,
            stop = %r.stop_reason,
            seconds = started.elapsed().as_secs_f64(),
            "rank finished"
        ),
        Outcome::Failure { message, blamed } => {
            tracing::error!(blamed = ?blamed, "{message}");
        }
        Outcome::Stopped(reason) => tracing::info!(reason = %reason, "rank stopped"),
    }
    shared.close_route();
    report_result(&shared, &a, outcome).await;
    shared.finish(&control);
}

fn spec_format(a: &pb::Assignment) -> SpecFormat {
    match pb::SpecFormat::try_from(a.spec_format) {
        Ok(pb::SpecFormat::Json) => SpecFormat::Json,
        _ => SpecFormat::Toml,
    }
}

/// The parsed spec with its paths resolved against the job's base directory and
/// `checkpoint.dir` made unique to the job (`<checkpoint.dir>/<job id>`, so two jobs with the
/// same name never share or overwrite a run), and that base directory. The sandbox `roots` are
/// checked first, with symlinks resolved on this worker's disk, then the spec's budget against
/// the lower of its `[limits]` and the worker's own (`ceiling`), which become the spec's limits.
fn prepare(
    a: &pb::Assignment,
    roots: &ringtrain_spec::Roots,
    ceiling: &LimitsSpec,
) -> Result<(JobSpec, PathBuf), String> {
    let mut spec = parse_str(&a.spec, spec_format(a), &a.job_id, &a.job_id)
        .map_err(|e| format!("invalid spec: {e}"))?;
    if a.world == 0 || a.rank >= a.world {
        return Err(format!("rank {} is outside a world of {}", a.rank, a.world));
    }
    let grid = spec.parallel.data.checked_mul(spec.parallel.pipeline);
    if let Some(e) = spec.parallel.elastic {
        // An elastic job runs on whatever world the coordinator formed within its bounds.
        if !e.allows(spec.train.batch_size, a.world as usize) {
            return Err(format!(
                "the assignment has {} ranks, outside parallel.elastic.min..=max = {}..={} or \
                 not dividing train.batch_size = {}",
                a.world, e.min, e.max, spec.train.batch_size
            ));
        }
        spec.parallel.data = a.world as usize;
    } else if grid != Some(a.world as usize) {
        return Err(format!(
            "the assignment has {} ranks but parallel.data x parallel.pipeline = {} x {}",
            a.world, spec.parallel.data, spec.parallel.pipeline
        ));
    }
    let base = if a.base_dir.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(&a.base_dir)
    };
    ringtrain_spec::sandbox::check_with(&spec, &base, roots, &canonical_prefix)
        .map_err(|e| format!("refused by the worker's sandbox: {e}"))?;
    // Before anything is allocated for the job: a spec that fits the coordinator's defaults (or
    // raised its own limits) may still be too big for this machine. Failing the job here keeps
    // the worker alive; an allocation that fails later inside burn would abort the process.
    let limits = spec.limits.capped_by(ceiling);
    let over = ringtrain_spec::check_budget(&spec, &limits);
    if !over.is_empty() {
        let reasons: Vec<String> = over.iter().map(ToString::to_string).collect();
        return Err(format!(
            "refused by this worker's budget (the lower of the spec's [limits] and the worker's \
             --max-parameters / --max-memory-mb / --max-vocab): {}",
            reasons.join("; ")
        ));
    }
    spec.limits = limits;
    let id_ok = !a.job_id.is_empty()
        && a.job_id.len() <= 128
        && a.job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!(
            "job id {:?} cannot name a directory",
            ringtrain_spec::error::snippet(&a.job_id)
        ));
    }
    // The same rule as `ringtrain train`: relative paths resolve against the spec's directory.
    spec.resolve_paths(&base);
    spec.checkpoint.dir = spec.checkpoint.dir.join(&a.job_id);
    Ok((spec, base))
}

/// `path` with `.`/`..` folded, its longest existing prefix canonicalized (symlinks followed)
/// and the rest appended: a link inside a root that points outside resolves outside, while a
/// checkpoint directory that does not exist yet is still judged by where it will be created.
fn canonical_prefix(path: &Path) -> PathBuf {
    let path = ringtrain_spec::sandbox::normalize(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

fn stop_outcome(control: &JobControl, shared: &Shared) -> Outcome {
    match control.cause() {
        Some(StopCause::Shutdown) => Outcome::failure(
            format!(
                "rank {}: worker {} shut down before the job finished",
                control.rank,
                shared.worker_id()
            ),
            None,
        ),
        Some(StopCause::Coordinator(reason)) => Outcome::Stopped(reason),
        None => Outcome::Stopped("stopped together with the other ranks".into()),
    }
}

async fn execute(
    shared: &Arc<Shared>,
    a: &pb::Assignment,
    control: &Arc<JobControl>,
    progress: &Arc<Progress>,
) -> Outcome {
    let rank = a.rank;
    let (spec, base_dir) = match prepare(a, &shared.config.roots, &shared.config.limits) {
        Ok(p) => p,
        Err(message) => return Outcome::failure(format!("rank {rank}: {message}"), None),
    };
    // Where this rank sits on the grid of a pipelined job (`None`: plain data parallelism).
    let place = if spec.parallel.pipeline > 1 {
        match GridPlace::of(
            rank,
            spec.parallel.data as u32,
            spec.parallel.pipeline as u32,
        ) {
            Ok(p) => Some(p),
            Err(message) => return Outcome::failure(format!("rank {rank}: {message}"), None),
        }
    } else {
        None
    };
    let who = match place {
        Some(p) => format!("rank {rank} (stage {} of replica {})", p.stage, p.replica),
        None => format!("rank {rank}"),
    };
    progress.set_epochs(spec.train.epochs);
    let deadline = control.collective_timeout;
    let rendezvous = if a.rendezvous.is_empty() {
        shared.coordinator_host_port.clone()
    } else {
        a.rendezvous.clone()
    };
    let host = if shared.advertise_host.contains(':') && !shared.advertise_host.starts_with('[') {
        format!("[{}]", shared.advertise_host)
    } else {
        shared.advertise_host.clone()
    };
    let cfg = GrpcConfig {
        rank,
        world: a.world,
        listen: shared.peer_addr,
        advertise_host: Some(host),
        rendezvous: rendezvous.clone(),
        session: a.session.clone(),
        session_token: a.session_token.clone(),
        setup_timeout: deadline,
        tls: shared.config.tls.clone(),
    };
    let incoming = ReceiverStream::new(shared.open_route());
    let connected = tokio::select! {
        c = GrpcTransport::connect_incoming(cfg, shared.peer_addr, incoming) => c,
        () = control.wait_stopped() => return stop_outcome(control, shared),
    };
    let transport = match connected {
        Ok(t) => t,
        Err(e) => {
            return Outcome::failure(
                format!("{who}: forming the communicator (rendezvous {rendezvous}): {e}"),
                blamed_rank(&e),
            );
        }
    };
    let transport = Arc::new(transport);
    // An attempt that is over for good fails the communicator at once, so a collective call
    // waiting for a peer that is gone (cut off, stalled, dead) ends now, not at the deadline.
    let aborter = {
        let (transport, control) = (transport.clone(), control.clone());
        tokio::spawn(async move {
            control.wait_aborted().await;
            let reason = match control.cause() {
                Some(StopCause::Coordinator(reason)) => reason,
                _ => "the worker stopped the rank".into(),
            };
            transport.abort(&CollectiveError::PeerAborted { rank, reason });
        })
    };
    let comm = Communicator::new(
        transport,
        CommConfig {
            deadline,
            stall_after: (deadline / 2).min(Duration::from_secs(10)),
            fusion_bytes: usize::try_from(spec.parallel.fusion_bytes).unwrap_or(usize::MAX),
            ..CommConfig::default()
        },
    );
    tracing::info!(world = a.world, session = %a.session, "communicator formed");

    // A restarted attempt continues from the last checkpoint its job wrote (every rank reads
    // the same file: checkpoint.dir is shared); the first attempt, or a restart before any
    // checkpoint, starts over.
    let resume = if a.attempt > 1 {
        match Checkpoint::latest_of_run(&spec.checkpoint.dir, &a.job_id) {
            Ok(found) => found,
            Err(e) => {
                return Outcome::failure(
                    format!("{who}: resuming attempt {}: {e}", a.attempt),
                    None,
                );
            }
        }
    } else {
        None
    };
    match &resume {
        Some(path) => {
            tracing::info!(attempt = a.attempt, checkpoint = %path.display(), "resuming from the job's latest checkpoint")
        }
        None if a.attempt > 1 => tracing::info!(
            attempt = a.attempt,
            "no checkpoint of this job yet: starting over"
        ),
        None => {}
    }
    let opts = TrainOptions {
        base_dir,
        resume,
        halt_after_steps: None,
        stop: Some(control.stop.clone()),
        device: Device::flex(),
        run_id: Some(a.job_id.clone()),
        commit: spec
            .parallel
            .elastic
            .is_some()
            .then(|| shared.commit.clone()),
        attempt: a.attempt,
    };
    let dist = DistOptions {
        checksum_every: a.checksum_every,
    };
    let handle = tokio::runtime::Handle::current();
    let span = tracing::Span::current();
    let parts = ObserverParts {
        job: a.job_id.clone(),
        rank,
        world: a.world,
        progress: progress.clone(),
        series: shared.metrics.rank(&a.job_id, rank),
        stage: place.map(|p| shared.metrics.stage(&a.job_id, rank, p.stage)),
        timeline: shared
            .config
            .timeline_dir
            .as_ref()
            .map(|_| RankTimeline::new(rank, &format!("rank {rank} ({})", shared.worker_id()))),
    };
    let joined = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let mut observer = RankObserver::new(parts);
        match place {
            None => {
                let mut group = CommGroup::new(comm, handle);
                let result = train_distributed(&spec, &opts, &mut observer, &mut group, &dist);
                (result, group.into_communicator(), observer.timeline)
            }
            Some(place) => {
                let result = pipelined(&spec, &opts, &mut observer, &comm, handle, place, &dist);
                (result, comm, observer.timeline)
            }
        }
    })
    .await;
    aborter.abort();
    let (result, comm, timeline) = match joined {
        Ok(j) => j,
        Err(e) => {
            return Outcome::failure(format!("{who}: training panicked: {e}"), None);
        }
    };
    if let (Some(dir), Some(t)) = (&shared.config.timeline_dir, &timeline) {
        write_timeline(dir, &a.job_id, rank, t);
    }
    if result.as_ref().is_err_and(is_link_failure) {
        // The transport failed: dropping it closes every link at once.
        drop(comm);
    } else {
        // Also after an error every rank saw (a checksum mismatch), a clean goodbye keeps peers
        // from seeing this rank as lost; bounded in case a peer is stuck or gone.
        match tokio::time::timeout(COMM_SHUTDOWN.min(deadline), comm.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "communicator shutdown"),
            Err(_) => tracing::warn!("communicator shutdown timed out"),
        }
    }
    match result {
        // The step is part of the reason so a job's log shows that every rank stopped after
        // the same step (the stop flag is voted with the gradients).
        Ok(report) if report.stop == StopReason::Interrupted => match stop_outcome(control, shared)
        {
            Outcome::Stopped(reason) => {
                Outcome::Stopped(format!("{reason} (stopped after step {})", report.steps))
            }
            other => other,
        },
        Ok(report) => {
            // The job is done: its commit will not be asked for again.
            shared.commit.clear();
            Outcome::Success(Box::new(job_result(&report, rank == 0)))
        }
        Err(e)
            if is_link_failure(&e)
                && matches!(control.cause(), Some(StopCause::Coordinator(_))) =>
        {
            // The job was already stopped (e.g. another rank failed): not this rank's failure.
            stop_outcome(control, shared)
        }
        Err(e) => {
            let blamed = match &e {
                TrainError::Collective { source, .. } => source.blamed_rank.map(|r| r as u32),
                TrainError::Pipeline(p) => match p.as_ref() {
                    PipelineError::Link { source, .. } => source.blamed_rank.map(|r| r as u32),
                    _ => None,
                },
                _ => None,
            };
            Outcome::failure(format!("{who}: {e}"), blamed)
        }
    }
}

/// Whether `e` is a failure of the transport (a collective call or a transfer between stages):
/// the communicator is then broken and dropped rather than shut down.
fn is_link_failure(e: &TrainError) -> bool {
    match e {
        TrainError::Collective { .. } => true,
        TrainError::Pipeline(p) => matches!(p.as_ref(), PipelineError::Link { .. }),
        _ => false,
    }
}

/// Runs one grid cell of a pipelined job over sub-communicators of `world`.
fn pipelined(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut RankObserver,
    world: &Communicator,
    handle: tokio::runtime::Handle,
    place: GridPlace,
    dist: &DistOptions,
) -> Result<TrainReport, TrainError> {
    let split = |members: Vec<u32>, what: &str| {
        world.split(&members).map_err(|e| TrainError::Collective {
            what: format!("forming the {what} sub-group {members:?}"),
            source: ringtrain_train::GroupError::new(e.to_string()),
        })
    };
    let mut group = CommGroup::new(split(place.same_stage(), "stage")?, handle.clone());
    let mut link = CommLink::new(split(place.same_replica(), "replica")?, handle);
    train_pipelined(spec, opts, observer, &mut group, &mut link, dist)
}

fn write_timeline(dir: &Path, job: &str, rank: u32, timeline: &RankTimeline) {
    let path = rank_file(dir, job, rank);
    match timeline.write(&path) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            events = timeline.len(),
            dropped = timeline.dropped(),
            "timeline written"
        ),
        Err(e) => tracing::warn!(error = %e, "timeline not written"),
    }
}

/// The headline metrics of a finished run, by `split.metric` name.
pub(crate) fn headline_metrics(report: &TrainReport) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(last) = report.history.last() {
        out.insert("train.loss".to_string(), last.train_loss);
    }
    // The names are the task's own (`EvalReport::scalars`, one table for every kind).
    let mut add = |split: &str, eval: &EvalReport| {
        for (name, v) in eval.scalars() {
            out.insert(format!("{split}.{name}"), v);
        }
    };
    if let Some(v) = &report.val {
        add("val", v);
    }
    if let Some(t) = &report.test {
        add("test", t);
    }
    out
}

fn stop_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Completed => "completed",
        StopReason::MaxSteps => "max_steps",
        StopReason::EarlyStopping => "early_stopping",
        StopReason::Halted => "halted",
        StopReason::Interrupted => "interrupted",
    }
}

/// The result a rank reports; only rank 0 (`lead`) carries metrics and the full report.
pub(crate) fn job_result(report: &TrainReport, lead: bool) -> pb::JobResult {
    let (metrics, report_json) = if lead {
        (
            headline_metrics(report).into_iter().collect(),
            report_text(report),
        )
    } else {
        (Default::default(), String::new())
    };
    pb::JobResult {
        metrics,
        report_json,
        checkpoint_dir: report.checkpoint_dir.display().to_string(),
        steps: report.steps,
        stop_reason: stop_reason(report.stop).to_string(),
        samples_per_sec: report.samples_per_sec,
    }
}

/// The report as `train` writes it to metrics.json, fitted to the coordinator's limit
/// ([`ringtrain_proto::MAX_REPORT_JSON_BYTES`]): a run of many short epochs (thousands of
/// epoch records) keeps its first epoch and as many of its last ones as fit, with a warning;
/// metrics.json on disk keeps them all. Without this the coordinator would refuse the result
/// and the rank would count as one that never reported.
fn report_text(report: &TrainReport) -> String {
    let text = |r: &TrainReport| {
        serde_json::to_string_pretty(r).unwrap_or_else(|e| {
            tracing::error!(error = %e, "report not serializable");
            String::new()
        })
    };
    let full = text(report);
    if full.len() <= ringtrain_proto::MAX_REPORT_JSON_BYTES {
        return full;
    }
    let epochs = report.history.len();
    let mut keep = epochs;
    let mut short = report.clone();
    while keep > 1 {
        keep /= 2;
        short.history = report.history[..1]
            .iter()
            .chain(&report.history[epochs - keep..])
            .cloned()
            .collect();
        let t = text(&short);
        if t.len() <= ringtrain_proto::MAX_REPORT_JSON_BYTES {
            tracing::warn!(
                epochs,
                kept = short.history.len(),
                bytes = full.len(),
                "the result's epoch history is cut to the first and the last {keep} epochs to fit \
                 the coordinator's {} bytes (metrics.json has every epoch)",
                ringtrain_proto::MAX_REPORT_JSON_BYTES
            );
            return t;
        }
    }
    short.history.clear();
    text(&short)
}

/// Sends the rank's one result, retrying transient failures a few times.
pub(crate) async fn report_result(shared: &Shared, a: &pb::Assignment, outcome: Outcome) {
    let outcome = match outcome {
        Outcome::Success(r) => PbOutcome::Success(*r),
        Outcome::Failure { message, blamed } => PbOutcome::Failure(pb::RankFailure {
            message,
            blamed_rank: blamed.map_or(-1, |r| r as i32),
        }),
        Outcome::Stopped(reason) => PbOutcome::Stopped(reason),
    };
    let mut pause = Duration::from_millis(500);
    for attempt in 1..=RESULT_ATTEMPTS {
        let request = pb::ReportResultRequest {
            worker_id: shared.worker_id().to_string(),
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: a.rank,
            outcome: Some(outcome.clone()),
        };
        let mut client = shared.client.clone();
        match tokio::time::timeout(RESULT_DEADLINE, client.report_result(request)).await {
            Ok(Ok(_)) => return,
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::NotFound
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::InvalidArgument
                ) =>
            {
                tracing::warn!(
                    code = ?status.code(),
                    message = status.message(),
                    "the coordinator refused the result"
                );
                return;
            }
            Ok(Err(status)) => tracing::warn!(
                attempt,
                code = ?status.code(),
                message = status.message(),
                "result report failed"
            ),
            Err(_) => tracing::warn!(
                attempt,
                "result report got no answer within {RESULT_DEADLINE:?}"
            ),
        }
        if attempt < RESULT_ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::error!("result report abandoned after {RESULT_ATTEMPTS} attempts");
}

/// What the next progress report says, filled in by the training thread.
#[derive(Debug)]
pub(crate) struct Progress {
    state: Mutex<ProgressState>,
    /// Wakes the reporter for a report right away (start, epoch end).
    urgent: Notify,
}

#[derive(Debug)]
struct ProgressState {
    phase: pb::RankPhase,
    step: u64,
    total_steps: u64,
    epoch: u32,
    epochs: u32,
    loss: f64,
    lr: f64,
    val_loss: f64,
    samples_per_sec: f64,
    /// Sums over the steps since the last report.
    window_steps: u64,
    window_compute: f64,
    window_comm: f64,
    /// Means reported last (kept while no step completes).
    compute_seconds: f64,
    comm_seconds: f64,
    logs: Vec<pb::LogLine>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Progress {
    fn new(a: &pb::Assignment) -> Self {
        let progress = Progress {
            state: Mutex::new(ProgressState {
                phase: pb::RankPhase::Starting,
                step: 0,
                total_steps: 0,
                epoch: 0,
                epochs: 0,
                loss: f64::NAN,
                lr: 0.0,
                val_loss: f64::NAN,
                samples_per_sec: 0.0,
                window_steps: 0,
                window_compute: 0.0,
                window_comm: 0.0,
                compute_seconds: 0.0,
                comm_seconds: 0.0,
                logs: Vec::new(),
            }),
            urgent: Notify::new(),
        };
        progress.log(
            pb::LogLevel::Info,
            // Log lines are shown prefixed with their rank already.
            format!("starting: world {}, attempt {}", a.world, a.attempt),
            a.rank,
        );
        progress.urgent.notify_one();
        progress
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_epochs(&self, epochs: u32) {
        self.lock().epochs = epochs;
    }

    fn log(&self, level: pb::LogLevel, message: String, rank: u32) {
        let mut s = self.lock();
        if s.logs.len() < MAX_PENDING_LOGS {
            s.logs.push(pb::LogLine {
                seq: 0,
                at_ms: now_ms(),
                rank: rank as i32,
                level: level as i32,
                message,
            });
        }
    }

    /// The report to send now; takes the pending log lines and closes the measurement window.
    fn take_request(&self, worker_id: String, a: &pb::Assignment) -> pb::ReportProgressRequest {
        let mut s = self.lock();
        if s.window_steps > 0 {
            s.compute_seconds = s.window_compute / s.window_steps as f64;
            s.comm_seconds = s.window_comm / s.window_steps as f64;
            s.window_steps = 0;
            s.window_compute = 0.0;
            s.window_comm = 0.0;
        }
        pb::ReportProgressRequest {
            worker_id,
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: a.rank,
            phase: s.phase as i32,
            step: s.step,
            total_steps: s.total_steps,
            epoch: s.epoch,
            epochs: s.epochs,
            loss: s.loss,
            lr: s.lr,
            samples_per_sec: s.samples_per_sec,
            compute_seconds: s.compute_seconds,
            comm_seconds: s.comm_seconds,
            val_loss: s.val_loss,
            logs: std::mem::take(&mut s.logs),
        }
    }

    /// Puts back log lines of a report that did not arrive.
    fn requeue(&self, mut logs: Vec<pb::LogLine>) {
        let mut s = self.lock();
        logs.append(&mut s.logs);
        logs.truncate(MAX_PENDING_LOGS);
        s.logs = logs;
    }
}

/// Reports progress every [`REPORT_EVERY`] and when woken, until `done`; then once more (the
/// last log lines) and returns. A report whose answer says stop stops the rank.
async fn report_loop(
    shared: Arc<Shared>,
    a: pb::Assignment,
    control: Arc<JobControl>,
    progress: Arc<Progress>,
    mut done: watch::Receiver<bool>,
) {
    loop {
        let last = tokio::select! {
            () = tokio::time::sleep(REPORT_EVERY) => false,
            () = progress.urgent.notified() => false,
            _ = done.wait_for(|d| *d) => true,
        };
        let request = progress.take_request(shared.worker_id().to_string(), &a);
        let logs = request.logs.clone();
        let mut client = shared.client.clone();
        match tokio::time::timeout(PROGRESS_DEADLINE, client.report_progress(request)).await {
            Ok(Ok(answer)) => {
                let answer = answer.into_inner();
                if answer.stop {
                    control.request_stop(StopCause::Coordinator(answer.reason));
                }
            }
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "progress report failed");
                progress.requeue(logs);
            }
            Err(_) => {
                tracing::warn!("progress report got no answer within {PROGRESS_DEADLINE:?}");
                progress.requeue(logs);
            }
        }
        if last {
            return;
        }
    }
}

/// What the training thread's observer needs.
struct ObserverParts {
    job: String,
    rank: u32,
    world: u32,
    progress: Arc<Progress>,
    series: RankSeries,
    /// Pipeline series, for a rank of a pipelined job.
    stage: Option<StageSeries>,
    timeline: Option<RankTimeline>,
}

/// Sums of a pipeline stage's measurements since the last log line.
#[derive(Debug, Default, Clone, Copy)]
struct StageWindow {
    steps: u64,
    busy: f64,
    idle: f64,
    bytes: u64,
    max_in_flight: usize,
}

/// The trainer's observer on the training thread: metrics, progress, timeline, step spans.
struct RankObserver {
    job: String,
    rank: u32,
    world: u32,
    progress: Arc<Progress>,
    series: RankSeries,
    stage: Option<StageSeries>,
    stage_window: StageWindow,
    /// The same sums over the whole run, for the run's summary line after the last step.
    stage_run: StageWindow,
    total_steps: u64,
    timeline: Option<RankTimeline>,
    /// Bytes of one gradient all-reduce.
    step_bytes: u64,
    /// (end of step, samples) of recent steps.
    recent: VecDeque<(Instant, usize)>,
    step_span: Option<tracing::span::EnteredSpan>,
}

impl RankObserver {
    fn new(p: ObserverParts) -> Self {
        RankObserver {
            job: p.job,
            rank: p.rank,
            world: p.world,
            progress: p.progress,
            series: p.series,
            stage: p.stage,
            stage_window: StageWindow::default(),
            stage_run: StageWindow::default(),
            total_steps: 0,
            timeline: p.timeline,
            step_bytes: 0,
            recent: VecDeque::with_capacity(RATE_WINDOW + 1),
            step_span: None,
        }
    }

    fn samples_per_sec(&self) -> Option<f64> {
        let (first, last) = (self.recent.front()?, self.recent.back()?);
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        // The first entry only marks the start of the window.
        let samples: usize = self.recent.iter().skip(1).map(|(_, n)| n).sum();
        (seconds > 0.0).then(|| samples as f64 / seconds)
    }
}

impl Observer for RankObserver {
    fn on_start(&mut self, info: &RunInfo) {
        // The gradients plus the two per-step scalars the trainer averages with them.
        self.step_bytes = (info.params as u64 + 2) * 4;
        self.total_steps = info.total_steps;
        self.recent.push_back((Instant::now(), 0));
        {
            let mut s = self.progress.lock();
            s.phase = pb::RankPhase::Training;
            s.total_steps = info.total_steps;
            s.step = info.start_step;
        }
        self.progress.log(
            pb::LogLevel::Info,
            format!(
                "rank {} of {} training: {} parameters, {} steps ({} per epoch), samples train/val/test {}/{}/{}",
                self.rank,
                self.world,
                info.params,
                info.total_steps,
                info.steps_per_epoch,
                info.samples[0],
                info.samples[1],
                info.samples[2]
            ),
            self.rank,
        );
        if let Some(from) = &info.resumed_from {
            self.progress.log(
                pb::LogLevel::Info,
                format!(
                    "rank {} of {} resumed at step {} from {from}",
                    self.rank, self.world, info.start_step
                ),
                self.rank,
            );
        }
        self.progress.urgent.notify_one();
    }

    fn on_step_start(&mut self, step: u64) {
        self.step_span = Some(
            tracing::info_span!("worker.train_step", job = %self.job, rank = self.rank, step)
                .entered(),
        );
    }

    fn on_step(&mut self, e: &StepEvent) {
        let compute = (e.stats.compute + e.stats.update).as_secs_f64();
        let comm = e.stats.communication.as_secs_f64();
        tracing::debug!(
            loss = e.stats.loss,
            compute_s = compute,
            comm_s = comm,
            "step"
        );
        self.step_span = None;
        self.recent.push_back((Instant::now(), e.samples));
        if self.recent.len() > RATE_WINDOW + 1 {
            self.recent.pop_front();
        }
        let rate = self.samples_per_sec();
        let s = &self.series;
        s.steps.increment(1);
        s.compute.record(compute);
        s.communication.record(comm);
        s.loss.set(f64::from(e.stats.loss));
        if let Some(r) = rate {
            s.samples_per_second.set(r);
        }
        // A pipeline stage's all-reduce (its slice among its replicas) is counted in
        // on_pipeline_step, which knows its size and time.
        if self.stage.is_none() {
            s.record_allreduce(self.step_bytes, self.world as usize, comm);
        }
        let mut p = self.progress.lock();
        p.step = e.step;
        p.total_steps = e.total_steps;
        p.epoch = e.epoch;
        p.loss = f64::from(e.stats.loss);
        p.lr = e.lr;
        if let Some(r) = rate {
            p.samples_per_sec = r;
        }
        p.window_steps += 1;
        p.window_compute += compute;
        p.window_comm += comm;
    }

    fn on_epoch(&mut self, record: &EpochRecord) {
        let mut line = format!(
            "epoch {}: step {}, train loss {:.6}",
            record.epoch, record.step, record.train_loss
        );
        if let Some(v) = record.val_loss {
            line += &format!(", val loss {v:.6}");
        }
        for (name, value) in &record.val_metrics {
            line += &format!(", val {name} {value:.6}");
        }
        {
            let mut p = self.progress.lock();
            p.val_loss = record.val_loss.unwrap_or(f64::NAN);
            p.epoch = (record.epoch + 1).min(p.epochs.saturating_sub(1));
        }
        // Every rank has the same epoch summary; rank 0 alone puts it in the job's log.
        if self.rank == 0 {
            self.progress.log(pb::LogLevel::Info, line, self.rank);
        }
        self.progress.urgent.notify_one();
    }

    fn on_checkpoint(&mut self, path: &Path) {
        self.progress.log(
            pb::LogLevel::Debug,
            format!("checkpoint {}", path.display()),
            self.rank,
        );
    }

    fn on_span(&mut self, span: &PhaseSpan) {
        if let Some(t) = &mut self.timeline {
            t.add(span);
        }
    }

    fn on_pipeline_step(&mut self, p: &PipelineStepStats) {
        self.series
            .record_allreduce(p.allreduce_bytes, p.replicas, p.allreduce.as_secs_f64());
        let (busy, idle) = (p.stats.busy.as_secs_f64(), p.stats.idle.as_secs_f64());
        if let Some(s) = &self.stage {
            s.busy.increment(busy);
            s.idle.increment(idle);
            s.activation_bytes.increment(p.stats.bytes_sent);
            s.bubble_fraction.set(p.stats.bubble_fraction());
        }
        let w = &mut self.stage_window;
        w.steps += 1;
        w.busy += busy;
        w.idle += idle;
        w.bytes += p.stats.bytes_sent;
        w.max_in_flight = w.max_in_flight.max(p.stats.max_in_flight);
        let run = &mut self.stage_run;
        run.steps += 1;
        run.busy += busy;
        run.idle += idle;
        run.bytes += p.stats.bytes_sent;
        run.max_in_flight = run.max_in_flight.max(p.stats.max_in_flight);
        // One line per stage every 100 steps and after the last step: busy and idle time, the
        // measured bubble next to the ideal (P-1)/(M+P-1), activation bytes sent.
        if p.step.is_multiple_of(100) || p.step == self.total_steps {
            let w = std::mem::take(&mut self.stage_window);
            let total = w.busy + w.idle;
            let bubble = if total > 0.0 { w.idle / total } else { 0.0 };
            let line = format!(
                "pipeline stage {} of {}: {} steps to step {}, busy {:.3} s, idle {:.3} s, \
                 bubble {:.3} (ideal {:.3} for M = {}), activation bytes sent {}, \
                 max micro-batches in flight {}",
                p.stage,
                p.stages,
                w.steps,
                p.step,
                w.busy,
                w.idle,
                bubble,
                ringtrain_train::pipeline::ideal_bubble(p.stages, p.microbatches),
                p.microbatches,
                w.bytes,
                w.max_in_flight
            );
            // In this worker's own log too (bench/pipeline.sh reads it there).
            tracing::info!(rank = self.rank, "{line}");
            self.progress.log(pb::LogLevel::Info, line, self.rank);
        }
        // The run's summary in `key=value` form, which `ringtrain local` / `watch` turn into the
        // final report's pipeline table (keep the keys in step with the CLI's `render`).
        if p.step == self.total_steps {
            let run = &self.stage_run;
            let total = run.busy + run.idle;
            let line = format!(
                "pipeline stage {} of {} over the run: steps={} busy_s={:.3} idle_s={:.3} \
                 bubble={:.4} ideal={:.4} microbatches={} activation_bytes={}",
                p.stage,
                p.stages,
                run.steps,
                run.busy,
                run.idle,
                if total > 0.0 { run.idle / total } else { 0.0 },
                ringtrain_train::pipeline::ideal_bubble(p.stages, p.microbatches),
                p.microbatches,
                run.bytes
            );
            tracing::info!(rank = self.rank, "{line}");
            self.progress.log(pb::LogLevel::Info, line, self.rank);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epochs: u32) -> TrainReport {
        TrainReport {
            name: "long".into(),
            stop: StopReason::MaxSteps,
            steps: u64::from(epochs) * 30,
            history: (0..epochs)
                .map(|e| EpochRecord {
                    epoch: e,
                    step: u64::from(e + 1) * 30,
                    train_loss: 0.125,
                    val_loss: Some(0.25),
                    val_metrics: vec![("val_rmse".into(), 0.5)],
                    lr: 0.01,
                })
                .collect(),
            evaluated_epoch: Some(epochs - 1),
            val: None,
            test: None,
            checkpoint_dir: PathBuf::from("/tmp/runs/long"),
            samples_per_sec: 1000.0,
            params: Vec::new(),
        }
    }

    #[test]
    fn a_report_of_thousands_of_epochs_is_cut_to_fit_the_coordinator() {
        let short = report(10);
        assert_eq!(
            report_text(&short),
            serde_json::to_string_pretty(&short).unwrap()
        );
        let long = report(20_000);
        assert!(
            serde_json::to_string_pretty(&long).unwrap().len()
                > ringtrain_proto::MAX_REPORT_JSON_BYTES
        );
        let text = report_text(&long);
        assert!(
            text.len() <= ringtrain_proto::MAX_REPORT_JSON_BYTES,
            "{}",
            text.len()
        );
        let back: TrainReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.steps, long.steps);
        assert_eq!(back.history.first(), long.history.first());
        assert_eq!(back.history.last(), long.history.last());
        assert!(
            back.history.len() > 1000,
            "{} epochs kept",
            back.history.len()
        );
    }
}
