//! Setting a run up: resume from a checkpoint, prepare the data and the task, build the model
//! (with the layers `init_from` takes from another checkpoint) and the learner (the whole
//! model, or this rank's pipeline stage), take the carried state back, agree on the initial
//! parameters, and clear what an earlier run left — everything the loop's state ([`Run`])
//! holds before the first step.

use super::carried::{state_segments, streams_to_rank};
use super::checkpointer::Checkpointer;
use super::trainee::Trainee;
use super::{
    DistOptions, Observer, Phase, PhaseSpan, RunInfo, StopReason, TrainOptions, collective,
    per_rank_batch,
};
use crate::checkpoint::{self, Checkpoint, EarlyStopState, EpochRecord, Progress};
use crate::error::TrainError;
use crate::evaluate::evaluate_distributed;
use crate::group::Group;
use crate::learner::Learner;
use crate::optim::{Optimizer, ParamGroups};
use crate::pipeline::shard::StageLearner;
use crate::pipeline::{PipelineError, StageEngine, StageFootprint, StageLink, StagePlan};
use crate::report::EvalReport;
use crate::schedule::lr_at;
use crate::task::TaskData;
use crate::transfer::{self, Pretrained};
use burn::prelude::*;
use ringtrain_core::Epoch;
use ringtrain_data::{Fitted, ShardPlan, SplitName, Vocab};
use ringtrain_models::{Model, RecurrentState, flat};
use ringtrain_spec::JobSpec;
use std::time::{Instant, SystemTime};

/// The state of a run between steps.
pub(super) struct Run<'a> {
    pub spec: &'a JobSpec,
    pub opts: &'a TrainOptions,
    pub dist: &'a DistOptions,
    pub observer: &'a mut dyn Observer,
    pub group: &'a mut dyn Group,
    pub world: usize,
    pub rank: usize,
    /// This rank writes files (rank 0; in a pipeline, stage 0 of replica 0).
    pub lead: bool,
    pub pipelined: bool,
    /// Samples per step of this replica.
    pub batch: usize,
    pub task: TaskData,
    pub train_device: Device,
    pub learner: Box<dyn Trainee + 'a>,
    pub evaluator: Evaluator,
    pub checkpointer: Checkpointer,
    pub n_train: usize,
    pub has_val: bool,
    pub has_test: bool,
    pub steps_per_epoch: usize,
    pub total_steps: u64,
    pub progress: Progress,
    pub early: EarlyStopState,
    pub history: Vec<EpochRecord>,
    /// Parameters of the best validation epoch of this run (a resumed run's earlier best is in
    /// best.ckpt).
    pub best_params: Option<Vec<f32>>,
    /// Truncated BPTT (language model only): this rank's streams' recurrent state, carried
    /// from one step's chunk to the next, reset at each epoch start, saved with mid-epoch
    /// checkpoints and taken back from them on resume.
    pub carried: Option<RecurrentState>,
    pub lr: f64,
    pub stop: Option<StopReason>,
    pub started: Instant,
    pub start_step: u64,
    /// `checkpoint.record_samples`: where this rank appends the sample ids of its steps.
    pub samples_log: Option<super::samples::SampleLog>,
}

/// Builds evaluation models and scores splits with them.
pub(super) struct Evaluator {
    device: Device,
    batch: usize,
    /// Kept between evaluations, except by a pipeline stage: it holds the whole model only
    /// while it evaluates (a whole model kept for the run would undo part of what stage-local
    /// state saves).
    model: Option<Model>,
    keep: bool,
}

impl Evaluator {
    /// Scores `split` with the whole parameters `params` across `group`.
    ///
    /// # Errors
    /// Model and evaluation errors.
    pub fn eval(
        &mut self,
        (spec, task): (&JobSpec, &TaskData),
        params: &[f32],
        split: SplitName,
        step: u64,
        group: &mut dyn Group,
        observer: &mut dyn Observer,
    ) -> Result<EvalReport, TrainError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let model = match self.model.take() {
            Some(model) => model,
            None => build(spec, task, &self.device)?,
        };
        let model = flat::load_params(model, params)?;
        let report = evaluate_distributed(&model, task, split, self.batch, &self.device, group);
        if self.keep {
            self.model = Some(model);
        }
        observer.on_span(&PhaseSpan {
            phase: Phase::Eval,
            step,
            start: started,
            duration: clock.elapsed(),
        });
        report
    }
}

/// The task's model for `spec` on `device`, initialized from the seed.
fn build(spec: &JobSpec, task: &TaskData, device: &Device) -> Result<Model, TrainError> {
    let model = Model::new(
        &spec.model,
        task.input_kind(),
        task.head_kind(),
        spec.seed,
        device,
    )?;
    Ok(if task.zero_head() {
        model.with_zero_head()
    } else {
        model
    })
}

impl<'a> Run<'a> {
    /// Sets the run up (see the module docs).
    ///
    /// # Errors
    /// Checkpoint, data, model, pipeline-plan and collective errors.
    pub fn new(
        spec: &'a JobSpec,
        opts: &'a TrainOptions,
        observer: &'a mut dyn Observer,
        group: &'a mut dyn Group,
        dist: &'a DistOptions,
        link: Option<&'a mut dyn StageLink>,
    ) -> Result<Run<'a>, TrainError> {
        let world = group.world();
        let rank = group.rank();
        // Rank 0 alone writes files: the replicas are identical, and they may share a
        // directory. In a pipeline the stages of replica 0 gather their slices to stage 0,
        // which writes.
        let lead = rank == 0 && link.as_ref().is_none_or(|l| l.stage() == 0);
        let pipelined = link.is_some();
        let batch = per_rank_batch(spec, world)?;
        // An elastic run continues from the newest in-memory commit any rank holds (a
        // collective call of every rank, before anything else is exchanged); without one,
        // from the checkpoint file as any run.
        let agreed = match (&opts.commit, spec.parallel.elastic) {
            (Some(slot), Some(_)) if !pipelined => {
                crate::elastic::agree(group, slot, opts.run_id.as_deref(), &spec.limits)?
            }
            _ => None,
        };
        let mut resumed_from = None;
        let resumed = match (agreed, &opts.resume) {
            (Some(a), _) => {
                let origin = std::path::PathBuf::from(format!(
                    "<in-memory commit of rank {} at step {}>",
                    a.holder, a.step
                ));
                a.checkpoint.check_compatible(spec, &origin)?;
                tracing::info!(
                    step = a.step,
                    holder = a.holder,
                    holders = a.holders,
                    world,
                    "elastic: continuing from rank {}'s in-memory commit of step {} ({} of {world} \
                     ranks held a commit of this job)",
                    a.holder,
                    a.step,
                    a.holders
                );
                resumed_from = Some(format!(
                    "rank {}'s in-memory commit of step {} (elastic; {} of {world} ranks held one)",
                    a.holder, a.step, a.holders
                ));
                Some(a.checkpoint)
            }
            (None, Some(p)) => {
                // The submitted spec's limits bound the checkpoint's spec too: a checkpoint
                // cannot raise them. A directory falls back to previous.ckpt when latest.ckpt
                // is corrupt.
                let (ckpt, path) = if p.is_dir() {
                    Checkpoint::load_latest(p, &spec.limits)?
                } else {
                    (Checkpoint::load_within(p, &spec.limits)?, p.clone())
                };
                ckpt.check_compatible(spec, &path)?;
                resumed_from = Some(format!("checkpoint {}", path.display()));
                Some(ckpt)
            }
            (None, None) => None,
        };
        // init_from: a fresh run loads the taken layers (and, with the embedding, encodes its
        // data with the checkpoint's vocabulary); a resumed one has both in its own checkpoint
        // and re-reads the source only to find the taken layers' positions for their groups.
        let pretrained = match &spec.init_from {
            Some(init) if resumed.is_none() || init.freeze_epochs > 0 || init.lr_scale != 1.0 => {
                Some(Pretrained::open(init, &spec.limits, &opts.device)?)
            }
            _ => None,
        };
        let vocab = match (&pretrained, &spec.init_from, &resumed) {
            (Some(p), Some(init), None) => p.vocabulary(init, spec)?,
            _ => None,
        };
        let data = match &vocab {
            Some(v) => ringtrain_data::load_with_vocab(spec, &opts.base_dir, v)?,
            None => {
                let fitted = resumed.as_ref().map(|c| &c.header.fitted);
                ringtrain_data::load_with(spec, &opts.base_dir, fitted)?
            }
        };
        let fitted: Fitted = data.fitted();
        let task = TaskData::new(spec, data)?;
        // Validation allows only the kind's metrics; this keeps a kind added without updating
        // it from never stopping early.
        if let Some(e) = spec.train.early_stopping
            && !task.task().monitored_metrics().contains(&e.metric)
        {
            return Err(TrainError::UnsupportedMonitor {
                metric: e.metric,
                task: task.task().kind().name(),
            });
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
        let mut model = build(spec, &task, &train_device)?;
        let mut groups = ParamGroups::default();
        if let (Some(p), Some(init)) = (&pretrained, &spec.init_from) {
            let taken = p.select(init, &model)?;
            if resumed.is_none() {
                model = p.load(model, &taken)?;
                if lead {
                    let names: Vec<&str> = taken.iter().map(|t| t.name.as_str()).collect();
                    tracing::info!(
                        checkpoint = %p.path().display(),
                        layers = %names.join(", "),
                        vocabulary = vocab.as_ref().map(Vocab::len),
                        "init_from: layers taken from the checkpoint"
                    );
                }
            }
            groups = transfer::groups(init, &taken);
        }
        drop(pretrained);
        let layers = model.layer_infos();
        let n_params = flat::param_count(&model);
        let (progress, early, history) = match &resumed {
            Some(c) => (
                c.header.progress.clone(),
                c.header.early_stop.clone(),
                c.header.history.clone(),
            ),
            None => (Progress::default(), EarlyStopState::default(), Vec::new()),
        };
        // A pipeline stage builds (or cuts from the checkpoint) only its slice of the
        // optimizer.
        let mut learner: Box<dyn Trainee + 'a> = match link {
            Some(link) => {
                let engine = stage_engine(spec, &layers, &*link, batch, rank, world)?;
                let mut stage = StageLearner::new(
                    engine,
                    link,
                    model,
                    resumed
                        .as_ref()
                        .map(|c| (c.params.as_slice(), &c.optimizer)),
                    &spec.train.optimizer,
                    spec.train.clip,
                )?;
                stage.set_groups(&groups);
                Box::new(stage)
            }
            None => {
                let optimizer = match &resumed {
                    Some(c) => {
                        Optimizer::from_state(&spec.train.optimizer, n_params, c.optimizer.clone())?
                    }
                    None => Optimizer::new(&spec.train.optimizer, n_params),
                };
                let mut learner = Learner::new(model, optimizer, spec.train.clip)?;
                learner.set_groups(groups);
                if let Some(c) = &resumed {
                    learner.set_params(c.params.clone())?;
                }
                Box::new(learner)
            }
        };
        // A language model resumed mid-epoch continues its streams from the carried state the
        // checkpoint holds (in one process's layout, see `carried_for_checkpoint`): this rank's
        // block of the streams, whatever number of ranks wrote it.
        let resumed_carried = match &resumed {
            Some(c) if !c.carried.is_empty() && progress.batch_in_epoch > 0 => {
                learner.zero_state(batch).and_then(|zero| {
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
                })
            }
            _ => None,
        };
        // The checkpoint's whole parameters and optimizer state are in the learner (or, for a
        // pipeline stage, its slices are): not kept for the rest of the run.
        let fresh = resumed.is_none();
        drop(resumed);
        if world > 1 {
            // Every rank initializes from the same seed, but rank 0's values are the contract
            // (in a pipeline: replica 0's values of each stage's slice).
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
        let evaluator = Evaluator {
            model: if pipelined {
                None
            } else {
                Some(build(spec, &task, &eval_device)?)
            },
            device: eval_device,
            batch: spec.train.batch_size.max(64),
            keep: !pipelined,
        };

        let steps_per_epoch = plan_for(spec, &task, n_train, world, batch, 0)?.steps_per_epoch();
        let budget = u64::from(spec.train.epochs) * steps_per_epoch as u64;
        let total_steps = spec.train.max_steps.map_or(budget, |m| m.min(budget));
        let checkpointer = Checkpointer::new(spec, fitted, opts.run_id.clone(), lead, rank == 0);
        let dir = checkpointer.dir.clone();
        if fresh && lead {
            // A fresh run owns its directory: a best.ckpt or metrics.json left by an earlier
            // run would otherwise be taken for this run's by `eval` and `predict`.
            for stale in [checkpoint::BEST, "metrics.json"] {
                let path = dir.join(stale);
                if path.is_file() {
                    std::fs::remove_file(&path).map_err(|source| {
                        checkpoint::CheckpointError::Io {
                            path: path.clone(),
                            error: source,
                        }
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
            resumed_from,
            checkpoint_dir: dir,
        });
        let stop = if progress.finished {
            Some(StopReason::Completed)
        } else {
            None
        };
        let lr = lr_at(
            &spec.train.schedule,
            spec.train.optimizer.lr(),
            progress.step,
            total_steps,
        );
        let start_step = progress.step;
        let samples_log = if spec.checkpoint.record_samples {
            Some(super::samples::SampleLog::open(
                &checkpointer.dir,
                opts.attempt,
                rank,
            )?)
        } else {
            None
        };
        Ok(Run {
            spec,
            opts,
            dist,
            observer,
            group,
            world,
            rank,
            lead,
            pipelined,
            batch,
            task,
            train_device,
            learner,
            evaluator,
            checkpointer,
            n_train,
            has_val,
            has_test,
            steps_per_epoch,
            total_steps,
            progress,
            early,
            history,
            best_params: None,
            carried: resumed_carried,
            lr,
            stop,
            started: Instant::now(),
            start_step,
            samples_log,
        })
    }

    /// The shard plan of `epoch`.
    ///
    /// # Errors
    /// [`TrainError::Data`] when the plan cannot be made.
    pub fn plan(&self, epoch: u32) -> Result<ShardPlan, TrainError> {
        plan_for(
            self.spec,
            &self.task,
            self.n_train,
            self.world,
            self.batch,
            epoch,
        )
    }
}

/// The shard plan of `epoch`. A language model's windows are consecutive chunks of its
/// streams: taken in order, never shuffled (crate::lm explains the layout).
fn plan_for(
    spec: &JobSpec,
    task: &TaskData,
    n_train: usize,
    world: usize,
    batch: usize,
    epoch: u32,
) -> Result<ShardPlan, TrainError> {
    Ok(ShardPlan::new(
        n_train,
        spec.seed,
        Epoch(epoch),
        world,
        batch,
        !task.carries_state(),
    )?)
}

/// This rank's pipeline stage engine, after checking the link and the batch split.
fn stage_engine(
    spec: &JobSpec,
    layers: &[ringtrain_models::LayerInfo],
    link: &dyn StageLink,
    batch: usize,
    rank: usize,
    world: usize,
) -> Result<StageEngine, TrainError> {
    let p = spec.parallel.pipeline;
    if link.stages() != p {
        return Err(PipelineError::Setup(format!(
            "the stage link connects {} stages but parallel.pipeline = {p}",
            link.stages()
        ))
        .into());
    }
    let plan =
        StagePlan::new(layers, p, spec.parallel.stages.as_deref()).map_err(PipelineError::from)?;
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
    Ok(StageEngine::new(
        plan,
        link.stage(),
        m,
        spec.parallel.schedule,
    )?)
}
