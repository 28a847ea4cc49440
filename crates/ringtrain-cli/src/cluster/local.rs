//! `ringtrain local JOB.toml --workers N`: a whole cluster on this machine. Starts a coordinator
//! and N workers as child processes of this binary on 127.0.0.1 with ephemeral ports, waits until
//! every worker registered, submits the job, follows it, prints the final metrics and stops the
//! children. Children are stopped by closing their stdin (they run with `--stop-on-stdin-eof`), so
//! they also stop when this process dies, even by SIGKILL; Ctrl-C cancels the job first. Every
//! run makes its own cluster secret and client token, and everything listens on loopback only.

use super::client;
use super::watch::{self, WatchMode};
use crate::Output;
use anyhow::{Context, Result, bail};
use ringtrain_proto::auth::Secret;
use ringtrain_proto::v1::WorkerState;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How long children get to print their ready line, and workers to register.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long children get to stop after their stdin closed before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Arguments of `ringtrain local`.
#[derive(Debug, clap::Args)]
pub(crate) struct LocalArgs {
    /// Job spec (TOML, or JSON when the file ends in .json).
    #[arg(required_unless_present = "sweep")]
    spec: Option<PathBuf>,
    /// Run a hyperparameter sweep (SWEEP.toml) instead of one job, and follow it to the end.
    #[arg(long, value_name = "SWEEP.toml", conflicts_with = "spec")]
    sweep: Option<PathBuf>,
    /// Worker processes to start (default: the job's parallel.data × parallel.pipeline; for a
    /// sweep, that of its base job × max_concurrent).
    #[arg(long)]
    workers: Option<usize>,
    /// Compute threads per worker.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Coordinator state file (default: a temporary one, removed afterwards).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Write a Chrome-trace timeline (compute, all-reduce, eval per rank) to this file; open it in
    /// chrome://tracing or https://ui.perfetto.dev.
    #[arg(long, value_name = "FILE.json")]
    timeline: Option<PathBuf>,
    /// Directory for the coordinator's and workers' log files (default: a temporary one, kept
    /// and named when the job fails).
    #[arg(long, value_name = "DIR")]
    logs_dir: Option<PathBuf>,
    /// Output style: tables, or the final job as one JSON document.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// A started child service: its process, the pipe whose closing stops it, and its ready line.
struct Service {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    ready: Value,
    log: PathBuf,
}

impl Service {
    /// Starts `ringtrain <args>` with `env` added to its environment and stderr to `log`, and
    /// waits for its JSON ready line.
    fn start(name: &str, args: &[String], env: &[(&str, &str)], log: &Path) -> Result<Service> {
        let exe = std::env::current_exe().context("locating the ringtrain binary")?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the log file {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(args)
            .arg("--stop-on-stdin-eof")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("child stdout")?;
        // Read the ready line on a thread so a child that never prints cannot block us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let got = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(got);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match outcome {
                    Err(_) => format!("did not start within {} s", START_TIMEOUT.as_secs()),
                    _ => "exited before it was ready".into(),
                };
                bail!(
                    "the {name} {why}; its log {}:\n{}",
                    log.display(),
                    tail(log)
                );
            }
        };
        let ready: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the {name} printed {line:?} instead of its ready line"))?;
        Ok(Service {
            name: name.to_string(),
            child,
            stdin,
            ready,
            log: log.to_path_buf(),
        })
    }

    /// Closes stdin (the stop request) without waiting.
    fn request_stop(&mut self) {
        self.stdin.take();
    }

    /// Waits for the child to exit after [`Service::request_stop`], killing it after
    /// [`STOP_TIMEOUT`]. Returns a complaint when it had to be killed or failed.
    fn wait_stopped(&mut self, deadline: Instant) -> Option<String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return None,
                Ok(Some(status)) => {
                    return Some(format!(
                        "the {} exited with {status}; log {}",
                        self.name,
                        self.log.display()
                    ));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Some(format!(
                        "the {} did not stop within {} s and was killed; log {}",
                        self.name,
                        STOP_TIMEOUT.as_secs(),
                        self.log.display()
                    ));
                }
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Last resort on early returns: never leave a child behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// What a local cluster runs: one job, or a sweep.
enum Work {
    Job(ringtrain_proto::v1::SubmitJobRequest, PathBuf),
    Sweep(PathBuf),
}

pub(crate) fn run(args: LocalArgs) -> Result<bool> {
    let work = match (&args.sweep, &args.spec) {
        (Some(sweep), _) => {
            // Validated here first, like a job spec: a bad sweep costs no cluster start-up.
            let s = ringtrain_sweep::load(sweep)?;
            let first =
                ringtrain_sweep::Point(s.params.iter().map(|p| p.dist.corners()[0]).collect());
            let (_, base) = ringtrain_sweep::trial_spec(&s, 0, &first)?;
            let world = base.parallel.data * base.parallel.pipeline;
            let workers = args.workers.unwrap_or(world * s.max_concurrent as usize);
            if workers < world {
                bail!(
                    "sweep {:?}: its trials need {world} workers, but --workers is {workers}",
                    s.name
                );
            }
            (Work::Sweep(sweep.clone()), workers)
        }
        (None, Some(spec)) => {
            let (request, workers) = job_request(&args, spec)?;
            (Work::Job(request, spec.clone()), workers)
        }
        (None, None) => bail!("give a job spec or --sweep SWEEP.toml"),
    };
    start_and_run(args, work)
}

/// The submit request of a job spec for a fresh local cluster, and the workers it needs.
fn job_request(
    args: &LocalArgs,
    spec_path: &Path,
) -> Result<(ringtrain_proto::v1::SubmitJobRequest, usize)> {
    // Validate here first: a bad spec should not cost a cluster start-up.
    let spec = ringtrain_spec::load(spec_path)?;
    {
        let spec_dir = crate::spec_dir(spec_path)?;
        let mut resolved = spec.clone();
        resolved.resolve_paths(&spec_dir);
        crate::fetch::require_data(&spec_dir, &resolved)?;
    }
    // A spec that does not place its runs gets the same directory as with `train` (see `runs`);
    // the workers read the spec text, so the directory is written into it. A coordinator with a
    // fresh state file numbers jobs from 1: an earlier `local` run's `job-1` must not be
    // overwritten, so the default directory moves on to `<name>-2`, ... and a directory the spec
    // names is refused when it already holds that job.
    let mut request = client::submit_request(spec_path)?;
    if !crate::runs::sets_checkpoint_dir(spec_path)? {
        let dir = if args.state.is_none() {
            crate::runs::fresh_default_dir(&spec.name)?
        } else {
            crate::runs::default_dir(&spec.name)?
        };
        request.spec = crate::runs::with_checkpoint_dir(spec_path, &request.spec, &dir)?;
    } else if args.state.is_none() {
        let mut resolved = spec.clone();
        resolved.resolve_paths(&crate::spec_dir(spec_path)?);
        let first = resolved.checkpoint.dir.join("job-1");
        if first.exists() {
            bail!(
                "checkpoint.dir {} already holds job-1 of an earlier `ringtrain local` run, which \
                 this fresh cluster would overwrite: move it away, choose another \
                 checkpoint.dir, or pass --state FILE to keep a cluster's job numbering across \
                 runs",
                resolved.checkpoint.dir.display()
            );
        }
    }
    let world = spec.parallel.data * spec.parallel.pipeline;
    let workers = args.workers.unwrap_or(world);
    if workers < world {
        bail!(
            "job {:?} needs {world} workers (parallel.data = {} × parallel.pipeline = {}), \
             but --workers is {workers}",
            spec.name,
            spec.parallel.data,
            spec.parallel.pipeline
        );
    }
    Ok((request, workers))
}

fn start_and_run(args: LocalArgs, (work, workers): (Work, usize)) -> Result<bool> {
    let scratch = tempfile::Builder::new()
        .prefix("ringtrain-local-")
        .tempdir()
        .context("creating a temporary directory")?;
    let logs_dir = match &args.logs_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => scratch.path().to_path_buf(),
    };
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| scratch.path().join("ringtrain.db"));
    let timeline_dir = scratch.path().join("timeline");

    // A fresh cluster secret and client token per run: other users of this machine can reach
    // loopback ports too. Children get the secret in their environment (readable only by this
    // user) and the coordinator its tokens file in the private scratch directory.
    let secret = Secret::generate()?;
    let token = Secret::generate()?;
    let tokens_file = scratch.path().join("client-tokens");
    write_private(&tokens_file, &format!("local {}\n", token.expose()))?;
    super::set_token(token);
    let secret_env = [(super::CLUSTER_SECRET_ENV, secret.expose())];

    let mut coordinator = Service::start(
        "coordinator",
        &[
            "coordinator".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--state".into(),
            state.display().to_string(),
            "--client-tokens-file".into(),
            tokens_file.display().to_string(),
        ],
        &secret_env,
        &logs_dir.join("coordinator.log"),
    )?;
    let addr = coordinator.ready["grpc"]
        .as_str()
        .context("the coordinator's ready line has no grpc address")?
        .to_string();
    tracing::info!(coordinator = %addr, workers, "starting a local cluster");
    let mut services = Vec::new();
    for i in 0..workers {
        let mut worker_args = vec![
            "worker".to_string(),
            "--coordinator".into(),
            addr.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--threads".into(),
            args.threads.to_string(),
            "--name".into(),
            format!("local-{i}"),
        ];
        if args.timeline.is_some() {
            worker_args.push("--timeline-dir".into());
            worker_args.push(timeline_dir.display().to_string());
        }
        services.push(Service::start(
            &format!("worker {i}"),
            &worker_args,
            &secret_env,
            &logs_dir.join(format!("worker-{i}.log")),
        )?);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    ctrlc::set_handler(move || {
        if stop_tx.send_replace(true) {
            // Second Ctrl-C: leave now; the children see their stdin close and stop.
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: cancelling the job (Ctrl-C again to leave at once)");
    })
    .context("installing the Ctrl-C handler")?;

    // The local cluster listens on loopback only, so it stays plain TCP.
    let coordinator_arg = super::CoordinatorArg::plain(&addr);
    let outcome = super::runtime()?.block_on(async {
        wait_for_workers(&coordinator_arg, workers).await?;
        match work {
            Work::Job(request, spec) => {
                let job = client::submit_prepared(&coordinator_arg, &spec, request).await?;
                tracing::info!(job = %job.id, "submitted");
                watch::follow(
                    &coordinator_arg,
                    &job.id,
                    WatchMode::from_output(args.output),
                    Some(stop_rx),
                )
                .await
                .map(|end| {
                    let what = format!(
                        "job {} {}: {}",
                        end.job.id,
                        super::render::state_name(end.job.state),
                        end.job.reason
                    );
                    (end.succeeded(), what)
                })
            }
            Work::Sweep(path) => {
                let sweep = super::sweep::submit_file(&coordinator_arg, &path).await?;
                tracing::info!(sweep = %sweep.id, "submitted");
                let ok = super::sweep::follow(&coordinator_arg, &sweep.id).await?;
                Ok((ok, format!("sweep {} did not succeed", sweep.id)))
            }
        }
    });

    // Stop everything, workers first so none reports into a stopped coordinator.
    for s in &mut services {
        s.request_stop();
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut complaints: Vec<String> = services
        .iter_mut()
        .filter_map(|s| s.wait_stopped(deadline))
        .collect();
    coordinator.request_stop();
    complaints.extend(coordinator.wait_stopped(Instant::now() + STOP_TIMEOUT));
    for c in &complaints {
        tracing::warn!("{c}");
    }

    if let Some(out) = &args.timeline {
        let files: Vec<PathBuf> = std::fs::read_dir(&timeline_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        ringtrain_worker::timeline::merge(&files, out)
            .with_context(|| format!("writing the timeline {}", out.display()))?;
        tracing::info!(timeline = %out.display(), ranks = files.len(), "timeline written");
    }

    let keep_logs = |why: &str| {
        if args.logs_dir.is_none() {
            // Keep the temporary directory: its logs explain the failure.
            let kept = scratch.keep();
            eprintln!(
                "{why}; coordinator and worker logs kept in {}",
                kept.display()
            );
        }
    };
    match outcome {
        Ok((true, _)) => Ok(true),
        Ok((false, what)) => {
            keep_logs(&what);
            Ok(false)
        }
        Err(e) => {
            keep_logs("the local cluster failed");
            Err(e)
        }
    }
}

/// Writes a file only this user may read (created with mode 600 on Unix).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Waits until `n` workers are registered and idle, or fails naming how many came.
async fn wait_for_workers(coordinator: &super::CoordinatorArg, n: usize) -> Result<()> {
    let mut client = super::cluster(coordinator).await?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let workers = super::client::list_all_workers(&mut client).await?;
        let idle = workers
            .iter()
            .filter(|w| w.state == WorkerState::Idle as i32)
            .count();
        if idle >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {idle} of {n} workers registered within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
