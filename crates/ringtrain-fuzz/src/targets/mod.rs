//! The fuzz targets. Each turns bytes into a call of a public entry point exactly as a
//! file or a peer would reach it, and reports the outcome class (see [`crate::class_of`]).

pub mod checkpoint;
pub mod data;
pub mod safetensors;
pub mod spec;
pub mod wire;

/// Every target name, in the order `bench/fuzz.sh all` runs them.
pub const NAMES: [&str; 5] = ["spec", "data", "checkpoint", "wire", "safetensors"];
