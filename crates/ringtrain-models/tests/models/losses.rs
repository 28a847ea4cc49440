//! Losses against hand-computed values.

use burn::tensor::{Device, Int, Tensor, TensorData};
use ringtrain_models::loss;

use crate::*;

fn t2(v: Vec<f32>, dims: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, dims), &Device::flex())
}

#[test]
fn regression_losses() {
    let p = t2(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
    let y = t2(vec![0.0, 2.0, 5.0, 3.0], [2, 2]);
    // diffs 1, 0, -2, 1
    assert_eq!(vec1(loss::mse(p.clone(), y.clone())), [6.0 / 4.0]);
    assert_eq!(vec1(loss::mae(p, y)), [1.0]);
}

#[test]
fn cross_entropy_plain_and_weighted() {
    let logits = t2(vec![0.0, (2.0f32).ln(), 0.0, 0.0], [2, 2]);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &Device::flex());
    // sample 0: p(1) = 2/3; sample 1: p(0) = 1/2
    let (n0, n1) = (-(2.0f64 / 3.0).ln(), (2.0f64).ln());
    let ce = vec1(loss::cross_entropy(logits.clone(), labels.clone(), None))[0] as f64;
    assert!((ce - (n0 + n1) / 2.0).abs() < 1e-6, "{ce}");
    let w = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 0.5], [2]), &Device::flex());
    let wce = vec1(loss::cross_entropy(logits, labels, Some(w)))[0] as f64;
    let want = (0.5 * n0 + 3.0 * n1) / 3.5;
    assert!((wce - want).abs() < 1e-6, "{wce} vs {want}");
}
