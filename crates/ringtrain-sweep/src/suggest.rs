//! The next point of a sweep as a pure function of (sweep spec, trial index, finished trials in
//! completion order, pending trials). Nothing else enters — no clock, no global RNG, no state
//! carried between calls — so a coordinator restarted from its store, or a replay of a sweep,
//! suggests exactly the same points.

use crate::sample::{random_point, trial_rng};
use crate::tpe::{self, Observation, Rank};
use crate::types::{Algorithm, Direction, Distribution, Point, SweepSpec};

/// How a finished trial ended, as the algorithms see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Ran to the end; the objective's final value.
    Complete(f64),
    /// Stopped by the pruner after `epochs` epochs, with the objective's value there.
    Pruned {
        /// Epochs completed.
        epochs: u32,
        /// Objective at the last epoch.
        value: f64,
    },
    /// Failed or was cancelled: no value (TPE ignores it, like Optuna does failed trials).
    Failed,
}

/// A finished trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Trial index.
    pub index: u64,
    /// Its parameters.
    pub point: Point,
    /// How it ended.
    pub outcome: Outcome,
}

/// A trial suggested and not finished yet (queued or running).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Trial index.
    pub index: u64,
    /// Its parameters.
    pub point: Point,
}

/// What the algorithm may know when it suggests a trial.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// Finished trials, in the order they finished.
    pub finished: &'a [Finished],
    /// Trials suggested before and not finished.
    pub pending: &'a [Pending],
}

/// The number of points of the sweep's grid (`None` unless the algorithm is grid search).
pub fn grid_size(spec: &SweepSpec) -> Option<u64> {
    if spec.algorithm != Algorithm::Grid {
        return None;
    }
    spec.params.iter().try_fold(1u64, |acc, p| {
        p.dist.grid_len().and_then(|n| acc.checked_mul(n))
    })
}

/// The `index`-th grid point: mixed-radix digits of `index`, the last parameter varying fastest.
fn grid_point(spec: &SweepSpec, index: u64) -> Option<Point> {
    let total = grid_size(spec)?;
    if index >= total {
        return None;
    }
    let mut rest = index;
    let mut values = vec![];
    for p in spec.params.iter().rev() {
        let n = p.dist.grid_len()?;
        values.push(p.dist.grid_value(rest % n));
        rest /= n;
    }
    values.reverse();
    Some(Point(values))
}

/// The point of trial `index` (0-based): for grid search the `index`-th grid point (`None` past
/// the grid's end); for random search an independent draw from trial `index`'s stream; for TPE
/// the estimator's choice given `history` (a random draw during its start-up trials).
pub fn suggest(spec: &SweepSpec, index: u64, history: History<'_>) -> Option<Point> {
    let dists: Vec<&Distribution> = spec.params.iter().map(|p| &p.dist).collect();
    let mut rng = trial_rng(spec.seed, index);
    match spec.algorithm {
        Algorithm::Grid => grid_point(spec, index),
        Algorithm::Random => Some(random_point(&dists, &mut rng)),
        Algorithm::Tpe => {
            let obs = observations(spec.objective.direction, history);
            // The start-up draw and the TPE draw use the same stream from its start, so the
            // first trials of a TPE sweep are those of a random sweep with the same seed.
            let mut tpe_rng = rng.clone();
            tpe::suggest(&dists, &obs, &mut tpe_rng)
                .or_else(|| Some(random_point(&dists, &mut rng)))
        }
    }
}

fn observations(direction: Direction, history: History<'_>) -> Vec<Observation<'_>> {
    let finished = history.finished.iter().filter_map(|f| {
        let rank = match f.outcome {
            Outcome::Complete(v) => Rank::Complete(direction.loss(v)),
            Outcome::Pruned { epochs, value } => Rank::Pruned {
                epochs,
                loss: direction.loss(value),
            },
            Outcome::Failed => return None,
        };
        Some(Observation {
            index: f.index,
            point: &f.point,
            rank,
        })
    });
    let pending = history.pending.iter().map(|p| Observation {
        index: p.index,
        point: &p.point,
        rank: Rank::Running,
    });
    finished.chain(pending).collect()
}
