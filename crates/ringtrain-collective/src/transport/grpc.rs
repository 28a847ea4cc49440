//! gRPC transport: every rank serves `ringtrain.v1.PeerService`, meets the others through the
//! rendezvous, and holds exactly one long-lived bidirectional `Link` stream per peer (the lower rank
//! dials), established once at start and reused for every call. Tuned as measured in BURN.md:
//! 16 MiB HTTP/2 frames, 32 MiB stream and connection windows, TCP_NODELAY on both ends (set by
//! hand on accepted sockets, which tonic leaves alone). Messages are framed by hand
//! ([`super::wire`], [`super::link`]) so payloads are never copied between the ring driver and the
//! socket. A broken stream fails the whole transport with the peer's rank; an `Abort` frame carries
//! a peer's cause. A link is accepted only with the session's token and only for a rank that has
//! none yet, so an outsider can neither join, replace a live link nor send an abort.
//! With [`GrpcConfig::tls`] every link (and the rendezvous call) runs over TLS:
//! each rank serves with its certificate and verifies the ranks it dials against the CA, and under
//! mutual TLS refuses dialers without a certificate signed by it.

use super::link::{self, Accept, PeerEndpoint, ReadError};
use super::wire::{FrameDecoder, Outgoing, encode_data, encode_frame};
use super::{Mailbox, Message, Transport};
use crate::error::{CollectiveError, Result};
use crate::rendezvous;
use crate::types::{Fingerprint, OpKind, WireDType};
use futures::FutureExt;
use futures::future::BoxFuture;
use ringtrain_proto::tls::{self, TlsConfig};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::peer_frame::Body;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;
use tonic::transport::Server;

/// HTTP/2 frame size: 16 MiB − 1, the protocol maximum (default 16 KiB halves throughput).
const FRAME: u32 = (1 << 24) - 1;
/// HTTP/2 stream and connection flow-control windows.
const WINDOW: u32 = 32 << 20;
/// Largest frame message accepted (pieces are ~1 MiB; leaves room for bigger `piece_bytes`).
const MAX_MESSAGE: usize = 64 << 20;
/// Outgoing frames queued per link before `send` waits (backpressure from HTTP/2 flow control).
const LINK_DEPTH: usize = 8;

/// How to start one rank's gRPC transport.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// This rank, in `0..world`.
    pub rank: u32,
    /// Number of ranks.
    pub world: u32,
    /// Where to serve the peer endpoint, e.g. `127.0.0.1:0` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Host name or IP peers should dial; `None` uses the listen IP.
    pub advertise_host: Option<String>,
    /// Rendezvous server address, "host:port".
    pub rendezvous: String,
    /// Session name, unique per communicator instance on that rendezvous.
    pub session: String,
    /// The session's secret (from the coordinator's assignment; empty for none): presented to the
    /// rendezvous and in every link's hello, and required from every peer that dials this rank.
    pub session_token: String,
    /// Bound on the whole setup (rendezvous plus connecting every link).
    pub setup_timeout: Duration,
    /// TLS for the peer endpoint, the links this rank dials and the rendezvous call (`None`:
    /// plain TCP). Needs a certificate (the peer endpoint serves with it; it must name the
    /// advertised host) and the CA the other ranks' certificates are signed by.
    pub tls: Option<TlsConfig>,
}

type FrameTx = mpsc::Sender<Outgoing>;

/// Outgoing half of each link, filled in as links come up.
#[derive(Debug)]
struct Links {
    slots: watch::Sender<Vec<Option<FrameTx>>>,
}

impl Links {
    fn get(&self, rank: u32) -> Option<FrameTx> {
        self.slots.borrow().get(rank as usize).cloned().flatten()
    }
    fn all(&self) -> Vec<FrameTx> {
        self.slots.borrow().iter().flatten().cloned().collect()
    }
}

/// One rank's end of a gRPC world. Dropping it without [`Transport::shutdown`] closes every link,
/// which peers see as this rank being lost.
#[derive(Debug)]
pub struct GrpcTransport {
    rank: u32,
    world: u32,
    addr: SocketAddr,
    mailbox: Arc<Mailbox>,
    links: Arc<Links>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop_server: Mutex<Option<oneshot::Sender<()>>>,
}

fn fingerprint_to_pb(fp: &Fingerprint) -> pb::Fingerprint {
    let op = match fp.op {
        OpKind::AllReduce => pb::CollectiveOp::AllReduce,
        OpKind::Broadcast => pb::CollectiveOp::Broadcast,
        OpKind::AllGather => pb::CollectiveOp::AllGather,
        OpKind::ReduceScatter => pb::CollectiveOp::ReduceScatter,
        OpKind::Barrier => pb::CollectiveOp::Barrier,
        OpKind::Send => pb::CollectiveOp::Send,
    };
    let dtype = match fp.dtype {
        WireDType::F32 => pb::WireDType::F32,
        WireDType::F16 => pb::WireDType::F16,
        WireDType::Bf16 => pb::WireDType::Bf16,
    };
    pb::Fingerprint {
        op: op as i32,
        seq: fp.seq,
        elements: fp.elements,
        dtype: dtype as i32,
        arg: fp.arg,
    }
}

fn fingerprint_from_pb(fp: Option<pb::Fingerprint>) -> std::result::Result<Fingerprint, String> {
    let fp = fp.ok_or("data frame without fingerprint")?;
    let op = match pb::CollectiveOp::try_from(fp.op) {
        Ok(pb::CollectiveOp::AllReduce) => OpKind::AllReduce,
        Ok(pb::CollectiveOp::Broadcast) => OpKind::Broadcast,
        Ok(pb::CollectiveOp::AllGather) => OpKind::AllGather,
        Ok(pb::CollectiveOp::ReduceScatter) => OpKind::ReduceScatter,
        Ok(pb::CollectiveOp::Barrier) => OpKind::Barrier,
        Ok(pb::CollectiveOp::Send) => OpKind::Send,
        _ => return Err(format!("unknown collective op {}", fp.op)),
    };
    let dtype = match pb::WireDType::try_from(fp.dtype) {
        Ok(pb::WireDType::F32) => WireDType::F32,
        Ok(pb::WireDType::F16) => WireDType::F16,
        Ok(pb::WireDType::Bf16) => WireDType::Bf16,
        _ => return Err(format!("unknown wire dtype {}", fp.dtype)),
    };
    Ok(Fingerprint {
        op,
        seq: fp.seq,
        elements: fp.elements,
        dtype,
        arg: fp.arg,
    })
}

fn frame(body: Body) -> Outgoing {
    encode_frame(&pb::PeerFrame { body: Some(body) })
}

/// Reads one link until it ends, feeding the mailbox.
/// Makes a link to `peer` live, the same way for dialled and accepted links: a task reads its
/// frames into the mailbox, and its send queue is published for the driver.
fn install_link(
    peer: u32,
    body: tonic::body::Body,
    decoder: FrameDecoder,
    tx: FrameTx,
    mailbox: &Arc<Mailbox>,
    links: &Links,
    tasks: &Mutex<Vec<JoinHandle<()>>>,
) {
    let reader = tokio::spawn(read_link(peer, body, decoder, Arc::clone(mailbox)));
    tasks.lock().unwrap_or_else(|e| e.into_inner()).push(reader);
    links.slots.send_modify(|s| s[peer as usize] = Some(tx));
}

async fn read_link(
    peer: u32,
    mut stream: tonic::body::Body,
    mut decoder: FrameDecoder,
    mailbox: Arc<Mailbox>,
) {
    loop {
        match link::next_frame(&mut stream, &mut decoder).await {
            Ok(Some(pb::PeerFrame { body: Some(body) })) => match body {
                Body::Data(d) => match fingerprint_from_pb(d.fingerprint) {
                    Ok(fingerprint) => {
                        let message = Message {
                            fingerprint,
                            step: d.step,
                            piece: d.piece,
                            payload: d.payload,
                        };
                        // Over its mailbox limit the peer is cut off: stop reading its link.
                        if !mailbox.deliver(d.group, peer, message) {
                            return;
                        }
                    }
                    Err(detail) => {
                        mailbox.fail(CollectiveError::Transport(format!(
                            "bad frame from rank {peer}: {detail}"
                        )));
                        return;
                    }
                },
                Body::Abort(a) => {
                    mailbox.fail(CollectiveError::PeerAborted {
                        rank: a.rank,
                        reason: a.reason,
                    });
                }
                Body::Bye(_) => mailbox.depart(peer),
                Body::Hello(_) => {}
            },
            Ok(Some(pb::PeerFrame { body: None })) => {}
            Ok(None) => {
                mailbox.link_lost(peer, "stream closed");
                return;
            }
            Err(ReadError::Lost(detail)) => {
                mailbox.link_lost(peer, detail);
                return;
            }
            Err(ReadError::Bad(detail)) => {
                mailbox.fail(CollectiveError::Transport(format!(
                    "bad frame from rank {peer}: {detail}"
                )));
                return;
            }
        }
    }
}

struct PeerServer {
    rank: u32,
    world: u32,
    session: String,
    token: String,
    mailbox: Arc<Mailbox>,
    links: Arc<Links>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Accept for PeerServer {
    fn accept(
        &self,
        hello: pb::Hello,
        body: tonic::body::Body,
        decoder: FrameDecoder,
    ) -> std::result::Result<mpsc::Receiver<Outgoing>, Status> {
        if hello.session != self.session || hello.world != self.world {
            return Err(Status::invalid_argument(format!(
                "rank {} of session {:?} (world {}) dialed rank {} of session {:?} (world {})",
                hello.rank, hello.session, hello.world, self.rank, self.session, self.world
            )));
        }
        // Checked before anything else is said about the session, in constant time.
        if !ringtrain_proto::auth::ct_eq(hello.token.as_bytes(), self.token.as_bytes()) {
            return Err(Status::unauthenticated(format!(
                "rank {} did not present session {:?}'s token",
                hello.rank, self.session
            )));
        }
        if hello.rank >= self.rank {
            return Err(Status::invalid_argument(format!(
                "rank {} must be dialed by rank {}, not dial it",
                hello.rank, self.rank
            )));
        }
        let (tx, rx) = mpsc::channel(LINK_DEPTH);
        let peer = hello.rank;
        // One link per peer for the transport's life: a second hello for a rank that has a link
        // is refused, never takes its place (claimed atomically, so two racing dials cannot both
        // win).
        let mut taken = false;
        self.links.slots.send_if_modified(|s| {
            if s[peer as usize].is_some() {
                taken = true;
                false
            } else {
                s[peer as usize] = Some(tx.clone());
                true
            }
        });
        if taken {
            return Err(Status::already_exists(format!(
                "rank {} already has a live link to rank {}",
                peer, self.rank
            )));
        }
        let hello_back = frame(Body::Hello(pb::Hello {
            rank: self.rank,
            world: self.world,
            session: self.session.clone(),
            token: String::new(),
        }));
        // A fresh queue has room for the first frame.
        let _ = tx.try_send(hello_back);
        let reader = tokio::spawn(read_link(peer, body, decoder, Arc::clone(&self.mailbox)));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reader);
        Ok(rx)
    }
}

impl GrpcTransport {
    /// Binds the peer endpoint, joins the rendezvous and connects every link. Errors: bind
    /// failure, [`CollectiveError::RendezvousTimeout`] naming ranks that never joined, a peer that
    /// cannot be dialed, or links not up within `setup_timeout` (naming the missing ranks).
    pub async fn connect(cfg: GrpcConfig) -> Result<GrpcTransport> {
        let listener = TcpListener::bind(cfg.listen).await.map_err(|e| {
            CollectiveError::Transport(format!("rank {}: bind {}: {e}", cfg.rank, cfg.listen))
        })?;
        let addr = listener.local_addr().map_err(|e| {
            CollectiveError::Transport(format!("rank {}: local address: {e}", cfg.rank))
        })?;
        Self::connect_incoming(cfg, addr, TcpListenerStream::new(listener)).await
    }

    /// [`GrpcTransport::connect`] serving the peer endpoint on connections the caller accepts
    /// (`cfg.listen` is then unused; `addr` is the address they arrive at, advertised to peers
    /// with `cfg.advertise_host` replacing its IP when given). A long-lived process that
    /// advertised its peer address once (a worker registered with its coordinator) keeps one
    /// listener for its lifetime and routes each accepted connection to its current transport;
    /// the transport stops taking connections from `incoming` when dropped. Errors as
    /// [`GrpcTransport::connect`], except binding.
    pub async fn connect_incoming<S>(
        cfg: GrpcConfig,
        addr: SocketAddr,
        incoming: S,
    ) -> Result<GrpcTransport>
    where
        S: futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
    {
        let started = tokio::time::Instant::now();
        let mailbox = Arc::new(Mailbox::new(cfg.rank));
        let links = Arc::new(Links {
            slots: watch::Sender::new(vec![None; cfg.world as usize]),
        });
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let service = PeerServer {
            rank: cfg.rank,
            world: cfg.world,
            session: cfg.session.clone(),
            token: cfg.session_token.clone(),
            mailbox: Arc::clone(&mailbox),
            links: Arc::clone(&links),
            tasks: Arc::clone(&tasks),
        };
        let incoming = incoming.map(|conn| {
            if let Ok(sock) = &conn {
                // tonic applies TCP_NODELAY only to sockets it accepts itself.
                let _ = sock.set_nodelay(true);
            }
            conn
        });
        let mut builder = Server::builder();
        if let Some(tls) = &cfg.tls {
            let settings = tls.server().map_err(|e| {
                CollectiveError::Transport(format!("rank {}: peer endpoint: {e}", cfg.rank))
            })?;
            builder = builder.tls_config(settings).map_err(|e| {
                CollectiveError::Transport(format!("rank {}: peer endpoint TLS: {e}", cfg.rank))
            })?;
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = builder
            .max_frame_size(FRAME)
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(PeerEndpoint::new(service, MAX_MESSAGE))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        let server_task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "peer endpoint stopped");
            }
        });
        tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(server_task);
        let transport = GrpcTransport {
            rank: cfg.rank,
            world: cfg.world,
            addr,
            mailbox,
            links,
            tasks,
            stop_server: Mutex::new(Some(stop_tx)),
        };

        let host = cfg
            .advertise_host
            .clone()
            .unwrap_or_else(|| addr.ip().to_string());
        let me = format!("{host}:{}", addr.port());
        let peers = rendezvous::join_with(
            &cfg.rendezvous,
            cfg.tls.as_ref(),
            &cfg.session,
            &cfg.session_token,
            cfg.rank,
            cfg.world,
            &me,
            cfg.setup_timeout,
        )
        .await?;
        for peer in cfg.rank + 1..cfg.world {
            let remaining = cfg.setup_timeout.saturating_sub(started.elapsed());
            transport
                .dial(&cfg, peer, &peers[peer as usize], remaining)
                .await?;
        }
        let remaining = cfg.setup_timeout.saturating_sub(started.elapsed());
        let mut slots = transport.links.slots.subscribe();
        let me_rank = cfg.rank as usize;
        let up = tokio::time::timeout(
            remaining,
            slots.wait_for(|s| {
                s.iter()
                    .enumerate()
                    .all(|(r, l)| r == me_rank || l.is_some())
            }),
        )
        .await;
        if up.is_err() {
            let missing: Vec<u32> = transport
                .links
                .slots
                .borrow()
                .iter()
                .enumerate()
                .filter(|(r, l)| *r != me_rank && l.is_none())
                .map(|(r, _)| r as u32)
                .collect();
            return Err(CollectiveError::Transport(format!(
                "rank {} timed out after {:?} waiting for links from ranks {missing:?}",
                cfg.rank, cfg.setup_timeout
            )));
        }
        Ok(transport)
    }

    async fn dial(&self, cfg: &GrpcConfig, peer: u32, address: &str, wait: Duration) -> Result<()> {
        let lost = |detail: String| CollectiveError::PeerLost { rank: peer, detail };
        let endpoint = tls::endpoint(address, cfg.tls.as_ref())
            .map_err(|e| lost(format!("bad address {address:?}: {e}")))?
            .tcp_nodelay(true)
            .max_frame_size(FRAME)
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect_timeout(wait.max(Duration::from_millis(1)));
        let channel = endpoint.connect().await.map_err(|e| {
            lost(format!(
                "cannot dial {address}: {}",
                rendezvous::error_chain(&e)
            ))
        })?;
        let (tx, rx) = mpsc::channel(LINK_DEPTH);
        let hello = frame(Body::Hello(pb::Hello {
            rank: cfg.rank,
            world: cfg.world,
            session: cfg.session.clone(),
            token: cfg.session_token.clone(),
        }));
        let _ = tx.send(hello).await;
        let response = tokio::time::timeout(wait, link::dial(channel, address, rx))
            .await
            .map_err(|_| lost(format!("no answer from {address} within {wait:?}")))?
            .map_err(|e| lost(format!("{address} refused the link: {e}")))?;
        install_link(
            peer,
            response,
            FrameDecoder::new(MAX_MESSAGE),
            tx,
            &self.mailbox,
            &self.links,
            &self.tasks,
        );
        Ok(())
    }

    /// The address the peer endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Transport for GrpcTransport {
    fn rank(&self) -> u32 {
        self.rank
    }

    fn world(&self) -> u32 {
        self.world
    }

    fn send(&self, group: u32, to: u32, msg: Message) -> BoxFuture<'_, Result<()>> {
        async move {
            if let Some(f) = self.mailbox.failure() {
                return Err(f);
            }
            let link = self.links.get(to).ok_or_else(|| {
                CollectiveError::InvalidArgument(format!(
                    "no link from rank {} to rank {to}",
                    self.rank
                ))
            })?;
            let data = encode_data(
                group,
                fingerprint_to_pb(&msg.fingerprint),
                msg.step,
                msg.piece,
                msg.payload,
            );
            if link.send(data).await.is_err() {
                // The reader of that link usually recorded the precise cause first.
                return Err(self.mailbox.failure().unwrap_or(CollectiveError::PeerLost {
                    rank: to,
                    detail: "link closed".into(),
                }));
            }
            Ok(())
        }
        .boxed()
    }

    fn recv(&self, group: u32, from: u32) -> BoxFuture<'_, Result<Message>> {
        self.mailbox.recv(group, from).boxed()
    }

    fn abort(&self, cause: &CollectiveError) {
        self.mailbox.fail(cause.clone());
        let notice = frame(Body::Abort(pb::Abort {
            rank: self.rank,
            reason: cause.to_string(),
        }));
        for link in self.links.all() {
            let notice = notice.clone();
            // Best effort and never blocking the caller: a full link gets a second chance.
            if let Err(mpsc::error::TrySendError::Full(notice)) = link.try_send(notice) {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(2), link.send(notice)).await;
                });
            }
        }
    }

    fn failure(&self) -> Option<CollectiveError> {
        self.mailbox.failure()
    }

    fn waiting_for(&self, group: u32) -> Vec<u32> {
        self.mailbox.waiting_for(group)
    }

    fn shutdown(&self) -> BoxFuture<'_, Result<()>> {
        async move {
            let bye = frame(Body::Bye(pb::Bye { rank: self.rank }));
            for link in self.links.all() {
                let _ = link.send(bye.clone()).await;
            }
            let others = (0..self.world).filter(|r| *r != self.rank);
            self.mailbox.wait_departed(others.clone()).await?;
            // Everyone said bye, so nobody sends to us any more: end our streams, then wait until
            // every peer ended its own, which it does only after it has read our bye. Exiting
            // earlier could drop our bye from the socket and make a healthy peer see a lost rank.
            self.links
                .slots
                .send_modify(|s| s.iter_mut().for_each(|l| *l = None));
            self.mailbox.wait_ended(others).await;
            Ok(())
        }
        .boxed()
    }
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        // Dropping the senders ends every outgoing stream, so peers see this rank leave even
        // while connection tasks (which hold the service) outlive this value.
        self.links
            .slots
            .send_modify(|s| s.iter_mut().for_each(|l| *l = None));
        if let Some(stop) = self
            .stop_server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = stop.send(());
        }
        // Readers are left to end with their streams: aborting them would reset streams whose
        // last frames (`bye`, or the `abort` notice of a failed rank) may not be on the wire yet.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
