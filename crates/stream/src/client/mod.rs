//! A client of streaming URLs, for crius' CLI and tests: [`exec`] over
//! SPDY or WebSocket (attach URLs work the same), [`port_forward`] over
//! SPDY. The HTTP/1.1 upgrade goes through hyper's client connection.
//!
//! Read stdout and stderr while waiting for the exit: like kubectl, the
//! client holds at most a window of unread output, and a server whose
//! output is not read cannot send the status either.

mod exec;
mod portforward;

pub use exec::{ClientSession, ExecOptions, Exit, exec};
pub use portforward::{Forwarded, PortForwarder, port_forward};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::FusedFuture;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
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
    /// The URL is not `http://host:port/path`.
    #[error("bad streaming URL {0:?}")]
    Url(String),
    /// TCP failed.
    #[error("connecting to the streaming server: {0}")]
    Connect(#[from] std::io::Error),
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

/// Sends `method url` with `headers` and waits for the 101.
pub(crate) async fn upgrade(
    url: &str,
    method: Method,
    headers: &[(&str, String)],
) -> Result<Upgrade, ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.into()))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => authority.clone(),
        _ => return Err(ClientError::Url(url.into())),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let tcp = TcpStream::connect(authority.as_str()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str());
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
