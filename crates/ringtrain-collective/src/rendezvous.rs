//! Rendezvous without a coordinator: one process serves [`RendezvousServer`] (the gRPC service
//! `ringtrain.v1.RendezvousService`), every rank calls [`join`] with the address of its own peer
//! endpoint and gets back the full table once all ranks of the session registered. The service is
//! a plain tonic service, so the coordinator can mount it later next to its own.

use crate::error::{CollectiveError, Result};
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::tls::{self, TlsConfig};
use ringtrain_proto::v1::rendezvous_service_client::RendezvousServiceClient;
use ringtrain_proto::v1::rendezvous_service_server::{RendezvousService, RendezvousServiceServer};
use ringtrain_proto::v1::{JoinRequest, JoinResponse};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Longest a single `Join` may wait on the server, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Peer table of one session: an address per rank, `None` until that rank registers.
type Table = watch::Sender<Vec<Option<String>>>;

/// The rendezvous service: sessions by name, each a table of peer addresses by rank.
#[derive(Debug, Default, Clone)]
pub struct RendezvousServer {
    sessions: Arc<Mutex<HashMap<String, Table>>>,
}

impl RendezvousServer {
    /// An empty server.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tonic service to mount on a `tonic::transport::Server`.
    pub fn into_service(self) -> RendezvousServiceServer<RendezvousServer> {
        RendezvousServiceServer::new(self)
    }

    fn register(&self, req: &JoinRequest) -> Result<watch::Receiver<Vec<Option<String>>>, Status> {
        let invalid = |m: String| to_status(ErrorKind::InvalidArgument, m);
        if req.world == 0 || req.rank >= req.world {
            return Err(invalid(format!(
                "rank {} is outside a world of {}",
                req.rank, req.world
            )));
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let table = sessions
            .entry(req.session.clone())
            .or_insert_with(|| watch::Sender::new(vec![None; req.world as usize]));
        let mut refused = None;
        table.send_if_modified(|peers| {
            if peers.len() != req.world as usize {
                refused = Some(format!(
                    "rank {} says world {} but session {:?} has world {}",
                    req.rank,
                    req.world,
                    req.session,
                    peers.len()
                ));
                return false;
            }
            match &peers[req.rank as usize] {
                Some(addr) if *addr == req.peer_address => false,
                Some(addr) => {
                    refused = Some(format!(
                        "rank {} already registered at {addr}, not {}",
                        req.rank, req.peer_address
                    ));
                    false
                }
                None => {
                    peers[req.rank as usize] = Some(req.peer_address.clone());
                    true
                }
            }
        });
        match refused {
            Some(m) => Err(invalid(m)),
            None => Ok(table.subscribe()),
        }
    }
}

fn response(peers: &[Option<String>]) -> JoinResponse {
    let missing: Vec<u32> = (0..peers.len() as u32)
        .filter(|r| peers[*r as usize].is_none())
        .collect();
    JoinResponse {
        complete: missing.is_empty(),
        peers: peers
            .iter()
            .map(|p| p.clone().unwrap_or_default())
            .collect(),
        missing_ranks: missing,
    }
}

#[tonic::async_trait]
impl RendezvousService for RendezvousServer {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = request.into_inner();
        let mut rx = self.register(&req)?;
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        // Ok or not, answer with the table as it stands: the client turns gaps into an error.
        let _ = tokio::time::timeout(wait, rx.wait_for(|p| p.iter().all(Option::is_some))).await;
        let peers = rx.borrow().clone();
        Ok(Response::new(response(&peers)))
    }
}

/// A rendezvous server running on a background task; dropping the handle stops it.
#[derive(Debug)]
pub struct RendezvousHandle {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RendezvousHandle {
    /// The address ranks pass to [`join`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RendezvousHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves a fresh [`RendezvousServer`] on `listener` in a background task (needs a tokio runtime).
/// Errors when the listener's address cannot be read.
pub fn spawn(listener: TcpListener) -> Result<RendezvousHandle> {
    spawn_with(listener, None)
}

/// [`spawn`], over TLS when `tls` is given (ranks then [`join_with`] the same settings).
/// Errors when the listener's address cannot be read or `tls` has no certificate to serve with.
pub fn spawn_with(listener: TcpListener, tls: Option<&TlsConfig>) -> Result<RendezvousHandle> {
    let addr = listener
        .local_addr()
        .map_err(|e| CollectiveError::Transport(format!("rendezvous listener: {e}")))?;
    let service = RendezvousServer::new().into_service();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let settings = tls
            .server()
            .map_err(|e| CollectiveError::Transport(format!("rendezvous: {e}")))?;
        builder = builder
            .tls_config(settings)
            .map_err(|e| CollectiveError::Transport(format!("rendezvous TLS: {e}")))?;
    }
    let task = tokio::spawn(async move {
        let incoming = TcpListenerStream::new(listener);
        if let Err(e) = builder
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "rendezvous server stopped");
        }
    });
    Ok(RendezvousHandle { addr, task })
}

/// Registers `rank` of `session` (with `world` ranks) at the rendezvous `address` ("host:port") and
/// returns every rank's peer address, indexed by rank. Retries connecting until `wait` runs out
/// (the server may start after the ranks). Errors: [`CollectiveError::RendezvousTimeout`] naming
/// the ranks that never joined, [`CollectiveError::Rendezvous`] when refused or unreachable.
pub async fn join(
    address: &str,
    session: &str,
    rank: u32,
    world: u32,
    peer_address: &str,
    wait: Duration,
) -> Result<Vec<String>> {
    join_with(address, None, session, rank, world, peer_address, wait).await
}

/// [`join`] over TLS when `tls` is given (the server's certificate is verified against its CA,
/// and this rank's certificate is presented for mutual TLS). Errors as [`join`]; a TLS failure
/// (unknown CA, wrong name, refused client certificate) is reported with its cause.
pub async fn join_with(
    address: &str,
    tls: Option<&TlsConfig>,
    session: &str,
    rank: u32,
    world: u32,
    peer_address: &str,
    wait: Duration,
) -> Result<Vec<String>> {
    let started = tokio::time::Instant::now();
    let failed = |detail: String| CollectiveError::Rendezvous {
        address: address.to_string(),
        rank,
        detail,
    };
    let endpoint = tls::endpoint(address, tls).map_err(|e| failed(e.to_string()))?;
    let mut client = loop {
        match endpoint.connect().await {
            Ok(c) => break RendezvousServiceClient::new(c),
            Err(e) if started.elapsed() >= wait => return Err(failed(error_chain(&e))),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let remaining = wait.saturating_sub(started.elapsed());
    let reply = client
        .join(JoinRequest {
            session: session.to_string(),
            rank,
            world,
            peer_address: peer_address.to_string(),
            wait_ms: remaining.as_millis() as u64,
        })
        .await
        .map_err(|s| failed(s.message().to_string()))?
        .into_inner();
    if !reply.complete {
        return Err(CollectiveError::RendezvousTimeout {
            address: address.to_string(),
            rank,
            after: wait,
            missing: reply.missing_ranks,
        });
    }
    if reply.peers.len() != world as usize {
        return Err(failed(format!(
            "table has {} ranks, not {world}",
            reply.peers.len()
        )));
    }
    Ok(reply.peers)
}

/// An error and its causes, "outer: inner: innermost" (tonic's transport errors say only
/// "transport error" at the top; the reason, e.g. a refused certificate, is further down).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
