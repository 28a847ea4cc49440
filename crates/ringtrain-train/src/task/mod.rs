//! One place per task kind. [`Task`] is what the training loop, evaluation and inference need
//! from a task — the model's input block and head, batches and their order (a language model's
//! sequential streams with carried state), the loss and its sample weights, shard evaluation
//! into sums that add across ranks, the final report, and the monitored metrics it supports —
//! and each kind implements it in its own module (`forecast`, `classify`, `seq2seq`,
//! `language_model`). The two constructors here, [`TaskData::new`] (from prepared data) and
//! [`model_shape`] (from a checkpoint), are the only matches over the kinds in this crate; a new
//! kind adds one arm to each (see ARCHITECTURE.md, "How to add a task kind").

mod classify;
mod forecast;
mod language_model;
mod seq2seq;

pub use crate::tensors::{
    MseObjective, Objective, Targets, corpus_batch, lm_tensors, numeric_batch, series_batch,
    text_batch, token_batch,
};
pub use classify::Classify;
pub use forecast::Forecast;
pub use language_model::LanguageModel;
pub use seq2seq::Seq2seq;

use crate::checkpoint::Checkpoint;
use crate::error::TrainError;
use crate::report::{EvalReport, split_name};
use burn::prelude::*;
use ringtrain_data::{Prepared, SplitName};
use ringtrain_models::{Batch, HeadKind, InputKind, Model};
use ringtrain_spec::{JobSpec, MonitorMetric, TaskKind, TaskSpec};

/// What the training loop, evaluation and inference need from one task kind.
pub trait Task: std::fmt::Debug + Send + Sync {
    /// The kind (its name and what it supports are declared on it in the spec crate).
    fn kind(&self) -> TaskKind;

    /// Number of samples (windows) in a split.
    fn len(&self, split: SplitName) -> usize;

    /// The model's input block.
    fn input_kind(&self) -> InputKind;

    /// The model's head.
    fn head_kind(&self) -> HeadKind;

    /// Whether a freshly built model starts with a zero output head (a forecaster trained on
    /// scaled corrections then starts at its mode's reference forecast).
    fn zero_head(&self) -> bool {
        false
    }

    /// Whether training windows are consecutive chunks of streams taken in order, with the
    /// recurrent state carried from one chunk to the next (truncated BPTT): the shard plan is
    /// not shuffled and the loop keeps each stream's state between steps.
    fn carries_state(&self) -> bool {
        false
    }

    /// The tensors of the samples `indices` of `split` on `device`.
    fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets);

    /// The mean training loss of a batch (the model output against the batch's targets).
    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1>;

    /// The loss weight of every sample of `targets` in batch order when the loss is a weighted
    /// mean `Σ w_i · l_i / Σ w_i` with unequal weights; `None` for a plain mean. Combining the
    /// losses of parts of a batch (micro-batches, replicas) needs these: part `k` weighs
    /// `Σ_{i∈k} w_i / Σ_i w_i`.
    fn sample_weights(&self, _targets: &Targets) -> Option<Vec<f64>> {
        None
    }

    /// Checks that `split` has something to evaluate.
    ///
    /// # Errors
    /// [`TrainError::EmptySplit`] when it has not.
    fn check_split(&self, split: SplitName) -> Result<(), TrainError> {
        if self.len(split) == 0 {
            return Err(TrainError::EmptySplit {
                split: split_name(split),
                hint: "adjust data.split so this split gets samples".into(),
            });
        }
        Ok(())
    }

    /// Scores rank `rank`'s shard of `split` (of `world` ranks) into sums that add across
    /// ranks element by element ([`EvalSums::flat`]), `batch_size` samples at a time where the
    /// task batches samples.
    ///
    /// # Errors
    /// [`TrainError::Model`] / [`TrainError::Metrics`] on shape disagreements (a bug, reported
    /// rather than hidden).
    fn eval_shard(
        &self,
        model: &Model,
        split: SplitName,
        rank: usize,
        world: usize,
        batch_size: usize,
        device: &Device,
    ) -> Result<EvalSums, TrainError>;

    /// The report of `split` from the sums over all of it.
    ///
    /// # Errors
    /// [`TrainError::Metrics`] when the sums do not have this task's layout.
    fn report(&self, split: SplitName, sums: EvalSums) -> Result<EvalReport, TrainError>;

    /// The metrics early stopping can monitor for this kind (an allow-list: `val_loss` and the
    /// kind's own metrics; [`TaskKind::monitored_metrics`]).
    fn monitored_metrics(&self) -> &'static [MonitorMetric] {
        self.kind().monitored_metrics()
    }
}

/// Sums of an evaluation over some samples of a split, before they become a report.
#[derive(Debug, Clone, Default)]
pub struct EvalSums {
    /// The sums, in the task's own layout; the sums of two shards are their element-wise sum.
    pub flat: Vec<f64>,
    /// Forecasts and targets in original units (forecasting only, for plots; not summed).
    pub forecasts: Option<(Vec<f32>, Vec<f32>)>,
}

/// The loss sums every sample-batched task starts its [`EvalSums::flat`] with:
/// `[Σ batch loss × batch weight, samples, Σ batch weight]`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LossSums {
    pub loss_sum: f64,
    pub samples: usize,
    pub loss_weight: f64,
}

impl LossSums {
    /// Entries of the flat layout.
    pub const LEN: usize = 3;

    /// Adds a batch of `samples` samples: its mean loss weighs its sample count when every
    /// sample weighs the same (exact in an f64, so the split loss is `Σ loss·len / samples`),
    /// else the sum of its samples' weights, so that `Σ loss·weight / Σ weight` is the weighted
    /// mean of the whole split however it was batched or sharded.
    pub fn add(&mut self, task: &dyn Task, output: Tensor<2>, targets: Targets, samples: usize) {
        let weight = task
            .sample_weights(&targets)
            .map_or(samples as f64, |w| w.iter().sum());
        self.loss_sum += f64::from(task.loss(output, targets).into_scalar::<f32>()) * weight;
        self.loss_weight += weight;
        self.samples += samples;
    }

    /// The flat layout followed by `metrics`.
    pub fn flat(self, metrics: Vec<f64>) -> Vec<f64> {
        let mut out = vec![self.loss_sum, self.samples as f64, self.loss_weight];
        out.extend(metrics);
        out
    }

    /// Splits a flat layout into the loss sums and the rest.
    pub fn parse(flat: &[f64]) -> Result<(LossSums, &[f64]), TrainError> {
        if flat.len() < Self::LEN {
            return Err(TrainError::Metrics(
                crate::metrics::MetricsError::FlatLength {
                    expected: Self::LEN,
                    got: flat.len(),
                },
            ));
        }
        Ok((
            LossSums {
                loss_sum: flat[0],
                samples: flat[1] as usize,
                loss_weight: flat[2],
            },
            &flat[Self::LEN..],
        ))
    }

    /// The split's loss.
    pub fn mean(&self) -> f64 {
        if self.loss_weight > 0.0 {
            self.loss_sum / self.loss_weight
        } else {
            self.loss_sum / self.samples.max(1) as f64
        }
    }
}

/// A task over its prepared data: the [`Task`] of the spec's kind.
#[derive(Debug)]
pub struct TaskData {
    task: Box<dyn Task>,
}

impl TaskData {
    /// The task of `spec`'s kind over `data` (the constructor from prepared data).
    ///
    /// # Errors
    /// [`TrainError::UnknownClassWeight`] when `task.class_weights` names a class the data does
    /// not have; [`TrainError::KindMismatch`] when the data was prepared for another kind.
    pub fn new(spec: &JobSpec, data: Prepared) -> Result<TaskData, TrainError> {
        let mismatch = |data: &Prepared| TrainError::KindMismatch {
            task: spec.task.kind_name(),
            what: prepared_name(data),
        };
        let task: Box<dyn Task> = match (&spec.task, data) {
            (TaskSpec::Forecast { loss, .. }, Prepared::Series(s)) => {
                Box::new(Forecast::new(s, *loss))
            }
            (
                TaskSpec::Classify {
                    pooling,
                    class_weights,
                    ..
                },
                Prepared::Text(t),
            ) => Box::new(Classify::new(t, *pooling, class_weights)?),
            (
                TaskSpec::Seq2seq {
                    attention,
                    teacher_forcing,
                    beam_width,
                    length_penalty,
                    ..
                },
                Prepared::Pairs(p),
            ) => Box::new(
                Seq2seq::new(p, *attention, *teacher_forcing)
                    .with_beam(*beam_width, *length_penalty),
            ),
            (TaskSpec::LanguageModel { .. }, Prepared::Corpus(c)) => {
                Box::new(LanguageModel::new(c))
            }
            (
                TaskSpec::Forecast { .. }
                | TaskSpec::Classify { .. }
                | TaskSpec::Seq2seq { .. }
                | TaskSpec::LanguageModel { .. },
                data,
            ) => return Err(mismatch(&data)),
        };
        Ok(TaskData { task })
    }

    /// A task of a kind this crate does not know (an experiment or a test): evaluation and
    /// the learner take it like any other.
    pub fn from_task(task: Box<dyn Task>) -> TaskData {
        TaskData { task }
    }

    /// The task.
    pub fn task(&self) -> &dyn Task {
        self.task.as_ref()
    }

    /// Number of samples in a split.
    pub fn len(&self, split: SplitName) -> usize {
        self.task.len(split)
    }

    /// The model's input block for this data.
    pub fn input_kind(&self) -> InputKind {
        self.task.input_kind()
    }

    /// Whether a fresh model starts with a zero head ([`Task::zero_head`]).
    pub fn zero_head(&self) -> bool {
        self.task.zero_head()
    }

    /// The model's head for this task.
    pub fn head_kind(&self) -> HeadKind {
        self.task.head_kind()
    }

    /// Whether the recurrent state is carried from chunk to chunk ([`Task::carries_state`]).
    pub fn carries_state(&self) -> bool {
        self.task.carries_state()
    }

    /// See [`Task::sample_weights`].
    pub fn sample_weights(&self, targets: &Targets) -> Option<Vec<f64>> {
        self.task.sample_weights(targets)
    }

    /// Builds the tensors of the samples `indices` of `split` on `device`.
    pub fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        self.task.batch(split, indices, device)
    }
}

impl Objective for TaskData {
    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        self.task.loss(output, targets)
    }
}

fn prepared_name(data: &Prepared) -> &'static str {
    match data {
        Prepared::Series(_) => "numeric series",
        Prepared::Text(_) => "labelled text",
        Prepared::Pairs(_) => "text pairs",
        Prepared::Corpus(_) => "a text corpus",
    }
}

/// The input block and head of the model a checkpoint was trained with (the constructor from
/// a checkpoint: its spec's kind over its fitted normalizer or vocabularies).
///
/// # Errors
/// [`TrainError::KindMismatch`] when the fitted state is not the kind's (a corrupt or foreign
/// checkpoint).
pub fn model_shape(ckpt: &Checkpoint) -> Result<(InputKind, HeadKind), TrainError> {
    let spec = &ckpt.header.spec;
    let fitted = &ckpt.header.fitted;
    let shape = match &spec.task {
        TaskSpec::Forecast { horizon, .. } => forecast::shape(*horizon, fitted),
        TaskSpec::Classify { pooling, .. } => classify::shape(*pooling, fitted),
        TaskSpec::Seq2seq {
            attention,
            teacher_forcing,
            ..
        } => seq2seq::shape(*attention, *teacher_forcing, fitted),
        TaskSpec::LanguageModel { .. } => language_model::shape(fitted),
    };
    shape.ok_or_else(|| TrainError::KindMismatch {
        task: spec.task.kind_name(),
        what: "the checkpoint's fitted state",
    })
}
