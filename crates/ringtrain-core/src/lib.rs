//! The vocabulary every ringtrain crate shares: identifiers of jobs and workers, ranks in a
//! communicator, training steps and epochs. Pure data, no IO, so any crate (including the wire
//! API and the coordinator's state machine) can depend on it without pulling in a runtime.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Position of a process inside one communicator group, `0..world`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rank(pub u32);

impl Rank {
    /// The rank as an index into per-rank arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rank {}", self.0)
    }
}

/// Number of optimizer steps taken since the start of a job (0 before the first step).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Step(pub u64);

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}", self.0)
    }
}

/// Zero-based epoch counter: one epoch is one pass over the (padded) training shard plan.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u32);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an identifier string as given (no normalization).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// Identifier of a submitted job, unique within one coordinator's state database.
    JobId
);
string_id!(
    /// Identifier of a registered worker process, unique within one coordinator.
    WorkerId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_and_serialize_transparently() {
        assert_eq!(Rank(3).to_string(), "rank 3");
        assert_eq!(serde_json::to_string(&Step(7)).unwrap(), "7");
        assert_eq!(JobId::new("job-1").to_string(), "job-1");
        assert_eq!(serde_json::to_string(&WorkerId::new("w")).unwrap(), "\"w\"");
    }
}
