//! One optimizer step in the order DESIGN.md fixes for every rank: forward → backward →
//! gradients as one flat f32 buffer → gradient hook (where the all-reduce goes) → clip →
//! optimizer step on the flat parameters → parameters loaded back into the model.
//!
//! The flat parameter buffer is the source of truth: the optimizer, the checkpoints and the
//! all-reduce all work on it, and the burn model is rebuilt from it after each step (≈1 % of a
//! step, BURN.md). That keeps replicas bit-identical and checkpoints independent of burn's
//! random parameter ids.

use crate::clip;
use crate::error::TrainError;
pub use crate::group::{GradientHook, NoHook};
use crate::optim::{Optimizer, ParamGroups};
use crate::tensors::{Objective, Targets};
use burn::optim::GradientsParams;
use ringtrain_models::{Batch, ForwardCtx, Model, RecurrentState, flat};
use ringtrain_spec::ClipSpec;
use std::time::{Duration, Instant};

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Mean loss of the batch before the update.
    pub loss: f32,
    /// Global gradient norm before clipping (when `train.clip.norm` is set).
    pub grad_norm: Option<f32>,
    /// Forward + backward + flattening.
    pub compute: Duration,
    /// Time inside the gradient hook.
    pub communication: Duration,
    /// Clipping, optimizer and reloading the parameters.
    pub update: Duration,
}

/// What [`Learner::gradients`] computed.
#[derive(Debug, Clone)]
pub struct Computed {
    /// Mean loss of the batch.
    pub loss: f32,
    /// Flat gradient of that loss (visit order).
    pub grads: Vec<f32>,
    /// Forward + backward + flattening.
    pub compute: Duration,
}

/// What [`Learner::apply`] did.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// Global gradient norm before clipping (when `train.clip.norm` is set).
    pub grad_norm: Option<f32>,
    /// Clipping, optimizer and reloading the parameters.
    pub update: Duration,
}

/// A model with its flat parameters and optimizer.
pub struct Learner {
    model: Option<Model>,
    params: Vec<f32>,
    optimizer: Optimizer,
    clip: ClipSpec,
    groups: ParamGroups,
}

impl Learner {
    /// Wraps `model` (on an autodiff device), taking its current parameters as the flat buffer.
    ///
    /// # Errors
    /// [`TrainError::Optim`] if `optimizer` was built for another parameter count.
    pub fn new(model: Model, optimizer: Optimizer, clip: ClipSpec) -> Result<Learner, TrainError> {
        let params = flat::flatten_params(&model);
        if optimizer.n_params() != params.len() {
            return Err(crate::optim::OptimError::ParamCountMismatch {
                state: optimizer.n_params(),
                model: params.len(),
            }
            .into());
        }
        Ok(Learner {
            model: Some(model),
            params,
            optimizer,
            clip,
            groups: ParamGroups::default(),
        })
    }

    /// Trains the parameter groups `groups` (the layers `init_from` took) by their own rules:
    /// frozen for their first epochs, then with a scaled learning rate.
    pub fn set_groups(&mut self, groups: ParamGroups) {
        self.groups = groups;
    }

    /// Replaces the parameters (e.g. from a checkpoint or rank 0's broadcast).
    ///
    /// # Errors
    /// [`TrainError::Model`] if `params` has the wrong length.
    pub fn set_params(&mut self, params: Vec<f32>) -> Result<(), TrainError> {
        let model = self.take_model();
        self.model = Some(flat::load_params(model, &params)?);
        self.params = params;
        Ok(())
    }

    /// The flat parameters (visit order).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The model with the current parameters.
    pub fn model(&self) -> &Model {
        self.model.as_ref().expect("model is present between steps")
    }

    fn take_model(&mut self) -> Model {
        self.model.take().expect("model is present between steps")
    }

    /// Runs one optimizer step (1-based `step`, in `epoch`) with learning rate `lr`:
    /// [`Learner::gradients`], then `hook`, then [`Learner::apply`].
    ///
    /// # Errors
    /// [`TrainError::Diverged`] when the loss or gradient norm is not finite (parameters are left
    /// unchanged); [`TrainError::Hook`] when the gradient exchange fails.
    pub fn step(
        &mut self,
        objective: &dyn Objective,
        batch: Batch,
        targets: Targets,
        ctx: &ForwardCtx,
        lr: f32,
        hook: &mut dyn GradientHook,
        (step, epoch): (u64, u32),
    ) -> Result<StepStats, TrainError> {
        let computed = self.gradients(objective, batch, targets, ctx, (step, epoch))?;
        let mut grads = computed.grads;
        let exchange_started = Instant::now();
        hook.exchange(step, &mut grads)
            .map_err(|message| TrainError::Hook { step, message })?;
        let communication = exchange_started.elapsed();
        let applied = self.apply(&mut grads, lr, (step, epoch))?;
        Ok(StepStats {
            loss: computed.loss,
            grad_norm: applied.grad_norm,
            compute: computed.compute,
            communication,
            update: applied.update,
        })
    }

    /// The first half of a step: forward and backward on `batch`, giving this replica's loss and
    /// flat gradient (visit order). A distributed trainer exchanges the gradient between this and
    /// [`Learner::apply`].
    ///
    /// # Errors
    /// [`TrainError::Diverged`] when the loss is not finite.
    pub fn gradients(
        &mut self,
        objective: &dyn Objective,
        batch: Batch,
        targets: Targets,
        ctx: &ForwardCtx,
        (step, epoch): (u64, u32),
    ) -> Result<Computed, TrainError> {
        let started = Instant::now();
        let output = self.model().forward(batch, ctx);
        self.backward(objective, output, targets, started, (step, epoch))
    }

    /// [`Learner::gradients`] for truncated BPTT: the forward pass starts from the recurrent
    /// state `state` (`None`: zeros) and the state after the batch's last step is returned with
    /// the gradients (detached: no gradient crosses from one batch into the previous one).
    ///
    /// # Errors
    /// [`TrainError::Model`] when `state` does not fit the model or batch;
    /// [`TrainError::Diverged`] when the loss is not finite.
    pub fn gradients_with_state(
        &mut self,
        objective: &dyn Objective,
        batch: Batch,
        targets: Targets,
        state: Option<&RecurrentState>,
        ctx: &ForwardCtx,
        (step, epoch): (u64, u32),
    ) -> Result<(Computed, RecurrentState), TrainError> {
        let started = Instant::now();
        let (output, next) = self.model().forward_with_state(batch, state, ctx)?;
        let computed = self.backward(objective, output, targets, started, (step, epoch))?;
        Ok((computed, next))
    }

    /// Loss, backward and flattening of the gradients of `output`.
    fn backward(
        &self,
        objective: &dyn Objective,
        output: burn::tensor::Tensor<2>,
        targets: Targets,
        started: Instant,
        (step, epoch): (u64, u32),
    ) -> Result<Computed, TrainError> {
        let model = self.model();
        let loss = objective.loss(output, targets);
        let loss_value = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return Err(TrainError::Diverged {
                step,
                epoch,
                what: "loss",
                value: loss_value,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), model);
        let grads = flat::flatten_grads(model, &grads);
        Ok(Computed {
            loss: loss_value,
            grads,
            compute: started.elapsed(),
        })
    }

    /// The second half of a step: clips `grads` (the gradient every replica applies), takes the
    /// optimizer step with learning rate `lr` and reloads the model from the new parameters.
    ///
    /// # Errors
    /// [`TrainError::Diverged`] when the gradient norm is not finite (parameters are left
    /// unchanged); [`TrainError::Optim`] when `grads` has the wrong length.
    pub fn apply(
        &mut self,
        grads: &mut [f32],
        lr: f32,
        (step, epoch): (u64, u32),
    ) -> Result<Applied, TrainError> {
        let started = Instant::now();
        self.groups.zero_frozen(grads, epoch);
        let grad_norm = clip::apply(&self.clip, grads);
        let norm_check = grad_norm.unwrap_or_else(|| clip::sum_of_squares(grads) as f32);
        update(
            &mut self.optimizer,
            &mut self.params,
            grads,
            (lr, &self.groups),
            norm_check,
            (step, epoch),
        )?;
        let model = self.take_model();
        self.model = Some(flat::load_params(model, &self.params)?);
        Ok(Applied {
            grad_norm,
            update: started.elapsed(),
        })
    }

    /// Gives back the optimizer (for checkpointing) and the flat parameters.
    pub fn into_parts(self) -> (Vec<f32>, Optimizer) {
        (self.params, self.optimizer)
    }
}

/// The update every learner applies after clipping (the whole model's and a pipeline stage's
/// slice): a non-finite gradient norm (`norm_check`: the clipped norm, or the sum of squares
/// without norm clipping) stops the run at this step, else the optimizer updates `params` with
/// learning rate `lr`, scaled (or frozen) per parameter group in `epoch`.
///
/// # Errors
/// [`TrainError::Diverged`] for a non-finite norm; [`TrainError::Optim`] on a length mismatch.
pub(crate) fn update(
    optimizer: &mut Optimizer,
    params: &mut [f32],
    grads: &[f32],
    (lr, groups): (f32, &ParamGroups),
    norm_check: f32,
    (step, epoch): (u64, u32),
) -> Result<(), TrainError> {
    if !norm_check.is_finite() {
        return Err(TrainError::Diverged {
            step,
            epoch,
            what: "gradient norm",
            value: norm_check,
        });
    }
    if groups.is_empty() {
        optimizer.step(params, grads, lr)?;
    } else {
        optimizer.step_segments(params, grads, lr, &groups.segments(params.len(), epoch))?;
    }
    Ok(())
}

/// The dropout stream of optimizer step `step`: a pure function of (seed, step), so a resumed
/// run draws the same masks.
pub fn dropout_seed(seed: u64, step: u64) -> u64 {
    // SplitMix64 finalizer: decorrelates consecutive steps.
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
