//! The coordinator's rendezvous guard ([`SessionGuard`]), which reads the shared state to admit a
//! join only to a running attempt's session; beside `auth` rather than in it, so the credential
//! checks stay below the shared state that holds them.

use crate::auth::{short, unauthenticated};
use crate::machine::JobState;
use crate::shared::Shared;
use ringtrain_core::JobId;
use ringtrain_proto::auth;
use ringtrain_proto::status::{ErrorKind, to_status};
use ringtrain_proto::v1::JoinRequest;
use std::sync::Weak;
use tonic::Status;

/// The coordinator's rendezvous guard: a join is admitted only to the session of a job's current
/// attempt, with that attempt's token, world and a rank inside it. Sessions are thus created only
/// for attempts the coordinator started, and their size is the job's world (a job is only
/// started once that many workers registered).
pub(crate) struct SessionGuard {
    pub(crate) shared: Weak<Shared>,
}

impl ringtrain_collective::rendezvous::SessionGuard for SessionGuard {
    fn admit(&self, req: &JoinRequest) -> Result<(), Status> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| to_status(ErrorKind::Unavailable, "coordinator shutting down"))?;
        let expected = shared.auth.session_token(&req.session);
        if !auth::ct_eq(expected.as_bytes(), req.token.as_bytes()) {
            return Err(unauthenticated(format!(
                "missing or wrong token for rendezvous session {:?}",
                short(&req.session)
            )));
        }
        // Sessions are `<job id>/<attempt>` (machine::internals::start).
        let job = req
            .session
            .rsplit_once('/')
            .map(|(job, _)| JobId::new(job))
            .ok_or_else(|| unauthenticated("not a session of this coordinator"))?;
        let core = shared.lock();
        let current = core.machine.job(&job).filter(|j| {
            j.session == req.session && matches!(j.state, JobState::Starting | JobState::Running)
        });
        let Some(j) = current else {
            return Err(to_status(
                ErrorKind::FailedPrecondition,
                format!(
                    "session {:?} is not a running attempt of this coordinator",
                    short(&req.session)
                ),
            ));
        };
        if req.world != j.world || req.rank >= j.world {
            return Err(to_status(
                ErrorKind::InvalidArgument,
                format!(
                    "session {} has world {}; rank {} of world {} cannot join it",
                    j.session, j.world, req.rank, req.world
                ),
            ));
        }
        Ok(())
    }
}
