//! The transport boundary: a transport delivers [`Message`]s between the ranks of one world, in
//! order per (group, sender), and reports a broken peer as an error on every pending and later
//! receive. Collective algorithms are written once against [`Transport`]; the in-process and gRPC
//! transports share the receiving half ([`Mailbox`]) so their failure semantics are identical.

pub mod grpc;
pub mod inproc;
mod link;
mod wire;

#[doc(hidden)]
pub use wire::fuzz_decode;

use crate::error::{CollectiveError, Result};
use crate::types::Fingerprint;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, watch};

/// One piece of one call, as it travels between two ranks.
#[derive(Debug, Clone)]
pub struct Message {
    /// The sender's fingerprint of the call.
    pub fingerprint: Fingerprint,
    /// Algorithm step (0-based).
    pub step: u32,
    /// Piece within the step (0-based).
    pub piece: u32,
    /// Encoded elements.
    pub payload: Bytes,
}

/// Moves messages between the ranks of one world. Ranks here are world ranks; `group` separates
/// communicators that share the links (sub-groups).
pub trait Transport: Send + Sync + 'static {
    /// This process's world rank.
    fn rank(&self) -> u32;
    /// Number of ranks in the world.
    fn world(&self) -> u32;
    /// Queues `msg` for `to`. Errors when the transport failed or the link to `to` is gone.
    fn send(&self, group: u32, to: u32, msg: Message) -> BoxFuture<'_, Result<()>>;
    /// The next message from `from` in `group`. Errors as soon as the transport fails (a lost or
    /// aborting peer anywhere in the world), or when `from` shut down with nothing left queued.
    fn recv(&self, group: u32, from: u32) -> BoxFuture<'_, Result<Message>>;
    /// Marks the transport failed with `cause` and tells every peer (best effort), so that no rank
    /// stays blocked on this one. The first cause wins.
    fn abort(&self, cause: &CollectiveError);
    /// The failure, if the transport failed.
    fn failure(&self) -> Option<CollectiveError>;
    /// World ranks this rank has a pending receive from in `group` (for stall logs and timeouts).
    fn waiting_for(&self, group: u32) -> Vec<u32>;
    /// Clean shutdown: tells every peer, then waits until every peer said the same (so no data
    /// still in flight is lost). The caller bounds the wait.
    fn shutdown(&self) -> BoxFuture<'_, Result<()>>;
}

#[derive(Debug, Default, Clone)]
struct State {
    failure: Option<CollectiveError>,
    departed: BTreeSet<u32>,
    ended: BTreeSet<u32>,
}

type Queue = (
    mpsc::UnboundedSender<Message>,
    Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
);

/// Most payload bytes one peer may have queued here, not yet received, over all groups
/// ([`Mailbox::new`]). An honest sender runs ahead of its receiver by at most the calls the
/// receiver has not reached yet: for a ring all-reduce less than the buffer (at most 250 million
/// f32 parameters, 1 GB, under the spec's default limits), for pipeline stages the activations of
/// the micro-batches in flight.
pub const MAX_QUEUED_BYTES_PER_PEER: usize = 2 << 30;
/// Most messages one peer may have queued here, not yet received ([`Mailbox::new`]); bounds the
/// per-message bookkeeping (and the number of groups a peer can open) independently of size.
/// With the default 1 MiB pieces (`CommConfig::piece_bytes`) the byte bound is reached first;
/// only pieces below 8 KiB could reach this one before it.
pub const MAX_QUEUED_MESSAGES_PER_PEER: usize = 1 << 18;

/// The receiving half shared by transports: per-(group, sender) FIFO queues plus the failure and
/// departure state that wakes blocked receivers. Each sender's queued data is bounded (bytes and
/// messages over all its groups): a sender that goes over fails the mailbox with
/// [`CollectiveError::PeerLost`] naming it and the limit, rather than growing memory without
/// bound; a sender can run ahead of its receiver by at most the data of the calls the receiver
/// has not reached yet.
#[derive(Debug)]
pub struct Mailbox {
    rank: u32,
    queues: Mutex<HashMap<(u32, u32), Queue>>,
    /// Per sender: (payload bytes, messages) delivered and not yet received.
    queued: Mutex<HashMap<u32, (usize, usize)>>,
    max_bytes: usize,
    max_messages: usize,
    state: watch::Sender<State>,
    waiting: Mutex<BTreeMap<(u32, u32), usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short critical sections cannot leave them inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mailbox {
    /// An empty mailbox for world rank `rank`, with [`MAX_QUEUED_BYTES_PER_PEER`] and
    /// [`MAX_QUEUED_MESSAGES_PER_PEER`] as each sender's bound.
    pub fn new(rank: u32) -> Self {
        Self::with_limits(
            rank,
            MAX_QUEUED_BYTES_PER_PEER,
            MAX_QUEUED_MESSAGES_PER_PEER,
        )
    }

    /// An empty mailbox for world rank `rank` in which each sender may have at most `max_bytes`
    /// of payload and `max_messages` messages queued and not yet received.
    pub fn with_limits(rank: u32, max_bytes: usize, max_messages: usize) -> Self {
        Self {
            rank,
            queues: Mutex::default(),
            queued: Mutex::default(),
            max_bytes,
            max_messages,
            state: watch::Sender::new(State::default()),
            waiting: Mutex::default(),
        }
    }

    fn queue(&self, group: u32, from: u32) -> Queue {
        lock(&self.queues)
            .entry((group, from))
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, Arc::new(tokio::sync::Mutex::new(rx)))
            })
            .clone()
    }

    /// Appends a message from `from` to its queue. Returns `false`, drops the message and fails
    /// the mailbox (naming `from` and the limit) when it would take `from`'s queued data over
    /// the mailbox's bound.
    pub fn deliver(&self, group: u32, from: u32, msg: Message) -> bool {
        let len = msg.payload.len();
        {
            let mut queued = lock(&self.queued);
            let (bytes, messages) = queued.entry(from).or_default();
            if bytes.saturating_add(len) > self.max_bytes || *messages >= self.max_messages {
                let detail = format!(
                    "it sent more than rank {} received: {} bytes in {} messages queued, a \
                     {len}-byte message more would pass the limit of {} bytes / {} messages \
                     per peer",
                    self.rank, bytes, messages, self.max_bytes, self.max_messages
                );
                drop(queued);
                self.fail(CollectiveError::PeerLost { rank: from, detail });
                return false;
            }
            *bytes += len;
            *messages += 1;
        }
        // The receiver half lives in the map as long as the mailbox, so this cannot fail.
        let _ = self.queue(group, from).0.send(msg);
        true
    }

    /// Takes a received message off `from`'s queued totals.
    fn received(&self, from: u32, msg: &Message) {
        if let Some((bytes, messages)) = lock(&self.queued).get_mut(&from) {
            *bytes = bytes.saturating_sub(msg.payload.len());
            *messages = messages.saturating_sub(1);
        }
    }

    /// Fails the mailbox with `cause` unless it already failed; returns whether this call set it.
    pub fn fail(&self, cause: CollectiveError) -> bool {
        self.state.send_if_modified(|s| {
            if s.failure.is_some() {
                return false;
            }
            s.failure = Some(cause);
            true
        })
    }

    /// Records that `rank` shut down cleanly; a later disconnect from it is no failure.
    pub fn depart(&self, rank: u32) {
        self.state.send_modify(|s| {
            s.departed.insert(rank);
        });
    }

    /// A link to `rank` broke or ended: fails the mailbox unless `rank` had shut down cleanly.
    pub fn link_lost(&self, rank: u32, detail: impl Into<String>) {
        self.state.send_modify(|s| {
            s.ended.insert(rank);
        });
        if !self.state.borrow().departed.contains(&rank) {
            self.fail(CollectiveError::PeerLost {
                rank,
                detail: detail.into(),
            });
        }
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<CollectiveError> {
        self.state.borrow().failure.clone()
    }

    /// Waits until every rank in `peers` departed (or the mailbox failed).
    pub async fn wait_departed(&self, peers: impl Iterator<Item = u32>) -> Result<()> {
        let peers: BTreeSet<u32> = peers.collect();
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| s.failure.is_some() || peers.is_subset(&s.departed))
            .await
            .map_err(|_| CollectiveError::Transport("mailbox closed".into()))?;
        match &state.failure {
            Some(f) if !peers.is_subset(&state.departed) => Err(f.clone()),
            _ => Ok(()),
        }
    }

    /// Waits until the links from every rank in `peers` ended (a peer ends its links only after it
    /// received everyone's departure notice, so this proves ours arrived).
    pub async fn wait_ended(&self, peers: impl Iterator<Item = u32>) {
        let peers: BTreeSet<u32> = peers.collect();
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| peers.is_subset(&s.ended)).await;
    }

    /// World ranks with a pending receive in `group`.
    pub fn waiting_for(&self, group: u32) -> Vec<u32> {
        lock(&self.waiting)
            .iter()
            .filter(|((g, _), n)| *g == group && **n > 0)
            .map(|((_, r), _)| *r)
            .collect()
    }

    /// The next message from `from` in `group`; see [`Transport::recv`].
    pub async fn recv(&self, group: u32, from: u32) -> Result<Message> {
        let _waiting = WaitGuard::new(self, group, from);
        let rx = self.queue(group, from).1;
        let mut rx = rx.lock().await;
        let mut state = self.state.subscribe();
        loop {
            {
                let s = state.borrow_and_update();
                if let Some(f) = &s.failure {
                    return Err(f.clone());
                }
                if s.departed.contains(&from) {
                    let msg = rx
                        .try_recv()
                        .map_err(|_| CollectiveError::PeerShutDown { rank: from })?;
                    self.received(from, &msg);
                    return Ok(msg);
                }
            }
            tokio::select! {
                msg = rx.recv() => {
                    let msg = msg.ok_or_else(|| CollectiveError::Transport(format!(
                        "queue from rank {from} closed on rank {}", self.rank
                    )))?;
                    self.received(from, &msg);
                    return Ok(msg);
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        return Err(CollectiveError::Transport("mailbox closed".into()));
                    }
                }
            }
        }
    }
}

struct WaitGuard<'a> {
    mailbox: &'a Mailbox,
    key: (u32, u32),
}

impl<'a> WaitGuard<'a> {
    fn new(mailbox: &'a Mailbox, group: u32, from: u32) -> Self {
        *lock(&mailbox.waiting).entry((group, from)).or_default() += 1;
        Self {
            mailbox,
            key: (group, from),
        }
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.mailbox.waiting).get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{OpKind, WireDType};

    fn message(bytes: usize) -> Message {
        Message {
            fingerprint: Fingerprint {
                op: OpKind::AllReduce,
                seq: 0,
                elements: 0,
                dtype: WireDType::F32,
                arg: 0,
            },
            step: 0,
            piece: 0,
            payload: Bytes::from(vec![0u8; bytes]),
        }
    }

    #[tokio::test]
    async fn a_peer_cannot_queue_more_than_the_limit_and_is_named() {
        let mailbox = Mailbox::with_limits(0, 100, 3);
        // Received data frees the budget again.
        for _ in 0..5 {
            assert!(mailbox.deliver(0, 1, message(60)));
            assert_eq!(mailbox.recv(0, 1).await.unwrap().payload.len(), 60);
        }
        // Another peer has its own budget.
        assert!(mailbox.deliver(0, 2, message(90)));
        assert!(mailbox.deliver(0, 1, message(60)));
        assert!(mailbox.failure().is_none());
        // 60 + 60 bytes is over 100: the message is dropped and the sender named.
        assert!(!mailbox.deliver(7, 1, message(60)));
        let failure = mailbox.failure().expect("failed");
        assert!(
            matches!(&failure, CollectiveError::PeerLost { rank: 1, .. }),
            "{failure:?}"
        );
        let text = failure.to_string();
        assert!(
            text.contains("rank 1") && text.contains("limit of 100 bytes"),
            "{text}"
        );
        assert!(mailbox.recv(0, 2).await.is_err(), "every receive fails now");
    }

    #[tokio::test]
    async fn a_peer_cannot_queue_more_messages_than_the_limit() {
        let mailbox = Mailbox::with_limits(3, 1 << 20, 3);
        // Empty messages in ever new groups still count.
        for group in 0..3 {
            assert!(mailbox.deliver(group, 0, message(0)));
        }
        assert!(!mailbox.deliver(3, 0, message(0)));
        let text = mailbox.failure().unwrap().to_string();
        assert!(
            text.contains("rank 0") && text.contains("3 messages"),
            "{text}"
        );
    }
}
