//! The end of an epoch: its summary, validation, early stopping and the best and latest
//! checkpoints.

use super::StopReason;
use super::setup::Run;
use crate::checkpoint::{self, EpochRecord};
use crate::error::TrainError;
use crate::metrics::improved;
use crate::report::EvalReport;
use ringtrain_data::SplitName;
use ringtrain_spec::MonitorMetric;

impl Run<'_> {
    /// Ends the epoch the steps stopped in: `false` when the loop ends here (stopped mid-epoch;
    /// a run ending at `train.max_steps` mid-epoch still gets its summary first).
    ///
    /// # Errors
    /// Evaluation and checkpoint errors.
    pub(super) fn end_epoch(&mut self) -> Result<bool, TrainError> {
        let spec = self.spec;
        // Stopped mid-epoch: no epoch summary yet, unless the run ends here for good at
        // `train.max_steps` — then the partial epoch is validated like a whole one, so the
        // final metrics can use the parameters trained last rather than only those of the last
        // full epoch.
        let partial = self.progress.batch_in_epoch < self.steps_per_epoch;
        if partial && !(self.stop == Some(StopReason::MaxSteps) && self.progress.batch_in_epoch > 0)
        {
            return Ok(false);
        }
        let val = if self.has_val {
            let held = self.learner.params().to_vec();
            let whole = self.learner.whole(&held)?;
            Some(self.evaluator.eval(
                (spec, &self.task),
                &whole,
                SplitName::Val,
                self.progress.step,
                &mut *self.group,
                &mut *self.observer,
            )?)
        } else {
            None
        };
        let progress = &self.progress;
        let record = EpochRecord {
            epoch: progress.epoch,
            step: progress.step,
            train_loss: progress.epoch_loss_sum / progress.epoch_loss_batches.max(1) as f64,
            val_loss: val.as_ref().map(|v| v.loss),
            val_metrics: val.as_ref().map(EvalReport::headline).unwrap_or_default(),
            lr: self.lr,
        };
        self.history.push(record.clone());
        self.observer.on_epoch(&record);
        let monitor = spec
            .train
            .early_stopping
            .map_or(MonitorMetric::ValLoss, |e| e.metric);
        let min_delta = spec.train.early_stopping.map_or(0.0, |e| e.min_delta);
        if let Some(value) = val.as_ref().and_then(|v| v.monitored(monitor)) {
            if improved(monitor, self.early.best, value, min_delta) {
                self.early.best = Some(value);
                self.early.best_epoch = Some(self.progress.epoch);
                self.early.bad_epochs = 0;
                self.best_params = Some(self.learner.params().to_vec());
                let mut best_progress = self.progress.clone();
                best_progress.finished = true;
                self.checkpointer.write(
                    self.learner.as_mut(),
                    checkpoint::BEST,
                    (&best_progress, &self.early, &self.history),
                    Vec::new(),
                )?;
            } else {
                self.early.bad_epochs += 1;
            }
            if let Some(es) = spec.train.early_stopping
                && self.early.bad_epochs >= es.patience
            {
                self.stop = Some(StopReason::EarlyStopping);
            }
        }
        if partial {
            return Ok(false); // the max_steps summary above; the position stays mid-epoch
        }
        let progress = &mut self.progress;
        progress.epoch += 1;
        progress.batch_in_epoch = 0;
        progress.epoch_loss_sum = 0.0;
        progress.epoch_loss_batches = 0;
        if self.stop.is_none() && self.progress.epoch < spec.train.epochs {
            self.write_latest(Vec::new())?;
        }
        if self.stop.is_none() && (self.opts.halt_after_steps == Some(self.progress.step)) {
            self.stop = Some(StopReason::Halted);
        }
        Ok(true)
    }
}
