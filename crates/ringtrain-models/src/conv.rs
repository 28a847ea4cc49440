//! Conv1d layers over the time axis (`model.conv`), between the input block and the recurrent
//! layers: a CNN front-end that turns local patterns into features (and, with a stride, shortens
//! the sequence the recurrent layers have to carry information across).
//!
//! Padding is "same"-style and fixed: `(kernel − 1) / 2` zero steps before the sequence and
//! `kernel / 2` after it, so output step `j` is centred on input step `j · stride` and `T` steps
//! give `ceil(T / stride)` outputs. The padding does not depend on the batch's length `T`, and
//! the input is zeroed at padded steps before the convolution, so every valid output of a padded
//! sequence reads exactly what the same sequence alone reads (its own steps and zeros). A
//! sequence of `L` valid steps has `ceil(L / stride)` valid outputs; the layer recomputes the
//! mask accordingly and zeroes the outputs at padded steps (the invariant the other layers
//! keep: padded steps carry zeros).

use burn::module::{Module, Param};
use burn::tensor::activation::{relu, tanh};
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_spec::{ConvActivation, ConvSpec};

use crate::init::{Init, param1};
use crate::seq::Steps;

/// One Conv1d layer: `[B, T, in]` → `[B, ceil(T / stride), channels]`.
#[derive(Module, Debug)]
pub struct Conv {
    /// Kernel `[channels, in, kernel]` (PyTorch's `Conv1d.weight` layout).
    pub weight: Param<Tensor<3>>,
    /// Bias `[channels]`.
    pub bias: Param<Tensor<1>>,
    /// Step between output positions.
    pub stride: usize,
    /// Non-linearity after the convolution.
    #[module(skip)]
    pub activation: ConvActivation,
    /// Position among the Conv1d layers (0 = first), used in the layer name.
    pub position: usize,
}

impl Conv {
    /// A layer initialized like PyTorch's `Conv1d`: weights and bias uniform in
    /// `±1/sqrt(in · kernel)`, drawn from `init` (weights first, then bias).
    pub(crate) fn new(
        spec: &ConvSpec,
        input_size: usize,
        position: usize,
        init: &mut Init,
        device: &Device,
    ) -> Conv {
        let fan_in = input_size * spec.kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let dims = [spec.channels, input_size, spec.kernel];
        let weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(init.uniform(spec.channels * fan_in, bound), dims),
            device,
        ));
        Conv {
            weight,
            bias: param1(init.uniform(spec.channels, bound), device),
            stride: spec.stride,
            activation: spec.activation,
            position,
        }
    }

    /// Width each input step must have.
    pub fn input_size(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Width of each output step.
    pub fn channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Kernel width in steps.
    pub fn kernel(&self) -> usize {
        self.weight.dims()[2]
    }

    /// Number of output steps for `time` input steps: `ceil(time / stride)`.
    pub fn output_len(&self, time: usize) -> usize {
        time.div_ceil(self.stride.max(1))
    }

    pub(crate) fn forward(&self, input: Steps) -> Steps {
        let batch = input.batch();
        let time = input.time();
        let device = input.mask.device();
        let out_len = self.output_len(time);
        let mask = self.output_mask(&input, out_len);
        if time == 0 || batch == 0 {
            let y = Tensor::zeros([out_len, batch, self.channels()], &device);
            return Steps::time_major(y, mask);
        }
        let mut x = input.time_major_tensor();
        if input.padding.is_some() {
            // Padded steps may hold anything (e.g. an embedding of a non-pad id): they must read
            // as the zeros past the end of the sequence alone.
            x = x * time_major_mask(&input.mask);
        }
        let kernel = self.kernel();
        let before = (kernel - 1) / 2;
        let options = ConvOptions::new_with_padding(
            [self.stride.max(1)],
            [(before, kernel - 1 - before)],
            [1],
            1,
        );
        // [T, B, F] → [B, F, T], the layout burn's conv1d reads.
        let y = conv1d(
            x.permute([1, 2, 0]),
            self.weight.val(),
            Some(self.bias.val()),
            options,
        );
        let y = match self.activation {
            ConvActivation::Relu => relu(y),
            ConvActivation::Tanh => tanh(y),
            ConvActivation::None => y,
        };
        let mut y = y.permute([2, 0, 1]);
        let out = Steps::time_major(y.clone(), mask);
        if out.padding.is_some() {
            // Zero outputs at padded steps (they saw the bias and zero inputs).
            y = y * time_major_mask(&out.mask);
            return out.with_time_major(y);
        }
        out
    }

    /// The `[B, out_len]` mask of the output: sample `b` with `L` valid steps has
    /// `ceil(L / stride)` valid outputs.
    fn output_mask(&self, input: &Steps, out_len: usize) -> Tensor<2> {
        if self.stride <= 1 {
            return input.mask.clone();
        }
        match &input.padding {
            Some(p) => {
                self.strided_mask(&p.host, input.batch(), input.time(), &input.mask.device())
            }
            None => Tensor::ones([input.batch(), out_len], &input.mask.device()),
        }
    }

    /// The validity mask `[B, ceil(T / stride)]` of this layer's output for an input mask
    /// `[B, T]` (1 valid, 0 padding at the end). Reads the mask back to the host.
    pub fn mask_after(&self, mask: &Tensor<2>) -> Tensor<2> {
        if self.stride <= 1 {
            return mask.clone();
        }
        let [batch, time] = mask.dims();
        let host: Vec<f32> = mask.clone().into_data().iter::<f32>().collect();
        self.strided_mask(&host, batch, time, &mask.device())
    }

    fn strided_mask(&self, host: &[f32], batch: usize, time: usize, device: &Device) -> Tensor<2> {
        let out_len = self.output_len(time);
        let values: Vec<f32> = (0..batch)
            .flat_map(|b| {
                // Padding only at the end: the valid length is the number of valid steps.
                let len = host[b * time..(b + 1) * time]
                    .iter()
                    .filter(|m| **m > 0.5)
                    .count();
                let valid = self.output_len(len);
                (0..out_len).map(move |j| if j < valid { 1.0 } else { 0.0 })
            })
            .collect();
        Tensor::from_data(TensorData::new(values, [batch, out_len]), device)
    }
}

/// `[B, T]` mask → `[T, B, 1]`, to scale a time-major sequence.
pub(crate) fn time_major_mask(mask: &Tensor<2>) -> Tensor<3> {
    mask.clone().swap_dims(0, 1).unsqueeze_dim::<3>(2)
}
