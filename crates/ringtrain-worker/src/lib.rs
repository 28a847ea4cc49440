//! The ringtrain worker: a long-running process that registers with the coordinator, keeps one
//! heartbeat long poll in flight, and runs the ranks of data-parallel jobs it is assigned.
//!
//! A rank parses the job spec, joins the job's rendezvous and forms a gRPC ring with the other
//! ranks (the peer endpoint is bound once at start, so the address registered with the coordinator
//! stays true), then trains on a blocking thread with [`ringtrain_train::train_distributed`]: rank
//! 0's initial parameters are broadcast, gradients are averaged by a fused ring all-reduce every
//! step, evaluation shards are summed, parameter checksums are compared every
//! `Assignment.checksum_every` steps, and rank 0 writes the checkpoints and `metrics.json`. While
//! it trains it reports progress about once a second and at each epoch end, and it ends with one
//! result report: success (rank 0 carries the metrics), failure (naming this rank and, for a
//! collective error, the blamed peer) or stopped.
//!
//! Observability: a Prometheus endpoint ([`metrics`]), tracing spans `worker.job{job,rank,attempt}`
//! and `worker.train_step{job,rank,step}` (the collective library's spans nest inside), and an
//! optional Chrome-trace timeline per rank ([`timeline`]).
//!
//! Entry point: [`Worker::start`]. The process-wide settings are the caller's job: the compute
//! thread pool, signal handlers, and `ringtrain_collective::alloc::keep_freed_memory()` at process
//! start.

mod agent;
mod control;
pub mod group;
mod job;
pub mod metrics;
mod shared;
pub mod timeline;

pub use agent::{RunningWorker, Worker};
pub use group::{CommGroup, CommLink, GridPlace};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How to run a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's URL, e.g. `http://10.0.0.5:7070`.
    pub coordinator: String,
    /// Where to serve the collective peer endpoint; port 0 picks a free port, which is kept for
    /// the worker's lifetime (the registered address stays true).
    pub listen: SocketAddr,
    /// Host name or IP other workers dial to reach the peer endpoint. `None`: the listen IP, or,
    /// when that is a wildcard (`0.0.0.0`, `::`), the local IP of the route to the coordinator.
    pub advertise_host: Option<String>,
    /// Where to serve `/metrics` (Prometheus text format); `None` serves nothing. Port 0 picks a
    /// free port.
    pub metrics_listen: Option<SocketAddr>,
    /// Compute threads the worker trains with (reported to the coordinator; the caller sizes the
    /// thread pool).
    pub threads: usize,
    /// Human-readable name sent at registration.
    pub name: String,
    /// When set, every rank writes its Chrome-trace timeline
    /// `<dir>/<job>-rank<r>.trace.json` there.
    pub timeline_dir: Option<PathBuf>,
    /// The job sandbox: directories a job may read data from and write checkpoints under,
    /// checked (symlinks resolved) before a rank opens anything. Empty lists: no restriction
    /// (the CLI warns at start).
    pub roots: ringtrain_spec::Roots,
    /// This worker's own resource budget. Every assigned spec is checked against the lower of
    /// its own `[limits]` and these, before anything is read or built; a spec over it fails its
    /// job with the estimate and the limit, and the worker keeps serving. The lower limits are
    /// also what the job's data readers and checkpoint loading enforce.
    pub limits: ringtrain_spec::LimitsSpec,
    /// TLS for everything the worker serves and dials (`None`: plain TCP): the peer endpoint
    /// and `/metrics` serve with its certificate (which must name the advertised host), the
    /// coordinator and other workers are verified against its CA, and its certificate is the
    /// client certificate under mutual TLS. Needs both a certificate and a CA.
    pub tls: Option<ringtrain_proto::tls::TlsConfig>,
    /// The cluster secret, presented at registration (required by a coordinator that has one).
    pub cluster_secret: Option<ringtrain_proto::auth::Secret>,
}

/// Why a worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration cannot work (e.g. a malformed coordinator URL, TLS settings without a
    /// certificate or a CA).
    #[error("worker configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {error}")]
    Bind {
        /// `peer connections` or `metrics`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// The coordinator could not be reached in time.
    #[error("coordinator {url} unreachable after {after:?}: {detail}")]
    Unreachable {
        /// The coordinator URL.
        url: String,
        /// How long the worker tried.
        after: Duration,
        /// The last error.
        detail: String,
    },
    /// The coordinator refused the registration (e.g. a different protocol version).
    #[error("coordinator {url} refused the registration: {message}")]
    Refused {
        /// The coordinator URL.
        url: String,
        /// The coordinator's message.
        message: String,
    },
    /// The Prometheus recorder could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A background task of the worker panicked.
    #[error("worker task failed: {0}")]
    Task(String),
}
