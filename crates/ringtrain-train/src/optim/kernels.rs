//! The element-wise update loops of each optimizer, one function per algorithm, written over
//! zipped slices of equal length so the compiler drops bounds checks and vectorizes them.
//!
//! Weight decay is a const generic rather than a branch in the loop: PyTorch skips the
//! `g + wd * p` term entirely when `wd == 0` (which matters when `p` is not finite, since
//! `0 * inf` is NaN), and monomorphizing keeps that exactness without a per-element test.
//! No `mul_add`: without a guaranteed FMA target feature it compiles to a libm call.

/// Scalars of one SGD step, already cast to f32.
pub(super) struct SgdScalars {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// SGD without momentum: `p -= lr * (g + wd * p)`.
pub(super) fn sgd_plain<const L2: bool>(params: &mut [f32], grads: &[f32], s: &SgdScalars) {
    for (p, &g) in params.iter_mut().zip(grads) {
        let g = if L2 { g + s.weight_decay * *p } else { g };
        *p -= s.lr * g;
    }
}

/// SGD with momentum (dampening 0). On the first step PyTorch initializes the buffer to the
/// gradient itself rather than to `momentum * 0 + g`; the two agree numerically, but copying
/// keeps the first step identical even for non-finite buffers.
pub(super) fn sgd_momentum<const L2: bool, const NESTEROV: bool>(
    params: &mut [f32],
    grads: &[f32],
    buf: &mut [f32],
    first_step: bool,
    s: &SgdScalars,
) {
    let mu = s.momentum;
    for ((p, &g), b) in params.iter_mut().zip(grads).zip(buf.iter_mut()) {
        let g = if L2 { g + s.weight_decay * *p } else { g };
        *b = if first_step { g } else { mu * *b + g };
        let d = if NESTEROV { g + mu * *b } else { *b };
        *p -= s.lr * d;
    }
}

/// Scalars of one RMSProp step, already cast to f32.
pub(super) struct RmspropScalars {
    pub lr: f32,
    pub alpha: f32,
    /// `1 - alpha`, computed in f64 before the cast like PyTorch's Python-float scalars.
    pub one_minus_alpha: f32,
    pub eps: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Non-centered RMSProp without momentum:
/// `v = alpha v + (1 - alpha) g²; p -= lr * g / (sqrt(v) + eps)`.
pub(super) fn rmsprop_plain<const L2: bool>(
    params: &mut [f32],
    grads: &[f32],
    square_avg: &mut [f32],
    s: &RmspropScalars,
) {
    let one_minus_alpha = s.one_minus_alpha;
    for ((p, &g), v) in params.iter_mut().zip(grads).zip(square_avg.iter_mut()) {
        let g = if L2 { g + s.weight_decay * *p } else { g };
        *v = s.alpha * *v + one_minus_alpha * g * g;
        let avg = v.sqrt() + s.eps;
        *p -= s.lr * g / avg;
    }
}

/// Non-centered RMSProp with momentum; the buffer starts at zero (PyTorch's `zeros_like`):
/// `b = momentum b + g / (sqrt(v) + eps); p -= lr * b`.
pub(super) fn rmsprop_momentum<const L2: bool>(
    params: &mut [f32],
    grads: &[f32],
    square_avg: &mut [f32],
    buf: &mut [f32],
    s: &RmspropScalars,
) {
    let one_minus_alpha = s.one_minus_alpha;
    let iter = params
        .iter_mut()
        .zip(grads)
        .zip(square_avg.iter_mut())
        .zip(buf.iter_mut());
    for (((p, &g), v), b) in iter {
        let g = if L2 { g + s.weight_decay * *p } else { g };
        *v = s.alpha * *v + one_minus_alpha * g * g;
        let avg = v.sqrt() + s.eps;
        *b = s.momentum * *b + g / avg;
        *p -= s.lr * *b;
    }
}

/// Scalars of one Adam/AdamW step. The bias corrections are computed in f64 by the caller,
/// as PyTorch does with Python floats, and only the final factors are cast to f32.
pub(super) struct AdamScalars {
    /// `1 - beta1`, the lerp weight of the first moment.
    pub one_minus_beta1: f32,
    pub beta2: f32,
    /// `1 - beta2`.
    pub one_minus_beta2: f32,
    pub eps: f32,
    /// L2 coefficient added to the gradient (Adam only; 0 for AdamW).
    pub weight_decay: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    /// `1 - lr * wd` applied to the parameters first (AdamW only; 1 for Adam).
    pub decoupled_decay: f32,
}

/// Adam / AdamW:
/// `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²;
/// p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps)`, preceded for AdamW (`DECOUPLED`) by
/// `p *= 1 - lr * wd` and for Adam with `L2` by `g += wd * p`.
///
/// The first moment is updated the way PyTorch's `exp_avg.lerp_(g, 1 - b1)` rounds:
/// `m + w (g - m)` for weights below 0.5, `g - (g - m)(1 - w)` otherwise.
pub(super) fn adam<const L2: bool, const DECOUPLED: bool>(
    params: &mut [f32],
    grads: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    s: &AdamScalars,
) {
    let w = s.one_minus_beta1;
    let small_weight = w.abs() < 0.5;
    let one_minus_w = 1.0 - w;
    let iter = params
        .iter_mut()
        .zip(grads)
        .zip(exp_avg.iter_mut())
        .zip(exp_avg_sq.iter_mut());
    for (((p, &g), m), v) in iter {
        if DECOUPLED {
            *p *= s.decoupled_decay;
        }
        let g = if L2 { g + s.weight_decay * *p } else { g };
        *m = if small_weight {
            *m + w * (g - *m)
        } else {
            g - (g - *m) * one_minus_w
        };
        *v = s.beta2 * *v + s.one_minus_beta2 * g * g;
        let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
        *p -= s.step_size * *m / denom;
    }
}
