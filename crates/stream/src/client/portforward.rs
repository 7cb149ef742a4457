//! The port-forward client over SPDY: one session, any number of
//! connections, each a data and an error stream paired by `requestID`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{ClientError, ClientTls, upgrade};
use crate::channel::portforward::{PORT_FORWARD_PROTOCOL, PortStream, PortStreamType};
use crate::spdy::{self, RecvHalf, Role, SendHalf, Session};
use crate::upgrade::PROTOCOL_VERSION_HEADER;

/// The most bytes an error stream may carry.
const ERROR_LIMIT: usize = 64 * 1024;

/// A port-forward session; dropping it ends the session.
pub struct PortForwarder {
    session: Session,
    next_request: AtomicU32,
}

impl PortForwarder {
    /// Upgrades an `http://` `url` to a port-forward session.
    pub async fn open(url: &str) -> Result<Self, ClientError> {
        Self::open_with(url, None).await
    }

    /// Upgrades `url` to a port-forward session, `https://` ones over TLS
    /// with `tls`.
    pub async fn open_tls(url: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        Self::open_with(url, Some(tls)).await
    }

    async fn open_with(url: &str, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let headers = [
            ("connection", "Upgrade".to_owned()),
            ("upgrade", "SPDY/3.1".to_owned()),
            (PROTOCOL_VERSION_HEADER, PORT_FORWARD_PROTOCOL.to_owned()),
        ];
        let up = upgrade(url, Method::POST, &headers, tls).await?;
        let session = Session::spawn(up.io, Role::Client, spdy::Config::default());
        Ok(Self {
            session,
            next_request: AtomicU32::new(0),
        })
    }

    /// A new connection to `port` of the pod.
    pub async fn connect(&self, port: u16) -> Result<Forwarded, ClientError> {
        let request_id = self
            .next_request
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let stream = |kind| PortStream {
            kind,
            port,
            request_id: request_id.clone(),
        };
        let error = self
            .session
            .open(stream(PortStreamType::Error).headers(), true)
            .await?;
        let data = self
            .session
            .open(stream(PortStreamType::Data).headers(), false)
            .await?;
        let (recv, send) = data.split();
        Ok(Forwarded {
            recv,
            send,
            error: error.recv,
            _owner: None,
        })
    }
}

impl Drop for PortForwarder {
    fn drop(&mut self) {
        self.session.close();
    }
}

/// One connection `url` forwards to `port`, in a session of its own.
pub async fn port_forward(url: &str, port: u16) -> Result<Forwarded, ClientError> {
    let forwarder = PortForwarder::open(url).await?;
    owned(forwarder, port).await
}

/// [`port_forward`] for `https://` URLs, over TLS with `tls`.
pub async fn port_forward_tls(
    url: &str,
    port: u16,
    tls: &ClientTls,
) -> Result<Forwarded, ClientError> {
    let forwarder = PortForwarder::open_tls(url, tls).await?;
    owned(forwarder, port).await
}

/// A connection that owns its session.
async fn owned(forwarder: PortForwarder, port: u16) -> Result<Forwarded, ClientError> {
    let mut forwarded = forwarder.connect(port).await?;
    forwarded._owner = Some(forwarder);
    Ok(forwarded)
}

/// A forwarded connection: read and write it like a socket; shut it
/// down to send the end.
pub struct Forwarded {
    recv: RecvHalf,
    send: SendHalf,
    error: RecvHalf,
    _owner: Option<PortForwarder>,
}

impl Forwarded {
    /// What the server said went wrong (its error stream, to its end);
    /// `None` if it said nothing.
    pub async fn error(&mut self) -> Result<Option<String>, ClientError> {
        let bytes = self.error.read_to_end(ERROR_LIMIT).await?;
        Ok((!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl AsyncRead for Forwarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Forwarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}
