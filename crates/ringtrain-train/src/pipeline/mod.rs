//! Pipeline model parallelism (DESIGN.md, "Pipeline"): a model's layer stack cut into
//! contiguous stages on different ranks, micro-batches flowing through them, combined with data
//! parallelism on a grid of `D` replicas × `P` stages.
//!
//! - [`StagePlan`] cuts the layers (explicit `parallel.stages`, else balanced by parameter count)
//!   and maps each stage to its slice of the flat parameter buffer.
//! - [`StageEngine`] runs one stage's part of a step under GPipe or 1F1B ([`schedule`]), moving
//!   `[micro-batch, seq, features]` activations forward and their gradients back over a
//!   [`StageLink`] (point-to-point transfers between the stages of one replica).
//! - [`crate::train_pipelined`] is the training loop of one grid cell. Each rank keeps only its
//!   stage's slice of the flat parameters and of the optimizer state ([`shard`]): after the
//!   schedule, the stage's gradient slice is averaged over the stage's `D` replicas (the
//!   `stage_group`, a [`crate::Group`]), the replica's `P` stages all-gather one small record each (the
//!   slice's sum of squares, the loss, the stop vote), so that clipping uses the exact global
//!   norm over all stages, and each stage updates its own slice as a single process would. The
//!   whole parameters and optimizer state are gathered to stage 0 of replica 0 only when it
//!   writes a checkpoint, which is therefore the normal full checkpoint (`eval`, `predict` and
//!   resuming work unchanged; a resumed stage cuts its slices out of it).
//!
//! What this does not do: pipeline evaluation (for an evaluation the stages all-gather the whole
//! parameters and every stage group evaluates the whole model on its shard of the split, so all
//! ranks get the same metrics), or overlap the exchanges with compute; and the burn model of a
//! stage still holds every layer (only the stage's layers are reloaded and run). Dropout:
//! micro-batch `i` of a step draws its masks from a stream derived from the step's (see
//! [`engine::micro_ctx`]); with `M = 1` they are exactly the unpipelined masks, with `M > 1`
//! they differ from a single process's (masks depend on the batch shape), so the numerics
//! contract for `M > 1` holds with `model.dropout = 0`.
//!
//! Loss weighting: the batch loss is a mean over the batch, so micro-batch `i`'s loss is weighted
//! by its share ([`micro_weights`]): `1/M` for MSE, MAE and unweighted cross-entropy, and
//! `Σ_{i} w_y / Σ_{batch} w_y` for class-weighted cross-entropy. Across the `D` replicas, a
//! class-weighted loss is combined the same way: each replica's gradient slice and loss are
//! weighted by its batch's weight sum in the stage-group all-reduce (as in
//! [`crate::train_distributed`]).

pub mod engine;
pub mod plan;
pub mod schedule;
pub mod shard;

pub use engine::{StageEngine, StageStep, StageStepStats};
pub use plan::{PlanError, StagePlan};
pub use schedule::{Op, ideal_bubble, max_in_flight, stage_ops};
pub use shard::{StageFootprint, StageLearner, StepScalars};

pub use crate::error::PipelineError;
use crate::group::GroupError;
use crate::task::TaskData;
use crate::tensors::Targets;
use std::time::Duration;

/// Point-to-point transfers and one all-gather among the `P` stages of one replica. Like
/// [`crate::Group`], calls are synchronous and every stage must make matching calls: a `send(to)` on
/// stage `s` is received by the next `recv(from = s)` on stage `to`, in order; `all_gather` is
/// collective over all stages.
pub trait StageLink {
    /// This rank's stage in `0..stages()`.
    fn stage(&self) -> usize;

    /// Number of stages.
    fn stages(&self) -> usize;

    /// Sends `data` to stage `to`. May return before `to` has received it.
    ///
    /// # Errors
    /// The transfer failed (the message names the peer where known).
    fn send(&mut self, to: usize, data: &[f32]) -> Result<(), GroupError>;

    /// Receives the next buffer stage `from` sent to this stage.
    ///
    /// # Errors
    /// The transfer failed or its deadline passed.
    fn recv(&mut self, from: usize) -> Result<Vec<f32>, GroupError>;

    /// Every stage's `data` (equal lengths), concatenated in stage order.
    ///
    /// # Errors
    /// The collective call failed.
    fn all_gather(&mut self, data: &[f32]) -> Result<Vec<f32>, GroupError>;
}

/// Per-stage measurements of one optimizer step, sent to [`crate::Observer::on_pipeline_step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineStepStats {
    /// The optimizer step (1-based).
    pub step: u64,
    /// This rank's stage.
    pub stage: usize,
    /// Stages per replica.
    pub stages: usize,
    /// Micro-batches per step.
    pub microbatches: usize,
    /// What the schedule measured.
    pub stats: StageStepStats,
    /// Time of the stage-group all-reduce and the all-gather of the step's scalars.
    pub exchange: Duration,
    /// Time of the stage-group all-reduce alone.
    pub allreduce: Duration,
    /// Payload bytes of the stage-group all-reduce (this stage's gradient slice and the step's
    /// scalars; 0 when the stage has one replica, which exchanges nothing).
    pub allreduce_bytes: u64,
    /// Ranks of the stage group (the data-parallel replicas, `parallel.data`).
    pub replicas: usize,
}

/// Micro-batch `i`'s share of the batch loss for `M = microbatches` equal micro-batches of
/// `targets` (see the module docs): `1/M` when every sample weighs the same, else
/// `Σ_{i} w / Σ_{batch} w` over [`TaskData::sample_weights`].
pub fn micro_weights(task: &TaskData, targets: &Targets, microbatches: usize) -> Vec<f32> {
    let m = microbatches.max(1);
    let equal = vec![1.0 / m as f32; m];
    let Some(weights) = task.sample_weights(targets) else {
        return equal;
    };
    let mb = weights.len() / m;
    if mb == 0 {
        return equal;
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return equal;
    }
    weights
        .chunks(mb)
        .map(|c| (c.iter().sum::<f64>() / total) as f32)
        .collect()
}
