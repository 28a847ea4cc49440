//! Both recurrent paths learn alike: the same 2-layer model of every cell type, trained for 200
//! Adam steps on a task that needs memory, once on the whole-sequence kernel (the flex default)
//! and once on the per-timestep burn-ops cells (what a non-flex device such as CUDA gets). Both
//! must learn (loss down to a tenth of the start) and end at the same loss and parameters: the
//! paths agree per step to float rounding (`kernel.rs`), and this checks that it stays so over a
//! training run.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_models::{Batch, ForwardCtx, Inputs, Model, RecurrentImpl, flat, loss};

use crate::*;

const STEPS: usize = 200;

/// 32 sequences of 8 steps, 3 features in [-1, 1); targets: the mean of feature 0 over the
/// sequence and feature 1 at the first step (which the model has to remember to the end).
fn task(device: &Device) -> (Tensor<3>, Tensor<2>) {
    let (b, t, f) = (32, 8, 3);
    let x = values(b * t * f, 41);
    let mut y = Vec::with_capacity(b * 2);
    for s in 0..b {
        let at = |step: usize, feature: usize| x[(s * t + step) * f + feature];
        y.push((0..t).map(|step| at(step, 0)).sum::<f32>() / t as f32);
        y.push(at(0, 1));
    }
    (
        Tensor::from_data(TensorData::new(x, [b, t, f]), device),
        Tensor::from_data(TensorData::new(y, [b, 2]), device),
    )
}

/// Full-batch Adam (lr 0.01, PyTorch's defaults) on the flat parameters; returns every step's
/// loss and the final parameters.
fn train(mut model: Model, x: &Tensor<3>, y: &Tensor<2>) -> (Vec<f32>, Vec<f32>) {
    let (lr, b1, b2, eps) = (0.01f32, 0.9f32, 0.999f32, 1e-8f32);
    let [b, t, _] = x.dims();
    let mask = Tensor::<2>::ones([b, t], &x.device());
    let n = flat::param_count(&model);
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let mut losses = Vec::with_capacity(STEPS);
    let ctx = ForwardCtx {
        train: true,
        dropout_seed: 0,
    };
    for step in 1..=STEPS {
        let batch = Batch {
            inputs: Inputs::Numeric(x.clone()),
            mask: mask.clone(),
        };
        let l = loss::mse(model.forward(batch, &ctx), y.clone());
        losses.push(l.clone().into_scalar::<f32>());
        let g = flat::flatten_grads(&model, &GradientsParams::from_grads(l.backward(), &model));
        let mut p = flat::flatten_params(&model);
        let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        for i in 0..n {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
        model = flat::load_params(model, &p).expect("same layout");
    }
    (losses, flat::flatten_params(&model))
}

#[test]
fn kernel_and_burn_ops_paths_learn_alike() {
    let device = Device::flex().autodiff();
    let (x, y) = task(&device);
    for (cell, act, label) in CELLS {
        let kernel = numeric_model(&spec(cell, act, 2, 16, false), 3, 2, 5, &device);
        let ops = kernel.clone().with_recurrent_impl(RecurrentImpl::BurnOps);
        let (lk, pk) = train(kernel, &x, &y);
        let (lo, po) = train(ops, &x, &y);
        let (first, last) = (lk[0], lk[STEPS - 1]);
        assert!(
            last < 0.1 * first,
            "{label}: the kernel path did not learn: loss {first} -> {last}"
        );
        assert!(
            lo[STEPS - 1] < 0.1 * lo[0],
            "{label}: the burn-ops path did not learn: loss {} -> {}",
            lo[0],
            lo[STEPS - 1]
        );
        // Rounding differences between the paths (~1e-7 per step) stay that small through
        // training: a path computing something else would be off by far more.
        let loss_diff = (lk[STEPS - 1] - lo[STEPS - 1]).abs();
        assert!(
            loss_diff <= 1e-4 * last.max(1e-3),
            "{label}: final loss {last} (kernel) vs {} (burn ops)",
            lo[STEPS - 1]
        );
        assert_close(&format!("{label}: parameters"), &pk, &po, 1e-3);
    }
}
