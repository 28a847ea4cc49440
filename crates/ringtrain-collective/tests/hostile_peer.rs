//! Lengths read from the wire are claims, not allocation sizes: a peer that announces a
//! point-to-point message of an absurd length (here straight through the transport, as a forged
//! frame would arrive) makes the receiving rank fail with an error naming it — at once when the
//! claim cannot even be counted in pieces, at the deadline when it sends less than it announced —
//! and never allocate what it claimed (which would abort the process).

use bytes::Bytes;
use ringtrain_collective::{
    CollectiveError, CommConfig, Communicator, Fingerprint, InProcTransport, Message, OpKind,
    Transport, WireDType,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_huge_message_is_refused_without_allocating_it() {
    // 2^45 f32s would be 128 TiB; 2^50 is more pieces than a message may have; u64::MAX does not
    // fit a usize length on any target.
    for claimed in [1u64 << 45, 1 << 50, u64::MAX] {
        let mut world = InProcTransport::world(2);
        let liar = world.pop().unwrap();
        let honest = world.pop().unwrap();
        let cfg = CommConfig {
            deadline: Duration::from_secs(2),
            ..CommConfig::default()
        };
        let piece_bytes = cfg.piece_bytes;
        let mut comm = Communicator::new(Arc::new(honest), cfg);
        liar.send(
            0,
            0,
            Message {
                fingerprint: Fingerprint {
                    op: OpKind::Send,
                    seq: 0,
                    elements: claimed,
                    dtype: WireDType::F32,
                    arg: 0,
                },
                step: 0,
                piece: 0,
                payload: Bytes::from(vec![0u8; piece_bytes]),
            },
        )
        .await
        .unwrap();
        let started = Instant::now();
        let err = comm.recv(1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "claim {claimed}: took {:?}",
            started.elapsed()
        );
        match &err {
            CollectiveError::Timeout { .. } => assert_eq!(claimed, 1 << 45, "{err}"),
            CollectiveError::Transport(m) => {
                assert!(m.contains("rank 1") && m.contains("elements"), "{m}")
            }
            other => panic!("claim {claimed}: unexpected error {other}"),
        }
    }
}
