//! The `Group` the in-process distributed and pipeline tests train over: a real
//! `ringtrain_collective::Communicator` (in-process transport), driven from a synchronous
//! training thread through a tokio runtime. The worker has its own `Group` over a communicator;
//! this crate cannot depend on the worker, so the tests keep this small copy of the glue.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use ringtrain_collective::{CollectiveError, Communicator, ReduceOp};
use ringtrain_train::{Group, GroupError, decode_f64, encode_f64};
use std::sync::Arc;
use tokio::runtime::Runtime;

/// A collective error as the trainer's group error.
pub fn group_error(e: CollectiveError) -> GroupError {
    GroupError::new(e.to_string())
}

/// A group of ranks over `comm` (rank = communicator rank).
pub struct CommGroup {
    /// The communicator.
    pub comm: Communicator,
    /// Runs the communicator's futures (may be shared with other groups of the same thread).
    pub rt: Arc<Runtime>,
    /// Added to parameter 0 of this rank after the broadcast (to provoke divergence); 0 for
    /// none.
    pub perturb: f32,
}

impl Group for CommGroup {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }
    fn world(&self) -> usize {
        self.comm.world() as usize
    }
    fn broadcast_params(&mut self, params: &mut [f32]) -> Result<(), GroupError> {
        self.rt
            .block_on(self.comm.broadcast(params, 0))
            .map_err(group_error)?;
        if let Some(first) = params.first_mut() {
            *first += self.perturb;
        }
        Ok(())
    }
    fn broadcast_from(&mut self, root: usize, data: &mut [f32]) -> Result<(), GroupError> {
        self.rt
            .block_on(self.comm.broadcast(data, root as u32))
            .map_err(group_error)
    }
    fn mean_gradients(
        &mut self,
        _step: u64,
        grads: &mut [f32],
        extras: &mut [f32],
    ) -> Result<(), GroupError> {
        self.rt
            .block_on(
                self.comm
                    .all_reduce_fused(&mut [grads, extras], ReduceOp::Mean),
            )
            .map_err(group_error)
    }
    fn all_gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, GroupError> {
        let all = self
            .rt
            .block_on(self.comm.all_gather(&encode_f64(values)))
            .map_err(group_error)?;
        Ok(decode_f64(&all))
    }
}
