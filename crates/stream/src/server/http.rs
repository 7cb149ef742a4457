//! HTTP/1.1 of the streaming server: one hyper connection per TCP
//! connection; each request is routed, its token taken, its protocol
//! negotiated, and on success answered 101 with its session spawned on
//! the upgraded connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request as HttpRequest, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::Ctx;
use super::guard::Guarded;
use super::{exec, portforward};
use crate::backend::Request;
use crate::channel::portforward::ports_from_query;
use crate::upgrade::{Decision, Endpoint, negotiate};

type Body = Full<Bytes>;

/// Serves one accepted TCP connection in a tracked task that ends on
/// shutdown; with TLS, after the handshake (bounded by the header read
/// timeout).
pub(super) fn accept(ctx: &Arc<Ctx>, tcp: TcpStream, peer: SocketAddr) {
    let cancel = ctx.cancel.clone();
    let Some(tls) = &ctx.config.tls else {
        let served = serve(ctx.clone(), tcp, peer);
        ctx.tracker.spawn(async move {
            tokio::select! {
                () = served => {}
                () = cancel.cancelled() => {}
            }
        });
        return;
    };
    let acceptor = tls.acceptor();
    let conn_ctx = ctx.clone();
    let limit = ctx.config.header_read_timeout;
    ctx.tracker.spawn(async move {
        let work = async {
            let handshake = tokio::time::timeout(limit, handshake(acceptor, tcp, peer));
            match handshake.await {
                Ok(Some(stream)) => serve(conn_ctx, stream, peer).await,
                Ok(None) => {}
                Err(_) => {
                    tracing::info!(%peer, ?limit, "streaming TLS handshake timed out: closed")
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = cancel.cancelled() => {}
        }
    });
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS handshake of one connection; `None` (logged) when it fails or
/// the client does not speak TLS at all (plain HTTP on the TLS port).
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return None,
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
            tracing::info!(
                %peer,
                "a client that does not speak TLS (plain HTTP?) on the TLS streaming port: closed"
            );
            return None;
        }
        Ok(_) => {}
    }
    match acceptor.accept(tcp).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::info!(%peer, error = %e, "streaming TLS handshake failed: closed");
            None
        }
    }
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends.
async fn serve<I>(ctx: Arc<Ctx>, io: I, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let ctx = conn_ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.config.header_read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming connection failed");
    }
}

fn respond(status: StatusCode, headers: HeaderMap, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn refuse(status: StatusCode, reason: &str) -> Response<Body> {
    tracing::debug!(%status, reason, "streaming request refused");
    respond(status, HeaderMap::new(), format!("{reason}\n"))
}

/// The endpoint and token of a path `/<endpoint>/<token>`.
fn route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (kind, token) = rest.split_once('/')?;
    let known = matches!(kind, "exec" | "attach" | "portforward");
    (known && !token.is_empty() && !token.contains('/')).then_some((kind, token))
}

fn handle(ctx: &Arc<Ctx>, req: HttpRequest<Incoming>) -> Response<Body> {
    let Some((kind, token)) = route(req.uri().path()) else {
        return refuse(StatusCode::NOT_FOUND, "not found");
    };
    if req.method() != Method::GET && req.method() != Method::POST {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET and POST");
    }
    let Ok(permit) = ctx.sessions.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many streaming sessions at once",
        );
    };
    let request = match (kind, ctx.tokens.take(token)) {
        (_, None) => return refuse(StatusCode::NOT_FOUND, "unknown or expired token"),
        ("exec", Some(r @ Request::Exec(_)))
        | ("attach", Some(r @ Request::Attach(_)))
        | ("portforward", Some(r @ Request::PortForward(_))) => r,
        (_, Some(_)) => {
            return refuse(StatusCode::NOT_FOUND, "the token is for another endpoint");
        }
    };
    let endpoint = match request {
        Request::PortForward(_) => Endpoint::PortForward,
        _ => Endpoint::Exec,
    };
    match negotiate(endpoint, req.headers()) {
        Decision::Refuse {
            status,
            reason,
            headers,
        } => {
            tracing::debug!(%status, %reason, "streaming upgrade refused");
            respond(status, headers, format!("{reason}\n"))
        }
        decision => upgrade(ctx, req, request, decision, permit),
    }
}

/// Answers 101 and spawns the session; a bad port query is a 400.
fn upgrade(
    ctx: &Arc<Ctx>,
    req: HttpRequest<Incoming>,
    request: Request,
    decision: Decision,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    let (headers, session) = match decision {
        Decision::Spdy { protocol, headers } => (headers, Session::Spdy(protocol)),
        Decision::WebSocket {
            subprotocol,
            headers,
        } => {
            let ports = match &request {
                Request::PortForward(pf) => match query_ports(req.uri().query(), &pf.ports) {
                    Ok(ports) => ports,
                    Err(reason) => return refuse(StatusCode::BAD_REQUEST, &reason),
                },
                _ => Vec::new(),
            };
            (headers, Session::Ws(subprotocol, ports))
        }
        Decision::Refuse { status, reason, .. } => return refuse(status, &reason),
    };
    let kind = match request {
        Request::Exec(_) => crius_metrics::StreamKind::Exec,
        Request::Attach(_) => crius_metrics::StreamKind::Attach,
        Request::PortForward(_) => crius_metrics::StreamKind::PortForward,
    };
    let ctx2 = ctx.clone();
    let cancel = ctx.cancel.clone();
    ctx.tracker.spawn(async move {
        let _permit = permit;
        let _open = crius_metrics::global().session(kind);
        tokio::select! {
            () = run(ctx2, req, request, session) => {},
            () = cancel.cancelled() => {},
        }
    });
    respond(StatusCode::SWITCHING_PROTOCOLS, headers, String::new())
}

/// The ports of a WebSocket port-forward: the `port` query values, or the
/// request's own when the query names none.
fn query_ports(query: Option<&str>, requested: &[u16]) -> Result<Vec<u16>, String> {
    let values: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "port")
        .map(|(_, v)| v)
        .collect();
    if values.is_empty() && !requested.is_empty() {
        return Ok(requested.to_vec());
    }
    ports_from_query(values).map_err(|e| e.to_string())
}

enum Session {
    Spdy(crate::upgrade::Protocol),
    Ws(crate::upgrade::WsProtocol, Vec<u16>),
}

/// Waits for the upgrade, then runs the session on the guarded
/// connection; when it is done, lingers until the protocol tasks let the
/// connection go (the client closed it) or `linger` passes.
async fn run(ctx: Arc<Ctx>, mut req: HttpRequest<Incoming>, request: Request, session: Session) {
    let upgraded = match hyper::upgrade::on(&mut req).await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "streaming upgrade failed");
            return;
        }
    };
    let cancel = ctx.cancel.child_token();
    let (io, activity, dropped) = Guarded::new(TokioIo::new(upgraded), &cancel);
    let work = async {
        match (session, request) {
            (Session::Spdy(_), Request::PortForward(pf)) => {
                portforward::spdy(&ctx, io, pf).await;
            }
            (Session::Spdy(protocol), call) => exec::spdy(&ctx, io, protocol, call).await,
            (Session::Ws(protocol, ports), Request::PortForward(pf)) => {
                portforward::ws(&ctx, io, protocol, pf, ports).await;
            }
            (Session::Ws(protocol, _), call) => exec::ws(&ctx, io, protocol, call).await,
        }
    };
    tokio::select! {
        () = work => {
            let _ = tokio::time::timeout(ctx.config.linger, dropped).await;
        }
        () = activity.idle(ctx.config.idle_timeout) => {
            tracing::info!(timeout = ?ctx.config.idle_timeout, "streaming session idle: ended");
        }
    }
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/exec/abc"), Some(("exec", "abc")));
        assert_eq!(route("/portforward/x-_1"), Some(("portforward", "x-_1")));
        assert_eq!(route("/exec/"), None);
        assert_eq!(route("/exec/a/b"), None);
        assert_eq!(route("/other/abc"), None);
        assert_eq!(route("exec/abc"), None);
    }

    #[test]
    fn websocket_ports_come_from_the_query() {
        assert_eq!(
            query_ports(Some("port=80,81&port=82"), &[1]),
            Ok(vec![80, 81, 82])
        );
        assert_eq!(query_ports(None, &[8080]), Ok(vec![8080]));
        assert!(query_ports(Some("port=x"), &[1]).is_err());
        assert!(query_ports(None, &[]).is_err());
    }
}
