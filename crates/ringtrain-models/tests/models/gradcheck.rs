//! Analytic gradients (autodiff) against central finite differences of the same model on the
//! plain device, every parameter, with a padded batch.

use burn::optim::GradientsParams;
use burn::tensor::Device;
use ringtrain_models::{Boundary, Model, flat};
use ringtrain_spec::{Activation, CellKind};

use crate::*;

const FEATURES: usize = 3;
const BATCH: usize = 2;
const TIME: usize = 4;
const LENGTHS: [usize; BATCH] = [4, 2];

/// Loss weights for the sequence output and the head output.
fn weights(h: usize, outputs: usize) -> (Vec<f32>, Vec<f32>) {
    (values(BATCH * TIME * h, 21), values(BATCH * outputs, 22))
}

/// Sequence and head outputs of `model` on the fixed padded batch.
fn outputs(model: &Model, device: &Device) -> (burn::tensor::Tensor<3>, burn::tensor::Tensor<2>) {
    let n = model.num_layers();
    let x = tensor3([BATCH, TIME, FEATURES], 20, device);
    let m = mask(&LENGTHS, TIME, device);
    let (s, m) = seq(model
        .forward_range(0..n - 1, Boundary::Seq { x, mask: m }, &EVAL)
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
    (s, y)
}

/// The loss in f64 on the host, so the finite difference sees only the forward's rounding.
fn host_loss(model: &Model, device: &Device) -> f64 {
    let (s, y) = outputs(model, device);
    let (s, y) = (vec3(s), vec2(y));
    let (w1, w2) = weights(s.len() / (BATCH * TIME), y.len() / BATCH);
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
    };
    dot(&s, &w1) + dot(&y, &w2)
}

fn check(cell: CellKind, bi: bool) {
    let label = format!("{cell:?} bi={bi}");
    let spec = spec(cell, Activation::Tanh, 2, 4, bi);
    let ad = Device::flex().autodiff();
    let plain = Device::flex();

    let model = numeric_model(&spec, FEATURES, 2, 9, &ad);
    let (s, y) = outputs(&model, &ad);
    let [_, _, h] = s.dims();
    let (w1, w2) = weights(h, 2);
    let loss = (s * tensor_from(w1, [BATCH, TIME, h], &ad)).sum()
        + (y * tensor_from2(w2, [BATCH, 2], &ad)).sum();
    let grads = flat::flatten_grads(
        &model,
        &GradientsParams::from_grads(loss.backward(), &model),
    );

    let base = numeric_model(&spec, FEATURES, 2, 9, &plain);
    let theta = flat::flatten_params(&base);
    assert_eq!(
        theta,
        flat::flatten_params(&model),
        "{label}: same seed on both devices"
    );
    let eps = 3e-3f32;
    let mut worst = 0.0f64;
    for i in 0..theta.len() {
        let mut p = theta.clone();
        p[i] = theta[i] + eps;
        let up = host_loss(&flat::load_params(base.clone(), &p).unwrap(), &plain);
        p[i] = theta[i] - eps;
        let down = host_loss(&flat::load_params(base.clone(), &p).unwrap(), &plain);
        let fd = (up - down) / (2.0 * eps as f64);
        let g = grads[i] as f64;
        let err = (fd - g).abs();
        worst = worst.max(err);
        assert!(
            err <= 5e-4 + 1e-2 * g.abs(),
            "{label}: parameter {i}: finite difference {fd} vs autodiff {g}"
        );
    }
    assert!(max_abs(&grads) > 1e-2, "{label}: gradients are not all ~0");
    eprintln!(
        "{label}: {} parameters, worst |fd - grad| = {worst:e}",
        theta.len()
    );
}

fn tensor_from(v: Vec<f32>, dims: [usize; 3], device: &Device) -> burn::tensor::Tensor<3> {
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(v, dims), device)
}

fn tensor_from2(v: Vec<f32>, dims: [usize; 2], device: &Device) -> burn::tensor::Tensor<2> {
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(v, dims), device)
}

#[test]
fn lstm_gradients_match_finite_differences() {
    check(CellKind::Lstm, false);
    check(CellKind::Lstm, true);
}

#[test]
fn gru_gradients_match_finite_differences() {
    check(CellKind::Gru, false);
    check(CellKind::Gru, true);
}

#[test]
fn rnn_gradients_match_finite_differences() {
    check(CellKind::Rnn, true);
}
