//! Kubernetes' streaming protocols above the transport: what each stream or
//! channel carries, per protocol version.
//!
//! - remotecommand (exec, attach): over SPDY each stream names its role in
//!   the `streamType` header; over WebSocket each message starts with a
//!   channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds
//!   255 = close, followed by the channel closed). `base64.` subprotocols
//!   send text messages: the channel as an ASCII digit, then base64.
//! - The error stream: from v4 on a JSON `metav1.Status` ([`ExitStatus`]);
//!   before, the failure's message as text and nothing on success.
//! - Resizes: a stream of `{"Width":w,"Height":h}` objects ([`ResizeDecoder`]).
//! - port-forward: SPDY streams with `streamType` data/error, `port` and
//!   `requestID`; over WebSocket a data and an error channel per port
//!   (2i, 2i+1), each starting with the port as 2 bytes little-endian.

use serde::{Deserialize, Serialize};

pub mod portforward;
pub mod wire;

#[cfg(test)]
mod tests;

/// The header naming a SPDY stream's role.
pub const STREAM_TYPE_HEADER: &str = "streamType";
/// The port-forward header with the container port.
pub const PORT_HEADER: &str = "port";
/// The port-forward header pairing a data stream with its error stream.
pub const REQUEST_ID_HEADER: &str = "requestID";
/// The v5 WebSocket channel byte announcing that a channel is closed.
pub const CLOSE_CHANNEL: u8 = 255;

/// An error in a channel message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// A message the protocol does not allow.
    #[error("bad channel message: {0}")]
    BadMessage(String),
    /// A status on the error stream that is not a `metav1.Status`.
    #[error("bad status on the error stream: {0}")]
    BadStatus(String),
    /// A resize message that is not `{"Width":…,"Height":…}`.
    #[error("bad resize message: {0}")]
    BadResize(String),
    /// Port-forward headers or ports that do not parse.
    #[error("bad port-forward request: {0}")]
    BadPort(String),
}

/// The role of a remotecommand stream or channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// The process' standard input (channel 0).
    Stdin,
    /// Its standard output (channel 1).
    Stdout,
    /// Its standard error (channel 2).
    Stderr,
    /// The outcome (channel 3).
    Error,
    /// Terminal sizes (channel 4).
    Resize,
}

impl StreamType {
    /// All of them, in channel order.
    pub const ALL: [StreamType; 5] = [
        StreamType::Stdin,
        StreamType::Stdout,
        StreamType::Stderr,
        StreamType::Error,
        StreamType::Resize,
    ];

    /// The `streamType` header value.
    pub fn header_value(self) -> &'static str {
        match self {
            StreamType::Stdin => "stdin",
            StreamType::Stdout => "stdout",
            StreamType::Stderr => "stderr",
            StreamType::Error => "error",
            StreamType::Resize => "resize",
        }
    }

    /// The type a `streamType` header names.
    pub fn from_header(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.header_value() == value)
    }

    /// The WebSocket channel number.
    pub fn channel(self) -> u8 {
        match self {
            StreamType::Stdin => 0,
            StreamType::Stdout => 1,
            StreamType::Stderr => 2,
            StreamType::Error => 3,
            StreamType::Resize => 4,
        }
    }

    /// The type of a WebSocket channel number.
    pub fn from_channel(channel: u8) -> Option<Self> {
        Self::ALL.get(usize::from(channel)).copied()
    }
}

/// A remotecommand protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExecVersion {
    /// `channel.k8s.io`: no resize; the error stream is reset at the start.
    V1,
    /// `v2.channel.k8s.io`.
    V2,
    /// `v3.channel.k8s.io`: terminal resizing.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a JSON Status.
    V4,
    /// `v5.channel.k8s.io`: WebSocket channels can be closed (255).
    V5,
}

impl ExecVersion {
    /// The protocol name, as in `X-Stream-Protocol-Version`.
    pub fn name(self) -> &'static str {
        match self {
            ExecVersion::V1 => "channel.k8s.io",
            ExecVersion::V2 => "v2.channel.k8s.io",
            ExecVersion::V3 => "v3.channel.k8s.io",
            ExecVersion::V4 => "v4.channel.k8s.io",
            ExecVersion::V5 => "v5.channel.k8s.io",
        }
    }

    /// The version a protocol name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::V1, Self::V2, Self::V3, Self::V4, Self::V5]
            .into_iter()
            .find(|v| v.name() == name)
    }

    /// Whether a resize stream exists (v3 on).
    pub fn supports_resize(self) -> bool {
        self >= ExecVersion::V3
    }

    /// Whether the error stream carries a JSON Status (v4 on).
    pub fn status_json(self) -> bool {
        self >= ExecVersion::V4
    }

    /// How many SPDY streams the client opens for an exec with these
    /// options: error, one per requested stdio, resize with a tty (v3 on).
    pub fn expected_streams(self, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> usize {
        1 + usize::from(stdin)
            + usize::from(stdout)
            + usize::from(stderr)
            + usize::from(tty && self.supports_resize())
    }

    /// What to write on the error stream for `status`: JSON from v4 on;
    /// before, the message of a failure and nothing on success.
    pub fn error_stream_bytes(self, status: &ExitStatus) -> Vec<u8> {
        if self.status_json() {
            return status.to_json();
        }
        match status {
            ExitStatus::Success => Vec::new(),
            other => other.message().into_bytes(),
        }
    }
}

/// How a remote command ended, as the error stream says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit code 0.
    Success,
    /// A non-zero exit code, with the runtime's description.
    ExitCode {
        /// The code.
        code: i32,
        /// What the runtime says of it.
        message: String,
    },
    /// The command could not be run (an internal error).
    Failure {
        /// What went wrong.
        message: String,
        /// The Status reason (`InternalError`, …), if any.
        reason: Option<String>,
    },
}

/// `metav1.Status` as the error stream carries it, fields in Go's order.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Status {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Metadata {}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Details {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

const NON_ZERO_EXIT_CODE: &str = "NonZeroExitCode";
const EXIT_CODE_CAUSE: &str = "ExitCode";

impl ExitStatus {
    /// The status for an exit code: Success for 0.
    pub fn from_code(code: i32, message: impl Into<String>) -> Self {
        if code == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::ExitCode {
                code,
                message: message.into(),
            }
        }
    }

    /// The human-readable message (empty for success).
    pub fn message(&self) -> String {
        match self {
            ExitStatus::Success => String::new(),
            ExitStatus::ExitCode { message, .. } => {
                format!("command terminated with non-zero exit code: {message}")
            }
            ExitStatus::Failure { message, .. } => message.clone(),
        }
    }

    /// The JSON `metav1.Status`, as kubelet writes it on a v4+ error stream.
    pub fn to_json(&self) -> Vec<u8> {
        let status = match self {
            ExitStatus::Success => Status {
                status: "Success".into(),
                ..Status::default()
            },
            ExitStatus::ExitCode { code, .. } => Status {
                status: "Failure".into(),
                message: Some(self.message()),
                reason: Some(NON_ZERO_EXIT_CODE.into()),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some(EXIT_CODE_CAUSE.into()),
                        message: Some(code.to_string()),
                    }],
                }),
                ..Status::default()
            },
            ExitStatus::Failure { message, reason } => Status {
                status: "Failure".into(),
                message: Some(message.clone()),
                reason: reason.clone(),
                code: Some(500),
                ..Status::default()
            },
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(&status).unwrap_or_default()
    }

    /// Reads a v4+ error stream's Status, as client-go does: Success, an
    /// exit code from the ExitCode cause of NonZeroExitCode, or a failure.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ChannelError> {
        let status: Status =
            serde_json::from_slice(bytes).map_err(|e| ChannelError::BadStatus(e.to_string()))?;
        match status.status.as_str() {
            "Success" => Ok(ExitStatus::Success),
            "Failure" => Ok(failure(status)?),
            other => Err(ChannelError::BadStatus(format!("status {other:?}"))),
        }
    }
}

fn failure(status: Status) -> Result<ExitStatus, ChannelError> {
    let message = status.message.unwrap_or_default();
    if status.reason.as_deref() != Some(NON_ZERO_EXIT_CODE) {
        return Ok(ExitStatus::Failure {
            message,
            reason: status.reason,
        });
    }
    let causes = status.details.map(|d| d.causes).unwrap_or_default();
    let cause = causes
        .iter()
        .find(|c| c.reason.as_deref() == Some(EXIT_CODE_CAUSE))
        .ok_or_else(|| {
            ChannelError::BadStatus("NonZeroExitCode without an ExitCode cause".into())
        })?;
    let text = cause.message.as_deref().unwrap_or_default();
    let code = text
        .parse()
        .map_err(|_| ChannelError::BadStatus(format!("exit code {text:?} is not a number")))?;
    let prefix = "command terminated with non-zero exit code: ";
    Ok(ExitStatus::ExitCode {
        code,
        message: message.strip_prefix(prefix).unwrap_or(&message).to_owned(),
    })
}

/// A terminal size, as resize messages carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

impl TerminalSize {
    /// The JSON message.
    pub fn to_json(self) -> Vec<u8> {
        serde_json::to_vec(&self).unwrap_or_default()
    }
}

/// Cuts terminal sizes out of a resize stream (concatenated JSON objects,
/// arriving in arbitrary pieces). Holds at most `limit` unparsed bytes.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// The most bytes one pending message may have.
    pub const LIMIT: usize = 4096;

    /// Adds bytes and returns the sizes now complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<TerminalSize>, ChannelError> {
        self.buf.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut stream =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
        let consumed = loop {
            match stream.next() {
                Some(Ok(size)) => sizes.push(size),
                Some(Err(e)) if e.is_eof() => break stream.byte_offset(),
                Some(Err(e)) => return Err(ChannelError::BadResize(e.to_string())),
                None => break self.buf.len(),
            }
        };
        self.buf.drain(..consumed);
        if self.buf.len() > Self::LIMIT {
            return Err(ChannelError::BadResize(format!(
                "over {} bytes without a whole message",
                Self::LIMIT
            )));
        }
        Ok(sizes)
    }
}
