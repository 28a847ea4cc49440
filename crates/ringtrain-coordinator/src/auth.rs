//! Who may call what (DESIGN.md, "Trust boundary"). Clients of the job API present a token
//! (`authorization: Bearer`, when the coordinator has `--client-tokens-file`); a worker presents
//! the cluster secret to register (when the coordinator has one) and then its own credential on
//! every call; the ranks of a job attempt present the attempt's session token to the rendezvous
//! (and to each other's peer endpoints).
//!
//! Worker credentials and session tokens are derived, not stored: HMAC-SHA-256 under a key that
//! mixes a random key kept in the state database with the cluster secret. A restarted coordinator
//! therefore recognises every credential it issued (running jobs reattach), the database alone
//! does not reveal them when a cluster secret is set, and nothing per worker needs a table. A
//! refused call is answered UNAUTHENTICATED before it reaches the state machine, so it changes
//! nothing.

use ringtrain_core::{JobId, WorkerId};
use ringtrain_proto::auth::{self, ClientTokens, Secret};
use ringtrain_proto::status::{ErrorKind, to_status};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Label of worker credentials in [`auth::derive`].
const WORKER_LABEL: &str = "ringtrain worker credential v1";
/// Label of session tokens in [`auth::derive`].
const SESSION_LABEL: &str = "ringtrain session token v1";
/// Label of the derivation key itself.
const KEY_LABEL: &str = "ringtrain credential key v1";

/// The coordinator's credentials and checks.
pub(crate) struct Auth {
    key: [u8; 32],
    cluster_secret: Option<Secret>,
    clients: Option<ClientTokens>,
}

pub(crate) fn unauthenticated(message: impl Into<String>) -> Status {
    to_status(ErrorKind::Unauthenticated, message)
}

impl Auth {
    /// Checks built from the key kept in the state database and the configured secrets.
    pub(crate) fn new(
        stored_key: [u8; 32],
        cluster_secret: Option<Secret>,
        clients: Option<ClientTokens>,
    ) -> Auth {
        let key = auth::derive_bytes(
            &stored_key,
            KEY_LABEL,
            cluster_secret.as_ref().map_or("", Secret::expose),
        );
        Auth {
            key,
            cluster_secret,
            clients,
        }
    }

    /// Whether `user` (as [`Auth::client`] answered) may cancel job `id`, which `owner`
    /// submitted. Without client tokens nobody has an identity and anyone may; with them, the
    /// owner and users with the `admin` role may, and a job without a recorded owner (submitted
    /// before owners were kept, or while the coordinator had no tokens) only an admin.
    ///
    /// # Errors
    /// PERMISSION_DENIED naming the owner (a user name, never a token).
    pub(crate) fn may_cancel(
        &self,
        user: Option<&str>,
        owner: &str,
        id: &JobId,
    ) -> Result<(), Status> {
        let (Some(clients), Some(user)) = (&self.clients, user) else {
            return Ok(());
        };
        if (!owner.is_empty() && user == owner) || clients.is_admin(user) {
            return Ok(());
        }
        let whose = if owner.is_empty() {
            "no recorded owner".to_string()
        } else {
            format!("owner {owner}")
        };
        Err(to_status(
            ErrorKind::PermissionDenied,
            format!(
                "{user} may not cancel {id}: it has {whose}; only its owner or a user with the admin role in the client tokens file may"
            ),
        ))
    }

    /// A job API call: the caller's user name (`None` when the coordinator has no client
    /// tokens, so everyone is anonymous).
    ///
    /// # Errors
    /// UNAUTHENTICATED without a known `authorization: Bearer` token.
    pub(crate) fn client(&self, metadata: &MetadataMap) -> Result<Option<String>, Status> {
        let Some(clients) = &self.clients else {
            return Ok(None);
        };
        let Some(token) = auth::bearer(metadata) else {
            return Err(unauthenticated(
                "this coordinator requires a client token: pass --token-file or set RINGTRAIN_TOKEN",
            ));
        };
        clients
            .user(token)
            .map(|u| Some(u.to_string()))
            .ok_or_else(|| unauthenticated("unknown client token"))
    }

    /// A RegisterWorker call.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the coordinator has a cluster secret and the call does not carry it.
    pub(crate) fn register(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(secret) = &self.cluster_secret else {
            return Ok(());
        };
        match auth::header(metadata, auth::CLUSTER_SECRET_HEADER) {
            Some(presented) if secret.matches(presented) => Ok(()),
            Some(_) => Err(unauthenticated("wrong cluster secret")),
            None => Err(unauthenticated(
                "this coordinator requires the cluster secret: pass --cluster-secret-file or set RINGTRAIN_CLUSTER_SECRET",
            )),
        }
    }

    /// The credential issued to a worker at registration.
    pub(crate) fn worker_credential(&self, worker: &WorkerId) -> String {
        auth::derive(&self.key, WORKER_LABEL, worker.as_str())
    }

    /// A call a worker makes for itself (Heartbeat, ReportProgress, ReportResult).
    ///
    /// # Errors
    /// UNAUTHENTICATED when the call does not carry `worker`'s credential.
    pub(crate) fn worker(&self, metadata: &MetadataMap, worker: &str) -> Result<(), Status> {
        let expected = self.worker_credential(&WorkerId::new(worker));
        match auth::header(metadata, auth::WORKER_CREDENTIAL_HEADER) {
            Some(presented) if auth::ct_eq(expected.as_bytes(), presented.as_bytes()) => Ok(()),
            _ => Err(unauthenticated(format!(
                "missing or wrong credential for worker {worker:?}; a worker registers again to get one"
            ))),
        }
    }

    /// The secret of a job attempt's session, delivered only in that attempt's assignments.
    pub(crate) fn session_token(&self, session: &str) -> String {
        auth::derive(&self.key, SESSION_LABEL, session)
    }
}

/// At most 80 characters of a caller-chosen name, for messages.
pub(crate) fn short(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn md(header: &'static str, value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(header, MetadataValue::try_from(value).unwrap());
        m
    }

    #[test]
    fn worker_credentials_are_per_worker_and_per_key() {
        let a = Auth::new([1; 32], None, None);
        let cred = a.worker_credential(&WorkerId::new("w-1"));
        assert!(cred.len() >= 32, "at least 128 bits");
        a.worker(&md(auth::WORKER_CREDENTIAL_HEADER, &cred), "w-1")
            .unwrap();
        let other = a.worker(&md(auth::WORKER_CREDENTIAL_HEADER, &cred), "w-2");
        assert_eq!(other.unwrap_err().code(), tonic::Code::Unauthenticated);
        let missing = a.worker(&MetadataMap::new(), "w-1").unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        // The same stored key re-derives the same credential (a restart); a different cluster
        // secret or stored key does not.
        let again = Auth::new([1; 32], None, None);
        assert_eq!(again.worker_credential(&WorkerId::new("w-1")), cred);
        let secret = Secret::new("0123456789abcdef", "test").unwrap();
        let with_secret = Auth::new([1; 32], Some(secret), None);
        assert_ne!(with_secret.worker_credential(&WorkerId::new("w-1")), cred);
        assert_ne!(
            Auth::new([2; 32], None, None).worker_credential(&WorkerId::new("w-1")),
            cred
        );
        assert_ne!(a.session_token("job-1/1"), a.session_token("job-1/2"));
    }

    #[test]
    fn registration_needs_the_cluster_secret_when_there_is_one() {
        let open = Auth::new([1; 32], None, None);
        open.register(&MetadataMap::new()).unwrap();
        let secret = Secret::new("0123456789abcdef", "test").unwrap();
        let closed = Auth::new([1; 32], Some(secret), None);
        let none = closed.register(&MetadataMap::new()).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        assert!(none.message().contains("--cluster-secret-file"));
        let wrong = closed
            .register(&md(auth::CLUSTER_SECRET_HEADER, "0123456789abcdeX"))
            .unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        closed
            .register(&md(auth::CLUSTER_SECRET_HEADER, "0123456789abcdef"))
            .unwrap();
    }

    #[test]
    fn job_api_calls_need_a_known_token_when_tokens_are_configured() {
        assert_eq!(
            Auth::new([1; 32], None, None)
                .client(&MetadataMap::new())
                .unwrap(),
            None
        );
        let tokens = ClientTokens::parse("alice 0123456789abcdef-alice\n", "t").unwrap();
        let a = Auth::new([1; 32], None, Some(tokens));
        let none = a.client(&MetadataMap::new()).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        let wrong = a
            .client(&md(
                auth::AUTHORIZATION_HEADER,
                "Bearer 0123456789abcdef-eve",
            ))
            .unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let user = a
            .client(&md(
                auth::AUTHORIZATION_HEADER,
                "Bearer 0123456789abcdef-alice",
            ))
            .unwrap();
        assert_eq!(user.as_deref(), Some("alice"));
    }
}
