//! The one checkpointer of a run: builds a checkpoint from the learner's whole state and the
//! run's position, writes it on the rank that writes files, and tells the observer — the
//! write-and-notify sequence every checkpoint of the loop goes through.

use super::Observer;
use super::trainee::Trainee;
use crate::checkpoint::{self, Checkpoint, EarlyStopState, EpochRecord, Header, Progress};
use crate::error::TrainError;
use crate::optim::OptimizerState;
use ringtrain_data::Fitted;
use ringtrain_spec::JobSpec;
use std::path::PathBuf;

/// Writes a run's checkpoints.
pub(super) struct Checkpointer {
    /// `checkpoint.dir`.
    pub dir: PathBuf,
    spec: JobSpec,
    fitted: Fitted,
    run_id: Option<String>,
    /// This rank writes files (rank 0; in a pipeline, stage 0 of replica 0).
    lead: bool,
    /// This rank is in replica 0 (whose stages gather their slices for a checkpoint).
    replica_zero: bool,
}

impl Checkpointer {
    /// The checkpointer of `spec`'s run with the data's `fitted` state.
    pub fn new(
        spec: &JobSpec,
        fitted: Fitted,
        run_id: Option<String>,
        lead: bool,
        replica_zero: bool,
    ) -> Checkpointer {
        Checkpointer {
            dir: spec.checkpoint.dir.clone(),
            spec: spec.clone(),
            fitted,
            run_id,
            lead,
            replica_zero,
        }
    }

    /// Writes checkpoint `file` from the whole state, which a pipeline first gathers to stage 0
    /// of replica 0 (every stage of replica 0 calls this at the same points); the path when
    /// this rank wrote it.
    ///
    /// # Errors
    /// Gather and checkpoint I/O errors.
    pub fn write(
        &self,
        learner: &mut dyn Trainee,
        file: &str,
        state: (&Progress, &EarlyStopState, &[EpochRecord]),
        carried: Vec<f32>,
    ) -> Result<Option<PathBuf>, TrainError> {
        let Some((params, optimizer)) = learner.for_checkpoint(self.lead, self.replica_zero)?
        else {
            return Ok(None);
        };
        let path = self.dir.join(file);
        self.checkpoint(params, optimizer, state, carried)
            .save(&path)?;
        Ok(Some(path))
    }

    /// The bytes of the checkpoint this state makes, on every rank of a data-parallel run (an
    /// elastic run's in-memory commit, [`crate::elastic`]): what `latest.ckpt` would hold.
    ///
    /// # Errors
    /// Header serialization errors.
    pub fn commit_bytes(
        &self,
        learner: &mut dyn Trainee,
        state: (&Progress, &EarlyStopState, &[EpochRecord]),
        carried: Vec<f32>,
    ) -> Result<Option<Vec<u8>>, TrainError> {
        let Some((params, optimizer)) = learner.for_checkpoint(true, true)? else {
            return Ok(None);
        };
        let origin = self.dir.join(checkpoint::LATEST);
        Ok(Some(
            self.checkpoint(params, optimizer, state, carried)
                .to_bytes(&origin)?,
        ))
    }

    fn checkpoint(
        &self,
        params: Vec<f32>,
        optimizer: OptimizerState,
        (progress, early, history): (&Progress, &EarlyStopState, &[EpochRecord]),
        carried: Vec<f32>,
    ) -> Checkpoint {
        Checkpoint {
            header: Header {
                format_version: checkpoint::FORMAT_VERSION,
                writer: format!("ringtrain {}", env!("CARGO_PKG_VERSION")),
                spec: self.spec.clone(),
                fitted: self.fitted.clone(),
                progress: progress.clone(),
                early_stop: early.clone(),
                history: history.to_vec(),
                optimizer_kind: optimizer.kind,
                optimizer_step: optimizer.step,
                arrays: Vec::new(),
                crc32: 0,
                run_id: self.run_id.clone(),
            },
            params,
            optimizer,
            carried,
        }
    }

    /// [`Checkpointer::write`], then [`Observer::on_checkpoint`] where this rank wrote it.
    ///
    /// # Errors
    /// As [`Checkpointer::write`].
    pub fn write_and_notify(
        &self,
        learner: &mut dyn Trainee,
        file: &str,
        state: (&Progress, &EarlyStopState, &[EpochRecord]),
        carried: Vec<f32>,
        observer: &mut dyn Observer,
    ) -> Result<(), TrainError> {
        if let Some(path) = self.write(learner, file, state, carried)? {
            observer.on_checkpoint(&path);
        }
        Ok(())
    }
}
