//! What can go wrong reading SPDY frames and running a session.

use super::frame::RstStatus;

/// A frame the codec refuses. Every variant but [`FrameError::BadHeaderBlock`]
/// ends the session: the byte stream or the shared compression context can
/// no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A control frame of another SPDY version.
    #[error("SPDY version {0} is not supported (only 3)")]
    UnsupportedVersion(u16),
    /// A frame whose length is over the limit.
    #[error("a {len}-byte frame is over the {max}-byte limit")]
    FrameTooLarge {
        /// The frame's payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame whose fixed fields do not fit its length, or that breaks a
    /// rule of its type (stream id 0, flags it may not have, …).
    #[error("invalid {kind} frame: {reason}")]
    Invalid {
        /// The frame type.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A header block that inflated but does not parse. The compression
    /// context is still in step: only the stream concerned is lost.
    #[error("bad header block: {0}")]
    BadHeaderBlock(String),
    /// A header block that inflates to more than the limit.
    #[error("a header block inflates to more than {max} bytes")]
    HeaderBlockTooLarge {
        /// The limit.
        max: usize,
    },
    /// zlib refused the data (or the dictionary).
    #[error("header compression: {0}")]
    Compression(String),
}

impl FrameError {
    pub(crate) fn invalid(kind: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            kind,
            reason: reason.into(),
        }
    }
}

/// An error of a session or one of its streams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The peer sent something the codec refuses; the session is over.
    #[error("protocol error: {0}")]
    Frame(#[from] FrameError),
    /// The peer broke a session rule (stream id order, …); the session is
    /// over.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The stream was reset, by the peer or locally.
    #[error("stream reset: {0}")]
    Reset(RstStatus),
    /// The session is closed (I/O ended, GOAWAY, or it was shut down).
    #[error("session closed: {0}")]
    Closed(String),
    /// No more streams may be opened: the peer sent GOAWAY, or the stream ids
    /// ran out.
    #[error("no new streams: {0}")]
    GoneAway(String),
    /// Writing after the stream's end was sent.
    #[error("the stream's end was already sent")]
    AlreadyFinished,
    /// The transport failed.
    #[error("I/O: {0}")]
    Io(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Reset(_) => std::io::ErrorKind::ConnectionReset,
            Error::Closed(_) | Error::GoneAway(_) => std::io::ErrorKind::BrokenPipe,
            Error::AlreadyFinished => std::io::ErrorKind::BrokenPipe,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}
