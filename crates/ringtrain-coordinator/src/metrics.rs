//! The coordinator's Prometheus series (names shared with deploy/grafana) and the small HTTP
//! endpoint serving them. Each coordinator owns its own recorder instead of installing a global
//! one, so several coordinators can live in one process (tests, `ringtrain local`) and the
//! endpoint can bind port 0 and report the port it got.
//!
//! Series: `ringtrain_coordinator_jobs{state}` and `ringtrain_coordinator_workers{state}` (gauges,
//! every state always present), `ringtrain_coordinator_jobs_submitted_total` (counter),
//! `ringtrain_coordinator_queue_wait_seconds` and
//! `ringtrain_coordinator_rpc_duration_seconds{method}` (histograms with explicit buckets, so
//! they render as `_bucket`/`_sum`/`_count`). Heartbeat durations include the long-poll hold.
//! `ringtrain_coordinator_sweep_trials{state}` (gauge, every trial state always present) counts
//! the trials of every sweep.

use crate::machine::{JobState, Machine, WorkerState};
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

const JOBS: &str = "ringtrain_coordinator_jobs";
const WORKERS: &str = "ringtrain_coordinator_workers";
const SUBMITTED: &str = "ringtrain_coordinator_jobs_submitted_total";
const QUEUE_WAIT: &str = "ringtrain_coordinator_queue_wait_seconds";
const RPC: &str = "ringtrain_coordinator_rpc_duration_seconds";
const TRIALS: &str = "ringtrain_coordinator_sweep_trials";

/// Every RPC method the coordinator serves (its own services; rendezvous calls are not timed).
pub const METHODS: [&str; 11] = [
    "SubmitJob",
    "GetJob",
    "ListJobs",
    "CancelJob",
    "WatchJob",
    "GetJobLogs",
    "RegisterWorker",
    "Heartbeat",
    "ReportProgress",
    "ReportResult",
    "ListWorkers",
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Handles of every series, registered once.
pub(crate) struct Metrics {
    handle: PrometheusHandle,
    jobs: Vec<(JobState, Gauge)>,
    workers: Vec<(WorkerState, Gauge)>,
    submitted: Counter,
    queue_wait: Histogram,
    rpc: HashMap<&'static str, Histogram>,
    trials: Vec<(crate::sweep::TrialState, Gauge)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh recorder with every series registered (gauges at 0).
    pub(crate) fn new() -> Result<Metrics, String> {
        let rpc_buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let wait_buckets = [
            0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(RPC.into()), &rpc_buckets)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), &wait_buckets))
            .map_err(|e| format!("prometheus buckets: {e}"))?
            .build_recorder();
        recorder.describe_gauge(
            JOBS.into(),
            None,
            "Jobs known to the coordinator, by state".into(),
        );
        recorder.describe_gauge(WORKERS.into(), None, "Registered workers, by state".into());
        recorder.describe_counter(SUBMITTED.into(), None, "Jobs submitted".into());
        recorder.describe_histogram(
            QUEUE_WAIT.into(),
            Some(Unit::Seconds),
            "Time from Queued to Starting".into(),
        );
        recorder.describe_histogram(
            RPC.into(),
            Some(Unit::Seconds),
            "Coordinator RPC duration by method (Heartbeat includes the long-poll hold)".into(),
        );
        let labelled = |name: &'static str, key: &'static str, value: &'static str| {
            Key::from_parts(name, vec![Label::new(key, value)])
        };
        let jobs = JobState::ALL
            .iter()
            .map(|s| {
                let g = recorder.register_gauge(&labelled(JOBS, "state", s.as_str()), &METADATA);
                g.set(0.0);
                (*s, g)
            })
            .collect();
        let workers = WorkerState::ALL
            .iter()
            .map(|s| {
                let g = recorder.register_gauge(&labelled(WORKERS, "state", s.as_str()), &METADATA);
                g.set(0.0);
                (*s, g)
            })
            .collect();
        recorder.describe_gauge(
            TRIALS.into(),
            None,
            "Trials of every sweep, by state".into(),
        );
        let trials = crate::sweep::TrialState::ALL
            .iter()
            .map(|s| {
                let g = recorder.register_gauge(&labelled(TRIALS, "state", s.as_str()), &METADATA);
                g.set(0.0);
                (*s, g)
            })
            .collect();
        let submitted = recorder.register_counter(&Key::from_name(SUBMITTED), &METADATA);
        submitted.absolute(0);
        let queue_wait = recorder.register_histogram(&Key::from_name(QUEUE_WAIT), &METADATA);
        let rpc = METHODS
            .iter()
            .map(|m| {
                (
                    *m,
                    recorder.register_histogram(&labelled(RPC, "method", m), &METADATA),
                )
            })
            .collect();
        Ok(Metrics {
            handle: recorder.handle(),
            jobs,
            workers,
            submitted,
            queue_wait,
            rpc,
            trials,
        })
    }

    /// Sets the trial gauges from the sweeps' trial counts.
    pub(crate) fn observe_trials(
        &self,
        counts: &std::collections::BTreeMap<crate::sweep::TrialState, usize>,
    ) {
        for (state, gauge) in &self.trials {
            gauge.set(counts.get(state).copied().unwrap_or(0) as f64);
        }
    }

    /// Sets the job and worker gauges from the machine.
    pub(crate) fn observe(&self, machine: &Machine) {
        let jobs = machine.job_counts();
        for (state, gauge) in &self.jobs {
            gauge.set(jobs.get(state).copied().unwrap_or(0) as f64);
        }
        let workers = machine.worker_counts();
        for (state, gauge) in &self.workers {
            gauge.set(workers.get(state).copied().unwrap_or(0) as f64);
        }
    }

    /// Counts a submitted job.
    pub(crate) fn submitted(&self) {
        self.submitted.increment(1);
    }

    /// Records how long a job waited in the queue.
    pub(crate) fn queue_wait(&self, seconds: f64) {
        self.queue_wait.record(seconds.max(0.0));
    }

    /// A guard recording the RPC's duration when dropped.
    pub(crate) fn time(&self, method: &'static str) -> RpcTimer {
        RpcTimer {
            hist: self.rpc.get(method).cloned(),
            start: Instant::now(),
        }
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// Periodic housekeeping of the recorder (drains histogram samples into buckets).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Records the time from its creation to its drop in an RPC histogram.
pub(crate) struct RpcTimer {
    hist: Option<Histogram>,
    start: Instant,
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        if let Some(h) = &self.hist {
            h.record(self.start.elapsed().as_secs_f64());
        }
    }
}

/// Serves `render()` at `GET /metrics` on `listener` (over TLS when `tls` is given) until
/// `shutdown` turns true (see [`ringtrain_telemetry::serve_with`]).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<std::sync::Arc<ringtrain_telemetry::TlsServerConfig>>,
    render: impl Fn() -> String + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move { crate::clock::stopped(&mut shutdown).await };
    if let Err(e) = ringtrain_telemetry::serve_with(listener, tls, render, stop).await {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}

/// Binds the metrics endpoint; returns the listener and the address it got.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
