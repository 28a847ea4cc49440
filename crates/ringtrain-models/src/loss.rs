//! Training losses on burn tensors, each returning a one-element tensor ready for `backward`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean squared error over all elements of `[B, K]` predictions.
pub fn mse(pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let d = pred - target;
    (d.clone() * d).mean()
}

/// Mean absolute error over all elements.
pub fn mae(pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    (pred - target).abs().mean()
}

/// Cross-entropy of `[B, C]` logits against `[B]` labels. With `class_weights` (`[C]`) it is
/// PyTorch's weighted form `Σ w_y · nll / Σ w_y`; without, the mean `nll`.
pub fn cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    class_weights: Option<Tensor<1>>,
) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    let nll = logp
        .gather(1, labels.clone().reshape([b, 1]))
        .reshape([b])
        .neg();
    match class_weights {
        None => nll.mean(),
        Some(w) => {
            let wy = w.select(0, labels);
            (wy.clone() * nll).sum() / wy.sum()
        }
    }
}
