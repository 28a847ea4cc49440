//! The decoder of a sequence-to-sequence model and its inference (greedy and beam search).
//!
//! A seq2seq [`crate::Model`] is the usual encoder stack (token embedding, optional Conv1d
//! layers, recurrent layers, optional self-attention block) followed by a [`Decoder`] in place
//! of the head. The decoder is one recurrent cell of the model's cell type, run step by step on
//! plain burn ops, with width `W` = the encoder's output width (so Luong's dot score needs no
//! projection):
//!
//! - its initial state is `tanh(bridge(summary))`, the summary being the encoder output at
//!   each source's last valid step — for a bidirectional encoder the backward half is taken at
//!   step 0, where it has read the whole source (Bahdanau et al.'s choice); an LSTM's initial
//!   cell state is zero;
//! - **Bahdanau** (additive): `score_j = v · tanh(Q s_{t-1} + K h_j)`, context `c_t` from the
//!   previous state, `s_t = cell([e(y_{t-1}); c_t], s_{t-1})`, logits `= O [s_t; c_t]`;
//! - **Luong** (dot `s_t · h_j`, general `s_t · K h_j`) with input feeding:
//!   `s_t = cell([e(y_{t-1}); h̃_{t-1}], s_{t-1})`, `c_t` from `s_t`,
//!   `h̃_t = tanh(C [c_t; s_t])`, logits `= O h̃_t`.
//!
//! Padded source steps get a score of `-1e30` before the softmax (weight exactly 0), so
//! padding never changes a result. In training the decoder reads `<bos> y_1 … y_n`; with a
//! teacher-forcing ratio `r < 1` each step `t ≥ 1` instead reads the model's own previous
//! greedy prediction with probability `1 − r`, one draw per step for the whole batch from
//! ChaCha8 seeded by the step's dropout seed — so every data-parallel replica makes the same
//! choices as one process would. Evaluation (`ctx.train = false`) always teacher-forces.
//! Greedy decoding and beam search (methods of [`crate::Model`]) are in `search.rs`.

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::activation::{log_softmax, relu, sigmoid, softmax};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringtrain_spec::{Activation, CellKind, ModelSpec, Seq2seqAttention};

use crate::error::ModelError;
use crate::forward::ForwardCtx;
use crate::head::{new_embedding, new_linear};
use crate::init::{Init, param1, param2};
use crate::recurrent::CellParams;

mod search;

/// ChaCha stream of the teacher-forcing draws (dropout uses the layer indices as streams).
const TEACHER_FORCING_STREAM: u64 = 0x7eac_4e25;

/// What a seq2seq model's decoder predicts and how it is trained (see [`crate::HeadKind`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecoderConfig {
    /// Target vocabulary size, special tokens included.
    pub vocab: usize,
    /// Attention over the encoder outputs.
    pub attention: Seq2seqAttention,
    /// Probability of feeding the reference token at each training step, `[0, 1]`.
    pub teacher_forcing: f64,
    /// Id of `<bos>` (the first decoder input).
    pub bos: u32,
    /// Id of `<eos>` (ends a decoded sequence).
    pub eos: u32,
}

// The ratio is validated to lie in [0, 1] (never NaN), so equality is an equivalence.
impl Eq for DecoderConfig {}

/// Attentional recurrent decoder (see the module docs for the equations).
#[derive(Module, Debug)]
pub struct Decoder {
    /// Target embedding `[V, E]`.
    pub embedding: Embedding,
    /// Encoder summary → initial state, `[W, W]`.
    pub bridge: Linear,
    /// The recurrent cell, input `E + W`, hidden `W`.
    pub cell: CellParams,
    /// Bahdanau: query projection `[W, W]` (no bias).
    pub query: Option<Linear>,
    /// Bahdanau: key projection `[W, W]`; Luong general: `K`, `[W, W]` (no bias).
    pub key: Option<Linear>,
    /// Bahdanau: `v`, `[W, 1]` (no bias).
    pub score: Option<Linear>,
    /// Luong: `C`, `[2W, W]`.
    pub combine: Option<Linear>,
    /// Output projection to the vocabulary: `[2W, V]` (Bahdanau) or `[W, V]` (Luong).
    pub output: Linear,
    /// Cell type.
    #[module(skip)]
    pub kind: CellKind,
    /// Non-linearity of the `rnn` cell.
    #[module(skip)]
    pub activation: Activation,
    /// Attention variant.
    #[module(skip)]
    pub attention: Seq2seqAttention,
    /// Decoder width `W` (= the encoder's output width).
    pub width: usize,
    /// Hidden units per direction of the encoder's last layer.
    pub encoder_hidden: usize,
    /// Whether the encoder's output halves are a forward and a backward direction.
    pub encoder_bidirectional: bool,
    /// Teacher-forcing ratio in training.
    pub teacher_forcing: f64,
    /// `<bos>` id.
    pub bos: u32,
    /// `<eos>` id.
    pub eos: u32,
}

fn no_bias(mut l: Linear) -> Linear {
    l.bias = None;
    l
}

/// The encoder outputs and what every decoder step reuses.
#[derive(Debug, Clone)]
struct Memory {
    /// `[B, S, W]`.
    enc: Tensor<3>,
    /// Projected keys `[B, S, W]` (the outputs themselves for Luong dot).
    keys: Tensor<3>,
    /// `[B, S]`: 0 at valid steps, `-1e30` at padding; `None` without padding.
    mask_add: Option<Tensor<2>>,
}

impl Memory {
    fn select(&self, rows: Tensor<1, Int>) -> Memory {
        Memory {
            enc: self.enc.clone().select(0, rows.clone()),
            keys: self.keys.clone().select(0, rows.clone()),
            mask_add: self.mask_add.clone().map(|m| m.select(0, rows)),
        }
    }
}

/// The recurrent state between decoder steps.
#[derive(Debug, Clone)]
struct State {
    h: Tensor<2>,
    c: Option<Tensor<2>>,
    /// Luong's attentional vector `h̃_{t-1}` (input feeding).
    feed: Option<Tensor<2>>,
}

impl State {
    fn select(&self, rows: Tensor<1, Int>) -> State {
        State {
            h: self.h.clone().select(0, rows.clone()),
            c: self.c.clone().map(|c| c.select(0, rows.clone())),
            feed: self.feed.clone().map(|f| f.select(0, rows)),
        }
    }
}

/// One decoded sequence. Every hypothesis ends with `<eos>`: the decoder emitted it, or it
/// was forced at the length limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hypothesis {
    /// Target ids without `<bos>` and `<eos>`.
    pub tokens: Vec<u32>,
    /// The model's log-probability of the tokens followed by `<eos>`.
    pub log_prob: f64,
}

impl Hypothesis {
    /// Beam-search ranking: `log_prob / len^alpha`, `len` counting `<eos>`.
    pub fn score(&self, alpha: f64) -> f64 {
        self.log_prob / ((self.tokens.len() + 1) as f64).powf(alpha)
    }
}

impl Decoder {
    /// A decoder reading encoder outputs of width `width`, parameters drawn from `init`.
    pub(crate) fn new(
        spec: &ModelSpec,
        config: &DecoderConfig,
        width: usize,
        init: &mut Init,
        device: &Device,
    ) -> Result<Decoder, ModelError> {
        let invalid = |field, value: usize, reason| ModelError::InvalidSpec {
            field,
            value: value.to_string(),
            reason,
        };
        if config.vocab < 5 {
            return Err(invalid(
                "target.vocab",
                config.vocab,
                "at least 5 tokens (<pad>, <unk>, <bos>, <eos> and one more)",
            ));
        }
        if config.bos as usize >= config.vocab || config.eos as usize >= config.vocab {
            return Err(invalid(
                "target.vocab",
                config.vocab,
                "must contain the <bos> and <eos> ids",
            ));
        }
        if !(0.0..=1.0).contains(&config.teacher_forcing) {
            return Err(ModelError::InvalidLayer {
                field: "task.teacher_forcing".into(),
                value: config.teacher_forcing.to_string(),
                reason: "a ratio in [0, 1]".into(),
            });
        }
        let e = spec.embedding_dim;
        let gh = spec.cell.gates() * width;
        let bound = 1.0 / (width as f32).sqrt();
        let embedding = new_embedding(config.vocab, e, init, device);
        let bridge = new_linear(width, width, init, device);
        let cell = CellParams {
            w_ih: param2(init.uniform((e + width) * gh, bound), e + width, gh, device),
            w_hh: param2(init.uniform(width * gh, bound), width, gh, device),
            b_ih: param1(init.uniform(gh, bound), device),
            b_hh: param1(init.uniform(gh, bound), device),
        };
        let (query, key, score, combine, out_in) = match config.attention {
            Seq2seqAttention::Bahdanau => (
                Some(no_bias(new_linear(width, width, init, device))),
                Some(new_linear(width, width, init, device)),
                Some(no_bias(new_linear(width, 1, init, device))),
                None,
                2 * width,
            ),
            Seq2seqAttention::LuongDot => (
                None,
                None,
                None,
                Some(new_linear(2 * width, width, init, device)),
                width,
            ),
            Seq2seqAttention::LuongGeneral => (
                None,
                Some(no_bias(new_linear(width, width, init, device))),
                None,
                Some(new_linear(2 * width, width, init, device)),
                width,
            ),
        };
        let output = new_linear(out_in, config.vocab, init, device);
        Ok(Decoder {
            embedding,
            bridge,
            cell,
            query,
            key,
            score,
            combine,
            output,
            kind: spec.cell,
            activation: spec.activation,
            attention: config.attention,
            width,
            encoder_hidden: spec.hidden,
            // After a self-attention block the halves no longer are two directions.
            encoder_bidirectional: spec.bidirectional && spec.attention.is_none(),
            teacher_forcing: config.teacher_forcing,
            bos: config.bos,
            eos: config.eos,
        })
    }

    /// Width of the encoder output the decoder reads.
    pub fn input_size(&self) -> usize {
        self.width
    }

    /// Target vocabulary size (the width of each step's logits).
    pub fn vocab(&self) -> usize {
        self.output.weight.dims()[1]
    }

    /// Keys, padding scores and the initial state for encoder outputs `enc: [B, S, W]`.
    fn memory(&self, enc: Tensor<3>, mask: &Tensor<2>) -> (Memory, State) {
        let [b, s, w] = enc.dims();
        let device = enc.device();
        let host: Vec<f32> = mask.clone().into_data().iter::<f32>().collect();
        let padded = host.iter().any(|&m| m < 1.0);
        // m_t − m_{t+1} is 1 exactly at the last valid step (padding is only at the end).
        let last: Vec<f32> = (0..b * s)
            .map(|i| {
                let (row, t) = (i / s, i % s);
                if t + 1 < s {
                    host[i] - host[row * s + t + 1]
                } else {
                    host[i]
                }
            })
            .collect();
        let last = Tensor::<3>::from_data(TensorData::new(last, [b, s, 1]), &device);
        let at_last = (enc.clone() * last).sum_dim(1).reshape([b, w]);
        let summary = if self.encoder_bidirectional {
            let h = self.encoder_hidden;
            Tensor::cat(
                vec![
                    at_last.slice([0..b, 0..h]),
                    enc.clone().slice([0..b, 0..1, h..2 * h]).reshape([b, h]),
                ],
                1,
            )
        } else {
            at_last
        };
        let h0 = self.bridge.forward(summary).tanh();
        let keys = match &self.key {
            Some(k) => k.forward(enc.clone()),
            None => enc.clone(),
        };
        let mask_add = padded.then(|| (mask.clone() - 1.0).mul_scalar(1.0e30));
        let c = (self.kind == CellKind::Lstm).then(|| Tensor::zeros([b, w], &device));
        let feed =
            (self.attention != Seq2seqAttention::Bahdanau).then(|| Tensor::zeros([b, w], &device));
        (
            Memory {
                enc,
                keys,
                mask_add,
            },
            State { h: h0, c, feed },
        )
    }

    /// Attention context `[B, W]` for query `q: [B, W]`.
    fn attend(&self, mem: &Memory, q: Tensor<2>) -> Tensor<2> {
        let [b, s, w] = mem.enc.dims();
        let scores = match (&self.query, &self.score) {
            (Some(query), Some(score)) => {
                let e = (mem.keys.clone() + query.forward(q).unsqueeze_dim::<3>(1)).tanh();
                score.forward(e).reshape([b, s])
            }
            _ => mem
                .keys
                .clone()
                .matmul(q.unsqueeze_dim::<3>(2))
                .reshape([b, s]),
        };
        let scores = match &mem.mask_add {
            Some(m) => scores + m.clone(),
            None => scores,
        };
        let alpha = softmax(scores, 1);
        alpha
            .unsqueeze_dim::<3>(1)
            .matmul(mem.enc.clone())
            .reshape([b, w])
    }

    /// One cell step in PyTorch's gate order.
    fn cell_step(&self, x: Tensor<2>, s: &State) -> (Tensor<2>, Option<Tensor<2>>) {
        let p = &self.cell;
        let w = self.width;
        let [b, _] = x.dims();
        let gx = x.matmul(p.w_ih.val()) + p.b_ih.val().unsqueeze::<2>();
        let gh = s.h.clone().matmul(p.w_hh.val()) + p.b_hh.val().unsqueeze::<2>();
        match self.kind {
            CellKind::Lstm => {
                let g = gx + gh;
                let i = sigmoid(g.clone().slice([0..b, 0..w]));
                let f = sigmoid(g.clone().slice([0..b, w..2 * w]));
                let gg = g.clone().slice([0..b, 2 * w..3 * w]).tanh();
                let o = sigmoid(g.slice([0..b, 3 * w..4 * w]));
                let c = match &s.c {
                    Some(c) => f * c.clone() + i * gg,
                    None => i * gg,
                };
                (o * c.clone().tanh(), Some(c))
            }
            CellKind::Gru => {
                let r = sigmoid(gx.clone().slice([0..b, 0..w]) + gh.clone().slice([0..b, 0..w]));
                let z = sigmoid(
                    gx.clone().slice([0..b, w..2 * w]) + gh.clone().slice([0..b, w..2 * w]),
                );
                let n =
                    (gx.slice([0..b, 2 * w..3 * w]) + r * gh.slice([0..b, 2 * w..3 * w])).tanh();
                (n.clone() + z * (s.h.clone() - n), None)
            }
            CellKind::Rnn => {
                let a = gx + gh;
                let h = match self.activation {
                    Activation::Tanh => a.tanh(),
                    Activation::Relu => relu(a),
                };
                (h, None)
            }
        }
    }

    /// One decoder step on input ids `[B, 1]`: logits `[B, V]` and the next state.
    fn step(&self, mem: &Memory, ids: Tensor<2, Int>, s: State) -> (Tensor<2>, State) {
        let [b, _] = ids.dims();
        let e = embedding(self.embedding.weight.val(), ids);
        let [_, _, dim] = e.dims();
        let e = e.reshape([b, dim]);
        match (&self.combine, &s.feed) {
            (Some(combine), Some(feed)) => {
                let x = Tensor::cat(vec![e, feed.clone()], 1);
                let (h, c) = self.cell_step(x, &s);
                let ctx = self.attend(mem, h.clone());
                let ht = combine.forward(Tensor::cat(vec![ctx, h.clone()], 1)).tanh();
                let logits = self.output.forward(ht.clone());
                (
                    logits,
                    State {
                        h,
                        c,
                        feed: Some(ht),
                    },
                )
            }
            _ => {
                let ctx = self.attend(mem, s.h.clone());
                let x = Tensor::cat(vec![e, ctx.clone()], 1);
                let (h, c) = self.cell_step(x, &s);
                let logits = self.output.forward(Tensor::cat(vec![h.clone(), ctx], 1));
                (logits, State { h, c, feed: None })
            }
        }
    }

    /// Training/evaluation forward: logits `[B·T, V]` (row `b·T + t`) for decoder inputs
    /// `target_in: [B, T]` (`<bos> y_1 …`), teacher-forced as the module docs describe.
    pub(crate) fn forward(
        &self,
        enc: Tensor<3>,
        mask: &Tensor<2>,
        target_in: Tensor<2, Int>,
        ctx: &ForwardCtx,
    ) -> Tensor<2> {
        let [b, time] = target_in.dims();
        let (mem, mut state) = self.memory(enc, mask);
        let ratio = if ctx.train { self.teacher_forcing } else { 1.0 };
        let mut rng = (ratio < 1.0).then(|| {
            let mut r = ChaCha8Rng::seed_from_u64(ctx.dropout_seed);
            r.set_stream(TEACHER_FORCING_STREAM);
            r
        });
        let mut logits = Vec::with_capacity(time);
        let mut predicted: Option<Tensor<2, Int>> = None;
        for t in 0..time {
            // One draw per step t >= 1, whether or not it is used, so the choice at step t
            // does not depend on the batch's padded length.
            let own = t > 0 && rng.as_mut().is_some_and(|r| r.random::<f64>() >= ratio);
            let ids = match (own, &predicted) {
                (true, Some(p)) => p.clone(),
                _ => target_in.clone().slice([0..b, t..t + 1]),
            };
            let (y, next) = self.step(&mem, ids, state);
            state = next;
            if rng.is_some() {
                predicted = Some(y.clone().argmax(1));
            }
            logits.push(y);
        }
        let v = self.vocab();
        if logits.is_empty() {
            return Tensor::zeros([0, v], &mask.device());
        }
        Tensor::stack::<3>(logits, 1).reshape([b * time, v])
    }

    /// Greedy decoding of at most `max_len` tokens per source; `<eos>` is forced once a
    /// sequence reaches the limit, so every hypothesis ends with it.
    pub(crate) fn greedy(
        &self,
        enc: Tensor<3>,
        mask: &Tensor<2>,
        max_len: usize,
    ) -> Vec<Hypothesis> {
        let [b, _, _] = enc.dims();
        let device = enc.device();
        let (mem, mut state) = self.memory(enc, mask);
        let mut hyps = vec![Hypothesis::default(); b];
        let mut done = vec![false; b];
        let mut ids = vec![i64::from(self.bos); b];
        let v = self.vocab();
        let eos = self.eos as usize;
        for _ in 0..=max_len {
            let input = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [b, 1]), &device);
            let (y, next) = self.step(&mem, input, state);
            state = next;
            let logp = host(log_softmax(y, 1));
            for (i, h) in hyps.iter_mut().enumerate() {
                if done[i] {
                    continue;
                }
                let row = &logp[i * v..(i + 1) * v];
                let tok = if h.tokens.len() >= max_len {
                    eos
                } else {
                    argmax(row)
                };
                h.log_prob += f64::from(row[tok]);
                if tok == eos {
                    done[i] = true;
                } else {
                    h.tokens.push(tok as u32);
                    ids[i] = tok as i64;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        hyps
    }
}

/// A float tensor's values on the host.
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Index of the largest value (the first on ties).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
