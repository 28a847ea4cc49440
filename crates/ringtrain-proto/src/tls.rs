//! TLS for every ringtrain connection: the coordinator's gRPC port, the workers' peer ports and
//! both services' `/metrics` endpoints, through rustls (ring provider). One [`TlsConfig`] holds
//! what a process presents (its certificate chain and key) and what it trusts (the CA bundle of
//! `--tls-ca`, which also verifies client certificates under mutual TLS); it builds tonic's server
//! and client settings and the plain rustls server settings the HTTP endpoints use, so every port
//! of a process is secured the same way. There are no system trust roots: a TLS client always
//! names its CA, which is what a private cluster wants and keeps the build free of platform
//! certificate stores. Files are read and checked once, at start, so a bad path, a file that is
//! not PEM or a key that does not match its certificate fails there with the file named.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Largest certificate, key or CA file read (a chain of a few certificates is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// How long a server waits for a client to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS settings cannot be used. Messages name the file (or flag) at fault and never quote
/// more than a short snippet of a file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or is too large to be a certificate or key.
    #[error("cannot read the TLS {what} {}: {detail}", path.display())]
    Read {
        /// Which file: "certificate", "key" or "CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A file is not the PEM it should be.
    #[error("TLS {what} {source_name}: {detail}")]
    Parse {
        /// Which file: "certificate", "key" or "CA".
        what: &'static str,
        /// The file's path, or a label for in-memory PEM.
        source_name: String,
        /// What is wrong (bounded).
        detail: String,
    },
    /// The combination of settings cannot work (e.g. a certificate without its key).
    #[error("TLS settings: {0}")]
    Config(String),
    /// rustls or tonic refused the settings (e.g. a key that does not match its certificate).
    #[error("TLS: {0}")]
    Rustls(String),
}

/// The TLS files of one process, as given on the command line (`--tls-cert`, `--tls-key`,
/// `--tls-ca`, `--tls-require-client-cert`). All empty means no TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain this process presents (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle this process trusts: servers it dials, and clients under mutual TLS.
    pub ca: Option<PathBuf>,
    /// A server refuses clients without a certificate signed by `ca` (mutual TLS).
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// True when no TLS setting was given.
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none() && !self.require_client_cert
    }

    /// Reads and checks the files: `None` when none was given.
    ///
    /// # Errors
    /// [`TlsError::Read`] / [`TlsError::Parse`] naming the file, [`TlsError::Config`] for a
    /// certificate without a key (or the reverse) or `require_client_cert` without a CA,
    /// [`TlsError::Rustls`] for a key that does not belong to the certificate.
    pub fn load(&self) -> Result<Option<TlsConfig>, TlsError> {
        if self.is_empty() {
            return Ok(None);
        }
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((read_pem("certificate", c)?, read_pem("key", k)?)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsError::Config(
                    "--tls-cert needs its private key (--tls-key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Config(
                    "--tls-key needs its certificate (--tls-cert)".into(),
                ));
            }
        };
        let ca = match &self.ca {
            Some(p) => Some(read_pem("CA", p)?),
            None => None,
        };
        let name = |p: &Option<PathBuf>| {
            p.as_deref()
                .map_or_else(String::new, |p| p.display().to_string())
        };
        TlsConfig::build(
            identity,
            ca,
            self.require_client_cert,
            [name(&self.cert), name(&self.key), name(&self.ca)],
        )
        .map(Some)
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let err = |detail: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if len > MAX_PEM_BYTES {
        return Err(err(format!(
            "{len} bytes, more than the {MAX_PEM_BYTES} a certificate or key file may have"
        )));
    }
    std::fs::read(path).map_err(|e| err(e.to_string()))
}

/// Checked TLS material of one process. Cheap to clone; its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// (certificate chain PEM, key PEM) this process presents.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    /// CA bundle PEM this process trusts.
    ca: Option<Vec<u8>>,
    require_client_cert: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificate", &self.identity.is_some())
            .field("ca", &self.ca.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish()
    }
}

fn parse_certs(
    what: &'static str,
    name: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse {
            what,
            source_name: name.to_string(),
            detail: pem_error(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Parse {
            what,
            source_name: name.to_string(),
            detail: "no certificate found (expected a \"-----BEGIN CERTIFICATE-----\" block)"
                .into(),
        });
    }
    Ok(certs)
}

fn parse_key(name: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Parse {
        what: "key",
        source_name: name.to_string(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a \"-----BEGIN PRIVATE KEY-----\", \
                 \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
                    .into()
            }
            e => pem_error(&e),
        },
    })
}

/// A PEM error in a few words: the parser's own message can quote a whole line of the file.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a PEM block has no END line".into(),
        E::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        E::Base64Decode(_) => "a PEM block is not valid base64".into(),
        E::NoItemsFound => "no PEM block of the expected kind".into(),
        E::SectionTooLarge => "a PEM block is too large".into(),
        _ => "not PEM".into(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// TLS material from PEM held in memory (throwaway certificates of a benchmark or a test):
    /// `identity` is (certificate chain, key), `ca` the trusted bundle.
    ///
    /// # Errors
    /// As [`TlsFiles::load`].
    pub fn from_pem(
        identity: Option<(Vec<u8>, Vec<u8>)>,
        ca: Option<Vec<u8>>,
        require_client_cert: bool,
    ) -> Result<TlsConfig, TlsError> {
        let label = |s: &str| format!("<{s} in memory>");
        Self::build(
            identity,
            ca,
            require_client_cert,
            [label("certificate"), label("key"), label("CA")],
        )
    }

    fn build(
        identity: Option<(Vec<u8>, Vec<u8>)>,
        ca: Option<Vec<u8>>,
        require_client_cert: bool,
        [cert_name, key_name, ca_name]: [String; 3],
    ) -> Result<TlsConfig, TlsError> {
        if require_client_cert && ca.is_none() {
            return Err(TlsError::Config(
                "requiring client certificates needs the CA that signs them (--tls-ca)".into(),
            ));
        }
        if let Some((cert, key)) = &identity {
            parse_certs("certificate", &cert_name, cert)?;
            parse_key(&key_name, key)?;
        }
        if let Some(ca) = &ca {
            parse_certs("CA", &ca_name, ca)?;
        }
        let config = TlsConfig {
            identity,
            ca,
            require_client_cert,
        };
        // Building the rustls settings checks what parsing cannot: that the key belongs to the
        // certificate and that the CA certificates are usable trust anchors.
        if config.identity.is_some() {
            config.rustls_server_config(Vec::new())?;
        }
        if config.ca.is_some() {
            config.root_store()?;
        }
        Ok(config)
    }

    /// True when this process has a certificate to serve with.
    pub fn can_serve(&self) -> bool {
        self.identity.is_some()
    }

    /// True when this process has a CA to verify the servers it dials.
    pub fn can_dial(&self) -> bool {
        self.ca.is_some()
    }

    /// True when servers refuse clients without a certificate signed by the CA.
    pub fn require_client_cert(&self) -> bool {
        self.require_client_cert
    }

    /// tonic's server settings: this certificate, and client certificates verified against the
    /// CA when one is given (required under mutual TLS, optional otherwise).
    ///
    /// # Errors
    /// [`TlsError::Config`] when there is no certificate to serve with.
    pub fn server(&self) -> Result<ServerTlsConfig, TlsError> {
        let (cert, key) = self.identity.as_ref().ok_or_else(|| {
            TlsError::Config(
                "serving TLS needs a certificate and key (--tls-cert, --tls-key)".into(),
            )
        })?;
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.ca {
            tls = tls
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(!self.require_client_cert);
        }
        Ok(tls)
    }

    /// tonic's client settings: servers verified against the CA; this certificate presented
    /// when the server asks for one (mutual TLS).
    ///
    /// # Errors
    /// [`TlsError::Config`] when there is no CA to verify servers with.
    pub fn client(&self) -> Result<ClientTlsConfig, TlsError> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            TlsError::Config(
                "connecting with TLS needs the CA that signed the server's certificate (--tls-ca)"
                    .into(),
            )
        })?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Ok(tls)
    }

    fn root_store(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &self.ca {
            for cert in parse_certs("CA", "--tls-ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Rustls(format!("CA certificate: {e}")))?;
            }
        }
        Ok(roots)
    }

    /// rustls server settings for a plain HTTP endpoint (`/metrics`), offering `alpn` (e.g.
    /// `http/1.1`), with the same client-certificate policy as [`TlsConfig::server`].
    ///
    /// # Errors
    /// [`TlsError::Config`] without a certificate, [`TlsError::Rustls`] when rustls refuses the
    /// certificate, key or CA.
    pub fn rustls_server_config(
        &self,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (cert, key) = self.identity.as_ref().ok_or_else(|| {
            TlsError::Config(
                "serving TLS needs a certificate and key (--tls-cert, --tls-key)".into(),
            )
        })?;
        let certs = parse_certs("certificate", "--tls-cert", cert)?;
        let key = parse_key("--tls-key", key)?;
        let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?;
        let builder = if self.ca.is_some() {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.root_store()?),
                provider(),
            );
            let verifier = if self.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(format!("CA: {e}")))?,
            )
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Rustls(format!("certificate and key: {e}")))?;
        config.alpn_protocols = alpn;
        Ok(Arc::new(config))
    }
}

/// A tonic endpoint for `target` ("host:port" or a URL), secured with `tls` when given.
/// Without TLS the scheme is `http`; with it `https` (a bare "host:port" gets the scheme that
/// matches). The certificate of the server must name the host dialled (DNS name or IP address).
///
/// # Errors
/// [`TlsError::Config`] for an `https://` URL without TLS settings (no CA to verify the server
/// with), an `http://` URL with them (the two disagree), a malformed URL, or TLS settings
/// without a CA.
pub fn endpoint(target: &str, tls: Option<&TlsConfig>) -> Result<Endpoint, TlsError> {
    let url = match (target.split_once("://"), tls) {
        (None, None) => format!("http://{target}"),
        (None, Some(_)) => format!("https://{target}"),
        (Some(("https", _)), None) => {
            return Err(TlsError::Config(format!(
                "{target} is an https:// address: give the CA that signed its certificate (--tls-ca)"
            )));
        }
        (Some(("http", _)), Some(_)) => {
            return Err(TlsError::Config(format!(
                "{target} is a plain http:// address but TLS settings were given: \
                 use https:// (or leave out the --tls-* flags)"
            )));
        }
        _ => target.to_string(),
    };
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| TlsError::Config(format!("{url:?} is not a valid address: {e}")))?;
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.client()?)
            .map_err(|e| TlsError::Rustls(format!("client settings for {url}: {e}"))),
        None => Ok(endpoint),
    }
}

/// A throwaway certificate authority and one certificate it signed, for benchmarks and tests.
#[cfg(any(test, feature = "throwaway-certs"))]
#[derive(Debug, Clone)]
pub struct ThrowawayPki {
    /// The CA certificate (PEM): what `--tls-ca` names.
    pub ca: String,
    /// A certificate signed by the CA for the hosts asked for, usable by servers and clients.
    pub cert: String,
    /// The private key of `cert` (PEM, PKCS#8).
    pub key: String,
}

#[cfg(any(test, feature = "throwaway-certs"))]
impl ThrowawayPki {
    /// A fresh CA and a certificate naming `hosts` (DNS names or IP addresses), valid for both
    /// TLS servers and clients, so one certificate serves every process of a test cluster.
    ///
    /// # Errors
    /// [`TlsError::Rustls`] when a host is not a valid name or key generation fails.
    pub fn generate(hosts: &[&str]) -> Result<ThrowawayPki, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let err =
            |e: rcgen::Error| TlsError::Rustls(format!("making a throwaway certificate: {e}"));
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ringtrain throwaway CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(err)?;
        let mut leaf =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .map_err(err)?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("ringtrain"),
        );
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
        Ok(ThrowawayPki {
            ca: ca_cert.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` and returns the files as flags
    /// would name them (`require_client_cert` as given).
    ///
    /// # Errors
    /// Writing a file failed.
    pub fn write(&self, dir: &Path, require_client_cert: bool) -> std::io::Result<TlsFiles> {
        let files = TlsFiles {
            cert: Some(dir.join("cert.pem")),
            key: Some(dir.join("key.pem")),
            ca: Some(dir.join("ca.pem")),
            require_client_cert,
        };
        std::fs::write(dir.join("ca.pem"), &self.ca)?;
        std::fs::write(dir.join("cert.pem"), &self.cert)?;
        std::fs::write(dir.join("key.pem"), &self.key)?;
        Ok(files)
    }

    /// The settings of a process presenting `cert` and trusting the CA.
    ///
    /// # Errors
    /// As [`TlsConfig::from_pem`].
    pub fn config(&self, require_client_cert: bool) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem(
            Some((
                self.cert.clone().into_bytes(),
                self.key.clone().into_bytes(),
            )),
            Some(self.ca.clone().into_bytes()),
            require_client_cert,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_good_files_and_names_the_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ThrowawayPki::generate(&["127.0.0.1", "localhost"]).unwrap();
        let files = pki.write(dir.path(), true).unwrap();
        let tls = files.load().unwrap().unwrap();
        assert!(tls.can_serve() && tls.can_dial() && tls.require_client_cert());
        assert!(tls.server().is_ok() && tls.client().is_ok());
        assert!(TlsFiles::default().load().unwrap().is_none());

        let only_cert = TlsFiles {
            key: None,
            ..files.clone()
        };
        let e = only_cert.load().unwrap_err().to_string();
        assert!(e.contains("--tls-key"), "{e}");

        let mutual_without_ca = TlsFiles {
            ca: None,
            ..files.clone()
        };
        let e = mutual_without_ca.load().unwrap_err().to_string();
        assert!(e.contains("--tls-ca"), "{e}");

        let missing = TlsFiles {
            ca: Some(dir.path().join("nope.pem")),
            ..files.clone()
        };
        let e = missing.load().unwrap_err().to_string();
        assert!(e.contains("CA") && e.contains("nope.pem"), "{e}");

        // A file that is not PEM: named, and its content never quoted.
        let secret = "SECRET-LINE ".repeat(50);
        let garbage = write(dir.path(), "garbage.pem", secret.as_bytes());
        let e = TlsFiles {
            cert: Some(garbage.clone()),
            ..files.clone()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("no certificate") && !e.contains("SECRET"),
            "{e}"
        );
        let e = TlsFiles {
            key: Some(garbage),
            ..files.clone()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("no private key") && !e.contains("SECRET"), "{e}");
        let broken = write(
            dir.path(),
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\nSECRET!!!\n-----END CERTIFICATE-----\n",
        );
        let e = TlsFiles {
            ca: Some(broken),
            ..files.clone()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("broken.pem") && !e.contains("SECRET"), "{e}");

        // A key that belongs to another certificate.
        let other = ThrowawayPki::generate(&["127.0.0.1"]).unwrap();
        let other_key = write(dir.path(), "other-key.pem", other.key.as_bytes());
        let e = TlsFiles {
            key: Some(other_key),
            ..files.clone()
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("certificate and key"), "{e}");

        // Too large to be a certificate: refused before reading.
        let big = dir.path().join("big.pem");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_PEM_BYTES + 1)
            .unwrap();
        let e = TlsFiles {
            ca: Some(big),
            ..files
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("big.pem") && e.contains("bytes"), "{e}");
    }

    #[test]
    fn server_and_client_settings_need_their_halves() {
        let pki = ThrowawayPki::generate(&["127.0.0.1"]).unwrap();
        let client_only = TlsConfig::from_pem(None, Some(pki.ca.into_bytes()), false).unwrap();
        assert!(client_only.client().is_ok());
        let e = client_only.server().unwrap_err().to_string();
        assert!(e.contains("--tls-cert"), "{e}");
        let server_only = TlsConfig::from_pem(
            Some((pki.cert.into_bytes(), pki.key.into_bytes())),
            None,
            false,
        )
        .unwrap();
        assert!(server_only.server().is_ok());
        assert!(server_only.rustls_server_config(vec![]).is_ok());
        let e = server_only.client().unwrap_err().to_string();
        assert!(e.contains("--tls-ca"), "{e}");
    }

    #[test]
    fn endpoint_scheme_follows_the_tls_settings() {
        let pki = ThrowawayPki::generate(&["127.0.0.1"]).unwrap();
        let tls = pki.config(false).unwrap();
        let plain = endpoint("127.0.0.1:7070", None).unwrap();
        assert_eq!(plain.uri().to_string(), "http://127.0.0.1:7070/");
        let secure = endpoint("127.0.0.1:7070", Some(&tls)).unwrap();
        assert_eq!(secure.uri().to_string(), "https://127.0.0.1:7070/");
        assert!(endpoint("https://127.0.0.1:7070", Some(&tls)).is_ok());
        let e = endpoint("https://127.0.0.1:7070", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-ca"), "{e}");
        let e = endpoint("http://127.0.0.1:7070", Some(&tls))
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
        assert!(
            !format!("{tls:?}").contains("PRIVATE"),
            "Debug shows no key"
        );
    }
}
