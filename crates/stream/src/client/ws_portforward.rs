//! The port-forward client over WebSocket, as kubelet serves it (the
//! `v4.channel.k8s.io` subprotocol on a port-forward URL): one WebSocket
//! per connection, its port in the URL's `port` query; channel 0 carries
//! the data, channel 1 the error, and the server starts each with the port
//! (2 bytes, little-endian), which the client checks and drops.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use super::exec::{ws_answer_for, ws_key};
use super::{ClientError, ClientTls, upgrade};
use crate::channel::portforward::ws_port_prefix;
use crate::channel::wire::ChannelMessage;
use crate::upgrade::Endpoint;
use crate::ws::{WsChannels, WsReceiver};
use crate::wsio::{self, ChannelWriter};

/// Bytes of data buffered from the pod before the reader takes them.
const DATA_PIPE: usize = 64 * 1024;
/// The most bytes the error channel may carry.
const ERROR_LIMIT: usize = 64 * 1024;

/// A connection forwarded over a WebSocket of its own. v4 has no
/// half-close: shutting the write side down closes the WebSocket.
pub struct WsForwarded {
    read: DuplexStream,
    write: ChannelWriter,
    error: Option<oneshot::Receiver<String>>,
    _tasks: JoinSet<()>,
}

impl WsForwarded {
    /// What the server said went wrong (the error channel, to the end of
    /// the WebSocket); `None` if it said nothing.
    pub async fn error(&mut self) -> Option<String> {
        let rx = self.error.take()?;
        rx.await.ok().filter(|e| !e.is_empty())
    }
}

/// One connection to `port` of the pod `url` names, over WebSocket;
/// `https://` URLs over TLS with `tls`.
pub async fn port_forward_ws(
    url: &str,
    port: u16,
    tls: Option<&ClientTls>,
) -> Result<WsForwarded, ClientError> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}port={port}");
    let key = ws_key()?;
    let headers = [
        ("connection", "Upgrade".to_owned()),
        ("upgrade", "websocket".to_owned()),
        ("sec-websocket-version", "13".to_owned()),
        ("sec-websocket-key", key.clone()),
        ("sec-websocket-protocol", "v4.channel.k8s.io".to_owned()),
    ];
    let up = upgrade(&url, Method::GET, &headers, tls).await?;
    let protocol = ws_answer_for(Endpoint::PortForward, &up.headers, &key)?;
    let ws = WebSocketStream::from_raw_socket(up.io, WsRole::Client, None).await;
    let (sender, receiver) = WsChannels::from_stream(ws, protocol).split();
    let (out, out_rx) = mpsc::channel(wsio::QUEUE);
    let mut tasks = JoinSet::new();
    tasks.spawn(wsio::pump(sender, out_rx));
    let (data_w, read) = tokio::io::duplex(DATA_PIPE);
    let (error_tx, error) = oneshot::channel();
    tasks.spawn(receive(receiver, port, data_w, error_tx));
    Ok(WsForwarded {
        read,
        write: ChannelWriter::new(out, 0, false),
        error: Some(error),
        _tasks: tasks,
    })
}

/// Feeds channel 0 (without its port prefix) into the data pipe and keeps
/// channel 1 for [`WsForwarded::error`], until the WebSocket ends.
async fn receive<T>(
    mut receiver: WsReceiver<T>,
    port: u16,
    mut data: DuplexStream,
    error_tx: oneshot::Sender<String>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let prefix = ws_port_prefix(port);
    let mut seen = [false; 2];
    let mut error = Vec::new();
    let mut data_open = true;
    while let Ok(Some(message)) = receiver.recv().await {
        let ChannelMessage::Data {
            channel,
            data: bytes,
        } = message
        else {
            continue;
        };
        let Some(first) = seen.get_mut(usize::from(channel)) else {
            continue;
        };
        let bytes = match std::mem::replace(first, true) {
            false if bytes.starts_with(&prefix) => &bytes[prefix.len()..],
            false => break,
            true => &bytes[..],
        };
        if channel == 1 {
            let room = ERROR_LIMIT.saturating_sub(error.len());
            error.extend_from_slice(&bytes[..bytes.len().min(room)]);
        } else if data_open && data.write_all(bytes).await.is_err() {
            data_open = false;
        }
    }
    drop(data);
    let _ = error_tx.send(String::from_utf8_lossy(&error).into_owned());
}

impl AsyncRead for WsForwarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for WsForwarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}
