//! Conversions between the state machine's types and the wire types of `ringtrain_proto`, used by
//! the services and by the watchers' events in the shared state.

use crate::machine::{
    Assignment, Job, JobState, LogEntry, LogLevel, RankReport, Worker, WorkerState,
};
use ringtrain_proto::v1 as pb;

pub(crate) fn state_from_proto(s: pb::JobState) -> Option<JobState> {
    Some(match s {
        pb::JobState::Unspecified => return None,
        pb::JobState::Queued => JobState::Queued,
        pb::JobState::Starting => JobState::Starting,
        pb::JobState::Running => JobState::Running,
        pb::JobState::Succeeded => JobState::Succeeded,
        pb::JobState::Failed => JobState::Failed,
        pb::JobState::Cancelled => JobState::Cancelled,
    })
}

pub(crate) fn state_to_proto(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Starting => pb::JobState::Starting,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

pub(crate) fn format_to_proto(f: ringtrain_spec::SpecFormat) -> pb::SpecFormat {
    match f {
        ringtrain_spec::SpecFormat::Toml => pb::SpecFormat::Toml,
        ringtrain_spec::SpecFormat::Json => pb::SpecFormat::Json,
    }
}

pub(crate) fn level_from_proto(level: i32) -> LogLevel {
    match pb::LogLevel::try_from(level) {
        Ok(pb::LogLevel::Debug) => LogLevel::Debug,
        Ok(pb::LogLevel::Warn) => LogLevel::Warn,
        Ok(pb::LogLevel::Error) => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

/// A log line on the wire.
pub(crate) fn log_to_proto(l: &LogEntry) -> pb::LogLine {
    let level = match l.level {
        LogLevel::Debug => pb::LogLevel::Debug,
        LogLevel::Info => pb::LogLevel::Info,
        LogLevel::Warn => pb::LogLevel::Warn,
        LogLevel::Error => pb::LogLevel::Error,
    };
    pb::LogLine {
        seq: l.seq,
        at_ms: l.at_ms,
        rank: l.rank,
        level: level as i32,
        message: l.message.clone(),
    }
}

/// Aggregates the ranks' latest reports (see the proto's `Progress`); None before any.
pub(crate) fn progress_to_proto(job: &Job) -> Option<pb::Progress> {
    let reports: Vec<(usize, &RankReport)> = job
        .ranks
        .iter()
        .enumerate()
        .filter_map(|(r, s)| s.report.as_ref().map(|rep| (r, rep)))
        .collect();
    let (_, first) = reports.first()?;
    let n = reports.len() as f64;
    Some(pb::Progress {
        step: reports.iter().map(|(_, r)| r.step).min().unwrap_or(0),
        total_steps: reports
            .iter()
            .map(|(_, r)| r.total_steps)
            .max()
            .unwrap_or(0),
        epoch: reports.iter().map(|(_, r)| r.epoch).min().unwrap_or(0),
        epochs: reports.iter().map(|(_, r)| r.epochs).max().unwrap_or(0),
        loss: reports.iter().map(|(_, r)| r.loss).sum::<f64>() / n,
        samples_per_sec: reports.iter().map(|(_, r)| r.samples_per_sec).sum(),
        lr: first.lr,
        val_loss: first.val_loss,
        ranks: reports
            .iter()
            .map(|(r, rep)| pb::RankProgress {
                rank: *r as u32,
                worker_id: job
                    .workers
                    .get(*r)
                    .map(|w| w.to_string())
                    .unwrap_or_default(),
                step: rep.step,
                loss: rep.loss,
                samples_per_sec: rep.samples_per_sec,
                compute_seconds: rep.compute_seconds,
                comm_seconds: rep.comm_seconds,
                reported_ms: rep.reported_ms,
            })
            .collect(),
    })
}

/// A job on the wire. `with_spec = false` leaves the spec text out (watch events after the
/// snapshot, which may be many per second, need not repeat up to 1 MiB of spec each).
pub(crate) fn job_to_proto(job: &Job, with_spec: bool) -> pb::Job {
    pb::Job {
        id: job.id.to_string(),
        name: job.name.clone(),
        state: state_to_proto(job.state) as i32,
        reason: job.reason.clone(),
        world: job.world,
        workers: job.workers.iter().map(|w| w.to_string()).collect(),
        submitted_ms: job.submitted_ms,
        started_ms: job.started_ms,
        finished_ms: job.finished_ms,
        history: job
            .history
            .iter()
            .map(|t| pb::StateChange {
                state: state_to_proto(t.state) as i32,
                reason: t.reason.clone(),
                at_ms: t.at_ms,
            })
            .collect(),
        progress: progress_to_proto(job),
        result: job.result.as_ref().map(|r| pb::JobResult {
            metrics: r.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            report_json: r.report_json.clone(),
            checkpoint_dir: r.checkpoint_dir.clone(),
            steps: r.steps,
            stop_reason: r.stop_reason.clone(),
            samples_per_sec: r.samples_per_sec,
        }),
        spec: if with_spec {
            job.spec.clone()
        } else {
            String::new()
        },
        spec_format: format_to_proto(job.format) as i32,
        base_dir: job.base_dir.clone(),
        attempt: job.attempt,
        max_restarts: job.max_restarts,
        owner: job.owner.clone(),
    }
}

pub(crate) fn assignment_to_proto(a: &Assignment) -> pb::Assignment {
    pb::Assignment {
        job_id: a.job.to_string(),
        attempt: a.attempt,
        rank: a.rank,
        world: a.world,
        spec: a.spec.clone(),
        spec_format: format_to_proto(a.format) as i32,
        base_dir: a.base_dir.clone(),
        workers: a.workers.iter().map(|w| w.to_string()).collect(),
        session: a.session.clone(),
        // Empty: the rendezvous service is served on the coordinator's own address.
        rendezvous: String::new(),
        collective_timeout_ms: a.collective_timeout_ms,
        checksum_every: a.checksum_every,
        // Filled in by the caller, which holds the key.
        session_token: String::new(),
    }
}

pub(crate) fn worker_to_proto(w: &Worker) -> pb::WorkerInfo {
    let state = match w.state() {
        WorkerState::Idle => pb::WorkerState::Idle,
        WorkerState::Busy => pb::WorkerState::Busy,
        WorkerState::Lost => pb::WorkerState::Lost,
    };
    pb::WorkerInfo {
        id: w.id.to_string(),
        name: w.name.clone(),
        state: state as i32,
        peer_address: w.peer_address.clone(),
        metrics_address: w.metrics_address.clone(),
        version: w.version.clone(),
        resources: Some(pb::Resources {
            threads: w.resources.threads,
            gpus: w.resources.gpus,
            memory_bytes: w.resources.memory_bytes,
        }),
        job_id: w
            .holding
            .as_ref()
            .map(|h| h.job.to_string())
            .unwrap_or_default(),
        rank: w.holding.as_ref().map_or(0, |h| h.rank),
        registered_ms: w.registered_ms,
        last_seen_ms: w.last_seen_ms,
    }
}
