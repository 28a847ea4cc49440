//! One stage's part of a training step: the micro-batch forwards and backwards of a schedule,
//! with activations sent to the next stage and their gradients sent back over a [`StageLink`].
//!
//! A stage's backward starts from the gradient of its output: the received activation is made a
//! leaf that requires a gradient, the stage runs [`Model::forward_range`] on it, and the backward
//! of `sum(output ⊙ upstream_gradient)` gives both the stage's parameter gradients and the
//! gradient of its input, which goes to the previous stage (BURN.md, "Pipeline boundary"). The
//! last stage starts from the loss of the micro-batch, weighted by the micro-batch's share of
//! the batch loss, so the accumulated gradient is the gradient of the whole batch's loss.
//!
//! Every stage builds the same batch tensors from its own copy of the data (the sample indices
//! are a pure function of the seed): the masks and targets never travel, only `[mb, T, F]`
//! activations and their gradients do, and their lengths are checked against the plan.

use super::schedule::{Op, stage_ops};
use super::{PipelineError, StageLink};
use crate::tensors::{Objective, Targets};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use ringtrain_models::{Batch, Boundary, BoundaryShape, ForwardCtx, Inputs, Layer, Model};
use ringtrain_spec::PipelineSchedule;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::plan::StagePlan;

/// What one stage measured in one step's schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageStepStats {
    /// Time computing (forward, backward, gradient accumulation, tensor conversions).
    pub busy: Duration,
    /// Time waiting for or handing over activations and gradients.
    pub idle: Duration,
    /// Activation and gradient bytes this stage sent.
    pub bytes_sent: u64,
    /// Most micro-batches whose activations this stage held at once.
    pub max_in_flight: usize,
}

impl StageStepStats {
    /// `idle / (busy + idle)`: the measured bubble fraction (0 when nothing was timed).
    pub fn bubble_fraction(&self) -> f64 {
        let total = (self.busy + self.idle).as_secs_f64();
        if total > 0.0 {
            self.idle.as_secs_f64() / total
        } else {
            0.0
        }
    }
}

/// What a stage's step produced.
#[derive(Debug, Clone)]
pub struct StageStep {
    /// The weighted sum of the micro-batch losses, i.e. the batch loss (last stage only; 0
    /// elsewhere).
    pub loss: f32,
    /// Gradient of the batch loss w.r.t. this stage's parameter slice
    /// ([`StagePlan::param_range`]).
    pub grads: Vec<f32>,
    /// Measurements.
    pub stats: StageStepStats,
}

/// Runs one stage of a pipeline.
#[derive(Debug, Clone)]
pub struct StageEngine {
    plan: StagePlan,
    stage: usize,
    microbatches: usize,
    schedule: PipelineSchedule,
}

/// What a stage keeps of a micro-batch between its forward and its backward.
enum Saved {
    /// A non-last stage: its (leaf) input, if it has one, and its tracked output.
    Seq {
        input: Option<Tensor<3>>,
        output: Tensor<3>,
    },
    /// The last stage: its input and the model output (loss computed at backward time).
    Out {
        input: Option<Tensor<3>>,
        output: Tensor<2>,
    },
}

fn to_vec(data: TensorData) -> Vec<f32> {
    // A float tensor always converts to f32; an empty Vec would surface as a length mismatch.
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// Slices micro-batch `i` of `mb` samples out of a batch.
fn micro_batch(batch: &Batch, i: usize, mb: usize) -> Batch {
    let inputs = match &batch.inputs {
        Inputs::Numeric(x) => Inputs::Numeric(x.clone().narrow(0, i * mb, mb)),
        Inputs::Tokens(ids) => Inputs::Tokens(ids.clone().narrow(0, i * mb, mb)),
        Inputs::Pair { source, target_in } => Inputs::Pair {
            source: source.clone().narrow(0, i * mb, mb),
            target_in: target_in.clone().narrow(0, i * mb, mb),
        },
    };
    Batch {
        inputs,
        mask: batch.mask.clone().narrow(0, i * mb, mb),
    }
}

/// Slices micro-batch `i` of `mb` samples out of the targets.
pub(crate) fn micro_targets(targets: &Targets, i: usize, mb: usize) -> Targets {
    match targets {
        Targets::Regression(y) => Targets::Regression(y.clone().narrow(0, i * mb, mb)),
        Targets::Classes(c) => Targets::Classes(c.clone().narrow(0, i * mb, mb)),
        // Token targets are `[B·T]`, sample-major: a micro-batch is a run of `mb·T` rows.
        Targets::Tokens {
            ids,
            mask,
            host_mask,
            steps,
        } => {
            let (start, len) = (i * mb * steps, mb * steps);
            Targets::Tokens {
                ids: ids.clone().narrow(0, start, len),
                mask: mask.clone().narrow(0, start, len),
                host_mask: host_mask[start..start + len].to_vec(),
                steps: *steps,
            }
        }
    }
}

/// Adds the gradients of `layers`' parameters (visit order) into `acc`.
fn accumulate(layers: &[Layer], grads: &GradientsParams, acc: &mut [f32]) {
    struct Add<'a> {
        grads: &'a GradientsParams,
        acc: &'a mut [f32],
        offset: usize,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            if let Some(g) = self.grads.get::<D>(param.id) {
                let values = to_vec(g.into_data());
                for (a, v) in self.acc[self.offset..self.offset + n]
                    .iter_mut()
                    .zip(values)
                {
                    *a += v;
                }
            }
            self.offset += n;
        }
    }
    let mut add = Add {
        grads,
        acc,
        offset: 0,
    };
    for layer in layers {
        layer.visit(&mut add);
    }
}

/// The dropout stream of micro-batch `i`: the step's own stream for a single micro-batch (so
/// `M = 1` draws the masks of an unpipelined run), else a stream derived from it per micro-batch.
pub fn micro_ctx(ctx: &ForwardCtx, i: usize, microbatches: usize) -> ForwardCtx {
    if microbatches == 1 {
        return *ctx;
    }
    ForwardCtx {
        train: ctx.train,
        dropout_seed: crate::learner::dropout_seed(ctx.dropout_seed, i as u64 + 1),
    }
}

impl StageEngine {
    /// The engine of stage `stage` of `plan`, splitting each batch into `microbatches`.
    ///
    /// # Errors
    /// [`PipelineError::Setup`] when `stage` is not a stage of the plan or `microbatches` is 0.
    pub fn new(
        plan: StagePlan,
        stage: usize,
        microbatches: usize,
        schedule: PipelineSchedule,
    ) -> Result<StageEngine, PipelineError> {
        if stage >= plan.num_stages() {
            return Err(PipelineError::Setup(format!(
                "stage {stage} is not one of the plan's {} stages",
                plan.num_stages()
            )));
        }
        if microbatches == 0 {
            return Err(PipelineError::Setup(
                "parallel.microbatches must be at least 1".into(),
            ));
        }
        Ok(StageEngine {
            plan,
            stage,
            microbatches,
            schedule,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &StagePlan {
        &self.plan
    }

    /// This engine's stage.
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// Micro-batches per step.
    pub fn microbatches(&self) -> usize {
        self.microbatches
    }

    /// The schedule.
    pub fn schedule(&self) -> PipelineSchedule {
        self.schedule
    }

    fn is_last(&self) -> bool {
        self.stage + 1 == self.plan.num_stages()
    }

    fn layers(&self) -> Range<usize> {
        self.plan.layers(self.stage)
    }

    /// Receives `[mb, t, features]` values from stage `from`, checking the length against the
    /// plan. With `with_mask`, the buffer also carries the `[mb, t]` mask after the values and
    /// `t` is read from its length (a strided layer before the cut shortens the sequence); the
    /// result is then `(values, mask, t)`, else `(values, [], dims[1])`.
    #[allow(clippy::too_many_arguments)]
    fn recv_seq(
        &self,
        link: &mut dyn StageLink,
        from: usize,
        what: &'static str,
        i: usize,
        dims: [usize; 3],
        with_mask: bool,
        stats: &mut StageStepStats,
    ) -> Result<(Vec<f32>, Vec<f32>, usize), PipelineError> {
        let started = Instant::now();
        let values = link.recv(from).map_err(|source| PipelineError::Link {
            stage: self.stage,
            what: format!("receiving the {what} of micro-batch {i} from stage {from}"),
            source,
        })?;
        stats.idle += started.elapsed();
        let [mb, _, features] = dims;
        let (expected, t) = if with_mask {
            let per_step = mb * (features + 1);
            let t = values.len().checked_div(per_step).unwrap_or(0);
            (t.max(1) * per_step, t.max(1))
        } else {
            (dims.iter().product::<usize>(), dims[1])
        };
        if values.len() != expected {
            let layer = if from < self.stage {
                self.layers().start
            } else {
                self.layers().end - 1
            };
            return Err(PipelineError::Shape {
                stage: self.stage,
                layer,
                name: self.plan.layer_infos()[layer].name.clone(),
                what,
                expected: if with_mask {
                    format!("[{mb}, T, {features}] plus a [{mb}, T] mask for some T >= 1")
                } else {
                    format!("{dims:?} = {expected} values")
                },
                got: values.len(),
            });
        }
        let mut values = values;
        let mask = if with_mask {
            values.split_off(mb * t * features)
        } else {
            Vec::new()
        };
        Ok((values, mask, t))
    }

    fn send(
        &self,
        link: &mut dyn StageLink,
        to: usize,
        what: &'static str,
        i: usize,
        data: &[f32],
        stats: &mut StageStepStats,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        link.send(to, data).map_err(|source| PipelineError::Link {
            stage: self.stage,
            what: format!("sending the {what} of micro-batch {i} to stage {to}"),
            source,
        })?;
        stats.idle += started.elapsed();
        stats.bytes_sent += 4 * data.len() as u64;
        Ok(())
    }

    /// Runs this stage's share of one step on `batch` (this replica's whole batch; every stage
    /// passes the same one) with `targets`, on `model` (an autodiff-device model whose layers
    /// `plan.layers(stage)` hold the current parameters). `weights[i]` is micro-batch `i`'s share
    /// of the batch loss (see [`super::micro_weights`]).
    ///
    /// # Errors
    /// [`PipelineError::Link`] when a transfer fails (naming this stage and the peer stage),
    /// [`PipelineError::Shape`] when a received tensor does not have the planned size (naming
    /// the layer), [`PipelineError::Setup`] when the batch does not split into the
    /// micro-batches, [`PipelineError::Model`] when a stage's forward rejects its input.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        model: &Model,
        link: &mut dyn StageLink,
        objective: &dyn Objective,
        batch: &Batch,
        targets: &Targets,
        weights: &[f32],
        ctx: &ForwardCtx,
    ) -> Result<StageStep, PipelineError> {
        let m = self.microbatches;
        let [b, t] = batch.mask.dims();
        if !b.is_multiple_of(m) || weights.len() != m {
            return Err(PipelineError::Setup(format!(
                "a batch of {b} samples does not split into {m} micro-batches"
            )));
        }
        let mb = b / m;
        let device = batch.mask.device();
        let range = self.layers();
        let last = self.is_last();
        let s = self.stage;
        let width = |shape: BoundaryShape| match shape {
            BoundaryShape::Seq { features } => features,
            BoundaryShape::Tokens | BoundaryShape::Out { .. } => 0,
        };
        let in_features = width(self.plan.stage_input(s));
        let out_features = width(self.plan.stage_output(s));
        let stage_layers = &model.layers()[range.clone()];
        let mut grads = vec![0.0f32; self.plan.param_range(s).len()];
        let mut saved: Vec<Option<Saved>> = (0..m).map(|_| None).collect();
        let mut stats = StageStepStats::default();
        let mut in_flight = 0usize;
        let mut loss_sum = 0.0f32;
        for op in stage_ops(self.schedule, s, self.plan.num_stages(), m) {
            match op {
                Op::Forward(i) => {
                    let micro = micro_batch(batch, i, mb);
                    let (input, leaf) = if s == 0 {
                        (Boundary::from(micro), None)
                    } else {
                        let (v, mask, t_in) = self.recv_seq(
                            link,
                            s - 1,
                            "activation",
                            i,
                            [mb, t, in_features],
                            true,
                            &mut stats,
                        )?;
                        let started = Instant::now();
                        let x = Tensor::<3>::from_data(
                            TensorData::new(v, [mb, t_in, in_features]),
                            &device,
                        )
                        .require_grad();
                        let mask =
                            Tensor::<2>::from_data(TensorData::new(mask, [mb, t_in]), &device);
                        stats.busy += started.elapsed();
                        (Boundary::Seq { x: x.clone(), mask }, Some(x))
                    };
                    let started = Instant::now();
                    let out = model
                        .forward_range(range.clone(), input, &micro_ctx(ctx, i, m))
                        .map_err(|source| PipelineError::Model { stage: s, source })?;
                    let (keep, send) = match (out, last) {
                        (Boundary::Out(y), true) => (
                            Saved::Out {
                                input: leaf,
                                output: y,
                            },
                            None,
                        ),
                        (Boundary::Seq { x, mask }, false) => {
                            // The mask travels with the values: a strided layer in this stage
                            // may have shortened the sequence and its mask.
                            let mut values = to_vec(x.to_data());
                            values.extend(to_vec(mask.into_data()));
                            (
                                Saved::Seq {
                                    input: leaf,
                                    output: x,
                                },
                                Some(values),
                            )
                        }
                        (_, _) => {
                            return Err(PipelineError::Setup(format!(
                                "stage {s} (layers {}..{}) did not give the planned {}",
                                range.start,
                                range.end,
                                self.plan.stage_output(s)
                            )));
                        }
                    };
                    stats.busy += started.elapsed();
                    saved[i] = Some(keep);
                    in_flight += 1;
                    stats.max_in_flight = stats.max_in_flight.max(in_flight);
                    if let Some(values) = send {
                        self.send(link, s + 1, "activation", i, &values, &mut stats)?;
                    }
                }
                Op::Backward(i) => {
                    let Some(keep) = saved[i].take() else {
                        return Err(PipelineError::Setup(format!(
                            "stage {s}: backward of micro-batch {i} before its forward"
                        )));
                    };
                    let upstream = if last {
                        None
                    } else {
                        let t_out = match &keep {
                            Saved::Seq { output, .. } => output.dims()[1],
                            Saved::Out { .. } => t,
                        };
                        Some(
                            self.recv_seq(
                                link,
                                s + 1,
                                "output gradient",
                                i,
                                [mb, t_out, out_features],
                                false,
                                &mut stats,
                            )?
                            .0,
                        )
                    };
                    let started = Instant::now();
                    let (mut autograd, input) = match (keep, upstream) {
                        (Saved::Out { input, output }, None) => {
                            let loss = objective
                                .loss(output, micro_targets(targets, i, mb))
                                .mul_scalar(weights[i]);
                            loss_sum += loss.clone().into_scalar::<f32>();
                            (loss.backward(), input)
                        }
                        (Saved::Seq { input, output }, Some(g)) => {
                            let dims = output.dims();
                            let g = Tensor::<3>::from_data(TensorData::new(g, dims), &device);
                            ((output * g).sum().backward(), input)
                        }
                        _ => {
                            return Err(PipelineError::Setup(format!(
                                "stage {s}: saved state of micro-batch {i} does not fit its \
                                 position in the pipeline"
                            )));
                        }
                    };
                    let in_len = input
                        .as_ref()
                        .map_or(0, |x| x.dims().iter().product::<usize>());
                    let input_grad = input.and_then(|x| x.grad_remove(&mut autograd));
                    let params = GradientsParams::from_grads(autograd, model);
                    accumulate(stage_layers, &params, &mut grads);
                    let input_grad = match (s, input_grad) {
                        (0, _) => None,
                        (_, Some(g)) => Some(to_vec(g.into_data())),
                        (_, None) => Some(vec![0.0; in_len]),
                    };
                    stats.busy += started.elapsed();
                    in_flight -= 1;
                    if let Some(g) = input_grad {
                        self.send(link, s - 1, "input gradient", i, &g, &mut stats)?;
                    }
                }
            }
        }
        Ok(StageStep {
            loss: loss_sum,
            grads,
            stats,
        })
    }
}
