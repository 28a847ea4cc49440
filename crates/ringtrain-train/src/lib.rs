//! Training for ringtrain: one optimizer step on flat f32 buffers (the layout the all-reduce
//! uses), optimizers, learning-rate schedules, gradient clipping, metrics, checkpoints,
//! evaluation and the single-process trainer.
//!
//! Entry points: [`train`] runs a job in this process; [`evaluate()`] scores a model on a split;
//! [`Learner`] is the step the distributed worker reuses with its all-reduce as the
//! [`GradientHook`].

pub mod bench;
pub mod checkpoint;
pub mod clip;
pub mod error;
pub mod evaluate;
pub mod inference;
pub mod learner;
pub mod metrics;
pub mod optim;
pub mod schedule;
pub mod task;
pub mod trainer;

pub use checkpoint::{Checkpoint, CheckpointError, EpochRecord};
pub use error::TrainError;
pub use evaluate::{EvalReport, TaskMetrics, evaluate};
pub use learner::{GradientHook, Learner, NoHook, StepStats};
pub use task::{Targets, TaskData};
pub use trainer::{
    Observer, RunInfo, Silent, StepEvent, StopReason, TrainOptions, TrainReport, train,
    train_with_hook,
};
