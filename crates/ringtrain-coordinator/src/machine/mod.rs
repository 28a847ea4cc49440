//! The coordinator's heart: a pure state machine of jobs and workers. It does no IO and knows no
//! clock, runtime or socket: every input is an event method carrying the current time in
//! milliseconds (`submit`, `cancel`, `register`, `heartbeat`, `take_commands`, `progress`,
//! `result`, `tick`), and every consequence is an [`Effect`] collected by [`Machine::drain_effects`]
//! (rows to persist, transitions to record, log lines, workers to wake, events for watchers).
//! Commands for a worker (start a rank, stop a job) wait in that worker's outbox until its next
//! heartbeat takes them.
//!
//! Rules, in one place:
//! - **Jobs** go Queued → Starting → Running → Succeeded | Failed | Cancelled; Queued and Starting
//!   may go straight to Failed or Cancelled. A job is Running once every rank reported phase
//!   TRAINING (or later), Succeeded once every rank reported success (the result is rank 0's), and
//!   Failed at the first rank failure (`"rank R: <message>"`), the other ranks being told to stop.
//! - **Gang scheduling, FIFO with backfill**: queued jobs are visited in submission order; a job
//!   starts as soon as `world` workers are idle, taking the idle workers with the lowest ids. A job
//!   that does not fit does not block later, smaller jobs that do (backfill). The price is that a
//!   large job can wait as long as smaller jobs keep every worker busy; its reason says so
//!   (`"needs 3 workers, 2 of 2 alive are idle"`).
//! - **Workers** are Idle, Busy or Lost. A worker is Busy while it holds a rank of an unfinished
//!   job, while its last heartbeat listed any rank, or while a command for it is undelivered or a
//!   delivered stop is not yet confirmed by a heartbeat that no longer lists the job. So a stopped
//!   job's workers are not reused while they still run it.
//! - **Leases**: a worker not heard from for one lease is Lost; its unfinished job fails with
//!   `"rank R (worker W, ADDR) lost: no heartbeat for S s"`. A rank that its worker never
//!   confirmed (by a heartbeat listing it, or a report) within one lease of taking the assignment, or that
//!   vanished from its worker's heartbeats without a result for one lease, fails the job too:
//!   nothing waits forever.
//! - **Elastic jobs** (`parallel.elastic`): each start takes the largest world in
//!   `min..=max` dividing the global batch that the idle workers allow, the previous attempt's
//!   workers first (they hold the in-memory commit the ranks continue from), and waits for
//!   those still leaving the previous attempt. A failed attempt re-forms this way on the
//!   survivors (a restart, counted against `max_restarts`); below `min` the job waits, queued,
//!   saying so. While no job waits in the queue, a running elastic job that idle workers
//!   could make larger is asked to stop at a step boundary (not aborted: its ranks commit
//!   that step) and, once every rank stopped, re-forms larger; that is a grow, not a failure.
//! - **Restart** ([`Machine::restore`]): jobs and workers come back from the store. Alive workers
//!   get a fresh lease starting at the restart; unfinished jobs keep their state and their ranks
//!   must be confirmed again by their workers' heartbeats within one lease, else the job fails
//!   with `"coordinator restarted; rank R (worker W, ADDR) did not report within the lease"`.

use ringtrain_core::{JobId, WorkerId};
use ringtrain_spec::SpecFormat;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// State of a job (see the module docs for the life cycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// Waiting for enough idle workers.
    Queued,
    /// Ranks assigned, forming the communicator.
    Starting,
    /// Every rank is training.
    Running,
    /// Every rank finished successfully.
    Succeeded,
    /// A rank, worker or the coordinator failed the job.
    Failed,
    /// A client cancelled the job.
    Cancelled,
}

impl JobState {
    /// Every state, in life-cycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Starting,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Whether the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Whether the job holds workers (Starting or Running).
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Starting | JobState::Running)
    }

    /// Lower-case name, as stored in the database and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Inverse of [`JobState::as_str`]; `None` for any other text.
    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerState {
    /// Alive and free.
    Idle,
    /// Alive and running (or still stopping) a rank.
    Busy,
    /// Its lease expired; the id is never used again.
    Lost,
}

impl WorkerState {
    /// Every state.
    pub const ALL: [WorkerState; 3] = [WorkerState::Idle, WorkerState::Busy, WorkerState::Lost];

    /// Lower-case name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Lost => "lost",
        }
    }
}

/// What a rank reported it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RankPhase {
    /// Loading data, building the model, forming the communicator.
    Starting,
    /// Taking optimizer steps.
    Training,
    /// Evaluating a split.
    Evaluating,
}

/// Severity of a job log line (mirrors the wire `LogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Diagnostic detail.
    Debug,
    /// Normal progress.
    Info,
    /// Unexpected but not fatal.
    Warn,
    /// A failure.
    Error,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Position in the job's log, from 1, without gaps.
    pub seq: u64,
    /// When it was recorded (ms since the Unix epoch).
    pub at_ms: i64,
    /// Reporting rank, or -1 for the coordinator.
    pub rank: i32,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// One recorded state change of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// State entered.
    pub state: JobState,
    /// Why (may be empty).
    pub reason: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// Latest progress one rank reported. Floats may be NaN (e.g. no validation loss yet); they are
/// stored as JSON `null`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RankReport {
    /// Optimizer steps completed.
    pub step: u64,
    /// Steps the job runs in total.
    pub total_steps: u64,
    /// Zero-based epoch.
    pub epoch: u32,
    /// Epochs in the spec.
    pub epochs: u32,
    /// Training loss at `step`.
    #[serde(with = "nan_safe")]
    pub loss: f64,
    /// Learning rate at `step`.
    #[serde(with = "nan_safe")]
    pub lr: f64,
    /// Samples per second over recent steps.
    #[serde(with = "nan_safe")]
    pub samples_per_sec: f64,
    /// Mean compute seconds per step.
    #[serde(with = "nan_safe")]
    pub compute_seconds: f64,
    /// Mean communication seconds per step.
    #[serde(with = "nan_safe")]
    pub comm_seconds: f64,
    /// Validation loss of the last finished epoch (NaN before the first).
    #[serde(with = "nan_safe")]
    pub val_loss: f64,
    /// When the coordinator received it.
    pub reported_ms: i64,
}

/// Final metrics of a job (rank 0's report).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobResultData {
    /// Headline metrics by name.
    #[serde(with = "nan_safe_map")]
    pub metrics: BTreeMap<String, f64>,
    /// The full final report as JSON.
    pub report_json: String,
    /// Where the checkpoints are.
    pub checkpoint_dir: String,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Why training stopped.
    pub stop_reason: String,
    /// Throughput over all ranks.
    #[serde(with = "nan_safe")]
    pub samples_per_sec: f64,
}

/// How a rank ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RankOutcome {
    /// Finished training; rank 0 carries the job's result.
    Succeeded(Option<JobResultData>),
    /// Failed with this message.
    Failed(String),
    /// Stopped on request, with this reason.
    Stopped(String),
}

/// One rank of a job: which phase it reported, how it ended, its latest progress.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RankSlot {
    /// Latest phase reported (None before the first report).
    pub phase: Option<RankPhase>,
    /// How the rank ended (None while it runs).
    pub outcome: Option<RankOutcome>,
    /// Latest progress report.
    pub report: Option<RankReport>,
    /// Whether the worker confirmed it runs this rank (heartbeat listing it, or a report).
    /// Not stored: after a restart every rank must be confirmed again.
    #[serde(skip)]
    pub confirmed: bool,
    /// Since when the rank is not accounted for (assigned but unconfirmed, or missing from its
    /// worker's heartbeats without a result); a full lease of this fails the job.
    #[serde(skip)]
    pub unaccounted_since_ms: Option<i64>,
}

/// Everything the coordinator knows about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Sequence number behind the id (`job-N`).
    pub num: u64,
    /// Id, `job-N`.
    pub id: JobId,
    /// The spec's name.
    pub name: String,
    /// The spec text as submitted.
    pub spec: String,
    /// Encoding of `spec`.
    pub format: SpecFormat,
    /// Absolute directory relative spec paths resolve against.
    pub base_dir: String,
    /// Number of ranks (`parallel.data × parallel.pipeline`).
    pub world: u32,
    /// Current state.
    pub state: JobState,
    /// Queue reason, failure cause or cancel reason (see the proto).
    pub reason: String,
    /// Worker of each rank (empty while Queued).
    pub workers: Vec<WorkerId>,
    /// When it was submitted.
    pub submitted_ms: i64,
    /// When it left Queued (0 before).
    pub started_ms: i64,
    /// When it reached a final state (0 before).
    pub finished_ms: i64,
    /// Every state change, oldest first.
    pub history: Vec<Transition>,
    /// Attempt number (1 for the first start; 0 while never started).
    pub attempt: u32,
    /// Rendezvous session of the current attempt (`job-N/attempt`), empty before.
    pub session: String,
    /// Per-rank status (index = rank; empty while Queued).
    pub ranks: Vec<RankSlot>,
    /// Final metrics once Succeeded.
    pub result: Option<JobResultData>,
    /// Sequence number of the last log line.
    pub last_log_seq: u64,
    /// Restored after a coordinator restart while active (changes the failure messages).
    pub recovered: bool,
    /// Restarts allowed after failed attempts: attempt `a` failing requeues the job while
    /// `a <= max_restarts` (`checkpoint.max_restarts`).
    pub max_restarts: u32,
    /// The user (client token name) who submitted it; empty when the coordinator had no
    /// client tokens then (or for jobs from before schema 4).
    pub owner: String,
    /// When a progress report last asked for the job's row to be written (ms; 0 = never).
    /// Not stored: after a restart the next report is written.
    pub progress_saved_ms: i64,
    /// Elastic bounds (`parallel.elastic`): the job's `world` is chosen at each start.
    pub elastic: Option<Elastic>,
    /// Workers whose ranks a failure of the current or previous attempt blamed: an elastic job
    /// re-forms without waiting for them to leave, and takes them last. Not stored.
    pub suspects: BTreeSet<WorkerId>,
}

/// An elastic job's bounds and re-forming state (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elastic {
    /// The spec's `parallel.elastic`.
    pub bounds: ringtrain_spec::ElasticSpec,
    /// Its global batch (`train.batch_size`): a world must divide it.
    pub batch: usize,
    /// Attempts that ended because the job grew (not failures: they do not count against
    /// `max_restarts`).
    pub grows: u32,
    /// Its ranks were asked to stop together so that it re-forms larger. Not stored: after a
    /// coordinator restart the stop may never have been delivered.
    #[serde(skip)]
    pub growing: bool,
}

impl Elastic {
    /// The bounds of `spec`'s `parallel.elastic`, if it has any.
    pub fn of(spec: &ringtrain_spec::JobSpec) -> Option<Elastic> {
        spec.parallel.elastic.map(|bounds| Elastic {
            bounds,
            batch: spec.train.batch_size,
            grows: 0,
            growing: false,
        })
    }

    /// The largest allowed world of at most `available` workers
    /// ([`ringtrain_spec::ElasticSpec::world_for`]).
    pub fn world_for(&self, available: usize) -> Option<u32> {
        self.bounds
            .world_for(self.batch, available)
            .and_then(|w| u32::try_from(w).ok())
    }
}

/// Resources a worker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// CPU threads.
    pub threads: u32,
    /// GPUs.
    pub gpus: u32,
    /// Memory in bytes (0 = unknown).
    pub memory_bytes: u64,
}

/// A rank a worker says it runs (from a heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunningRank {
    /// Job id.
    pub job: JobId,
    /// Attempt number.
    pub attempt: u32,
    /// Rank.
    pub rank: u32,
}

/// The rank a worker holds for an unfinished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// Job id.
    pub job: JobId,
    /// Rank in the job.
    pub rank: u32,
    /// Attempt.
    pub attempt: u32,
}

/// A command waiting for a worker's next heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start a rank.
    Start(Assignment),
    /// Stop a job's rank.
    Stop {
        /// Job id.
        job: JobId,
        /// Why.
        reason: String,
    },
}

/// Everything a worker needs to run one rank (mirrors the wire `Assignment`).
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Job id.
    pub job: JobId,
    /// Attempt, from 1.
    pub attempt: u32,
    /// This worker's rank.
    pub rank: u32,
    /// Number of ranks.
    pub world: u32,
    /// Spec text as submitted.
    pub spec: String,
    /// Encoding of `spec`.
    pub format: SpecFormat,
    /// Directory relative spec paths resolve against.
    pub base_dir: String,
    /// Worker of every rank.
    pub workers: Vec<WorkerId>,
    /// Rendezvous session name.
    pub session: String,
    /// Deadline of every collective operation (ms).
    pub collective_timeout_ms: u64,
    /// Checksum interval in steps (0 = never).
    pub checksum_every: u64,
}

/// Everything the coordinator knows about a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    /// Sequence number behind the id (`w-N`).
    pub num: u64,
    /// Id, `w-N`.
    pub id: WorkerId,
    /// Name it registered with.
    pub name: String,
    /// "host:port" of its peer endpoint.
    pub peer_address: String,
    /// "host:port" of its metrics endpoint (may be empty).
    pub metrics_address: String,
    /// Its ringtrain version.
    pub version: String,
    /// What it offers.
    pub resources: Resources,
    /// When it registered.
    pub registered_ms: i64,
    /// When the coordinator last heard from it.
    pub last_seen_ms: i64,
    /// Set once its lease expired: when, and why.
    pub lost: Option<(i64, String)>,
    /// The rank it holds for an unfinished job.
    pub holding: Option<Holding>,
    /// Ranks its last heartbeat listed.
    pub running: Vec<RunningRank>,
    /// Commands not yet taken by a heartbeat.
    pub outbox: Vec<Command>,
    /// Jobs it was told to stop (value: the stop was delivered) and that its heartbeats still
    /// have to show gone.
    pub draining: BTreeMap<JobId, bool>,
}

impl Worker {
    /// The worker's state, derived from what it holds, runs and still has to be told.
    pub fn state(&self) -> WorkerState {
        if self.lost.is_some() {
            WorkerState::Lost
        } else if self.holding.is_some()
            || !self.running.is_empty()
            || !self.outbox.is_empty()
            || !self.draining.is_empty()
        {
            WorkerState::Busy
        } else {
            WorkerState::Idle
        }
    }

    /// `"worker w-2, 127.0.0.1:40123"`, for messages naming a rank's worker.
    fn label(&self) -> String {
        format!("worker {}, {}", self.id, self.peer_address)
    }
}

/// A job to submit (already validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The spec's name.
    pub name: String,
    /// Spec text.
    pub spec: String,
    /// Encoding of `spec`.
    pub format: SpecFormat,
    /// Absolute base directory.
    pub base_dir: String,
    /// Number of ranks (≥ 1).
    pub world: u32,
    /// Restarts allowed after failed attempts (`checkpoint.max_restarts`).
    pub max_restarts: u32,
    /// The submitting user's name (empty without client tokens).
    pub owner: String,
    /// Elastic bounds; `world` is then the most workers it asks for.
    pub elastic: Option<Elastic>,
}

/// A worker to register (already validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorker {
    /// Informational name.
    pub name: String,
    /// "host:port" of its peer endpoint.
    pub peer_address: String,
    /// "host:port" of its metrics endpoint (may be empty).
    pub metrics_address: String,
    /// Its ringtrain version.
    pub version: String,
    /// What it offers.
    pub resources: Resources,
}

/// One progress report of a rank.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressReport {
    /// Reporting worker.
    pub worker: WorkerId,
    /// Job id.
    pub job: JobId,
    /// Attempt.
    pub attempt: u32,
    /// Rank.
    pub rank: u32,
    /// Phase (None when the worker did not say).
    pub phase: Option<RankPhase>,
    /// The numbers.
    pub report: RankReport,
    /// Log lines since the last report: level and text (the coordinator numbers them).
    pub logs: Vec<(LogLevel, String)>,
}

/// Final outcome of one rank.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultReport {
    /// Reporting worker.
    pub worker: WorkerId,
    /// Job id.
    pub job: JobId,
    /// Attempt.
    pub attempt: u32,
    /// Rank.
    pub rank: u32,
    /// How it ended.
    pub outcome: RankOutcome,
    /// The rank a failure blames (its peer link broke or timed out), as the rank claims it:
    /// an elastic job does not wait for that rank's worker to leave before it re-forms.
    pub blamed: Option<u32>,
}

/// What changed about a job, for watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    /// Its state changed.
    State,
    /// A rank reported progress (or the queue reason changed).
    Progress,
}

/// A consequence of an event for the shell to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write the job's row (its current fields) to the store.
    SaveJob(JobId),
    /// Append a transition to the job's history in the store.
    Transition {
        /// Job.
        job: JobId,
        /// State left (None for the initial Queued).
        from: Option<JobState>,
        /// The new state, reason and time.
        change: Transition,
    },
    /// Write the worker's row to the store.
    SaveWorker(WorkerId),
    /// Append a line to the job's log.
    Log {
        /// Job.
        job: JobId,
        /// The line.
        line: LogEntry,
    },
    /// A command waits in this worker's outbox: answer its held heartbeat.
    Wake(WorkerId),
    /// Tell the job's watchers.
    Publish {
        /// Job.
        job: JobId,
        /// What changed.
        change: JobChange,
        /// The new log line when one was added (published as its own event).
        log: Option<LogEntry>,
    },
}

/// Why an event was refused. Every variant names what was asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MachineError {
    /// No job has this id.
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    /// No worker has this id.
    #[error("unknown worker {0}: register again")]
    UnknownWorker(WorkerId),
    /// The worker's lease expired earlier; it must register again under a new id.
    #[error("worker {worker} was declared lost ({why}): register again")]
    WorkerLost {
        /// Worker.
        worker: WorkerId,
        /// Why it was lost.
        why: String,
    },
    /// The job already finished in a state that forbids the request.
    #[error("job {job} already {state}")]
    JobFinished {
        /// Job.
        job: JobId,
        /// Its final state.
        state: JobState,
    },
    /// The worker reports about a rank it was not given.
    #[error("worker {worker} does not run rank {rank} of job {job} attempt {attempt}")]
    NotAssigned {
        /// Worker.
        worker: WorkerId,
        /// Job.
        job: JobId,
        /// Rank claimed.
        rank: u32,
        /// Attempt claimed.
        attempt: u32,
    },
}

/// Settings of the machine that are not state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Lease of a worker (and grace of an unaccounted rank), ms.
    pub lease_ms: i64,
    /// Deadline of every collective operation, copied into assignments (ms).
    pub collective_timeout_ms: u64,
    /// Checksum interval, copied into assignments.
    pub checksum_every: u64,
    /// Shortest interval between two stored copies of a job's progress, ms: a progress report
    /// always updates the machine, but asks for the job's row to be written only when this long
    /// has passed since the last progress write of the job (or its phase changed), so however
    /// fast ranks report, the store writes each job's row at most about once per interval for
    /// progress. 0 writes every report.
    pub progress_save_ms: i64,
}

/// Answer to a progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressAck {
    /// `Some(reason)` when the rank must stop (job cancelled, failed, or superseded).
    pub stop: Option<String>,
}

/// Commands taken by a heartbeat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Commands {
    /// Ranks to start.
    pub start: Vec<Assignment>,
    /// Jobs to stop.
    pub stop: Vec<Stop>,
}

/// A job a worker must stop running.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    /// The job.
    pub job: JobId,
    /// Why.
    pub reason: String,
    /// The worker's attempt is over (the job failed or restarts without it): its ranks may drop
    /// collective calls in flight, since a peer may be gone. False when the ranks should stop
    /// together at a step boundary (a cancel), keeping their checkpoint.
    pub abort: bool,
}

/// The state machine. See the module docs for its rules.
#[derive(Debug)]
pub struct Machine {
    config: MachineConfig,
    jobs: BTreeMap<u64, Job>,
    job_nums: BTreeMap<JobId, u64>,
    workers: BTreeMap<u64, Worker>,
    worker_nums: BTreeMap<WorkerId, u64>,
    next_job: u64,
    next_worker: u64,
    effects: Vec<Effect>,
}

impl Machine {
    /// An empty machine (fresh database).
    pub fn new(config: MachineConfig) -> Self {
        Machine {
            config,
            jobs: BTreeMap::new(),
            job_nums: BTreeMap::new(),
            workers: BTreeMap::new(),
            worker_nums: BTreeMap::new(),
            next_job: 1,
            next_worker: 1,
            effects: Vec::new(),
        }
    }

    /// A machine holding what a store kept, after a coordinator restart at `now`. `next_job` and
    /// `next_worker` are the next free numbers (ids are never reused). Alive workers get a fresh
    /// lease from `now`; unfinished jobs must be confirmed by their workers within one lease (see
    /// the module docs). Emits log lines and a scheduling pass.
    pub fn restore(
        config: MachineConfig,
        jobs: Vec<Job>,
        workers: Vec<Worker>,
        next_job: u64,
        next_worker: u64,
        now: i64,
    ) -> Self {
        let mut m = Machine::new(config);
        for mut w in workers {
            w.holding = None;
            w.running.clear();
            w.outbox.clear();
            w.draining.clear();
            if w.lost.is_none() {
                w.last_seen_ms = now;
            }
            m.next_worker = m.next_worker.max(w.num + 1);
            m.worker_nums.insert(w.id.clone(), w.num);
            m.workers.insert(w.num, w);
        }
        m.next_worker = m.next_worker.max(next_worker);
        for mut job in jobs {
            m.next_job = m.next_job.max(job.num + 1);
            if job.state.is_active() {
                job.recovered = true;
                for (rank, slot) in job.ranks.iter_mut().enumerate() {
                    slot.confirmed = false;
                    slot.unaccounted_since_ms = slot.outcome.is_none().then_some(now);
                    if slot.outcome.is_some() {
                        continue;
                    }
                    if let Some(w) = job
                        .workers
                        .get(rank)
                        .and_then(|id| m.worker_nums.get(id))
                        .and_then(|n| m.workers.get_mut(n))
                        && w.lost.is_none()
                    {
                        w.holding = Some(Holding {
                            job: job.id.clone(),
                            rank: rank as u32,
                            attempt: job.attempt,
                        });
                    }
                }
            }
            m.job_nums.insert(job.id.clone(), job.num);
            m.jobs.insert(job.num, job);
        }
        m.next_job = m.next_job.max(next_job);
        let active: Vec<JobId> = m
            .jobs
            .values()
            .filter(|j| j.state.is_active())
            .map(|j| j.id.clone())
            .collect();
        let lease = secs(config.lease_ms);
        for id in active {
            m.log(
                &id,
                -1,
                LogLevel::Warn,
                format!(
                    "coordinator restarted; waiting up to {lease} s for every rank's worker to report"
                ),
                now,
            );
        }
        // Ranks that are lost workers' fail at the next tick; a restored dead worker's job
        // must not wait for a heartbeat that cannot come.
        m.tick(now);
        m
    }

    /// After a rollback — this machine restored from the store while the coordinator kept
    /// running, `previous` being the machine the failed event left — re-queues the start
    /// commands `previous` had not yet delivered for attempts the store holds too (the job is
    /// Starting in that attempt, with that worker on that rank): they follow from committed
    /// state, and without them the restore would fail those jobs as if their ranks had vanished
    /// in a restart. Those jobs are not marked recovered (their workers were never out of
    /// touch); a start that only the failed event made is not in the store and is not carried.
    pub fn carry_undelivered_starts(&mut self, previous: &Machine) {
        for old in previous.workers.values() {
            for cmd in &old.outbox {
                let Command::Start(a) = cmd else { continue };
                let Some(job) = self.job_nums.get(&a.job).and_then(|n| self.jobs.get_mut(n)) else {
                    continue;
                };
                if job.state != JobState::Starting
                    || job.attempt != a.attempt
                    || job.workers.get(a.rank as usize) != Some(&old.id)
                {
                    continue;
                }
                let Some(w) = self
                    .worker_nums
                    .get(&old.id)
                    .and_then(|n| self.workers.get_mut(n))
                    .filter(|w| w.lost.is_none())
                else {
                    continue;
                };
                job.recovered = false;
                if !w.outbox.contains(cmd) {
                    w.outbox.push(cmd.clone());
                    self.effects.push(Effect::Wake(w.id.clone()));
                }
            }
        }
    }

    /// The machine's settings.
    pub fn config(&self) -> MachineConfig {
        self.config
    }

    /// The effects of the events since the last call, in order.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// A job by id.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.job_nums.get(id).and_then(|n| self.jobs.get(n))
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    /// A worker by id.
    pub fn worker(&self, id: &WorkerId) -> Option<&Worker> {
        self.worker_nums.get(id).and_then(|n| self.workers.get(n))
    }

    /// Every worker, in registration order.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Number of jobs in each state.
    pub fn job_counts(&self) -> BTreeMap<JobState, usize> {
        let mut counts: BTreeMap<JobState, usize> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for j in self.jobs.values() {
            *counts.entry(j.state).or_default() += 1;
        }
        counts
    }

    /// Number of workers in each state.
    pub fn worker_counts(&self) -> BTreeMap<WorkerState, usize> {
        let mut counts: BTreeMap<WorkerState, usize> =
            WorkerState::ALL.iter().map(|s| (*s, 0)).collect();
        for w in self.workers.values() {
            *counts.entry(w.state()).or_default() += 1;
        }
        counts
    }
}

/// Milliseconds as seconds with one decimal, e.g. `10.0`.
fn secs(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

/// Serde for an `f64` that may be NaN or infinite: such values are written as `null` (JSON has
/// no NaN) and read back as NaN.
mod nan_safe {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// [`nan_safe`] for every value of a map.
mod nan_safe_map {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, v.is_finite().then_some(*v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }
}

mod events;
mod internals;

#[cfg(test)]
mod tests;
