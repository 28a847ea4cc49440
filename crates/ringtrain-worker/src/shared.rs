//! What the worker's tasks share ([`Shared`]: settings, the coordinator client with this
//! worker's credential, the peer connection routing, the running rank's control), below both the
//! heartbeat loop (`agent`) and the rank (`job`) so that neither imports the other for it.

use crate::WorkerConfig;
use crate::control::JobControl;
use crate::metrics::WorkerMetrics;
use ringtrain_core::WorkerId;
use ringtrain_proto::auth;
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::cluster_service_client::ClusterServiceClient;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Accepted peer connections queued for the current rank's transport.
pub(crate) const ROUTE_DEPTH: usize = 64;

/// Adds this worker's credential (issued at registration; empty before) to every call.
#[derive(Clone, Default)]
pub(crate) struct Credential(Arc<Mutex<String>>);

impl Credential {
    pub(crate) fn set(&self, credential: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = credential;
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let credential = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !credential.is_empty() {
            auth::set_header(
                request.metadata_mut(),
                auth::WORKER_CREDENTIAL_HEADER,
                &credential,
            );
        }
        Ok(request)
    }
}

/// The cluster service client, with the worker's credential on every call.
pub(crate) type Client = ClusterServiceClient<InterceptedService<Channel, Credential>>;

/// Everything the worker's tasks share.
pub(crate) struct Shared {
    pub(crate) config: WorkerConfig,
    pub(crate) client: Client,
    pub(crate) id: Mutex<WorkerId>,
    /// Where the peer endpoint listens.
    pub(crate) peer_addr: SocketAddr,
    /// Host other workers dial (with `peer_addr`'s port).
    pub(crate) advertise_host: String,
    /// `host:port` of the coordinator (its rendezvous service).
    pub(crate) coordinator_host_port: String,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// Where accepted peer connections go: the current rank's transport, or nowhere.
    pub(crate) routes: Mutex<Option<mpsc::Sender<std::io::Result<TcpStream>>>>,
    pub(crate) current: Mutex<Option<Arc<JobControl>>>,
    /// The newest in-memory commit of an elastic job's rank; it outlives the rank, so that the
    /// job's next attempt (re-formed around this worker) continues from it.
    pub(crate) commit: Arc<ringtrain_train::CommitSlot>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.worker_id())
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The id the coordinator knows this worker by (it changes when the worker re-registers).
    pub(crate) fn worker_id(&self) -> WorkerId {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The advertised peer address, `host:port`.
    pub(crate) fn peer_address(&self) -> String {
        join_host_port(&self.advertise_host, self.peer_addr.port())
    }

    /// Routes accepted peer connections to a new transport; returns its incoming stream.
    pub(crate) fn open_route(&self) -> mpsc::Receiver<std::io::Result<TcpStream>> {
        let (tx, rx) = mpsc::channel(ROUTE_DEPTH);
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Stops routing peer connections (later ones are closed on arrival).
    pub(crate) fn close_route(&self) {
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn route(&self, stream: TcpStream) {
        let sender = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match sender {
            // A full queue means nobody is accepting: dropping the connection tells the dialer.
            Some(tx) => {
                let _ = tx.try_send(Ok(stream));
            }
            None => tracing::debug!("peer connection while no rank runs; closed"),
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<JobControl>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the running rank (called by its task once its result is reported).
    pub(crate) fn finish(&self, control: &Arc<JobControl>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, control)) {
            *current = None;
        }
        self.metrics.set_busy(false);
    }

    pub(crate) fn running(&self) -> Vec<pb::RunningRank> {
        self.current()
            .map(|c| pb::RunningRank {
                job_id: c.job_id.clone(),
                attempt: c.attempt,
                rank: c.rank,
            })
            .into_iter()
            .collect()
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
