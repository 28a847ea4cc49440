//! The ringtrain coordinator: accepts jobs over gRPC, keeps them in an embedded SQLite database,
//! places each job's ranks on idle workers (gang scheduling), tracks worker leases and relays
//! commands to workers through their long-poll heartbeats.
//!
//! The parts, from the inside out: [`machine`] is the pure state machine of jobs and workers
//! (no IO), [`store`] persists its effects to SQLite before any RPC that caused them is
//! acknowledged, and [`server`] is the async shell: the gRPC job and cluster services, the
//! collective rendezvous service on the same address, a lease ticker and a Prometheus endpoint.

pub mod machine;
pub mod server;
pub mod store;

mod metrics;
mod service;

pub use server::{
    Coordinator, CoordinatorConfig, CoordinatorError, MAX_REQUEST_BYTES, MAX_SPEC_BYTES,
    RunningCoordinator,
};
