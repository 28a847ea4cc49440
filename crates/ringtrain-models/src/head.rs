//! Input blocks (token embedding, numeric projection) and the output head; all three work on
//! the time-major sequence form, so no tracked sequence is ever cut into steps here.

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ringtrain_spec::Pooling;

use crate::init::{Init, param1, param2};
use crate::seq::{SeqData, Steps};

/// A token embedding `[vocab, dim]` drawn N(0, 1) with row 0 (the `<pad>` token) zero.
pub(crate) fn new_embedding(
    vocab: usize,
    dim: usize,
    init: &mut Init,
    device: &Device,
) -> Embedding {
    let mut w = init.normal(vocab * dim);
    w[..dim.min(vocab * dim)].iter_mut().for_each(|v| *v = 0.0);
    Embedding {
        weight: param2(w, vocab, dim, device),
    }
}

/// A linear layer `[fan_in, fan_out]` with weights and bias uniform in `±1/sqrt(fan_in)`
/// (PyTorch's `nn.Linear` default).
pub(crate) fn new_linear(
    fan_in: usize,
    fan_out: usize,
    init: &mut Init,
    device: &Device,
) -> Linear {
    let bound = 1.0 / (fan_in as f32).sqrt();
    Linear {
        weight: param2(
            init.uniform(fan_in * fan_out, bound),
            fan_in,
            fan_out,
            device,
        ),
        bias: Some(param1(init.uniform(fan_out, bound), device)),
    }
}

/// Embeds `[B, T]` token ids into a time-major `[T, B, D]` sequence (one gather).
pub(crate) fn embed_steps(emb: &Embedding, ids: Tensor<2, Int>, mask: Tensor<2>) -> Steps {
    let x = embedding(emb.weight.val(), ids.swap_dims(0, 1));
    Steps::time_major(x, mask)
}

/// Applies a linear map to every step (one matmul for a time-major sequence).
pub(crate) fn project_steps(lin: &Linear, input: Steps) -> Steps {
    match input.data() {
        SeqData::Steps(steps) => {
            let steps = steps.iter().map(|x| lin.forward(x.clone())).collect();
            input.with_steps(steps)
        }
        SeqData::TimeMajor(x) => input.with_time_major(lin.forward(x.clone())),
    }
}

/// The last layer: pools the sequence into one vector per sample, then a linear map.
#[derive(Module, Debug)]
pub struct Head {
    /// `[in, outputs]` (regression) or `[in, classes]` (classification).
    pub linear: Linear,
    /// How the steps are pooled (regression always uses [`Pooling::Last`]).
    #[module(skip)]
    pub pooling: Pooling,
    /// Hidden units per direction of the layer feeding the head.
    pub hidden: usize,
    /// Whether that layer is bidirectional (its steps are `[forward | backward]`).
    pub bidirectional: bool,
    /// `true` for a classifier (logits), `false` for a regressor.
    pub classifier: bool,
    /// `true` for a next-token head: no pooling, logits at every step, flattened batch-major
    /// to `[B·T, outputs]` (row `b·T + t`).
    pub per_step: bool,
}

impl Head {
    /// Width the head takes at every step.
    pub fn input_size(&self) -> usize {
        self.linear.weight.dims()[0]
    }

    /// Width of the head's output.
    pub fn output_size(&self) -> usize {
        self.linear.weight.dims()[1]
    }

    pub(crate) fn forward(&self, input: Steps) -> Tensor<2> {
        if self.per_step {
            return self.every_step(input);
        }
        self.linear.forward(self.pool(input))
    }

    /// Logits at every step, `[B·T, outputs]` batch-major (the order of the targets).
    fn every_step(&self, input: Steps) -> Tensor<2> {
        let (batch, time, width) = (input.batch(), input.time(), self.input_size());
        let x = input
            .time_major_tensor()
            .swap_dims(0, 1)
            .reshape([batch * time, width]);
        self.linear.forward(x)
    }

    /// Pools over valid steps only, on the time-major form `[T, B, W]`. Padded steps carry
    /// zero outputs (see [`crate::recurrent`]), which the sums below rely on.
    fn pool(&self, input: Steps) -> Tensor<2> {
        let batch = input.batch();
        let time = input.time();
        let width = self.input_size();
        let device = input.mask.device();
        if time == 0 {
            return Tensor::zeros([batch, width], &device);
        }
        let x = input.time_major_tensor();
        // Number of valid steps per sample `[B, 1]`.
        let count = || input.mask.clone().sum_dim(1);
        match self.pooling {
            Pooling::Last => {
                let last = match &input.padding {
                    None => x
                        .clone()
                        .slice([time - 1..time, 0..batch, 0..width])
                        .reshape([batch, width]),
                    Some(pm) => {
                        // Padding is only at the end, so m_t - m_{t+1} is 1 exactly at the last
                        // valid step; the masked sum then selects it (other terms are exact 0).
                        let m = |b: usize, t: usize| pm.host[b * time + t];
                        let ind: Vec<f32> = (0..time * batch)
                            .map(|i| {
                                let (t, b) = (i / batch, i % batch);
                                if t + 1 < time {
                                    m(b, t) - m(b, t + 1)
                                } else {
                                    m(b, t)
                                }
                            })
                            .collect();
                        let ind =
                            Tensor::<3>::from_data(TensorData::new(ind, [time, batch, 1]), &device);
                        (x.clone() * ind).sum_dim(0).reshape([batch, width])
                    }
                };
                if self.bidirectional {
                    // The backward half has read the whole sequence at step 0.
                    let h = self.hidden;
                    Tensor::cat(
                        vec![
                            last.slice([0..batch, 0..h]),
                            x.slice([0..1, 0..batch, h..2 * h]).reshape([batch, h]),
                        ],
                        1,
                    )
                } else {
                    last
                }
            }
            Pooling::Mean => x.sum_dim(0).reshape([batch, width]) / count().clamp_min(1.0),
            Pooling::Max => {
                let x = match &input.padding {
                    None => x,
                    // valid: x + 0 (exact); padded: 0 - 1e30 (never the maximum)
                    Some(_) => {
                        x + (input.mask.clone().swap_dims(0, 1) - 1.0)
                            .mul_scalar(1.0e30)
                            .unsqueeze_dim::<3>(2)
                    }
                };
                let max = x.max_dim(0).reshape([batch, width]);
                match &input.padding {
                    None => max,
                    // A sample with no valid step pools to zero rather than -1e30.
                    Some(_) => max * count().clamp_max(1.0),
                }
            }
        }
    }
}
