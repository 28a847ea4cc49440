//! Integration tests of the model zoo on the flex backend: the sequence kernel against the
//! burn-ops path and burn-nn, both paths through 200 training steps,
//! gradients against finite differences, padding invariance, stage splits, flat buffers, seeds,
//! losses and shape errors.

// Tests report measured tolerances on stderr (visible with --nocapture).
#![allow(clippy::print_stderr)]

mod flat;
mod gradcheck;
mod hybrid;
mod kernel;
mod learning;
mod losses;
mod padding;
mod reference;
mod split;
mod stateful;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringtrain_models::{Boundary, ForwardCtx, HeadKind, InputKind, Model};
use ringtrain_spec::{Activation, CellKind, ModelSpec};

/// Every cell variant the tests sweep: (cell, rnn activation, label).
pub(crate) const CELLS: [(CellKind, Activation, &str); 4] = [
    (CellKind::Rnn, Activation::Tanh, "rnn-tanh"),
    (CellKind::Rnn, Activation::Relu, "rnn-relu"),
    (CellKind::Lstm, Activation::Tanh, "lstm"),
    (CellKind::Gru, Activation::Tanh, "gru"),
];

pub(crate) fn spec(
    cell: CellKind,
    activation: Activation,
    layers: usize,
    hidden: usize,
    bi: bool,
) -> ModelSpec {
    ModelSpec {
        cell,
        activation,
        layers,
        hidden,
        bidirectional: bi,
        dropout: 0.0,
        embedding_dim: 6,
        projection: None,
        conv: Vec::new(),
        attention: None,
    }
}

pub(crate) fn numeric_model(
    spec: &ModelSpec,
    features: usize,
    outputs: usize,
    seed: u64,
    device: &Device,
) -> Model {
    Model::new(
        spec,
        InputKind::Numeric { features },
        HeadKind::Regression { outputs },
        seed,
        device,
    )
    .expect("valid test model")
}

/// Deterministic values in [-1, 1).
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

pub(crate) fn tensor3(dims: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
    Tensor::from_data(
        TensorData::new(values(dims.iter().product(), seed), dims),
        device,
    )
}

pub(crate) fn tensor2(dims: [usize; 2], seed: u64, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(values(dims.iter().product(), seed), dims),
        device,
    )
}

/// A `[B, T]` mask with the given valid lengths.
pub(crate) fn mask(lengths: &[usize], time: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = lengths
        .iter()
        .flat_map(|&l| (0..time).map(move |t| if t < l { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(v, [lengths.len(), time]), device)
}

pub(crate) fn tokens(ids: Vec<i64>, dims: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids, dims), device)
}

pub(crate) fn vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}
pub(crate) fn vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}
pub(crate) fn vec3(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// Largest |a - b|, after checking the lengths agree.
pub(crate) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub(crate) fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Asserts `|a - b| <= tol * max(1, max|b|)` element-wise, printing the worst element.
pub(crate) fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    let scale = max_abs(b).max(1.0);
    let (i, d) = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |(bi, bd), (i, d)| if d > bd { (i, d) } else { (bi, bd) },
        );
    assert_eq!(a.len(), b.len(), "{what}: length mismatch");
    assert!(
        d <= tol * scale,
        "{what}: max |diff| {d:e} at {i} (a={}, b={}) exceeds {tol:e} x {scale}",
        a[i],
        b[i]
    );
}

pub(crate) fn out(b: Boundary) -> Tensor<2> {
    match b {
        Boundary::Out(y) => y,
        other => panic!("expected the head's output, got {other:?}"),
    }
}

pub(crate) fn seq(b: Boundary) -> (Tensor<3>, Tensor<2>) {
    match b {
        Boundary::Seq { x, mask } => (x, mask),
        other => panic!("expected a sequence, got {other:?}"),
    }
}

pub(crate) const EVAL: ForwardCtx = ForwardCtx {
    train: false,
    dropout_seed: 0,
};
