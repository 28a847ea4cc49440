//! The ringtrain coordinator: accepts jobs over gRPC, keeps them in an embedded SQLite database,
//! places each job's ranks on idle workers (gang scheduling), tracks worker leases and relays
//! commands to workers through their long-poll heartbeats.
//!
//! The parts, from the inside out: [`machine`] is the pure state machine of jobs and workers
//! (no IO), [`store`] persists its effects to SQLite before any RPC that caused them is
//! acknowledged, and [`server`] is the async shell: the gRPC job and cluster services, the
//! collective rendezvous service on the same address, a lease ticker and a Prometheus endpoint.
//!
//! Decisions a user of the wire API sees: scheduling is FIFO with backfill (a later job that
//! fits starts before an earlier one that does not); worker rows survive a coordinator restart,
//! so workers keep their ids and simply go on heartbeating (their lease restarts at the
//! coordinator's start); a worker whose lease expired gets NOT_FOUND on its next heartbeat and
//! registers again under a new id; jobs that were Starting or Running when the coordinator
//! stopped keep running if their workers report within one lease, and fail naming the rank and
//! worker otherwise. Calls are authenticated by the rules of the `auth` module: client tokens on
//! the job API, the cluster secret at registration, then each worker's own credential, and the
//! attempt's session token at the rendezvous.

pub mod machine;
pub mod server;
pub mod store;

mod auth;
mod clock;
mod config;
mod convert;
mod limits;
mod metrics;
mod service;
mod session;
mod shared;
mod sweep;
mod sweep_service;

pub use server::{
    Coordinator, CoordinatorConfig, CoordinatorError, MAX_REQUEST_BYTES, MAX_SPEC_BYTES, Retention,
    RunningCoordinator,
};
