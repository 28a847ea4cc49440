//! Shared helpers of the integration tests: building worlds on each transport and running one
//! closure per rank concurrently.

#![allow(dead_code)]

use ringtrain_collective::rendezvous;
use ringtrain_collective::{CommConfig, Communicator, GrpcConfig, GrpcTransport, InProcTransport};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The transports the conformance suite runs on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    InProc,
    Grpc,
}

pub const KINDS: [Kind; 2] = [Kind::InProc, Kind::Grpc];

static SESSION: AtomicU64 = AtomicU64::new(0);

/// A world of `n` communicators; the returned guard keeps the rendezvous alive.
pub async fn world(
    kind: Kind,
    n: u32,
    cfg: &CommConfig,
) -> (Vec<Communicator>, Option<rendezvous::RendezvousHandle>) {
    match kind {
        Kind::InProc => (
            InProcTransport::world(n)
                .into_iter()
                .map(|t| Communicator::new(Arc::new(t), cfg.clone()))
                .collect(),
            None,
        ),
        Kind::Grpc => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let rdv = rendezvous::spawn(listener).unwrap();
            let session = format!("test-{}", SESSION.fetch_add(1, Ordering::SeqCst));
            let futs = (0..n).map(|rank| {
                GrpcTransport::connect(GrpcConfig {
                    rank,
                    world: n,
                    listen: "127.0.0.1:0".parse().unwrap(),
                    advertise_host: None,
                    rendezvous: rdv.addr().to_string(),
                    session: session.clone(),
                    session_token: String::new(),
                    setup_timeout: Duration::from_secs(20),
                    tls: None,
                })
            });
            let transports = futures::future::try_join_all(futs).await.unwrap();
            (
                transports
                    .into_iter()
                    .map(|t| Communicator::new(Arc::new(t), cfg.clone()))
                    .collect(),
                Some(rdv),
            )
        }
    }
}

/// Runs `f(rank, comm)` for every rank concurrently and returns the results by rank.
pub async fn run_all<T, F, Fut>(comms: Vec<Communicator>, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, Communicator) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = comms
        .into_iter()
        .enumerate()
        .map(|(r, c)| tokio::spawn(f(r, c)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("rank task panicked"));
    }
    out
}

/// Integer-valued test data, different per rank.
pub fn int_data(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + rank * 13) % 23) as f32 - 11.0)
        .collect()
}

/// Positive non-integer data (no cancellation, so 1e-6 relative error is meaningful).
pub fn real_data(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| 0.5 + ((i as u64 * 2_654_435_761 + rank as u64 * 40_503) % 1000) as f32 / 997.0)
        .collect()
}
