//! The whole-sequence kernel against the per-timestep burn-ops path carrying the same
//! parameters: forward outputs, every parameter gradient and the input gradient, for every
//! cell, both directions, 1–3 layers, odd sizes, unpadded and padded batches, in training
//! mode with dropout, and on the plain (inference) device. The kernel against burn-nn and
//! against finite differences is covered in `reference.rs` and `gradcheck.rs` (the kernel is
//! the default implementation).

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ringtrain_models::{Batch, Boundary, ForwardCtx, Inputs, Model, RecurrentImpl, flat};

use crate::*;

/// Returns (sequence output, head output, flat parameter grads, input grad) for a batch with
/// valid `lengths` out of `time` steps.
fn run(
    model: &Model,
    x: &Tensor<3>,
    lengths: &[usize],
    ctx: &ForwardCtx,
    device: &Device,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let [_, t, _] = x.dims();
    let n = model.num_layers();
    let x = x.clone().require_grad();
    let m = mask(lengths, t, device);
    let (s, m) = seq(model
        .forward_range(
            0..n - 1,
            Boundary::Seq {
                x: x.clone(),
                mask: m,
            },
            ctx,
        )
        .unwrap());
    let y = out(model
        .forward_range(
            n - 1..n,
            Boundary::Seq {
                x: s.clone(),
                mask: m,
            },
            ctx,
        )
        .unwrap());
    let r1 = tensor3(s.dims(), 11, device);
    let r2 = tensor2(y.dims(), 12, device);
    let loss = (s.clone() * r1).sum() + (y.clone() * r2).sum();
    let mut grads = loss.backward();
    let gx = vec3(x.grad_remove(&mut grads).expect("input gradient"));
    let gp = GradientsParams::from_grads(grads, model);
    (vec3(s), vec2(y), flat::flatten_grads(model, &gp), gx)
}

fn compare(case: &str, kernel: &Model, lengths: &[usize], x: &Tensor<3>, ctx: &ForwardCtx) {
    let device = x.device();
    let ops = kernel.clone().with_recurrent_impl(RecurrentImpl::BurnOps);
    let (s1, y1, g1, x1) = run(kernel, x, lengths, ctx, &device);
    let (s2, y2, g2, x2) = run(&ops, x, lengths, ctx, &device);
    assert_close(&format!("{case}: sequence output"), &s1, &s2, 1e-4);
    assert_close(&format!("{case}: head output"), &y1, &y2, 1e-4);
    assert_close(&format!("{case}: parameter gradients"), &g1, &g2, 1e-4);
    assert_close(&format!("{case}: input gradient"), &x1, &x2, 1e-4);
    assert!(max_abs(&g1) > 1e-3, "{case}: gradients are not all ~0");
    assert!(max_abs(&x1) > 1e-4, "{case}: input gradient is not ~0");
}

#[test]
fn kernel_matches_burn_ops_on_outputs_and_all_gradients() {
    let device = Device::flex().autodiff();
    let (features, hidden, batch, time) = (5, 7, 3, 6);
    for (cell, act, label) in CELLS {
        for bi in [false, true] {
            for layers in 1..=3 {
                let s = spec(cell, act, layers, hidden, bi);
                let model = numeric_model(&s, features, 2, 3, &device);
                let x = tensor3([batch, time, features], 5, &device);
                for lengths in [[6, 6, 6], [6, 3, 1], [2, 6, 0]] {
                    let case = format!("{label} bi={bi} layers={layers} lengths={lengths:?}");
                    compare(&case, &model, &lengths, &x, &EVAL);
                }
            }
        }
    }
}

#[test]
fn kernel_matches_burn_ops_in_training_mode_with_dropout() {
    let device = Device::flex().autodiff();
    for (cell, act, label) in CELLS {
        let mut s = spec(cell, act, 3, 9, true);
        s.dropout = 0.4;
        let model = numeric_model(&s, 4, 3, 8, &device);
        let x = tensor3([4, 7, 4], 6, &device);
        let ctx = ForwardCtx {
            train: true,
            dropout_seed: 77,
        };
        compare(&format!("{label} dropout"), &model, &[7, 5, 7, 1], &x, &ctx);
    }
}

#[test]
fn kernel_matches_burn_ops_on_the_plain_device() {
    let device = Device::flex();
    for (cell, act, label) in CELLS {
        for bi in [false, true] {
            let model = numeric_model(&spec(cell, act, 2, 13, bi), 3, 2, 1, &device);
            let ops = model.clone().with_recurrent_impl(RecurrentImpl::BurnOps);
            let x = tensor3([5, 9, 3], 2, &device);
            for lengths in [[9, 9, 9, 9, 9], [9, 4, 1, 7, 0]] {
                let batch = |m: &Model| {
                    vec2(m.forward(
                        Batch {
                            inputs: Inputs::Numeric(x.clone()),
                            mask: mask(&lengths, 9, &device),
                        },
                        &EVAL,
                    ))
                };
                let case = format!("{label} bi={bi} lengths={lengths:?} (plain device)");
                assert_close(&case, &batch(&model), &batch(&ops), 1e-5);
            }
        }
    }
}

#[test]
fn switching_between_kernel_and_burn_ops_keeps_parameters() {
    let device = Device::flex().autodiff();
    let model = numeric_model(
        &spec(
            ringtrain_spec::CellKind::Lstm,
            ringtrain_spec::Activation::Tanh,
            2,
            4,
            true,
        ),
        3,
        1,
        5,
        &device,
    );
    let ops = model.clone().with_recurrent_impl(RecurrentImpl::BurnOps);
    let back = ops.clone().with_recurrent_impl(RecurrentImpl::Kernel);
    assert_eq!(flat::flatten_params(&model), flat::flatten_params(&ops));
    assert_eq!(flat::flatten_params(&model), flat::flatten_params(&back));
    assert_eq!(model.layer_infos(), back.layer_infos());
}
