//! Learning-rate schedules as a pure function of the optimizer step: a linear warm-up followed by
//! a constant, step-decay or cosine shape. Being stateless, the schedule needs nothing in a
//! checkpoint beyond the step count, and every rank computes the same rate without talking.

use ringtrain_spec::types::{ScheduleKind, ScheduleSpec};

/// The learning rate of optimizer step `step` (0 = the first step) in a run of `total_steps`.
///
/// - Warm-up: for `step < w` (`w = spec.warmup_steps`) the rate is `base_lr * (step + 1) / w`,
///   rising linearly from `base_lr / w` and reaching `base_lr` on the last warm-up step.
/// - After warm-up, with `k = step - w`:
///   - `Constant`: `base_lr`;
///   - `Step { step_size, gamma }`: `base_lr * gamma^floor(k / step_size)`;
///   - `Cosine { min_lr }`: `min_lr + (base_lr - min_lr) * (1 + cos(π k / T)) / 2` over the
///     `T = total_steps - w` remaining steps, so `base_lr` at `k = 0`; `min_lr` from `k = T` on
///     (also when `total_steps <= w`).
///
/// Inputs are trusted to be validated (`step_size ≥ 1`); a zero `step_size` is read as 1
/// rather than dividing by zero.
pub fn lr_at(spec: &ScheduleSpec, base_lr: f64, step: u64, total_steps: u64) -> f64 {
    let w = spec.warmup_steps;
    if step < w {
        return base_lr * (step + 1) as f64 / w as f64;
    }
    let k = step - w;
    match spec.kind {
        ScheduleKind::Constant => base_lr,
        ScheduleKind::Step { step_size, gamma } => {
            let decays = k / step_size.max(1);
            // Decays past i32::MAX have long underflowed to 0 (or stay 1 for gamma = 1).
            base_lr * gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
        }
        ScheduleKind::Cosine { min_lr } => {
            let span = total_steps.saturating_sub(w);
            if k >= span {
                return min_lr;
            }
            let progress = k as f64 / span as f64;
            min_lr + (base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ScheduleKind, warmup_steps: u64) -> ScheduleSpec {
        ScheduleSpec { kind, warmup_steps }
    }

    fn check(spec: &ScheduleSpec, total: u64, expect: &[(u64, f64)]) {
        for &(step, want) in expect {
            let got = lr_at(spec, 0.1, step, total);
            assert!(
                (got - want).abs() < 1e-12,
                "{spec:?} step {step}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn constant_without_warmup_is_base_from_step_zero() {
        check(
            &spec(ScheduleKind::Constant, 0),
            10,
            &[(0, 0.1), (9, 0.1), (1000, 0.1)],
        );
    }

    #[test]
    fn warmup_rises_linearly_and_reaches_base_on_its_last_step() {
        // w = 4, base 0.1: steps 0..3 → 0.1 * 1/4, 2/4, 3/4, 4/4; step 4 starts the shape.
        let s = spec(ScheduleKind::Constant, 4);
        check(
            &s,
            10,
            &[
                (0, 0.025),
                (1, 0.05),
                (2, 0.075),
                (3, 0.1),
                (4, 0.1),
                (9, 0.1),
            ],
        );
    }

    #[test]
    fn step_decay_counts_from_the_end_of_warmup() {
        // w = 2, step_size 3, gamma 0.5: k = step - 2; lr = 0.1 * 0.5^floor(k/3).
        // step 2..4 (k 0..2) → 0.1; step 5 (k 3) → 0.05; step 7 (k 5) → 0.05;
        // step 8 (k 6) → 0.025; step 11 (k 9) → 0.0125.
        let s = spec(
            ScheduleKind::Step {
                step_size: 3,
                gamma: 0.5,
            },
            2,
        );
        check(
            &s,
            100,
            &[
                (0, 0.05),
                (1, 0.1),
                (2, 0.1),
                (4, 0.1),
                (5, 0.05),
                (7, 0.05),
                (8, 0.025),
                (11, 0.0125),
            ],
        );
    }

    #[test]
    fn cosine_goes_from_base_to_min_over_the_remaining_steps() {
        // w = 2, total 10 → T = 8, min 0.02: lr = 0.02 + 0.08 (1 + cos(π k / 8)) / 2.
        // k 0 (step 2) → 0.1; k 4 (step 6) → cos(π/2) = 0 → 0.06;
        // k 2 (step 4) → cos(π/4) = 0.7071068 → 0.02 + 0.04 * 1.7071068 = 0.0882843;
        // k 8 (step 10) → min 0.02, and it stays there (step 50).
        let s = spec(ScheduleKind::Cosine { min_lr: 0.02 }, 2);
        let at_pi_4 = 0.02 + 0.04 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        check(
            &s,
            10,
            &[
                (0, 0.05),
                (1, 0.1),
                (2, 0.1),
                (4, at_pi_4),
                (6, 0.06),
                (10, 0.02),
                (50, 0.02),
            ],
        );
        // k 7 (the last step of the run) is still above min: 0.02 + 0.04 (1 + cos(7π/8)).
        let last = 0.02 + 0.04 * (1.0 + (7.0 * std::f64::consts::PI / 8.0).cos());
        check(&s, 10, &[(9, last)]);
        assert!(last > 0.02 && last < 0.0231); // 0.02 + 0.04 (1 - 0.9238795) = 0.0230448
    }

    #[test]
    fn cosine_with_no_steps_after_warmup_is_min() {
        let s = spec(ScheduleKind::Cosine { min_lr: 0.01 }, 5);
        check(&s, 5, &[(4, 0.1), (5, 0.01)]);
        check(&s, 3, &[(5, 0.01)]);
    }

    #[test]
    fn zero_step_size_does_not_divide_by_zero() {
        let s = spec(
            ScheduleKind::Step {
                step_size: 0,
                gamma: 0.5,
            },
            0,
        );
        check(&s, 10, &[(0, 0.1), (1, 0.05), (2, 0.025)]);
    }
}
