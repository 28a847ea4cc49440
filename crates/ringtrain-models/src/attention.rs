//! Attention over the recurrent outputs (`model.attention`), between the last recurrent layer
//! and the head: multi-head scaled dot-product self-attention with a residual connection
//! (`self`), or a post-norm Transformer encoder block (`transformer`, PyTorch's
//! `TransformerEncoderLayer` with `norm_first = false` and ReLU).
//!
//! Masking: keys at padded steps get a score of −1e30 before the softmax, so their weight is
//! exactly zero and a valid step attends to exactly the steps the unpadded sequence has. Queries
//! at padded steps compute something, and their outputs are then zeroed (the invariant every
//! layer keeps: padded steps carry zeros). A sequence with no valid step attends uniformly to
//! nothing useful, stays finite and is zeroed.
//!
//! Dropout (training only) sits where PyTorch puts it: on the attention weights, on the
//! attention branch before the residual sum and, in the Transformer block, after the
//! feed-forward activation and on the feed-forward branch. Its masks are drawn in that order
//! from ChaCha8 seeded by the step's dropout seed on the stream of the layer index, so they are
//! a pure function of (seed, step, layer) like the recurrent layers' dropout.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringtrain_spec::{AttentionKind, AttentionSpec};

use crate::conv::time_major_mask;
use crate::head::new_linear;
use crate::init::{Init, param1, param2};
use crate::seq::Steps;

/// Score given to padded keys: far below any real score, finite so that a row with no valid
/// key stays finite.
const MASKED_SCORE: f32 = -1.0e30;
/// Layer-norm epsilon (PyTorch's default).
const LN_EPS: f64 = 1e-5;

/// Layer normalization over the last axis with a gain and a bias.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Gain `[width]`, initialized to 1.
    pub gamma: Param<Tensor<1>>,
    /// Bias `[width]`, initialized to 0.
    pub beta: Param<Tensor<1>>,
}

impl LayerNorm {
    fn new(width: usize, device: &Device) -> LayerNorm {
        LayerNorm {
            gamma: param1(vec![1.0; width], device),
            beta: param1(vec![0.0; width], device),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = x.clone().mean_dim(2);
        let centred = x - mean;
        let var = (centred.clone() * centred.clone()).mean_dim(2);
        let normed = centred / var.add_scalar(LN_EPS).sqrt();
        normed * self.gamma.val().unsqueeze::<3>() + self.beta.val().unsqueeze::<3>()
    }
}

/// The parts the Transformer block adds to plain self-attention.
#[derive(Module, Debug)]
pub struct EncoderParts {
    /// Norm after the attention residual.
    pub norm1: LayerNorm,
    /// Feed-forward expansion `[width, ff_hidden]`.
    pub ff_in: Linear,
    /// Feed-forward contraction `[ff_hidden, width]`.
    pub ff_out: Linear,
    /// Norm after the feed-forward residual.
    pub norm2: LayerNorm,
}

/// Multi-head self-attention (optionally a whole Transformer encoder block) over `[B, T, width]`.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query, key and value projections side by side, `[width, 3 · width]` (PyTorch's
    /// `in_proj_weight`, transposed).
    pub in_proj: Param<Tensor<2>>,
    /// Query and value biases side by side, `[2 · width]`. There is no key bias: it adds the
    /// same amount to every score of a query, which the softmax cancels, so its gradient is
    /// zero up to rounding — and Adam turns that rounding noise into full-size steps, which
    /// made a pipelined run with micro-batches drift from the unsplit run (1e-4 after 10 steps).
    pub in_bias: Param<Tensor<1>>,
    /// Output projection `[width, width]`.
    pub out_proj: Linear,
    /// Norms and feed-forward layer of the Transformer block; `None` for plain self-attention.
    pub encoder: Option<EncoderParts>,
    /// Number of heads (divides the width).
    pub heads: usize,
    /// Dropout probability in training.
    pub dropout: f64,
    /// Plain self-attention or Transformer block.
    #[module(skip)]
    pub kind: AttentionKind,
}

impl Attention {
    /// A block initialized like PyTorch's `MultiheadAttention` (Xavier-uniform `in_proj`, zero
    /// projection biases (no key bias, see [`Attention::in_bias`]), `out_proj` weights uniform in `±1/sqrt(width)`) and, for the
    /// Transformer, `Linear`-default feed-forward layers and unit/zero norms. Values are drawn
    /// from `init` in that order.
    pub(crate) fn new(
        spec: &AttentionSpec,
        width: usize,
        init: &mut Init,
        device: &Device,
    ) -> Attention {
        let xavier = (6.0 / (width + 3 * width) as f32).sqrt();
        let in_proj = param2(
            init.uniform(width * 3 * width, xavier),
            width,
            3 * width,
            device,
        );
        let in_bias = param1(vec![0.0; 2 * width], device);
        let out_bound = 1.0 / (width as f32).sqrt();
        let out_proj = Linear {
            weight: param2(init.uniform(width * width, out_bound), width, width, device),
            bias: Some(param1(vec![0.0; width], device)),
        };
        let encoder = (spec.kind == AttentionKind::Transformer).then(|| EncoderParts {
            norm1: LayerNorm::new(width, device),
            ff_in: new_linear(width, spec.ff_hidden, init, device),
            ff_out: new_linear(spec.ff_hidden, width, init, device),
            norm2: LayerNorm::new(width, device),
        });
        Attention {
            in_proj,
            in_bias,
            out_proj,
            encoder,
            heads: spec.heads,
            dropout: spec.dropout,
            kind: spec.kind,
        }
    }

    /// Width of every input and output step.
    pub fn width(&self) -> usize {
        self.out_proj.weight.dims()[1]
    }

    /// Runs the block; `dropout` is `Some((seed, stream))` in training mode.
    pub(crate) fn forward(&self, input: Steps, dropout: Option<(u64, u64)>) -> Steps {
        let batch = input.batch();
        let time = input.time();
        let width = self.width();
        if time == 0 || batch == 0 {
            return input;
        }
        let mut drop = Dropout::new(self.dropout, dropout);
        let heads = self.heads.max(1);
        let head_dim = width / heads;
        // [T, B, W] → [B, T, W]
        let x = input.time_major_tensor().swap_dims(0, 1);
        let bias = self.in_bias.val();
        let device = bias.device();
        let bias = Tensor::cat(
            vec![
                bias.clone().narrow(0, 0, width),
                Tensor::zeros([width], &device),
                bias.narrow(0, width, width),
            ],
            0,
        );
        let qkv = linear(x.clone(), self.in_proj.val(), Some(bias));
        let split = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..time, i * width..(i + 1) * width])
                .reshape([batch, time, heads, head_dim])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (split(0), split(1), split(2));
        // [B, H, T, T]
        let mut scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (head_dim as f64).sqrt());
        if input.padding.is_some() {
            // valid key: + 0 (exact); padded key: -1e30 (weight exactly 0 after the softmax)
            let key_bias = input
                .mask
                .clone()
                .sub_scalar(1.0)
                .mul_scalar(-MASKED_SCORE)
                .reshape([batch, 1, 1, time]);
            scores = scores + key_bias;
        }
        let weights = drop.apply(softmax(scores, 3));
        let context = weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, time, width]);
        let attended = drop.apply(self.out_proj.forward(context));
        let y = match &self.encoder {
            None => x + attended,
            Some(e) => {
                let u = e.norm1.forward(x + attended);
                let hidden = drop.apply(relu(e.ff_in.forward(u.clone())));
                let ff = drop.apply(e.ff_out.forward(hidden));
                e.norm2.forward(u + ff)
            }
        };
        let mut y = y.swap_dims(0, 1);
        if input.padding.is_some() {
            y = y * time_major_mask(&input.mask);
        }
        input.with_time_major(y)
    }
}

/// Inverted dropout with masks drawn in call order from one ChaCha8 stream.
struct Dropout {
    p: f64,
    rng: Option<ChaCha8Rng>,
}

impl Dropout {
    fn new(p: f64, seed: Option<(u64, u64)>) -> Dropout {
        let rng = seed.filter(|_| p > 0.0).map(|(seed, stream)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            rng
        });
        Dropout { p, rng }
    }

    fn apply<const D: usize>(&mut self, x: Tensor<D>) -> Tensor<D> {
        let Some(rng) = &mut self.rng else { return x };
        let dims = x.dims();
        let n: usize = dims.iter().product();
        let p = self.p as f32;
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let keep: Vec<f32> = (0..n)
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { scale })
            .collect();
        let device = x.device();
        x * Tensor::from_data(TensorData::new(keep, dims), &device)
    }
}
