//! The streaming server kubelet proxies Exec, Attach and PortForward to.
//!
//! [`StreamServer::url`] caches a request under a fresh token and answers
//! `http://<addr>/{exec,attach,portforward}/<token>` (`https://` with
//! [`ServerConfig::tls`]: each connection's TLS handshake runs first, in
//! its own task; one that fails, or a client that speaks plain HTTP to the
//! TLS port, is logged and closed). A request to such a
//! URL takes its token (404 for one unknown, expired or used), negotiates
//! SPDY or WebSocket ([`crate::upgrade::negotiate`]), answers 101 and runs
//! the session on the upgraded connection: [`exec`] for exec and attach,
//! [`portforward`] for port-forward, each over either protocol, calling the
//! [`Backend`]. Every task is tracked and stopped on shutdown; a session
//! that ends (client gone, idle, shutdown) drops the backend's future.

mod exec;
mod guard;
mod http;
mod portforward;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, Request};
use crate::spdy;
use crate::tls::ServerTls;
use crate::tokens::{self, TokenCache, TokenError};

/// Limits and addresses of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (default 127.0.0.1, any port).
    pub addr: SocketAddr,
    /// The `host:port` URLs carry; `None`: the bound address (an
    /// unspecified IP such as 0.0.0.0 is then replaced by loopback).
    pub advertise: Option<String>,
    /// How long a token is valid (default 60 s).
    pub token_ttl: Duration,
    /// Live tokens at most (default 4096).
    pub max_tokens: usize,
    /// A session in which no byte moved this long is ended (default 4 h).
    pub idle_timeout: Duration,
    /// How long a client has to open a session's streams (default 30 s).
    pub stream_creation_timeout: Duration,
    /// Sessions at once; more get 503 (default 128).
    pub max_sessions: usize,
    /// How long a finished session waits for the client to close the
    /// connection after the last bytes were queued (default 5 s).
    pub linger: Duration,
    /// How long a client may take to send a request head (default 30 s).
    pub header_read_timeout: Duration,
    /// Frame, header and stream limits of SPDY sessions.
    pub spdy: spdy::Config,
    /// TLS on every connection (URLs are then `https://`); `None`: plain
    /// HTTP (default).
    pub tls: Option<ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            advertise: None,
            token_ttl: tokens::DEFAULT_TTL,
            max_tokens: tokens::DEFAULT_MAX_TOKENS,
            idle_timeout: Duration::from_secs(4 * 3600),
            stream_creation_timeout: Duration::from_secs(30),
            max_sessions: 128,
            linger: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(30),
            spdy: spdy::Config::default(),
            tls: None,
        }
    }
}

/// Why the server could not start or make a URL.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listener failed.
    #[error("streaming server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No token could be made.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What every connection and session shares.
pub(crate) struct Ctx {
    pub backend: Arc<dyn Backend>,
    pub tokens: Arc<TokenCache>,
    pub config: ServerConfig,
    pub sessions: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
}

/// Makes URLs for requests; clones share the server's token cache.
#[derive(Clone)]
pub struct Urls {
    tokens: Arc<TokenCache>,
    base: String,
}

impl Urls {
    /// Caches `request` and answers the absolute URL the client is to use.
    pub fn url(&self, request: &Request) -> Result<String, ServerError> {
        let path = match request {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        };
        let token = self.tokens.insert(request.clone())?;
        Ok(format!("{}/{path}/{token}", self.base))
    }
}

/// A bound, not yet serving, streaming server.
pub struct StreamServer {
    listener: TcpListener,
    ctx: Arc<Ctx>,
    urls: Urls,
}

impl StreamServer {
    /// Binds `config.addr`; answers the server and the bound address.
    pub async fn bind(
        config: ServerConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<(StreamServer, SocketAddr), ServerError> {
        let bind_err = |source| ServerError::Bind {
            addr: config.addr,
            source,
        };
        let listener = TcpListener::bind(config.addr).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base = format!("{scheme}://{}", advertised(&config, addr));
        let tokens = Arc::new(TokenCache::new(config.token_ttl, config.max_tokens));
        let ctx = Arc::new(Ctx {
            backend,
            tokens: tokens.clone(),
            sessions: Arc::new(Semaphore::new(config.max_sessions)),
            config,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        let urls = Urls { tokens, base };
        Ok((
            StreamServer {
                listener,
                ctx,
                urls,
            },
            addr,
        ))
    }

    /// Caches `request` and answers its URL (see [`Urls::url`]).
    pub fn url(&self, request: &Request) -> Result<String, ServerError> {
        self.urls.url(request)
    }

    /// A handle that makes URLs while [`StreamServer::serve`] runs.
    pub fn urls(&self) -> Urls {
        self.urls.clone()
    }

    /// Serves until `shutdown` fires, then stops every connection and
    /// session (dropping the backend's futures) and waits for their tasks.
    pub async fn serve(self, shutdown: CancellationToken) {
        let StreamServer { listener, ctx, .. } = self;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((tcp, peer)) => http::accept(&ctx, tcp, peer),
                Err(e) => {
                    tracing::warn!(error = %e, "streaming server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(listener);
        ctx.cancel.cancel();
        ctx.tracker.close();
        ctx.tracker.wait().await;
        tracing::debug!("streaming server stopped");
    }
}

/// The `host:port` of URLs: the configured one, or the bound address with
/// an unspecified IP replaced by loopback of its family.
fn advertised(config: &ServerConfig, addr: SocketAddr) -> String {
    if let Some(advertise) = &config.advertise {
        return advertise.clone();
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_advertised_as_loopback() {
        let config = ServerConfig::default();
        let any: SocketAddr = "0.0.0.0:1234".parse().expect("addr");
        assert_eq!(advertised(&config, any), "127.0.0.1:1234");
        let any6: SocketAddr = "[::]:1234".parse().expect("addr");
        assert_eq!(advertised(&config, any6), "[::1]:1234");
        let bound: SocketAddr = "10.0.0.5:99".parse().expect("addr");
        assert_eq!(advertised(&config, bound), "10.0.0.5:99");
        let config = ServerConfig {
            advertise: Some("node.example:10010".into()),
            ..ServerConfig::default()
        };
        assert_eq!(advertised(&config, any), "node.example:10010");
    }
}
