//! The single table between error categories and gRPC status codes. Library crates classify their
//! errors into an [`ErrorKind`]; servers turn it into a [`tonic::Status`] with [`to_status`], and
//! clients read a received status back with [`kind_of`], so both sides agree on what a code means.

use tonic::{Code, Status};

/// Category of a failure as seen across the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or contradicts earlier requests (bad rank, world mismatch).
    InvalidArgument,
    /// The thing named does not exist.
    NotFound,
    /// A wait ran out before the other side(s) arrived.
    DeadlineExceeded,
    /// The peer or service is gone or not reachable (yet).
    Unavailable,
    /// The operation was aborted because a participant failed.
    Aborted,
    /// The state forbids the call (e.g. a failed communicator).
    FailedPrecondition,
    /// A bug or unexpected condition on the serving side.
    Internal,
    /// The caller did not prove who it is (missing or wrong secret, token or credential).
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
}

/// The table: every [`ErrorKind`] and its gRPC code, in both directions.
const TABLE: [(ErrorKind, Code); 9] = [
    (ErrorKind::InvalidArgument, Code::InvalidArgument),
    (ErrorKind::NotFound, Code::NotFound),
    (ErrorKind::DeadlineExceeded, Code::DeadlineExceeded),
    (ErrorKind::Unavailable, Code::Unavailable),
    (ErrorKind::Aborted, Code::Aborted),
    (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
    (ErrorKind::Internal, Code::Internal),
    (ErrorKind::Unauthenticated, Code::Unauthenticated),
    (ErrorKind::PermissionDenied, Code::PermissionDenied),
];

/// The gRPC code for an error category.
pub fn code_of(kind: ErrorKind) -> Code {
    TABLE
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(Code::Internal, |(_, code)| *code)
}

/// Builds the status a server returns for an error of this category.
pub fn to_status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(code_of(kind), message)
}

/// The category of a received status; codes outside the table count as [`ErrorKind::Internal`].
pub fn kind_of(status: &Status) -> ErrorKind {
    TABLE
        .iter()
        .find(|(_, code)| *code == status.code())
        .map_or(ErrorKind::Internal, |(kind, _)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_every_kind() {
        for (kind, code) in TABLE {
            assert_eq!(code_of(kind), code);
            assert_eq!(kind_of(&to_status(kind, "x")), kind);
        }
        assert_eq!(
            kind_of(&Status::new(Code::Unknown, "?")),
            ErrorKind::Internal
        );
    }
}
