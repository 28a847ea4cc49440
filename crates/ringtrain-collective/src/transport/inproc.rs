//! In-process transport: ranks are tasks of one process and messages move through channels
//! (payloads are reference-counted `Bytes`, never copied). Dropping a rank's transport without
//! `shutdown` looks to its peers exactly like a crashed process over gRPC: a lost peer.

use super::{Mailbox, Message, Transport};
use crate::error::{CollectiveError, Result};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One rank's end of an in-process world.
#[derive(Debug)]
pub struct InProcTransport {
    rank: u32,
    mailboxes: Arc<Vec<Arc<Mailbox>>>,
    shut_down: AtomicBool,
}

impl InProcTransport {
    /// Creates a world of `world` connected ranks; element `r` is rank `r`'s transport.
    pub fn world(world: u32) -> Vec<InProcTransport> {
        let mailboxes: Arc<Vec<_>> =
            Arc::new((0..world).map(|r| Arc::new(Mailbox::new(r))).collect());
        (0..world)
            .map(|rank| InProcTransport {
                rank,
                mailboxes: Arc::clone(&mailboxes),
                shut_down: AtomicBool::new(false),
            })
            .collect()
    }

    fn own(&self) -> &Mailbox {
        &self.mailboxes[self.rank as usize]
    }

    fn peers(&self) -> impl Iterator<Item = &Arc<Mailbox>> {
        self.mailboxes
            .iter()
            .enumerate()
            .filter(move |(r, _)| *r as u32 != self.rank)
            .map(|(_, m)| m)
    }
}

impl Transport for InProcTransport {
    fn rank(&self) -> u32 {
        self.rank
    }

    fn world(&self) -> u32 {
        self.mailboxes.len() as u32
    }

    fn send(&self, group: u32, to: u32, msg: Message) -> BoxFuture<'_, Result<()>> {
        let result = match (self.own().failure(), self.mailboxes.get(to as usize)) {
            (Some(f), _) => Err(f),
            (None, None) => Err(CollectiveError::InvalidArgument(format!(
                "rank {to} is outside a world of {}",
                self.mailboxes.len()
            ))),
            (None, Some(peer)) => {
                peer.deliver(group, self.rank, msg);
                Ok(())
            }
        };
        futures::future::ready(result).boxed()
    }

    fn recv(&self, group: u32, from: u32) -> BoxFuture<'_, Result<Message>> {
        self.own().recv(group, from).boxed()
    }

    fn abort(&self, cause: &CollectiveError) {
        self.own().fail(cause.clone());
        for peer in self.peers() {
            peer.fail(CollectiveError::PeerAborted {
                rank: self.rank,
                reason: cause.to_string(),
            });
        }
    }

    fn failure(&self) -> Option<CollectiveError> {
        self.own().failure()
    }

    fn waiting_for(&self, group: u32) -> Vec<u32> {
        self.own().waiting_for(group)
    }

    fn shutdown(&self) -> BoxFuture<'_, Result<()>> {
        self.shut_down.store(true, Ordering::SeqCst);
        for peer in self.peers() {
            peer.depart(self.rank);
        }
        let others = (0..self.world()).filter(|r| *r != self.rank);
        self.own().wait_departed(others).boxed()
    }
}

impl Drop for InProcTransport {
    fn drop(&mut self) {
        if !self.shut_down.load(Ordering::SeqCst) {
            for peer in self.peers() {
                peer.link_lost(self.rank, "in-process rank dropped");
            }
        }
    }
}
