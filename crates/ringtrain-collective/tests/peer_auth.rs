//! Peer links of the gRPC transport refuse outsiders: a 2-rank world with a session token, and an
//! attacker dialing rank 1's peer endpoint as rank 0 with the generated `PeerService` client.
//! Without the token the link is refused (UNAUTHENTICATED); with it, a second link for a rank
//! that already has one is refused too (ALREADY_EXISTS); either way, no abort frame of the
//! attacker reaches the world, whose ranks go on to all-reduce correctly.

use ringtrain_collective::rendezvous;
use ringtrain_collective::{
    CommConfig, Communicator, GrpcConfig, GrpcTransport, ReduceOp, Transport,
};
use ringtrain_proto::v1 as pb;
use ringtrain_proto::v1::peer_service_client::PeerServiceClient;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "session-token-0123456789abcdef";

fn frames(token: &str) -> Vec<pb::PeerFrame> {
    vec![
        pb::PeerFrame {
            body: Some(pb::peer_frame::Body::Hello(pb::Hello {
                rank: 0,
                world: 2,
                session: "s".into(),
                token: token.into(),
            })),
        },
        pb::PeerFrame {
            body: Some(pb::peer_frame::Body::Abort(pb::Abort {
                rank: 0,
                reason: "forged abort".into(),
            })),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_need_the_session_token_and_never_replace_a_live_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rdv = rendezvous::spawn(listener).unwrap();
    let connect = |rank| {
        GrpcTransport::connect(GrpcConfig {
            rank,
            world: 2,
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise_host: None,
            rendezvous: rdv.addr().to_string(),
            session: "s".into(),
            session_token: TOKEN.into(),
            tls: None,
            setup_timeout: Duration::from_secs(20),
        })
    };
    let (t0, t1) = tokio::try_join!(connect(0), connect(1)).unwrap();
    let target = format!("http://{}", t1.local_addr());
    let mut attacker = PeerServiceClient::connect(target).await.unwrap();
    for (token, expect) in [
        ("", tonic::Code::Unauthenticated),
        (
            "session-token-0123456789abcdeX",
            tonic::Code::Unauthenticated,
        ),
        (TOKEN, tonic::Code::AlreadyExists),
    ] {
        let status = attacker
            .link(tokio_stream::iter(frames(token)))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), expect, "{status:?}");
    }
    assert!(t0.failure().is_none() && t1.failure().is_none());
    let cfg = CommConfig::default();
    let comms = [t0, t1].map(|t| Communicator::new(Arc::new(t), cfg.clone()));
    let [mut c0, mut c1] = comms;
    // Each rank shuts down cleanly after its all-reduce: a rank that finished first and merely
    // dropped its transport would close its link while the other may still have its last piece
    // queued, which the other rank rightly reports as a lost peer.
    let (a, b) = tokio::join!(
        async move {
            let mut v = vec![1.0f32; 8];
            c0.all_reduce(&mut v, ReduceOp::Sum).await?;
            c0.shutdown().await.map(|()| v)
        },
        async move {
            let mut v = vec![2.0f32; 8];
            c1.all_reduce(&mut v, ReduceOp::Sum).await?;
            c1.shutdown().await.map(|()| v)
        }
    );
    assert_eq!(a.unwrap(), vec![3.0; 8]);
    assert_eq!(b.unwrap(), vec![3.0; 8]);
}
