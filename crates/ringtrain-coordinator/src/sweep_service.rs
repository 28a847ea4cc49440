//! The gRPC `SweepService` (submit, get, list, cancel, watch), authenticated with the job API's
//! client tokens; `Shared::apply_sweep`, the one path by which a sweep event reaches the book,
//! the machine and the store together; and the driver task that runs a pass over the running
//! sweeps a few times a second. Above `shared` (which holds the book), so no module cycle.

use crate::clock::now_ms;
use crate::clock::stopped;
use crate::config::MAX_SPEC_BYTES;
use crate::limits::{MAX_ID_BYTES, MAX_PATH_BYTES, MAX_REASON_BYTES, check_len};
use crate::shared::Shared;
use crate::sweep::driver::{self, NewSweep};
use crate::sweep::{Book, Sweep, SweepState, TrialState, store};
use ringtrain_core::JobId;
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::sweep_service_server::SweepService;
use ringtrain_sweep::{ParamValue, Point};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// How often the driver looks at the running sweeps (and a watch at its sweep).
const PASS_EVERY: Duration = Duration::from_millis(200);

/// Most sweeps one List answer carries (newest first).
const MAX_LISTED: usize = 1000;

/// The client-facing sweep service.
#[derive(Clone)]
pub(crate) struct SweepApi {
    shared: Arc<Shared>,
}

impl SweepApi {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        SweepApi { shared }
    }

    fn get(&self, id: &str) -> Result<pb::Sweep, Status> {
        check_len("sweep_id", id, MAX_ID_BYTES)?;
        let core = self.shared.read()?;
        let num = core.sweeps.num_of(id)?;
        Ok(to_proto(&core.sweeps.sweeps[&num], true))
    }
}

fn invalid(message: impl Into<String>) -> Status {
    to_status(ErrorKind::InvalidArgument, message)
}

type SweepStream = Pin<Box<dyn Stream<Item = Result<pb::Sweep, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SweepService for SweepApi {
    async fn submit(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let user = self.shared.auth.client(request.metadata())?;
        let req = request.into_inner();
        if req.sweep.len() > MAX_SPEC_BYTES {
            return Err(Status::resource_exhausted(format!(
                "sweep spec is {} bytes; the limit is {MAX_SPEC_BYTES} bytes",
                req.sweep.len()
            )));
        }
        check_len("base_dir", &req.base_dir, MAX_PATH_BYTES)?;
        check_len("origin", &req.origin, MAX_PATH_BYTES)?;
        let base_dir = crate::service::resolve_base_dir(req.base_dir)?;
        let origin = if req.origin.is_empty() {
            "<submitted>".to_string()
        } else {
            req.origin
        };
        let spec = ringtrain_sweep::parse_str(&req.sweep, &origin, "sweep")
            .map_err(|e| invalid(e.to_string()))?;
        // The sandbox of the first corner here (every trial's own spec is checked again when it
        // is submitted, since a searched path may leave the roots at another point).
        let first = Point(
            spec.params
                .iter()
                .map(|p| {
                    p.dist
                        .corners()
                        .first()
                        .copied()
                        .unwrap_or(ParamValue::Int(0))
                })
                .collect(),
        );
        let (_, trial) =
            ringtrain_sweep::trial_spec(&spec, 0, &first).map_err(|e| invalid(e.to_string()))?;
        ringtrain_spec::sandbox::check(&trial, Path::new(&base_dir), &self.shared.config.roots)
            .map_err(|e| invalid(format!("job sandbox: {e}")))?;
        let text = ringtrain_sweep::to_toml(&spec);
        let roots = self.shared.config.roots.clone();
        let name = spec.name.clone();
        let new = NewSweep {
            owner: user.clone().unwrap_or_default(),
            text,
            spec,
            base_dir,
        };
        let id = self.shared.apply_sweep(|m, book, store, now| {
            Ok(driver::submit(book, m, store, now, &roots, new))
        })?;
        tracing::info!(sweep = %id, name = %name, user = user.as_deref().unwrap_or("-"), "sweep submitted");
        Ok(Response::new(self.get(&id)?))
    }

    async fn get(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        self.shared.auth.client(request.metadata())?;
        Ok(Response::new(SweepApi::get(
            self,
            &request.into_inner().sweep_id,
        )?))
    }

    async fn list(
        &self,
        request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        self.shared.auth.client(request.metadata())?;
        let core = self.shared.read()?;
        let sweeps = core
            .sweeps
            .sweeps
            .values()
            .rev()
            .take(MAX_LISTED)
            .map(|s| to_proto(s, false))
            .collect();
        Ok(Response::new(pb::ListSweepsResponse { sweeps }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let user = self.shared.auth.client(request.metadata())?;
        let req = request.into_inner();
        check_len("sweep_id", &req.sweep_id, MAX_ID_BYTES)?;
        check_len("reason", &req.reason, MAX_REASON_BYTES)?;
        let (num, owner, state) = {
            let core = self.shared.read()?;
            let num = core.sweeps.num_of(&req.sweep_id)?;
            let s = &core.sweeps.sweeps[&num];
            (num, s.owner.clone(), s.state)
        };
        self.shared
            .auth
            .may_cancel(user.as_deref(), &owner, &JobId::new(req.sweep_id.clone()))?;
        match state {
            SweepState::Cancelled => {}
            SweepState::Succeeded => {
                return Err(to_status(
                    ErrorKind::FailedPrecondition,
                    format!("{} already finished (succeeded)", req.sweep_id),
                ));
            }
            SweepState::Running => {
                let reason = req.reason.clone();
                self.shared.apply_sweep(|m, book, _store, now| {
                    driver::cancel(book, m, now, num, &reason);
                    Ok(())
                })?;
            }
        }
        Ok(Response::new(SweepApi::get(self, &req.sweep_id)?))
    }

    type WatchStream = SweepStream;

    async fn watch(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<SweepStream>, Status> {
        self.shared.auth.client(request.metadata())?;
        let id = request.into_inner().sweep_id;
        let first = SweepApi::get(self, &id)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let api = self.clone();
        let mut shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while last.state == pb::SweepState::Running as i32 {
                tokio::select! {
                    _ = tokio::time::sleep(PASS_EVERY) => {}
                    _ = stopped(&mut shutdown) => return,
                }
                let now = match api.get(&id) {
                    Ok(s) => s,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if now != last {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = now;
                }
            }
        });
        let stream: SweepStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(Response::new(stream))
    }
}

impl Shared {
    /// Runs a sweep event on the machine and the book together and commits both in one
    /// transaction, then does what [`Shared::apply`] does after a commit. On a failed commit both
    /// are rebuilt from the store (as `apply` does for the machine).
    ///
    /// # Errors
    /// The event's own refusal, or UNAVAILABLE when the state database write failed.
    pub(crate) fn apply_sweep<T>(
        &self,
        event: impl FnOnce(
            &mut crate::machine::Machine,
            &mut Book,
            &crate::store::Store,
            i64,
        ) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let mut core = self.lock();
        let core = &mut *core;
        core.ensure_restored()?;
        let out = event(&mut core.machine, &mut core.sweeps, &core.store, now_ms());
        let effects = core.machine.drain_effects();
        let mut writes = std::mem::take(&mut core.sweeps.writes);
        writes.sort();
        writes.dedup();
        let book = &core.sweeps;
        let write_rows = |tx: &rusqlite::Transaction<'_>| store::write(tx, book, &writes);
        let extra: Option<crate::store::ExtraRows<'_>> = if writes.is_empty() {
            None
        } else {
            Some(&write_rows)
        };
        if let Err(e) = core.store.apply_with(&core.machine, &effects, extra) {
            tracing::error!(error = %e, "state database write failed; the sweep event is not acknowledged");
            core.stale = true;
            if let Err(again) = core.ensure_restored() {
                tracing::error!(error = %again.message(), "state not restored yet; every call is refused until it is");
            }
            return Err(to_status(
                ErrorKind::Unavailable,
                format!("coordinator cannot write its state: {e}"),
            ));
        }
        self.after_commit(core, &effects);
        self.metrics.observe_trials(&core.sweeps.trial_counts());
        out
    }
}

/// Runs a driver pass over every running sweep every [`PASS_EVERY`] until shutdown.
pub(crate) async fn run_driver(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(PASS_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let roots = shared.config.roots.clone();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        if let Err(status) = shared.apply_sweep(|m, book, store, now| {
            driver::drive(book, m, store, now, &roots);
            Ok(())
        }) {
            tracing::error!(error = %status.message(), "sweep pass failed");
        }
    }
}

fn trial_state(s: TrialState) -> pb::TrialState {
    match s {
        TrialState::Queued => pb::TrialState::Queued,
        TrialState::Running => pb::TrialState::Running,
        TrialState::Complete => pb::TrialState::Complete,
        TrialState::Pruned => pb::TrialState::Pruned,
        TrialState::Failed => pb::TrialState::Failed,
        TrialState::Cancelled => pb::TrialState::Cancelled,
    }
}

/// The wire form of a sweep; `full` adds the trials and the spec.
pub(crate) fn to_proto(s: &Sweep, full: bool) -> pb::Sweep {
    let spec = &s.spec;
    let metric = serde_json::to_value(spec.objective.metric)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let trials = if full {
        s.trials
            .iter()
            .map(|t| {
                let params: serde_json::Map<String, serde_json::Value> = spec
                    .params
                    .iter()
                    .zip(&t.point.0)
                    .map(|(p, v)| {
                        (
                            p.path.clone(),
                            serde_json::to_value(p.dist.to_toml(v)).unwrap_or_default(),
                        )
                    })
                    .collect();
                pb::Trial {
                    index: t.index,
                    job_id: t
                        .job
                        .as_ref()
                        .map_or(String::new(), |j| j.as_str().to_string()),
                    state: trial_state(t.state) as i32,
                    params_json: serde_json::Value::Object(params).to_string(),
                    has_value: t.value.is_some(),
                    value: t.value.unwrap_or(f64::NAN),
                    epochs: t.curve.len() as u32,
                    reason: t.reason.clone(),
                    curve: t.curve.clone(),
                }
            })
            .collect()
    } else {
        vec![]
    };
    pb::Sweep {
        id: s.id.clone(),
        name: spec.name.clone(),
        owner: s.owner.clone(),
        state: match s.state {
            SweepState::Running => pb::SweepState::Running,
            SweepState::Succeeded => pb::SweepState::Succeeded,
            SweepState::Cancelled => pb::SweepState::Cancelled,
        } as i32,
        reason: s.reason.clone(),
        metric,
        direction: match spec.objective.direction {
            ringtrain_sweep::Direction::Min => "min",
            ringtrain_sweep::Direction::Max => "max",
        }
        .into(),
        algorithm: spec.algorithm.name().into(),
        budget_trials: spec.budget.trials.unwrap_or(0),
        budget_wall_time_s: spec.budget.wall_time_s.unwrap_or(0),
        max_concurrent: spec.max_concurrent,
        submitted_ms: s.submitted_ms,
        finished_ms: s.finished_ms,
        best_trial: s.best().map_or(-1, |t| t.index as i64),
        params: spec.params.iter().map(|p| p.path.clone()).collect(),
        trials,
        spec: if full { s.text.clone() } else { String::new() },
        trials_started: s.trials.len() as u32,
    }
}
