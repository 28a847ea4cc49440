//! The in-stage form of a sequence: one `[B, F]` tensor per timestep plus the padding mask.
//!
//! Inside a stage the sequence never exists as a tracked `[B, T, F]` tensor: slicing such a
//! tensor per step makes every slice's backward materialize a full-size zero tensor, an autodiff
//! cost that grows with T² (see BURN.md). Layers pass `Vec<Tensor<2>>` to each other and the
//! sequence is stacked only where it leaves a stage.

use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A batch of sequences as one tensor per timestep.
#[derive(Debug, Clone)]
pub(crate) struct Steps {
    /// `T` tensors of shape `[B, F]`, in time order.
    pub steps: Vec<Tensor<2>>,
    /// Validity mask `[B, T]` (1 valid, 0 padding at the end).
    pub mask: Tensor<2>,
    /// Per-step masks, present only when some step of some sequence is padding, so that an
    /// unpadded batch (the common training case) pays for no masking arithmetic.
    pub padding: Option<StepMasks>,
}

/// Per-step views of a mask that has padding.
#[derive(Debug, Clone)]
pub(crate) struct StepMasks {
    /// `m_t`, `[B, 1]`.
    pub keep: Vec<Tensor<2>>,
    /// `1 - m_t`, `[B, 1]`.
    pub carry: Vec<Tensor<2>>,
}

impl StepMasks {
    /// Builds the per-step views when `mask` contains padding, `None` otherwise.
    pub(crate) fn of(mask: &Tensor<2>) -> Option<StepMasks> {
        let [batch, time] = mask.dims();
        let min = mask
            .clone()
            .min()
            .into_data()
            .iter::<f32>()
            .next()
            .unwrap_or(1.0);
        if min >= 1.0 || batch == 0 || time == 0 {
            return None;
        }
        let keep: Vec<Tensor<2>> = (0..time)
            .map(|t| mask.clone().slice([0..batch, t..t + 1]))
            .collect();
        let carry = keep
            .iter()
            .map(|m| m.clone().neg().add_scalar(1.0))
            .collect();
        Some(StepMasks { keep, carry })
    }
}

impl Steps {
    /// Cuts `x: [B, T, F]` into steps. Cheap when `x` is untracked (raw data); a tracked `x`
    /// (a stage boundary leaf) pays the per-slice backward once per stage.
    pub(crate) fn from_seq(x: Tensor<3>, mask: Tensor<2>) -> Steps {
        let [batch, time, features] = x.dims();
        let steps = (0..time)
            .map(|t| {
                x.clone()
                    .slice([0..batch, t..t + 1, 0..features])
                    .reshape([batch, features])
            })
            .collect();
        Steps::new(steps, mask)
    }

    pub(crate) fn new(steps: Vec<Tensor<2>>, mask: Tensor<2>) -> Steps {
        let padding = StepMasks::of(&mask);
        Steps {
            steps,
            mask,
            padding,
        }
    }

    pub(crate) fn batch(&self) -> usize {
        self.mask.dims()[0]
    }

    pub(crate) fn time(&self) -> usize {
        self.mask.dims()[1]
    }

    /// Stacks the steps back into `[B, T, F]` (the form that crosses a stage boundary).
    pub(crate) fn into_seq(self) -> (Tensor<3>, Tensor<2>) {
        (Tensor::stack(self.steps, 1), self.mask)
    }

    /// Same steps with new values (the mask is unchanged).
    pub(crate) fn with_steps(&self, steps: Vec<Tensor<2>>) -> Steps {
        Steps {
            steps,
            mask: self.mask.clone(),
            padding: self.padding.clone(),
        }
    }

    /// Inverted dropout with probability `p`, masks drawn from ChaCha8 seeded by `seed` on stream
    /// `stream` (the layer index): stateless, so the same `(seed, layer)` always drops the same
    /// units whatever stage runs the layer and whether or not the run was resumed.
    pub(crate) fn dropout(self, p: f64, seed: u64, stream: u64) -> Steps {
        if p <= 0.0 || self.steps.is_empty() {
            return self;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        let scale = (1.0 / (1.0 - p)) as f32;
        let p = p as f32;
        let steps = self
            .steps
            .iter()
            .map(|x| {
                let [b, f] = x.dims();
                let keep: Vec<f32> = (0..b * f)
                    .map(|_| if rng.random::<f32>() < p { 0.0 } else { scale })
                    .collect();
                let keep = Tensor::from_data(TensorData::new(keep, [b, f]), &x.device());
                x.clone() * keep
            })
            .collect();
        self.with_steps(steps)
    }
}
