//! Errors of a training run. Each variant says what a user must change: the step and epoch where
//! numbers went bad, the spec field that names a class that does not exist, the checkpoint file
//! that is corrupt.

use crate::checkpoint::CheckpointError;
use crate::group::GroupError;
use crate::metrics::MetricsError;
use crate::optim::OptimError;
use ringtrain_data::DataError;
use ringtrain_models::{BoundaryShape, ModelError};
use std::path::PathBuf;

/// Why a training, evaluation or prediction run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The dataset could not be read or prepared (boxed: data errors carry file, line, column
    /// and cell text, and would make every `Result` of this crate large).
    #[error(transparent)]
    Data(Box<DataError>),
    /// The model could not be built or run on the given shapes.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The optimizer state does not fit the model.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Metric accumulation failed (shapes disagree).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A checkpoint could not be written, read, or does not match the spec.
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    /// `task.class_weights` names a class the data does not have.
    #[error("task.class_weights.{label}: no class {label:?} in the data (classes: {known})")]
    UnknownClassWeight {
        /// The label in the spec.
        label: String,
        /// The classes found, comma-separated.
        known: String,
    },
    /// The split a run needs has no samples.
    #[error("the {split} split is empty: {hint}")]
    EmptySplit {
        /// Which split.
        split: &'static str,
        /// What to change.
        hint: String,
    },
    /// The loss or the gradient norm became NaN or infinite: training diverged.
    #[error(
        "training diverged at step {step} (epoch {epoch}): {what} is {value}; lower \
         train.optimizer.lr or set train.clip.norm"
    )]
    Diverged {
        /// Optimizer step (1-based) whose forward/backward produced the value.
        step: u64,
        /// Epoch of that step (0-based).
        epoch: u32,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The non-finite value.
        value: f32,
    },
    /// The gradient hook (the all-reduce in a distributed run) failed.
    #[error("gradient exchange failed at step {step}: {message}")]
    Hook {
        /// Step whose gradients were being exchanged.
        step: u64,
        /// The hook's error.
        message: String,
    },
    /// A collective call of a distributed run failed (a lost peer, a deadline, a mismatch).
    #[error("{what} failed: {source}")]
    Collective {
        /// Which call, e.g. `gradient all-reduce at step 12`.
        what: String,
        /// The group's error (with the blamed rank, if any).
        #[source]
        source: GroupError,
    },
    /// The periodic parameter checksum found replicas whose parameters differ.
    #[error(
        "replica parameters diverged at step {step}: ranks {differing:?} differ from rank 0 \
         (checksums by rank: {checksums:08x?})"
    )]
    ReplicasDiverged {
        /// Optimizer step after which the checksums were compared.
        step: u64,
        /// Ranks whose checksum differs from rank 0's.
        differing: Vec<usize>,
        /// CRC-32 of every rank's parameters, by rank.
        checksums: Vec<u32>,
    },
    /// `train.batch_size` (the global batch) cannot be split evenly over the replicas.
    #[error(
        "train.batch_size = {batch}: the global batch must be a multiple of the {world} \
         data-parallel replicas"
    )]
    BatchNotDivisible {
        /// The spec's global batch.
        batch: usize,
        /// Number of replicas.
        world: usize,
    },
    /// A pipelined run failed: stages that cannot be planned, a batch that does not split into
    /// micro-batches, a failed transfer between stages or a tensor of the wrong size (each
    /// naming the stage, and the layer where one is at fault).
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
    /// Data or a checkpoint's fitted state was prepared for another task kind than the spec's.
    #[error("task.kind = \"{task}\" does not fit {what}")]
    KindMismatch {
        /// The spec's task kind.
        task: &'static str,
        /// What was found instead.
        what: &'static str,
    },
    /// The early-stopping metric is not one the task reports.
    #[error("train.early_stopping.metric = {metric:?}: task.kind = \"{task}\" does not report it")]
    UnsupportedMonitor {
        /// The metric.
        metric: ringtrain_spec::MonitorMetric,
        /// The task kind.
        task: &'static str,
    },
    /// Input given at predict time is unusable.
    #[error("{0}")]
    Input(String),
    /// `init_from` names a checkpoint or layers that cannot initialize this model.
    #[error(transparent)]
    Init(Box<InitError>),
    /// An export could not be written.
    #[error(transparent)]
    Export(Box<ExportError>),
}

impl From<ExportError> for TrainError {
    fn from(e: ExportError) -> Self {
        TrainError::Export(Box::new(e))
    }
}

impl From<InitError> for TrainError {
    fn from(e: InitError) -> Self {
        TrainError::Init(Box::new(e))
    }
}

/// Why `init_from` cannot initialize a model: each names the spec field and the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The checkpoint is missing, unreadable, corrupt or holds an invalid spec.
    #[error("init_from.checkpoint: {0}")]
    Checkpoint(Box<CheckpointError>),
    /// The safetensors file (`init_from.format = "safetensors"`) is missing, unreadable, not
    /// safetensors, too large, or has a layer only partly.
    #[error("init_from.checkpoint: {0}")]
    Safetensors(Box<ExportError>),
    /// A named layer is not in one of the two models.
    #[error(
        "{field} = {name:?}: {model} has no layer of that name (its layers: {available}; \
         checkpoint {path})"
    )]
    UnknownLayer {
        /// `init_from.layers[i]`.
        field: String,
        /// The name given.
        name: String,
        /// `this model` or `the checkpoint's model`.
        model: &'static str,
        /// That model's layer names, comma-separated.
        available: String,
        /// The checkpoint file.
        path: String,
    },
    /// A layer's parameter shapes differ between the two models.
    #[error(
        "{field}: layer {name:?} has parameter shapes {expected} in this model but {found} in \
         checkpoint {path}{hint}"
    )]
    Shape {
        /// `init_from.layers[i]`, or `init_from.layers` for the default selection.
        field: String,
        /// The layer name.
        name: String,
        /// This model's shapes, e.g. `[[5000, 64]]`.
        expected: String,
        /// The checkpoint's shapes.
        found: String,
        /// The file.
        path: String,
        /// What usually causes it, when known (starts with `: `), else empty.
        hint: String,
    },
    /// The checkpoint's vocabulary cannot be used by this spec's data.
    #[error("init_from.checkpoint = {path}: {reason}")]
    Vocabulary {
        /// The file.
        path: String,
        /// What differs.
        reason: String,
    },
    /// The default selection found no layer both models have with the same shapes.
    #[error(
        "init_from: no layer of checkpoint {path} ({theirs}) fits this model ({ours}); \
         list the layers to take in init_from.layers"
    )]
    NothingToTake {
        /// The file.
        path: String,
        /// This model's layer names.
        ours: String,
        /// The checkpoint model's layer names.
        theirs: String,
    },
}

impl From<DataError> for TrainError {
    fn from(e: DataError) -> Self {
        TrainError::Data(Box::new(e))
    }
}

impl From<CheckpointError> for TrainError {
    fn from(e: CheckpointError) -> Self {
        TrainError::Checkpoint(Box::new(e))
    }
}

impl From<PipelineError> for TrainError {
    fn from(e: PipelineError) -> Self {
        TrainError::Pipeline(Box::new(e))
    }
}

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The stages cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The run's setup does not fit the pipeline (stage count, batch split).
    #[error("pipeline: {0}")]
    Setup(String),
    /// A transfer between stages failed.
    #[error("pipeline stage {stage}: {what} failed: {source}")]
    Link {
        /// This stage.
        stage: usize,
        /// Which transfer.
        what: String,
        /// The link's error (naming the peer rank where known).
        #[source]
        source: GroupError,
    },
    /// A received tensor does not have the size the plan gives.
    #[error(
        "pipeline stage {stage}: the {what} for layer {layer} ({name}) should be {expected}, got \
         {got} values"
    )]
    Shape {
        /// This stage.
        stage: usize,
        /// The layer at that boundary.
        layer: usize,
        /// Its name.
        name: String,
        /// `activation` or `output gradient`.
        what: &'static str,
        /// The planned shape.
        expected: String,
        /// Values received.
        got: usize,
    },
    /// A stage's forward rejected its input.
    #[error("pipeline stage {stage}: {source}")]
    Model {
        /// This stage.
        stage: usize,
        /// The model's error (naming the layer).
        #[source]
        source: ModelError,
    },
}

/// Why a stage plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// More stages than layers, or zero stages.
    #[error(
        "parallel.pipeline = {stages}: a pipeline needs between 1 and the number of model layers \
         ({layers}) stages"
    )]
    StageCount {
        /// Requested stages.
        stages: usize,
        /// Layers of the model.
        layers: usize,
    },
    /// Explicit stages that are not contiguous, in order, non-empty and covering every layer.
    #[error("parallel.stages = {stages:?}: {reason}")]
    Explicit {
        /// The spec's stage lists.
        stages: Vec<Vec<usize>>,
        /// What is wrong.
        reason: String,
    },
    /// Two consecutive stages do not agree on the tensor that crosses their boundary.
    #[error(
        "stage {stage} (layers {first}..) starts with layer {layer} ({name}) taking {expected}, \
         but the previous stage gives {got}"
    )]
    Boundary {
        /// The receiving stage.
        stage: usize,
        /// Its first layer index.
        first: usize,
        /// Index of that layer.
        layer: usize,
        /// Name of that layer.
        name: String,
        /// What it takes.
        expected: BoundaryShape,
        /// What the previous stage's last layer gives.
        got: BoundaryShape,
    },
}

/// Why an export could not be written or a safetensors file not read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than the run's limits allow for a model's weights.
    #[error(
        "{path}: {bytes} bytes, more than limits.max_parameters = {max_parameters} f32 values \
         plus {allowance} bytes of metadata"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        bytes: u64,
        /// The limit it was checked against.
        max_parameters: u64,
        /// Metadata allowed on top.
        allowance: u64,
    },
    /// The safetensors reader or writer refused the data.
    #[error("{path}: not a valid safetensors file: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the reader found.
        source: safetensors::SafeTensorError,
    },
    /// A tensor has a dtype that cannot be read as `f32` weights.
    #[error(
        "{path}: tensor {name:?} has dtype {dtype}; weights must be F32, F64, F16 or BF16 (an \
         int8 export is for ringtrain-infer: export without --quantize for init_from)"
    )]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A layer is only partly in the file.
    #[error(
        "{path}: layer {layer:?} is only partly there: it has {present:?} but not {missing:?} \
         (a {hint})"
    )]
    PartialLayer {
        /// The file.
        path: PathBuf,
        /// The layer's ringtrain name.
        layer: String,
        /// A key that is there.
        present: String,
        /// A key of the same layer that is not.
        missing: String,
        /// What usually causes it.
        hint: &'static str,
    },
    /// A layer that the ONNX export does not cover (see [`crate::onnx`]).
    #[error("ONNX export: layer {layer:?}: {reason}")]
    Onnx {
        /// The layer's ringtrain name.
        layer: String,
        /// Why it cannot be exported.
        reason: String,
    },
    /// The `ringtrain.fitted` metadata is not a normalizer or vocabulary (or, on export, the
    /// spec or fitted state could not be encoded).
    #[error("{path}: metadata ringtrain.fitted: {reason}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
}

/// Maps a group error of the collective call `what` to [`TrainError::Collective`].
pub(crate) fn collective(what: impl Into<String>) -> impl FnOnce(GroupError) -> TrainError {
    let what = what.into();
    move |source| TrainError::Collective { what, source }
}
