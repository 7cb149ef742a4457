//! WebSocket channel framing: the channel byte (or ASCII digit, with
//! base64 encoding) in front of every message, and v5's close signal.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{CLOSE_CHANNEL, ChannelError};

/// How a subprotocol encodes channel messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary messages: the channel byte, then the data.
    Binary,
    /// Text messages: `'0' + channel`, then the data in standard base64.
    Base64,
}

/// A WebSocket message's payload, binary or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// For [`Encoding::Binary`].
    Binary(Vec<u8>),
    /// For [`Encoding::Base64`].
    Text(String),
}

/// What one received message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMessage {
    /// Data for a channel.
    Data {
        /// The channel.
        channel: u8,
        /// The data (decoded).
        data: Vec<u8>,
    },
    /// v5: the peer will send nothing more on `channel`.
    Close {
        /// The channel closed.
        channel: u8,
    },
}

/// The message carrying `data` on `channel`.
pub fn encode(encoding: Encoding, channel: u8, data: &[u8]) -> Payload {
    match encoding {
        Encoding::Binary => {
            let mut out = Vec::with_capacity(data.len() + 1);
            out.push(channel);
            out.extend_from_slice(data);
            Payload::Binary(out)
        }
        Encoding::Base64 => {
            let mut out = String::with_capacity(data.len() * 4 / 3 + 5);
            out.push(char::from(b'0'.wrapping_add(channel)));
            STANDARD.encode_string(data, &mut out);
            Payload::Text(out)
        }
    }
}

/// The v5 message closing `channel` (binary: v5 has no base64 form).
pub fn encode_close(channel: u8) -> Payload {
    Payload::Binary(vec![CLOSE_CHANNEL, channel])
}

/// Reads a received message; `None` for an empty one (ignored, as
/// kubelet does). `close_signal`: whether 255 means close (v5).
pub fn decode(
    encoding: Encoding,
    close_signal: bool,
    payload: &[u8],
) -> Result<Option<ChannelMessage>, ChannelError> {
    let Some((&first, rest)) = payload.split_first() else {
        return Ok(None);
    };
    if close_signal && first == CLOSE_CHANNEL && encoding == Encoding::Binary {
        return match rest {
            [channel] => Ok(Some(ChannelMessage::Close { channel: *channel })),
            _ => Err(ChannelError::BadMessage(format!(
                "a close message of {} bytes, not 2",
                payload.len()
            ))),
        };
    }
    match encoding {
        Encoding::Binary => Ok(Some(ChannelMessage::Data {
            channel: first,
            data: rest.to_vec(),
        })),
        Encoding::Base64 => {
            let data = STANDARD
                .decode(rest)
                .map_err(|e| ChannelError::BadMessage(format!("bad base64: {e}")))?;
            Ok(Some(ChannelMessage::Data {
                channel: first.wrapping_sub(b'0'),
                data,
            }))
        }
    }
}
