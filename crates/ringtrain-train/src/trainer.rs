//! The single-process trainer: epochs over the shard plan (world 1, so the same sample order a
//! data-parallel job uses), evaluation and early stopping after each epoch, checkpoints every N
//! steps and at epoch ends, and exact resumption.
//!
//! Everything random is a pure function of the seed: the sample order of epoch `e` and the
//! dropout masks of step `s`. Together with the checkpointed parameters, optimizer state and data
//! position, that makes "interrupted and resumed" end with exactly the parameters of an
//! uninterrupted run.

use crate::checkpoint::{self, Checkpoint, EarlyStopState, EpochRecord, Header, Progress};
use crate::error::TrainError;
use crate::evaluate::{EvalReport, evaluate};
use crate::learner::{GradientHook, Learner, NoHook, StepStats};
use crate::metrics::improved;
use crate::optim::Optimizer;
use crate::schedule::lr_at;
use crate::task::TaskData;
use burn::prelude::*;
use ringtrain_core::{Epoch, Rank};
use ringtrain_data::{Fitted, ShardPlan, SplitName};
use ringtrain_models::{ForwardCtx, LayerInfo, Model, flat};
use ringtrain_spec::{JobSpec, MonitorMetric};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
    /// Samples in the step's batch.
    pub samples: usize,
    /// Measurements of the step.
    pub stats: StepStats,
}

/// Receives progress; the CLI draws bars and log lines from it.
pub trait Observer {
    /// Before the first step.
    fn on_start(&mut self, _info: &RunInfo) {}
    /// After every optimizer step.
    fn on_step(&mut self, _event: &StepEvent) {}
    /// After every epoch's evaluation.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
    /// After a checkpoint file is written.
    fn on_checkpoint(&mut self, _path: &Path) {}
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
    /// Mean training throughput in samples per second.
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
    train_with_hook(spec, opts, observer, &mut NoHook)
}

/// [`train`] with a gradient hook between backward and the optimizer.
///
/// # Errors
/// As [`train`], plus [`TrainError::Hook`].
pub fn train_with_hook(
    spec: &JobSpec,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
    hook: &mut dyn GradientHook,
) -> Result<TrainReport, TrainError> {
    let resumed = match &opts.resume {
        Some(p) => {
            let path = if p.is_dir() {
                p.join(checkpoint::LATEST)
            } else {
                p.clone()
            };
            let ckpt = Checkpoint::load(&path)?;
            ckpt.check_compatible(spec, &path)?;
            Some(ckpt)
        }
        None => None,
    };
    let fitted = resumed.as_ref().map(|c| &c.header.fitted);
    let data = ringtrain_data::load_with(spec, &opts.base_dir, fitted)?;
    let fitted: Fitted = data.fitted();
    let task = TaskData::new(spec, data)?;
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
    let (optimizer, mut progress, mut early, mut history) = match &resumed {
        Some(c) => (
            Optimizer::from_state(&spec.train.optimizer, n_params, c.optimizer.clone())?,
            c.header.progress.clone(),
            c.header.early_stop.clone(),
            c.header.history.clone(),
        ),
        None => (
            Optimizer::new(&spec.train.optimizer, n_params),
            Progress::default(),
            EarlyStopState::default(),
            Vec::new(),
        ),
    };
    let mut learner = Learner::new(model, optimizer, spec.train.clip)?;
    if let Some(c) = &resumed {
        learner.set_params(c.params.clone())?;
    }
    let mut eval_model = Some(build(&eval_device)?);

    let batch = spec.train.batch_size;
    let plan_for = |epoch: u32| -> Result<ShardPlan, TrainError> {
        Ok(ShardPlan::new(
            n_train,
            spec.seed,
            Epoch(epoch),
            1,
            batch,
            true,
        )?)
    };
    let steps_per_epoch = plan_for(0)?.steps_per_epoch();
    let budget = u64::from(spec.train.epochs) * steps_per_epoch as u64;
    let total_steps = spec.train.max_steps.map_or(budget, |m| m.min(budget));
    let dir = spec.checkpoint.dir.clone();
    if resumed.is_none() {
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

    let save = |learner: &Learner,
                file: &str,
                progress: &Progress,
                early: &EarlyStopState,
                history: &[EpochRecord]|
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
                optimizer_kind: learner.optimizer().state().kind,
                optimizer_step: learner.optimizer().state().step,
                arrays: Vec::new(),
                crc32: 0,
            },
            params: learner.params().to_vec(),
            optimizer: learner.optimizer().state().clone(),
        }
        .save(&path)?;
        Ok(path)
    };
    let mut eval_with = |params: &[f32], split: SplitName| -> Result<EvalReport, TrainError> {
        let model = flat::load_params(eval_model.take().expect("eval model present"), params)?;
        let report = evaluate(&model, &task, split, batch.max(64), &eval_device);
        eval_model = Some(model);
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
    while stop.is_none() && progress.epoch < spec.train.epochs {
        let plan = plan_for(progress.epoch)?;
        while progress.batch_in_epoch < steps_per_epoch {
            if progress.step >= total_steps {
                stop = Some(StopReason::MaxSteps);
                break;
            }
            let idx = plan.step_indices(Rank(0), progress.batch_in_epoch);
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
            let stats = learner.step(
                &task,
                inputs,
                targets,
                &ctx,
                lr as f32,
                hook,
                (progress.step + 1, progress.epoch),
            )?;
            progress.step += 1;
            progress.batch_in_epoch += 1;
            progress.epoch_loss_sum += f64::from(stats.loss);
            progress.epoch_loss_batches += 1;
            observer.on_step(&StepEvent {
                step: progress.step,
                total_steps,
                epoch: progress.epoch,
                lr,
                samples: idx.len(),
                stats,
            });
            let every = spec.checkpoint.every_steps;
            if every > 0 && progress.step % every == 0 {
                let p = save(&learner, checkpoint::LATEST, &progress, &early, &history)?;
                observer.on_checkpoint(&p);
            }
            if opts.halt_after_steps == Some(progress.step) {
                stop = Some(StopReason::Halted);
                break;
            }
            if opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                stop = Some(StopReason::Interrupted);
                break;
            }
        }
        if progress.batch_in_epoch < steps_per_epoch {
            break; // stopped mid-epoch: no epoch summary yet
        }
        // End of epoch: summary, validation, early stopping, checkpoints.
        let val = if has_val {
            Some(eval_with(learner.params(), SplitName::Val)?)
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
                let mut best_progress = progress.clone();
                best_progress.finished = true;
                save(&learner, checkpoint::BEST, &best_progress, &early, &history)?;
            } else {
                early.bad_epochs += 1;
            }
            if let Some(es) = spec.train.early_stopping
                && early.bad_epochs >= es.patience
            {
                stop = Some(StopReason::EarlyStopping);
            }
        }
        progress.epoch += 1;
        progress.batch_in_epoch = 0;
        progress.epoch_loss_sum = 0.0;
        progress.epoch_loss_batches = 0;
        if stop.is_none() && progress.epoch < spec.train.epochs {
            let p = save(&learner, checkpoint::LATEST, &progress, &early, &history)?;
            observer.on_checkpoint(&p);
        }
        if stop.is_none() && (opts.halt_after_steps == Some(progress.step)) {
            stop = Some(StopReason::Halted);
        }
    }
    let stop = stop.unwrap_or(StopReason::Completed);
    progress.finished = stop.is_final();
    let p = save(&learner, checkpoint::LATEST, &progress, &early, &history)?;
    observer.on_checkpoint(&p);

    let trained = progress.step - start_step;
    let samples_per_sec = trained as f64 * batch as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let (params, _) = learner.into_parts();
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
    // Final evaluation with the best parameters when validation picked some.
    let best_path = dir.join(checkpoint::BEST);
    let (eval_params, evaluated_epoch) = if early.best_epoch.is_some() && best_path.is_file() {
        (Checkpoint::load(&best_path)?.params, early.best_epoch)
    } else {
        (params.clone(), history.last().map(|r| r.epoch))
    };
    let val = if has_val {
        Some(eval_with(&eval_params, SplitName::Val)?)
    } else {
        None
    };
    let test = if has_test {
        Some(eval_with(&eval_params, SplitName::Test)?)
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
    write_metrics(&dir, &report)?;
    Ok(report)
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
