//! A client of streaming URLs, for crius' CLI and tests: [`exec`] over
//! SPDY or WebSocket (attach URLs work the same), [`port_forward`] over
//! SPDY and [`port_forward_ws`] over WebSocket. The HTTP/1.1 upgrade goes through hyper's client connection,
//! over TLS for `https://` URLs ([`exec_tls`], [`PortForwarder::open_tls`],
//! [`port_forward_tls`] with a [`ClientTls`]).
//!
//! Read stdout and stderr while waiting for the exit: like kubectl, the
//! client holds at most a window of unread output, and a server whose
//! output is not read cannot send the status either.

mod exec;
mod portforward;
mod ws_portforward;

pub use exec::{ClientSession, ExecOptions, Exit, exec, exec_tls};
pub use portforward::{Forwarded, PortForwarder, port_forward, port_forward_tls};
pub use ws_portforward::{WsForwarded, port_forward_ws};

pub use crate::tls::ClientTls;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::FusedFuture;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::channel::ChannelError;
use crate::spdy;
use crate::ws::WsError;

/// How to talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SPDY/3.1, as kubectl (before WebSockets) and kubelet's proxy.
    Spdy,
    /// WebSocket channels (v5, else v4).
    WebSocket,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port/path` or `https://host:port/path`.
    #[error("bad streaming URL {0:?}")]
    Url(String),
    /// An `https://` URL, but no [`ClientTls`] to connect with.
    #[error("streaming URL {0:?} is https: it needs TLS settings (exec_tls, open_tls)")]
    NeedsTls(String),
    /// TCP failed.
    #[error("connecting to the streaming server: {0}")]
    Connect(#[from] std::io::Error),
    /// The TLS handshake failed (e.g. a certificate not trusted).
    #[error("TLS handshake with the streaming server: {0}")]
    Handshake(std::io::Error),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered something other than 101.
    #[error("the streaming server refused the upgrade: {status}: {body}")]
    Refused {
        /// Its status.
        status: StatusCode,
        /// Its body (the reason).
        body: String,
    },
    /// The server's 101 does not fit the request.
    #[error("bad upgrade answer: {0}")]
    Upgrade(String),
    /// The SPDY session failed.
    #[error(transparent)]
    Spdy(#[from] spdy::Error),
    /// The WebSocket failed.
    #[error(transparent)]
    Ws(#[from] WsError),
    /// The error stream did not carry a status.
    #[error(transparent)]
    Status(#[from] ChannelError),
    /// The session ended before the status came.
    #[error("the session ended without a status")]
    NoStatus,
}

/// An upgraded connection and the headers of the 101.
pub(crate) struct Upgrade {
    pub io: TokioIo<Upgraded>,
    pub headers: HeaderMap,
}

/// A connection to the server, plain or TLS.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Connects to the server of `uri` (TLS for `https`); answers the
/// connection and the `Host` header.
async fn connect(
    url: &str,
    uri: &Uri,
    tls: Option<&ClientTls>,
) -> Result<(Box<dyn Conn>, String), ClientError> {
    let bad = || ClientError::Url(url.into());
    let authority = uri.authority().ok_or_else(bad)?;
    let (default_port, tls) = match (uri.scheme_str(), tls) {
        (Some("http"), _) => (80, None),
        (Some("https"), Some(tls)) => (443, Some(tls)),
        (Some("https"), None) => return Err(ClientError::NeedsTls(url.into())),
        _ => return Err(bad()),
    };
    // `host()` keeps an IPv6 address' brackets.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(default_port);
    let tcp = TcpStream::connect((host, port)).await?;
    let Some(tls) = tls else {
        return Ok((Box::new(tcp), authority.to_string()));
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
    let stream = tls
        .connector()
        .connect(name, tcp)
        .await
        .map_err(ClientError::Handshake)?;
    Ok((Box::new(stream), authority.to_string()))
}

/// Sends `method url` with `headers` and waits for the 101.
pub(crate) async fn upgrade(
    url: &str,
    method: Method,
    headers: &[(&str, String)],
    tls: Option<&ClientTls>,
) -> Result<Upgrade, ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.into()))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let (conn, authority) = connect(url, &uri, tls).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(conn)).await?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Upgrade(e.to_string()))?;
    // The connection future ends as soon as it hands the connection to
    // the upgrade, maybe before the response is polled: fused, it can be
    // polled alongside everything that follows.
    let mut conn = std::pin::pin!(conn.with_upgrades().fuse());
    let mut response = std::pin::pin!(sender.send_request(request));
    let response = tokio::select! {
        response = &mut response => response?,
        ended = &mut conn => {
            ended?;
            response.await?
        }
    };
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = tokio::select! {
            body = Limited::new(response.into_body(), 64 * 1024).collect() => {
                body.map(|b| b.to_bytes()).unwrap_or_default()
            }
            _ = &mut conn => Bytes::new(),
        };
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        return Err(ClientError::Refused { status, body });
    }
    let headers = response.headers().clone();
    let rest = async {
        match conn.is_terminated() {
            true => Ok(()),
            false => conn.await,
        }
    };
    let (upgraded, ended) = tokio::join!(hyper::upgrade::on(response), rest);
    ended?;
    Ok(Upgrade {
        io: TokioIo::new(upgraded?),
        headers,
    })
}
