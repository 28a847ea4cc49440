//! The end of a run: the final checkpoint, the last replica check, the final evaluation of the
//! best parameters on the validation and test splits, the report and `metrics.json`.

use super::carried::carried_for_checkpoint;
use super::setup::Run;
use super::step::check_replicas;
use super::{StopReason, TrainReport};
use crate::checkpoint::{self, Checkpoint};
use crate::error::TrainError;
use ringtrain_data::SplitName;
use std::path::Path;

impl Run<'_> {
    /// Ends the run (see the module docs).
    ///
    /// # Errors
    /// Checkpoint, collective and evaluation errors.
    pub(super) fn finish(mut self) -> Result<TrainReport, TrainError> {
        let spec = self.spec;
        let stop = self.stop.unwrap_or(StopReason::Completed);
        self.progress.finished = stop.is_final();
        let final_state =
            carried_for_checkpoint(&mut *self.group, self.carried.as_ref(), &self.progress)?;
        self.write_latest(final_state)?;
        if self.world > 1 && self.dist.checksum_every > 0 {
            check_replicas(
                &mut *self.group,
                self.learner.params(),
                self.progress.step,
                &mut *self.observer,
            )?;
        }

        let trained = self.progress.step - self.start_step;
        let samples_per_sec = trained as f64 * (self.batch * self.world) as f64
            / self.started.elapsed().as_secs_f64().max(1e-9);
        // A pipeline stage holds its slice: the report carries the whole parameters.
        let held = self.learner.params().to_vec();
        let params = self.learner.whole(&held)?;
        drop(held);
        let dir = self.checkpointer.dir.clone();
        if !stop.is_final() {
            return Ok(TrainReport {
                name: spec.name.clone(),
                stop,
                steps: self.progress.step,
                history: self.history,
                evaluated_epoch: None,
                val: None,
                test: None,
                checkpoint_dir: dir,
                samples_per_sec,
                params,
            });
        }
        // Final evaluation with the best parameters when validation picked some: this run's
        // from memory, a resumed run's earlier best from best.ckpt.
        let best_path = dir.join(checkpoint::BEST);
        let (eval_params, evaluated_epoch) = match (self.best_params.take(), self.early.best_epoch)
        {
            (Some(best), Some(_)) => (self.learner.whole(&best)?, self.early.best_epoch),
            (None, Some(_)) if self.world > 1 || self.pipelined || best_path.is_file() => {
                (Checkpoint::load(&best_path)?.params, self.early.best_epoch)
            }
            _ => (params.clone(), self.history.last().map(|r| r.epoch)),
        };
        let mut val = None;
        let mut test = None;
        for (split, wanted, out) in [
            (SplitName::Val, self.has_val, &mut val),
            (SplitName::Test, self.has_test, &mut test),
        ] {
            if wanted {
                *out = Some(self.evaluator.eval(
                    (spec, &self.task),
                    &eval_params,
                    split,
                    self.progress.step,
                    &mut *self.group,
                    &mut *self.observer,
                )?);
            }
        }
        let report = TrainReport {
            name: spec.name.clone(),
            stop,
            steps: self.progress.step,
            history: self.history,
            evaluated_epoch,
            val,
            test,
            checkpoint_dir: dir.clone(),
            samples_per_sec,
            params,
        };
        if self.lead {
            write_metrics(&dir, &report)?;
        }
        Ok(report)
    }
}

fn write_metrics(dir: &Path, report: &TrainReport) -> Result<(), TrainError> {
    let path = dir.join("metrics.json");
    let io = |source| checkpoint::CheckpointError::Io {
        path: path.clone(),
        error: source,
    };
    let text = serde_json::to_string_pretty(report).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = dir.join("metrics.json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}
