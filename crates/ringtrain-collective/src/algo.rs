//! Async drivers that execute the schedules of [`crate::schedule`] over a [`Transport`]: the
//! pipelined ring (reduce-scatter, all-gather, all-reduce), the latency-optimal direct exchange for
//! small buffers, chain and direct broadcast, barrier and point-to-point. Every received message is
//! checked against the local fingerprint before its bytes are used.

use crate::codec::{decode_into, encode, reduce_into, round_to_wire};
use crate::config::CommConfig;
use crate::ctx::Ctx;
use crate::error::{CollectiveError, Result};
use crate::ring::ring;
use crate::schedule::{RingKind, chunks, pieces, ring_plan};
use crate::types::{Fingerprint, OpKind, ReduceOp};
use bytes::Bytes;
use futures::future::try_join_all;
use tokio::sync::mpsc;

/// Name of the algorithm [`all_reduce`] picks, for spans and metrics.
pub(crate) fn all_reduce_algo(cfg: &CommConfig, world: usize, elements: usize) -> &'static str {
    if world <= 1 {
        "local"
    } else if elements * cfg.wire_dtype.size() <= cfg.small_bytes {
        "direct"
    } else {
        "ring"
    }
}

pub(crate) async fn all_reduce(ctx: &Ctx<'_>, buf: &mut [f32], op: ReduceOp) -> Result<()> {
    let world = ctx.world();
    match all_reduce_algo(ctx.cfg, world, buf.len()) {
        "local" => Ok(()),
        "direct" => direct_all_reduce(ctx, buf, op).await,
        _ => {
            let plan = ring_plan(RingKind::AllReduce, ctx.rank, world);
            let dtype = ctx.dtype();
            let finalize = move |chunk: &mut [f32]| {
                if op == ReduceOp::Mean {
                    chunk.iter_mut().for_each(|x| *x /= world as f32);
                }
                round_to_wire(chunk, dtype);
            };
            ring(ctx, buf, &chunks(buf.len(), world), &plan, op, &finalize).await
        }
    }
}

/// Everyone sends its whole buffer to everyone and reduces in rank order: one round trip instead of
/// 2(N−1), and bit-identical results because every rank combines the same values in the same order.
async fn direct_all_reduce(ctx: &Ctx<'_>, buf: &mut [f32], op: ReduceOp) -> Result<()> {
    let dtype = ctx.dtype();
    round_to_wire(buf, dtype);
    let payload = encode(buf, dtype);
    let sends = try_join_all(ctx.others().map(|r| ctx.send(r, 0, 0, payload.clone())));
    let recvs = try_join_all(ctx.others().map(|r| ctx.recv(r, 0, 0)));
    let (_, received) = futures::try_join!(sends, recvs)?;
    let mut received = received.into_iter();
    let mut acc = vec![0.0f32; buf.len()];
    for j in 0..ctx.world() {
        if j == ctx.rank {
            if j == 0 {
                acc.copy_from_slice(buf);
            } else {
                acc.iter_mut()
                    .zip(buf.iter())
                    .for_each(|(a, x)| *a = op.combine(*a, *x));
            }
            continue;
        }
        let msg = received
            .next()
            .ok_or_else(|| CollectiveError::Transport("missing direct contribution".into()))?;
        if j == 0 {
            decode_into(&mut acc, &msg.payload, dtype)?;
        } else {
            reduce_into(&mut acc, &msg.payload, dtype, op)?;
        }
    }
    if op == ReduceOp::Mean {
        let n = ctx.world() as f32;
        acc.iter_mut().for_each(|x| *x /= n);
    }
    buf.copy_from_slice(&acc);
    Ok(())
}

/// Reduce-scatter: returns this rank's chunk (see [`crate::schedule::chunks`]) of the reduction.
pub(crate) async fn reduce_scatter(ctx: &Ctx<'_>, input: &[f32], op: ReduceOp) -> Result<Vec<f32>> {
    let world = ctx.world();
    let mut buf = input.to_vec();
    let layout = chunks(buf.len(), world);
    let plan = ring_plan(RingKind::ReduceScatter, ctx.rank, world);
    let finalize = move |chunk: &mut [f32]| {
        if op == ReduceOp::Mean {
            chunk.iter_mut().for_each(|x| *x /= world as f32);
        }
    };
    ring(ctx, &mut buf, &layout, &plan, op, &finalize).await?;
    Ok(buf[layout[ctx.rank].clone()].to_vec())
}

/// All-gather: rank r's input becomes block r of the output on every rank.
pub(crate) async fn all_gather(ctx: &Ctx<'_>, input: &[f32]) -> Result<Vec<f32>> {
    let (world, len) = (ctx.world(), input.len());
    let mut out = vec![0.0f32; world * len];
    let own = ctx.rank * len..(ctx.rank + 1) * len;
    out[own.clone()].copy_from_slice(input);
    round_to_wire(&mut out[own], ctx.dtype());
    let layout: Vec<_> = (0..world).map(|b| b * len..(b + 1) * len).collect();
    let plan = ring_plan(RingKind::AllGather, ctx.rank, world);
    ring(ctx, &mut out, &layout, &plan, ReduceOp::Sum, &|_| {}).await?;
    Ok(out)
}

/// Whether broadcast goes root → everyone directly (small buffers, two ranks) or along a pipelined
/// chain root → root+1 → … (large buffers: the root sends the data once, not N−1 times).
pub(crate) fn broadcast_algo(cfg: &CommConfig, world: usize, elements: usize) -> &'static str {
    if world <= 1 {
        "local"
    } else if world == 2 || elements * cfg.wire_dtype.size() <= cfg.small_bytes {
        "direct"
    } else {
        "chain"
    }
}

pub(crate) async fn broadcast(ctx: &Ctx<'_>, buf: &mut [f32], root: usize) -> Result<()> {
    let world = ctx.world();
    let (pe, dtype) = (ctx.piece_elems(), ctx.dtype());
    let algo = broadcast_algo(ctx.cfg, world, buf.len());
    if algo == "local" {
        return Ok(());
    }
    let parts = pieces(0..buf.len(), pe);
    if ctx.rank == root {
        round_to_wire(buf, dtype);
        let targets: Vec<usize> = if algo == "direct" {
            ctx.others().collect()
        } else {
            vec![(root + 1) % world]
        };
        for (i, r) in parts.into_iter().enumerate() {
            let payload = encode(&buf[r], dtype);
            try_join_all(
                targets
                    .iter()
                    .map(|t| ctx.send(*t, 0, i as u32, payload.clone())),
            )
            .await?;
        }
        return Ok(());
    }
    let (prev, next) = if algo == "direct" {
        (root, None)
    } else {
        let pos = (ctx.rank + world - root) % world;
        let next = (pos + 1 < world).then_some((ctx.rank + 1) % world);
        ((ctx.rank + world - 1) % world, next)
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Bytes)>();
    let forward = async move {
        while let Some((piece, payload)) = rx.recv().await {
            if let Some(next) = next {
                ctx.send(next, 0, piece, payload).await?;
            }
        }
        Ok::<(), CollectiveError>(())
    };
    let receive = async move {
        for (i, r) in parts.into_iter().enumerate() {
            let msg = ctx.recv(prev, 0, i as u32).await?;
            decode_into(&mut buf[r], &msg.payload, dtype)?;
            if next.is_some() {
                let _ = tx.send((i as u32, msg.payload));
            }
        }
        drop(tx);
        Ok::<(), CollectiveError>(())
    };
    futures::try_join!(forward, receive)?;
    Ok(())
}

/// Barrier: an empty message to and from every other rank.
pub(crate) async fn barrier(ctx: &Ctx<'_>) -> Result<()> {
    let sends = try_join_all(ctx.others().map(|r| ctx.send(r, 0, 0, Bytes::new())));
    let recvs = try_join_all(ctx.others().map(|r| ctx.recv(r, 0, 0)));
    futures::try_join!(sends, recvs)?;
    Ok(())
}

/// Point-to-point send: the tensor in pieces, each carrying the pair's send fingerprint.
pub(crate) async fn send(ctx: &Ctx<'_>, data: &[f32], to: usize) -> Result<()> {
    for (i, r) in pieces(0..data.len(), ctx.piece_elems())
        .into_iter()
        .enumerate()
    {
        ctx.send(to, 0, i as u32, encode(&data[r], ctx.dtype()))
            .await?;
    }
    Ok(())
}

/// Point-to-point receive; `expected` carries op, per-pair seq and dtype, the length comes from
/// the sender's fingerprint.
pub(crate) async fn recv(ctx: &Ctx<'_>, from: usize, expected: Fingerprint) -> Result<Vec<f32>> {
    let first = ctx.transport.recv(ctx.group, ctx.members[from]).await?;
    let expected = Fingerprint {
        elements: if first.fingerprint.op == OpKind::Send {
            first.fingerprint.elements
        } else {
            expected.elements
        },
        ..expected
    };
    ctx.check(from, &first, expected)?;
    let sub = Ctx {
        fp: expected,
        ..*ctx
    };
    // The length is the sender's claim, read from the wire: nothing is allocated from it up
    // front. The buffer grows piece by piece as pieces arrive (each checked against the
    // fingerprint and its size), so a peer that claims a huge length makes this rank wait for
    // data it never sends (and fail at the deadline), never allocate it.
    let too_long = || {
        CollectiveError::Transport(format!(
            "rank {} announced a message of {} elements, more than this rank can receive",
            ctx.members[from], expected.elements
        ))
    };
    let len = usize::try_from(expected.elements).map_err(|_| too_long())?;
    let piece = sub.piece_elems();
    let count = len.div_ceil(piece).max(1);
    if u32::try_from(count).is_err() {
        return Err(too_long());
    }
    let mut out: Vec<f32> = Vec::new();
    for i in 0..count {
        let r = (i * piece).min(len)..((i + 1) * piece).min(len);
        let msg = if i == 0 {
            first.clone()
        } else {
            sub.recv(from, 0, i as u32).await?
        };
        out.try_reserve_exact(r.len()).map_err(|_| too_long())?;
        out.resize(r.end, 0.0);
        decode_into(&mut out[r], &msg.payload, sub.dtype())?;
    }
    Ok(out)
}
