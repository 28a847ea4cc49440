//! `ringtrain watch JOB` (also `submit --watch` and `local`): follows a job's WatchJob stream and
//! shows it — one progress bar for the job plus a line per rank (step, loss, samples/s, compute vs
//! communication) on a terminal, periodic log lines otherwise — then the final metrics tables.
//! A broken stream is re-opened a few times (the coordinator may be restarting) before giving up.

use super::render::{self, is_final, state_name};
use super::{request, status_error};
use crate::Output;
use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringtrain_proto::v1::job_event::Kind;
use ringtrain_proto::v1::{CancelJobRequest, Job, JobEvent, JobState, LogLevel, WatchJobRequest};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::watch;

/// Attempts to re-open a broken watch stream before failing.
const RECONNECTS: u32 = 6;

/// Arguments of `ringtrain watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// Job id.
    job: String,
    /// Output style (json: one event object per line).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    coordinator: super::CoordinatorArg,
}

/// What to print while following.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchMode {
    /// Progress display on stderr, final tables on stdout.
    Human,
    /// One JSON object per event on stdout.
    Events,
    /// Nothing until the end, then the final job as one JSON document `{"job": ...}`.
    FinalJson,
}

impl WatchMode {
    /// `--output table` → Human, `--output json` → FinalJson (scripts want the outcome).
    pub(crate) fn from_output(output: Output) -> WatchMode {
        match output {
            Output::Table => WatchMode::Human,
            Output::Json => WatchMode::FinalJson,
        }
    }
}

/// The job as it ended.
#[derive(Debug)]
pub(crate) struct WatchEnd {
    pub(crate) job: Job,
}

impl WatchEnd {
    /// Whether the job succeeded.
    pub(crate) fn succeeded(&self) -> bool {
        self.job.state == JobState::Succeeded as i32
    }
}

pub(crate) fn run(args: WatchArgs) -> Result<bool> {
    let mode = match args.output {
        Output::Table => WatchMode::Human,
        Output::Json => WatchMode::Events,
    };
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let end = follow(&args.coordinator, &args.job, mode, None).await?;
        Ok(end.succeeded())
    })
}

/// Follows `job_id` until it reaches a final state and prints it as `mode` says. When
/// `interrupt` turns true, cancels the job and keeps following until the coordinator confirms.
///
/// # Errors
/// The coordinator is unreachable (after [`RECONNECTS`] attempts) or does not know the job.
pub(crate) async fn follow(
    coordinator: &super::CoordinatorArg,
    job_id: &str,
    mode: WatchMode,
    mut interrupt: Option<watch::Receiver<bool>>,
) -> Result<WatchEnd> {
    let mut view = View::new(mode);
    let mut failures = 0u32;
    let mut cancelled = false;
    loop {
        let stream = async {
            let mut client = super::jobs(coordinator).await?;
            let stream = client
                .watch_job(super::stream_request(WatchJobRequest {
                    job_id: job_id.to_string(),
                }))
                .await
                .map_err(|s| status_error(&format!("watching job {job_id}"), s))?
                .into_inner();
            anyhow::Ok((client, stream))
        }
        .await;
        let (mut client, mut stream) = match stream {
            Ok(s) => s,
            Err(e) if failures < RECONNECTS && !e.to_string().contains("NotFound") => {
                failures += 1;
                view.note(&format!("{e:#}; retrying ({failures}/{RECONNECTS})"));
                tokio::time::sleep(Duration::from_secs(u64::from(failures))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            let next = match interrupt.as_mut() {
                Some(rx) if !cancelled => {
                    tokio::select! {
                        m = stream.message() => Some(m),
                        changed = rx.changed() => {
                            if changed.is_err() || *rx.borrow() {
                                cancelled = true;
                                view.note("interrupted: cancelling the job");
                                client
                                    .cancel_job(request(CancelJobRequest {
                                        job_id: job_id.to_string(),
                                        reason: "interrupted (Ctrl-C)".into(),
                                    }))
                                    .await
                                    .map_err(|s| status_error(&format!("cancelling job {job_id}"), s))?;
                            }
                            None
                        }
                    }
                }
                _ => Some(stream.message().await),
            };
            match next {
                None => continue,
                Some(Ok(Some(event))) => {
                    failures = 0;
                    if let Some(end) = view.event(event)? {
                        return Ok(end);
                    }
                }
                Some(Ok(None)) => {
                    // The server ends the stream only after the final event; an early end means
                    // it went away: re-open (the snapshot tells where the job is).
                    failures += 1;
                    if failures > RECONNECTS {
                        bail!(
                            "the watch stream of job {job_id} kept ending before the job finished"
                        );
                    }
                    break;
                }
                Some(Err(status)) => {
                    failures += 1;
                    if failures > RECONNECTS {
                        return Err(status_error(&format!("watching job {job_id}"), status));
                    }
                    view.note(&format!(
                        "watch stream broke ({}); retrying ({failures}/{RECONNECTS})",
                        status.message()
                    ));
                    tokio::time::sleep(Duration::from_secs(u64::from(failures))).await;
                    break;
                }
            }
        }
    }
}

/// The display state of one followed job.
struct View {
    mode: WatchMode,
    multi: Option<MultiProgress>,
    bar: Option<ProgressBar>,
    rank_lines: Vec<ProgressBar>,
    last_state: i32,
    last_logged_step: u64,
    /// Pipeline stages per replica, read from the snapshot's spec (later events leave it out).
    stages: usize,
    /// Pipelined ranks' run summaries (bubble, busy and idle time), for the final report.
    pipeline_runs: BTreeMap<u32, BTreeMap<String, String>>,
}

impl View {
    fn new(mode: WatchMode) -> View {
        let tty = mode == WatchMode::Human && std::io::stderr().is_terminal();
        let multi = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        View {
            mode,
            multi,
            bar: None,
            rank_lines: Vec::new(),
            last_state: 0,
            last_logged_step: 0,
            stages: 1,
            pipeline_runs: BTreeMap::new(),
        }
    }

    /// A line for people, above the bars on a terminal.
    fn note(&self, text: &str) {
        match (&self.multi, self.mode) {
            (Some(m), _) => {
                let _ = m.println(text);
            }
            (None, WatchMode::Human) => eprintln!("{text}"),
            (None, _) => tracing::info!("{text}"),
        }
    }

    fn event(&mut self, event: JobEvent) -> Result<Option<WatchEnd>> {
        let job = event.job.context("a watch event without its job")?;
        if !job.spec.is_empty() {
            self.stages = render::stages_of(&job);
        }
        if self.mode == WatchMode::Events {
            let kind = match Kind::try_from(event.kind) {
                Ok(Kind::Snapshot) => "snapshot",
                Ok(Kind::State) => "state",
                Ok(Kind::Progress) => "progress",
                Ok(Kind::Log) => "log",
                _ => "unknown",
            };
            let mut v = serde_json::json!({ "kind": kind, "job": render::job_json(&job, false) });
            if let Some(l) = &event.log {
                v["log"] = render::log_json(l);
            }
            println!("{v}");
        }
        if let Some(l) = &event.log
            && let Ok(rank) = u32::try_from(l.rank)
            && let Some(fields) = render::pipeline_run_fields(&l.message)
        {
            self.pipeline_runs.insert(rank, fields);
        }
        if self.mode == WatchMode::Human {
            // Debug lines (every checkpoint written, ...) stay in `ringtrain logs`.
            if let Some(l) = &event.log
                && l.level != LogLevel::Debug as i32
            {
                self.note(&render::log_text(l));
            }
            if job.state != self.last_state {
                let reason = if job.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", render::safe_lines(&job.reason))
                };
                self.note(&format!(
                    "{} {}{}",
                    render::safe(&job.id),
                    state_name(job.state),
                    reason
                ));
            }
            self.progress(&job);
        }
        self.last_state = job.state;
        if !is_final(job.state) {
            return Ok(None);
        }
        self.finish();
        match self.mode {
            WatchMode::FinalJson => {
                println!(
                    "{}",
                    serde_json::json!({ "job": render::job_json(&job, false) })
                )
            }
            WatchMode::Human => {
                if let Some(r) = &job.result {
                    render::print_result(r);
                }
                if let Some(p) = &job.progress
                    && !p.ranks.is_empty()
                {
                    println!("{}", render::ranks_table(&p.ranks, self.stages));
                }
                if !self.pipeline_runs.is_empty() {
                    println!("\npipeline bubble per rank (idle / (busy + idle) of its stage):");
                    println!(
                        "{}",
                        render::pipeline_table(&self.pipeline_runs, self.stages)
                    );
                }
            }
            WatchMode::Events => {}
        }
        Ok(Some(WatchEnd { job }))
    }

    fn progress(&mut self, job: &Job) {
        let Some(p) = &job.progress else { return };
        match &self.multi {
            Some(multi) => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(p.total_steps));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} steps {msg} ETA {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(job.id.clone());
                    bar
                });
                bar.set_length(p.total_steps);
                bar.set_position(p.step);
                bar.set_message(format!(
                    "epoch {}/{} loss {:.4} {:.0} samples/s",
                    (p.epoch + 1).min(p.epochs.max(1)),
                    p.epochs,
                    p.loss,
                    p.samples_per_sec
                ));
                while self.rank_lines.len() < p.ranks.len() {
                    let line = multi.add(ProgressBar::new_spinner());
                    line.set_style(ProgressStyle::with_template("  {msg}").expect("valid"));
                    self.rank_lines.push(line);
                }
                let stages = self.stages;
                for (line, r) in self.rank_lines.iter().zip(&p.ranks) {
                    let at = if stages > 1 {
                        format!(
                            ", stage {} of replica {}",
                            r.rank as usize % stages,
                            r.rank as usize / stages
                        )
                    } else {
                        String::new()
                    };
                    line.set_message(format!(
                        "rank {} ({}{at}): step {} loss {:.4} {:.0} samples/s, compute {:.2} ms + comm {:.2} ms per step",
                        r.rank,
                        r.worker_id,
                        r.step,
                        r.loss,
                        r.samples_per_sec,
                        r.compute_seconds * 1e3,
                        r.comm_seconds * 1e3
                    ));
                }
            }
            None => {
                // Without a terminal: a line about every 10 % of the run, and at the end.
                let every = (p.total_steps / 10).max(1);
                if p.step >= self.last_logged_step + every
                    || (p.step == p.total_steps && p.step > self.last_logged_step)
                {
                    self.last_logged_step = p.step;
                    let ranks: Vec<String> = p
                        .ranks
                        .iter()
                        .map(|r| {
                            format!(
                                "rank {}: {:.2} ms compute + {:.2} ms comm",
                                r.rank,
                                r.compute_seconds * 1e3,
                                r.comm_seconds * 1e3
                            )
                        })
                        .collect();
                    self.note(&format!(
                        "{} step {}/{} epoch {}/{} loss {:.5} {:.0} samples/s | {}",
                        job.id,
                        p.step,
                        p.total_steps,
                        (p.epoch + 1).min(p.epochs.max(1)),
                        p.epochs,
                        p.loss,
                        p.samples_per_sec,
                        ranks.join(" | ")
                    ));
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        for line in self.rank_lines.drain(..) {
            line.finish_and_clear();
        }
    }
}
