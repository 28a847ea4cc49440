//! Hyperparameter sweeps, owned by the coordinator. A sweep's search logic is the pure
//! `ringtrain_sweep` crate; this module is its shell: the in-memory [`Book`] of sweeps and
//! trials, its SQLite rows ([`store`], written in the same transaction as the jobs the driver
//! submits), the [`driver`] that turns the book and the machine's jobs into new trials and
//! finished ones; the gRPC `SweepService` and the commit path are in the `sweep_service` module
//! (above the shared state, which holds the book: this module imports neither).
//!
//! Every trial is an ordinary job (named `<sweep>-t<index>`, owned by the sweep's owner), so
//! scheduling, restarts from checkpoints and the coordinator's own restart work for trials as
//! for any job. After a restart the book is read back from the store: finished trials keep their
//! outcome (never rerun), trials whose jobs are queued or running follow their jobs, and the
//! budget counts every trial ever started.

pub(crate) mod driver;
pub(crate) mod store;

use crate::store::StoreError;
use ringtrain_core::JobId;
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_sweep::{Point, SweepSpec};
use std::collections::BTreeMap;
use tonic::Status;

/// Life cycle of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SweepState {
    /// Starting and watching trials.
    Running,
    /// Budget spent and every trial finished.
    Succeeded,
    /// Cancelled by a client.
    Cancelled,
}

impl SweepState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Succeeded => "succeeded",
            SweepState::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<SweepState> {
        [
            SweepState::Running,
            SweepState::Succeeded,
            SweepState::Cancelled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Life cycle of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TrialState {
    /// Its job is queued.
    Queued,
    /// Its job is starting or running.
    Running,
    /// Its job succeeded.
    Complete,
    /// Stopped by the pruner.
    Pruned,
    /// Its job failed, or its point gave no valid job.
    Failed,
    /// Its job was cancelled.
    Cancelled,
}

impl TrialState {
    pub(crate) const ALL: [TrialState; 6] = [
        TrialState::Queued,
        TrialState::Running,
        TrialState::Complete,
        TrialState::Pruned,
        TrialState::Failed,
        TrialState::Cancelled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TrialState::Queued => "queued",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<TrialState> {
        TrialState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Queued or running: counts against `max_concurrent`.
    pub(crate) fn is_active(self) -> bool {
        matches!(self, TrialState::Queued | TrialState::Running)
    }
}

/// One trial of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trial {
    /// 0-based index.
    pub(crate) index: u64,
    /// Its parameters.
    pub(crate) point: Point,
    /// Its job (None when its point gave no valid job spec).
    pub(crate) job: Option<JobId>,
    pub(crate) state: TrialState,
    /// Objective (complete: final; pruned: at the last epoch).
    pub(crate) value: Option<f64>,
    /// Why it failed or was pruned.
    pub(crate) reason: String,
    /// Objective after each epoch reported so far.
    pub(crate) curve: Vec<f64>,
    /// Position in the sweep's completion order (None while active).
    pub(crate) finished_seq: Option<u64>,
    /// The pruner decided to stop it (its job is being cancelled for that reason).
    pub(crate) pruned_at: Option<u32>,
    /// Newest job log line read for epoch values (in memory: after a restart the log is read
    /// again from the start, and epochs already in `curve` are skipped).
    pub(crate) log_seq: u64,
    /// Epochs of `curve` the pruner has judged (epochs read back after a restart are not
    /// judged again: their verdict was continue, or the trial would be pruned).
    pub(crate) judged: usize,
}

/// One sweep.
#[derive(Debug, Clone)]
pub(crate) struct Sweep {
    /// Sequence number behind the id.
    pub(crate) num: u64,
    /// `sweep-N`.
    pub(crate) id: String,
    /// Submitting user (empty without client tokens).
    pub(crate) owner: String,
    /// The sweep spec as stored (TOML, base job inline).
    pub(crate) text: String,
    /// Parsed `text`.
    pub(crate) spec: SweepSpec,
    /// Absolute directory the trials' relative paths resolve against.
    pub(crate) base_dir: String,
    pub(crate) state: SweepState,
    pub(crate) reason: String,
    pub(crate) submitted_ms: i64,
    pub(crate) finished_ms: i64,
    /// Every trial, by index.
    pub(crate) trials: Vec<Trial>,
}

impl Sweep {
    /// The best trial with a value (complete trials first; pruned ones only when none completed),
    /// by the objective's direction.
    pub(crate) fn best(&self) -> Option<&Trial> {
        let dir = self.spec.objective.direction;
        let pick = |state: TrialState| {
            self.trials
                .iter()
                .filter(|t| t.state == state)
                .filter(|t| t.value.is_some_and(f64::is_finite))
                .fold(None::<&Trial>, |best, t| match best {
                    Some(b)
                        if !dir
                            .better(t.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN)) =>
                    {
                        Some(b)
                    }
                    _ => Some(t),
                })
        };
        pick(TrialState::Complete).or_else(|| pick(TrialState::Pruned))
    }

    /// Next position in the completion order.
    pub(crate) fn next_finished_seq(&self) -> u64 {
        self.trials
            .iter()
            .filter_map(|t| t.finished_seq)
            .max()
            .map_or(0, |s| s + 1)
    }
}

/// A row the next commit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Write {
    /// The sweep's row.
    Sweep(u64),
    /// One trial's row (with its curve).
    Trial(u64, u64),
}

/// Every sweep, in memory; the store has the committed copy.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) sweeps: BTreeMap<u64, Sweep>,
    pub(crate) next: u64,
    /// Rows changed since the last commit.
    pub(crate) writes: Vec<Write>,
}

impl Book {
    pub(crate) fn by_id(&self, id: &str) -> Option<&Sweep> {
        let num = id.strip_prefix("sweep-")?.parse::<u64>().ok()?;
        self.sweeps.get(&num)
    }

    pub(crate) fn num_of(&self, id: &str) -> Result<u64, Status> {
        self.by_id(id).map(|s| s.num).ok_or_else(|| {
            to_status(
                ErrorKind::NotFound,
                format!("unknown sweep {}", ringtrain_spec::error::snippet(id)),
            )
        })
    }

    /// Trials by state over every sweep (the Prometheus gauge).
    pub(crate) fn trial_counts(&self) -> BTreeMap<TrialState, usize> {
        let mut out: BTreeMap<TrialState, usize> =
            TrialState::ALL.iter().map(|s| (*s, 0)).collect();
        for t in self.sweeps.values().flat_map(|s| &s.trials) {
            *out.entry(t.state).or_default() += 1;
        }
        out
    }
}

/// Reads the book back from the store (start-up and after a failed commit).
pub(crate) fn load(core_store: &crate::store::Store) -> Result<Book, StoreError> {
    store::load(core_store)
}
