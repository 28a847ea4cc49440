//! The worker's life with its coordinator: bind the peer and metrics endpoints, register, then
//! keep exactly one Heartbeat long poll in flight, starting the ranks it delivers and stopping the
//! ones it names. Every RPC has a deadline; an unreachable coordinator is retried with capped
//! exponential backoff (each failure logged), and a coordinator that no longer knows this worker
//! (NOT_FOUND, e.g. after its lease expired) gets a fresh registration.

use crate::control::{JobControl, StopCause};
use crate::job;
use crate::metrics::WorkerMetrics;
use crate::shared::{Client, Credential, Shared, join_host_port};
use crate::{WorkerConfig, WorkerError};
use ringtrain_core::WorkerId;
use ringtrain_proto::auth::{self, Secret};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::cluster_service_client::ClusterServiceClient;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;
use tracing::Instrument;

/// Deadline of a registration call.
const REGISTER_DEADLINE: Duration = Duration::from_secs(10);
/// How long [`Worker::start`] keeps trying to register before giving up.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// A heartbeat may be held `heartbeat_wait`; this much more and the call is abandoned.
const HEARTBEAT_MARGIN: Duration = Duration::from_secs(5);
/// First and longest pause between attempts to reach an unreachable coordinator.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// On shutdown, how long a running rank may take to stop beyond its collective deadline.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The coordinator URL's `host:port` (default port by scheme).
fn host_port(url: &str) -> Result<String, WorkerError> {
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| WorkerError::Config(format!("coordinator URL {url:?}: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| WorkerError::Config(format!("coordinator URL {url:?} has no host")))?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(join_host_port(host, port))
}

/// The host peers should dial: the configured one, the listen IP, or for a wildcard listen IP the
/// local IP of the route to the coordinator (a connected UDP socket sends nothing).
async fn advertise_host(config: &WorkerConfig, coordinator: &str) -> Result<String, WorkerError> {
    if let Some(h) = &config.advertise_host {
        return Ok(h.clone());
    }
    let ip = config.listen.ip();
    if !ip.is_unspecified() {
        return Ok(ip.to_string());
    }
    let unknown = |detail: String| {
        WorkerError::Config(format!(
            "listening on {} but cannot tell which address other workers reach this one at \
             ({detail}); give the advertised host (--advertise HOST)",
            config.listen
        ))
    };
    let target = tokio::net::lookup_host(coordinator)
        .await
        .map_err(|e| unknown(format!("resolving {coordinator}: {e}")))?
        .next()
        .ok_or_else(|| unknown(format!("{coordinator} resolves to nothing")))?;
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| unknown(e.to_string()))?;
    socket
        .connect(target)
        .await
        .map_err(|e| unknown(format!("no route to {target}: {e}")))?;
    let local = socket.local_addr().map_err(|e| unknown(e.to_string()))?;
    Ok(local.ip().to_string())
}

/// Checks that TLS settings can serve and dial (a worker does both: its peer port serves, and it
/// dials the coordinator and other workers); returns the rustls settings of `/metrics`.
fn check_tls(
    config: &WorkerConfig,
) -> Result<Option<Arc<ringtrain_telemetry::TlsServerConfig>>, WorkerError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    if !tls.can_serve() || !tls.can_dial() {
        return Err(WorkerError::Config(
            "a worker with TLS needs a certificate and key (--tls-cert, --tls-key: its peer port \
             serves with them) and the cluster's CA (--tls-ca: to verify the coordinator and the \
             other workers)"
                .into(),
        ));
    }
    let metrics = tls
        .rustls_server_config(vec![b"http/1.1".to_vec()])
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    Ok(config.metrics_listen.is_some().then_some(metrics))
}

/// Logs a loud warning when `addr` is reachable from other machines while its traffic is plain
/// text: anyone on the network can read and forge it.
fn warn_if_exposed(addr: SocketAddr, what: &str, tls: bool) {
    if !tls && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "SECURITY: the worker's {what} port listens on a non-loopback address WITHOUT TLS; \
             anyone who can reach it can read and forge its traffic (give --tls-cert, --tls-key \
             and --tls-ca, or listen on 127.0.0.1)"
        );
    }
}

/// Capped exponential backoff.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    failures: u32,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_MIN,
            failures: 0,
        }
    }
    fn reset(&mut self) {
        *self = Backoff::new();
    }
    /// The pause before the next attempt (and the number of failures so far).
    fn fail(&mut self) -> (Duration, u32) {
        let wait = self.next;
        self.failures += 1;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        (wait, self.failures)
    }
}

/// How a registration attempt ended.
enum RegisterError {
    /// Worth retrying (coordinator down, deadline).
    Transient(String),
    /// The coordinator said no; retrying would not help.
    Refused(String),
}

async fn register_once(
    shared_parts: &RegisterParts,
) -> Result<pb::RegisterWorkerResponse, RegisterError> {
    let request = pb::RegisterWorkerRequest {
        protocol_version: pb::ProtocolVersion::Current as u32,
        version: env!("CARGO_PKG_VERSION").to_string(),
        name: shared_parts.name.clone(),
        peer_address: shared_parts.peer_address.clone(),
        metrics_address: shared_parts
            .metrics_addr
            .map(|a| a.to_string())
            .unwrap_or_default(),
        resources: Some(pb::Resources {
            threads: shared_parts.threads as u32,
            gpus: 0,
            memory_bytes: 0,
        }),
    };
    let mut request = tonic::Request::new(request);
    if let Some(secret) = &shared_parts.cluster_secret {
        auth::set_header(
            request.metadata_mut(),
            auth::CLUSTER_SECRET_HEADER,
            secret.expose(),
        );
    }
    let mut client = shared_parts.client.clone();
    match tokio::time::timeout(REGISTER_DEADLINE, client.register_worker(request)).await {
        Err(_) => Err(RegisterError::Transient(format!(
            "no answer within {REGISTER_DEADLINE:?}"
        ))),
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            shared_parts.credential.set(resp.credential.clone());
            Ok(resp)
        }
        Ok(Err(status)) => match status.code() {
            Code::FailedPrecondition
            | Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated => Err(RegisterError::Refused(status.message().to_string())),
            _ => Err(RegisterError::Transient(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        },
    }
}

/// What a registration sends.
#[derive(Clone)]
struct RegisterParts {
    client: Client,
    /// Proves membership at registration (when the coordinator has one).
    cluster_secret: Option<Secret>,
    /// Where the issued credential goes (the client's interceptor reads it).
    credential: Credential,
    url: String,
    name: String,
    peer_address: String,
    metrics_addr: Option<SocketAddr>,
    threads: usize,
}

/// Registers, retrying transient failures with backoff until `limit` (if any) runs out or
/// `shutdown` turns true (then `Ok(None)`).
async fn register(
    parts: &RegisterParts,
    limit: Option<Duration>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<pb::RegisterWorkerResponse>, WorkerError> {
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        let attempt = tokio::select! {
            r = register_once(parts) => r,
            _ = shutdown.wait_for(|s| *s) => return Ok(None),
        };
        match attempt {
            Ok(resp) => return Ok(Some(resp)),
            Err(RegisterError::Refused(message)) => {
                return Err(WorkerError::Refused {
                    url: parts.url.clone(),
                    message,
                });
            }
            Err(RegisterError::Transient(detail)) => {
                let (wait, failures) = backoff.fail();
                if limit.is_some_and(|l| started.elapsed() + wait > l) {
                    return Err(WorkerError::Unreachable {
                        url: parts.url.clone(),
                        after: started.elapsed(),
                        detail,
                    });
                }
                tracing::warn!(
                    coordinator = %parts.url,
                    failures,
                    retry_in_ms = wait.as_millis() as u64,
                    error = %detail,
                    "registration failed; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(None),
                }
            }
        }
    }
}

/// Starts workers.
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// Binds the peer endpoint (and the metrics endpoint when configured), registers with the
    /// coordinator (retrying for up to 30 s while it is unreachable) and starts the heartbeat loop
    /// in the background. Needs a tokio runtime with IO and time enabled.
    ///
    /// # Errors
    /// [`WorkerError::Config`] for a malformed coordinator URL or an unknown advertised host,
    /// [`WorkerError::Bind`], [`WorkerError::Unreachable`], [`WorkerError::Refused`] (e.g. a
    /// different protocol version; the message names both), [`WorkerError::Metrics`].
    pub async fn start(config: WorkerConfig) -> Result<RunningWorker, WorkerError> {
        let coordinator_host_port = host_port(&config.coordinator)?;
        let metrics_tls = check_tls(&config)?;
        let endpoint = ringtrain_proto::tls::endpoint(&config.coordinator, config.tls.as_ref())
            .map_err(|e| {
                WorkerError::Config(format!("coordinator URL {:?}: {e}", config.coordinator))
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let credential = Credential::default();
        let client =
            ClusterServiceClient::with_interceptor(endpoint.connect_lazy(), credential.clone());
        let peer_listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| WorkerError::Bind {
                    what: "peer connections",
                    addr: config.listen,
                    error: source,
                })?;
        let peer_addr = peer_listener
            .local_addr()
            .map_err(|source| WorkerError::Bind {
                what: "peer connections",
                addr: config.listen,
                error: source,
            })?;
        let metrics = Arc::new(WorkerMetrics::new().map_err(WorkerError::Metrics)?);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| WorkerError::Bind {
                            what: "metrics",
                            addr,
                            error: source,
                        })?;
                let local = listener.local_addr().map_err(|source| WorkerError::Bind {
                    what: "metrics",
                    addr,
                    error: source,
                })?;
                tasks.push(tokio::spawn(crate::metrics::serve(
                    listener,
                    metrics_tls.clone(),
                    metrics.clone(),
                    shutdown_rx.clone(),
                )));
                Some(local)
            }
            None => None,
        };
        warn_if_exposed(peer_addr, "peer", config.tls.is_some());
        if let Some(addr) = metrics_addr {
            warn_if_exposed(addr, "metrics", config.tls.is_some());
        }
        let advertise_host = advertise_host(&config, &coordinator_host_port).await?;
        let parts = RegisterParts {
            client: client.clone(),
            cluster_secret: config.cluster_secret.clone(),
            credential,
            url: config.coordinator.clone(),
            name: config.name.clone(),
            peer_address: join_host_port(&advertise_host, peer_addr.port()),
            metrics_addr,
            threads: config.threads,
        };
        let mut shutdown_wait = shutdown_rx.clone();
        let registered = register(&parts, Some(START_DEADLINE), &mut shutdown_wait)
            .await?
            .ok_or_else(|| WorkerError::Task("shut down while registering".into()))?;
        tracing::info!(
            worker = %registered.worker_id,
            coordinator = %config.coordinator,
            peer = %parts.peer_address,
            metrics = ?metrics_addr,
            "registered"
        );
        let shared = Arc::new(Shared {
            config,
            client,
            id: Mutex::new(WorkerId::new(registered.worker_id.clone())),
            peer_addr,
            advertise_host,
            coordinator_host_port,
            metrics_addr,
            metrics,
            routes: Mutex::new(None),
            current: Mutex::new(None),
            commit: Arc::new(ringtrain_train::CommitSlot::new()),
        });
        tasks.push(tokio::spawn(accept_loop(
            peer_listener,
            shared.clone(),
            shutdown_rx.clone(),
        )));
        let agent = tokio::spawn(heartbeat_loop(
            shared.clone(),
            parts,
            Duration::from_millis(registered.heartbeat_wait_ms.max(1)),
            shutdown_rx,
        ));
        Ok(RunningWorker {
            shared,
            shutdown: shutdown_tx,
            agent,
            tasks,
        })
    }
}

/// A started worker. Dropping it without [`RunningWorker::shutdown`] leaves its tasks running
/// until the runtime stops.
#[derive(Debug)]
pub struct RunningWorker {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    agent: JoinHandle<Result<(), WorkerError>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningWorker {
    /// The id the coordinator assigned (a new one after a re-registration).
    pub fn worker_id(&self) -> WorkerId {
        self.shared.worker_id()
    }

    /// The address the peer endpoint is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer_addr
    }

    /// The peer address registered with the coordinator (`host:port` other workers dial).
    pub fn advertised_peer_address(&self) -> String {
        self.shared.peer_address()
    }

    /// The address `/metrics` is served on, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.shared.metrics_addr
    }

    /// Runs until `stop` completes (then shuts down as [`RunningWorker::shutdown`]) or the worker
    /// fails on its own.
    ///
    /// # Errors
    /// As [`RunningWorker::shutdown`]; [`WorkerError::Refused`] when a re-registration is refused.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> Result<(), WorkerError> {
        tokio::select! {
            () = stop => self.shutdown().await,
            joined = &mut self.agent => {
                let _ = self.shutdown.send(true);
                for t in self.tasks.drain(..) {
                    let _ = t.await;
                }
                joined.map_err(|e| WorkerError::Task(e.to_string()))?
            }
        }
    }

    /// Stops the worker: a running rank is told to stop at its next step boundary and reports a
    /// failure naming this worker (its peers stop with it); waits for it (bounded by its collective
    /// deadline plus a grace period), then closes the endpoints.
    ///
    /// # Errors
    /// [`WorkerError::Task`] if a background task panicked.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        let _ = self.shutdown.send(true);
        let result = self
            .agent
            .await
            .map_err(|e| WorkerError::Task(e.to_string()))?;
        for t in self.tasks {
            let _ = t.await;
        }
        result
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => shared.route(stream),
            Err(e) => {
                tracing::warn!(error = %e, "peer endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The heartbeat loop: one long poll in flight, commands handled as they arrive.
async fn heartbeat_loop(
    shared: Arc<Shared>,
    mut parts: RegisterParts,
    mut wait: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut backoff = Backoff::new();
    let mut job_task: Option<JoinHandle<()>> = None;
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        if job_task.as_ref().is_some_and(JoinHandle::is_finished) {
            job_task = None;
        }
        let request = pb::HeartbeatRequest {
            worker_id: shared.worker_id().to_string(),
            running: shared.running(),
        };
        let mut client = shared.client.clone();
        let call = tokio::time::timeout(wait + HEARTBEAT_MARGIN, client.heartbeat(request));
        let answer = tokio::select! {
            a = call => a,
            _ = shutdown.wait_for(|s| *s) => break Ok(()),
        };
        let failure = match answer {
            Ok(Ok(resp)) => {
                backoff.reset();
                let resp = resp.into_inner();
                for stop in resp.stop {
                    if let Some(c) = shared.current().filter(|c| c.job_id == stop.job_id) {
                        let cause = StopCause::Coordinator(stop.reason);
                        if stop.abort {
                            c.request_abort(cause);
                        } else {
                            c.request_stop(cause);
                        }
                    }
                }
                for assignment in resp.start {
                    start_rank(&shared, assignment, &mut job_task);
                }
                continue;
            }
            // UNAUTHENTICATED: a coordinator that cannot check this worker's credential (one
            // upgraded from a version without credentials); a new registration gets one.
            Ok(Err(status)) if matches!(status.code(), Code::NotFound | Code::Unauthenticated) => {
                tracing::warn!(
                    worker = %shared.worker_id(),
                    reason = status.message(),
                    "the coordinator no longer knows this worker; registering again"
                );
                if let Some(c) = shared.current() {
                    // Its lease ran out: the job went on (or failed) without this worker.
                    c.request_abort(StopCause::Coordinator(
                        "the coordinator no longer knows this worker".into(),
                    ));
                    // Register again only once the aborted rank is gone: a new registration
                    // is idle to the coordinator, which may hand it a rank at once (an elastic
                    // job growing back), and a worker still busy would have to refuse it.
                    if let Some(task) = job_task.as_mut() {
                        let limit = c.collective_timeout + STOP_GRACE;
                        if tokio::time::timeout(limit, task).await.is_err() {
                            tracing::warn!(after = ?limit, "the aborted rank did not end in time; registering anyway");
                        }
                    }
                }
                parts.metrics_addr = shared.metrics_addr;
                match register(&parts, None, &mut shutdown).await {
                    Ok(Some(resp)) => {
                        *shared.id.lock().unwrap_or_else(|e| e.into_inner()) =
                            WorkerId::new(resp.worker_id.clone());
                        wait = Duration::from_millis(resp.heartbeat_wait_ms.max(1));
                        tracing::info!(worker = %resp.worker_id, "registered again");
                        continue;
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => format!("no answer within {:?}", wait + HEARTBEAT_MARGIN),
        };
        let (pause, failures) = backoff.fail();
        tracing::warn!(
            coordinator = %shared.config.coordinator,
            failures,
            retry_in_ms = pause.as_millis() as u64,
            error = %failure,
            "heartbeat failed; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|s| *s) => break Ok(()),
        }
    };
    // Shutting down: the running rank stops at its next step boundary and reports.
    if let Some(task) = job_task {
        let limit = shared
            .current()
            .map_or(Duration::ZERO, |c| c.collective_timeout)
            + STOP_GRACE;
        if let Some(c) = shared.current() {
            c.request_stop(StopCause::Shutdown);
            tracing::info!(job = %c.job_id, rank = c.rank, "stopping the running rank");
        }
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::warn!(after = ?limit, "the running rank did not stop in time; leaving it");
        }
    }
    shared.close_route();
    result
}

/// Starts `assignment` unless a rank already runs (then it is refused with a failure report).
fn start_rank(
    shared: &Arc<Shared>,
    assignment: pb::Assignment,
    job_task: &mut Option<JoinHandle<()>>,
) {
    let busy = shared.current();
    if let Some(running) = busy {
        let message = format!(
            "rank {}: worker {} is busy with rank {} of job {}",
            assignment.rank,
            shared.worker_id(),
            running.rank,
            running.job_id
        );
        tracing::warn!(job = %assignment.job_id, "{message}");
        let shared = shared.clone();
        tokio::spawn(async move {
            job::report_result(&shared, &assignment, job::Outcome::failure(message, None)).await;
        });
        return;
    }
    let control = Arc::new(JobControl::new(&assignment));
    *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(control.clone());
    shared.metrics.set_busy(true);
    let span = tracing::info_span!(
        "worker.job",
        job = %assignment.job_id,
        rank = assignment.rank,
        attempt = assignment.attempt
    );
    let shared = shared.clone();
    *job_task = Some(tokio::spawn(
        async move {
            job::run(shared, assignment, control).await;
        }
        .instrument(span),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_urls_give_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:7070").unwrap(),
            "127.0.0.1:7070"
        );
        assert_eq!(host_port("http://coord").unwrap(), "coord:80");
        assert_eq!(host_port("https://coord").unwrap(), "coord:443");
        assert_eq!(host_port("http://[::1]:9").unwrap(), "[::1]:9");
        assert!(matches!(
            host_port("not a url"),
            Err(WorkerError::Config(_))
        ));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| b.fail().0).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        b.reset();
        assert_eq!(b.fail(), (BACKOFF_MIN, 1));
    }
}
