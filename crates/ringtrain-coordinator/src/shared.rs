//! The state every service shares: the machine and its store behind one lock, and
//! `Shared::apply`, the one path by which an event reaches the machine: the event runs under the
//! lock, its effects are committed to SQLite in one transaction, and only then are workers woken,
//! watchers told and the RPC answered. Its own module (not the server's) so the services, the
//! rendezvous guard and start-up all build on it without importing each other.

use crate::auth::Auth;
use crate::clock::now_ms;
use crate::config::CoordinatorConfig;
use crate::convert;
use crate::machine::{Effect, JobChange, JobState, Machine, MachineError};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::StoreError;
use ringtrain_core::{JobId, WorkerId};
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::v1::JobEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast, watch};
use tonic::Status;

/// Mutable state behind one lock.
pub(crate) struct Core {
    /// The state machine.
    pub(crate) machine: Machine,
    /// Its durable copy.
    pub(crate) store: Store,
    /// Per worker: wakes its held heartbeat.
    pub(crate) wakers: HashMap<WorkerId, Arc<Notify>>,
    /// Per watched job: the event channel.
    pub(crate) watchers: HashMap<JobId, broadcast::Sender<JobEvent>>,
    /// The machine may hold effects of an event whose commit failed: it must be rebuilt from
    /// the store before anything reads it or feeds it another event.
    pub(crate) stale: bool,
    /// Hyperparameter sweeps and their trials (written with the machine's effects).
    pub(crate) sweeps: crate::sweep::Book,
}

impl Core {
    /// Replaces a stale machine by one restored from the store, exactly as at a coordinator
    /// start ([`Machine::restore`]): the machine then holds only committed state. Every held
    /// heartbeat is woken, so workers re-read their (possibly withdrawn) commands at once.
    ///
    /// # Errors
    /// UNAVAILABLE when the store cannot be read or the restore's own effects cannot be
    /// committed; the core stays stale and the next call tries again.
    pub(crate) fn ensure_restored(&mut self) -> Result<(), Status> {
        if !self.stale {
            return Ok(());
        }
        let unavailable = |e: StoreError| {
            to_status(
                ErrorKind::Unavailable,
                format!("coordinator cannot restore its state: {e}"),
            )
        };
        let loaded = self.store.load().map_err(unavailable)?;
        let sweeps = crate::sweep::load(&self.store).map_err(unavailable)?;
        let mut machine = Machine::restore(
            self.machine.config(),
            loaded.jobs,
            loaded.workers,
            0,
            0,
            now_ms(),
        );
        machine.carry_undelivered_starts(&self.machine);
        let effects = machine.drain_effects();
        self.store.apply(&machine, &effects).map_err(unavailable)?;
        self.machine = machine;
        self.sweeps = sweeps;
        self.stale = false;
        for waker in self.wakers.values() {
            waker.notify_one();
        }
        tracing::warn!("coordinator state restored from the state database after a failed write");
        Ok(())
    }
}

/// Capacity of a job's watch channel; a slower watcher lags and catches up from the job itself.
const WATCH_CAPACITY: usize = 256;

/// Everything the services share.
pub(crate) struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) config: CoordinatorConfig,
    pub(crate) metrics: Metrics,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Credential checks of every service.
    pub(crate) auth: Auth,
}

impl Shared {
    /// The locked core (a poisoned lock is taken over: the machine's invariants hold between
    /// events, and every event completes or returns before a panic could interrupt it).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one event on the machine, commits its effects, then wakes workers, tells watchers
    /// and updates the metrics. The RPC may be acknowledged once this returns Ok.
    ///
    /// # Errors
    /// The event's own refusal as a status, or UNAVAILABLE when the state database write
    /// failed (the RPC is then not acknowledged).
    pub(crate) fn apply<T>(
        &self,
        event: impl FnOnce(&mut Machine, i64) -> Result<T, MachineError>,
    ) -> Result<T, Status> {
        let mut core = self.lock();
        let core = &mut *core;
        core.ensure_restored()?;
        let out = event(&mut core.machine, now_ms());
        let effects = core.machine.drain_effects();
        if let Err(e) = core.store.apply(&core.machine, &effects) {
            tracing::error!(error = %e, "state database write failed; the request is not acknowledged");
            // The event changed the machine but not the store: throw the machine away and
            // rebuild it from what is committed (the restart path), so nothing of the refused
            // event can be read, scheduled or written later.
            core.stale = true;
            if let Err(again) = core.ensure_restored() {
                tracing::error!(error = %again.message(), "state not restored yet; every call is refused until it is");
            } else {
                self.metrics.observe(&core.machine);
            }
            return Err(to_status(
                ErrorKind::Unavailable,
                format!("coordinator cannot write its state: {e}"),
            ));
        }
        self.after_commit(core, &effects);
        out.map_err(|e| machine_status(&e))
    }

    /// What follows a committed event: wake workers, tell watchers, log, update the metrics.
    pub(crate) fn after_commit(&self, core: &mut Core, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::Wake(worker) => {
                    core.wakers
                        .entry(worker.clone())
                        .or_insert_with(|| Arc::new(Notify::new()))
                        .notify_one();
                }
                Effect::Transition { job, from, change } => {
                    tracing::info!(job = %job, state = %change.state, reason = %change.reason, "job state");
                    if *from == Some(JobState::Queued)
                        && change.state == JobState::Starting
                        && let Some(j) = core.machine.job(job)
                    {
                        self.metrics
                            .queue_wait((change.at_ms - j.submitted_ms) as f64 / 1000.0);
                    }
                }
                Effect::Log { job, line } => {
                    tracing::info!(job = %job, rank = line.rank, seq = line.seq, "{}", line.message);
                }
                Effect::Publish { job, change, log } => {
                    publish(core, job, *change, log.as_ref());
                }
                Effect::SaveJob(_) | Effect::SaveWorker(_) => {}
            }
        }
        self.metrics.observe(&core.machine);
    }

    /// The locked core for a read, once its machine holds only committed state (see
    /// [`Core::ensure_restored`]).
    ///
    /// # Errors
    /// UNAVAILABLE while the machine cannot be restored from the state database.
    pub(crate) fn read(&self) -> Result<MutexGuard<'_, Core>, Status> {
        let mut core = self.lock();
        if core.stale {
            core.ensure_restored()?;
            self.metrics.observe(&core.machine);
        }
        Ok(core)
    }

    /// The notifier that wakes this worker's held heartbeat.
    pub(crate) fn waker(&self, worker: &WorkerId) -> Arc<Notify> {
        self.lock()
            .wakers
            .entry(worker.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Subscribes to a job's events; returns the snapshot taken under the same lock (so no event
    /// falls between them), or None when the job is final (nothing more will happen).
    pub(crate) fn subscribe(
        &self,
        job: &JobId,
    ) -> Result<
        (
            ringtrain_proto::v1::Job,
            Option<broadcast::Receiver<JobEvent>>,
        ),
        Status,
    > {
        let mut core = self.read()?;
        let snapshot = core
            .machine
            .job(job)
            .ok_or_else(|| machine_status(&MachineError::UnknownJob(job.clone())))?;
        let proto = convert::job_to_proto(snapshot, true);
        if snapshot.state.is_final() {
            return Ok((proto, None));
        }
        let rx = core
            .watchers
            .entry(job.clone())
            .or_insert_with(|| broadcast::channel(WATCH_CAPACITY).0)
            .subscribe();
        Ok((proto, Some(rx)))
    }
}

/// Sends a job event to its watchers, if any; drops the channel after the final state.
fn publish(
    core: &mut Core,
    job: &JobId,
    change: JobChange,
    log: Option<&crate::machine::LogEntry>,
) {
    let Some(tx) = core.watchers.get(job) else {
        return;
    };
    let Some(j) = core.machine.job(job) else {
        return;
    };
    let final_state = j.state.is_final();
    if tx.receiver_count() > 0 {
        use ringtrain_proto::v1::job_event::Kind;
        let kind = match (change, log) {
            (JobChange::State, _) => Kind::State,
            (JobChange::Progress, Some(_)) => Kind::Log,
            (JobChange::Progress, None) => Kind::Progress,
        };
        let _ = tx.send(JobEvent {
            kind: kind as i32,
            job: Some(convert::job_to_proto(j, false)),
            log: log.map(convert::log_to_proto),
        });
    }
    // The final state is the last event a watcher gets: the channel goes with it (receivers
    // drain what is buffered, then see it closed), so later log lines of the same event are not
    // sent.
    if final_state && change == JobChange::State {
        core.watchers.remove(job);
    }
}

/// The status for a refused event.
pub(crate) fn machine_status(e: &MachineError) -> Status {
    let kind = match e {
        MachineError::UnknownJob(_)
        | MachineError::UnknownWorker(_)
        | MachineError::WorkerLost { .. } => ErrorKind::NotFound,
        MachineError::JobFinished { .. } | MachineError::NotAssigned { .. } => {
            ErrorKind::FailedPrecondition
        }
    };
    to_status(kind, e.to_string())
}
