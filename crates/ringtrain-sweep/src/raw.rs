//! The raw serde form of a sweep file, exactly as written in TOML. Unknown keys are rejected
//! here; enumerated values are kept as strings and numbers as TOML values, so that validation can
//! name the field path, the bad value and what is allowed.

use serde::{Deserialize, Serialize};

/// Top level of a sweep document.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSweep {
    /// `name`: the sweep's name; trial jobs are named `<name>-t<index>`.
    pub name: Option<String>,
    /// `base`: path of the base job spec, relative to the sweep file.
    pub base: Option<String>,
    /// `[job]`: the base job spec inline (instead of `base`).
    pub job: Option<toml::Table>,
    /// `seed`: seed of every suggestion.
    pub seed: Option<u64>,
    /// `algorithm`: grid | random | tpe.
    pub algorithm: Option<String>,
    /// `max_concurrent`: trials running at once.
    pub max_concurrent: Option<i64>,
    /// `[objective]`
    pub objective: Option<RawObjective>,
    /// `[budget]`
    pub budget: Option<RawBudget>,
    /// `[[param]]`: the search space, one entry per job spec field.
    #[serde(default)]
    pub param: Vec<RawParam>,
    /// `[pruner]`: early stopping of trials.
    pub pruner: Option<RawPruner>,
}

/// `[objective]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjective {
    /// `objective.metric`: a validation metric the base job's task reports every epoch.
    pub metric: Option<String>,
    /// `objective.direction`: min | max (default: the metric's own direction).
    pub direction: Option<String>,
}

/// `[budget]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// `budget.trials`: trials started at most.
    pub trials: Option<i64>,
    /// `budget.wall_time_s`: no trial starts after this many seconds since submission.
    pub wall_time_s: Option<i64>,
}

/// One `[[param]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    /// `param[i].path`: dotted job spec field path, e.g. `train.optimizer.lr`.
    pub path: Option<String>,
    /// `param[i].kind`: uniform | log_uniform | int | choice | grid.
    pub kind: Option<String>,
    /// `param[i].low` (uniform, log_uniform, int).
    pub low: Option<toml::Value>,
    /// `param[i].high` (uniform, log_uniform, int).
    pub high: Option<toml::Value>,
    /// `param[i].log` (int: sample on a log scale).
    pub log: Option<bool>,
    /// `param[i].values` (choice, grid).
    pub values: Option<Vec<toml::Value>>,
}

/// `[pruner]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPruner {
    /// `pruner.kind`: asha | median | none.
    pub kind: Option<String>,
    /// `pruner.grace_epochs` (asha): epochs every trial runs before its first rung.
    pub grace_epochs: Option<i64>,
    /// `pruner.reduction_factor` (asha): one trial in this many is promoted at each rung.
    pub reduction_factor: Option<i64>,
    /// `pruner.max_epochs` (asha): the most epochs a trial runs (the top of the rungs).
    pub max_epochs: Option<i64>,
    /// `pruner.startup_trials` (median): finished trials before anything is pruned.
    pub startup_trials: Option<i64>,
    /// `pruner.warmup_epochs` (median): epochs of a trial never pruned.
    pub warmup_epochs: Option<i64>,
}
