//! The validated sweep: what [`crate::validate()`] produces and the rest of the crate (and the
//! coordinator's driver) uses. A point of the search space is a [`Point`]: one [`ParamValue`] per
//! parameter, in the order of the sweep's `[[param]]` list.

use ringtrain_spec::MonitorMetric;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A validated sweep spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// Sweep name (letters, digits, `-`, `_`, `.`); trial jobs are named `<name>-t<index>`.
    pub name: String,
    /// The base job spec as a TOML table, onto which each point's values are written.
    pub base: toml::Table,
    /// Directory the base job spec's relative paths are relative to (the base file's directory,
    /// or the sweep file's for an inline `[job]`); `None` for a sweep read from text.
    pub base_dir: Option<PathBuf>,
    /// Seed of every suggestion (default 0).
    pub seed: u64,
    /// Search algorithm.
    pub algorithm: Algorithm,
    /// Trials running at once (≥ 1, default 1).
    pub max_concurrent: u32,
    /// What is optimized.
    pub objective: Objective,
    /// When the sweep stops starting trials.
    pub budget: Budget,
    /// The search space, in `[[param]]` order.
    pub params: Vec<Param>,
    /// Early stopping of trials, if any.
    pub pruner: Option<Pruner>,
}

/// Search algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Every combination of the parameters' values, in order (the last parameter varies
    /// fastest).
    Grid,
    /// Independent draws from each parameter's distribution.
    Random,
    /// Tree-structured Parzen estimator (Optuna's defaults; see [`crate::tpe`]).
    Tpe,
}

impl Algorithm {
    /// Every algorithm, in the order messages list them.
    pub const ALL: [Algorithm; 3] = [Algorithm::Grid, Algorithm::Random, Algorithm::Tpe];

    /// The name `algorithm` spells.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Grid => "grid",
            Algorithm::Random => "random",
            Algorithm::Tpe => "tpe",
        }
    }
}

/// Whether the objective is minimized or maximized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Smaller is better.
    Min,
    /// Larger is better.
    Max,
}

impl Direction {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Min => a < b,
            Direction::Max => a > b,
        }
    }

    /// `value` turned into a loss (smaller is better), which is how the algorithms rank trials.
    pub fn loss(self, value: f64) -> f64 {
        match self {
            Direction::Min => value,
            Direction::Max => -value,
        }
    }
}

/// The objective: a per-epoch validation metric of the trials and its direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// A metric the base job's task reports after every epoch.
    pub metric: MonitorMetric,
    /// Min or max (default: the metric's own direction).
    pub direction: Direction,
}

/// When the sweep stops starting trials; at least one limit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Trials started at most (for grid search at most the grid's size; default the grid's size).
    pub trials: Option<u32>,
    /// No trial starts more than this many seconds after submission.
    pub wall_time_s: Option<u64>,
}

/// One searched field of the job spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Dotted job spec field path (`train.optimizer.lr`, `model.conv[0].channels`).
    pub path: String,
    /// Its values.
    pub dist: Distribution,
}

/// The values a parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Real numbers in `[low, high]`, uniform.
    Uniform {
        /// Lowest value.
        low: f64,
        /// Highest value (> low).
        high: f64,
    },
    /// Real numbers in `[low, high]`, uniform in the logarithm (low > 0).
    LogUniform {
        /// Lowest value (> 0).
        low: f64,
        /// Highest value (> low).
        high: f64,
    },
    /// Integers in `[low, high]`, uniform or (with `log`) uniform in the logarithm.
    Int {
        /// Lowest value.
        low: i64,
        /// Highest value (≥ low).
        high: i64,
        /// Sample on a log scale (low ≥ 1).
        log: bool,
    },
    /// One of a list of TOML values (`choice` and `grid` both read as this: for search they are
    /// the same thing, unordered categories).
    Choice(Vec<toml::Value>),
}

impl Distribution {
    /// The finite values grid search enumerates, or `None` for a continuous distribution.
    pub fn grid_len(&self) -> Option<u64> {
        match self {
            Distribution::Uniform { .. } | Distribution::LogUniform { .. } => None,
            Distribution::Int { low, high, .. } => Some((*high - *low) as u64 + 1),
            Distribution::Choice(values) => Some(values.len() as u64),
        }
    }

    /// The `i`-th grid value (`i < grid_len`).
    pub fn grid_value(&self, i: u64) -> ParamValue {
        match self {
            Distribution::Int { low, .. } => ParamValue::Int(low + i as i64),
            Distribution::Choice(_) => ParamValue::Choice(i as usize),
            // Validation refuses grid search over continuous parameters.
            Distribution::Uniform { low, .. } | Distribution::LogUniform { low, .. } => {
                ParamValue::Float(*low)
            }
        }
    }

    /// The extreme values checked at submission: both ends of a range, every choice.
    pub fn corners(&self) -> Vec<ParamValue> {
        match self {
            Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                vec![ParamValue::Float(*low), ParamValue::Float(*high)]
            }
            Distribution::Int { low, high, .. } => {
                vec![ParamValue::Int(*low), ParamValue::Int(*high)]
            }
            Distribution::Choice(values) => (0..values.len()).map(ParamValue::Choice).collect(),
        }
    }

    /// The TOML value written into the job spec for `value`.
    pub fn to_toml(&self, value: &ParamValue) -> toml::Value {
        match (self, value) {
            (Distribution::Choice(values), ParamValue::Choice(i)) => values[*i].clone(),
            (_, ParamValue::Int(v)) => toml::Value::Integer(*v),
            (_, ParamValue::Float(v)) => toml::Value::Float(*v),
            (_, ParamValue::Choice(i)) => toml::Value::Integer(*i as i64),
        }
    }
}

/// One parameter's value in a [`Point`]: a real, an integer, or the index of a choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValue {
    /// A real value (uniform, log_uniform).
    Float(f64),
    /// An integer value (int).
    Int(i64),
    /// Index into the parameter's `values` (choice, grid).
    Choice(usize),
}

/// A point of the search space: one value per parameter, in `[[param]]` order. Stored by the
/// coordinator as JSON (`serde`), so a restarted sweep reads back exactly what was suggested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Point(pub Vec<ParamValue>);

/// A [`Point`] shown as `path = value` pairs (what the CLI prints and errors name).
pub struct PointDisplay<'a> {
    /// The sweep's parameters.
    pub params: &'a [Param],
    /// The point.
    pub point: &'a Point,
}

impl fmt::Display for PointDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (p, v)) in self.params.iter().zip(&self.point.0).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} = {}", p.path, p.dist.to_toml(v))?;
        }
        f.write_str("}")
    }
}

/// Early stopping of trials from their per-epoch objective values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruner {
    /// Asynchronous successive halving: rungs after `grace_epochs · reduction_factor^k` epochs
    /// (below `max_epochs`); a trial reaching a rung continues only if its value is in the best
    /// `1 / reduction_factor` of the values recorded at that rung (see [`crate::prune`]).
    Asha {
        /// Epochs before the first rung (≥ 1).
        grace_epochs: u32,
        /// Promotion ratio (≥ 2).
        reduction_factor: u32,
        /// The largest resource: no rung at or above it (≥ grace_epochs).
        max_epochs: u32,
    },
    /// Prune a trial whose best value so far is worse than the median of the finished trials'
    /// values at the same epoch.
    Median {
        /// Finished trials required before anything is pruned (default 5).
        startup_trials: u32,
        /// Epochs at the start of a trial that are never pruned (default 0).
        warmup_epochs: u32,
    },
}
