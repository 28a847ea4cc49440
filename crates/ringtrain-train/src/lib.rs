//! Training for ringtrain: one optimizer step on flat f32 buffers (the layout the all-reduce
//! uses), optimizers, learning-rate schedules, gradient clipping, metrics, checkpoints,
//! evaluation and the single-process trainer.
//!
//! Entry points: [`train`] runs a job in this process; [`train_distributed`] runs one replica of a
//! data-parallel job over a [`Group`] (the worker implements it with the collective library);
//! [`train_pipelined`] runs one stage of one replica of a pipelined job (a [`Group`] of the
//! stage's replicas plus a [`StageLink`] between the replica's stages);
//! [`evaluate()`] scores a model on a split; [`Learner`] is one optimizer step.

pub mod bench;
pub mod checkpoint;
pub mod clip;
pub mod elastic;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod group;
pub mod inference;
pub mod layout;
pub mod learner;
pub mod lm;
pub mod metrics;
pub mod onnx;
pub mod optim;
pub mod pipeline;
pub mod report;
pub mod schedule;
pub mod seq2seq_task;
pub mod task;
pub mod tensors;
pub mod trainer;
pub mod transfer;

pub use checkpoint::{Checkpoint, CheckpointError, EpochRecord};
pub use elastic::CommitSlot;
pub use error::TrainError;
pub use evaluate::{evaluate, evaluate_distributed};
pub use group::{Group, GroupError, Solo, decode_f64, encode_f64, param_checksum};
pub use learner::{Applied, Computed, GradientHook, Learner, NoHook, StepStats};
pub use pipeline::{
    PipelineError, PipelineStepStats, StageEngine, StageLink, StagePlan, StageStepStats,
};
pub use report::{EvalReport, Scalar, TaskMetrics};
pub use task::{Task, TaskData};
pub use tensors::Targets;
pub use trainer::{
    DistOptions, Observer, Phase, PhaseSpan, RunInfo, Silent, StepEvent, StopReason, TrainOptions,
    TrainReport, per_rank_batch, train, train_distributed, train_pipelined, train_with_hook,
};
