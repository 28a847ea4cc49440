//! The running rank's control as the heartbeat loop and the rank both see it ([`JobControl`]: its
//! identity, the trainer's stop flag and the first stop cause); its own module so the shared
//! worker state can hold it without importing the rank's code.

use ringtrain_proto::v1 as pb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Why a rank was asked to stop.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StopCause {
    /// The coordinator said so (job cancelled or failed), with its reason.
    Coordinator(String),
    /// This worker is shutting down.
    Shutdown,
}

/// The running rank as the heartbeat loop sees it.
#[derive(Debug)]
pub(crate) struct JobControl {
    pub(crate) job_id: String,
    pub(crate) attempt: u32,
    pub(crate) rank: u32,
    pub(crate) collective_timeout: Duration,
    /// The trainer's stop flag.
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) stopped: watch::Sender<bool>,
    pub(crate) cause: Mutex<Option<StopCause>>,
    /// Set when the attempt is over for good (see [`JobControl::request_abort`]).
    aborted: watch::Sender<bool>,
}

impl JobControl {
    pub(crate) fn new(a: &pb::Assignment) -> Self {
        JobControl {
            job_id: a.job_id.clone(),
            attempt: a.attempt,
            rank: a.rank,
            collective_timeout: Duration::from_millis(a.collective_timeout_ms.max(1)),
            stop: Arc::new(AtomicBool::new(false)),
            stopped: watch::Sender::new(false),
            cause: Mutex::new(None),
            aborted: watch::Sender::new(false),
        }
    }

    /// Stops the rank ([`JobControl::request_stop`]) and, since its attempt is over for good
    /// (failed, or restarted without it), also fails its communicator at once: a collective
    /// call waiting for a peer that is gone returns now instead of at the collective deadline.
    pub(crate) fn request_abort(&self, cause: StopCause) {
        self.request_stop(cause);
        self.aborted.send_replace(true);
    }

    /// Returns once [`JobControl::request_abort`] was called.
    pub(crate) async fn wait_aborted(&self) {
        let mut rx = self.aborted.subscribe();
        let _ = rx.wait_for(|a| *a).await;
    }

    /// Asks the rank to stop at its next step boundary; the first cause is kept.
    pub(crate) fn request_stop(&self, cause: StopCause) {
        let mut kept = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if kept.is_none() {
            tracing::info!(job = %self.job_id, rank = self.rank, ?cause, "stop requested");
            *kept = Some(cause);
        }
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.send_replace(true);
    }

    pub(crate) fn cause(&self) -> Option<StopCause> {
        self.cause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) async fn wait_stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}
