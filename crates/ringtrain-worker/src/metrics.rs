//! The worker's Prometheus series (names shared with the coordinator's and deploy/grafana, see
//! the metrics contract) and the small HTTP endpoint serving them. Each worker owns its own
//! recorder instead of installing a global one, so several workers can live in one process (tests)
//! and the endpoint can bind port 0 and report the port it got.
//!
//! Series: `ringtrain_worker_busy` (gauge 0/1); per `{job_id, rank}`:
//! `ringtrain_worker_steps_total` and `ringtrain_worker_allreduce_bytes_total` (counters),
//! `ringtrain_worker_step_compute_seconds` (forward + backward + optimizer) and
//! `ringtrain_worker_step_communication_seconds` (gradient all-reduce) as histograms with explicit
//! buckets (rendered as `_bucket`/`_sum`/`_count`), `ringtrain_worker_samples_per_second`,
//! `ringtrain_worker_loss` and `ringtrain_worker_allreduce_bus_bandwidth_bytes_per_second`
//! (gauges; bus bandwidth = bytes/s × 2(N−1)/N, the nccl-tests convention). Pipelined jobs add,
//! per `{job_id, rank, stage}`: `ringtrain_worker_pipeline_busy_seconds_total` and
//! `ringtrain_worker_pipeline_idle_seconds_total` (the schedule's compute and waiting time),
//! `ringtrain_worker_pipeline_activation_bytes_total` (activations and gradients sent to other
//! stages) and `ringtrain_worker_pipeline_bubble_fraction` (idle / (busy + idle) of the latest
//! step).
//!
//! What the all-reduce series count (`RankSeries::record_allreduce`): the payload of the
//! rank's gradient all-reduce — the whole gradient and the step's scalars among all ranks for
//! data parallelism; for a pipeline stage, its gradient slice and the scalars among the stage's
//! replicas only (nothing with one replica), while the activations and their gradients go to
//! the pipeline's activation series and the stages' 24-byte norm record is not counted.

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

const BUSY: &str = "ringtrain_worker_busy";
const STEPS: &str = "ringtrain_worker_steps_total";
const COMPUTE: &str = "ringtrain_worker_step_compute_seconds";
const COMMUNICATION: &str = "ringtrain_worker_step_communication_seconds";
const SAMPLES: &str = "ringtrain_worker_samples_per_second";
const LOSS: &str = "ringtrain_worker_loss";
const BYTES: &str = "ringtrain_worker_allreduce_bytes_total";
const BUSBW: &str = "ringtrain_worker_allreduce_bus_bandwidth_bytes_per_second";
const PIPE_BUSY: &str = "ringtrain_worker_pipeline_busy_seconds_total";
const PIPE_IDLE: &str = "ringtrain_worker_pipeline_idle_seconds_total";
const PIPE_BYTES: &str = "ringtrain_worker_pipeline_activation_bytes_total";
const PIPE_BUBBLE: &str = "ringtrain_worker_pipeline_bubble_fraction";

/// The series of a pipeline stage (only present for pipelined jobs).
pub const PIPELINE_SERIES: [&str; 4] = [PIPE_BUSY, PIPE_IDLE, PIPE_BYTES, PIPE_BUBBLE];

/// Every series name this worker exports for every job.
pub const SERIES: [&str; 8] = [
    BUSY,
    STEPS,
    COMPUTE,
    COMMUNICATION,
    SAMPLES,
    LOSS,
    BYTES,
    BUSBW,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The worker's recorder and its one unlabelled series.
pub(crate) struct WorkerMetrics {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    handle: PrometheusHandle,
    busy: Gauge,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

/// The series of one pipeline stage of one rank of one job.
#[derive(Clone)]
pub(crate) struct StageSeries {
    /// Seconds the stage computed (a gauge that only grows: counters count integers).
    pub busy: Gauge,
    /// Seconds the stage waited for or handed over activations and gradients (only grows).
    pub idle: Gauge,
    /// Bytes of activations and gradients sent to other stages.
    pub activation_bytes: Counter,
    /// Idle share of the latest step's schedule.
    pub bubble_fraction: Gauge,
}

/// The series of one rank of one job.
#[derive(Clone)]
pub(crate) struct RankSeries {
    /// Optimizer steps.
    pub steps: Counter,
    /// Seconds of forward, backward and optimizer per step.
    pub compute: Histogram,
    /// Seconds of gradient all-reduce per step.
    pub communication: Histogram,
    /// This rank's samples per second over recent steps.
    pub samples_per_second: Gauge,
    /// This rank's latest training loss.
    pub loss: Gauge,
    /// Gradient bytes all-reduced.
    pub allreduce_bytes: Counter,
    /// Bus bandwidth of the latest gradient all-reduce.
    pub bus_bandwidth: Gauge,
}

/// Bus bandwidth of an all-reduce of `bytes` payload among `ranks` ranks that took `seconds`:
/// the algorithm bandwidth `bytes / seconds` times `2 (n − 1) / n`, the nccl-tests convention.
/// `None` when there was no exchange (one rank, no bytes) or nothing was timed.
pub(crate) fn bus_bandwidth(bytes: u64, ranks: usize, seconds: f64) -> Option<f64> {
    if ranks < 2 || bytes == 0 || seconds <= 0.0 {
        return None;
    }
    let n = ranks as f64;
    Some(bytes as f64 / seconds * 2.0 * (n - 1.0) / n)
}

impl RankSeries {
    /// Counts one gradient all-reduce of `bytes` payload among `ranks` ranks that took
    /// `seconds`; an all-reduce among fewer than two ranks moves nothing and counts nothing.
    pub(crate) fn record_allreduce(&self, bytes: u64, ranks: usize, seconds: f64) {
        if ranks < 2 {
            return;
        }
        self.allreduce_bytes.increment(bytes);
        if let Some(bw) = bus_bandwidth(bytes, ranks, seconds) {
            self.bus_bandwidth.set(bw);
        }
    }
}

impl WorkerMetrics {
    /// A fresh recorder with the unlabelled series registered.
    ///
    /// # Errors
    /// A message when the histogram buckets are refused (a bug).
    pub(crate) fn new() -> Result<WorkerMetrics, String> {
        // Steps of the models trained here take from under a millisecond to seconds.
        let buckets = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(COMPUTE.into()), &buckets)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMMUNICATION.into()), &buckets))
            .map_err(|e| format!("prometheus buckets: {e}"))?
            .build_recorder();
        let descriptions: [(&'static str, Option<Unit>, &'static str); 12] = [
            (
                PIPE_BUSY,
                Some(Unit::Seconds),
                "Seconds a pipeline stage spent computing",
            ),
            (
                PIPE_IDLE,
                Some(Unit::Seconds),
                "Seconds a pipeline stage waited for activations or gradients",
            ),
            (
                PIPE_BYTES,
                Some(Unit::Bytes),
                "Activation and gradient bytes a pipeline stage sent",
            ),
            (
                PIPE_BUBBLE,
                None,
                "Idle share of a pipeline stage in its latest step",
            ),
            (BUSY, None, "1 while the worker runs a job's rank"),
            (STEPS, None, "Optimizer steps taken"),
            (
                COMPUTE,
                Some(Unit::Seconds),
                "Forward, backward and optimizer seconds per step",
            ),
            (
                COMMUNICATION,
                Some(Unit::Seconds),
                "Gradient all-reduce seconds per step",
            ),
            (SAMPLES, None, "Samples per second of this rank"),
            (LOSS, None, "Training loss of this rank's latest batch"),
            (BYTES, Some(Unit::Bytes), "Gradient bytes all-reduced"),
            (
                BUSBW,
                None,
                "Bus bandwidth of the latest gradient all-reduce, bytes/s x 2(N-1)/N",
            ),
        ];
        for (name, unit, text) in descriptions {
            match name {
                STEPS | BYTES | PIPE_BYTES => {
                    recorder.describe_counter(name.into(), unit, text.into())
                }
                COMPUTE | COMMUNICATION => {
                    recorder.describe_histogram(name.into(), unit, text.into())
                }
                _ => recorder.describe_gauge(name.into(), unit, text.into()),
            }
        }
        let busy = recorder.register_gauge(&Key::from_name(BUSY), &METADATA);
        busy.set(0.0);
        Ok(WorkerMetrics {
            handle: recorder.handle(),
            recorder,
            busy,
        })
    }

    /// Sets the busy gauge.
    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.set(if busy { 1.0 } else { 0.0 });
    }

    /// Registers (or finds) the series of `rank` of `job`; counters start at 0 so that every
    /// series is visible from the job's start.
    pub(crate) fn rank(&self, job: &str, rank: u32) -> RankSeries {
        let key = |name: &'static str| {
            Key::from_parts(
                name,
                vec![
                    Label::new("job_id", job.to_string()),
                    Label::new("rank", rank.to_string()),
                ],
            )
        };
        let r = &self.recorder;
        let series = RankSeries {
            steps: r.register_counter(&key(STEPS), &METADATA),
            compute: r.register_histogram(&key(COMPUTE), &METADATA),
            communication: r.register_histogram(&key(COMMUNICATION), &METADATA),
            samples_per_second: r.register_gauge(&key(SAMPLES), &METADATA),
            loss: r.register_gauge(&key(LOSS), &METADATA),
            allreduce_bytes: r.register_counter(&key(BYTES), &METADATA),
            bus_bandwidth: r.register_gauge(&key(BUSBW), &METADATA),
        };
        series.steps.increment(0);
        series.allreduce_bytes.increment(0);
        series
    }

    /// Registers (or finds) the pipeline series of `rank` (stage `stage`) of `job`.
    pub(crate) fn stage(&self, job: &str, rank: u32, stage: u32) -> StageSeries {
        let key = |name: &'static str| {
            Key::from_parts(
                name,
                vec![
                    Label::new("job_id", job.to_string()),
                    Label::new("rank", rank.to_string()),
                    Label::new("stage", stage.to_string()),
                ],
            )
        };
        let r = &self.recorder;
        let series = StageSeries {
            busy: r.register_gauge(&key(PIPE_BUSY), &METADATA),
            idle: r.register_gauge(&key(PIPE_IDLE), &METADATA),
            activation_bytes: r.register_counter(&key(PIPE_BYTES), &METADATA),
            bubble_fraction: r.register_gauge(&key(PIPE_BUBBLE), &METADATA),
        };
        series.busy.increment(0.0);
        series.idle.increment(0.0);
        series.activation_bytes.increment(0);
        series
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

/// Serves the series at `GET /metrics` on `listener` (over TLS when `tls` is given) until
/// `shutdown` turns true (see [`ringtrain_telemetry::serve_with`]); each scrape first drains histogram samples into buckets.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<std::sync::Arc<ringtrain_telemetry::TlsServerConfig>>,
    metrics: std::sync::Arc<WorkerMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let render = move || {
        metrics.upkeep();
        metrics.render()
    };
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
    };
    if let Err(e) = ringtrain_telemetry::serve_with(listener, tls, render, stop).await {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_renders_with_histogram_buckets() {
        let m = WorkerMetrics::new().unwrap();
        m.set_busy(true);
        let s = m.rank("job-1", 2);
        s.steps.increment(3);
        s.compute.record(0.004);
        s.communication.record(0.002);
        s.samples_per_second.set(100.0);
        s.loss.set(0.5);
        s.allreduce_bytes.increment(4096);
        s.bus_bandwidth.set(1e6);
        let p = m.stage("job-1", 3, 1);
        p.busy.increment(2.5);
        p.activation_bytes.increment(1024);
        p.bubble_fraction.set(0.25);
        m.upkeep();
        let text = m.render();
        assert!(
            text.contains(
                r#"ringtrain_worker_pipeline_bubble_fraction{job_id="job-1",rank="3",stage="1"} 0.25"#
            ),
            "{text}"
        );
        for name in SERIES.iter().chain(&PIPELINE_SERIES) {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert!(text.contains("ringtrain_worker_busy 1"), "{text}");
        assert!(
            text.contains(r#"ringtrain_worker_steps_total{job_id="job-1",rank="2"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ringtrain_worker_step_compute_seconds_bucket{job_id="job-1",rank="2",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ringtrain_worker_step_communication_seconds_count{job_id="job-1",rank="2"} 1"#
            ),
            "{text}"
        );
    }

    /// A pipeline stage with one replica all-reduces nothing; with two, its slice's payload is
    /// counted and the bus bandwidth uses the stage group's size.
    #[test]
    fn allreduce_series_count_what_the_rank_moves() {
        let m = WorkerMetrics::new().unwrap();
        let s = m.rank("job-2", 1);
        s.record_allreduce(4000, 1, 0.5);
        s.record_allreduce(4000, 2, 0.5);
        s.record_allreduce(1000, 2, 0.0);
        let text = m.render();
        assert!(
            text.contains(
                r#"ringtrain_worker_allreduce_bytes_total{job_id="job-2",rank="1"} 5000"#
            ),
            "{text}"
        );
        // 4000 B / 0.5 s × 2 (2 − 1) / 2 = 8000 B/s; the untimed call left it as it was.
        assert!(
            text.contains(
                r#"ringtrain_worker_allreduce_bus_bandwidth_bytes_per_second{job_id="job-2",rank="1"} 8000"#
            ),
            "{text}"
        );
        assert_eq!(bus_bandwidth(1200, 4, 1.0), Some(1800.0));
        assert_eq!(bus_bandwidth(1200, 1, 1.0), None);
    }
}
