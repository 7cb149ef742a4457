//! Kubernetes channels over a WebSocket (tokio-tungstenite): a thin
//! adapter from channel messages to WebSocket messages and back.
//!
//! The HTTP upgrade itself is answered elsewhere (with the headers
//! [`crate::upgrade::negotiate`] gives); [`WsChannels::server`] then takes
//! the upgraded connection. [`WsChannels::split`] gives a sender and a
//! receiver for use from two tasks.

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::channel::ChannelError;
use crate::channel::wire::{self, ChannelMessage, Payload};
use crate::upgrade::WsProtocol;

/// An error of a WebSocket channel connection.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// A message that breaks the channel protocol.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// Closing a channel needs v5.channel.k8s.io.
    #[error("subprotocol {0:?} cannot close a channel")]
    NoCloseSignal(&'static str),
}

/// Limits for WebSocket messages: 1 MiB per message and frame.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// A WebSocket carrying Kubernetes channels of one subprotocol.
pub struct WsChannels<T> {
    ws: WebSocketStream<T>,
    protocol: WsProtocol,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsChannels<T> {
    /// The server side of an upgraded connection (the 101 already sent).
    pub async fn server(io: T, protocol: WsProtocol) -> Self {
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await;
        Self { ws, protocol }
    }

    /// The client side of a connection whose handshake is done.
    pub fn from_stream(ws: WebSocketStream<T>, protocol: WsProtocol) -> Self {
        Self { ws, protocol }
    }

    /// The subprotocol.
    pub fn protocol(&self) -> &WsProtocol {
        &self.protocol
    }

    /// Sends `data` on `channel`.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<(), WsError> {
        let message = to_message(wire::encode(self.protocol.encoding, channel, data));
        Ok(self.ws.send(message).await?)
    }

    /// The next channel message; `None` once the peer closed the WebSocket.
    pub async fn recv(&mut self) -> Result<Option<ChannelMessage>, WsError> {
        next_message(&mut self.ws, &self.protocol).await
    }

    /// Closes the WebSocket (a close frame, then the end).
    pub async fn close(mut self) -> Result<(), WsError> {
        Ok(self.ws.close(None).await?)
    }

    /// A sender and a receiver, for two tasks.
    pub fn split(self) -> (WsSender<T>, WsReceiver<T>) {
        let (sink, stream) = self.ws.split();
        (
            WsSender {
                sink,
                protocol: self.protocol.clone(),
            },
            WsReceiver {
                stream,
                protocol: self.protocol,
            },
        )
    }
}

/// The sending half of [`WsChannels`].
pub struct WsSender<T> {
    sink: SplitSink<WebSocketStream<T>, Message>,
    protocol: WsProtocol,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsSender<T> {
    /// Sends `data` on `channel`.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<(), WsError> {
        let message = to_message(wire::encode(self.protocol.encoding, channel, data));
        Ok(self.sink.send(message).await?)
    }

    /// v5: tells the peer nothing more comes on `channel`.
    pub async fn close_channel(&mut self, channel: u8) -> Result<(), WsError> {
        if !self.protocol.close_signal() {
            return Err(WsError::NoCloseSignal(self.protocol.name));
        }
        Ok(self
            .sink
            .send(to_message(wire::encode_close(channel)))
            .await?)
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) -> Result<(), WsError> {
        Ok(self.sink.close().await?)
    }
}

/// The receiving half of [`WsChannels`].
pub struct WsReceiver<T> {
    stream: SplitStream<WebSocketStream<T>>,
    protocol: WsProtocol,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsReceiver<T> {
    /// The next channel message; `None` once the peer closed the WebSocket.
    pub async fn recv(&mut self) -> Result<Option<ChannelMessage>, WsError> {
        next_message(&mut self.stream, &self.protocol).await
    }
}

fn to_message(payload: Payload) -> Message {
    match payload {
        Payload::Binary(bytes) => Message::binary(bytes),
        Payload::Text(text) => Message::text(text),
    }
}

/// Reads messages until one carries channel data (pings, pongs and empty
/// messages are skipped; tungstenite answers pings itself).
async fn next_message<S>(
    stream: &mut S,
    protocol: &WsProtocol,
) -> Result<Option<ChannelMessage>, WsError>
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    while let Some(message) = stream.next().await {
        let payload = match message? {
            Message::Binary(bytes) => bytes.to_vec(),
            Message::Text(text) => text.as_bytes().to_vec(),
            Message::Close(_) => return Ok(None),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let close_signal = protocol.close_signal();
        if let Some(decoded) = wire::decode(protocol.encoding, close_signal, &payload)? {
            return Ok(Some(decoded));
        }
    }
    Ok(None)
}
