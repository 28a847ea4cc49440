//! Credentials on the wire: the metadata headers that carry them, secrets read from files or the
//! environment (never the command line), random tokens, keyed derivation (HMAC-SHA-256) and
//! constant-time comparison. Three kinds of proof cross the wire:
//!
//! - the **cluster secret**, shared by the coordinator and its workers, carried by
//!   `RegisterWorker` in [`CLUSTER_SECRET_HEADER`];
//! - a **worker credential**, issued by the coordinator at registration and carried by every
//!   later worker call in [`WORKER_CREDENTIAL_HEADER`];
//! - a **client token** per user, carried by job API calls as `authorization: Bearer <token>`
//!   ([`AUTHORIZATION_HEADER`]).
//!
//! Job attempts also get a session token (delivered in the assignment, carried inside the
//! rendezvous `JoinRequest` and the peer `Hello`), derived like worker credentials.
//! Nothing here logs a secret: [`Secret`]'s `Debug` is redacted.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};

/// Header carrying the cluster secret on `RegisterWorker`.
pub const CLUSTER_SECRET_HEADER: &str = "x-ringtrain-cluster-secret";
/// Header carrying a worker's credential on `Heartbeat`, `ReportProgress` and `ReportResult`.
pub const WORKER_CREDENTIAL_HEADER: &str = "x-ringtrain-worker-credential";
/// Header carrying a client token (`Bearer <token>`) on job API calls.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Shortest secret or client token accepted, in bytes (after trimming surrounding whitespace).
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest secret or client token accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 1024;
/// Largest client tokens file read.
pub const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;
/// Longest user name in a client tokens file.
pub const MAX_USER_BYTES: usize = 64;

/// Why a secret or token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A secret file could not be read.
    #[error("cannot read {what} file {path}: {error}")]
    Read {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: String,
        /// Underlying error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// A secret file may be read by any user of the machine.
    #[error(
        "{what} file {path} is accessible to other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret or token is malformed (too short, too long, not visible ASCII). The value itself
    /// is never part of the message.
    #[error("{origin}: {what}")]
    Invalid {
        /// Where it came from: a file (with `:line`) or an environment variable.
        origin: String,
        /// What is wrong.
        what: String,
    },
    /// The operating system's random source failed.
    #[error("cannot draw random bytes: {0}")]
    Random(String),
}

/// A shared secret (the cluster secret, or a client token held by a client). Its `Debug` output
/// is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Checks a secret's text: surrounding whitespace (a file's final newline) is dropped; the
    /// rest must be [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`] bytes of visible ASCII (so it
    /// fits a gRPC header unchanged).
    ///
    /// # Errors
    /// [`AuthError::Invalid`] naming `origin` and the rule broken (never the value).
    pub fn new(text: &str, origin: &str) -> Result<Secret, AuthError> {
        check_token(text.trim(), origin).map(|t| Secret(t.to_string()))
    }

    /// Reads a secret from a file that other users cannot read (on Unix, no permission bits for
    /// "others": `0600`, or `0640`/`0440` as Kubernetes mounts a Secret for a pod's `fsGroup`).
    ///
    /// # Errors
    /// [`AuthError::Read`], [`AuthError::Permissions`] for a file others may access,
    /// [`AuthError::Invalid`] as [`Secret::new`].
    pub fn from_file(path: &Path, what: &'static str) -> Result<Secret, AuthError> {
        let text = read_private(path, what, MAX_SECRET_BYTES as u64 + 64)?;
        Secret::new(&text, &path.display().to_string())
    }

    /// A fresh random secret: 32 bytes from the operating system, hex encoded.
    ///
    /// # Errors
    /// [`AuthError::Random`] when the OS random source fails.
    pub fn generate() -> Result<Secret, AuthError> {
        random_hex(32).map(Secret)
    }

    /// The secret's text, to put in a header or hand to a child process.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        ct_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

fn check_token<'a>(text: &'a str, origin: &str) -> Result<&'a str, AuthError> {
    let bad = |what: String| AuthError::Invalid {
        origin: origin.to_string(),
        what,
    };
    if text.len() < MIN_SECRET_BYTES {
        return Err(bad(format!(
            "secret is {} bytes; at least {MIN_SECRET_BYTES} are required (e.g. `openssl rand -hex 32`)",
            text.len()
        )));
    }
    if text.len() > MAX_SECRET_BYTES {
        return Err(bad(format!(
            "secret is {} bytes; at most {MAX_SECRET_BYTES} are allowed",
            text.len()
        )));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "secret must be visible ASCII without spaces or control characters".into(),
        ));
    }
    Ok(text)
}

/// Reads a small file that other users (outside its group) cannot access.
fn read_private(path: &Path, what: &'static str, limit: u64) -> Result<String, AuthError> {
    let read_err = |source| AuthError::Read {
        what,
        path: path.display().to_string(),
        error: source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(AuthError::Permissions {
                what,
                path: path.display().to_string(),
                mode,
            });
        }
    }
    if meta.len() > limit {
        return Err(AuthError::Invalid {
            origin: path.display().to_string(),
            what: format!(
                "{what} file is {} bytes; at most {limit} are read",
                meta.len()
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    String::from_utf8(bytes).map_err(|_| AuthError::Invalid {
        origin: path.display().to_string(),
        what: format!("{what} file is not UTF-8 text"),
    })
}

/// `n` random bytes from the operating system, hex encoded (2n characters).
///
/// # Errors
/// [`AuthError::Random`] when the OS random source fails.
pub fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

/// `n` random bytes from the operating system.
///
/// # Errors
/// [`AuthError::Random`] when the OS random source fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Equality in time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// SHA-256 of a token (what a server keeps instead of the token).
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A credential derived from `key` for `label` and `subject` (HMAC-SHA-256, hex): unguessable
/// without the key, and the same every time, so a restarted server re-derives what it issued.
pub fn derive(key: &[u8], label: &str, subject: &str) -> String {
    hex(&derive_bytes(key, label, subject))
}

/// [`derive`] as raw bytes (e.g. a key for further derivations).
pub fn derive_bytes(key: &[u8], label: &str, subject: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(subject.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The value of a header as text, if present and visible ASCII.
pub fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Option<&'a str> {
    metadata.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `authorization: Bearer <token>` header, if present.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    header(metadata, AUTHORIZATION_HEADER).and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
    })
}

/// Sets a header (a value that is not visible ASCII is left out: the server then refuses the
/// call as unauthenticated, which names the problem better than a client-side error would).
pub fn set_header(metadata: &mut MetadataMap, name: &'static str, value: &str) {
    if let Ok(v) = MetadataValue::try_from(value) {
        metadata.insert(name, v);
    }
}

/// The users allowed to call the job API, each with their own token (the coordinator's
/// `--client-tokens-file`). Only SHA-256 hashes of the tokens are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTokens {
    users: Vec<(String, [u8; 32])>,
    /// Users whose line ends with the role `admin`: they may cancel any user's job.
    admins: Vec<String>,
}

impl fmt::Debug for ClientTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTokens")
            .field(
                "users",
                &self.users.iter().map(|u| &u.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ClientTokens {
    /// Parses a tokens file: one `user token [admin]` line per user; blank lines and lines
    /// starting with `#` are ignored. A user is 1..=64 of `A-Z a-z 0-9 . _ @ -`; a token follows
    /// [`Secret::new`]'s rules. Users and tokens must be unique. The optional third field, the
    /// role, is `admin` (may cancel any user's job) or absent (an ordinary user).
    ///
    /// # Errors
    /// [`AuthError::Invalid`] naming `origin:line` and the rule broken (never the token).
    pub fn parse(text: &str, origin: &str) -> Result<ClientTokens, AuthError> {
        let mut users: Vec<(String, [u8; 32])> = Vec::new();
        let mut admins = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{origin}:{}", i + 1);
            let bad = |what: String| AuthError::Invalid {
                origin: at.clone(),
                what,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(user), Some(token), role, None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad(
                    "expected `user token` or `user token admin` (two or three fields)".into(),
                ));
            };
            match role {
                None => {}
                Some("admin") => admins.push(user.to_string()),
                Some(other) => {
                    return Err(bad(format!(
                        "role {:?} is not `admin` (leave it out for an ordinary user)",
                        other.chars().take(16).collect::<String>()
                    )));
                }
            }
            let user_ok = user.len() <= MAX_USER_BYTES
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
            if !user_ok {
                return Err(bad(format!(
                    "user name must be 1..={MAX_USER_BYTES} of A-Z a-z 0-9 . _ @ -"
                )));
            }
            check_token(token, &at)?;
            let hash = sha256(token);
            if users.iter().any(|(u, _)| u == user) {
                return Err(bad(format!("user {user} is listed twice")));
            }
            if users.iter().any(|(_, h)| *h == hash) {
                return Err(bad(format!(
                    "the token of {user} is already another user's token"
                )));
            }
            users.push((user.to_string(), hash));
        }
        if users.is_empty() {
            return Err(AuthError::Invalid {
                origin: origin.to_string(),
                what: "no `user token` lines: nobody could use the job API".into(),
            });
        }
        Ok(ClientTokens { users, admins })
    }

    /// Reads and parses a tokens file that other users cannot read (as [`Secret::from_file`]).
    ///
    /// # Errors
    /// As [`Secret::from_file`] and [`ClientTokens::parse`].
    pub fn from_file(path: &Path) -> Result<ClientTokens, AuthError> {
        let text = read_private(path, "client tokens", MAX_TOKENS_FILE_BYTES)?;
        ClientTokens::parse(&text, &path.display().to_string())
    }

    /// One user with one token (what `ringtrain local` makes for itself).
    pub fn single(user: &str, token: &Secret) -> ClientTokens {
        ClientTokens {
            users: vec![(user.to_string(), sha256(token.expose()))],
            admins: Vec::new(),
        }
    }

    /// The user whose token this is. Every entry is compared in constant time, so the answer's
    /// timing does not say which user (or how much of a token) matched.
    pub fn user(&self, token: &str) -> Option<&str> {
        let hash = sha256(token);
        let mut found = None;
        for (user, h) in &self.users {
            if ct_eq(h, &hash) {
                found = Some(user.as_str());
            }
        }
        found
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(u, _)| u.as_str())
    }

    /// Whether `user` has the `admin` role (may cancel any user's job).
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a == user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_and_redacted() {
        let s = Secret::new("0123456789abcdef\n", "env X").unwrap();
        assert_eq!(s.expose(), "0123456789abcdef");
        assert!(s.matches("0123456789abcdef"));
        assert!(!s.matches("0123456789abcdeX"));
        assert!(!s.matches("0123456789abcde"));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let short = Secret::new("short", "env X").unwrap_err().to_string();
        assert!(
            short.contains("env X") && short.contains("at least 16"),
            "{short}"
        );
        let spaced = Secret::new("0123456789 abcdef", "f")
            .unwrap_err()
            .to_string();
        assert!(spaced.contains("visible ASCII"), "{spaced}");
        assert!(!spaced.contains("0123456789"), "{spaced}");
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rt-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secret::from_file(&path, "cluster secret")
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secret::from_file(&path, "cluster secret").unwrap();
        assert_eq!(s.expose(), "0123456789abcdef0123");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn derived_credentials_depend_on_key_label_and_subject() {
        let a = derive(b"key-1", "worker", "w-1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, derive(b"key-1", "worker", "w-1"));
        assert_ne!(a, derive(b"key-2", "worker", "w-1"));
        assert_ne!(a, derive(b"key-1", "session", "w-1"));
        assert_ne!(a, derive(b"key-1", "worker", "w-2"));
        // The separator keeps (label, subject) pairs apart.
        assert_ne!(derive(b"k", "ab", "c"), derive(b"k", "a", "bc"));
    }

    #[test]
    fn client_tokens_name_their_user_and_errors_name_the_line() {
        let text = "# users\nalice 0123456789abcdef-alice\n\nbob   0123456789abcdef-bob admin\n";
        let t = ClientTokens::parse(text, "tokens.txt").unwrap();
        assert!(t.is_admin("bob") && !t.is_admin("alice"));
        assert_eq!(t.user("0123456789abcdef-alice"), Some("alice"));
        assert_eq!(t.user("0123456789abcdef-bob"), Some("bob"));
        assert_eq!(t.user("0123456789abcdef-eve"), None);
        assert_eq!(t.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(!format!("{t:?}").contains("0123456789"));
        let check = |text: &str, expect: &str| {
            let e = ClientTokens::parse(text, "tokens.txt")
                .unwrap_err()
                .to_string();
            assert!(e.contains(expect), "{e} should contain {expect}");
            assert!(!e.contains("0123456789abcdef"), "{e} leaks a token");
        };
        check("alice\n", "tokens.txt:1: expected `user token`");
        check("alice short\n", "tokens.txt:1: secret is 5 bytes");
        check(
            "a 0123456789abcdef-1\na 0123456789abcdef-2\n",
            "tokens.txt:2: user a is listed twice",
        );
        check(
            "a 0123456789abcdef-1\nb 0123456789abcdef-1\n",
            "tokens.txt:2: the token of b",
        );
        check(
            "al\u{1b}ice 0123456789abcdef-1\n",
            "tokens.txt:1: user name",
        );
        check("# nobody\n", "no `user token` lines");
        check(
            "a 0123456789abcdef-1 root\n",
            "tokens.txt:1: role \"root\" is not `admin`",
        );
        check(
            "a 0123456789abcdef-1 admin extra\n",
            "tokens.txt:1: expected `user token`",
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut md = MetadataMap::new();
        assert_eq!(bearer(&md), None);
        set_header(&mut md, AUTHORIZATION_HEADER, "Bearer abc");
        assert_eq!(bearer(&md), Some("abc"));
        set_header(&mut md, AUTHORIZATION_HEADER, "Basic abc");
        assert_eq!(bearer(&md), None);
    }
}
