//! The training state the loop drives, behind one trait ([`Trainee`]): the whole model
//! ([`Learner`]) or one pipeline stage's slice ([`StageLearner`]), with what one step gets and
//! gives. Below `setup`, `step` and `checkpointer`, which all hold a trainee.

use super::{Observer, collective};
use crate::error::TrainError;
use crate::group::{Group, GroupError};
use crate::learner::{Applied, Computed, Learner};
use crate::optim::OptimizerState;
use crate::pipeline::shard::StageLearner;
use crate::pipeline::{PipelineStepStats, micro_weights};
use crate::task::TaskData;
use crate::tensors::Targets;
use ringtrain_models::{Batch, ForwardCtx, RecurrentState};
use std::time::{Duration, Instant};

/// What one step of a learner gets.
pub(super) struct StepInput<'a> {
    pub task: &'a TaskData,
    pub inputs: Batch,
    pub targets: Targets,
    pub ctx: &'a ForwardCtx,
    pub lr: f32,
    pub step: u64,
    pub epoch: u32,
    /// This rank's stop vote.
    pub stop_flag: bool,
    /// A language model's carried state (in and out).
    pub carried: &'a mut Option<RecurrentState>,
}

/// What one step of a learner gives.
pub(super) struct StepOutput {
    pub computed: Computed,
    pub applied: Applied,
    /// The loss and the stop vote, averaged over the replicas.
    pub extras: [f32; 2],
    pub communication: Duration,
}

/// The training state of a run: the whole model ([`Learner`]) or one pipeline stage's slice
/// ([`StageLearner`]). The loop is written against this trait only.
pub(super) trait Trainee {
    /// The parameters this rank holds: all, or its stage's slice (what replicas compare and
    /// broadcast).
    fn params(&self) -> &[f32];

    /// Replaces what [`Trainee::params`] returns.
    ///
    /// # Errors
    /// [`TrainError::Model`] on a length mismatch.
    fn set_params(&mut self, params: Vec<f32>) -> Result<(), TrainError>;

    /// The whole buffer of which `held` is this rank's part ([`Trainee::params`]-shaped):
    /// `held` itself, or the stages' slices all-gathered (a collective call of the replica's
    /// stages).
    ///
    /// # Errors
    /// [`TrainError::Collective`] when the all-gather fails.
    fn whole(&mut self, held: &[f32]) -> Result<Vec<f32>, TrainError>;

    /// The whole parameters and optimizer state for a checkpoint, on the rank that writes it:
    /// `writer` (rank 0's flag) for a whole model; for a stage, the stages of replica
    /// `replica_zero` gather to stage 0 (a collective call of replica 0's stages).
    ///
    /// # Errors
    /// [`TrainError::Collective`] when a gather fails.
    fn for_checkpoint(
        &mut self,
        writer: bool,
        replica_zero: bool,
    ) -> Result<Option<(Vec<f32>, OptimizerState)>, TrainError>;

    /// The zero recurrent state of `streams` streams, where this learner carries state between
    /// steps (the whole model; a stage does not).
    fn zero_state(&self, streams: usize) -> Option<RecurrentState>;

    /// One optimizer step: gradients, the mean over `group`'s replicas, clipping and update.
    ///
    /// # Errors
    /// Model, collective, divergence and optimizer errors.
    fn step(
        &mut self,
        input: StepInput<'_>,
        group: &mut dyn Group,
        observer: &mut dyn Observer,
    ) -> Result<StepOutput, TrainError>;
}

impl Trainee for Learner {
    fn params(&self) -> &[f32] {
        Learner::params(self)
    }

    fn set_params(&mut self, params: Vec<f32>) -> Result<(), TrainError> {
        Learner::set_params(self, params)
    }

    fn whole(&mut self, held: &[f32]) -> Result<Vec<f32>, TrainError> {
        Ok(held.to_vec())
    }

    fn for_checkpoint(
        &mut self,
        writer: bool,
        _replica_zero: bool,
    ) -> Result<Option<(Vec<f32>, OptimizerState)>, TrainError> {
        Ok(writer.then(|| (self.params().to_vec(), self.optimizer().state().clone())))
    }

    fn zero_state(&self, streams: usize) -> Option<RecurrentState> {
        Some(self.model().zero_state(streams))
    }

    fn step(
        &mut self,
        input: StepInput<'_>,
        group: &mut dyn Group,
        _observer: &mut dyn Observer,
    ) -> Result<StepOutput, TrainError> {
        let StepInput {
            task,
            inputs,
            targets,
            ctx,
            lr,
            step,
            epoch,
            stop_flag,
            carried,
        } = input;
        let replica_weight = replica_weight(task, &targets, group.world());
        let mut computed = if task.carries_state() {
            let (computed, state) = self.gradients_with_state(
                task,
                inputs,
                targets,
                carried.as_ref(),
                ctx,
                (step, epoch),
            )?;
            *carried = Some(state);
            computed
        } else {
            self.gradients(task, inputs, targets, ctx, (step, epoch))?
        };
        let mut grads = std::mem::take(&mut computed.grads);
        // Averaged with the gradients: the loss over all ranks (for the epoch summary) and the
        // stop votes (> 0 when any rank wants to stop, so all stop after this step).
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
        let applied = self.apply(&mut grads, lr, (step, epoch))?;
        Ok(StepOutput {
            computed,
            applied,
            extras,
            communication,
        })
    }
}

impl Trainee for StageLearner<'_> {
    fn params(&self) -> &[f32] {
        StageLearner::params(self)
    }

    fn set_params(&mut self, params: Vec<f32>) -> Result<(), TrainError> {
        StageLearner::set_params(self, params)
    }

    fn whole(&mut self, held: &[f32]) -> Result<Vec<f32>, TrainError> {
        self.all_gather(held)
    }

    fn for_checkpoint(
        &mut self,
        _writer: bool,
        replica_zero: bool,
    ) -> Result<Option<(Vec<f32>, OptimizerState)>, TrainError> {
        if replica_zero {
            self.gather_to_writer()
        } else {
            Ok(None)
        }
    }

    fn zero_state(&self, _streams: usize) -> Option<RecurrentState> {
        None
    }

    fn step(
        &mut self,
        input: StepInput<'_>,
        group: &mut dyn Group,
        observer: &mut dyn Observer,
    ) -> Result<StepOutput, TrainError> {
        let StepInput {
            task,
            inputs,
            targets,
            ctx,
            lr,
            step,
            epoch,
            stop_flag,
            carried: _,
        } = input;
        let world = group.world();
        let compute_started = Instant::now();
        let (engine, model, link) = self.step_parts();
        let weights = micro_weights(task, &targets, engine.microbatches());
        let replica_weight = replica_weight(task, &targets, world);
        let out = engine
            .step(model, link, task, &inputs, &targets, &weights, ctx)
            .map_err(TrainError::from)?;
        let compute = compute_started.elapsed();
        let exchange_started = Instant::now();
        let mut slice = out.grads;
        let s = self.engine().stage();
        // Only the last stage has the loss; every stage has the targets, so all agree on the
        // replica's weight.
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
        let scalars = self.clip_and_exchange(&mut slice, (extras[0], extras[1]), epoch)?;
        let exchange = exchange_started.elapsed();
        let engine = self.engine();
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
                epoch,
                what: "loss",
                value: scalars.loss,
            });
        }
        let applied = self.apply(&mut slice, scalars.sum_of_squares, lr, (step, epoch))?;
        let computed = Computed {
            loss: scalars.loss,
            grads: Vec::new(),
            compute,
        };
        Ok(StepOutput {
            computed,
            applied,
            extras: [scalars.loss, scalars.stop],
            communication: exchange,
        })
    }
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
