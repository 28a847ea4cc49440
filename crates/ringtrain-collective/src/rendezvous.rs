//! Rendezvous without a coordinator: one process serves [`RendezvousServer`] (the gRPC service
//! `ringtrain.v1.RendezvousService`), every rank calls [`join`] with the address of its own peer
//! endpoint and gets back the full table once all ranks of the session registered. The service is
//! a plain tonic service; the coordinator mounts it next to its own with a [`SessionGuard`] that
//! admits only its job attempts' sessions (token, world and rank checked). Memory is bounded
//! whatever joins arrive: a world is at most [`MAX_WORLD`] and tables fill only as ranks register,
//! a server holds at most [`MAX_SESSIONS`] sessions, and each expires [`SESSION_TTL`] after it
//! was created.

use crate::error::{CollectiveError, Result};
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::tls::{self, TlsConfig};
use ringtrain_proto::v1::rendezvous_service_client::RendezvousServiceClient;
use ringtrain_proto::v1::rendezvous_service_server::{RendezvousService, RendezvousServiceServer};
use ringtrain_proto::v1::{JoinRequest, JoinResponse};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Longest a single `Join` may wait on the server, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Largest world a session may have. A coordinator's guard bounds it further (to the job's world,
/// which only a job that got that many workers has); this bound keeps an unguarded server's
/// memory per session small, whatever a join claims.
pub const MAX_WORLD: u32 = 65_536;

/// Most sessions one server holds at once; a join that would create one more is refused with
/// RESOURCE_EXHAUSTED (expired sessions are dropped first).
pub const MAX_SESSIONS: usize = 4096;

/// A session is dropped this long after it was created (longer than any join may wait, so a
/// session is never dropped under a rank that is still waiting for the others).
pub const SESSION_TTL: Duration = Duration::from_secs(MAX_WAIT.as_secs() + 300);

/// Peer table of one session: an address per rank that registered (a map, so a large world
/// allocates nothing until ranks arrive).
type Table = watch::Sender<BTreeMap<u32, String>>;

/// One session: its world, when it was created, and its table.
#[derive(Debug)]
struct Session {
    world: u32,
    created: Instant,
    table: Table,
}

/// Decides which joins a server admits (the coordinator's: only its job attempts' sessions, with
/// their tokens, worlds and ranks). Called before anything is allocated for the join.
pub trait SessionGuard: Send + Sync + 'static {
    /// Ok when `req` may join its session.
    ///
    /// # Errors
    /// The status to answer the join with (UNAUTHENTICATED for a wrong token, INVALID_ARGUMENT
    /// for a wrong world or rank, FAILED_PRECONDITION for a session that is not open).
    fn admit(&self, req: &JoinRequest) -> Result<(), Status>;
}

/// The rendezvous service: sessions by name, each a table of peer addresses by rank.
#[derive(Default, Clone)]
pub struct RendezvousServer {
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    guard: Option<Arc<dyn SessionGuard>>,
}

impl std::fmt::Debug for RendezvousServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RendezvousServer")
            .field("guarded", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl RendezvousServer {
    /// An empty server that admits any well-formed join (world at most [`MAX_WORLD`]): for a
    /// rendezvous among processes that trust each other (tests, benchmarks, `collective_rank`).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty server that admits only the joins `guard` allows.
    pub fn guarded(guard: Arc<dyn SessionGuard>) -> Self {
        RendezvousServer {
            sessions: Arc::default(),
            guard: Some(guard),
        }
    }

    /// The tonic service to mount on a `tonic::transport::Server`.
    pub fn into_service(self) -> RendezvousServiceServer<RendezvousServer> {
        RendezvousServiceServer::new(self)
    }

    /// How many sessions the server holds now (expired ones are dropped at the next join).
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn register(
        &self,
        req: &JoinRequest,
    ) -> Result<(u32, watch::Receiver<BTreeMap<u32, String>>), Status> {
        let invalid = |m: String| to_status(ErrorKind::InvalidArgument, m);
        if req.world == 0 || req.rank >= req.world {
            return Err(invalid(format!(
                "rank {} is outside a world of {}",
                req.rank, req.world
            )));
        }
        if req.world > MAX_WORLD {
            return Err(invalid(format!(
                "world {} is larger than the largest session ({MAX_WORLD} ranks)",
                req.world
            )));
        }
        if req.session.len() > 256 || req.peer_address.len() > 512 {
            return Err(invalid(
                "session name (256 bytes) or peer address (512 bytes) too long".into(),
            ));
        }
        if let Some(guard) = &self.guard {
            guard.admit(req)?;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        if !sessions.contains_key(&req.session) && sessions.len() >= MAX_SESSIONS {
            return Err(Status::resource_exhausted(format!(
                "the rendezvous holds {MAX_SESSIONS} sessions; try again later"
            )));
        }
        let session = sessions
            .entry(req.session.clone())
            .or_insert_with(|| Session {
                world: req.world,
                created: Instant::now(),
                table: watch::Sender::new(BTreeMap::new()),
            });
        if session.world != req.world {
            return Err(invalid(format!(
                "rank {} says world {} but session {:?} has world {}",
                req.rank, req.world, req.session, session.world
            )));
        }
        let mut refused = None;
        session
            .table
            .send_if_modified(|peers| match peers.get(&req.rank) {
                Some(addr) if *addr == req.peer_address => false,
                Some(addr) => {
                    refused = Some(format!(
                        "rank {} already registered at {addr}, not {}",
                        req.rank, req.peer_address
                    ));
                    false
                }
                None => {
                    peers.insert(req.rank, req.peer_address.clone());
                    true
                }
            });
        match refused {
            Some(m) => Err(invalid(m)),
            None => Ok((session.world, session.table.subscribe())),
        }
    }
}

fn response(world: u32, peers: &BTreeMap<u32, String>) -> JoinResponse {
    let missing: Vec<u32> = (0..world).filter(|r| !peers.contains_key(r)).collect();
    JoinResponse {
        complete: missing.is_empty(),
        peers: (0..world)
            .map(|r| peers.get(&r).cloned().unwrap_or_default())
            .collect(),
        missing_ranks: missing,
    }
}

#[tonic::async_trait]
impl RendezvousService for RendezvousServer {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = request.into_inner();
        let (world, mut rx) = self.register(&req)?;
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        // Ok or not, answer with the table as it stands: the client turns gaps into an error.
        let _ = tokio::time::timeout(wait, rx.wait_for(|p| p.len() == world as usize)).await;
        let peers = rx.borrow().clone();
        Ok(Response::new(response(world, &peers)))
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

/// Registers `rank` of `session` (with `world` ranks, presenting the session's `token`, empty when
/// it has none) at the rendezvous `address` ("host:port") and returns every rank's peer address,
/// indexed by rank. Retries connecting until `wait` runs out
/// (the server may start after the ranks). Errors: [`CollectiveError::RendezvousTimeout`] naming
/// the ranks that never joined, [`CollectiveError::Rendezvous`] when refused or unreachable.
pub async fn join(
    address: &str,
    session: &str,
    token: &str,
    rank: u32,
    world: u32,
    peer_address: &str,
    wait: Duration,
) -> Result<Vec<String>> {
    join_with(
        address,
        None,
        session,
        token,
        rank,
        world,
        peer_address,
        wait,
    )
    .await
}

/// [`join`] over TLS when `tls` is given (the server's certificate is verified against its CA,
/// and this rank's certificate is presented for mutual TLS). Errors as [`join`]; a TLS failure
/// (unknown CA, wrong name, refused client certificate) is reported with its cause.
pub async fn join_with(
    address: &str,
    tls: Option<&TlsConfig>,
    session: &str,
    token: &str,
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
            token: token.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn join_req(session: &str, rank: u32, world: u32) -> JoinRequest {
        JoinRequest {
            session: session.into(),
            rank,
            world,
            peer_address: format!("127.0.0.1:{}", 1000 + rank),
            wait_ms: 0,
            token: String::new(),
        }
    }

    async fn code(server: &RendezvousServer, req: JoinRequest) -> tonic::Code {
        match server.join(Request::new(req)).await {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        }
    }

    #[tokio::test]
    async fn a_huge_world_is_refused_before_anything_is_allocated() {
        let server = RendezvousServer::new();
        let code = code(&server, join_req("s", 0, u32::MAX)).await;
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert_eq!(server.session_count(), 0);
        // The largest allowed world allocates nothing up front: one rank, one entry.
        let reply = server
            .join(Request::new(join_req("big", 3, MAX_WORLD)))
            .await
            .unwrap()
            .into_inner();
        assert!(!reply.complete);
        assert_eq!(reply.missing_ranks.len(), MAX_WORLD as usize - 1);
    }

    #[tokio::test]
    async fn a_session_keeps_its_world_and_its_ranks() {
        let server = RendezvousServer::new();
        let first = code(&server, join_req("s", 0, 2)).await;
        assert_eq!(first, tonic::Code::Ok);
        let wrong_world = code(&server, join_req("s", 1, 3)).await;
        assert_eq!(wrong_world, tonic::Code::InvalidArgument);
        let mut moved = join_req("s", 0, 2);
        moved.peer_address = "10.0.0.1:1".into();
        assert_eq!(code(&server, moved).await, tonic::Code::InvalidArgument);
        let reply = server
            .join(Request::new(join_req("s", 1, 2)))
            .await
            .unwrap()
            .into_inner();
        assert!(reply.complete);
        assert_eq!(reply.peers, ["127.0.0.1:1000", "127.0.0.1:1001"]);
    }

    struct OnlyToken;
    impl SessionGuard for OnlyToken {
        fn admit(&self, req: &JoinRequest) -> std::result::Result<(), Status> {
            if req.token == "right" {
                Ok(())
            } else {
                Err(Status::unauthenticated("wrong token"))
            }
        }
    }

    #[tokio::test]
    async fn a_guarded_server_creates_no_session_for_a_refused_join() {
        let server = RendezvousServer::guarded(Arc::new(OnlyToken));
        for i in 0..100 {
            let c = code(&server, join_req(&format!("s{i}"), 0, 2)).await;
            assert_eq!(c, tonic::Code::Unauthenticated);
        }
        assert_eq!(server.session_count(), 0);
        let mut ok = join_req("s", 0, 1);
        ok.token = "right".into();
        assert_eq!(code(&server, ok).await, tonic::Code::Ok);
        assert_eq!(server.session_count(), 1);
    }
}
