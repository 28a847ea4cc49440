//! Stage-local training state: a pipeline rank keeps and updates only its stage's slice of the
//! flat parameters ([`StagePlan::param_range`]) and the matching slice of the optimizer state
//! ([`OptimizerState::slice`]), never the whole model's.
//!
//! A step exchanges, besides the activations, only what the update needs:
//! - the stage's gradient slice is averaged over the stage's replicas (the stage group's
//!   all-reduce, in the trainer);
//! - the replica's stages all-gather one small record each ([`StepScalars`]): the sum of squares
//!   of their (value-clipped) gradient slice as an exact f64, the loss (the last stage's is the
//!   batch loss) and the stop vote. Every stage adds the sums in stage order, so all get the
//!   same global norm: clipping by the global norm, and the non-finite check, stay exactly
//!   those of one process (up to the f64 summation order of the partial sums).
//!
//! The whole parameters are assembled only where they are needed: to the checkpoint writer
//! (stage 0 of replica 0, [`StageLearner::gather_to_writer`], point-to-point from the other
//! stages of replica 0, parameters and optimizer state together) when a checkpoint is written,
//! and on every stage ([`StageLearner::all_gather`]) for an evaluation and for the final
//! report. Resuming cuts each stage's slices out of the full checkpoint.
//!
//! The burn model of a stage still holds every layer (built from the seed, which also makes the
//! layer shapes known), but only the stage's layers are ever reloaded or run; the flat
//! parameters, their gradients and the optimizer state — 4× the parameters under Adam — are
//! per stage. [`StageFootprint`] says what a rank holds and moves, before and after this split.

use super::{StageEngine, StageLink, StagePlan};
use crate::clip;
use crate::error::TrainError;
use crate::group::{GroupError, decode_f64, encode_f64};
use crate::learner::{Applied, update};
use crate::optim::{OptimError, Optimizer, OptimizerState, ParamGroups};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use ringtrain_models::Model;
use ringtrain_spec::ClipSpec;
use ringtrain_spec::types::OptimizerSpec;
use std::ops::Range;
use std::time::Instant;

/// Values of one stage's record in the per-step scalar all-gather: four f32 pieces of the f64
/// sum of squares ([`encode_f64`]), the loss, the stop vote.
const SCALARS: usize = 6;

/// What the stages of a replica agree on after a step's scalar all-gather.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepScalars {
    /// Sum over the stages (in stage order) of the squares of their gradient slices.
    pub sum_of_squares: f64,
    /// The last stage's loss (the batch loss; the other stages have none).
    pub loss: f32,
    /// The largest stop vote of any stage (> 0: stop after this step).
    pub stop: f32,
}

/// One stage's slice of the training state, with the engine that computes its gradients and the
/// link to the other stages of its replica.
pub struct StageLearner<'l> {
    engine: StageEngine,
    link: &'l mut dyn StageLink,
    model: Option<Model>,
    range: Range<usize>,
    params: Vec<f32>,
    optimizer: Optimizer,
    clip: ClipSpec,
    /// The parameter groups within this stage's slice (relative to its start).
    groups: ParamGroups,
}

impl std::fmt::Debug for StageLearner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageLearner")
            .field("stage", &self.engine.stage())
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The values of the parameters of `model` in `range` of its flat buffer (visit order).
fn params_in(model: &Model, range: &Range<usize>) -> Vec<f32> {
    struct Take<'a> {
        range: &'a Range<usize>,
        offset: usize,
        out: Vec<f32>,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            if self.offset >= self.range.start && self.offset + n <= self.range.end {
                let values = param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_default();
                self.out.extend(values);
            }
            self.offset += n;
        }
    }
    let mut take = Take {
        range,
        offset: 0,
        out: Vec::with_capacity(range.len()),
    };
    model.visit(&mut take);
    take.out
}

/// `model` with the parameters in `range` of its flat buffer replaced by `values` (the others
/// untouched), keeping ids and gradient requirements.
fn load_range(model: Model, range: &Range<usize>, values: &[f32]) -> Model {
    struct Load<'a> {
        range: &'a Range<usize>,
        values: &'a [f32],
        offset: usize,
    }
    impl ModuleMapper for Load<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let n = param.shape().num_elements();
            let at = self.offset;
            self.offset += n;
            if at < self.range.start || at + n > self.range.end {
                return param;
            }
            let chunk = &self.values[at - self.range.start..at - self.range.start + n];
            param.map(|t| {
                let require_grad = t.is_require_grad();
                let data = TensorData::new(chunk.to_vec(), t.shape());
                Tensor::from_data(data, &t.device()).set_require_grad(require_grad)
            })
        }
    }
    model.map(&mut Load {
        range,
        values,
        offset: 0,
    })
}

fn link_error(stage: usize, what: &str) -> impl FnOnce(GroupError) -> TrainError {
    let what = format!("{what} (pipeline stage {stage})");
    move |source| TrainError::Collective { what, source }
}

impl<'l> StageLearner<'l> {
    /// Stage `engine.stage()`'s state over `model` (an autodiff-device model of the whole layer
    /// stack): with `resumed` (a checkpoint's whole parameters and optimizer state), the stage's
    /// slices cut out of them; else the model's own initial values of the stage's parameters and
    /// a fresh optimizer of `spec` over the slice alone (the whole state is never allocated).
    ///
    /// # Errors
    /// [`TrainError::Model`] or [`TrainError::Optim`] when the checkpoint's parameters or
    /// optimizer state do not cover the plan's parameters or do not fit `spec`.
    pub fn new(
        engine: StageEngine,
        link: &'l mut dyn StageLink,
        model: Model,
        resumed: Option<(&[f32], &OptimizerState)>,
        spec: &OptimizerSpec,
        clip: ClipSpec,
    ) -> Result<StageLearner<'l>, TrainError> {
        let range = engine.plan().param_range(engine.stage());
        let n = engine.plan().num_params();
        let (model, params, optimizer) = match resumed {
            Some((full, state)) => {
                if full.len() != n {
                    return Err(ringtrain_models::ModelError::ParamCount {
                        expected: n,
                        got: full.len(),
                    }
                    .into());
                }
                if state.n_params != n {
                    return Err(OptimError::ParamCountMismatch {
                        state: state.n_params,
                        model: n,
                    }
                    .into());
                }
                let optimizer =
                    Optimizer::from_state(spec, range.len(), state.slice(range.clone())?)?;
                let params = full[range.clone()].to_vec();
                (load_range(model, &range, &params), params, optimizer)
            }
            None => {
                let params = params_in(&model, &range);
                (model, params, Optimizer::new(spec, range.len()))
            }
        };
        Ok(StageLearner {
            engine,
            link,
            model: Some(model),
            range,
            params,
            optimizer,
            clip,
            groups: ParamGroups::default(),
        })
    }

    /// Trains the parameter groups `groups` of the whole flat buffer (the layers `init_from`
    /// took) by their own rules; this stage keeps the part within its slice.
    pub fn set_groups(&mut self, groups: &ParamGroups) {
        self.groups = groups.restrict(&self.range);
    }

    /// The engine of this stage.
    pub fn engine(&self) -> &StageEngine {
        &self.engine
    }

    /// The engine, the model and the link: what a step's schedule runs on.
    pub fn step_parts(&mut self) -> (&StageEngine, &Model, &mut dyn StageLink) {
        let model = self.model.as_ref().expect("model is present between steps");
        (&self.engine, model, &mut *self.link)
    }

    /// The model (only this stage's layers hold current values).
    pub fn model(&self) -> &Model {
        self.model.as_ref().expect("model is present between steps")
    }

    /// This stage's parameter slice.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Replaces this stage's parameter slice (e.g. by replica 0's broadcast).
    ///
    /// # Errors
    /// [`TrainError::Model`] when `params` is not the slice's length.
    pub fn set_params(&mut self, params: Vec<f32>) -> Result<(), TrainError> {
        if params.len() != self.range.len() {
            return Err(ringtrain_models::ModelError::ParamCount {
                expected: self.range.len(),
                got: params.len(),
            }
            .into());
        }
        let model = self.model.take().expect("model is present between steps");
        self.model = Some(load_range(model, &self.range, &params));
        self.params = params;
        Ok(())
    }

    /// Clamps `grads` (this stage's averaged gradient slice) by value when `train.clip.value` is
    /// set and zeroes the groups frozen in `epoch`, then all-gathers the step's scalars over the
    /// replica's stages: this stage's sum of squares, `loss` and `stop` vote.
    ///
    /// # Errors
    /// [`TrainError::Collective`] when the all-gather fails or returns another length.
    pub fn clip_and_exchange(
        &mut self,
        grads: &mut [f32],
        (loss, stop): (f32, f32),
        epoch: u32,
    ) -> Result<StepScalars, TrainError> {
        if let Some(value) = self.clip.value {
            clip::clip_by_value(grads, value as f32);
        }
        self.groups.zero_frozen(grads, epoch);
        let stage = self.engine.stage();
        let mut mine = encode_f64(&[clip::sum_of_squares(grads)]);
        mine.extend([loss, stop]);
        let all = self
            .link
            .all_gather(&mine)
            .map_err(link_error(stage, "all-gather of the step's gradient norm"))?;
        let p = self.link.stages();
        if all.len() != SCALARS * p {
            return Err(link_error(stage, "all-gather of the step's gradient norm")(
                GroupError::new(format!(
                    "{SCALARS} values over {p} stages returned {}",
                    all.len()
                )),
            ));
        }
        let mut out = StepScalars {
            sum_of_squares: 0.0,
            loss: all[(p - 1) * SCALARS + 4],
            stop: 0.0,
        };
        for record in all.chunks_exact(SCALARS) {
            out.sum_of_squares += decode_f64(&record[..4])[0];
            out.stop = out.stop.max(record[5]);
        }
        Ok(out)
    }

    /// The second half of a step on this stage's slice: scales `grads` to `train.clip.norm` by
    /// the global norm `sqrt(sum_of_squares)` (of all stages, from
    /// [`StageLearner::clip_and_exchange`]), takes the optimizer step with learning rate `lr`
    /// and reloads the stage's layers — what [`crate::Learner::apply`] does on the whole buffer.
    ///
    /// # Errors
    /// [`TrainError::Diverged`] when the global norm is not finite (nothing changes then; every
    /// stage sees the same norm, so all stop together).
    pub fn apply(
        &mut self,
        grads: &mut [f32],
        sum_of_squares: f64,
        lr: f32,
        (step, epoch): (u64, u32),
    ) -> Result<Applied, TrainError> {
        let started = Instant::now();
        let norm = sum_of_squares.sqrt();
        // As clip::clip_by_global_norm: the norm is reported in f32, and a non-finite one
        // leaves the gradients as they are (the check below stops the run).
        let grad_norm = self.clip.norm.map(|max_norm| {
            let reported = norm as f32;
            if reported.is_finite() {
                clip::clip_to_norm(grads, norm, max_norm as f32);
            }
            reported
        });
        let norm_check = grad_norm.unwrap_or(sum_of_squares as f32);
        update(
            &mut self.optimizer,
            &mut self.params,
            grads,
            (lr, &self.groups),
            norm_check,
            (step, epoch),
        )?;
        let model = self.model.take().expect("model is present between steps");
        self.model = Some(load_range(model, &self.range, &self.params));
        Ok(Applied {
            grad_norm,
            update: started.elapsed(),
        })
    }

    /// Every stage's `slice` of a flat buffer (each stage passing its own slice of the same
    /// buffer, e.g. its parameters), concatenated: the whole buffer, on every stage.
    ///
    /// # Errors
    /// [`TrainError::Collective`] when the all-gather fails or returns another length.
    pub fn all_gather(&mut self, slice: &[f32]) -> Result<Vec<f32>, TrainError> {
        let plan = self.engine.plan();
        let stage = self.engine.stage();
        let p = plan.num_stages();
        let width = (0..p).map(|s| plan.param_range(s).len()).max().unwrap_or(0);
        let mut mine = vec![0.0f32; width];
        mine[..slice.len()].copy_from_slice(slice);
        let fail = link_error(stage, "all-gather of the stages' parameters");
        let all = self.link.all_gather(&mine).map_err(fail)?;
        if all.len() != width * p {
            return Err(link_error(stage, "all-gather of the stages' parameters")(
                GroupError::new(format!(
                    "{width} values over {p} stages returned {}",
                    all.len()
                )),
            ));
        }
        let mut full = Vec::with_capacity(plan.num_params());
        for s in 0..p {
            full.extend_from_slice(&all[s * width..s * width + plan.param_range(s).len()]);
        }
        Ok(full)
    }

    /// Assembles the whole parameters and optimizer state on stage 0 (the checkpoint writer):
    /// every other stage sends its slices to stage 0, which returns `Some` with the full
    /// buffers; the other stages return `None`. Only the stages of one replica call it.
    ///
    /// # Errors
    /// [`TrainError::Collective`] when a transfer fails or a received message does not have the
    /// length the plan gives (naming the stage); [`TrainError::Optim`] when the slices' step
    /// counts disagree.
    pub fn gather_to_writer(&mut self) -> Result<Option<(Vec<f32>, OptimizerState)>, TrainError> {
        let stage = self.engine.stage();
        let state = self.optimizer.state();
        let message = |params: &[f32], state: &OptimizerState| {
            let mut m = params.to_vec();
            m.extend_from_slice(&state.momentum_buffer);
            m.extend_from_slice(&state.exp_avg);
            m.extend_from_slice(&state.exp_avg_sq);
            // The step count travels bit-exactly, to check that the stages agree on it.
            m.extend(encode_f64(&[state.step as f64]));
            m
        };
        if stage != 0 {
            self.link
                .send(0, &message(&self.params, state))
                .map_err(link_error(
                    stage,
                    "sending the checkpoint slices to stage 0",
                ))?;
            return Ok(None);
        }
        // Which buffers are in use is the spec's choice, the same on every stage.
        let used = [
            !state.momentum_buffer.is_empty(),
            !state.exp_avg.is_empty(),
            !state.exp_avg_sq.is_empty(),
        ];
        let plan = self.engine.plan().clone();
        let mut params = Vec::with_capacity(plan.num_params());
        params.extend_from_slice(&self.params);
        let mut states = vec![state.clone()];
        for from in 1..plan.num_stages() {
            let n = plan.param_range(from).len();
            let buffers = used.iter().filter(|u| **u).count();
            let expected = n * (1 + buffers) + 4;
            let got = self
                .link
                .recv(from)
                .map_err(link_error(stage, "receiving the checkpoint slices"))?;
            if got.len() != expected {
                return Err(link_error(stage, "receiving the checkpoint slices")(
                    GroupError::new(format!(
                        "stage {from} sent {} values, expected {expected} ({n} parameters, \
                         {buffers} optimizer buffers, the step)",
                        got.len()
                    )),
                ));
            }
            params.extend_from_slice(&got[..n]);
            let mut at = n;
            let mut take = |on: bool| {
                if on {
                    at += n;
                    got[at - n..at].to_vec()
                } else {
                    Vec::new()
                }
            };
            let (momentum_buffer, exp_avg, exp_avg_sq) =
                (take(used[0]), take(used[1]), take(used[2]));
            states.push(OptimizerState {
                kind: state.kind,
                step: decode_f64(&got[expected - 4..])[0] as u64,
                n_params: n,
                momentum_buffer,
                exp_avg,
                exp_avg_sq,
            });
        }
        Ok(Some((params, OptimizerState::concat(&states)?)))
    }
}

/// What a pipeline rank holds and moves per step, with the stage-local state and as it was when
/// every rank kept the whole model (logged at the start of a pipelined run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageFootprint {
    /// The stage.
    pub stage: usize,
    /// Parameters of the stage's slice.
    pub params: usize,
    /// Parameters of the whole model.
    pub model_params: usize,
    /// Bytes of the stage's flat parameters and optimizer state.
    pub state_bytes: u64,
    /// Bytes of the whole model's flat parameters and optimizer state (what every rank held
    /// before).
    pub full_state_bytes: u64,
    /// Payload bytes of the stage group's gradient all-reduce per step (the gradient slice and
    /// the step's scalars; 0 with one replica).
    pub allreduce_bytes: u64,
    /// Bytes the stage contributes to the replica's per-step all-gather (the 24-byte scalar
    /// record of [`StepScalars`]).
    pub gather_bytes: u64,
    /// Bytes the stage contributed to the per-step all-gather of the gradient slices when every
    /// rank assembled the whole gradient (the widest slice plus two scalars).
    pub full_gather_bytes: u64,
}

impl StageFootprint {
    /// The footprint of `stage` of `plan` with `replicas` data-parallel replicas under the
    /// optimizer `spec`.
    pub fn of(plan: &StagePlan, stage: usize, replicas: usize, spec: &OptimizerSpec) -> Self {
        // Floats per parameter: the value and each optimizer buffer the spec uses.
        let per = {
            let one = Optimizer::new(spec, 1).into_state();
            1 + one.momentum_buffer.len() + one.exp_avg.len() + one.exp_avg_sq.len()
        };
        let state_floats = |n: usize| (n * per) as u64 * 4;
        let params = plan.param_range(stage).len();
        let widest = (0..plan.num_stages())
            .map(|s| plan.param_range(s).len())
            .max()
            .unwrap_or(0);
        StageFootprint {
            stage,
            params,
            model_params: plan.num_params(),
            state_bytes: state_floats(params),
            full_state_bytes: state_floats(plan.num_params()),
            allreduce_bytes: if replicas > 1 {
                (params as u64 + 2) * 4
            } else {
                0
            },
            gather_bytes: (SCALARS * 4) as u64,
            full_gather_bytes: (widest as u64 + 2) * 4,
        }
    }
}
