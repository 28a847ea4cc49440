//! Optimizers on flat f32 buffers: SGD (momentum, Nesterov, L2 weight decay), RMSProp, Adam and
//! AdamW with PyTorch's update rules. A model's parameters and gradients are flattened into one
//! `Vec<f32>` each in a fixed order (the layout the all-reduce uses); the optimizer keeps one
//! state buffer per slot of the same length and updates everything element-wise. The learning
//! rate is passed to every [`Optimizer::step`] so the schedule stays outside. The whole state
//! ([`OptimizerState`]) is plain data for checkpoints: a run restored with
//! [`Optimizer::from_state`] continues bit-identically.

mod groups;
mod kernels;
mod shard;
#[cfg(test)]
mod tests;

pub use groups::{ParamGroup, ParamGroups};
use kernels::{AdamScalars, RmspropScalars, SgdScalars};
use ringtrain_spec::types::OptimizerSpec;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Errors of the optimizer: buffers whose lengths disagree, or a saved state that does not fit
/// the spec it is restored under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptimError {
    /// `params` or `grads` passed to [`Optimizer::step`] has the wrong length.
    #[error(
        "optimizer step: {buffer} has {got} elements but the optimizer was built for {expected} parameters"
    )]
    LengthMismatch {
        /// `params` or `grads`.
        buffer: &'static str,
        /// Parameter count the optimizer was built for.
        expected: usize,
        /// Length passed in.
        got: usize,
    },
    /// The saved state belongs to another optimizer kind.
    #[error("optimizer state is for {state} but the spec asks for {spec}")]
    KindMismatch {
        /// Kind recorded in the state.
        state: OptimizerKind,
        /// Kind of the spec.
        spec: OptimizerKind,
    },
    /// The saved state was built for another parameter count.
    #[error("optimizer state is for {state} parameters but the model has {model}")]
    ParamCountMismatch {
        /// Count recorded in the state.
        state: usize,
        /// Count of the model being restored.
        model: usize,
    },
    /// A state buffer has the wrong length for the spec (e.g. a momentum buffer saved without
    /// momentum, or a truncated moment).
    #[error("optimizer state buffer `{buffer}` has {got} elements, expected {expected}")]
    BufferLength {
        /// Field name in [`OptimizerState`].
        buffer: &'static str,
        /// Length the spec requires.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// [`OptimizerState::slice`] was asked for parameters outside the state.
    #[error("optimizer state slice {start}..{end} is outside the state's {n_params} parameters")]
    SliceOutOfRange {
        /// First parameter of the slice.
        start: usize,
        /// One past its last parameter.
        end: usize,
        /// Parameters of the state.
        n_params: usize,
    },
    /// [`OptimizerState::concat`] was given slices that cannot belong to one state.
    #[error("optimizer state slices do not fit together: {reason}")]
    SlicesDisagree {
        /// Which slice differs from the first, and in what.
        reason: String,
    },
}

/// Which algorithm a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent.
    Sgd,
    /// RMSProp.
    Rmsprop,
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

impl OptimizerKind {
    /// The kind of a spec.
    pub fn of(spec: &OptimizerSpec) -> Self {
        match spec {
            OptimizerSpec::Sgd { .. } => OptimizerKind::Sgd,
            OptimizerSpec::Rmsprop { .. } => OptimizerKind::Rmsprop,
            OptimizerSpec::Adam { .. } => OptimizerKind::Adam,
            OptimizerSpec::Adamw { .. } => OptimizerKind::Adamw,
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Rmsprop => "rmsprop",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
        })
    }
}

/// Everything an optimizer carries between steps. Buffers an algorithm does not use are empty,
/// so a state is exactly as large as PyTorch's.
///
/// In serde the buffers are written as the `u32` bit patterns of their floats, so a round trip
/// through any format — JSON included, whose float parsing is only best-effort in serde_json's
/// default build and which has no NaN or ∞ — restores them bit for bit. A checkpoint writer that
/// wants raw bytes can take the public `Vec<f32>` fields directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Algorithm the buffers belong to.
    pub kind: OptimizerKind,
    /// Number of steps taken (Adam's `t` after the last step; 0 before the first).
    pub step: u64,
    /// Length of the flat parameter buffer.
    pub n_params: usize,
    /// Momentum buffer: SGD and RMSProp with `momentum > 0`; empty otherwise.
    #[serde(with = "f32_bits")]
    pub momentum_buffer: Vec<f32>,
    /// First moment `m`: Adam and AdamW; empty otherwise.
    #[serde(with = "f32_bits")]
    pub exp_avg: Vec<f32>,
    /// Second moment `v` (Adam, AdamW) or RMSProp's square average; empty for SGD.
    #[serde(with = "f32_bits")]
    pub exp_avg_sq: Vec<f32>,
}

/// Serde adapter writing an f32 buffer as its bit patterns (exact in every format).
mod f32_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        bits.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(Vec::<u32>::deserialize(d)?
            .into_iter()
            .map(f32::from_bits)
            .collect())
    }
}

/// An optimizer over one flat parameter buffer of fixed length.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    spec: OptimizerSpec,
    state: OptimizerState,
}

/// Lengths of the three state buffers `spec` needs for `n` parameters.
fn buffer_lengths(spec: &OptimizerSpec, n: usize) -> [usize; 3] {
    let if_set = |on: bool| if on { n } else { 0 };
    match *spec {
        OptimizerSpec::Sgd { momentum, .. } => [if_set(momentum != 0.0), 0, 0],
        OptimizerSpec::Rmsprop { momentum, .. } => [if_set(momentum > 0.0), 0, n],
        OptimizerSpec::Adam { .. } | OptimizerSpec::Adamw { .. } => [0, n, n],
    }
}

impl Optimizer {
    /// A fresh optimizer (step 0, zeroed buffers) for `n_params` parameters.
    pub fn new(spec: &OptimizerSpec, n_params: usize) -> Self {
        let [mom, m, v] = buffer_lengths(spec, n_params);
        Optimizer {
            spec: *spec,
            state: OptimizerState {
                kind: OptimizerKind::of(spec),
                step: 0,
                n_params,
                momentum_buffer: vec![0.0; mom],
                exp_avg: vec![0.0; m],
                exp_avg_sq: vec![0.0; v],
            },
        }
    }

    /// Restores an optimizer from a saved state.
    ///
    /// # Errors
    /// [`OptimError::KindMismatch`], [`OptimError::ParamCountMismatch`] or
    /// [`OptimError::BufferLength`] when the state does not fit `spec` and `n_params`.
    /// Hyperparameters are not part of the state; changing them between save and restore is
    /// allowed (and is the caller's decision).
    pub fn from_state(
        spec: &OptimizerSpec,
        n_params: usize,
        state: OptimizerState,
    ) -> Result<Self, OptimError> {
        let kind = OptimizerKind::of(spec);
        if state.kind != kind {
            return Err(OptimError::KindMismatch {
                state: state.kind,
                spec: kind,
            });
        }
        if state.n_params != n_params {
            return Err(OptimError::ParamCountMismatch {
                state: state.n_params,
                model: n_params,
            });
        }
        let expected = buffer_lengths(spec, n_params);
        let found = [
            ("momentum_buffer", state.momentum_buffer.len()),
            ("exp_avg", state.exp_avg.len()),
            ("exp_avg_sq", state.exp_avg_sq.len()),
        ];
        for (&expected, (buffer, got)) in expected.iter().zip(found) {
            if expected != got {
                return Err(OptimError::BufferLength {
                    buffer,
                    expected,
                    got,
                });
            }
        }
        Ok(Optimizer { spec: *spec, state })
    }

    /// The saved form of this optimizer.
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// Consumes the optimizer, returning its state.
    pub fn into_state(self) -> OptimizerState {
        self.state
    }

    /// The spec the optimizer was built from.
    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.state.step
    }

    /// Length of the parameter buffer this optimizer updates.
    pub fn n_params(&self) -> usize {
        self.state.n_params
    }

    /// Applies one update to `params` from `grads` with learning rate `lr` (the schedule's value
    /// for this step; the spec's `lr` is only the base rate) and advances the step count.
    ///
    /// # Errors
    /// [`OptimError::LengthMismatch`] when `params` or `grads` is not `n_params` long; nothing is
    /// changed then.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) -> Result<(), OptimError> {
        let n = self.state.n_params;
        self.step_segments(params, grads, lr, &[(0..n, 1.0)])
    }

    /// [`Optimizer::step`] with a learning-rate multiplier per segment of the buffer
    /// (`segments` as [`ParamGroups::segments`] gives them: disjoint, within `0..n_params`).
    /// A segment with multiplier 0 is skipped: its parameters and state stay as they are. The
    /// step count advances once for the whole buffer (Adam's bias correction is per step).
    ///
    /// # Errors
    /// As [`Optimizer::step`]; [`OptimError::SliceOutOfRange`] for a segment outside the buffer.
    pub fn step_segments(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        lr: f32,
        segments: &[(Range<usize>, f32)],
    ) -> Result<(), OptimError> {
        let n = self.state.n_params;
        for (buffer, got) in [("params", params.len()), ("grads", grads.len())] {
            if got != n {
                return Err(OptimError::LengthMismatch {
                    buffer,
                    expected: n,
                    got,
                });
            }
        }
        if let Some((r, _)) = segments.iter().find(|(r, _)| r.start > r.end || r.end > n) {
            return Err(OptimError::SliceOutOfRange {
                start: r.start,
                end: r.end,
                n_params: n,
            });
        }
        let first_step = self.state.step == 0;
        self.state.step += 1;
        let t = self.state.step;
        for (range, scale) in segments {
            if *scale == 0.0 || range.is_empty() {
                continue;
            }
            self.update_range(
                &mut params[range.clone()],
                &grads[range.clone()],
                range.clone(),
                lr * scale,
                first_step,
                t,
            );
        }
        Ok(())
    }

    /// The algorithm's update of `params` (positions `range` of the buffer) with learning rate
    /// `lr` at step `t`.
    fn update_range(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        range: Range<usize>,
        lr: f32,
        first_step: bool,
        t: u64,
    ) {
        // Buffers an algorithm does not use are empty and stay so.
        fn part(buffer: &mut [f32], range: Range<usize>) -> &mut [f32] {
            if buffer.is_empty() {
                buffer
            } else {
                &mut buffer[range]
            }
        }
        let st = &mut self.state;
        match self.spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                let s = SgdScalars {
                    lr,
                    momentum: momentum as f32,
                    weight_decay: weight_decay as f32,
                };
                let l2 = weight_decay != 0.0;
                let buf = part(&mut st.momentum_buffer, range);
                match (momentum != 0.0, l2, nesterov) {
                    (false, false, _) => kernels::sgd_plain::<false>(params, grads, &s),
                    (false, true, _) => kernels::sgd_plain::<true>(params, grads, &s),
                    (true, false, false) => {
                        kernels::sgd_momentum::<false, false>(params, grads, buf, first_step, &s)
                    }
                    (true, false, true) => {
                        kernels::sgd_momentum::<false, true>(params, grads, buf, first_step, &s)
                    }
                    (true, true, false) => {
                        kernels::sgd_momentum::<true, false>(params, grads, buf, first_step, &s)
                    }
                    (true, true, true) => {
                        kernels::sgd_momentum::<true, true>(params, grads, buf, first_step, &s)
                    }
                }
            }
            OptimizerSpec::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                ..
            } => {
                let s = RmspropScalars {
                    lr,
                    alpha: alpha as f32,
                    one_minus_alpha: (1.0 - alpha) as f32,
                    eps: eps as f32,
                    momentum: momentum as f32,
                    weight_decay: weight_decay as f32,
                };
                let v = part(&mut st.exp_avg_sq, range.clone());
                let buf = part(&mut st.momentum_buffer, range);
                match (momentum > 0.0, weight_decay != 0.0) {
                    (false, false) => kernels::rmsprop_plain::<false>(params, grads, v, &s),
                    (false, true) => kernels::rmsprop_plain::<true>(params, grads, v, &s),
                    (true, false) => kernels::rmsprop_momentum::<false>(params, grads, v, buf, &s),
                    (true, true) => kernels::rmsprop_momentum::<true>(params, grads, v, buf, &s),
                }
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                let s = adam_scalars(lr, beta1, beta2, eps, t, weight_decay, 1.0);
                let m = part(&mut st.exp_avg, range.clone());
                let v = part(&mut st.exp_avg_sq, range);
                if weight_decay != 0.0 {
                    kernels::adam::<true, false>(params, grads, m, v, &s);
                } else {
                    kernels::adam::<false, false>(params, grads, m, v, &s);
                }
            }
            OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                // PyTorch forms `1 - lr * wd` from Python floats, i.e. in f64.
                let decay = 1.0 - f64::from(lr) * weight_decay;
                let s = adam_scalars(lr, beta1, beta2, eps, t, 0.0, decay);
                let m = part(&mut st.exp_avg, range.clone());
                let v = part(&mut st.exp_avg_sq, range);
                kernels::adam::<false, true>(params, grads, m, v, &s);
            }
        }
    }
}

/// Adam's per-step scalars for step `t` (1-based), with the bias corrections in f64.
fn adam_scalars(
    lr: f32,
    beta1: f64,
    beta2: f64,
    eps: f64,
    t: u64,
    weight_decay: f64,
    decoupled_decay: f64,
) -> AdamScalars {
    // powf is C's pow, what Python's `beta ** step` calls (powi may round differently).
    let bias_correction1 = 1.0 - beta1.powf(t as f64);
    let bias_correction2 = 1.0 - beta2.powf(t as f64);
    AdamScalars {
        one_minus_beta1: (1.0 - beta1) as f32,
        beta2: beta2 as f32,
        one_minus_beta2: (1.0 - beta2) as f32,
        eps: eps as f32,
        weight_decay: weight_decay as f32,
        step_size: (f64::from(lr) / bias_correction1) as f32,
        bias_correction2_sqrt: bias_correction2.sqrt() as f32,
        decoupled_decay: decoupled_decay as f32,
    }
}
