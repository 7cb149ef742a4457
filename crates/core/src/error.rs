//! The one error type every layer speaks; the gRPC layer maps each variant to
//! a status code (see `crius-server`), so a variant is chosen for its meaning
//! to the client.

/// Result with the crius [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; `field` names the offending request field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The object the request names does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The object the request would create exists already.
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// The system is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's credentials were refused or are missing (e.g. by a registry).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed (e.g. a registry refuses access).
    #[error("{0}")]
    PermissionDenied(String),
    /// Data failed verification (a blob whose digest or size is wrong).
    #[error("{0}")]
    DataLoss(String),
    /// A dependency (containerd, start-up) is not available yet; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The RPC is part of CRI but crius does not serve it yet.
    #[error("{rpc} is not implemented by crius yet")]
    Unimplemented { rpc: &'static str },
    /// The caller's deadline passed or the operation timed out.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// containerd refused an operation for a reason that is not one of the above.
    #[error("containerd {op}: {message}")]
    Containerd { op: &'static str, message: String },
    /// A local I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A bug or an invariant violated inside crius.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::NotFound`] for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// An [`Error::Io`] with `context` saying what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
