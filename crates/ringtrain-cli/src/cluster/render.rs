//! How jobs, workers and log lines look: tables for people, JSON for scripts. The JSON mirrors the
//! proto messages field for field (enum values as their lowercase names, times in ms since the
//! Unix epoch), so a script can switch between this CLI and a generated client.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ringtrain_proto::v1::{
    Job, JobResult, JobState, LogLevel, LogLine, Progress, RankProgress, SpecFormat, StateChange,
    WorkerInfo, WorkerState,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowercase state name, e.g. "running".
pub(crate) fn state_name(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Queued) => "queued",
        Ok(JobState::Starting) => "starting",
        Ok(JobState::Running) => "running",
        Ok(JobState::Succeeded) => "succeeded",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        Ok(JobState::Unspecified) | Err(_) => "unknown",
    }
}

/// Whether the job can change no more.
pub(crate) fn is_final(state: i32) -> bool {
    matches!(
        JobState::try_from(state),
        Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    )
}

fn worker_state_name(state: i32) -> &'static str {
    match WorkerState::try_from(state) {
        Ok(WorkerState::Idle) => "idle",
        Ok(WorkerState::Busy) => "busy",
        Ok(WorkerState::Lost) => "lost",
        Ok(WorkerState::Unspecified) | Err(_) => "unknown",
    }
}

fn level_name(level: i32) -> &'static str {
    match LogLevel::try_from(level) {
        Ok(LogLevel::Debug) => "debug",
        Ok(LogLevel::Info) | Ok(LogLevel::Unspecified) | Err(_) => "info",
        Ok(LogLevel::Warn) => "warn",
        Ok(LogLevel::Error) => "error",
    }
}

/// Whether `ch` must not reach a terminal raw: control characters (ESC starts the escape
/// sequences that move the cursor, retitle the window or rewrite the screen) and the Unicode
/// direction overrides and isolates (which reorder what is shown).
fn is_unsafe(ch: char) -> bool {
    ch.is_control()
        || matches!(ch, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` for a table cell or a one-line message: every unsafe character (newlines included)
/// written as its Rust escape (`\u{1b}`, `\n`). Everything the coordinator sends that a
/// worker or client chose (names, reasons, addresses, ids) goes through this or
/// [`safe_lines`] before reaching the terminal.
pub(crate) fn safe(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if is_unsafe(c) {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Like [`safe`] but keeps newlines and tabs: for log lines and multi-line messages, which
/// may span lines but never carry escape sequences.
pub(crate) fn safe_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| line.split('\t').map(safe).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// "3.2 s", "4 min 10 s", "2 h 5 min": a duration in ms for a table cell.
pub(crate) fn span(ms: i64) -> String {
    let s = ms.max(0) as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// How long the job has run (or ran), or waited while queued.
fn elapsed(job: &Job) -> String {
    let end = if job.finished_ms > 0 {
        job.finished_ms
    } else {
        now_ms()
    };
    let start = if job.started_ms > 0 {
        job.started_ms
    } else {
        job.submitted_ms
    };
    span(end - start)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

fn fmt_loss(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.5}")
    } else {
        "-".into()
    }
}

/// One row per job.
pub(crate) fn jobs_table(jobs: &[Job]) -> Table {
    let mut t = table(&[
        "job", "name", "state", "world", "step", "loss", "time", "reason",
    ]);
    for j in jobs {
        let (step, loss) = j.progress.as_ref().map_or(("-".into(), "-".into()), |p| {
            (format!("{}/{}", p.step, p.total_steps), fmt_loss(p.loss))
        });
        t.add_row(vec![
            safe(&j.id),
            safe(&j.name),
            state_name(j.state).to_string(),
            j.world.to_string(),
            step,
            loss,
            elapsed(j),
            safe(&j.reason),
        ]);
    }
    t
}

/// Pipeline stages per replica of a job (1 when not pipelined or when the spec text is not at
/// hand): ranks are placed as `rank = replica × stages + stage`.
pub(crate) fn stages_of(job: &Job) -> usize {
    if job.spec.is_empty() {
        return 1;
    }
    let format = if job.spec_format == SpecFormat::Json as i32 {
        ringtrain_spec::SpecFormat::Json
    } else {
        ringtrain_spec::SpecFormat::Toml
    };
    ringtrain_spec::parse_str(&job.spec, format, &job.id, &job.name)
        .map_or(1, |spec| spec.parallel.pipeline.max(1))
}

/// "stage 1 of replica 0" for a pipelined job's rank, "-" otherwise.
fn placement(rank: u32, stages: usize) -> String {
    if stages <= 1 {
        return "-".into();
    }
    let (rank, stages) = (rank as usize, stages);
    format!("stage {} of replica {}", rank % stages, rank / stages)
}

/// Per-rank progress: step, loss, throughput and where the time goes; with the pipeline stage
/// of each rank when `stages` > 1.
pub(crate) fn ranks_table(ranks: &[RankProgress], stages: usize) -> Table {
    let mut header = vec!["rank"];
    if stages > 1 {
        header.push("placement");
    }
    header.extend([
        "worker",
        "step",
        "loss",
        "samples/s",
        "compute ms/step",
        "comm ms/step",
    ]);
    let mut t = table(&header);
    for r in ranks {
        let mut row = vec![r.rank.to_string()];
        if stages > 1 {
            row.push(placement(r.rank, stages));
        }
        row.extend([
            safe(&r.worker_id),
            r.step.to_string(),
            fmt_loss(r.loss),
            format!("{:.0}", r.samples_per_sec),
            format!("{:.2}", r.compute_seconds * 1e3),
            format!("{:.2}", r.comm_seconds * 1e3),
        ]);
        t.add_row(row);
    }
    t
}

/// Start of a pipelined rank's run summary log line (written by the worker after its last step:
/// `pipeline stage S of P over the run: steps=N busy_s=… idle_s=… bubble=… ideal=… …`).
pub(crate) const PIPELINE_RUN_PREFIX: &str = "pipeline stage ";
const PIPELINE_RUN_MARK: &str = " over the run: ";

/// The `key=value` fields of a pipelined rank's run summary line; `None` for any other line.
pub(crate) fn pipeline_run_fields(message: &str) -> Option<BTreeMap<String, String>> {
    if !message.starts_with(PIPELINE_RUN_PREFIX) {
        return None;
    }
    let (_, fields) = message.split_once(PIPELINE_RUN_MARK)?;
    Some(
        fields
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The measured pipeline bubble per rank (idle / (busy + idle) of its stage over the run) next
/// to the ideal (P-1)/(M+P-1), from the ranks' run summary lines keyed by rank.
pub(crate) fn pipeline_table(
    runs: &BTreeMap<u32, BTreeMap<String, String>>,
    stages: usize,
) -> Table {
    let mut t = table(&[
        "rank",
        "placement",
        "steps",
        "busy s",
        "idle s",
        "bubble",
        "ideal bubble",
    ]);
    for (rank, f) in runs {
        let get = |k: &str| safe(f.get(k).map_or("-", String::as_str));
        t.add_row(vec![
            rank.to_string(),
            placement(*rank, stages),
            get("steps"),
            get("busy_s"),
            get("idle_s"),
            get("bubble"),
            get("ideal"),
        ]);
    }
    t
}

/// Everything about one job, for `status JOB`.
pub(crate) fn print_job(job: &Job) {
    println!(
        "job {} ({}): {}",
        safe(&job.id),
        safe(&job.name),
        state_name(job.state)
    );
    if !job.reason.is_empty() {
        println!("  reason: {}", safe_lines(&job.reason));
    }
    let stages = stages_of(job);
    if stages > 1 {
        println!(
            "  world: {} rank(s) = {} replica(s) × {stages} pipeline stages",
            job.world,
            job.world as usize / stages
        );
    } else {
        println!("  world: {} rank(s)", job.world);
    }
    if !job.workers.is_empty() {
        let placed: Vec<String> = job
            .workers
            .iter()
            .enumerate()
            .map(|(r, w)| match placement(r as u32, stages).as_str() {
                "-" => format!("rank {r} on {}", safe(w)),
                at => format!("rank {r} ({at}) on {}", safe(w)),
            })
            .collect();
        println!("  placement: {}", placed.join(", "));
    }
    if !job.owner.is_empty() {
        println!("  owner: {}", safe(&job.owner));
    }
    if job.attempt > 1 || job.max_restarts > 0 {
        println!(
            "  attempt: {} ({} restart{} allowed)",
            job.attempt,
            job.max_restarts,
            if job.max_restarts == 1 { "" } else { "s" }
        );
    }
    println!("  time: {}", elapsed(job));
    if !job.history.is_empty() {
        let mut t = table(&["state", "at", "reason"]);
        let first = job.history[0].at_ms;
        for StateChange {
            state,
            reason,
            at_ms,
        } in &job.history
        {
            t.add_row(vec![
                state_name(*state).to_string(),
                format!("+{}", span(at_ms - first)),
                safe_lines(reason),
            ]);
        }
        println!("{t}");
    }
    if let Some(p) = &job.progress {
        println!(
            "  progress: step {}/{}, epoch {}/{}, loss {}, val loss {}, {:.0} samples/s",
            p.step,
            p.total_steps,
            (p.epoch + 1).min(p.epochs.max(1)),
            p.epochs,
            fmt_loss(p.loss),
            fmt_loss(p.val_loss),
            p.samples_per_sec
        );
        if !p.ranks.is_empty() {
            println!("{}", ranks_table(&p.ranks, stages_of(job)));
        }
    }
    if let Some(r) = &job.result {
        print_result(r);
    }
}

/// The final metrics: the same tables `ringtrain train` prints, from the report JSON; the flat
/// metric map when the report cannot be read (e.g. a newer coordinator's format).
pub(crate) fn print_result(r: &JobResult) {
    match serde_json::from_str::<ringtrain_train::TrainReport>(&r.report_json) {
        Ok(mut report) => {
            // The workers measured throughput over all ranks; the report holds that too.
            report.samples_per_sec = r.samples_per_sec;
            crate::report::print_train(&report);
        }
        Err(e) => {
            tracing::debug!(error = %e, "result report is not a TrainReport; printing the metric map");
            let mut t = table(&["metric", "value"]);
            let mut keys: Vec<_> = r.metrics.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in keys {
                t.add_row(vec![safe(k), format!("{v:.6}")]);
            }
            println!(
                "finished after {} steps ({}), {:.0} samples/s; checkpoints in {}",
                r.steps,
                safe(&r.stop_reason),
                r.samples_per_sec,
                safe(&r.checkpoint_dir)
            );
            println!("{t}");
        }
    }
}

/// One row per worker.
pub(crate) fn workers_table(workers: &[WorkerInfo]) -> Table {
    let mut t = table(&[
        "worker",
        "name",
        "state",
        "job",
        "peer",
        "metrics",
        "threads",
        "last seen",
    ]);
    let now = now_ms();
    for w in workers {
        let job = if w.job_id.is_empty() {
            "-".to_string()
        } else {
            format!("{} rank {}", safe(&w.job_id), w.rank)
        };
        t.add_row(vec![
            safe(&w.id),
            safe(&w.name),
            worker_state_name(w.state).to_string(),
            job,
            safe(&w.peer_address),
            if w.metrics_address.is_empty() {
                "-".into()
            } else {
                safe(&w.metrics_address)
            },
            w.resources
                .as_ref()
                .map_or("-".into(), |r| r.threads.to_string()),
            format!("{} ago", span(now - w.last_seen_ms)),
        ]);
    }
    t
}

/// A log line as text: "rank 1 warn: message" / "coordinator: message".
pub(crate) fn log_text(l: &LogLine) -> String {
    let who = if l.rank < 0 {
        "coordinator".to_string()
    } else {
        format!("rank {}", l.rank)
    };
    match level_name(l.level) {
        "info" => format!("{who}: {}", safe_lines(&l.message)),
        level => format!("{who} {level}: {}", safe_lines(&l.message)),
    }
}

fn nan_null(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn progress_json(p: &Progress) -> Value {
    json!({
        "step": p.step,
        "total_steps": p.total_steps,
        "epoch": p.epoch,
        "epochs": p.epochs,
        "loss": nan_null(p.loss),
        "samples_per_sec": p.samples_per_sec,
        "lr": p.lr,
        "val_loss": nan_null(p.val_loss),
        "ranks": p.ranks.iter().map(|r| json!({
            "rank": r.rank,
            "worker_id": r.worker_id,
            "step": r.step,
            "loss": nan_null(r.loss),
            "samples_per_sec": r.samples_per_sec,
            "compute_seconds": r.compute_seconds,
            "comm_seconds": r.comm_seconds,
            "reported_ms": r.reported_ms,
        })).collect::<Vec<_>>(),
    })
}

fn result_json(r: &JobResult) -> Value {
    let report: Value = serde_json::from_str(&r.report_json).unwrap_or(Value::Null);
    json!({
        "metrics": r.metrics,
        "report": report,
        "checkpoint_dir": r.checkpoint_dir,
        "steps": r.steps,
        "stop_reason": r.stop_reason,
        "samples_per_sec": r.samples_per_sec,
    })
}

/// A job as JSON (the spec text is left out of listings; `full` keeps it).
pub(crate) fn job_json(j: &Job, full: bool) -> Value {
    let mut v = json!({
        "id": j.id,
        "name": j.name,
        "state": state_name(j.state),
        "reason": j.reason,
        "world": j.world,
        "attempt": j.attempt,
        "max_restarts": j.max_restarts,
        "owner": j.owner,
        "workers": j.workers,
        "submitted_ms": j.submitted_ms,
        "started_ms": j.started_ms,
        "finished_ms": j.finished_ms,
        "history": j.history.iter().map(|h| json!({
            "state": state_name(h.state),
            "reason": h.reason,
            "at_ms": h.at_ms,
        })).collect::<Vec<_>>(),
        "progress": j.progress.as_ref().map(progress_json),
        "result": j.result.as_ref().map(result_json),
        "base_dir": j.base_dir,
    });
    if full {
        v["spec"] = json!(j.spec);
    }
    v
}

/// A worker as JSON.
pub(crate) fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "state": worker_state_name(w.state),
        "peer_address": w.peer_address,
        "metrics_address": w.metrics_address,
        "version": w.version,
        "threads": w.resources.as_ref().map(|r| r.threads),
        "gpus": w.resources.as_ref().map(|r| r.gpus),
        "job_id": w.job_id,
        "rank": w.rank,
        "registered_ms": w.registered_ms,
        "last_seen_ms": w.last_seen_ms,
    })
}

/// A log line as JSON.
pub(crate) fn log_json(l: &LogLine) -> Value {
    json!({
        "seq": l.seq,
        "at_ms": l.at_ms,
        "rank": l.rank,
        "level": level_name(l.level),
        "message": l.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "n\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}\r";

    #[test]
    fn pipeline_run_lines_become_the_bubble_table() {
        let line = "pipeline stage 1 of 2 over the run: steps=12 busy_s=0.250 idle_s=0.050 \
                    bubble=0.1667 ideal=0.2000 microbatches=4 activation_bytes=1024";
        let fields = pipeline_run_fields(line).expect("a run summary");
        assert_eq!(fields["bubble"], "0.1667");
        assert_eq!(fields["steps"], "12");
        // The windowed lines every 100 steps and other log lines are not summaries.
        assert!(pipeline_run_fields("pipeline stage 1 of 2: 100 steps to step 100, ...").is_none());
        assert!(pipeline_run_fields("epoch 1 step 3: train_loss=0.5").is_none());
        let runs = BTreeMap::from([(3, fields)]);
        let text = pipeline_table(&runs, 2).to_string();
        assert!(text.contains("stage 1 of replica 1"), "{text}");
        assert!(text.contains("0.1667") && text.contains("0.2000"), "{text}");
    }

    #[test]
    fn unsafe_characters_are_escaped_and_plain_text_is_kept() {
        assert_eq!(safe("gpu-3:7071 ünïcode"), "gpu-3:7071 ünïcode");
        let s = safe(HOSTILE);
        assert!(!s.chars().any(is_unsafe), "{s:?}");
        assert_eq!(s, "n\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{9b}31m\\u{202e}\\r");
        assert_eq!(safe("a\nb"), "a\\nb");
        assert_eq!(safe_lines("a\n\tb\u{1b}"), "a\n\tb\\u{1b}");
    }

    #[test]
    fn tables_and_log_lines_never_carry_escape_sequences() {
        let worker = WorkerInfo {
            id: "w-1".into(),
            name: HOSTILE.into(),
            peer_address: HOSTILE.into(),
            metrics_address: HOSTILE.into(),
            job_id: HOSTILE.into(),
            ..WorkerInfo::default()
        };
        let job = Job {
            id: "job-1".into(),
            name: HOSTILE.into(),
            reason: HOSTILE.into(),
            ..Job::default()
        };
        let line = LogLine {
            rank: 0,
            message: format!("multi\nline {HOSTILE}"),
            ..LogLine::default()
        };
        for text in [
            workers_table(&[worker]).to_string(),
            jobs_table(&[job]).to_string(),
            log_text(&line),
        ] {
            // comfy-table draws with box characters only; no control character but newlines
            // (rows) may remain.
            assert!(!text.chars().any(|c| c != '\n' && is_unsafe(c)), "{text:?}");
            assert!(text.contains("owned"), "{text}");
        }
        assert!(log_text(&line).starts_with("rank 0: multi\nline n\\u{1b}]0;owned"));
    }
}
