//! TLS fixtures for end-to-end tests: a throwaway CA and one certificate for 127.0.0.1 written to
//! a temporary directory, the flags that run a [`super::services::Cluster`] with TLS or mutual TLS,
//! and an HTTPS GET for the `/metrics` endpoints.

use super::services::Flags;
use ringtrain_proto::tls::ThrowawayPki;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A throwaway CA and a certificate it signed for 127.0.0.1 and localhost (server and client
/// use), as PEM files.
pub struct Pki {
    _dir: tempfile::TempDir,
    /// The PEM texts.
    pub pem: ThrowawayPki,
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `cert.pem`.
    pub cert: PathBuf,
    /// `key.pem`.
    pub key: PathBuf,
}

impl Pki {
    /// A fresh CA and certificate.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pem = ThrowawayPki::generate(&["127.0.0.1", "localhost"]).unwrap();
        let files = pem.write(dir.path(), false).unwrap();
        Pki {
            pem,
            ca: files.ca.unwrap(),
            cert: files.cert.unwrap(),
            key: files.key.unwrap(),
            _dir: dir,
        }
    }

    fn path(p: &Path) -> String {
        p.to_str().unwrap().to_string()
    }

    /// `--tls-ca`, plus `--tls-cert`/`--tls-key` when `with_cert`: a client's flags.
    pub fn client_flags(&self, with_cert: bool) -> Vec<String> {
        let mut f = vec!["--tls-ca".to_string(), Self::path(&self.ca)];
        if with_cert {
            f.extend([
                "--tls-cert".to_string(),
                Self::path(&self.cert),
                "--tls-key".to_string(),
                Self::path(&self.key),
            ]);
        }
        f
    }

    /// The flags of every process of a TLS cluster; `mutual` makes the coordinator and the
    /// workers require client certificates (and gives the clients one).
    pub fn flags(&self, mutual: bool) -> Flags {
        let mut server = self.client_flags(true);
        if mutual {
            server.push("--tls-require-client-cert".to_string());
        }
        Flags {
            coordinator: server.clone(),
            worker: server,
            client: self.client_flags(mutual),
        }
    }
}

/// `GET path` over HTTPS from `addr` ("host:port"), verifying the server against `pki`'s CA and
/// presenting its certificate when `with_cert`. Returns the status line and body, or the error.
pub fn https_get(addr: &str, path: &str, pki: &Pki, with_cert: bool) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.pem.ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let certs = CertificateDer::pem_slice_iter(pki.pem.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.pem.key.as_bytes()).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let io = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::try_from(host).map_err(std::io::Error::other)?;
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(request.as_bytes()).await?;
            let mut out = String::new();
            tls.read_to_string(&mut out).await?;
            std::io::Result::Ok(out)
        };
        match tokio::time::timeout(std::time::Duration::from_secs(20), io).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    })
}
