//! Conformance of the NCCL backend (feature `nccl`): every operation against a naive host
//! reference, for every world size the machine's GPUs allow (NCCL needs one GPU per rank, up to
//! 8) and the suite's awkward lengths. Without CUDA, NCCL or a GPU it checks instead that every
//! rank's `connect` fails with the reason (never a panic on a missing library, never a hang).

#![cfg(feature = "nccl")]
#![allow(clippy::print_stderr)]

mod common;

use common::int_data;
use ringtrain_collective::nccl::{NcclCommunicator, NcclConfig, unavailable_reason};
use ringtrain_collective::{CommConfig, ReduceOp, rendezvous};
use std::time::Duration;

fn reference(inputs: &[Vec<f32>], op: ReduceOp) -> Vec<f32> {
    let n = inputs.len() as f32;
    let mut acc = inputs[0].clone();
    for x in &inputs[1..] {
        for (a, b) in acc.iter_mut().zip(x) {
            *a = match op {
                ReduceOp::Sum | ReduceOp::Mean => *a + b,
                ReduceOp::Max => a.max(*b),
                ReduceOp::Min => a.min(*b),
            };
        }
    }
    if op == ReduceOp::Mean {
        acc.iter_mut().for_each(|a| *a /= n);
    }
    acc
}

fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs().max(1e-30),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// What one rank observed, all copied back to the host.
struct RankOut {
    reduced: Vec<Vec<f32>>,
    broadcast: Vec<f32>,
    gathered: Vec<f32>,
    scattered: Vec<f32>,
    received: Vec<f32>,
}

async fn rank_main(rank: u32, n: u32, len: usize, rdv: String, session: String) -> RankOut {
    let cfg = NcclConfig {
        rank,
        world: n,
        device: rank as usize,
        rendezvous: rdv,
        session,
        session_token: String::new(),
        tls: None,
        setup_timeout: Duration::from_secs(60),
    };
    let mut c = NcclCommunicator::connect(cfg, CommConfig::default())
        .await
        .unwrap();
    let s = std::sync::Arc::clone(c.stream());
    let input = int_data(rank as usize, len);
    let mut reduced = Vec::new();
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
        let mut buf = s.clone_htod(&input).unwrap();
        c.all_reduce(&mut buf, op).await.unwrap();
        reduced.push(s.clone_dtoh(&buf).unwrap());
    }
    let mut buf = s.clone_htod(&input).unwrap();
    c.broadcast(&mut buf, n - 1).await.unwrap();
    let broadcast = s.clone_dtoh(&buf).unwrap();
    let dev_in = s.clone_htod(&input).unwrap();
    let mut gathered = s.alloc_zeros::<f32>(len * n as usize).unwrap();
    c.all_gather(&dev_in, &mut gathered).await.unwrap();
    let gathered = s.clone_dtoh(&gathered).unwrap();
    // NCCL's reduce-scatter needs equal blocks: every rank contributes `n` blocks of `len`.
    let wide = int_data(rank as usize, len * n as usize);
    let dev_wide = s.clone_htod(&wide).unwrap();
    let mut block = s.alloc_zeros::<f32>(len).unwrap();
    c.reduce_scatter(&dev_wide, &mut block, ReduceOp::Sum)
        .await
        .unwrap();
    let scattered = s.clone_dtoh(&block).unwrap();
    c.barrier().await.unwrap();
    let mut received = Vec::new();
    if n > 1 {
        // A ring of point-to-point pairs: even ranks send first, odd ranks receive first.
        let (to, from) = ((rank + 1) % n, (rank + n - 1) % n);
        let mut inbox = s.alloc_zeros::<f32>(len).unwrap();
        if rank.is_multiple_of(2) {
            c.send(&dev_in, to).await.unwrap();
            c.recv(&mut inbox, from).await.unwrap();
        } else {
            c.recv(&mut inbox, from).await.unwrap();
            c.send(&dev_in, to).await.unwrap();
        }
        received = s.clone_dtoh(&inbox).unwrap();
    }
    RankOut {
        reduced,
        broadcast,
        gathered,
        scattered,
        received,
    }
}

fn check_world(n: u32, len: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let rdv = {
        let _guard = rt.enter();
        rendezvous::spawn(listener).unwrap()
    };
    let addr = rdv.addr().to_string();
    let session = format!("nccl-{n}-{len}");
    // One OS thread and runtime per rank: NCCL ranks of one process must not share a thread.
    let threads: Vec<_> = (0..n)
        .map(|rank| {
            let (addr, session) = (addr.clone(), session.clone());
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(rank_main(rank, n, len, addr, session))
            })
        })
        .collect();
    let outs: Vec<RankOut> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let nu = n as usize;
    let inputs: Vec<Vec<f32>> = (0..nu).map(|r| int_data(r, len)).collect();
    let wide: Vec<Vec<f32>> = (0..nu).map(|r| int_data(r, len * nu)).collect();
    let wide_sum = reference(&wide, ReduceOp::Sum);
    for (r, out) in outs.iter().enumerate() {
        let what = |op: &str| format!("n={n} len={len} rank {r} {op}");
        for (i, op) in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min]
            .into_iter()
            .enumerate()
        {
            let rel = if op == ReduceOp::Mean { 1e-6 } else { 0.0 };
            assert_close(
                &out.reduced[i],
                &reference(&inputs, op),
                rel,
                &what(&format!("{op:?}")),
            );
        }
        assert_eq!(out.broadcast, inputs[nu - 1], "{}", what("broadcast"));
        assert_eq!(out.gathered, inputs.concat(), "{}", what("all_gather"));
        assert_eq!(
            out.scattered,
            wide_sum[r * len..(r + 1) * len],
            "{}",
            what("reduce_scatter")
        );
        if n > 1 {
            assert_eq!(out.received, inputs[(r + nu - 1) % nu], "{}", what("recv"));
        }
    }
}

#[test]
fn every_op_every_world_size_nccl() {
    if let Some(reason) = unavailable_reason() {
        // No GPU here: what a user gets instead is a clear error on every rank, not a panic from
        // a missing library or a hang at the rendezvous.
        eprintln!("NCCL unavailable ({reason}): checking the error every rank gets instead");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for rank in 0..2 {
            let cfg = NcclConfig {
                rank,
                world: 2,
                device: rank as usize,
                rendezvous: "127.0.0.1:9".into(),
                session: "no-gpu".into(),
                session_token: String::new(),
                tls: None,
                setup_timeout: Duration::from_secs(1),
            };
            let err = match rt.block_on(NcclCommunicator::connect(cfg, CommConfig::default())) {
                Ok(_) => panic!("rank {rank} connected although NCCL is unavailable"),
                Err(e) => e.to_string(),
            };
            assert_eq!(
                err,
                format!("transport error: nccl unavailable on rank {rank}: {reason}")
            );
        }
        return;
    }
    let devices = cudarc::driver::CudaContext::device_count()
        .unwrap_or(0)
        .max(0) as u32;
    let max_world = devices.min(8);
    if max_world < 2 {
        eprintln!("only {devices} GPU(s): NCCL needs one per rank, world sizes above 1 skipped");
    }
    for n in 1..=max_world {
        let nu = n as usize;
        // Length 0 is left out: cuMemAlloc rejects zero-byte buffers, so no empty CudaSlice exists.
        let mut lengths = vec![1, nu + 1, 1_009, 10_000_000];
        if nu > 1 {
            lengths.push(nu - 1);
        }
        for len in lengths {
            check_world(n, len);
        }
    }
}
