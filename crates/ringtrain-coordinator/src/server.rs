//! The async shell around the state machine: configuration, start-up (open the store, restore
//! the machine, bind the gRPC and metrics listeners), the lease ticker, and `Shared::apply`,
//! the one path by which an event reaches the machine: the event runs under one lock, its
//! effects are committed to SQLite in one transaction, and only then are workers woken, watchers
//! told and the RPC answered.

use crate::auth::{Auth, SessionGuard};
use crate::machine::{Effect, JobChange, JobState, Machine, MachineConfig, MachineError};
use crate::metrics::{self, Metrics};
use crate::service::{self, ClusterApi, JobApi};
use crate::store::{Store, StoreError};
use ringtrain_core::{JobId, WorkerId};
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::tls::TlsConfig;
use ringtrain_proto::v1::JobEvent;
use ringtrain_proto::v1::cluster_service_server::ClusterServiceServer;
use ringtrain_proto::v1::job_service_server::JobServiceServer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;

/// Largest request any coordinator service decodes (larger ones are refused by tonic with
/// OUT_OF_RANGE before reaching a handler).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest job spec text SubmitJob accepts (RESOURCE_EXHAUSTED above).
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// How long shutdown waits for in-flight calls before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings of a coordinator (the `ringtrain coordinator` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// gRPC address (port 0 = ephemeral; see [`RunningCoordinator::grpc_addr`]).
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
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
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
                    source,
                })?;
        let grpc_addr = listener
            .local_addr()
            .map_err(|source| CoordinatorError::Bind {
                addr: config.listen,
                what: "gRPC",
                source,
            })?;
        let metrics_task = match config.metrics_listen {
            Some(addr) => {
                let (l, local) =
                    metrics::bind(addr)
                        .await
                        .map_err(|source| CoordinatorError::Bind {
                            addr,
                            what: "metrics",
                            source,
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
                .add_service(rendezvous)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    stopped(&mut stop).await;
                })
                .await
                .map_err(|e| CoordinatorError::Serve(e.to_string()))
        });

        warn_if_open(&config, grpc_addr);
        let ticker = tokio::spawn(ticker(shared.clone(), shutdown_rx));
        tracing::info!(%grpc_addr, metrics = ?metrics_task.as_ref().map(|m| m.0), tls = config.tls.is_some(), "coordinator listening");
        Ok(RunningCoordinator {
            grpc_addr,
            #[cfg(feature = "fault-injection")]
            failing_commits,
            metrics_addr: metrics_task.as_ref().map(|m| m.0),
            shutdown: shutdown_tx,
            server: Some(server),
            tasks: [Some(ticker), metrics_task.map(|m| m.1)]
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

/// Mutable state behind one lock.
pub(crate) struct Core {
    /// The state machine.
    pub(crate) machine: Machine,
    /// Its durable copy.
    pub(crate) store: Store,
    /// Per worker: wakes its held heartbeat.
    wakers: HashMap<WorkerId, Arc<Notify>>,
    /// Per watched job: the event channel.
    watchers: HashMap<JobId, broadcast::Sender<JobEvent>>,
    /// The machine may hold effects of an event whose commit failed: it must be rebuilt from
    /// the store before anything reads it or feeds it another event.
    stale: bool,
}

impl Core {
    /// Replaces a stale machine by one restored from the store, exactly as at a coordinator
    /// start ([`Machine::restore`]): the machine then holds only committed state. Every held
    /// heartbeat is woken, so workers re-read their (possibly withdrawn) commands at once.
    ///
    /// # Errors
    /// UNAVAILABLE when the store cannot be read or the restore's own effects cannot be
    /// committed; the core stays stale and the next call tries again.
    fn ensure_restored(&mut self) -> Result<(), Status> {
        if !self.stale {
            return Ok(());
        }
        let unavailable = |e: StoreError| {
            to_status(
                ErrorKind::Unavailable,
                format!("coordinator cannot restore its state: {e}"),
            )
        };
        let loaded = self.store.load().map_err(unavailable)?;
        let mut machine = Machine::restore(
            self.machine.config(),
            loaded.jobs,
            loaded.workers,
            0,
            0,
            now_ms(),
        );
        machine.carry_undelivered_starts(&self.machine);
        let effects = machine.drain_effects();
        self.store.apply(&machine, &effects).map_err(unavailable)?;
        self.machine = machine;
        self.stale = false;
        for waker in self.wakers.values() {
            waker.notify_one();
        }
        tracing::warn!("coordinator state restored from the state database after a failed write");
        Ok(())
    }
}

/// Capacity of a job's watch channel; a slower watcher lags and catches up from the job itself.
const WATCH_CAPACITY: usize = 256;

/// Everything the services share.
pub(crate) struct Shared {
    core: Mutex<Core>,
    pub(crate) config: CoordinatorConfig,
    pub(crate) metrics: Metrics,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Credential checks of every service.
    pub(crate) auth: Auth,
}

impl Shared {
    /// The locked core (a poisoned lock is taken over: the machine's invariants hold between
    /// events, and every event completes or returns before a panic could interrupt it).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one event on the machine, commits its effects, then wakes workers, tells watchers
    /// and updates the metrics. The RPC may be acknowledged once this returns Ok.
    ///
    /// # Errors
    /// The event's own refusal as a status, or UNAVAILABLE when the state database write
    /// failed (the RPC is then not acknowledged).
    pub(crate) fn apply<T>(
        &self,
        event: impl FnOnce(&mut Machine, i64) -> Result<T, MachineError>,
    ) -> Result<T, Status> {
        let mut core = self.lock();
        let core = &mut *core;
        core.ensure_restored()?;
        let out = event(&mut core.machine, now_ms());
        let effects = core.machine.drain_effects();
        if let Err(e) = core.store.apply(&core.machine, &effects) {
            tracing::error!(error = %e, "state database write failed; the request is not acknowledged");
            // The event changed the machine but not the store: throw the machine away and
            // rebuild it from what is committed (the restart path), so nothing of the refused
            // event can be read, scheduled or written later.
            core.stale = true;
            if let Err(again) = core.ensure_restored() {
                tracing::error!(error = %again.message(), "state not restored yet; every call is refused until it is");
            } else {
                self.metrics.observe(&core.machine);
            }
            return Err(to_status(
                ErrorKind::Unavailable,
                format!("coordinator cannot write its state: {e}"),
            ));
        }
        for effect in &effects {
            match effect {
                Effect::Wake(worker) => {
                    core.wakers
                        .entry(worker.clone())
                        .or_insert_with(|| Arc::new(Notify::new()))
                        .notify_one();
                }
                Effect::Transition { job, from, change } => {
                    tracing::info!(job = %job, state = %change.state, reason = %change.reason, "job state");
                    if *from == Some(JobState::Queued)
                        && change.state == JobState::Starting
                        && let Some(j) = core.machine.job(job)
                    {
                        self.metrics
                            .queue_wait((change.at_ms - j.submitted_ms) as f64 / 1000.0);
                    }
                }
                Effect::Log { job, line } => {
                    tracing::info!(job = %job, rank = line.rank, seq = line.seq, "{}", line.message);
                }
                Effect::Publish { job, change, log } => {
                    publish(core, job, *change, log.as_ref());
                }
                Effect::SaveJob(_) | Effect::SaveWorker(_) => {}
            }
        }
        self.metrics.observe(&core.machine);
        out.map_err(|e| machine_status(&e))
    }

    /// The locked core for a read, once its machine holds only committed state (see
    /// [`Core::ensure_restored`]).
    ///
    /// # Errors
    /// UNAVAILABLE while the machine cannot be restored from the state database.
    pub(crate) fn read(&self) -> Result<MutexGuard<'_, Core>, Status> {
        let mut core = self.lock();
        if core.stale {
            core.ensure_restored()?;
            self.metrics.observe(&core.machine);
        }
        Ok(core)
    }

    /// The notifier that wakes this worker's held heartbeat.
    pub(crate) fn waker(&self, worker: &WorkerId) -> Arc<Notify> {
        self.lock()
            .wakers
            .entry(worker.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Subscribes to a job's events; returns the snapshot taken under the same lock (so no event
    /// falls between them), or None when the job is final (nothing more will happen).
    pub(crate) fn subscribe(
        &self,
        job: &JobId,
    ) -> Result<
        (
            ringtrain_proto::v1::Job,
            Option<broadcast::Receiver<JobEvent>>,
        ),
        Status,
    > {
        let mut core = self.read()?;
        let snapshot = core
            .machine
            .job(job)
            .ok_or_else(|| machine_status(&MachineError::UnknownJob(job.clone())))?;
        let proto = service::job_to_proto(snapshot, true);
        if snapshot.state.is_final() {
            return Ok((proto, None));
        }
        let rx = core
            .watchers
            .entry(job.clone())
            .or_insert_with(|| broadcast::channel(WATCH_CAPACITY).0)
            .subscribe();
        Ok((proto, Some(rx)))
    }
}

/// Sends a job event to its watchers, if any; drops the channel after the final state.
fn publish(
    core: &mut Core,
    job: &JobId,
    change: JobChange,
    log: Option<&crate::machine::LogEntry>,
) {
    let Some(tx) = core.watchers.get(job) else {
        return;
    };
    let Some(j) = core.machine.job(job) else {
        return;
    };
    let final_state = j.state.is_final();
    if tx.receiver_count() > 0 {
        use ringtrain_proto::v1::job_event::Kind;
        let kind = match (change, log) {
            (JobChange::State, _) => Kind::State,
            (JobChange::Progress, Some(_)) => Kind::Log,
            (JobChange::Progress, None) => Kind::Progress,
        };
        let _ = tx.send(JobEvent {
            kind: kind as i32,
            job: Some(service::job_to_proto(j, false)),
            log: log.map(service::log_to_proto),
        });
    }
    // The final state is the last event a watcher gets: the channel goes with it (receivers
    // drain what is buffered, then see it closed), so later log lines of the same event are not
    // sent.
    if final_state && change == JobChange::State {
        core.watchers.remove(job);
    }
}

/// The status for a refused event.
pub(crate) fn machine_status(e: &MachineError) -> Status {
    let kind = match e {
        MachineError::UnknownJob(_)
        | MachineError::UnknownWorker(_)
        | MachineError::WorkerLost { .. } => ErrorKind::NotFound,
        MachineError::JobFinished { .. } | MachineError::NotAssigned { .. } => {
            ErrorKind::FailedPrecondition
        }
    };
    to_status(kind, e.to_string())
}

/// Resolves once shutdown was requested (or the coordinator is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here rather than across an await.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
