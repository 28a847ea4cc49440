//! burn-nn's stock recurrent modules (`Rnn`, `Lstm`, `Gru` and their `Bi*` forms) carrying the
//! same weights as our fused layers: the reference that tests compare outputs and gradients
//! against, and the baseline of the speed benchmark.
//!
//! burn-nn keeps one `Linear` per gate for the input and one for the hidden state; the fused
//! layout concatenates them column-wise in PyTorch's gate order. The reference ignores the
//! padding mask (burn-nn has none), so it equals the fused layer only on unpadded batches.

use burn::module::{Module, Param};
use burn::nn::{
    BiGru, BiGruConfig, BiLstm, BiLstmConfig, BiRnn, BiRnnConfig, GateController, Gru, GruConfig,
    Linear, Lstm, LstmConfig, Rnn, RnnConfig, activation::ActivationConfig,
};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ringtrain_spec::{Activation, CellKind};

use crate::recurrent::{CellParams, Recurrent};
use crate::seq::Steps;

/// One burn-nn recurrent module.
// A model holds a handful of these, and burn's Module derive has no Box support, so the
// size difference between variants costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ReferenceCell {
    /// Unidirectional Elman RNN.
    Rnn(Rnn),
    /// Bidirectional Elman RNN.
    BiRnn(BiRnn),
    /// Unidirectional LSTM.
    Lstm(Lstm),
    /// Bidirectional LSTM.
    BiLstm(BiLstm),
    /// Unidirectional GRU.
    Gru(Gru),
    /// Bidirectional GRU.
    BiGru(BiGru),
}

/// A recurrent layer computed by burn-nn's modules (see the module docs).
#[derive(Module, Debug)]
pub struct ReferenceRecurrent {
    /// The burn-nn module.
    pub module: ReferenceCell,
    /// Cell type.
    #[module(skip)]
    pub cell: CellKind,
    /// Non-linearity of the `rnn` cell.
    #[module(skip)]
    pub activation: Activation,
    /// Width of the input at every step.
    pub input_size: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    /// Dropout applied to the layer's input during training.
    pub input_dropout: f64,
    /// Position among the recurrent layers.
    pub position: usize,
}

/// A fresh leaf parameter holding a copy of `t`'s values.
fn leaf<const D: usize>(t: Tensor<D>, device: &Device) -> Param<Tensor<D>> {
    Param::from_data(t.into_data(), device)
}

/// Gate `k` of a fused direction as a burn-nn gate controller.
fn gate(p: &CellParams, k: usize, hidden: usize, device: &Device) -> GateController {
    let cols = k * hidden..(k + 1) * hidden;
    let [n_in, _] = p.w_ih.dims();
    let lin = |w: Tensor<2>, rows: usize, b: Tensor<1>| Linear {
        weight: leaf(w.slice([0..rows, cols.clone()]), device),
        bias: Some(leaf(b.slice([cols.clone()]), device)),
    };
    GateController {
        input_transform: lin(p.w_ih.val(), n_in, p.b_ih.val()),
        hidden_transform: lin(p.w_hh.val(), hidden, p.b_hh.val()),
    }
}

fn rnn(p: &CellParams, r: &Recurrent, reverse: bool, device: &Device) -> Rnn {
    let act = match r.activation {
        Activation::Tanh => ActivationConfig::Tanh,
        Activation::Relu => ActivationConfig::Relu,
    };
    let mut m = RnnConfig::new(r.input_size, r.hidden, true)
        .with_hidden_activation(act)
        .with_reverse(reverse)
        .init(device);
    m.gate = gate(p, 0, r.hidden, device);
    m
}

fn lstm(p: &CellParams, r: &Recurrent, device: &Device) -> Lstm {
    let mut m = LstmConfig::new(r.input_size, r.hidden, true).init(device);
    m.input_gate = gate(p, 0, r.hidden, device);
    m.forget_gate = Some(gate(p, 1, r.hidden, device));
    m.cell_gate = gate(p, 2, r.hidden, device);
    m.output_gate = gate(p, 3, r.hidden, device);
    m
}

fn gru(p: &CellParams, r: &Recurrent, device: &Device) -> Gru {
    let mut m = GruConfig::new(r.input_size, r.hidden, true).init(device);
    m.reset_gate = gate(p, 0, r.hidden, device);
    m.update_gate = gate(p, 1, r.hidden, device);
    m.new_gate = gate(p, 2, r.hidden, device);
    m
}

impl ReferenceRecurrent {
    /// The burn-nn equivalent of `r`, with copies of its weights as new leaf parameters.
    pub fn from_fused(r: &Recurrent) -> ReferenceRecurrent {
        let d = &r.directions;
        let device = d[0].w_ih.val().device();
        let (n_in, h) = (r.input_size, r.hidden);
        let module = match (r.cell, r.bidirectional()) {
            (CellKind::Rnn, false) => ReferenceCell::Rnn(rnn(&d[0], r, false, &device)),
            (CellKind::Lstm, false) => ReferenceCell::Lstm(lstm(&d[0], r, &device)),
            (CellKind::Gru, false) => ReferenceCell::Gru(gru(&d[0], r, &device)),
            (CellKind::Rnn, true) => {
                let mut m = BiRnnConfig::new(n_in, h, true).init(&device);
                m.forward = rnn(&d[0], r, false, &device);
                m.reverse = rnn(&d[1], r, true, &device);
                ReferenceCell::BiRnn(m)
            }
            (CellKind::Lstm, true) => {
                let mut m = BiLstmConfig::new(n_in, h, true).init(&device);
                m.forward = lstm(&d[0], r, &device);
                m.reverse = lstm(&d[1], r, &device);
                ReferenceCell::BiLstm(m)
            }
            (CellKind::Gru, true) => {
                let mut m = BiGruConfig::new(n_in, h, true).init(&device);
                m.forward = gru(&d[0], r, &device);
                m.reverse = gru(&d[1], r, &device);
                ReferenceCell::BiGru(m)
            }
        };
        ReferenceRecurrent {
            module,
            cell: r.cell,
            activation: r.activation,
            input_size: n_in,
            hidden: h,
            input_dropout: r.input_dropout,
            position: r.position,
        }
    }

    /// The fused equivalent, with copies of the weights as new leaf parameters.
    pub fn to_fused(&self) -> Recurrent {
        let dirs = self.fused_tensors(&|p: &Param<Tensor<2>>| p.val(), &|p: &Param<Tensor<1>>| {
            p.val()
        });
        let device = dirs[0].0.device();
        Recurrent {
            directions: dirs
                .into_iter()
                .map(|(w_ih, w_hh, b_ih, b_hh)| CellParams {
                    w_ih: leaf(w_ih, &device),
                    w_hh: leaf(w_hh, &device),
                    b_ih: leaf(b_ih, &device),
                    b_hh: leaf(b_hh, &device),
                })
                .collect(),
            cell: self.cell,
            activation: self.activation,
            input_size: self.input_size,
            hidden: self.hidden,
            input_dropout: self.input_dropout,
            position: self.position,
            sequence_kernel: true,
        }
    }

    /// Whether the layer runs in both directions.
    pub fn bidirectional(&self) -> bool {
        matches!(
            self.module,
            ReferenceCell::BiRnn(_) | ReferenceCell::BiLstm(_) | ReferenceCell::BiGru(_)
        )
    }

    /// Per direction, `(w_ih, w_hh, b_ih, b_hh)` in the fused layout, each gate's tensor taken
    /// through `get2`/`get1` (a parameter's value, or its gradient).
    pub fn fused_tensors(
        &self,
        get2: &dyn Fn(&Param<Tensor<2>>) -> Tensor<2>,
        get1: &dyn Fn(&Param<Tensor<1>>) -> Tensor<1>,
    ) -> Vec<(Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>)> {
        let fuse = |gates: Vec<&GateController>| {
            let bias = |l: &Linear| match &l.bias {
                Some(b) => get1(b),
                None => Tensor::zeros([l.weight.dims()[1]], &l.weight.val().device()),
            };
            (
                Tensor::cat(
                    gates
                        .iter()
                        .map(|g| get2(&g.input_transform.weight))
                        .collect(),
                    1,
                ),
                Tensor::cat(
                    gates
                        .iter()
                        .map(|g| get2(&g.hidden_transform.weight))
                        .collect(),
                    1,
                ),
                Tensor::cat(gates.iter().map(|g| bias(&g.input_transform)).collect(), 0),
                Tensor::cat(gates.iter().map(|g| bias(&g.hidden_transform)).collect(), 0),
            )
        };
        let lstm_gates = |m: &Lstm| {
            let mut g = vec![&m.input_gate];
            g.extend(m.forget_gate.as_ref());
            g.push(&m.cell_gate);
            g.push(&m.output_gate);
            fuse(g)
        };
        let gru_gates = |m: &Gru| fuse(vec![&m.reset_gate, &m.update_gate, &m.new_gate]);
        let rnn_gates = |m: &Rnn| fuse(vec![&m.gate]);
        match &self.module {
            ReferenceCell::Rnn(m) => vec![rnn_gates(m)],
            ReferenceCell::BiRnn(m) => vec![rnn_gates(&m.forward), rnn_gates(&m.reverse)],
            ReferenceCell::Lstm(m) => vec![lstm_gates(m)],
            ReferenceCell::BiLstm(m) => vec![lstm_gates(&m.forward), lstm_gates(&m.reverse)],
            ReferenceCell::Gru(m) => vec![gru_gates(m)],
            ReferenceCell::BiGru(m) => vec![gru_gates(&m.forward), gru_gates(&m.reverse)],
        }
    }

    /// Gradients in the fused layout, zeros where a parameter got none.
    pub fn fused_grads(
        &self,
        grads: &GradientsParams,
    ) -> Vec<(Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>)> {
        self.fused_tensors(
            &|p: &Param<Tensor<2>>| {
                grads.get::<2>(p.id).unwrap_or_else(|| {
                    Tensor::zeros(p.dims(), &p.val().device().without_autodiff())
                })
            },
            &|p: &Param<Tensor<1>>| {
                grads.get::<1>(p.id).unwrap_or_else(|| {
                    Tensor::zeros(p.dims(), &p.val().device().without_autodiff())
                })
            },
        )
    }

    /// Runs burn-nn's module over the stacked steps (mask ignored, see the module docs).
    pub(crate) fn forward(&self, input: Steps, dropout: Option<(u64, u64)>) -> Steps {
        let input = match dropout {
            Some((seed, stream)) => input.dropout(self.input_dropout, seed, stream),
            None => input,
        };
        let mask = input.mask.clone();
        let (x, _) = input.into_seq();
        let y = match &self.module {
            ReferenceCell::Rnn(m) => m.forward(x, None).0,
            ReferenceCell::BiRnn(m) => m.forward(x, None).0,
            ReferenceCell::Lstm(m) => m.forward(x, None).0,
            ReferenceCell::BiLstm(m) => m.forward(x, None).0,
            ReferenceCell::Gru(m) => m.forward(x, None),
            ReferenceCell::BiGru(m) => m.forward(x, None).0,
        };
        Steps::from_seq(y, mask)
    }
}
