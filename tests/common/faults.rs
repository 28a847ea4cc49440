//! Faults a test injects into a worker of a namespaced cluster ([`Cluster::in_namespaces`]):
//! kill -9, SIGSTOP, link cuts both ways or one way, the coordinator cut off from it — and
//! how each is healed. Shared by `faults.rs` (restarts) and `elastic.rs` (shrink and grow).

use super::services::{COORDINATOR_HOST, Cluster, worker_host};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds, comparable with the coordinator's `history[].at_ms`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A fault injected into one worker.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// A worker's link cut both ways.
    Cut,
    /// A worker's outbound traffic dropped.
    CutOutbound,
    /// A worker stopped with SIGSTOP, then resumed.
    Stall,
    /// The coordinator cut off from a worker for longer than a lease.
    CoordinatorCut,
    /// A worker killed with SIGKILL and started again.
    Kill,
}

impl Fault {
    /// Injects the fault into worker `victim`.
    pub fn inject(self, c: &mut Cluster, victim: usize) {
        let host = worker_host(victim);
        let net = c.net.as_ref().unwrap();
        match self {
            Fault::Cut => net.cut(host),
            Fault::CutOutbound => net.cut_outbound(host),
            Fault::Stall => c.workers[victim].signal("STOP"),
            Fault::CoordinatorCut => net.cut_between(COORDINATOR_HOST, host),
            Fault::Kill => c.workers[victim].kill9(),
        }
    }

    /// Ends the fault: the link restored, the process resumed or started again.
    pub fn heal(self, c: &mut Cluster, victim: usize) {
        let host = worker_host(victim);
        let net = c.net.as_ref().unwrap();
        match self {
            Fault::Cut | Fault::CutOutbound => net.restore(host),
            Fault::Stall => c.workers[victim].signal("CONT"),
            Fault::CoordinatorCut => {
                net.restore(COORDINATOR_HOST);
                net.restore(host);
            }
            Fault::Kill => c.restart_worker(victim),
        }
    }
}
