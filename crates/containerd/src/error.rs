//! What a call to containerd fails with, and the one place it becomes a
//! [`crius_core::Error`].
//!
//! containerd's answer is kept whole (`#[source]` is its `tonic::Status`), so
//! a caller that gives a kind a meaning (a NotFound of a delete: already gone;
//! of a snapshot prepare with a parent: the image is not unpacked) asks
//! [`Error::kind`] here, at the adapter, instead of branching on a client
//! error after the mapping. Everything else goes through `From`, which
//! chooses the variant for its meaning to crius' client.

use std::path::PathBuf;

/// Result of a containerd call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed containerd call, or an answer crius cannot use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// containerd answered `op` with an error status.
    #[error("containerd {op}: {}", .status.message())]
    Status {
        op: &'static str,
        #[source]
        status: tonic::Status,
    },
    /// containerd's answer to `op` is not what its API promises (a missing
    /// field, a spec that is not JSON, an invalid digest).
    #[error("containerd {op}: {what}")]
    Malformed { op: &'static str, what: String },
    /// An object looked up by other means than a status (a content entry
    /// missing from a listing, a plugin containerd does not have).
    #[error("{what} not found")]
    Missing { what: String },
    /// The object is in a state that does not allow the call.
    #[error("{0}")]
    Precondition(String),
    /// Content or a layer failed verification (digest, size, diff id).
    #[error("{0}")]
    Corrupt(String),
    /// containerd's socket does not answer.
    #[error("containerd at {}: {why}", .address.display())]
    Unreachable { address: PathBuf, why: String },
    /// A stream containerd held open (events) ended.
    #[error("{0}")]
    StreamEnded(String),
    /// Something containerd should have done in time did not happen.
    #[error("{0}")]
    TimedOut(String),
    /// The caller gave the adapter something it cannot send.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A request could not be encoded.
    #[error("encoding {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A transfer to containerd broke off on crius' side.
    #[error("{0}")]
    Broken(String),
    /// A local file the adapter writes what containerd sends into.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The kinds of failure a caller of the adapter can give a meaning to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unavailable,
    DeadlineExceeded,
    DataLoss,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Other,
}

impl Error {
    /// A closure for `map_err` that keeps the status `op` got.
    pub(crate) fn status(op: &'static str) -> impl FnOnce(tonic::Status) -> Error {
        move |status| Error::Status { op, status }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Status { status, .. } => kind_of(status.code()),
            Error::Missing { .. } => Kind::NotFound,
            Error::Precondition(_) => Kind::FailedPrecondition,
            Error::Corrupt(_) => Kind::DataLoss,
            Error::Unreachable { .. } | Error::StreamEnded(_) => Kind::Unavailable,
            Error::TimedOut(_) => Kind::DeadlineExceeded,
            Error::Invalid { .. } => Kind::InvalidArgument,
            Error::Malformed { .. }
            | Error::Encode { .. }
            | Error::Broken(_)
            | Error::Io { .. } => Kind::Other,
        }
    }

    /// True when the object the call named does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == Kind::NotFound
    }
}

fn kind_of(code: tonic::Code) -> Kind {
    match code {
        tonic::Code::NotFound => Kind::NotFound,
        tonic::Code::AlreadyExists => Kind::AlreadyExists,
        tonic::Code::FailedPrecondition => Kind::FailedPrecondition,
        tonic::Code::Unavailable => Kind::Unavailable,
        tonic::Code::DeadlineExceeded => Kind::DeadlineExceeded,
        tonic::Code::DataLoss => Kind::DataLoss,
        tonic::Code::InvalidArgument => Kind::InvalidArgument,
        tonic::Code::PermissionDenied => Kind::PermissionDenied,
        tonic::Code::Unauthenticated => Kind::Unauthenticated,
        _ => Kind::Other,
    }
}

impl From<Error> for crius_core::Error {
    fn from(e: Error) -> Self {
        use crius_core::Error as E;
        match e {
            Error::Status { op, status } => from_status(op, &status),
            Error::Malformed { op, what } => E::Containerd { op, message: what },
            Error::Missing { what } => E::NotFound { what },
            Error::Precondition(m) => E::FailedPrecondition(m),
            Error::Corrupt(m) => E::DataLoss(m),
            e @ (Error::Unreachable { .. } | Error::StreamEnded(_)) => {
                E::Unavailable(e.to_string())
            }
            Error::TimedOut(m) => E::DeadlineExceeded(m),
            Error::Invalid { field, reason } => E::InvalidArgument { field, reason },
            e @ (Error::Encode { .. } | Error::Broken(_) | Error::Io { .. }) => {
                E::Internal(e.to_string())
            }
        }
    }
}

/// The crius error for a status containerd answered `op` with.
fn from_status(op: &'static str, s: &tonic::Status) -> crius_core::Error {
    use crius_core::Error as E;
    let message = s.message().to_string();
    match kind_of(s.code()) {
        Kind::NotFound => E::NotFound {
            what: format!("{op}: {message}"),
        },
        Kind::AlreadyExists => E::AlreadyExists {
            what: format!("{op}: {message}"),
        },
        // crius validates what clients send before containerd sees it: a
        // request containerd refuses is crius' fault, not the client's.
        Kind::FailedPrecondition => E::FailedPrecondition(format!("containerd {op}: {message}")),
        Kind::Unavailable => {
            E::Unavailable(format!("containerd is not answering ({op}): {message}"))
        }
        Kind::DeadlineExceeded => E::DeadlineExceeded(format!("containerd {op}: {message}")),
        Kind::DataLoss => E::DataLoss(format!("containerd {op}: {message}")),
        Kind::PermissionDenied => E::PermissionDenied(format!("containerd {op}: {message}")),
        Kind::Unauthenticated => E::Unauthenticated(format!("containerd {op}: {message}")),
        Kind::InvalidArgument | Kind::Other => E::Containerd { op, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_core::Error as E;

    fn status(code: tonic::Code) -> Error {
        Error::status("task kill")(tonic::Status::new(code, "no such task"))
    }

    #[test]
    fn containerd_codes_become_the_error_that_means_the_same_to_a_client() {
        let e = |c| E::from(status(c));
        assert!(
            matches!(e(tonic::Code::NotFound), E::NotFound { what } if what == "task kill: no such task")
        );
        assert!(matches!(
            e(tonic::Code::AlreadyExists),
            E::AlreadyExists { .. }
        ));
        assert!(matches!(
            e(tonic::Code::FailedPrecondition),
            E::FailedPrecondition(_)
        ));
        assert!(matches!(e(tonic::Code::Unavailable), E::Unavailable(_)));
        assert!(matches!(e(tonic::Code::DataLoss), E::DataLoss(_)));
        assert!(matches!(
            e(tonic::Code::PermissionDenied),
            E::PermissionDenied(_)
        ));
        // containerd refusing an argument is crius' fault, not the client's.
        assert!(matches!(
            e(tonic::Code::InvalidArgument),
            E::Containerd { .. }
        ));
        assert!(matches!(
            e(tonic::Code::Unknown),
            E::Containerd {
                op: "task kill",
                ..
            }
        ));
    }

    #[test]
    fn the_status_is_kept_as_the_source() {
        let e = status(tonic::Code::NotFound);
        assert!(e.is_not_found());
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("no such task")), "{e:?}");
        assert_eq!(e.to_string(), "containerd task kill: no such task");
    }

    #[test]
    fn kinds_of_crius_own_findings() {
        assert!(
            Error::Missing {
                what: "content x".into()
            }
            .is_not_found()
        );
        assert_eq!(Error::Corrupt("bad".into()).kind(), Kind::DataLoss);
        let gone = Error::StreamEnded("containerd closed the event stream".into());
        assert_eq!(gone.kind(), Kind::Unavailable);
        assert!(
            matches!(E::from(gone), E::Unavailable(m) if m == "containerd closed the event stream")
        );
        let unreachable = Error::Unreachable {
            address: "/run/c.sock".into(),
            why: "socket does not exist".into(),
        };
        assert!(
            matches!(E::from(unreachable), E::Unavailable(m) if m == "containerd at /run/c.sock: socket does not exist")
        );
    }
}
