//! The async shell around the state machine: start-up (open the store, restore the machine,
//! bind the gRPC and metrics listeners), the lease ticker and shutdown. The state the services
//! share, and the one path by which an event reaches the machine, are in `shared`.

use crate::auth::Auth;
use crate::clock::{ms, now_ms, stopped};
pub use crate::config::{CoordinatorConfig, MAX_REQUEST_BYTES, MAX_SPEC_BYTES, Retention};
use crate::machine::{Machine, MachineConfig};
use crate::metrics::{self, Metrics};
use crate::service::{ClusterApi, JobApi};
use crate::session::SessionGuard;
use crate::shared::{Core, Shared};
use crate::store::{Store, StoreError};
use ringtrain_proto::tls::TlsConfig;
use ringtrain_proto::v1::cluster_service_server::ClusterServiceServer;
use ringtrain_proto::v1::job_service_server::JobServiceServer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// How long shutdown waits for in-flight calls before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a coordinator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A setting is out of range.
    #[error("invalid coordinator setting: {0}")]
    Config(String),
    /// The state database cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {error}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Underlying error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(String),
    /// The TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] ringtrain_proto::tls::TlsError),
    /// The credential key could not be drawn.
    #[error(transparent)]
    Auth(#[from] ringtrain_proto::auth::AuthError),
}

/// The coordinator's entry point.
#[derive(Debug)]
pub struct Coordinator;

impl Coordinator {
    /// Opens the state database (restoring every job and worker it holds), binds the gRPC
    /// address (job, cluster and rendezvous services) and the metrics address, and starts
    /// serving and expiring leases in background tasks (needs a tokio runtime).
    ///
    /// # Errors
    /// [`CoordinatorError::Config`] for a lease not longer than the heartbeat wait (or zero
    /// durations), [`CoordinatorError::Store`] for an unusable state file,
    /// [`CoordinatorError::Bind`] when an address is taken.
    pub async fn start(config: CoordinatorConfig) -> Result<RunningCoordinator, CoordinatorError> {
        if config.heartbeat_wait.is_zero() || config.collective_timeout.is_zero() {
            return Err(CoordinatorError::Config(
                "heartbeat wait and collective timeout must be positive".into(),
            ));
        }
        if config.lease <= config.heartbeat_wait {
            return Err(CoordinatorError::Config(format!(
                "lease ({} ms) must be longer than the heartbeat wait ({} ms): a held heartbeat would outlive the lease",
                config.lease.as_millis(),
                config.heartbeat_wait.as_millis()
            )));
        }
        if config.retention.log_lines_per_job == 0 {
            return Err(CoordinatorError::Config(
                "log retention must keep at least 1 line per job".into(),
            ));
        }
        // TLS settings are checked before anything is opened, so a bad certificate fails fast.
        let server_tls = config.tls.as_ref().map(TlsConfig::server).transpose()?;
        let metrics_tls = match &config.tls {
            Some(tls) if config.metrics_listen.is_some() => {
                Some(tls.rustls_server_config(vec![b"http/1.1".to_vec()])?)
            }
            _ => None,
        };
        let machine_config = MachineConfig {
            lease_ms: ms(config.lease),
            collective_timeout_ms: ms(config.collective_timeout) as u64,
            checksum_every: config.checksum_every,
            progress_save_ms: ms(config.retention.progress_interval),
        };
        let state = config.state.clone();
        let mut store = tokio::task::spawn_blocking(move || Store::open(&state))
            .await
            .map_err(|e| CoordinatorError::Serve(format!("store task: {e}")))??;
        store.set_log_retention(config.retention.log_lines_per_job);
        store.set_log_byte_retention(config.retention.log_bytes_per_job);
        let key = store.credential_key(ringtrain_proto::auth::random_bytes()?)?;
        let auth = Auth::new(
            key,
            config.cluster_secret.clone(),
            config.client_tokens.clone(),
        );
        let loaded = store.load()?;
        let sweeps = crate::sweep::load(&store)?;
        let (jobs, workers) = (loaded.jobs.len(), loaded.workers.len());
        let mut machine =
            Machine::restore(machine_config, loaded.jobs, loaded.workers, 0, 0, now_ms());
        let effects = machine.drain_effects();
        store.apply(&machine, &effects)?;
        tracing::info!(
            state = %config.state.display(),
            jobs,
            workers,
            "coordinator state loaded"
        );

        #[cfg(feature = "fault-injection")]
        let failing_commits = store.failing_commits();
        let metrics = Metrics::new().map_err(CoordinatorError::Config)?;
        metrics.observe(&machine);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                machine,
                store,
                wakers: HashMap::new(),
                watchers: HashMap::new(),
                stale: false,
                sweeps,
            }),
            config: config.clone(),
            metrics,
            shutdown: shutdown_rx.clone(),
            auth,
        });

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| CoordinatorError::Bind {
                    addr: config.listen,
                    what: "gRPC",
                    error: source,
                })?;
        let grpc_addr = listener
            .local_addr()
            .map_err(|source| CoordinatorError::Bind {
                addr: config.listen,
                what: "gRPC",
                error: source,
            })?;
        let metrics_task = match config.metrics_listen {
            Some(addr) => {
                let (l, local) =
                    metrics::bind(addr)
                        .await
                        .map_err(|source| CoordinatorError::Bind {
                            addr,
                            what: "metrics",
                            error: source,
                        })?;
                let s = shared.clone();
                let task = tokio::spawn(metrics::serve(
                    l,
                    metrics_tls,
                    move || s.metrics.render(),
                    shutdown_rx.clone(),
                ));
                Some((local, task))
            }
            None => None,
        };

        let job_api = JobServiceServer::new(JobApi::new(shared.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let cluster_api = ClusterServiceServer::new(ClusterApi::new(shared.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let sweep_api = ringtrain_proto::v1::sweep_service_server::SweepServiceServer::new(
            crate::sweep_service::SweepApi::new(shared.clone()),
        )
        .max_decoding_message_size(MAX_REQUEST_BYTES);
        let guard = Arc::new(SessionGuard {
            shared: Arc::downgrade(&shared),
        });
        let rendezvous = ringtrain_collective::rendezvous::RendezvousServer::guarded(guard)
            .into_service()
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let mut stop = shutdown_rx.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = server_tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| CoordinatorError::Serve(format!("TLS settings: {e}")))?;
        }
        warn_if_exposed(
            grpc_addr,
            "gRPC (job, cluster and rendezvous services)",
            config.tls.is_some(),
        );
        if let Some((addr, _)) = &metrics_task {
            warn_if_exposed(*addr, "metrics", config.tls.is_some());
        }
        let server = tokio::spawn(async move {
            builder
                .add_service(job_api)
                .add_service(cluster_api)
                .add_service(sweep_api)
                .add_service(rendezvous)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    stopped(&mut stop).await;
                })
                .await
                .map_err(|e| CoordinatorError::Serve(e.to_string()))
        });

        warn_if_open(&config, grpc_addr);
        let sweeper = tokio::spawn(crate::sweep_service::run_driver(
            shared.clone(),
            shutdown_rx.clone(),
        ));
        let ticker = tokio::spawn(ticker(shared.clone(), shutdown_rx));
        tracing::info!(%grpc_addr, metrics = ?metrics_task.as_ref().map(|m| m.0), tls = config.tls.is_some(), "coordinator listening");
        Ok(RunningCoordinator {
            grpc_addr,
            #[cfg(feature = "fault-injection")]
            failing_commits,
            metrics_addr: metrics_task.as_ref().map(|m| m.0),
            shutdown: shutdown_tx,
            server: Some(server),
            tasks: [Some(ticker), Some(sweeper), metrics_task.map(|m| m.1)]
                .into_iter()
                .flatten()
                .collect(),
        })
    }
}

/// Logs a loud warning when `addr` is reachable from other machines while its traffic is plain
/// text: anyone on the network can read and forge it.
fn warn_if_exposed(addr: SocketAddr, what: &str, tls: bool) {
    if !tls && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "SECURITY: the coordinator's {what} port listens on a non-loopback address WITHOUT TLS; \
             anyone who can reach it can read and forge its traffic (give --tls-cert, --tls-key \
             and --tls-ca, or listen on 127.0.0.1)"
        );
    }
}

/// A started coordinator. Dropping it stops the background tasks (like [`Self::shutdown`],
/// without waiting).
#[derive(Debug)]
pub struct RunningCoordinator {
    grpc_addr: SocketAddr,
    /// Commits still to fail (shared with the store).
    #[cfg(feature = "fault-injection")]
    failing_commits: Arc<std::sync::atomic::AtomicU32>,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<Result<(), CoordinatorError>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningCoordinator {
    /// The address the gRPC services listen on (the bound port when 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Makes the next `n` commits of the state database fail as an SQLite IO error would
    /// (after the event's statements ran, before COMMIT); for tests of the rollback path.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_commits(&self, n: u32) {
        self.failing_commits
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// The address of the Prometheus endpoint, when one was configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops serving: held heartbeats and watch streams end, in-flight calls get
    /// five seconds to finish. Everything acknowledged is already in the state database.
    ///
    /// # Errors
    /// [`CoordinatorError::Serve`] when the server had failed.
    pub async fn shutdown(mut self) -> Result<(), CoordinatorError> {
        let _ = self.shutdown.send(true);
        self.join().await
    }

    /// Waits until the server stops (after [`Self::shutdown`] from elsewhere, or a failure).
    ///
    /// # Errors
    /// [`CoordinatorError::Serve`] when the server failed.
    pub async fn wait(mut self) -> Result<(), CoordinatorError> {
        let result = match self.server.as_mut() {
            Some(server) => server
                .await
                .map_err(|e| CoordinatorError::Serve(format!("server task: {e}")))
                .and_then(|r| r),
            None => Ok(()),
        };
        self.server = None;
        let _ = self.shutdown.send(true);
        self.join().await?;
        result
    }

    async fn join(&mut self) -> Result<(), CoordinatorError> {
        let mut result = Ok(());
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(Ok(r)) => result = r,
                Ok(Err(e)) => result = Err(CoordinatorError::Serve(format!("server task: {e}"))),
                Err(_) => {
                    tracing::warn!("in-flight calls did not finish within the shutdown grace");
                    server.abort();
                }
            }
        }
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!("a coordinator task did not stop within the shutdown grace");
            }
        }
        result
    }
}

impl Drop for RunningCoordinator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = &self.server {
            server.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Says loudly when a port others can reach takes calls from anyone.
fn warn_if_open(config: &CoordinatorConfig, addr: SocketAddr) {
    if addr.ip().is_loopback() {
        return;
    }
    if config.cluster_secret.is_none() {
        tracing::warn!(
            %addr,
            "NO CLUSTER SECRET on a non-loopback address: anyone who can reach this port can register as a worker and receive job specs; pass --cluster-secret-file"
        );
    }
    if config.client_tokens.is_none() {
        tracing::warn!(
            %addr,
            "NO CLIENT TOKENS on a non-loopback address: anyone who can reach this port can submit, list and cancel jobs; pass --client-tokens-file"
        );
    }
}

/// Expires leases and runs recorder upkeep, several times per lease.
async fn ticker(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period =
        (shared.config.lease / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        if let Err(status) = shared.apply(|m, now| {
            m.tick(now);
            Ok(())
        }) {
            tracing::error!(error = %status.message(), "lease tick failed");
        }
        shared.metrics.upkeep();
    }
}
