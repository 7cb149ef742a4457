//! Port-forward over SPDY (a data and an error stream per connection,
//! paired by `requestID`) and over WebSocket (a data and an error channel
//! per requested port, each opening with the port, 2 bytes little-endian).

use super::{ChannelError, PORT_HEADER, REQUEST_ID_HEADER, STREAM_TYPE_HEADER};
use crate::spdy::Headers;

/// The SPDY port-forward protocol name.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The role of a port-forward stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortStreamType {
    /// The forwarded bytes.
    Data,
    /// Errors from the runtime, as text.
    Error,
}

/// What a port-forward SPDY stream's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStream {
    /// Data or error.
    pub kind: PortStreamType,
    /// The container port.
    pub port: u16,
    /// Pairs the data and error stream of one connection.
    pub request_id: String,
}

impl PortStream {
    /// Reads a stream's headers. Clients too old to send `requestID` open
    /// the error stream first; as kubelet does, its id is then the error
    /// stream's id, and a data stream's id minus 2.
    pub fn from_headers(headers: &Headers, stream_id: u32) -> Result<Self, ChannelError> {
        let kind = match headers.get(STREAM_TYPE_HEADER) {
            Some("data") => PortStreamType::Data,
            Some("error") => PortStreamType::Error,
            other => {
                return Err(ChannelError::BadPort(format!("stream type {other:?}")));
            }
        };
        let text = headers
            .get(PORT_HEADER)
            .ok_or_else(|| ChannelError::BadPort("no port header".into()))?;
        let port = parse_port(text)?;
        let request_id = match headers.get(REQUEST_ID_HEADER) {
            Some(id) => id.to_owned(),
            None if kind == PortStreamType::Error => stream_id.to_string(),
            None => stream_id.saturating_sub(2).to_string(),
        };
        Ok(Self {
            kind,
            port,
            request_id,
        })
    }

    /// The headers a client opens this stream with.
    pub fn headers(&self) -> Headers {
        let kind = match self.kind {
            PortStreamType::Data => "data",
            PortStreamType::Error => "error",
        };
        Headers::new()
            .with(STREAM_TYPE_HEADER, kind)
            .with(PORT_HEADER, &self.port.to_string())
            .with(REQUEST_ID_HEADER, &self.request_id)
    }
}

fn parse_port(text: &str) -> Result<u16, ChannelError> {
    match text.parse::<u16>() {
        Ok(0) => Err(ChannelError::BadPort(format!("port {text:?} must be > 0"))),
        Ok(port) => Ok(port),
        Err(_) => Err(ChannelError::BadPort(format!(
            "unable to parse {text:?} as a port"
        ))),
    }
}

/// The ports of a WebSocket port-forward request: every `port` query value,
/// each a comma-separated list.
pub fn ports_from_query<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<u16>, ChannelError> {
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err(ChannelError::BadPort(
                "query parameter \"port\" cannot be empty".into(),
            ));
        }
        for part in value.split(',') {
            ports.push(parse_port(part)?);
        }
    }
    if ports.is_empty() {
        return Err(ChannelError::BadPort(
            "query parameter \"port\" is required".into(),
        ));
    }
    Ok(ports)
}

/// The WebSocket data and error channels of the `index`-th port.
pub fn ws_channels(index: usize) -> Option<(u8, u8)> {
    let data = u8::try_from(index.checked_mul(2)?).ok()?;
    Some((data, data.checked_add(1)?))
}

/// Which port (by index) and which stream a WebSocket channel is.
pub fn ws_channel_port(channel: u8) -> (usize, PortStreamType) {
    let kind = if channel.is_multiple_of(2) {
        PortStreamType::Data
    } else {
        PortStreamType::Error
    };
    (usize::from(channel / 2), kind)
}

/// The first message on each of a port's channels: the port, little-endian.
pub fn ws_port_prefix(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}
