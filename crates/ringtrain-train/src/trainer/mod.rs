//! The trainer: epochs over the shard plan, evaluation and early stopping after each epoch,
//! checkpoints every N steps and at epoch ends, and exact resumption. One loop serves both a
//! single process ([`train`], the one-rank [`Solo`] group) and a replica of a data-parallel job
//! ([`train_distributed`] with a [`Group`] over the collective library): the global batch of each
//! step is split over the ranks and their gradients averaged, so both follow the same sample
//! order and, up to float rounding, the same parameters.
//!
//! Everything random is a pure function of the seed: the sample order of epoch `e` and the
//! dropout masks of step `s`. Together with the checkpointed parameters, optimizer state and data
//! position, that makes "interrupted and resumed" end with exactly the parameters of an
//! uninterrupted run.
//!
//! The loop (`run`) is set up in `setup`, steps in `step` (one `Trainee` trait over the
//! whole-model learner and a pipeline stage's), ends epochs in `epoch` and the run in `finish`;
//! every checkpoint goes through `checkpointer`, and a language model's carried state across
//! ranks is `carried`.

mod carried;
mod checkpointer;
mod epoch;
mod finish;
pub mod samples;
mod setup;
mod step;
mod trainee;

use crate::checkpoint::EpochRecord;
use crate::error::TrainError;
use crate::group::{Group, Solo};
pub use crate::learner::dropout_seed;
use crate::learner::{GradientHook, StepStats};
use crate::pipeline::{PipelineStepStats, StageLink};
use crate::report::EvalReport;
use burn::prelude::*;
use ringtrain_models::LayerInfo;
use ringtrain_spec::JobSpec;
use serde::{Deserialize, Serialize};
use setup::Run;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

/// How to run a job in this process.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Directory relative data paths are resolved against (the spec file's directory).
    pub base_dir: PathBuf,
    /// Continue from this checkpoint file or directory (its `latest.ckpt`).
    pub resume: Option<PathBuf>,
    /// Stop cleanly after this many optimizer steps in total, saving a checkpoint (simulates a
    /// preempted job; the run can be resumed).
    pub halt_after_steps: Option<u64>,
    /// Set from outside (e.g. on Ctrl-C) to stop after the current step, saving a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
    /// Where to train (an autodiff device is derived from it).
    pub device: Device,
    /// Identity of the run recorded in its checkpoints (a cluster job's id; `None` for
    /// `ringtrain train`), so a restarted attempt can tell its own checkpoint from another run's
    /// ([`crate::Checkpoint::latest_of_run`]).
    pub run_id: Option<String>,
    /// The process's in-memory commit of an elastic run (`parallel.elastic`; ignored
    /// otherwise): taken every `commit_every` steps and when the ranks stop together, and
    /// agreed on by the ranks before the first step (see [`crate::elastic`]), which makes the
    /// newest commit any rank holds the run's starting point, ahead of `resume`.
    pub commit: Option<Arc<crate::elastic::CommitSlot>>,
    /// Which attempt of the run this is (1 for a first start and for `ringtrain train`); names
    /// the files `checkpoint.record_samples` writes.
    pub attempt: u32,
}

/// Facts about a run, sent once before the first step.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Job name.
    pub name: String,
    /// Trainable parameters.
    pub params: usize,
    /// The model's layer stack.
    pub layers: Vec<LayerInfo>,
    /// Samples per split (train, val, test).
    pub samples: [usize; 3],
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Steps the run will take in total.
    pub total_steps: u64,
    /// Step the run starts from (non-zero when resumed).
    pub start_step: u64,
    /// What the run resumed from: a checkpoint file, or the rank whose in-memory commit an
    /// elastic run continues from (`None` for a fresh start).
    pub resumed_from: Option<String>,
    /// Checkpoint directory.
    pub checkpoint_dir: PathBuf,
}

/// Progress of one optimizer step.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent {
    /// Steps taken so far (1-based: this step's number).
    pub step: u64,
    /// Steps the run will take.
    pub total_steps: u64,
    /// Epoch (0-based).
    pub epoch: u32,
    /// Learning rate used.
    pub lr: f64,
    /// Samples in this rank's batch of the step.
    pub samples: usize,
    /// Measurements of the step.
    pub stats: StepStats,
}

/// Receives progress; the CLI draws bars and log lines from it.
pub trait Observer {
    /// Before the first step.
    fn on_start(&mut self, _info: &RunInfo) {}
    /// Before every optimizer step (1-based number of the step about to run), e.g. to open a
    /// tracing span that covers it.
    fn on_step_start(&mut self, _step: u64) {}
    /// After every optimizer step.
    fn on_step(&mut self, _event: &StepEvent) {}
    /// After every epoch's evaluation.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
    /// After a checkpoint file is written (by rank 0 only in a distributed run).
    fn on_checkpoint(&mut self, _path: &Path) {}
    /// After each timed phase (for timelines): a step's compute, all-reduce and update, an
    /// evaluation, a checksum, the initial broadcast.
    fn on_span(&mut self, _span: &PhaseSpan) {}
    /// After every optimizer step of a pipelined run: this stage's busy and idle time, bubble
    /// fraction, bytes sent and in-flight activations.
    fn on_pipeline_step(&mut self, _stats: &PipelineStepStats) {}
}

/// A timed phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Forward and backward of one step.
    Compute,
    /// Gradient exchange of one step (the all-reduce; instantaneous in one process).
    AllReduce,
    /// Clipping, optimizer step and model reload of one step.
    Update,
    /// Evaluation of a split.
    Eval,
    /// Parameter checksum comparison between replicas.
    Checksum,
    /// Broadcast of rank 0's initial parameters.
    Broadcast,
}

impl Phase {
    /// Lower-case name (`compute`, `allreduce`, `update`, `eval`, `checksum`, `broadcast`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Compute => "compute",
            Phase::AllReduce => "allreduce",
            Phase::Update => "update",
            Phase::Eval => "eval",
            Phase::Checksum => "checksum",
            Phase::Broadcast => "broadcast",
        }
    }
}

/// One timed phase on the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct PhaseSpan {
    /// What ran.
    pub phase: Phase,
    /// Optimizer step it belongs to (for evaluations and checksums: the steps taken so far).
    pub step: u64,
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All epochs done.
    Completed,
    /// `train.max_steps` reached.
    MaxSteps,
    /// The monitored metric stopped improving.
    EarlyStopping,
    /// `halt_after_steps` reached (resumable).
    Halted,
    /// Stopped from outside (resumable).
    Interrupted,
}

impl StopReason {
    /// Whether the run is over for good (a halted or interrupted run can be resumed).
    pub fn is_final(self) -> bool {
        !matches!(self, StopReason::Halted | StopReason::Interrupted)
    }
}

/// Outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// Job name.
    pub name: String,
    /// Why it ended.
    pub stop: StopReason,
    /// Steps taken.
    pub steps: u64,
    /// Epoch summaries.
    pub history: Vec<EpochRecord>,
    /// Epoch whose parameters were evaluated on the test split (the best one when validation
    /// exists, else the last).
    pub evaluated_epoch: Option<u32>,
    /// Final validation metrics (of the evaluated parameters).
    pub val: Option<EvalReport>,
    /// Test metrics (of the evaluated parameters).
    pub test: Option<EvalReport>,
    /// Directory holding the checkpoints and `metrics.json`.
    pub checkpoint_dir: PathBuf,
    /// Mean training throughput in samples per second (over all replicas).
    pub samples_per_sec: f64,
    /// Final flat parameters (not serialized: they are in the checkpoint).
    #[serde(skip)]
    pub params: Vec<f32>,
}

/// Trains `spec` in this process (the same numerics as a one-worker job).
///
/// # Errors
/// Data, model, checkpoint and divergence errors as [`TrainError`] describes them.
pub fn train(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
) -> Result<TrainReport, TrainError> {
    run(
        spec,
        opts,
        observer,
        &mut Solo::new(),
        &DistOptions::default(),
        None,
    )
}

/// [`train`] with a gradient hook between backward and the optimizer.
///
/// # Errors
/// As [`train`], plus [`TrainError::Collective`] carrying the hook's message when it fails.
pub fn train_with_hook(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
    hook: &mut dyn GradientHook,
) -> Result<TrainReport, TrainError> {
    run(
        spec,
        opts,
        observer,
        &mut Solo::with_hook(hook),
        &DistOptions::default(),
        None,
    )
}

/// Settings of a data-parallel run that are not in the spec.
#[derive(Debug, Clone, Default)]
pub struct DistOptions {
    /// Every this many optimizer steps (and once at the end of training) the replicas compare a
    /// checksum of their parameters and fail with [`TrainError::ReplicasDiverged`] if they differ
    /// (0 = never). In a pipeline the replicas of each stage compare that stage's parameter
    /// slice, the only part a rank holds.
    pub checksum_every: u64,
}

/// Trains `spec` as one replica of `group` (DESIGN.md, "Data parallelism").
///
/// - `train.batch_size` is the global batch: every rank takes `batch_size / world` samples per
///   step, rank `r` the `r`-th block of the shard plan's global step. With the mean of the
///   gradients (what [`Group::mean_gradients`] must compute), `world` replicas therefore follow
///   one process training the same spec with [`train`], up to float rounding. A class-weighted
///   loss is a weighted mean whose weight differs between the replicas' blocks: there each
///   replica's gradient and loss enter the mean weighted by its block's weight sum, so the result
///   is again the whole batch's weighted mean (the reported training loss too).
/// - Rank 0's initial parameters are broadcast; replicas then stay bit-identical, which
///   [`DistOptions::checksum_every`] checks.
/// - Validation and test splits are sharded across the ranks and their metric sums added, so
///   every rank sees the same metrics and takes the same early-stopping decisions.
/// - Only rank 0 writes checkpoints and `metrics.json`; every rank returns the full report (the
///   best parameters are kept in memory for the final evaluation).
/// - [`TrainOptions::stop`] is a vote: the ranks exchange it with every gradient and all stop
///   after the same step once any rank set it.
/// - Resuming works when every rank can read the checkpoint `opts.resume` names (a shared file
///   system): all ranks load it, then rank 0's parameters are broadcast.
///
/// # Errors
/// As [`train`], plus [`TrainError::BatchNotDivisible`], [`TrainError::Collective`] (a lost
/// peer, a deadline; the source names the blamed rank) and [`TrainError::ReplicasDiverged`].
pub fn train_distributed(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
    group: &mut dyn Group,
    dist: &DistOptions,
) -> Result<TrainReport, TrainError> {
    run(spec, opts, observer, group, dist, None)
}

/// Trains `spec` as stage `link.stage()` of data-parallel replica `stage_group.rank()` of a
/// pipelined job (`parallel.pipeline = link.stages()` stages, `stage_group.world()` replicas).
///
/// `stage_group` holds the ranks that run the same stage in every replica (its rank is the
/// replica index, so the data sharding of [`crate::train_distributed`] applies unchanged);
/// `link` connects the stages of this replica. Everything else is as in
/// [`crate::train_distributed`]: the same sample order, checkpoints written by stage 0 of
/// replica 0 only, every rank returning the full report (the whole final parameters included,
/// all-gathered once at the end). See the module docs for what is exchanged and what is split.
///
/// # Errors
/// As [`crate::train_distributed`], plus [`crate::TrainError::Pipeline`] when the stages cannot
/// be planned, `link.stages()` differs from `parallel.pipeline`, the per-replica batch does not
/// split into `parallel.microbatches`, or a transfer between stages fails (naming the stage).
pub fn train_pipelined(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
    stage_group: &mut dyn Group,
    link: &mut dyn StageLink,
    dist: &DistOptions,
) -> Result<TrainReport, TrainError> {
    run(spec, opts, observer, stage_group, dist, Some(link))
}

/// Samples per step of one replica: the spec's global batch split over `world` replicas.
///
/// # Errors
/// [`TrainError::BatchNotDivisible`] when `world` does not divide `train.batch_size`.
pub fn per_rank_batch(spec: &JobSpec, world: usize) -> Result<usize, TrainError> {
    let batch = spec.train.batch_size;
    if world == 0 || !batch.is_multiple_of(world) {
        return Err(TrainError::BatchNotDivisible { batch, world });
    }
    Ok(batch / world)
}

/// Reports the phases of one step on the wall clock, in the order they ran.
fn emit_step_spans(observer: &mut dyn Observer, step: u64, start: SystemTime, stats: &StepStats) {
    let phases = [
        (Phase::Compute, stats.compute),
        (Phase::AllReduce, stats.communication),
        (Phase::Update, stats.update),
    ];
    let mut at = start;
    for (phase, duration) in phases {
        observer.on_span(&PhaseSpan {
            phase,
            step,
            start: at,
            duration,
        });
        at += duration;
    }
}

pub(crate) use crate::error::collective;

/// The loop: set up, steps until the epoch ends or the run stops, the epoch's end, and the
/// run's end.
fn run<'a>(
    spec: &'a JobSpec,
    opts: &'a TrainOptions,
    observer: &'a mut dyn Observer,
    group: &'a mut dyn Group,
    dist: &'a DistOptions,
    link: Option<&'a mut dyn StageLink>,
) -> Result<TrainReport, TrainError> {
    let mut run = Run::new(spec, opts, observer, group, dist, link)?;
    while run.stop.is_none() && run.progress.epoch < spec.train.epochs {
        let plan = run.plan(run.progress.epoch)?;
        if run.progress.batch_in_epoch == 0 {
            run.carried = None;
        }
        while run.progress.batch_in_epoch < run.steps_per_epoch {
            if run.progress.step >= run.total_steps {
                run.stop = Some(StopReason::MaxSteps);
                break;
            }
            run.step(&plan)?;
            if run.stop.is_some() {
                break;
            }
        }
        if !run.end_epoch()? {
            break;
        }
    }
    run.finish()
}
