//! `ringtrain coordinator` and `ringtrain worker`: start a service, print one JSON "ready" line on
//! stdout with the bound addresses (so scripts and `ringtrain local` can use port 0), and run
//! until SIGINT/SIGTERM — or, with `--stop-on-stdin-eof`, until stdin closes, which is how
//! `ringtrain local` stops its children cleanly and how they notice that it died.

use anyhow::{Context, Result};
use ringtrain_spec::LimitsSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Arguments of `ringtrain coordinator`.
#[derive(Debug, clap::Args)]
pub(crate) struct CoordinatorArgs {
    /// gRPC address to serve the job, cluster and rendezvous services on (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// SQLite state file (created when missing). Jobs survive restarts through it.
    #[arg(long, default_value = "ringtrain.db")]
    state: PathBuf,
    /// Address of the Prometheus /metrics endpoint (none when not given).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// A worker not heard from for this long is lost and its job fails.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    lease_ms: u64,
    /// Longest a worker's heartbeat long poll is held without a command.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    heartbeat_wait_ms: u64,
    /// Deadline of every collective operation in the jobs' workers.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    collective_timeout_ms: u64,
    /// Every this many steps the ranks compare parameter checksums (0 = never).
    #[arg(long, default_value_t = 50)]
    checksum_every: u64,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Log lines the state database keeps per job (newest; older ones are deleted).
    #[arg(long, default_value_t = 10_000, value_name = "LINES", value_parser = clap::value_parser!(u64).range(1..))]
    log_retention: u64,
    /// MiB of log text the state database keeps per job (newest lines; the newest line is
    /// always kept).
    #[arg(long, default_value_t = 16, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=MAX_MIB))]
    log_retention_mb: u64,
    /// Shortest interval between two writes of a job's progress to the state database (the
    /// latest progress is always served from memory).
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    progress_interval_ms: u64,
    #[command(flatten)]
    tls: super::tls::ServerTlsArgs,
    /// File (mode 600) holding the cluster secret workers must present to register. Default:
    /// the RINGTRAIN_CLUSTER_SECRET environment variable; with neither, any worker may register.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// File (mode 600) of `user token` lines: with it, every job API call and `workers` needs
    /// one of these tokens (`authorization: Bearer`); without it, anyone may call them.
    #[arg(long, value_name = "FILE")]
    client_tokens_file: Option<PathBuf>,
    /// Stop cleanly when stdin reaches end of file (used by `ringtrain local`).
    #[arg(long, hide = true)]
    stop_on_stdin_eof: bool,
}

/// Arguments of `ringtrain worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// Coordinator gRPC address: host:port, http://host:port, or https://host:port (TLS).
    #[arg(long, env = "RINGTRAIN_COORDINATOR", default_value = super::DEFAULT_COORDINATOR)]
    coordinator: String,
    /// Address of this worker's collective peer endpoint (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:7071")]
    listen: SocketAddr,
    /// Host name or IP other workers dial (default: the listen IP; required when listening on
    /// 0.0.0.0 in a cluster, e.g. the pod or node name).
    #[arg(long)]
    advertise: Option<String>,
    /// Address of the Prometheus /metrics endpoint (none when not given).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Compute threads for training.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Name shown in `ringtrain workers` (default: host name and port).
    #[arg(long)]
    name: Option<String>,
    /// Write a Chrome-trace timeline of every rank this worker runs into this directory.
    #[arg(long, value_name = "DIR")]
    timeline_dir: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    budget: WorkerBudgetArgs,
    /// TLS: the peer port and /metrics serve with --tls-cert/--tls-key (which must name the
    /// advertised host), the coordinator and other workers are verified against --tls-ca.
    #[command(flatten)]
    tls: super::tls::ServerTlsArgs,
    /// File (mode 600) holding the cluster secret to present at registration. Default: the
    /// RINGTRAIN_CLUSTER_SECRET environment variable.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Stop cleanly when stdin reaches end of file (used by `ringtrain local`).
    #[arg(long, hide = true)]
    stop_on_stdin_eof: bool,
}

/// A worker's own resource budget, named like a spec's `[limits]` keys: every assigned spec is
/// checked against the lower of its `[limits]` and these before anything is built, and a spec
/// over them fails its job (with the estimate and the limit) while the worker keeps serving.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerBudgetArgs {
    /// Most model parameters of a job on this worker (as `limits.max_parameters`).
    #[arg(long, value_name = "N", default_value_t = LimitsSpec::DEFAULT_MAX_PARAMETERS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_parameters: u64,
    /// Most estimated training memory of a job on this worker, in MiB (as
    /// `limits.max_memory_mb`; parameters with gradients and optimizer state plus one batch's
    /// activations).
    #[arg(long, value_name = "MIB", default_value_t = LimitsSpec::DEFAULT_MAX_MEMORY_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MIB))]
    max_memory_mb: u64,
    /// Largest vocabulary of a job on this worker (as `limits.max_vocab`).
    #[arg(long, value_name = "N", default_value_t = LimitsSpec::DEFAULT_MAX_VOCAB,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_vocab: u64,
    /// Largest dataset file a job may read on this worker, in MiB (as `limits.max_data_mb`).
    #[arg(long, value_name = "MIB", default_value_t = LimitsSpec::DEFAULT_MAX_DATA_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MIB))]
    max_data_mb: u64,
}

/// Largest MiB value a budget flag takes (1 EiB: its byte count fits a u64).
const MAX_MIB: u64 = 1 << 40;

impl WorkerBudgetArgs {
    fn limits(&self) -> LimitsSpec {
        LimitsSpec {
            max_parameters: self.max_parameters,
            max_memory_bytes: self.max_memory_mb << 20,
            max_vocab: self.max_vocab,
            max_data_bytes: self.max_data_mb << 20,
        }
    }
}

/// The job sandbox of `coordinator` and `worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct SandboxArgs {
    /// Jobs may read data only under this directory (repeatable). Relative paths are taken
    /// from the current directory.
    #[arg(long = "data-root", value_name = "DIR")]
    data_roots: Vec<PathBuf>,
    /// Jobs may write checkpoints only under this directory (repeatable).
    #[arg(long = "checkpoint-root", value_name = "DIR")]
    checkpoint_roots: Vec<PathBuf>,
}

impl SandboxArgs {
    /// The roots as absolute paths; warns loudly when a kind is unrestricted.
    fn roots(&self, service: &str) -> Result<ringtrain_spec::Roots> {
        let abs = |dirs: &[PathBuf]| -> Result<Vec<PathBuf>> {
            dirs.iter()
                .map(|d| {
                    std::path::absolute(d)
                        .with_context(|| format!("resolving root {}", d.display()))
                })
                .collect()
        };
        let roots = ringtrain_spec::Roots {
            data: abs(&self.data_roots)?,
            checkpoint: abs(&self.checkpoint_roots)?,
        };
        if roots.data.is_empty() {
            tracing::warn!(
                "{service}: no --data-root: jobs may read ANY file this user can read; give \
                 --data-root DIR before exposing this service"
            );
        }
        if roots.checkpoint.is_empty() {
            tracing::warn!(
                "{service}: no --checkpoint-root: jobs may write checkpoints ANYWHERE this user \
                 can write; give --checkpoint-root DIR before exposing this service"
            );
        }
        Ok(roots)
    }
}

/// Resolves when the process should stop: Ctrl-C, SIGTERM, or (when asked) stdin closing.
async fn stop_signal(stdin_eof: bool) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let eof = async {
        if !stdin_eof {
            return std::future::pending::<()>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        // Anything read is ignored; only the end matters.
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupted; stopping"),
        () = term => tracing::info!("terminated; stopping"),
        () = eof => tracing::info!("stdin closed; stopping"),
    }
}

pub(crate) fn coordinator(args: CoordinatorArgs) -> Result<()> {
    let config = ringtrain_coordinator::CoordinatorConfig {
        listen: args.listen,
        state: args.state.clone(),
        metrics_listen: args.metrics_listen,
        lease: Duration::from_millis(args.lease_ms),
        heartbeat_wait: Duration::from_millis(args.heartbeat_wait_ms),
        collective_timeout: Duration::from_millis(args.collective_timeout_ms),
        checksum_every: args.checksum_every,
        roots: args.sandbox.roots("coordinator")?,
        retention: ringtrain_coordinator::Retention {
            log_lines_per_job: args.log_retention,
            log_bytes_per_job: args.log_retention_mb << 20,
            progress_interval: Duration::from_millis(args.progress_interval_ms),
        },
        tls: args.tls.load()?,
        cluster_secret: super::load_secret(
            args.cluster_secret_file.as_deref(),
            super::CLUSTER_SECRET_ENV,
            "cluster secret",
        )?,
        client_tokens: args
            .client_tokens_file
            .as_deref()
            .map(ringtrain_proto::auth::ClientTokens::from_file)
            .transpose()?,
    };
    if let Some(tokens) = &config.client_tokens {
        tracing::info!(users = ?tokens.users().collect::<Vec<_>>(), "job API needs client tokens");
    }
    super::runtime()?.block_on(async {
        let running = ringtrain_coordinator::Coordinator::start(config)
            .await
            .with_context(|| format!("starting the coordinator (state {})", args.state.display()))?;
        println!(
            "{}",
            serde_json::json!({
                "ready": "coordinator",
                "grpc": running.grpc_addr().to_string(),
                "metrics": running.metrics_addr().map(|a| a.to_string()),
            })
        );
        tracing::info!(grpc = %running.grpc_addr(), state = %args.state.display(), "coordinator ready");
        stop_signal(args.stop_on_stdin_eof).await;
        running.shutdown().await.context("stopping the coordinator")?;
        Ok(())
    })
}

pub(crate) fn worker(args: WorkerArgs) -> Result<()> {
    crate::set_threads(args.threads);
    ringtrain_collective::alloc::keep_freed_memory();
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}:{}", args.listen.port())
    });
    let tls = args.tls.load()?;
    let config = ringtrain_worker::WorkerConfig {
        coordinator: super::url(&args.coordinator, tls.is_some()),
        listen: args.listen,
        advertise_host: args.advertise.clone(),
        metrics_listen: args.metrics_listen,
        threads: args.threads,
        name,
        timeline_dir: args.timeline_dir.clone(),
        roots: args.sandbox.roots("worker")?,
        limits: args.budget.limits(),
        tls,
        cluster_secret: super::load_secret(
            args.cluster_secret_file.as_deref(),
            super::CLUSTER_SECRET_ENV,
            "cluster secret",
        )?,
    };
    if config.cluster_secret.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "NO CLUSTER SECRET: this worker registers without proving membership; pass --cluster-secret-file (or RINGTRAIN_CLUSTER_SECRET) on a network"
        );
    }
    super::runtime()?.block_on(async {
        let running = ringtrain_worker::Worker::start(config)
            .await
            .with_context(|| format!("starting a worker for {}", args.coordinator))?;
        println!(
            "{}",
            serde_json::json!({
                "ready": "worker",
                "id": running.worker_id().to_string(),
                "peer": running.peer_addr().to_string(),
                "metrics": running.metrics_addr().map(|a| a.to_string()),
            })
        );
        running
            .run_until(stop_signal(args.stop_on_stdin_eof))
            .await
            .context("worker")?;
        Ok(())
    })
}
