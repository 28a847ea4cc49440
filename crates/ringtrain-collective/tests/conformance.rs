//! One conformance suite, run on every transport: every operation against a naive reference for
//! world sizes 1…8 and awkward lengths, fusion, long runs of small calls, mixed calls, two
//! communicators at once, sub-groups, wire compression, and the in-process failure semantics.

mod common;

use common::{KINDS, Kind, int_data, real_data, run_all, world};
use ringtrain_collective::schedule::chunks;
use ringtrain_collective::{CollectiveError, CommConfig, ReduceOp, WireDType};
use std::time::Duration;

fn reference(inputs: &[Vec<f32>], op: ReduceOp) -> Vec<f32> {
    let n = inputs.len();
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
        acc.iter_mut().for_each(|a| *a /= n as f32);
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

/// Every op on integer data for one (transport, world, length, config): exact equality.
async fn check_every_op(kind: Kind, n: usize, len: usize, cfg: CommConfig) {
    let (comms, _rdv) = world(kind, n as u32, &cfg).await;
    let inputs: Vec<Vec<f32>> = (0..n).map(|r| int_data(r, len)).collect();
    let inputs2 = inputs.clone();
    let outs = run_all(comms, move |r, mut c| {
        let input = inputs2[r].clone();
        async move {
            let mut out = Vec::new();
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
                let mut buf = input.clone();
                c.all_reduce(&mut buf, op).await.unwrap();
                out.push(buf);
            }
            let mut buf = input.clone();
            c.broadcast(&mut buf, (n - 1) as u32).await.unwrap();
            out.push(buf);
            out.push(c.all_gather(&input).await.unwrap());
            out.push(c.reduce_scatter(&input, ReduceOp::Sum).await.unwrap());
            c.barrier().await.unwrap();
            if n > 1 {
                c.send(&input, ((r + 1) % n) as u32).await.unwrap();
                out.push(c.recv(((r + n - 1) % n) as u32).await.unwrap());
            }
            let (mut a, mut b, mut d) = (input.clone(), input.clone(), vec![r as f32; 3]);
            let mut tensors: Vec<&mut [f32]> = vec![&mut a, &mut d, &mut b];
            c.all_reduce_fused(&mut tensors, ReduceOp::Sum)
                .await
                .unwrap();
            out.extend([a, d, b]);
            c.shutdown().await.unwrap();
            out
        }
    })
    .await;
    let what = |op: &str| format!("{kind:?} world {n} len {len} {op}");
    let layout = chunks(len, n);
    let all: Vec<f32> = inputs.concat();
    let sum = reference(&inputs, ReduceOp::Sum);
    for (r, out) in outs.iter().enumerate() {
        let mut k = 0;
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
            assert_eq!(
                out[k],
                reference(&inputs, op),
                "{} rank {r}",
                what(&format!("{op:?}"))
            );
            k += 1;
        }
        assert_eq!(out[k], inputs[n - 1], "{} rank {r}", what("broadcast"));
        assert_eq!(out[k + 1], all, "{} rank {r}", what("all_gather"));
        assert_eq!(
            out[k + 2],
            sum[layout[r].clone()],
            "{} rank {r}",
            what("reduce_scatter")
        );
        k += 3;
        if n > 1 {
            assert_eq!(out[k], inputs[(r + n - 1) % n], "{} rank {r}", what("recv"));
            k += 1;
        }
        let small: f32 = (0..n).map(|x| x as f32).sum();
        assert_eq!(out[k], sum, "{}", what("fused a"));
        assert_eq!(out[k + 1], vec![small; 3], "{}", what("fused small"));
        assert_eq!(out[k + 2], sum, "{}", what("fused b"));
    }
}

fn lengths(n: usize) -> Vec<usize> {
    let mut l = vec![0, 1, n.saturating_sub(1), n + 1, 97];
    l.dedup();
    l
}

/// Ring on every length and pieces of 4 elements, so multi-piece pipelining is exercised, with
/// a fusion buffer small enough to split the fused list.
fn ring_cfg() -> CommConfig {
    CommConfig {
        small_bytes: 0,
        piece_bytes: 16,
        fusion_bytes: 400,
        deadline: Duration::from_secs(20),
        ..CommConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_every_world_size_inproc() {
    for n in 1..=8 {
        for len in lengths(n) {
            check_every_op(Kind::InProc, n, len, ring_cfg()).await;
            check_every_op(Kind::InProc, n, len, CommConfig::default()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_every_world_size_grpc() {
    for n in 1..=8 {
        for len in lengths(n) {
            check_every_op(Kind::Grpc, n, len, ring_cfg()).await;
        }
    }
    check_every_op(Kind::Grpc, 3, 5, CommConfig::default()).await;
}

/// Non-integer data through the ring within 1e-6 relative, including 10⁷ elements.
async fn check_real(kind: Kind, n: usize, len: usize) {
    let (comms, _rdv) = world(kind, n as u32, &CommConfig::default()).await;
    let inputs: Vec<Vec<f32>> = (0..n).map(|r| real_data(r, len)).collect();
    let inputs2 = inputs.clone();
    let outs = run_all(comms, move |r, mut c| {
        let mut buf = inputs2[r].clone();
        async move {
            c.all_reduce(&mut buf, ReduceOp::Mean).await.unwrap();
            c.shutdown().await.unwrap();
            buf
        }
    })
    .await;
    let want = reference(&inputs, ReduceOp::Mean);
    for out in &outs {
        assert_close(out, &want, 1e-6, &format!("{kind:?} world {n} len {len}"));
        assert_eq!(out, &outs[0], "ranks must be bit-identical");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_real_valued_all_reduce() {
    check_real(Kind::InProc, 5, 100_003).await;
    check_real(Kind::InProc, 4, 10_000_000).await;
    check_real(Kind::Grpc, 3, 10_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_small_ops_and_mixed_ops() {
    for kind in KINDS {
        let (comms, _rdv) = world(kind, 4, &CommConfig::default()).await;
        let outs = run_all(comms, |r, mut c| async move {
            let mut buf = [r as f32; 3];
            for _ in 0..1000 {
                buf = [r as f32; 3];
                c.all_reduce(&mut buf, ReduceOp::Sum).await.unwrap();
            }
            // Mixed: every kind of call interleaved, sizes crossing the small/ring threshold.
            let mut big = vec![1.0f32; 40_000];
            c.all_reduce(&mut big, ReduceOp::Sum).await.unwrap();
            c.barrier().await.unwrap();
            let gathered = c.all_gather(&[r as f32]).await.unwrap();
            c.broadcast(&mut big, 2).await.unwrap();
            let scattered = c.reduce_scatter(&[1.0; 8], ReduceOp::Max).await.unwrap();
            let metrics = c.metrics();
            c.shutdown().await.unwrap();
            (buf, big[0], gathered, scattered, metrics)
        })
        .await;
        for (buf, big0, gathered, scattered, metrics) in outs {
            assert_eq!(buf, [6.0; 3], "{kind:?}");
            assert_eq!(big0, 4.0);
            assert_eq!(gathered, vec![0.0, 1.0, 2.0, 3.0]);
            assert_eq!(scattered, vec![1.0, 1.0]);
            assert_eq!(metrics.all_reduce.ops, 1001);
            assert_eq!(metrics.all_reduce.bytes, 1000 * 12 + 160_000);
            assert!(metrics.all_reduce.seconds > 0.0);
            assert_eq!(metrics.total().ops, 1001 + 4);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_communicators_and_subgroups_in_one_process() {
    for kind in KINDS {
        let (a, _ra) = world(kind, 3, &CommConfig::default()).await;
        let (b, _rb) = world(kind, 3, &CommConfig::default()).await;
        let pairs: Vec<_> = a.into_iter().zip(b).collect();
        let handles: Vec<_> = pairs
            .into_iter()
            .enumerate()
            .map(|(r, (mut a, mut b))| {
                tokio::spawn(async move {
                    let (mut x, mut y) = (vec![r as f32; 100_000], vec![1.0f32; 5]);
                    let (ra, rb) = tokio::join!(
                        a.all_reduce(&mut x, ReduceOp::Sum),
                        b.all_reduce(&mut y, ReduceOp::Sum)
                    );
                    ra.unwrap();
                    rb.unwrap();
                    // Sub-groups {0, 2} and {1} share a's links.
                    let members: Vec<u32> = if r == 1 { vec![1] } else { vec![2, 0] };
                    let mut sub = a.split(&members).unwrap();
                    let mut z = vec![r as f32 + 1.0; 10];
                    sub.all_reduce(&mut z, ReduceOp::Sum).await.unwrap();
                    a.barrier().await.unwrap();
                    drop(sub);
                    a.shutdown().await.unwrap();
                    b.shutdown().await.unwrap();
                    (x[0], y[0], z[0], r)
                })
            })
            .collect();
        for h in handles {
            let (x, y, z, r) = h.await.unwrap();
            assert_eq!((x, y), (3.0, 3.0), "{kind:?}");
            assert_eq!(z, if r == 1 { 2.0 } else { 4.0 }, "{kind:?} sub-group");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_wire_is_close_and_bit_identical() {
    for kind in KINDS {
        for dtype in [WireDType::F16, WireDType::Bf16] {
            for small_bytes in [0, 1 << 20] {
                let cfg = CommConfig {
                    wire_dtype: dtype,
                    small_bytes,
                    piece_bytes: 64,
                    ..CommConfig::default()
                };
                let (comms, _rdv) = world(kind, 4, &cfg).await;
                let inputs: Vec<Vec<f32>> = (0..4).map(|r| real_data(r, 301)).collect();
                let inputs2 = inputs.clone();
                let outs = run_all(comms, move |r, mut c| {
                    let mut buf = inputs2[r].clone();
                    async move {
                        c.all_reduce(&mut buf, ReduceOp::Sum).await.unwrap();
                        let g = c.all_gather(&buf[..3]).await.unwrap();
                        c.shutdown().await.unwrap();
                        (buf, g)
                    }
                })
                .await;
                let want = reference(&inputs, ReduceOp::Sum);
                for (buf, g) in &outs {
                    assert_close(buf, &want, 2e-2, &format!("{kind:?} {dtype}"));
                    assert_eq!(buf, &outs[0].0, "{kind:?} {dtype} bit-identical");
                    assert_eq!(g, &outs[0].1);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_ranks_and_poison_the_communicator() {
    let cfg = CommConfig {
        deadline: Duration::from_millis(500),
        stall_after: Duration::from_millis(100),
        ..CommConfig::default()
    };
    for kind in KINDS {
        // Mismatched lengths: every rank fails, and the message names both disagreeing ranks.
        let (comms, _rdv) = world(kind, 4, &cfg).await;
        let errs = run_all(comms, |r, mut c| async move {
            let mut buf = vec![1.0f32; if r == 2 { 12 } else { 10 }];
            let err = c.all_reduce(&mut buf, ReduceOp::Sum).await.unwrap_err();
            let again = c.barrier().await.unwrap_err();
            (err, again)
        })
        .await;
        for (err, again) in errs {
            let text = err.to_string();
            assert!(
                text.contains("12 elements") && text.contains("10 elements"),
                "{kind:?}: {text}"
            );
            assert!(text.contains("rank 2"), "{kind:?}: {text}");
            assert_eq!(again, CollectiveError::Poisoned(Box::new(err)));
        }

        // A rank that never calls: everyone else times out naming whom they wait for.
        let (mut comms, _rdv) = world(kind, 3, &cfg).await;
        let silent = comms.pop().unwrap();
        let errs = run_all(comms, |_, mut c| async move {
            let started = std::time::Instant::now();
            let err = c
                .all_reduce(&mut [1.0; 4], ReduceOp::Sum)
                .await
                .unwrap_err();
            (err, started.elapsed())
        })
        .await;
        for (err, took) in errs {
            assert!(took < Duration::from_secs(3), "{kind:?}: took {took:?}");
            match &err {
                CollectiveError::Timeout { waiting_for, .. } => {
                    assert!(waiting_for.contains(&2), "{err}")
                }
                CollectiveError::PeerAborted { reason, .. } => {
                    assert!(reason.contains("[2]"), "{err}")
                }
                other => panic!("{kind:?}: unexpected {other}"),
            }
        }
        drop(silent);

        // A rank that disappears mid-call: the others fail naming it.
        let (mut comms, _rdv) = world(kind, 3, &cfg).await;
        let dying = comms.remove(1);
        let waiting = tokio::spawn(run_all(comms, |_, mut c| async move {
            c.all_reduce(&mut vec![1.0; 200_000], ReduceOp::Sum)
                .await
                .unwrap_err()
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(dying);
        for err in waiting.await.unwrap() {
            assert!(err.to_string().contains("rank 1"), "{kind:?}: {err}");
        }
    }
}
