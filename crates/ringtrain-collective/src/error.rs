//! The one error type of the library. It is `Clone` because a failed communicator keeps its
//! original cause and hands a copy to every later call (and to peers, as an abort reason).

use crate::types::Fingerprint;
use std::time::Duration;

/// Result alias of this crate.
pub type Result<T, E = CollectiveError> = std::result::Result<T, E>;

/// Why a collective call (or the setup of a communicator) failed. Ranks are world ranks of the
/// transport (equal to group ranks in the world communicator).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectiveError {
    /// Two ranks called different operations, lengths, dtypes, reductions or roots.
    #[error(
        "fingerprint mismatch: rank {local_rank} called {local} but rank {peer_rank} called {peer}"
    )]
    Mismatch {
        /// The rank that detected the mismatch.
        local_rank: u32,
        /// Its fingerprint.
        local: Fingerprint,
        /// The peer whose message disagreed.
        peer_rank: u32,
        /// The peer's fingerprint.
        peer: Fingerprint,
    },
    /// The call did not finish within the communicator's deadline.
    #[error("{op} on rank {rank} timed out after {after:?} waiting for ranks {waiting_for:?}")]
    Timeout {
        /// The call that timed out.
        op: Fingerprint,
        /// The rank that timed out.
        rank: u32,
        /// The deadline that expired.
        after: Duration,
        /// Ranks this rank was still waiting to hear from.
        waiting_for: Vec<u32>,
    },
    /// The connection to a peer broke (process died, network failure).
    #[error("connection to rank {rank} lost: {detail}")]
    PeerLost {
        /// The lost rank.
        rank: u32,
        /// What the transport observed.
        detail: String,
    },
    /// A peer's communicator failed and it told everyone why.
    #[error("rank {rank} aborted the communicator: {reason}")]
    PeerAborted {
        /// The rank that failed first (as seen by this rank).
        rank: u32,
        /// Its error message.
        reason: String,
    },
    /// A peer shut down cleanly, but this rank still expected data from it.
    #[error("rank {rank} has shut down")]
    PeerShutDown {
        /// The departed rank.
        rank: u32,
    },
    /// The communicator failed earlier; it refuses every further call with the original cause.
    #[error("communicator failed earlier: {0}")]
    Poisoned(Box<CollectiveError>),
    /// The caller passed arguments that cannot be valid on any rank.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Not every rank registered at the rendezvous in time.
    #[error(
        "rendezvous at {address} for rank {rank} timed out after {after:?}: ranks {missing:?} never joined"
    )]
    RendezvousTimeout {
        /// The rendezvous address.
        address: String,
        /// The rank that gave up.
        rank: u32,
        /// How long it waited.
        after: Duration,
        /// Ranks that never registered.
        missing: Vec<u32>,
    },
    /// The rendezvous refused or could not be reached.
    #[error("rendezvous at {address} failed for rank {rank}: {detail}")]
    Rendezvous {
        /// The rendezvous address.
        address: String,
        /// The rank that tried to join.
        rank: u32,
        /// What went wrong.
        detail: String,
    },
    /// A transport-level failure that is not attributable to one peer (bind, protocol).
    #[error("transport error: {0}")]
    Transport(String),
    /// The NCCL backend failed.
    #[error("nccl error on rank {rank}: {detail}")]
    Nccl {
        /// The rank reporting it.
        rank: u32,
        /// NCCL's or CUDA's message.
        detail: String,
    },
}

impl CollectiveError {
    /// The error a failed communicator returns for later calls: the original cause, wrapped once.
    pub(crate) fn poisoned(cause: &CollectiveError) -> CollectiveError {
        match cause {
            CollectiveError::Poisoned(_) => cause.clone(),
            other => CollectiveError::Poisoned(Box::new(other.clone())),
        }
    }

    /// The gRPC status category of this error (for servers that report it).
    pub fn kind(&self) -> ringtrain_proto::status::ErrorKind {
        use ringtrain_proto::status::ErrorKind;
        match self {
            CollectiveError::Mismatch { .. } | CollectiveError::InvalidArgument(_) => {
                ErrorKind::InvalidArgument
            }
            CollectiveError::Timeout { .. } | CollectiveError::RendezvousTimeout { .. } => {
                ErrorKind::DeadlineExceeded
            }
            CollectiveError::PeerLost { .. }
            | CollectiveError::PeerShutDown { .. }
            | CollectiveError::Rendezvous { .. } => ErrorKind::Unavailable,
            CollectiveError::PeerAborted { .. } => ErrorKind::Aborted,
            CollectiveError::Poisoned(_) => ErrorKind::FailedPrecondition,
            CollectiveError::Transport(_) | CollectiveError::Nccl { .. } => ErrorKind::Internal,
        }
    }
}
