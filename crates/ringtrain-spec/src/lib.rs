//! The ringtrain job spec. A spec is read in two phases: [`raw`] is the serde form of the TOML or
//! JSON document (unknown keys rejected), then [`validate`] checks every value and produces the
//! [`JobSpec`] the rest of ringtrain uses. Every error names the field path (`train.optimizer.lr`),
//! the bad value and what is allowed.

pub mod types;

pub use types::*;
