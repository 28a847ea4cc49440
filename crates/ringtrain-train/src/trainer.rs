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

use crate::checkpoint::{self, Checkpoint, EarlyStopState, EpochRecord, Header, Progress};
use crate::error::TrainError;
use crate::evaluate::evaluate_distributed;
use crate::group::{Group, GroupError, Solo, param_checksum};
use crate::learner::{Computed, GradientHook, Learner, StepStats};
use crate::metrics::improved;
use crate::optim::Optimizer;
use crate::optim::OptimizerState;
use crate::pipeline::shard::Trainee;
use crate::pipeline::{
    PipelineError, PipelineStepStats, StageEngine, StageFootprint, StageLearner, StageLink,
    StagePlan, micro_weights,
};
use crate::report::EvalReport;
use crate::schedule::lr_at;
use crate::task::TaskData;
use crate::tensors::Targets;
use burn::prelude::*;
use ringtrain_core::{Epoch, Rank};
use ringtrain_data::{Fitted, ShardPlan, SplitName};
use ringtrain_models::{ForwardCtx, LayerInfo, Model, flat};
use ringtrain_spec::{JobSpec, MonitorMetric};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

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
    /// ([`Checkpoint::latest_of_run`]).
    pub run_id: Option<String>,
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

/// [`crate::pipeline::train_pipelined`]: the loop of [`train_distributed`] with each step's
/// gradients computed by this rank's pipeline stage.
pub(crate) fn run_pipelined(
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

fn collective(what: impl Into<String>) -> impl FnOnce(GroupError) -> TrainError {
    let what = what.into();
    move |source| TrainError::Collective { what, source }
}

/// This replica's weight in the mean over the replicas of a step, when it is not the same on
/// every replica: the sum of its samples' loss weights ([`TaskData::sample_weights`]) for a
/// class-weighted loss in a group of several replicas. `None` (a plain mean) for one process,
/// whose numerics this leaves untouched, and for losses where every sample weighs the same:
/// every replica has `batch / world` samples, so the plain mean is already the batch mean.
fn replica_weight(task: &TaskData, targets: &Targets, world: usize) -> Option<f32> {
    if world <= 1 {
        return None;
    }
    task.sample_weights(targets)
        .map(|w| w.iter().sum::<f64>() as f32)
}

/// Averages `grads` and `[loss, stop vote]` over the replicas of `group`.
///
/// A replica's loss (and so its gradient) is a weighted mean `Σ_local w·l / S_r` over its own
/// samples, with `S_r` its weight sum. The whole batch's loss is `Σ_r S_r·L_r / Σ_r S_r`, so with
/// `weight = Some(S_r)` the gradient and loss are multiplied by `S_r` before the mean, `S_r`
/// travels with them as a third scalar, and the means are divided by the mean of the `S_r`.
/// With `None` this is the plain mean (the stop vote is averaged either way: > 0 when any
/// replica voted).
fn mean_over_replicas(
    group: &mut dyn Group,
    step: u64,
    grads: &mut [f32],
    [loss, stop]: [f32; 2],
    weight: Option<f32>,
) -> Result<[f32; 2], GroupError> {
    let Some(weight) = weight else {
        let mut extras = [loss, stop];
        group.mean_gradients(step, grads, &mut extras)?;
        return Ok(extras);
    };
    grads.iter_mut().for_each(|g| *g *= weight);
    let mut extras = [loss * weight, stop, weight];
    group.mean_gradients(step, grads, &mut extras)?;
    // Class weights are > 0 (the spec checks), so every replica's sum, and their mean, is too.
    let total = extras[2];
    grads.iter_mut().for_each(|g| *g /= total);
    Ok([extras[0] / total, extras[1]])
}

/// Compares every rank's parameter checksum after `step`.
fn check_replicas(
    group: &mut dyn Group,
    params: &[f32],
    step: u64,
    observer: &mut dyn Observer,
) -> Result<(), TrainError> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let mine = param_checksum(params);
    let all = group
        .all_gather_f64(&[f64::from(mine)])
        .map_err(collective(format!("parameter checksum at step {step}")))?;
    let checksums: Vec<u32> = all.iter().map(|&c| c as u32).collect();
    observer.on_span(&PhaseSpan {
        phase: Phase::Checksum,
        step,
        start: started,
        duration: clock.elapsed(),
    });
    let differing: Vec<usize> = (1..checksums.len())
        .filter(|&r| checksums[r] != checksums[0])
        .collect();
    if differing.is_empty() {
        Ok(())
    } else {
        Err(TrainError::ReplicasDiverged {
            step,
            differing,
            checksums,
        })
    }
}

fn run(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
    group: &mut dyn Group,
    dist: &DistOptions,
    link: Option<&mut dyn StageLink>,
) -> Result<TrainReport, TrainError> {
    let world = group.world();
    let rank = group.rank();
    // Rank 0 alone writes files: the replicas are identical, and they may share a directory.
    // In a pipeline the stages of replica 0 gather their slices to stage 0, which writes.
    let lead = rank == 0 && link.as_ref().is_none_or(|l| l.stage() == 0);
    let pipelined = link.is_some();
    let batch = per_rank_batch(spec, world)?;
    let resumed = match &opts.resume {
        Some(p) => {
            // The submitted spec's limits bound the checkpoint's spec too: a checkpoint cannot
            // raise them. A directory falls back to previous.ckpt when latest.ckpt is corrupt.
            let (ckpt, path) = if p.is_dir() {
                Checkpoint::load_latest(p, &spec.limits)?
            } else {
                (Checkpoint::load_within(p, &spec.limits)?, p.clone())
            };
            ckpt.check_compatible(spec, &path)?;
            Some(ckpt)
        }
        None => None,
    };
    let fitted = resumed.as_ref().map(|c| &c.header.fitted);
    let data = ringtrain_data::load_with(spec, &opts.base_dir, fitted)?;
    let fitted: Fitted = data.fitted();
    let task = TaskData::new(spec, data)?;
    // Validation allows only the kind's metrics; this keeps a kind added without updating it
    // from never stopping early.
    if let Some(e) = spec.train.early_stopping {
        if !task.task().monitored_metrics().contains(&e.metric) {
            return Err(TrainError::UnsupportedMonitor {
                metric: e.metric,
                task: task.task().kind(),
            });
        }
    }
    let n_train = task.len(SplitName::Train);
    if n_train == 0 {
        return Err(TrainError::EmptySplit {
            split: "train",
            hint: "the dataset yields no training samples; add rows or raise data.split.train"
                .into(),
        });
    }
    let has_val = task.len(SplitName::Val) > 0;
    let has_test = task.len(SplitName::Test) > 0;

    let train_device = opts.device.clone().autodiff();
    let eval_device = opts.device.clone();
    let build = |device: &Device| {
        Model::new(
            &spec.model,
            task.input_kind(),
            task.head_kind(),
            spec.seed,
            device,
        )
    };
    let model = build(&train_device)?;
    let layers = model.layer_infos();
    let n_params = flat::param_count(&model);
    let engine = match &link {
        None => None,
        Some(link) => {
            let p = spec.parallel.pipeline;
            if link.stages() != p {
                return Err(PipelineError::Setup(format!(
                    "the stage link connects {} stages but parallel.pipeline = {p}",
                    link.stages()
                ))
                .into());
            }
            let plan = StagePlan::new(&layers, p, spec.parallel.stages.as_deref())
                .map_err(PipelineError::from)?;
            let m = spec.parallel.microbatches;
            if !batch.is_multiple_of(m) {
                return Err(PipelineError::Setup(format!(
                    "parallel.microbatches = {m} must divide the per-replica batch {batch}"
                ))
                .into());
            }
            if link.stage() == 0 && rank == 0 {
                for line in plan.describe() {
                    tracing::info!(plan = %line, "pipeline stage");
                }
            }
            let f = StageFootprint::of(&plan, link.stage(), world, &spec.train.optimizer);
            tracing::info!(
                stage = f.stage,
                replica = rank,
                params = f.params,
                model_params = f.model_params,
                state_bytes = f.state_bytes,
                full_state_bytes = f.full_state_bytes,
                allreduce_bytes_per_step = f.allreduce_bytes,
                gather_bytes_per_step = f.gather_bytes,
                full_gather_bytes_per_step = f.full_gather_bytes,
                "pipeline stage keeps {} of {} parameters: {} bytes of parameters and optimizer \
                 state (the whole model: {}); per step it all-reduces {} bytes among {} replicas \
                 and all-gathers {} bytes among the stages (whole-gradient all-gather: {})",
                f.params,
                f.model_params,
                f.state_bytes,
                f.full_state_bytes,
                f.allreduce_bytes,
                world,
                f.gather_bytes,
                f.full_gather_bytes
            );
            Some(StageEngine::new(
                plan,
                link.stage(),
                m,
                spec.parallel.schedule,
            )?)
        }
    };
    let (mut progress, mut early, mut history) = match &resumed {
        Some(c) => (
            c.header.progress.clone(),
            c.header.early_stop.clone(),
            c.header.history.clone(),
        ),
        None => (Progress::default(), EarlyStopState::default(), Vec::new()),
    };
    // A pipeline stage builds (or cuts from the checkpoint) only its slice of the optimizer.
    let mut learner = match (engine, link) {
        (Some(engine), Some(link)) => Trainee::Stage(StageLearner::new(
            engine,
            link,
            model,
            resumed
                .as_ref()
                .map(|c| (c.params.as_slice(), &c.optimizer)),
            &spec.train.optimizer,
            spec.train.clip,
        )?),
        _ => {
            let optimizer = match &resumed {
                Some(c) => {
                    Optimizer::from_state(&spec.train.optimizer, n_params, c.optimizer.clone())?
                }
                None => Optimizer::new(&spec.train.optimizer, n_params),
            };
            let mut learner = Learner::new(model, optimizer, spec.train.clip)?;
            if let Some(c) = &resumed {
                learner.set_params(c.params.clone())?;
            }
            Trainee::Whole(learner)
        }
    };
    // A language model resumed mid-epoch continues its streams from the carried state the
    // checkpoint holds (in one process's layout, see `carried_for_checkpoint`): this rank's
    // block of the streams, whatever number of ranks wrote it.
    let resumed_carried = match (&resumed, &learner) {
        (Some(c), Trainee::Whole(l)) if !c.carried.is_empty() && progress.batch_in_epoch > 0 => {
            let zero = l.model().zero_state(batch);
            let segments = state_segments(&zero);
            let state = streams_to_rank(&c.carried, &segments, world, rank)
                .ok_or_else(|| {
                    format!(
                        "{} values, but {world} rank(s) of {batch} streams hold {}",
                        c.carried.len(),
                        world * segments.iter().sum::<usize>()
                    )
                })
                .and_then(|part| zero.with_flat(&part).map_err(|e| e.to_string()));
            match state {
                Ok(s) => Some(s),
                Err(why) => {
                    // E.g. resumed with another batch_size: the streams differ.
                    tracing::warn!(%why, "the checkpoint's carried state does not fit this run: its streams restart from the zero state");
                    None
                }
            }
        }
        _ => None,
    };
    // The checkpoint's whole parameters and optimizer state are in the learner (or, for a
    // pipeline stage, its slices are): not kept for the rest of the run.
    let fresh = resumed.is_none();
    drop(resumed);
    if world > 1 {
        // Every rank initializes from the same seed, but rank 0's values are the contract (in a
        // pipeline: replica 0's values of each stage's slice).
        let started = SystemTime::now();
        let clock = Instant::now();
        let mut params = learner.params().to_vec();
        group
            .broadcast_params(&mut params)
            .map_err(collective("broadcast of the initial parameters"))?;
        learner.set_params(params)?;
        observer.on_span(&PhaseSpan {
            phase: Phase::Broadcast,
            step: progress.step,
            start: started,
            duration: clock.elapsed(),
        });
    }
    // A pipeline stage holds the whole model only while it evaluates: its evaluation model is
    // built for each evaluation and dropped after (a whole model kept for the run would undo
    // part of what stage-local state saves).
    let mut eval_model = if pipelined {
        None
    } else {
        Some(build(&eval_device)?)
    };

    // A language model's windows are consecutive chunks of its streams: taken in order, never
    // shuffled (crate::lm explains the layout).
    let language_model = task.carries_state();
    let plan_for = |epoch: u32| -> Result<ShardPlan, TrainError> {
        Ok(ShardPlan::new(
            n_train,
            spec.seed,
            Epoch(epoch),
            world,
            batch,
            !language_model,
        )?)
    };
    let steps_per_epoch = plan_for(0)?.steps_per_epoch();
    let budget = u64::from(spec.train.epochs) * steps_per_epoch as u64;
    let total_steps = spec.train.max_steps.map_or(budget, |m| m.min(budget));
    let dir = spec.checkpoint.dir.clone();
    if fresh && lead {
        // A fresh run owns its directory: a best.ckpt or metrics.json left by an earlier run
        // would otherwise be taken for this run's by `eval` and `predict`.
        for stale in [checkpoint::BEST, "metrics.json"] {
            let path = dir.join(stale);
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|source| checkpoint::CheckpointError::Io {
                    path: path.clone(),
                    source,
                })?;
                tracing::info!(path = %path.display(), "removed a checkpoint of an earlier run");
            }
        }
    }
    observer.on_start(&RunInfo {
        name: spec.name.clone(),
        params: n_params,
        layers,
        samples: [n_train, task.len(SplitName::Val), task.len(SplitName::Test)],
        steps_per_epoch,
        total_steps,
        start_step: progress.step,
        checkpoint_dir: dir.clone(),
    });

    let save = |(params, optimizer): (Vec<f32>, OptimizerState),
                file: &str,
                progress: &Progress,
                early: &EarlyStopState,
                history: &[EpochRecord],
                carried: Vec<f32>|
     -> Result<PathBuf, TrainError> {
        let path = dir.join(file);
        Checkpoint {
            header: Header {
                format_version: checkpoint::FORMAT_VERSION,
                writer: format!("ringtrain {}", env!("CARGO_PKG_VERSION")),
                spec: spec.clone(),
                fitted: fitted.clone(),
                progress: progress.clone(),
                early_stop: early.clone(),
                history: history.to_vec(),
                optimizer_kind: optimizer.kind,
                optimizer_step: optimizer.step,
                arrays: Vec::new(),
                crc32: 0,
                run_id: opts.run_id.clone(),
            },
            params,
            optimizer,
            carried,
        }
        .save(&path)?;
        Ok(path)
    };
    // Writes checkpoint `file` from the whole state, which a pipeline first gathers to stage 0
    // of replica 0 (every stage of replica 0 calls this at the same points).
    let write_checkpoint = |learner: &mut Trainee,
                            file: &str,
                            progress: &Progress,
                            early: &EarlyStopState,
                            history: &[EpochRecord],
                            carried: Vec<f32>|
     -> Result<Option<PathBuf>, TrainError> {
        match learner.for_checkpoint(lead, rank == 0)? {
            Some(whole) => Ok(Some(save(whole, file, progress, early, history, carried)?)),
            None => Ok(None),
        }
    };
    let eval_batch = spec.train.batch_size.max(64);
    let mut eval_with = |params: &[f32],
                         split: SplitName,
                         step: u64,
                         group: &mut dyn Group,
                         observer: &mut dyn Observer|
     -> Result<EvalReport, TrainError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let model = match eval_model.take() {
            Some(model) => model,
            None => build(&eval_device)?,
        };
        let model = flat::load_params(model, params)?;
        let report = evaluate_distributed(&model, &task, split, eval_batch, &eval_device, group);
        if !pipelined {
            eval_model = Some(model);
        }
        observer.on_span(&PhaseSpan {
            phase: Phase::Eval,
            step,
            start: started,
            duration: clock.elapsed(),
        });
        report
    };

    let started = Instant::now();
    let start_step = progress.step;
    let mut stop = if progress.finished {
        Some(StopReason::Completed)
    } else {
        None
    };
    let mut lr = lr_at(
        &spec.train.schedule,
        spec.train.optimizer.lr(),
        progress.step,
        total_steps,
    );
    // Parameters of the best validation epoch of this run (a resumed run's earlier best is in
    // best.ckpt).
    let mut best_params: Option<Vec<f32>> = None;
    // Truncated BPTT (language model only): this rank's streams' recurrent state, carried from
    // one step's chunk to the next, reset at each epoch start, saved with mid-epoch checkpoints
    // and taken back from them on resume.
    let mut carried: Option<ringtrain_models::RecurrentState> = resumed_carried;
    while stop.is_none() && progress.epoch < spec.train.epochs {
        let plan = plan_for(progress.epoch)?;
        if progress.batch_in_epoch == 0 {
            carried = None;
        }
        while progress.batch_in_epoch < steps_per_epoch {
            if progress.step >= total_steps {
                stop = Some(StopReason::MaxSteps);
                break;
            }
            let idx = plan.step_indices(Rank(rank as u32), progress.batch_in_epoch);
            let (inputs, targets) = task.batch(SplitName::Train, idx, &train_device);
            lr = lr_at(
                &spec.train.schedule,
                spec.train.optimizer.lr(),
                progress.step,
                total_steps,
            );
            let ctx = ForwardCtx {
                train: true,
                dropout_seed: dropout_seed(spec.seed, progress.step),
            };
            let step = progress.step + 1;
            observer.on_step_start(step);
            let step_started = SystemTime::now();
            let stop_flag = opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
            let (computed, applied, extras, communication) = match &mut learner {
                Trainee::Stage(stage) => {
                    let compute_started = Instant::now();
                    let (engine, model, link) = stage.step_parts();
                    let weights = micro_weights(&task, &targets, engine.microbatches());
                    let replica_weight = replica_weight(&task, &targets, world);
                    let out = engine
                        .step(model, link, &task, &inputs, &targets, &weights, &ctx)
                        .map_err(TrainError::from)?;
                    let compute = compute_started.elapsed();
                    let exchange_started = Instant::now();
                    let mut slice = out.grads;
                    let s = stage.engine().stage();
                    // Only the last stage has the loss; every stage has the targets, so all
                    // agree on the replica's weight.
                    let extras = mean_over_replicas(
                        group,
                        step,
                        &mut slice,
                        [out.loss, if stop_flag { 1.0 } else { 0.0 }],
                        replica_weight,
                    )
                    .map_err(collective(format!(
                        "gradient all-reduce of pipeline stage {s} at step {step}"
                    )))?;
                    let allreduce = exchange_started.elapsed();
                    let scalars = stage.clip_and_exchange(&mut slice, extras[0], extras[1])?;
                    let exchange = exchange_started.elapsed();
                    let engine = stage.engine();
                    observer.on_pipeline_step(&PipelineStepStats {
                        step,
                        stage: s,
                        stages: engine.plan().num_stages(),
                        microbatches: engine.microbatches(),
                        stats: out.stats,
                        exchange,
                        allreduce,
                        allreduce_bytes: if world > 1 {
                            // The slice, the loss and stop vote, and a replica weight if any.
                            4 * (slice.len() + 2 + usize::from(replica_weight.is_some())) as u64
                        } else {
                            0
                        },
                        replicas: world,
                    });
                    if !scalars.loss.is_finite() {
                        return Err(TrainError::Diverged {
                            step,
                            epoch: progress.epoch,
                            what: "loss",
                            value: scalars.loss,
                        });
                    }
                    let applied = stage.apply(
                        &mut slice,
                        scalars.sum_of_squares,
                        lr as f32,
                        (step, progress.epoch),
                    )?;
                    let computed = Computed {
                        loss: scalars.loss,
                        grads: Vec::new(),
                        compute,
                    };
                    (computed, applied, [scalars.loss, scalars.stop], exchange)
                }
                Trainee::Whole(learner) => {
                    let replica_weight = replica_weight(&task, &targets, world);
                    let mut computed = if language_model {
                        let (computed, state) = learner.gradients_with_state(
                            &task,
                            inputs,
                            targets,
                            carried.as_ref(),
                            &ctx,
                            (step, progress.epoch),
                        )?;
                        carried = Some(state);
                        computed
                    } else {
                        learner.gradients(&task, inputs, targets, &ctx, (step, progress.epoch))?
                    };
                    let mut grads = std::mem::take(&mut computed.grads);
                    // Averaged with the gradients: the loss over all ranks (for the epoch
                    // summary) and the stop votes (> 0 when any rank wants to stop, so all stop
                    // after this step).
                    let exchange_started = Instant::now();
                    let extras = mean_over_replicas(
                        group,
                        step,
                        &mut grads,
                        [computed.loss, if stop_flag { 1.0 } else { 0.0 }],
                        replica_weight,
                    )
                    .map_err(collective(format!("gradient all-reduce at step {step}")))?;
                    let communication = exchange_started.elapsed();
                    let applied = learner.apply(&mut grads, lr as f32, (step, progress.epoch))?;
                    (computed, applied, extras, communication)
                }
            };
            let stats = StepStats {
                loss: computed.loss,
                grad_norm: applied.grad_norm,
                compute: computed.compute,
                communication,
                update: applied.update,
            };
            progress.step = step;
            progress.batch_in_epoch += 1;
            progress.epoch_loss_sum += f64::from(extras[0]);
            progress.epoch_loss_batches += 1;
            emit_step_spans(observer, step, step_started, &stats);
            observer.on_step(&StepEvent {
                step: progress.step,
                total_steps,
                epoch: progress.epoch,
                lr,
                samples: idx.len(),
                stats,
            });
            if world > 1 && dist.checksum_every > 0 && step % dist.checksum_every == 0 {
                check_replicas(group, learner.params(), step, observer)?;
            }
            let every = spec.checkpoint.every_steps;
            if every > 0 && progress.step % every == 0 {
                let state = carried_for_checkpoint(group, carried.as_ref(), &progress)?;
                if let Some(p) = write_checkpoint(
                    &mut learner,
                    checkpoint::LATEST,
                    &progress,
                    &early,
                    &history,
                    state,
                )? {
                    observer.on_checkpoint(&p);
                }
            }
            if opts.halt_after_steps == Some(progress.step) {
                stop = Some(StopReason::Halted);
                break;
            }
            // One process checks its flag after the step; replicas act on the exchanged votes
            // so that they all stop after the same step.
            let stop_now = if world == 1 && !pipelined {
                opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            } else {
                extras[1] > 0.0
            };
            if stop_now {
                stop = Some(StopReason::Interrupted);
                break;
            }
        }
        // Stopped mid-epoch: no epoch summary yet, unless the run ends here for good at
        // `train.max_steps` — then the partial epoch is validated like a whole one, so the final
        // metrics can use the parameters trained last rather than only those of the last full
        // epoch.
        let partial = progress.batch_in_epoch < steps_per_epoch;
        if partial && !(stop == Some(StopReason::MaxSteps) && progress.batch_in_epoch > 0) {
            break;
        }
        // End of epoch: summary, validation, early stopping, checkpoints.
        let val = if has_val {
            let held = learner.params().to_vec();
            Some(eval_with(
                &learner.whole(&held)?,
                SplitName::Val,
                progress.step,
                group,
                observer,
            )?)
        } else {
            None
        };
        let record = EpochRecord {
            epoch: progress.epoch,
            step: progress.step,
            train_loss: progress.epoch_loss_sum / progress.epoch_loss_batches.max(1) as f64,
            val_loss: val.as_ref().map(|v| v.loss),
            val_metrics: val.as_ref().map(EvalReport::headline).unwrap_or_default(),
            lr,
        };
        history.push(record.clone());
        observer.on_epoch(&record);
        let monitor = spec
            .train
            .early_stopping
            .map_or(MonitorMetric::ValLoss, |e| e.metric);
        let min_delta = spec.train.early_stopping.map_or(0.0, |e| e.min_delta);
        if let Some(value) = val.as_ref().and_then(|v| v.monitored(monitor)) {
            if improved(monitor, early.best, value, min_delta) {
                early.best = Some(value);
                early.best_epoch = Some(progress.epoch);
                early.bad_epochs = 0;
                best_params = Some(learner.params().to_vec());
                let mut best_progress = progress.clone();
                best_progress.finished = true;
                write_checkpoint(
                    &mut learner,
                    checkpoint::BEST,
                    &best_progress,
                    &early,
                    &history,
                    Vec::new(),
                )?;
            } else {
                early.bad_epochs += 1;
            }
            if let Some(es) = spec.train.early_stopping
                && early.bad_epochs >= es.patience
            {
                stop = Some(StopReason::EarlyStopping);
            }
        }
        if partial {
            break; // the max_steps summary above; the position stays mid-epoch
        }
        progress.epoch += 1;
        progress.batch_in_epoch = 0;
        progress.epoch_loss_sum = 0.0;
        progress.epoch_loss_batches = 0;
        if stop.is_none()
            && progress.epoch < spec.train.epochs
            && let Some(p) = write_checkpoint(
                &mut learner,
                checkpoint::LATEST,
                &progress,
                &early,
                &history,
                Vec::new(),
            )?
        {
            observer.on_checkpoint(&p);
        }
        if stop.is_none() && (opts.halt_after_steps == Some(progress.step)) {
            stop = Some(StopReason::Halted);
        }
    }
    let stop = stop.unwrap_or(StopReason::Completed);
    progress.finished = stop.is_final();
    let final_state = carried_for_checkpoint(group, carried.as_ref(), &progress)?;
    if let Some(p) = write_checkpoint(
        &mut learner,
        checkpoint::LATEST,
        &progress,
        &early,
        &history,
        final_state,
    )? {
        observer.on_checkpoint(&p);
    }
    if world > 1 && dist.checksum_every > 0 {
        check_replicas(group, learner.params(), progress.step, observer)?;
    }

    let trained = progress.step - start_step;
    let samples_per_sec =
        trained as f64 * (batch * world) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    // A pipeline stage holds its slice: the report carries the whole parameters.
    let held = learner.params().to_vec();
    let params = learner.whole(&held)?;
    drop(held);
    if !stop.is_final() {
        return Ok(TrainReport {
            name: spec.name.clone(),
            stop,
            steps: progress.step,
            history,
            evaluated_epoch: None,
            val: None,
            test: None,
            checkpoint_dir: dir,
            samples_per_sec,
            params,
        });
    }
    // Final evaluation with the best parameters when validation picked some: this run's from
    // memory, a resumed run's earlier best from best.ckpt.
    let best_path = dir.join(checkpoint::BEST);
    let (eval_params, evaluated_epoch) = match (best_params, early.best_epoch) {
        (Some(best), Some(_)) => (learner.whole(&best)?, early.best_epoch),
        (None, Some(_)) if world > 1 || pipelined || best_path.is_file() => {
            (Checkpoint::load(&best_path)?.params, early.best_epoch)
        }
        _ => (params.clone(), history.last().map(|r| r.epoch)),
    };
    let val = if has_val {
        Some(eval_with(
            &eval_params,
            SplitName::Val,
            progress.step,
            group,
            observer,
        )?)
    } else {
        None
    };
    let test = if has_test {
        Some(eval_with(
            &eval_params,
            SplitName::Test,
            progress.step,
            group,
            observer,
        )?)
    } else {
        None
    };
    let report = TrainReport {
        name: spec.name.clone(),
        stop,
        steps: progress.step,
        history,
        evaluated_epoch,
        val,
        test,
        checkpoint_dir: dir.clone(),
        samples_per_sec,
        params,
    };
    if lead {
        write_metrics(&dir, &report)?;
    }
    Ok(report)
}

/// Reports the phases of one step on the wall clock, in the order they ran.
/// A language model's carried state for a checkpoint: every rank's streams in the layout one
/// process holding all of them has ([`ringtrain_models::RecurrentState::to_flat`] of the whole
/// batch; rank r's streams are rows block r), so a run resumed with another number of workers
/// continues every stream; empty at an epoch boundary (the next epoch starts from zeros) and for
/// other tasks. With several ranks it is a collective call, made by every rank at the same step
/// (their progress is the same).
///
/// # Errors
/// [`TrainError::Collective`] when the gather fails.
fn carried_for_checkpoint(
    group: &mut dyn Group,
    state: Option<&ringtrain_models::RecurrentState>,
    progress: &Progress,
) -> Result<Vec<f32>, TrainError> {
    let Some(state) = state.filter(|_| progress.batch_in_epoch > 0) else {
        return Ok(Vec::new());
    };
    let flat = state.to_flat();
    if group.world() == 1 {
        return Ok(flat);
    }
    let wide: Vec<f64> = flat.iter().map(|&x| f64::from(x)).collect();
    let all = group.all_gather_f64(&wide).map_err(collective(format!(
        "gathering the carried language-model state at step {}",
        progress.step
    )))?;
    // Every value came in as an f32: the round trip is exact.
    let all: Vec<f32> = all.into_iter().map(|x| x as f32).collect();
    Ok(ranks_to_streams(
        &all,
        &state_segments(state),
        group.world(),
    ))
}

/// Lengths of the segments of a state's flat layout: `h`, then `c` (LSTM), per recurrent layer
/// and direction, each `[B, H]` row-major with one row per stream.
fn state_segments(state: &ringtrain_models::RecurrentState) -> Vec<usize> {
    let mut out = Vec::new();
    for cell in state.layers.iter().flatten() {
        out.push(cell.h.len());
        if let Some(c) = &cell.c {
            out.push(c.len());
        }
    }
    out
}

/// Every rank's flat state, gathered rank-major (`segments` per rank), in the layout of one
/// process holding all the streams: per segment, the ranks' rows in rank order.
fn ranks_to_streams(all: &[f32], segments: &[usize], world: usize) -> Vec<f32> {
    let per_rank: usize = segments.iter().sum();
    let mut out = Vec::with_capacity(all.len());
    let mut offset = 0;
    for &len in segments {
        for r in 0..world {
            let at = r * per_rank + offset;
            out.extend_from_slice(&all[at..at + len]);
        }
        offset += len;
    }
    out
}

/// Rank `rank`'s part (its block of streams, `segments` being its own state's) of a state in the
/// layout of [`ranks_to_streams`]; `None` when `flat` is not `world` ranks' worth.
fn streams_to_rank(
    flat: &[f32],
    segments: &[usize],
    world: usize,
    rank: usize,
) -> Option<Vec<f32>> {
    if flat.len() != world * segments.iter().sum::<usize>() {
        return None;
    }
    let mut out = Vec::with_capacity(flat.len() / world.max(1));
    let mut offset = 0;
    for &len in segments {
        let at = offset + rank * len;
        out.extend_from_slice(&flat[at..at + len]);
        offset += world * len;
    }
    Some(out)
}

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

/// The dropout stream of optimizer step `step`: a pure function of (seed, step), so a resumed
/// run draws the same masks.
pub fn dropout_seed(seed: u64, step: u64) -> u64 {
    // SplitMix64 finalizer: decorrelates consecutive steps.
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn write_metrics(dir: &Path, report: &TrainReport) -> Result<(), TrainError> {
    let path = dir.join("metrics.json");
    let io = |source| checkpoint::CheckpointError::Io {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = dir.join("metrics.json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod carried_layout_tests {
    use super::{ranks_to_streams, streams_to_rank};

    /// Two ranks of 2 streams each, state segments `h` (2 streams × 3) and `c` (2 × 3): the
    /// checkpoint layout is one process's 4 streams; any world size takes its rows back.
    #[test]
    fn the_checkpoint_layout_is_one_process_layout() {
        let segments = [6, 6];
        // Rank r, segment s, value v: 100 r + 10 s + v.
        let rank = |r: usize| -> Vec<f32> {
            (0..2)
                .flat_map(|s| (0..6).map(move |v| (100 * r + 10 * s + v) as f32))
                .collect()
        };
        let gathered = [rank(0), rank(1)].concat();
        let flat = ranks_to_streams(&gathered, &segments, 2);
        let h: Vec<f32> = [&rank(0)[..6], &rank(1)[..6]].concat();
        let c: Vec<f32> = [&rank(0)[6..], &rank(1)[6..]].concat();
        assert_eq!(flat, [h.clone(), c.clone()].concat());
        assert_eq!(streams_to_rank(&flat, &segments, 2, 1), Some(rank(1)));
        // One process takes all 4 streams as they are; four ranks take one stream each.
        assert_eq!(streams_to_rank(&flat, &[12, 12], 1, 0), Some(flat.clone()));
        assert_eq!(
            streams_to_rank(&flat, &[3, 3], 4, 2),
            Some([&h[6..9], &c[6..9]].concat())
        );
        assert_eq!(ranks_to_streams(&flat, &[12, 12], 1), flat);
        assert_eq!(streams_to_rank(&flat, &[6, 6], 3, 0), None);
    }
}
