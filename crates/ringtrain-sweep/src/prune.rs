//! Early stopping of trials as pure decisions over reported per-epoch objective values.
//!
//! ASHA follows Optuna's `SuccessiveHalvingPruner` (asynchronous successive halving, Li et al.
//! 2020): rung `k` is reached after `grace · rf^k` epochs (rungs below `max_epochs`); a trial at
//! a rung competes with every value recorded at that rung so far, its own included, and
//! continues only if it is within the best `⌊n / rf⌋` (the best one while fewer than `rf` have
//! reached the rung). The median rule follows Optuna's `MedianPruner`: after `startup_trials`
//! completed trials and past `warmup_epochs`, a trial whose best value so far is worse than the
//! median of the completed trials' values at the same epoch is stopped.
//!
//! The coordinator asks once per epoch of a trial (rank 0 asks; every rank gets the verdict
//! through the trial's group, so all stop after the same step).

use crate::types::{Direction, Pruner};

/// Whether a trial goes on after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep training.
    Continue,
    /// Stop now: the trial is pruned at this epoch.
    Prune,
}

/// Another trial's objective values, one per completed epoch (index 0 = after epoch 1).
#[derive(Debug, Clone, Copy)]
pub struct Curve<'a> {
    /// Values after each epoch so far.
    pub values: &'a [f64],
    /// Whether that trial ran to completion (the median rule compares with completed trials
    /// only).
    pub complete: bool,
}

/// The epochs (1-based counts) after which ASHA decides: `grace · rf^k` below `max_epochs`.
pub fn asha_rungs(grace_epochs: u32, reduction_factor: u32, max_epochs: u32) -> Vec<u32> {
    let mut rungs = vec![];
    let mut e = u64::from(grace_epochs.max(1));
    while e < u64::from(max_epochs) {
        rungs.push(e as u32);
        e *= u64::from(reduction_factor.max(2));
    }
    rungs
}

/// The verdict for a trial whose values so far are `values` (its last entry is the epoch just
/// finished, `values.len()` epochs in all), against the other trials' `others` as currently
/// known. A non-finite value of the trial is pruned (a diverged trial wastes its workers).
pub fn decide(
    pruner: &Pruner,
    direction: Direction,
    values: &[f64],
    others: &[Curve<'_>],
) -> Verdict {
    let Some(&last) = values.last() else {
        return Verdict::Continue;
    };
    let epoch = values.len() as u32;
    match *pruner {
        Pruner::Asha {
            grace_epochs,
            reduction_factor,
            max_epochs,
        } => {
            if !asha_rungs(grace_epochs, reduction_factor, max_epochs).contains(&epoch) {
                return Verdict::Continue;
            }
            if !last.is_finite() {
                return Verdict::Prune;
            }
            let at = epoch as usize - 1;
            let mut competing: Vec<f64> = others
                .iter()
                .filter_map(|c| c.values.get(at).copied())
                .filter(|v| v.is_finite())
                .map(|v| direction.loss(v))
                .collect();
            competing.push(direction.loss(last));
            competing.sort_by(f64::total_cmp);
            let keep = (competing.len() / reduction_factor.max(2) as usize).max(1);
            if direction.loss(last) <= competing[keep - 1] {
                Verdict::Continue
            } else {
                Verdict::Prune
            }
        }
        Pruner::Median {
            startup_trials,
            warmup_epochs,
        } => {
            let completed = others.iter().filter(|c| c.complete).count();
            if completed < startup_trials as usize || epoch <= warmup_epochs {
                return Verdict::Continue;
            }
            let best = values
                .iter()
                .map(|v| direction.loss(*v))
                .fold(f64::NAN, f64::min);
            if !best.is_finite() {
                return Verdict::Prune;
            }
            let at = epoch as usize - 1;
            let mut theirs: Vec<f64> = others
                .iter()
                .filter(|c| c.complete)
                .filter_map(|c| c.values.get(at).copied())
                .filter(|v| v.is_finite())
                .map(|v| direction.loss(v))
                .collect();
            if theirs.is_empty() {
                return Verdict::Continue;
            }
            theirs.sort_by(f64::total_cmp);
            let m = theirs.len();
            let median = if m % 2 == 1 {
                theirs[m / 2]
            } else {
                0.5 * (theirs[m / 2 - 1] + theirs[m / 2])
            };
            if best > median {
                Verdict::Prune
            } else {
                Verdict::Continue
            }
        }
    }
}
