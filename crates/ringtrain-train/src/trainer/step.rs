//! One optimizer step of the loop: the batch, the learner's step (the whole model's, or this
//! pipeline stage's: the one [`Trainee`](super::trainee::Trainee) trait over both), the exchange among replicas, the step
//! events, the replica check and the step checkpoint.

use super::carried::carried_for_checkpoint;
use super::setup::Run;
use super::trainee::StepInput;
use super::{Observer, Phase, PhaseSpan, StepEvent, StopReason, collective, emit_step_spans};
use crate::checkpoint::{self};
use crate::error::TrainError;
use crate::group::{Group, param_checksum};
use crate::learner::{StepStats, dropout_seed};
use crate::schedule::lr_at;
use ringtrain_core::Rank;
use ringtrain_data::{ShardPlan, SplitName};
use ringtrain_models::ForwardCtx;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

impl Run<'_> {
    /// Takes optimizer step `progress.step + 1` on the samples `plan` gives this rank, then
    /// reports it, checks the replicas and writes the step checkpoint when they are due; sets
    /// `stop` when the run halts or is interrupted after this step.
    ///
    /// # Errors
    /// As [`Trainee::step`], plus checkpoint and replica-check errors.
    pub(super) fn step(&mut self, plan: &ShardPlan) -> Result<(), TrainError> {
        let spec = self.spec;
        let idx = plan.step_indices(Rank(self.rank as u32), self.progress.batch_in_epoch);
        let (inputs, targets) = self.task.batch(SplitName::Train, idx, &self.train_device);
        self.lr = lr_at(
            &spec.train.schedule,
            spec.train.optimizer.lr(),
            self.progress.step,
            self.total_steps,
        );
        let ctx = ForwardCtx {
            train: true,
            dropout_seed: dropout_seed(spec.seed, self.progress.step),
        };
        let step = self.progress.step + 1;
        // Recorded before the step: a step completes on any rank only once every rank's
        // gradient entered the all-reduce, so a completed step has every rank's line even when
        // a rank dies right after contributing (a line written after the step would be lost
        // with it); a step no rank completed is taken again by the next attempt, whose lines
        // count instead.
        if let Some(log) = &mut self.samples_log {
            log.record(self.progress.epoch, step, idx)?;
        }
        self.observer.on_step_start(step);
        let step_started = SystemTime::now();
        let stop_flag = self
            .opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        let out = self.learner.step(
            StepInput {
                task: &self.task,
                inputs,
                targets,
                ctx: &ctx,
                lr: self.lr as f32,
                step,
                epoch: self.progress.epoch,
                stop_flag,
                carried: &mut self.carried,
            },
            &mut *self.group,
            &mut *self.observer,
        )?;
        let stats = StepStats {
            loss: out.computed.loss,
            grad_norm: out.applied.grad_norm,
            compute: out.computed.compute,
            communication: out.communication,
            update: out.applied.update,
        };
        let progress = &mut self.progress;
        progress.step = step;
        progress.batch_in_epoch += 1;
        progress.epoch_loss_sum += f64::from(out.extras[0]);
        progress.epoch_loss_batches += 1;
        emit_step_spans(&mut *self.observer, step, step_started, &stats);
        self.observer.on_step(&StepEvent {
            step: progress.step,
            total_steps: self.total_steps,
            epoch: progress.epoch,
            lr: self.lr,
            samples: idx.len(),
            stats,
        });
        if self.world > 1
            && self.dist.checksum_every > 0
            && step.is_multiple_of(self.dist.checksum_every)
        {
            check_replicas(
                &mut *self.group,
                self.learner.params(),
                step,
                &mut *self.observer,
            )?;
        }
        let every = spec.checkpoint.every_steps;
        if every > 0 && self.progress.step.is_multiple_of(every) {
            let state =
                carried_for_checkpoint(&mut *self.group, self.carried.as_ref(), &self.progress)?;
            self.write_latest(state)?;
        }
        // One process checks its flag after the step; replicas act on the exchanged votes so
        // that they all stop after the same step.
        let stop_now = if self.world == 1 && !self.pipelined {
            self.opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst))
        } else {
            out.extras[1] > 0.0
        };
        // An elastic run commits every `commit_every` steps, and where the ranks stop together
        // (the coordinator re-forms the job larger from exactly that step).
        if let (Some(slot), Some(elastic)) = (&self.opts.commit, spec.parallel.elastic)
            && !self.pipelined
            && (step.is_multiple_of(elastic.commit_every) || stop_now)
        {
            let state =
                carried_for_checkpoint(&mut *self.group, self.carried.as_ref(), &self.progress)?;
            if let Some(bytes) = self.checkpointer.commit_bytes(
                self.learner.as_mut(),
                (&self.progress, &self.early, &self.history),
                state,
            )? {
                slot.store(self.opts.run_id.as_deref(), step, bytes);
            }
        }
        if self.opts.halt_after_steps == Some(self.progress.step) {
            self.stop = Some(StopReason::Halted);
            return Ok(());
        }
        if stop_now {
            self.stop = Some(StopReason::Interrupted);
        }
        Ok(())
    }

    /// Writes `latest.ckpt` (the run's position, with `carried` state) and tells the observer.
    ///
    /// # Errors
    /// Checkpoint and gather errors.
    pub(super) fn write_latest(&mut self, carried: Vec<f32>) -> Result<(), TrainError> {
        self.checkpointer.write_and_notify(
            self.learner.as_mut(),
            checkpoint::LATEST,
            (&self.progress, &self.early, &self.history),
            carried,
            &mut *self.observer,
        )
    }
}

/// Compares every rank's parameter checksum after `step`.
pub(super) fn check_replicas(
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
