//! Fused layers against burn-nn's modules carrying the same weights: outputs and every
//! parameter and input gradient.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ringtrain_models::flat::{flatten_grads_fused_layout, flatten_params_fused_layout};
use ringtrain_models::{Boundary, RecurrentImpl, flat};

use crate::*;

/// Returns (sequence output, head output, flat grads in fused layout, input grad).
fn run(
    model: &ringtrain_models::Model,
    x: &Tensor<3>,
    device: &Device,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let [b, t, _] = x.dims();
    let n = model.num_layers();
    let x = x.clone().require_grad();
    let m = mask(&vec![t; b], t, device);
    let (s, m) = seq(model
        .forward_range(
            0..n - 1,
            Boundary::Seq {
                x: x.clone(),
                mask: m,
            },
            &EVAL,
        )
        .unwrap());
    let y = out(model
        .forward_range(
            n - 1..n,
            Boundary::Seq {
                x: s.clone(),
                mask: m,
            },
            &EVAL,
        )
        .unwrap());
    let [_, _, h] = s.dims();
    let r1 = tensor3([b, t, h], 11, device);
    let r2 = tensor2(y.dims(), 12, device);
    let loss = (s.clone() * r1).sum() + (y.clone() * r2).sum();
    let mut grads = loss.backward();
    let gx = vec3(x.grad_remove(&mut grads).expect("input gradient"));
    let gp = GradientsParams::from_grads(grads, model);
    (vec3(s), vec2(y), flatten_grads_fused_layout(model, &gp), gx)
}

#[test]
fn fused_layers_match_burn_nn_outputs_and_gradients() {
    let device = Device::flex().autodiff();
    let (features, hidden, batch, time) = (5, 7, 3, 6);
    for (cell, act, label) in CELLS {
        for bi in [false, true] {
            for layers in 1..=3 {
                let case = format!("{label} bi={bi} layers={layers}");
                let fused = numeric_model(
                    &spec(cell, act, layers, hidden, bi),
                    features,
                    2,
                    3,
                    &device,
                );
                let reference = fused
                    .clone()
                    .with_recurrent_impl(RecurrentImpl::BurnNnReference);
                assert_eq!(
                    flat::flatten_params(&fused),
                    flatten_params_fused_layout(&reference),
                    "{case}: weights copied"
                );
                let x = tensor3([batch, time, features], 5, &device);
                let (s1, y1, g1, x1) = run(&fused, &x, &device);
                let (s2, y2, g2, x2) = run(&reference, &x, &device);
                assert_close(&format!("{case}: sequence output"), &s1, &s2, 1e-4);
                assert_close(&format!("{case}: head output"), &y1, &y2, 1e-4);
                assert_close(&format!("{case}: parameter gradients"), &g1, &g2, 1e-4);
                assert_close(&format!("{case}: input gradient"), &x1, &x2, 1e-4);
                assert!(max_abs(&g1) > 1e-3, "{case}: gradients are not all ~0");
                // Round trip back to fused layers keeps the weights.
                let back = reference.with_recurrent_impl(RecurrentImpl::Kernel);
                assert_eq!(
                    flat::flatten_params(&back),
                    flat::flatten_params(&fused),
                    "{case}"
                );
            }
        }
    }
}
