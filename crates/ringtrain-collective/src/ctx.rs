//! The context of one collective call: the transport, the group's members, this rank and the
//! call's fingerprint, with the fingerprint-checked send and receive every driver uses. Its own
//! module so the drivers (`algo`, `ring`) and the communicator share it without importing each
//! other.

use crate::config::CommConfig;
use crate::error::{CollectiveError, Result};
use crate::transport::{Message, Transport};
use crate::types::{Fingerprint, WireDType};
use bytes::Bytes;

/// Everything a driver needs for one call. Ranks are group ranks; `members` maps them to world ranks.
pub(crate) struct Ctx<'a> {
    pub transport: &'a dyn Transport,
    pub group: u32,
    pub members: &'a [u32],
    pub rank: usize,
    pub fp: Fingerprint,
    pub cfg: &'a CommConfig,
}

impl Ctx<'_> {
    pub fn world(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn dtype(&self) -> WireDType {
        self.fp.dtype
    }

    pub(crate) fn piece_elems(&self) -> usize {
        (self.cfg.piece_bytes / self.dtype().size()).max(1)
    }

    pub(crate) async fn send(
        &self,
        to: usize,
        step: u32,
        piece: u32,
        payload: Bytes,
    ) -> Result<()> {
        let msg = Message {
            fingerprint: self.fp,
            step,
            piece,
            payload,
        };
        self.transport.send(self.group, self.members[to], msg).await
    }

    /// Receives the next message from `from` and checks it belongs to this call, step and piece.
    pub(crate) async fn recv(&self, from: usize, step: u32, piece: u32) -> Result<Message> {
        let msg = self.transport.recv(self.group, self.members[from]).await?;
        self.check(from, &msg, self.fp)?;
        if (msg.step, msg.piece) != (step, piece) {
            return Err(CollectiveError::Transport(format!(
                "protocol error in {}: rank {} expected step {step} piece {piece} from rank {} but got step {} piece {}",
                self.fp, self.members[self.rank], self.members[from], msg.step, msg.piece
            )));
        }
        Ok(msg)
    }

    pub(crate) fn check(&self, from: usize, msg: &Message, expected: Fingerprint) -> Result<()> {
        if msg.fingerprint != expected {
            return Err(CollectiveError::Mismatch {
                local_rank: self.members[self.rank],
                local: expected,
                peer_rank: self.members[from],
                peer: msg.fingerprint,
            });
        }
        Ok(())
    }

    pub(crate) fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.world()).filter(move |r| *r != self.rank)
    }
}
