//! Deterministic parameter initialization from ringtrain's own ChaCha stream, so that the same
//! seed gives bit-identical parameters on every replica and machine, independent of burn's
//! global RNG.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A stream of initial values. One `Init` serves a whole model; parameters draw from it in
/// construction order, so adding a layer never changes the values drawn for earlier layers.
pub(crate) struct Init {
    rng: ChaCha8Rng,
}

impl Init {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `n` values uniform in `[-bound, bound)`.
    pub(crate) fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.rng.random::<f32>() * 2.0 - 1.0) * bound)
            .collect()
    }

    /// `n` standard-normal values (Box-Muller; `rand_distr` is not a dependency).
    pub(crate) fn normal(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            // 1 - u keeps the logarithm's argument in (0, 1].
            let u1 = 1.0 - self.rng.random::<f64>();
            let u2 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = 2.0 * std::f64::consts::PI * u2;
            out.push((r * theta.cos()) as f32);
            out.push((r * theta.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

/// A trainable 2-D parameter holding `values` (row-major `[rows, cols]`).
pub(crate) fn param2(
    values: Vec<f32>,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values, [rows, cols]),
        device,
    ))
}

/// A trainable 1-D parameter holding `values`.
pub(crate) fn param1(values: Vec<f32>, device: &Device) -> Param<Tensor<1>> {
    let n = values.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [n]), device))
}
