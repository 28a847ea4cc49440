//! Gradient clipping on the flat gradient buffer, after the all-reduce and before the optimizer:
//! clamping by value and rescaling to a maximum global L2 norm, with PyTorch's rules
//! (`clip_grad_value_`, `clip_grad_norm_`). Exploding gradients are the classic failure of
//! recurrent networks, and the norm is also the first place a NaN shows up, so a non-finite norm
//! is reported rather than spread through the gradients.
//!
//! The norm is split into [`sum_of_squares`] and [`clip_to_norm`] so that a pipeline-parallel
//! run, where each stage holds part of the gradient, can add the stages' partial sums before
//! clipping; data-parallel ranks hold identical gradients after the all-reduce and simply call
//! [`clip_by_global_norm`].

use ringtrain_spec::types::ClipSpec;

/// Clamps every element to `[-value, value]` (PyTorch's `clip_grad_value_`). NaN elements stay
/// NaN (so the norm check downstream still sees them). `value` is expected positive, as the spec
/// validates; this never panics, whatever it is.
pub fn clip_by_value(grads: &mut [f32], value: f32) {
    let lo = -value;
    for g in grads.iter_mut() {
        // Comparisons rather than f32::clamp, which panics on a NaN bound, and rather than
        // min/max, which would turn a NaN gradient into a bound and hide it.
        if *g > value {
            *g = value;
        } else if *g < lo {
            *g = lo;
        }
    }
}

/// Sum of squares of `grads`, accumulated in f64 in a fixed order (eight interleaved partial sums,
/// then the tail), so it vectorizes and is identical on every rank that holds the same buffer.
pub fn sum_of_squares(grads: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let chunks = grads.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &g) in acc.iter_mut().zip(chunk) {
            let g = f64::from(g);
            *a += g * g;
        }
    }
    let mut total = acc.iter().sum::<f64>();
    for &g in tail {
        let g = f64::from(g);
        total += g * g;
    }
    total
}

/// Rescales `grads` given their already-computed global L2 `norm`: multiplies by
/// `max_norm / (norm + 1e-6)` when that factor is below 1, which is PyTorch's rule
/// (`clip_coef = max_norm / (total_norm + 1e-6)`, clamped to 1). The `1e-6` keeps the division
/// finite, and means a norm equal to `max_norm` is still scaled by a hair below 1, as in PyTorch.
/// Returns whether the gradients were scaled. A non-finite `norm` leaves `grads` untouched and
/// returns `false`: scaling would only turn the whole buffer into NaN or zeros.
pub fn clip_to_norm(grads: &mut [f32], norm: f64, max_norm: f32) -> bool {
    if !norm.is_finite() {
        return false;
    }
    let coef = f64::from(max_norm) / (norm + 1e-6);
    if coef >= 1.0 {
        return false;
    }
    let coef = coef as f32;
    for g in grads.iter_mut() {
        *g *= coef;
    }
    true
}

/// Clips `grads` to a global L2 norm of at most `max_norm` and returns the norm **before**
/// clipping (computed with f64 accumulation, then rounded to f32).
///
/// A non-finite norm (a NaN or ∞ anywhere in `grads`, or a norm beyond `f32::MAX`) is returned
/// as is and `grads` is left untouched; the caller turns it into an error naming the step.
pub fn clip_by_global_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = sum_of_squares(grads).sqrt();
    let reported = norm as f32;
    // A norm finite in f64 but past f32::MAX is reported as ∞ too; keep "non-finite result ⇒
    // gradients untouched" true for it as well.
    if reported.is_finite() {
        clip_to_norm(grads, norm, max_norm);
    }
    reported
}

/// Applies a [`ClipSpec`]: value clamping first, then the norm limit (the order the spec
/// documents). Returns the pre-clip global norm when a norm limit is set — measured after the
/// value clamp, i.e. the norm the limit was compared against — and `None` otherwise.
pub fn apply(spec: &ClipSpec, grads: &mut [f32]) -> Option<f32> {
    if let Some(value) = spec.value {
        clip_by_value(grads, value as f32);
    }
    spec.norm
        .map(|max_norm| clip_by_global_norm(grads, max_norm as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_clamps_both_signs_and_keeps_nan_visible() {
        let mut g = [
            0.5,
            -0.5,
            2.0,
            -3.0,
            1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        clip_by_value(&mut g, 1.0);
        assert_eq!(&g[..7], &[0.5, -0.5, 1.0, -1.0, 1.0, 1.0, -1.0]);
        assert!(g[7].is_nan());
    }

    #[test]
    fn sum_of_squares_covers_chunks_and_tail() {
        // 1² + 2² + ... + 11² = 11·12·23/6 = 506 (one chunk of 8 and a tail of 3).
        let g: Vec<f32> = (1..=11).map(|i| i as f32).collect();
        assert_eq!(sum_of_squares(&g), 506.0);
        assert_eq!(sum_of_squares(&[]), 0.0);
    }

    #[test]
    fn norm_is_accumulated_in_f64() {
        // 4096² + 1² = 16777217 = 2^24 + 1, which f32 cannot hold (it rounds to 2^24).
        let mut g = [0.0f32; 9];
        g[0] = 4096.0;
        g[8] = 1.0;
        assert_eq!(sum_of_squares(&g), 16_777_217.0);
    }

    #[test]
    fn norm_above_max_scales_by_max_over_norm_plus_eps() {
        // [3, 4] has norm 5; max 1 → coef = 1 / (5 + 1e-6) = 0.19999996
        // → [0.59999988, 0.79999984], norm ≈ 1 - 2e-7.
        let mut g = [3.0f32, 4.0];
        let norm = clip_by_global_norm(&mut g, 1.0);
        assert_eq!(norm, 5.0);
        let coef = (1.0 / (5.0 + 1e-6)) as f32;
        assert_eq!(g, [3.0 * coef, 4.0 * coef]);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn norm_below_max_is_untouched() {
        // Norm 5 < 10: coef = 10 / 5.000001 > 1 → no scaling.
        let mut g = [3.0f32, -4.0];
        assert_eq!(clip_by_global_norm(&mut g, 10.0), 5.0);
        assert_eq!(g, [3.0, -4.0]);
        // Zero gradient: norm 0, coef = max/1e-6, nothing to scale.
        let mut z = [0.0f32; 3];
        assert_eq!(clip_by_global_norm(&mut z, 1.0), 0.0);
        assert_eq!(z, [0.0; 3]);
    }

    #[test]
    fn norm_equal_to_max_is_scaled_a_hair_like_pytorch() {
        // coef = 5 / (5 + 1e-6) = 0.9999998 < 1, so PyTorch multiplies; so do we.
        let mut g = [3.0f32, 4.0];
        assert!(clip_to_norm(&mut g, 5.0, 5.0));
        assert!(g[0] < 3.0 && (g[0] - 3.0).abs() < 1e-6);
    }

    #[test]
    fn non_finite_norm_is_returned_and_grads_are_untouched() {
        let mut g = [1.0f32, f32::NAN, 2.0];
        assert!(clip_by_global_norm(&mut g, 1.0).is_nan());
        assert_eq!((g[0], g[2]), (1.0, 2.0));

        let mut g = [1.0f32, f32::INFINITY];
        assert_eq!(clip_by_global_norm(&mut g, 1.0), f32::INFINITY);
        assert_eq!(g, [1.0, f32::INFINITY]);

        // Every element finite, the f64 norm finite (≈ 4.7e38) but past f32::MAX (≈ 3.4e38):
        // reported as ∞, and treated like one.
        let mut g = [3.0e38f32, 3.0e38, 2.0e38];
        assert_eq!(clip_by_global_norm(&mut g, 1.0), f32::INFINITY);
        assert_eq!(g, [3.0e38f32, 3.0e38, 2.0e38]);

        // Large but representable: squares overflow f32 yet the f64 sum does not, so this clips.
        let mut g = [1.0e30f32, 1.0e30];
        let norm = clip_by_global_norm(&mut g, 1.0);
        assert!((f64::from(norm) / (2f64.sqrt() * 1e30) - 1.0).abs() < 1e-6);
        let scaled = g.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        assert!((scaled - 1.0).abs() < 1e-6, "{scaled}");
    }

    #[test]
    fn apply_clamps_values_before_measuring_the_norm() {
        // value 1: [3, -4, 0.5] → [1, -1, 0.5]; norm sqrt(2.25) = 1.5 > 1 → scaled by 1/1.500001.
        let spec = ClipSpec {
            norm: Some(1.0),
            value: Some(1.0),
        };
        let mut g = [3.0f32, -4.0, 0.5];
        assert_eq!(apply(&spec, &mut g), Some(1.5));
        let coef = (1.0 / (1.5 + 1e-6)) as f32;
        assert_eq!(g, [coef, -coef, 0.5 * coef]);

        let none = ClipSpec {
            norm: None,
            value: None,
        };
        let mut g = [3.0f32, -4.0];
        assert_eq!(apply(&none, &mut g), None);
        assert_eq!(g, [3.0, -4.0]);
    }
}
