//! The ringtrain wire API: Rust types and gRPC clients/servers generated from
//! `proto/ringtrain/v1/*.proto` (package `ringtrain.v1`), plus the one table that maps library
//! error categories to gRPC status codes, the TLS settings ([`tls`]) every server and client of
//! the cluster is built with, and the credential helpers every service shares ([`auth`]). Byte
//! fields are `bytes::Bytes`, so tensor payloads move
//! without copies between the socket and the code that decodes them.

pub mod auth;
pub mod status;
pub mod tls;

/// Largest `JobResult.report_json` a coordinator accepts, in bytes: a worker sends at most this
/// much (it shortens a long run's epoch history to fit), a coordinator refuses more.
pub const MAX_REPORT_JSON_BYTES: usize = 1024 * 1024;

/// Generated code for package `ringtrain.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("ringtrain.v1");
}
