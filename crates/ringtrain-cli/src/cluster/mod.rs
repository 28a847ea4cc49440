//! Cluster commands: the gRPC client side (`submit`, `status`, `watch`, `logs`, `cancel`,
//! `workers`), the two services (`coordinator`, `worker`) and `local`, which runs a whole cluster
//! as child processes on 127.0.0.1. Everything here talks to the coordinator through the public
//! proto (`proto/ringtrain/v1/job.proto`, `cluster.proto`), exactly as any generated client would.

pub(crate) mod client;
pub(crate) mod local;
pub(crate) mod render;
pub(crate) mod serve;
pub(crate) mod sweep;
pub(crate) mod tls;
pub(crate) mod watch;

use anyhow::{Context, Result};
use ringtrain_proto::auth::Secret;
use ringtrain_proto::v1::cluster_service_client::ClusterServiceClient;
use ringtrain_proto::v1::job_service_client::JobServiceClient;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use tonic::transport::Channel;

/// Default coordinator address of the client commands (the scheme follows the TLS flags).
pub(crate) const DEFAULT_COORDINATOR: &str = "127.0.0.1:7070";

/// How long a client waits for the coordinator to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of a unary client call (streams have none: they end with the job).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable holding a client token (when no `--token-file` is given).
pub(crate) const TOKEN_ENV: &str = "RINGTRAIN_TOKEN";
/// Environment variable holding the cluster secret (when no `--cluster-secret-file` is given).
pub(crate) const CLUSTER_SECRET_ENV: &str = "RINGTRAIN_CLUSTER_SECRET";

/// `--coordinator`, the TLS flags and `--token-file` of every client command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CoordinatorArg {
    /// Coordinator gRPC address: host:port, http://host:port, or https://host:port (TLS).
    #[arg(long, env = "RINGTRAIN_COORDINATOR", default_value = DEFAULT_COORDINATOR, global = true)]
    pub(crate) coordinator: String,
    #[command(flatten)]
    pub(crate) tls: tls::TlsArgs,
    /// File holding this user's client token (mode 600), for a coordinator with
    /// --client-tokens-file. Default: the token in the RINGTRAIN_TOKEN environment variable.
    #[arg(long, env = "RINGTRAIN_TOKEN_FILE", value_name = "FILE", global = true)]
    pub(crate) token_file: Option<PathBuf>,
}

impl CoordinatorArg {
    /// Loads the client token every later call of this process carries.
    pub(crate) fn init_token(&self) -> Result<()> {
        if let Some(token) = load_secret(self.token_file.as_deref(), TOKEN_ENV, "client token")? {
            set_token(token);
        }
        Ok(())
    }
}

/// The client token of this process (set once, before the first call).
static TOKEN: OnceLock<Secret> = OnceLock::new();

/// Makes every later job API call carry `token` (the first one set wins).
pub(crate) fn set_token(token: Secret) {
    let _ = TOKEN.set(token);
}

/// A secret from `file` (which only its owner may read), else from the environment variable
/// `env`, else none. Never from the command line, where other users could read it.
pub(crate) fn load_secret(
    file: Option<&Path>,
    env: &str,
    what: &'static str,
) -> Result<Option<Secret>> {
    if let Some(path) = file {
        return Ok(Some(Secret::from_file(path, what)?));
    }
    match std::env::var(env) {
        Ok(text) => Ok(Some(Secret::new(
            &text,
            &format!("environment variable {env}"),
        )?)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("environment variable {env} is not UTF-8 text")
        }
    }
}

/// Adds the client token, if any, to a request.
fn authorize<T>(req: &mut tonic::Request<T>) {
    if let Some(token) = TOKEN.get() {
        ringtrain_proto::auth::set_header(
            req.metadata_mut(),
            ringtrain_proto::auth::AUTHORIZATION_HEADER,
            &format!("Bearer {}", token.expose()),
        );
    }
}

/// A streaming request (no deadline: it ends with the job) with the client token.
pub(crate) fn stream_request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    authorize(&mut req);
    req
}

impl CoordinatorArg {
    /// A plain-TCP coordinator at `addr` (what `ringtrain local` talks to on loopback).
    pub(crate) fn plain(addr: &str) -> CoordinatorArg {
        CoordinatorArg {
            coordinator: addr.to_string(),
            tls: tls::TlsArgs::default(),
            // `local` installs its run's token with `set_token` instead.
            token_file: None,
        }
    }
}

/// Normalizes "host:port" to "http://host:port", or "https://host:port" with `tls`.
pub(crate) fn url(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// Opens a channel to the coordinator, failing within [`CONNECT_TIMEOUT`] with the address named.
/// A plain connection the server answers with garbage is reported as a probable TLS mismatch.
pub(crate) async fn channel(coordinator: &CoordinatorArg) -> Result<Channel> {
    let tls = coordinator.tls.load(false)?;
    let url = url(&coordinator.coordinator, tls.is_some());
    let connected = ringtrain_proto::tls::endpoint(&url, tls.as_ref())
        .with_context(|| format!("{url:?} is not a usable coordinator address"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // A watch stream has no deadline (jobs run for hours); keep-alives notice a dead
        // coordinator or network instead.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect()
        .await;
    connected.with_context(|| format!("connecting to the coordinator at {url}"))
}

/// A job-service client for the coordinator.
pub(crate) async fn jobs(coordinator: &CoordinatorArg) -> Result<JobServiceClient<Channel>> {
    Ok(JobServiceClient::new(channel(coordinator).await?).max_decoding_message_size(64 << 20))
}

/// A cluster-service client for the coordinator.
pub(crate) async fn cluster(coordinator: &CoordinatorArg) -> Result<ClusterServiceClient<Channel>> {
    Ok(ClusterServiceClient::new(channel(coordinator).await?))
}

/// A unary request with the client deadline and the client token set.
pub(crate) fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(CALL_TIMEOUT);
    authorize(&mut req);
    req
}

/// Turns a gRPC status into an error that says what was refused and why, without the noise of
/// tonic's Debug form.
pub(crate) fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    let mut detail = status.message().to_string();
    // A broken connection arrives as a status whose message is only "transport error"; the
    // reason (e.g. a TLS alert) is in its sources.
    let mut source = std::error::Error::source(&status);
    while let Some(s) = source {
        let text = s.to_string();
        if !detail.contains(&text) {
            detail = format!("{detail}: {text}");
        }
        source = s.source();
    }
    let hint = match status.code() {
        tonic::Code::Cancelled
        | tonic::Code::Unknown
        | tonic::Code::Unavailable
        | tonic::Code::Internal
            if status.metadata().is_empty() =>
        {
            " (the connection failed before the coordinator answered: if it uses TLS, give \
             --tls-ca, and --tls-cert/--tls-key when it requires client certificates)"
        }
        _ => "",
    };
    anyhow::anyhow!("{what}: {detail} ({:?}){hint}", status.code())
}

/// A multi-threaded runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
