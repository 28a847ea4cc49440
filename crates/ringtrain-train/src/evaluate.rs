//! Evaluation of a model on one split: loss and the task's metrics in original units, next to
//! the trivial baselines a practitioner compares against (majority class; naive and
//! seasonal-naive forecasts; unigram; copying the source). What is scored and how is the task's
//! ([`crate::task::Task::eval_shard`] and [`crate::task::Task::report`]); this module shards the
//! split over the ranks and adds their sums.

use crate::error::TrainError;
use crate::group::Group;
use crate::report::split_name;
use crate::task::TaskData;
use burn::prelude::*;
use ringtrain_data::SplitName;
use ringtrain_models::Model;

pub use crate::report::{EvalReport, TaskMetrics, shard_range};
pub use crate::tensors::{argmax, to_vec};

/// Evaluates `model` (on any device, usually the plain one) over every sample of `split`, in
/// file order, `batch_size` samples at a time (a language model is scored stream by stream with
/// its state carried, where `batch_size` does not apply).
///
/// # Errors
/// [`TrainError::EmptySplit`] when the split has no samples; [`TrainError::Metrics`] on shape
/// disagreements (a bug, reported rather than hidden).
pub fn evaluate(
    model: &Model,
    task: &TaskData,
    split: SplitName,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport, TrainError> {
    evaluate_distributed(
        model,
        task,
        split,
        batch_size,
        device,
        &mut crate::group::Solo::new(),
    )
}

/// Evaluates `split` across the replicas of `group`: each rank scores its own contiguous shard
/// (rank `r` of `N` takes samples — or a language model's streams — `r·n/N .. (r+1)·n/N`), then
/// the loss and metric sums are summed over the ranks, so every rank returns the same report —
/// the report of the whole split. Forecast values for plots are not gathered (`forecasts` is
/// `None` when `N > 1`).
///
/// # Errors
/// As [`evaluate`], plus [`TrainError::Collective`] when the sum across ranks fails.
pub fn evaluate_distributed(
    model: &Model,
    task: &TaskData,
    split: SplitName,
    batch_size: usize,
    device: &Device,
    group: &mut dyn Group,
) -> Result<EvalReport, TrainError> {
    let task = task.task();
    task.check_split(split)?;
    let world = group.world();
    let mut sums = task.eval_shard(model, split, group.rank(), world, batch_size, device)?;
    if world > 1 {
        group
            .sum_f64(&mut sums.flat)
            .map_err(|source| TrainError::Collective {
                what: format!("{} metrics all-reduce", split_name(split)),
                source,
            })?;
        sums.forecasts = None;
    }
    task.report(split, sums)
}
