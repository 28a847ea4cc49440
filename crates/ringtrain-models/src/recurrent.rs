//! Recurrent layers (`rnn`, `lstm`, `gru`).
//!
//! On the flex device with `f32` tensors a layer runs as whole-sequence custom autodiff
//! operations, one per direction ([`crate::kernel`]): one input GEMM for all timesteps, fused
//! gate math, hand-written BPTT. Elsewhere (other devices, or with
//! [`crate::RecurrentImpl::BurnOps`]) it runs as fused per-timestep cells on plain burn ops,
//! described below; both compute the same function with the same parameters.
//!
//! Each direction keeps one input matrix `w_ih: [in, G·H]`, one recurrent matrix
//! `w_hh: [H, G·H]` and biases `b_ih, b_hh: [G·H]` (G gate blocks in PyTorch's order: LSTM
//! i, f, g, o; GRU r, z, n), so a timestep costs one input and one recurrent matmul followed by
//! a `chunk` into gates. The input projection is done per step rather than once for the whole
//! sequence: a precomputed `[B, T, G·H]` projection is a tracked tensor, and slicing it per step
//! costs a full-size zero tensor per slice in the backward pass (measured slower in BURN.md).
//! flex evaluates `tanh` with scalar libm at about twice the cost of `sigmoid`, so every tanh
//! is computed as `2·sigmoid(2a) − 1` (measured 15–35 % faster steps).
//!
//! Padding: at a padded step the state is carried unchanged and the output is zero, so the
//! forward direction stops at each sequence's last valid step and the backward direction starts
//! there; a padded batch gives each sequence's unpadded result.

use burn::module::{Module, Param};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_spec::{Activation, CellKind};

use crate::init::{Init, param1, param2};
use crate::kernel::{self, CellCode, CellState, SeqSpec};
use crate::seq::Steps;

/// Weights of one direction of one recurrent layer.
#[derive(Module, Debug)]
pub struct CellParams {
    /// Input weights `[in, G·H]`, gate blocks side by side.
    pub w_ih: Param<Tensor<2>>,
    /// Recurrent weights `[H, G·H]`.
    pub w_hh: Param<Tensor<2>>,
    /// Input bias `[G·H]`.
    pub b_ih: Param<Tensor<1>>,
    /// Recurrent bias `[G·H]` (kept apart from `b_ih` because GRU's `n` gate scales it by `r`).
    pub b_hh: Param<Tensor<1>>,
}

/// One recurrent layer, uni- or bidirectional (forward direction first in `directions`).
#[derive(Module, Debug)]
pub struct Recurrent {
    /// One entry per direction: `[forward]` or `[forward, backward]`.
    pub directions: Vec<CellParams>,
    /// Cell type.
    #[module(skip)]
    pub cell: CellKind,
    /// Non-linearity of the `rnn` cell (unused by `lstm`/`gru`).
    #[module(skip)]
    pub activation: Activation,
    /// Width of the input at every step.
    pub input_size: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    /// Dropout applied to this layer's input during training (0 for the first recurrent layer:
    /// dropout sits *between* recurrent layers).
    pub input_dropout: f64,
    /// Position among the recurrent layers (0 = first), used in the layer name.
    pub position: usize,
    /// Whether the whole-sequence kernel runs where it can (flex, `f32`); `false` forces the
    /// per-timestep burn-ops path ([`crate::RecurrentImpl::BurnOps`]).
    #[module(skip)]
    pub sequence_kernel: bool,
}

impl Recurrent {
    /// A layer initialized like PyTorch: every weight and bias uniform in `±1/sqrt(H)`.
    pub(crate) fn new(
        cell: CellKind,
        activation: Activation,
        input_size: usize,
        hidden: usize,
        bidirectional: bool,
        input_dropout: f64,
        position: usize,
        init: &mut Init,
        device: &Device,
    ) -> Recurrent {
        let gh = cell.gates() * hidden;
        let bound = 1.0 / (hidden as f32).sqrt();
        let directions = (0..if bidirectional { 2 } else { 1 })
            .map(|_| CellParams {
                w_ih: param2(init.uniform(input_size * gh, bound), input_size, gh, device),
                w_hh: param2(init.uniform(hidden * gh, bound), hidden, gh, device),
                b_ih: param1(init.uniform(gh, bound), device),
                b_hh: param1(init.uniform(gh, bound), device),
            })
            .collect();
        Recurrent {
            directions,
            cell,
            activation,
            input_size,
            hidden,
            input_dropout,
            position,
            sequence_kernel: true,
        }
    }

    /// Whether the layer runs in both directions.
    pub fn bidirectional(&self) -> bool {
        self.directions.len() == 2
    }

    /// Width of each output step (`H` or `2H`).
    pub fn output_size(&self) -> usize {
        self.hidden * self.directions.len()
    }

    /// Runs the layer over all steps; `dropout` is `Some((seed, stream))` in training mode.
    pub(crate) fn forward(&self, input: Steps, dropout: Option<(u64, u64)>) -> Steps {
        self.run(input, dropout, None, false).0
    }

    /// [`Recurrent::forward`] from the state `initial` (one [`CellState`] per direction, `None`:
    /// zeros), also giving the state after each direction's last step (each sample's last
    /// valid step). The initial state is a constant (no gradient flows into it) and the final
    /// state is plain data, detached: what truncated BPTT carries from chunk to chunk.
    ///
    /// # Panics
    /// If `initial` has not one state per direction of `[B, H]` values each.
    pub(crate) fn forward_state(
        &self,
        input: Steps,
        dropout: Option<(u64, u64)>,
        initial: Option<&[CellState]>,
    ) -> (Steps, Vec<CellState>) {
        if let Some(init) = initial {
            assert_eq!(init.len(), self.directions.len(), "one state per direction");
        }
        self.run(input, dropout, initial, true)
    }

    fn run(
        &self,
        input: Steps,
        dropout: Option<(u64, u64)>,
        initial: Option<&[CellState]>,
        want_state: bool,
    ) -> (Steps, Vec<CellState>) {
        let input = match dropout {
            Some((seed, stream)) => input.dropout(self.input_dropout, seed, stream),
            None => input,
        };
        if self.sequence_kernel && self.kernel_applies() {
            return self.forward_kernel(input, initial, want_state);
        }
        let steps = input.step_list();
        let keep = input.padding.as_ref().map(|p| (&p.keep, &p.carry));
        let batch = input.batch();
        let mut finals = Vec::new();
        let mut outs: Vec<Vec<Tensor<2>>> = self
            .directions
            .iter()
            .enumerate()
            .map(|(d, p)| {
                let device = p.w_ih.val().device();
                let init = initial.map(|states| {
                    let s = &states[d];
                    let t = |v: &[f32]| {
                        Tensor::<2>::from_data(
                            TensorData::new(v.to_vec(), [batch, self.hidden]),
                            &device,
                        )
                    };
                    (t(&s.h), s.c.as_deref().map(t))
                });
                let (outs, h, c) = self.run_direction(p, &steps, keep, d == 1, init);
                if want_state {
                    finals.push(self.host_state(h, c, batch, &device));
                }
                outs
            })
            .collect();
        let steps = if outs.len() == 1 {
            outs.pop().unwrap_or_default()
        } else {
            let bwd = outs.pop().unwrap_or_default();
            let fwd = outs.pop().unwrap_or_default();
            fwd.into_iter()
                .zip(bwd)
                .map(|(f, b)| Tensor::cat(vec![f, b], 1))
                .collect()
        };
        (input.with_steps(steps), finals)
    }

    /// A direction's final state on the host (zeros for an empty sequence, which never set it).
    fn host_state(
        &self,
        h: Option<Tensor<2>>,
        c: Option<Tensor<2>>,
        batch: usize,
        device: &Device,
    ) -> CellState {
        let host = |t: Option<Tensor<2>>| -> Vec<f32> {
            let t = t.unwrap_or_else(|| Tensor::zeros([batch, self.hidden], device));
            t.into_data().iter::<f32>().collect()
        };
        CellState {
            h: host(h),
            c: (self.cell == CellKind::Lstm).then(|| host(c)),
        }
    }

    /// Whether this layer's parameters live where the kernel runs (flex, `f32`).
    fn kernel_applies(&self) -> bool {
        self.directions.first().is_some_and(|p| {
            let w = p.w_ih.val();
            kernel::applies(&w.device(), w.dtype())
        })
    }

    /// The kernel path: one custom operation per direction on the time-major sequence.
    fn forward_kernel(
        &self,
        input: Steps,
        initial: Option<&[CellState]>,
        want_state: bool,
    ) -> (Steps, Vec<CellState>) {
        let x = input.time_major_tensor();
        let valid = input.padding.as_ref().map(|p| p.valid.clone());
        let cell = match (self.cell, self.activation) {
            (CellKind::Lstm, _) => CellCode::Lstm,
            (CellKind::Gru, _) => CellCode::Gru,
            (CellKind::Rnn, Activation::Tanh) => CellCode::RnnTanh,
            (CellKind::Rnn, Activation::Relu) => CellCode::RnnRelu,
        };
        let sinks: Vec<kernel::StateSink> = (0..self.directions.len())
            .map(|_| kernel::StateSink::default())
            .collect();
        let mut outs: Vec<Tensor<3>> = self
            .directions
            .iter()
            .enumerate()
            .map(|(d, p)| {
                kernel::sequence(
                    x.clone(),
                    p.w_ih.val(),
                    p.w_hh.val(),
                    p.b_ih.val(),
                    p.b_hh.val(),
                    SeqSpec {
                        cell,
                        reverse: d == 1,
                        valid: valid.clone(),
                        initial: initial.map(|s| std::sync::Arc::new(s[d].clone())),
                        final_state: want_state.then(|| sinks[d].clone()),
                    },
                )
            })
            .collect();
        let y = if outs.len() == 1 {
            outs.pop().unwrap_or_else(|| x.clone())
        } else {
            Tensor::cat(outs, 2)
        };
        let finals = if want_state {
            let batch = input.batch();
            sinks
                .iter()
                .map(|sink| {
                    // The kernel ran eagerly above, so every sink is filled; an empty one (a
                    // zero-length sequence) is the zero state.
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .unwrap_or_else(|| CellState {
                            h: vec![0.0; batch * self.hidden],
                            c: (self.cell == CellKind::Lstm)
                                .then(|| vec![0.0; batch * self.hidden]),
                        })
                })
                .collect()
        } else {
            Vec::new()
        };
        (input.with_time_major(y), finals)
    }

    /// Per gate block, whether its pre-activation goes through tanh (and is therefore computed
    /// at twice its value, see `run_direction`); `None` when no block does.
    fn tanh_blocks(&self) -> Option<Vec<bool>> {
        match (self.cell, self.activation) {
            (CellKind::Lstm, _) => Some(vec![false, false, true, false]),
            (CellKind::Gru, _) => Some(vec![false, false, true]),
            (CellKind::Rnn, Activation::Tanh) => Some(vec![true]),
            (CellKind::Rnn, Activation::Relu) => None,
        }
    }

    /// One direction over the whole sequence from `initial` (`(h, c)`, `None`: zeros); outputs
    /// in time order, then the final `h` and `c` (`None` where never set).
    #[allow(clippy::type_complexity)]
    fn run_direction(
        &self,
        p: &CellParams,
        steps: &[Tensor<2>],
        padding: Option<(&Vec<Tensor<2>>, &Vec<Tensor<2>>)>,
        reverse: bool,
        initial: Option<(Tensor<2>, Option<Tensor<2>>)>,
    ) -> (Vec<Tensor<2>>, Option<Tensor<2>>, Option<Tensor<2>>) {
        let time = steps.len();
        let h_size = self.hidden;
        // LSTM and RNN only ever use b_ih + b_hh: add them once instead of once per step.
        let (b_x, b_h) = match self.cell {
            CellKind::Gru => (p.b_ih.val(), p.b_hh.val()),
            _ => (p.b_ih.val() + p.b_hh.val(), p.b_hh.val()),
        };
        let (w_ih, w_hh, b_x, b_h) = match self.tanh_blocks() {
            // flex evaluates tanh with scalar libm at about twice the cost of sigmoid, so every
            // tanh of a pre-activation becomes tanh(a) = 2·sigmoid(2a) − 1. The factor 2 is
            // folded into those blocks' weight columns once per forward (exact: a power of two),
            // which also lets the LSTM's g block share the i, f, o blocks' sigmoid call.
            Some(blocks) => {
                let scale: Vec<f32> = blocks
                    .iter()
                    .flat_map(|&two| std::iter::repeat_n(if two { 2.0 } else { 1.0 }, h_size))
                    .collect();
                let n = scale.len();
                let scale = Tensor::<1>::from_data(TensorData::new(scale, [n]), &b_x.device());
                let s2 = scale.clone().unsqueeze::<2>();
                (
                    p.w_ih.val() * s2.clone(),
                    p.w_hh.val() * s2,
                    b_x * scale.clone(),
                    b_h * scale,
                )
            }
            None => (p.w_ih.val(), p.w_hh.val(), b_x, b_h),
        };
        let (mut h, mut c): (Option<Tensor<2>>, Option<Tensor<2>>) = match initial {
            Some((h0, c0)) => (Some(h0), c0.filter(|_| self.cell == CellKind::Lstm)),
            None => (None, None),
        };
        let mut outs: Vec<Option<Tensor<2>>> = vec![None; time];
        for k in 0..time {
            let t = if reverse { time - 1 - k } else { k };
            // `linear` is one autodiff node (matmul + bias) where matmul then add would be two.
            let xw = linear(steps[t].clone(), w_ih.clone(), Some(b_x.clone()));
            let (h_new, c_new) = match self.cell {
                CellKind::Lstm => {
                    let gates = match &h {
                        Some(h) => xw + h.clone().matmul(w_hh.clone()),
                        None => xw,
                    };
                    // One sigmoid over all four blocks; the g block was pre-scaled by 2.
                    let [b, _] = gates.dims();
                    let act = sigmoid(gates);
                    let i = act.clone().slice([0..b, 0..h_size]);
                    let f = act.clone().slice([0..b, h_size..2 * h_size]);
                    let gg = from_sigmoid(act.clone().slice([0..b, 2 * h_size..3 * h_size]));
                    let o = act.slice([0..b, 3 * h_size..4 * h_size]);
                    let c_new = match &c {
                        Some(c) => f * c.clone() + i * gg,
                        None => i * gg,
                    };
                    let h_new = o * tanh(c_new.clone());
                    (h_new, Some(c_new))
                }
                CellKind::Gru => {
                    let [b, _] = xw.dims();
                    let gh = match &h {
                        Some(h) => linear(h.clone(), w_hh.clone(), Some(b_h.clone())),
                        None => b_h.clone().unsqueeze::<2>().expand([b, 3 * h_size]),
                    };
                    let rz = sigmoid(
                        xw.clone().slice([0..b, 0..2 * h_size])
                            + gh.clone().slice([0..b, 0..2 * h_size]),
                    );
                    let mut rz = rz.chunk(2, 1).into_iter();
                    let (Some(r), Some(z)) = (rz.next(), rz.next()) else {
                        unreachable!("chunk(2) of a 2H-wide tensor yields two gates")
                    };
                    // The n block was pre-scaled by 2 (both its x and h parts, and biases).
                    let n = from_sigmoid(sigmoid(
                        xw.slice([0..b, 2 * h_size..3 * h_size])
                            + r * gh.slice([0..b, 2 * h_size..3 * h_size]),
                    ));
                    // h' = (1 - z) n + z h = n + z (h - n)
                    let h_new = match &h {
                        Some(h) => n.clone() + z * (h.clone() - n),
                        None => n.clone() - z * n,
                    };
                    (h_new, None)
                }
                CellKind::Rnn => {
                    let a = match &h {
                        Some(h) => xw + h.clone().matmul(w_hh.clone()),
                        None => xw,
                    };
                    let h_new = match self.activation {
                        Activation::Tanh => from_sigmoid(sigmoid(a)),
                        Activation::Relu => relu(a),
                    };
                    (h_new, None)
                }
            };
            match padding {
                None => {
                    outs[t] = Some(h_new.clone());
                    h = Some(h_new);
                    c = c_new;
                }
                Some((keep_masks, carry_masks)) => {
                    // out = m h', state = m h' + (1 - m) h: exact (not h + m (h' - h)) so a
                    // valid step computes bit-for-bit what the unpadded sequence computes.
                    let keep = keep_masks[t].clone();
                    let carry = carry_masks[t].clone();
                    let out = h_new * keep.clone();
                    h = Some(match h {
                        Some(prev) => out.clone() + prev * carry.clone(),
                        None => out.clone(),
                    });
                    c = match (c_new, c) {
                        (Some(cn), Some(prev)) => Some(cn * keep + prev * carry),
                        (Some(cn), None) => Some(cn * keep),
                        _ => None,
                    };
                    outs[t] = Some(out);
                }
            }
        }
        (outs.into_iter().flatten().collect(), h, c)
    }
}

/// `tanh(a)` from `s = sigmoid(2a)`: `2s − 1`.
fn from_sigmoid(s: Tensor<2>) -> Tensor<2> {
    s.mul_scalar(2.0).sub_scalar(1.0)
}

/// `tanh(x) = 2·sigmoid(2x) − 1` (see `Recurrent::run_direction` for why not `x.tanh()`).
fn tanh(x: Tensor<2>) -> Tensor<2> {
    from_sigmoid(sigmoid(x.mul_scalar(2.0)))
}
