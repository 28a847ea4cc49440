//! The gRPC transport over mutual TLS: two ranks with certificates from the same throwaway CA
//! all-reduce exactly as over plain TCP, through a TLS rendezvous; a rank whose certificate comes
//! from another CA cannot form the ring, and the error says why (no hang, no silent plain text).

use ringtrain_collective::rendezvous;
use ringtrain_collective::{CommConfig, Communicator, GrpcConfig, GrpcTransport, ReduceOp};
use ringtrain_proto::tls::{ThrowawayPki, TlsConfig};
use std::sync::Arc;
use std::time::Duration;

fn config(rank: u32, rendezvous: String, session: &str, tls: TlsConfig) -> GrpcConfig {
    GrpcConfig {
        rank,
        world: 2,
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise_host: None,
        rendezvous,
        session: session.to_string(),
        session_token: String::new(),
        setup_timeout: Duration::from_secs(5),
        tls: Some(tls),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ranks_all_reduce_over_mutual_tls() {
    let pki = ThrowawayPki::generate(&["127.0.0.1"]).unwrap();
    let tls = pki.config(true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rdv = rendezvous::spawn_with(listener, Some(&tls)).unwrap();
    let addr = rdv.addr().to_string();
    let ranks: Vec<_> = (0..2u32)
        .map(|rank| {
            let cfg = config(rank, addr.clone(), "tls", tls.clone());
            tokio::spawn(async move {
                let transport = GrpcTransport::connect(cfg).await.unwrap();
                let mut comm = Communicator::new(Arc::new(transport), CommConfig::default());
                // Larger than one piece, so several TLS records carry each message.
                let mut buf: Vec<f32> = (0..600_000)
                    .map(|i| (i % 1000) as f32 + rank as f32)
                    .collect();
                comm.all_reduce(&mut buf, ReduceOp::Sum).await.unwrap();
                comm.shutdown().await.unwrap();
                buf
            })
        })
        .collect();
    for r in ranks {
        let buf = r.await.unwrap();
        for (i, x) in buf.iter().enumerate() {
            assert_eq!(*x, 2.0 * (i % 1000) as f32 + 1.0, "element {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rank_from_another_ca_cannot_join() {
    let pki = ThrowawayPki::generate(&["127.0.0.1"]).unwrap();
    let tls = pki.config(true).unwrap();
    let stranger = ThrowawayPki::generate(&["127.0.0.1"])
        .unwrap()
        .config(true)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rdv = rendezvous::spawn_with(listener, Some(&tls)).unwrap();
    let addr = rdv.addr().to_string();
    // The stranger cannot even reach the rendezvous: its CA does not know the server, and the
    // server does not know its certificate.
    let err = GrpcTransport::connect(config(1, addr.clone(), "s", stranger))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    // The honest rank 0 then waits for a partner that never comes, and says so at its deadline.
    let err = GrpcTransport::connect(config(0, addr, "s", tls))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1"), "{err}");
}
