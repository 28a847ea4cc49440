//! The pipelined ring driver behind all-reduce, reduce-scatter and all-gather: it executes a
//! [`crate::schedule::ring_plan`] over the transport, piece by piece.
//!
//! Two loops run side by side for one call. The *sender* owns the chunk this rank sends at step 0
//! and encodes its pieces one by one as fast as the link takes them (the gRPC link's bounded queue
//! is the back-pressure), so the wire is busy from the first microsecond instead of waiting for
//! data from the left neighbour; then it forwards whatever the receiver queued for later steps.
//! The *receiver* takes pieces from the left neighbour, reduces or copies them into the buffer and
//! queues the result for the next step at once. Messages leave in (step, piece) order, which the
//! receiving side checks. The step-0 chunk is handed back to the receiver (it is overwritten in the
//! all-gather phase) only once every one of its pieces is encoded, so both loops borrow disjoint
//! parts of the buffer and no copy of the buffer is made up front.

use crate::codec::{decode_into, encode, reduce_encode_owned, reduce_into};
use crate::ctx::Ctx;
use crate::error::{CollectiveError, Result};
use crate::schedule::{RingStep, StepMode, pieces};
use crate::types::ReduceOp;
use bytes::Bytes;
use std::ops::Range;
use tokio::sync::{mpsc, oneshot};

/// The buffer split around the step-0 send chunk: `lo` before it, `own` (while the receiver holds
/// it) and `hi` after it. Pieces never straddle chunks, so every piece lies in exactly one part.
struct Parts<'a> {
    lo: &'a mut [f32],
    own: Option<&'a mut [f32]>,
    hi: &'a mut [f32],
    own_range: Range<usize>,
}

impl<'a> Parts<'a> {
    /// Splits `buf`, returning the parts without `own` and the `own` slice.
    fn split(buf: &'a mut [f32], own_range: Range<usize>) -> (Self, &'a mut [f32]) {
        let (lo, rest) = buf.split_at_mut(own_range.start);
        let (own, hi) = rest.split_at_mut(own_range.len());
        let parts = Parts {
            lo,
            own: None,
            hi,
            own_range,
        };
        (parts, own)
    }

    /// The elements `r` of the original buffer. Errors when `r` lies in the step-0 chunk and that
    /// chunk is still with the sender (a protocol violation by the caller, not a peer).
    fn get(&mut self, r: Range<usize>) -> Result<&mut [f32]> {
        let own = &self.own_range;
        if r.is_empty() {
            return Ok(&mut []);
        }
        if r.end <= own.start {
            return Ok(&mut self.lo[r]);
        }
        if r.start >= own.end {
            return Ok(&mut self.hi[r.start - own.end..r.end - own.end]);
        }
        let start = own.start;
        match self.own.as_deref_mut() {
            Some(slice) => Ok(&mut slice[r.start - start..r.end - start]),
            None => Err(CollectiveError::Transport(
                "ring driver touched the step-0 chunk before it was encoded".into(),
            )),
        }
    }
}

/// Runs `plan` over `buf` (cut into chunks by `layout`); `finalize` runs once on each piece of a
/// chunk this rank completes (the `finalize` step of the plan). Errors as the transport's send and
/// receive, plus fingerprint and protocol mismatches of received pieces.
pub(crate) async fn ring(
    ctx: &Ctx<'_>,
    buf: &mut [f32],
    layout: &[Range<usize>],
    plan: &[RingStep],
    op: ReduceOp,
    finalize: &(dyn Fn(&mut [f32]) + Sync),
) -> Result<()> {
    let Some(first_step) = plan.first() else {
        return Ok(());
    };
    let world = ctx.world();
    let (left, right) = ((ctx.rank + world - 1) % world, (ctx.rank + 1) % world);
    let (pe, dtype) = (ctx.piece_elems(), ctx.dtype());
    let first_chunk = first_step.send_chunk;
    let first_range = layout[first_chunk].clone();
    let (mut parts, own) = Parts::split(buf, first_range.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, u32, Bytes)>();
    let (own_back_tx, own_back_rx) = oneshot::channel::<&mut [f32]>();

    let sender = async move {
        for (i, r) in pieces(0..own.len(), pe).into_iter().enumerate() {
            let payload = encode(&own[r], dtype);
            ctx.send(right, 0, i as u32, payload).await?;
        }
        // The receiver is gone only if it already failed; its error is the one reported.
        let _ = own_back_tx.send(own);
        while let Some((step, piece, payload)) = rx.recv().await {
            ctx.send(right, step, piece, payload).await?;
        }
        Ok::<(), CollectiveError>(())
    };

    let receiver = async move {
        let mut own_back = Some(own_back_rx);
        for (s, step) in plan.iter().enumerate() {
            if step.recv_chunk == first_chunk
                && let Some(back) = own_back.take()
            {
                // Normally long resolved: the pieces arriving for this chunk were derived from
                // the step-0 pieces the sender already encoded.
                parts.own = Some(back.await.map_err(|_| {
                    CollectiveError::Transport("ring sender ended before step 0 was sent".into())
                })?);
            }
            let forward = s + 1 < plan.len();
            for (i, r) in pieces(layout[step.recv_chunk].clone(), pe)
                .into_iter()
                .enumerate()
            {
                let msg = ctx.recv(left, s as u32, i as u32).await?;
                let dst = parts.get(r)?;
                let payload = match step.mode {
                    // A partial sum that is only forwarded is never needed here again (this rank
                    // overwrites the chunk later, or does not return it): reduce straight into
                    // the outgoing buffer, one pass, `dst` untouched.
                    StepMode::Reduce if forward && !step.finalize => {
                        Some(reduce_encode_owned(dst, msg.payload, dtype, op)?)
                    }
                    StepMode::Reduce => {
                        reduce_into(dst, &msg.payload, dtype, op)?;
                        if step.finalize {
                            finalize(dst);
                        }
                        forward.then(|| encode(dst, dtype))
                    }
                    // A copied piece is forwarded as received: no re-encoding, no copy.
                    StepMode::Copy => {
                        decode_into(dst, &msg.payload, dtype)?;
                        forward.then_some(msg.payload)
                    }
                };
                if let Some(payload) = payload {
                    // Queued behind the step-0 pieces: the sender drains this only after them.
                    let _ = tx.send((s as u32 + 1, i as u32, payload));
                    // The sender runs in this task: while pieces keep arriving this loop would
                    // never wait, and the piece would sit in the queue until the whole backlog is
                    // reduced. Yielding lets the sender put it on the wire now.
                    tokio::task::yield_now().await;
                }
            }
        }
        drop(tx);
        Ok::<(), CollectiveError>(())
    };
    futures::try_join!(sender, receiver)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Parts;

    #[test]
    fn parts_map_ranges_to_the_right_slice() {
        let mut buf: Vec<f32> = (0..10).map(|x| x as f32).collect();
        let (mut parts, own) = Parts::split(&mut buf, 4..7);
        assert_eq!(own, &[4.0, 5.0, 6.0]);
        assert_eq!(parts.get(0..4).unwrap(), &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(parts.get(7..10).unwrap(), &[7.0, 8.0, 9.0]);
        assert!(
            parts.get(5..6).is_err(),
            "own part is still with the sender"
        );
        assert!(parts.get(5..5).unwrap().is_empty());
        parts.own = Some(own);
        parts.get(5..6).unwrap()[0] = 50.0;
        assert_eq!(buf[5], 50.0);
    }
}
