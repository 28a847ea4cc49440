//! The in-stage form of a sequence: either one `[B, F]` tensor per timestep or one time-major
//! `[T, B, F]` tensor, plus the padding mask.
//!
//! The whole-sequence kernel ([`crate::kernel`]) reads and writes time-major tensors; the
//! burn-ops fallback layers, the embedding of the fallback and the reference work per step.
//! Each form converts to the other only when a layer needs it: slicing a *tracked* sequence
//! tensor per step makes every slice's backward materialize a full-size zero tensor (a cost
//! that grows with T², see BURN.md), so the per-step form is produced only for the fallback
//! layers, which paid that cost before as well, and stacking steps (cheap both ways) is how
//! the per-step form becomes time-major.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The values of a sequence in one of its two forms.
// One per stage boundary in flight: the size difference costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum SeqData {
    /// `T` tensors of shape `[B, F]`, in time order.
    Steps(Vec<Tensor<2>>),
    /// One `[T, B, F]` tensor (possibly a strided view).
    TimeMajor(Tensor<3>),
}

/// A batch of sequences with its mask.
#[derive(Debug, Clone)]
pub(crate) struct Steps {
    data: SeqData,
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
    /// `valid[t·B + b] = m[b, t] > 0.5`, time-major, for the kernel.
    pub valid: Arc<[bool]>,
    /// The mask's values `[B, T]` on the host.
    pub host: Arc<[f32]>,
}

impl StepMasks {
    /// Builds the per-step views when `mask` contains padding, `None` otherwise.
    pub(crate) fn of(mask: &Tensor<2>) -> Option<StepMasks> {
        let [batch, time] = mask.dims();
        let host: Vec<f32> = mask.clone().into_data().iter::<f32>().collect();
        let min = host.iter().copied().fold(1.0f32, f32::min);
        if min >= 1.0 || batch == 0 || time == 0 {
            return None;
        }
        let valid = (0..time * batch)
            .map(|i| host[(i % batch) * time + i / batch] > 0.5)
            .collect();
        let keep: Vec<Tensor<2>> = (0..time)
            .map(|t| mask.clone().slice([0..batch, t..t + 1]))
            .collect();
        let carry = keep
            .iter()
            .map(|m| m.clone().neg().add_scalar(1.0))
            .collect();
        Some(StepMasks {
            keep,
            carry,
            valid,
            host: host.into(),
        })
    }
}

impl Steps {
    /// Takes `x: [B, T, F]` (a stage's input) as a time-major view; nothing is copied or cut.
    pub(crate) fn from_seq(x: Tensor<3>, mask: Tensor<2>) -> Steps {
        Steps::time_major(x.swap_dims(0, 1), mask)
    }

    /// A sequence from a time-major `[T, B, F]` tensor.
    pub(crate) fn time_major(x: Tensor<3>, mask: Tensor<2>) -> Steps {
        let padding = StepMasks::of(&mask);
        Steps {
            data: SeqData::TimeMajor(x),
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

    /// The values in whichever form they are.
    pub(crate) fn data(&self) -> &SeqData {
        &self.data
    }

    /// The per-step form (cut from a time-major tensor if need be).
    pub(crate) fn step_list(&self) -> Vec<Tensor<2>> {
        match &self.data {
            SeqData::Steps(s) => s.clone(),
            SeqData::TimeMajor(x) => {
                let [time, batch, features] = x.dims();
                (0..time)
                    .map(|t| {
                        x.clone()
                            .slice([t..t + 1, 0..batch, 0..features])
                            .reshape([batch, features])
                    })
                    .collect()
            }
        }
    }

    /// The time-major form `[T, B, F]` (stacked from steps if need be).
    pub(crate) fn time_major_tensor(&self) -> Tensor<3> {
        match &self.data {
            SeqData::TimeMajor(x) => x.clone(),
            SeqData::Steps(s) => Tensor::stack(s.clone(), 0),
        }
    }

    /// Stacks the steps back into `[B, T, F]` (the form that crosses a stage boundary).
    pub(crate) fn into_seq(self) -> (Tensor<3>, Tensor<2>) {
        let x = match self.data {
            SeqData::Steps(s) => Tensor::stack(s, 1),
            SeqData::TimeMajor(x) => x.swap_dims(0, 1),
        };
        (x, self.mask)
    }

    /// Same mask, new per-step values.
    pub(crate) fn with_steps(&self, steps: Vec<Tensor<2>>) -> Steps {
        self.with_data(SeqData::Steps(steps))
    }

    /// Same mask, new time-major values.
    pub(crate) fn with_time_major(&self, x: Tensor<3>) -> Steps {
        self.with_data(SeqData::TimeMajor(x))
    }

    fn with_data(&self, data: SeqData) -> Steps {
        Steps {
            data,
            mask: self.mask.clone(),
            padding: self.padding.clone(),
        }
    }

    /// Inverted dropout with probability `p`, masks drawn from ChaCha8 seeded by `seed` on stream
    /// `stream` (the layer index): stateless, so the same `(seed, layer)` always drops the same
    /// units whatever stage runs the layer and whether or not the run was resumed. The draws
    /// run in time-major order (`t`, then `b`, then the feature) in both forms, so the two
    /// forms drop the same units.
    pub(crate) fn dropout(self, p: f64, seed: u64, stream: u64) -> Steps {
        if p <= 0.0 || self.time() == 0 {
            return self;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        let scale = (1.0 / (1.0 - p)) as f32;
        let p = p as f32;
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| if rng.random::<f32>() < p { 0.0 } else { scale })
                .collect()
        };
        match &self.data {
            SeqData::Steps(steps) => {
                let steps = steps
                    .iter()
                    .map(|x| {
                        let [b, f] = x.dims();
                        let keep =
                            Tensor::from_data(TensorData::new(draw(b * f), [b, f]), &x.device());
                        x.clone() * keep
                    })
                    .collect();
                self.with_steps(steps)
            }
            SeqData::TimeMajor(x) => {
                let dims = x.dims();
                let keep = Tensor::from_data(
                    TensorData::new(draw(dims.iter().product()), dims),
                    &x.device(),
                );
                self.with_time_major(x.clone() * keep)
            }
        }
    }
}
