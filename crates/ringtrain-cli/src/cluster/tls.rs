//! The `--tls-*` flags every cluster command shares and their loading into a checked
//! [`TlsConfig`]: client commands and the worker's connections trust `--tls-ca` and present
//! `--tls-cert`/`--tls-key` when given (mutual TLS); the coordinator and the worker serve with
//! `--tls-cert`/`--tls-key` and, with `--tls-require-client-cert`, refuse clients without a
//! certificate signed by `--tls-ca`. No flag means plain TCP (what `ringtrain local` uses on
//! loopback).

use anyhow::{Context, Result};
use ringtrain_proto::tls::{TlsConfig, TlsFiles};
use std::path::PathBuf;

/// `--tls-cert`, `--tls-key`, `--tls-ca` of the client commands (also `RINGTRAIN_TLS_CERT`,
/// `RINGTRAIN_TLS_KEY`, `RINGTRAIN_TLS_CA`).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct TlsArgs {
    /// PEM certificate (chain) this process presents: the server certificate of a coordinator or
    /// worker (it must name the host clients dial), the client certificate of a client under
    /// mutual TLS.
    #[arg(
        long = "tls-cert",
        env = "RINGTRAIN_TLS_CERT",
        value_name = "PEM",
        global = true
    )]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long = "tls-key",
        env = "RINGTRAIN_TLS_KEY",
        value_name = "PEM",
        global = true
    )]
    pub(crate) key: Option<PathBuf>,
    /// PEM CA bundle to trust: verifies the coordinator and workers this process dials (TLS is
    /// used when given, or for an https:// coordinator) and, on a server, client certificates.
    #[arg(
        long = "tls-ca",
        env = "RINGTRAIN_TLS_CA",
        value_name = "PEM",
        global = true
    )]
    pub(crate) ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Reads and checks the files; `None` when no flag was given. `require_client_cert` is the
    /// server's `--tls-require-client-cert`.
    ///
    /// # Errors
    /// A file that cannot be read or is not the PEM it should be (named), a certificate without
    /// its key, a key that does not match its certificate.
    pub(crate) fn load(&self, require_client_cert: bool) -> Result<Option<TlsConfig>> {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
            require_client_cert,
        }
        .load()
        .context("loading the TLS settings")
    }
}

/// The TLS flags of the services (`coordinator`, `worker`). Unlike the client flags they are
/// never read from the environment, so the children of `ringtrain local` stay plain.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ServerTlsArgs {
    /// PEM certificate (chain) this service serves with; it must name the host others dial (a
    /// worker's: its --advertise host). A worker also presents it when it dials (mutual TLS).
    #[arg(long = "tls-cert", value_name = "PEM")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", value_name = "PEM")]
    pub(crate) key: Option<PathBuf>,
    /// PEM CA bundle: verifies client certificates, and (worker) the coordinator and the peers.
    #[arg(long = "tls-ca", value_name = "PEM")]
    pub(crate) ca: Option<PathBuf>,
    /// Mutual TLS: refuse every client (CLI, worker, peer, scraper) without a certificate signed
    /// by --tls-ca.
    #[arg(long = "tls-require-client-cert")]
    pub(crate) require_client_cert: bool,
}

impl ServerTlsArgs {
    /// [`TlsArgs::load`] with this server's client-certificate policy.
    pub(crate) fn load(&self) -> Result<Option<TlsConfig>> {
        TlsArgs {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
        .load(self.require_client_cert)
    }
}
