//! The coordinator's settings (the `ringtrain coordinator` flags) and request size limits: read
//! by start-up, the services and the shared state alike, so they sit below all of them.

use ringtrain_proto::tls::TlsConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest request any coordinator service decodes (larger ones are refused by tonic with
/// OUT_OF_RANGE before reaching a handler).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest job spec text SubmitJob accepts (RESOURCE_EXHAUSTED above).
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// Settings of a coordinator (the `ringtrain coordinator` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// gRPC address (port 0 = ephemeral; see [`RunningCoordinator::grpc_addr`](crate::RunningCoordinator::grpc_addr)).
    pub listen: SocketAddr,
    /// SQLite state file (created when absent).
    pub state: PathBuf,
    /// Prometheus endpoint address; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// A worker not heard from for this long is lost.
    pub lease: Duration,
    /// Longest a heartbeat is held when no command is pending (must be below `lease`).
    pub heartbeat_wait: Duration,
    /// Deadline of every collective operation, passed to workers.
    pub collective_timeout: Duration,
    /// Parameter checksum interval in steps, passed to workers (0 = never).
    pub checksum_every: u64,
    /// The job sandbox: a submitted spec whose `data.path` or `checkpoint.dir` resolves
    /// (lexically, against its base directory) outside these roots is refused at submit with
    /// INVALID_ARGUMENT naming the field. Empty lists: no check here (workers still check).
    pub roots: ringtrain_spec::Roots,
    /// What the state database keeps of progress and logs.
    pub retention: Retention,
    /// TLS for the gRPC port and the metrics endpoint (`None`: plain TCP). Client
    /// certificates are required when its `require_client_cert` is set.
    pub tls: Option<TlsConfig>,
    /// The cluster secret workers must present to register; `None` lets anyone who can reach
    /// the port register (a warning is logged when that port is not on loopback).
    pub cluster_secret: Option<ringtrain_proto::auth::Secret>,
    /// The users of the job API and their tokens; `None` lets anyone who can reach the port use
    /// it (a warning is logged when that port is not on loopback).
    pub client_tokens: Option<ringtrain_proto::auth::ClientTokens>,
}

/// Bounds on what the state database keeps per job (the `ringtrain coordinator --log-retention`
/// and `--progress-interval-ms` flags), so that however much or however fast workers (or
/// forged clients) report, the file stays bounded by the number of jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Log lines kept per job (newest); older lines are deleted when newer ones are written.
    /// Default 10,000; at least 1.
    pub log_lines_per_job: u64,
    /// Bytes of log text kept per job (newest lines; the newest line is always kept). Default
    /// [`crate::store::DEFAULT_LOG_BYTE_RETENTION`] (16 MiB).
    pub log_bytes_per_job: u64,
    /// Shortest interval between two writes of a job's progress (its latest per-rank reports,
    /// one row per job). The latest report is always in memory and in `GetJob`; a coordinator
    /// crash loses at most this much progress. Default 1 s.
    pub progress_interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            log_lines_per_job: 10_000,
            log_bytes_per_job: crate::store::DEFAULT_LOG_BYTE_RETENTION,
            progress_interval: Duration::from_secs(1),
        }
    }
}

impl CoordinatorConfig {
    /// The defaults of the CLI: lease 10 s, heartbeat wait 1 s, collective timeout 60 s,
    /// checksum every 50 steps, no metrics endpoint, [`Retention::default`], no TLS.
    pub fn new(listen: SocketAddr, state: PathBuf) -> Self {
        CoordinatorConfig {
            listen,
            state,
            metrics_listen: None,
            lease: Duration::from_secs(10),
            heartbeat_wait: Duration::from_secs(1),
            collective_timeout: Duration::from_secs(60),
            checksum_every: 50,
            roots: ringtrain_spec::Roots::default(),
            retention: Retention::default(),
            tls: None,
            cluster_secret: None,
            client_tokens: None,
        }
    }
}
