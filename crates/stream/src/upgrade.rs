//! Which protocol to answer an HTTP/1.1 upgrade request with, as kubelet's
//! streaming server decides it.
//!
//! A request with `Upgrade: websocket` (and `Connection: upgrade`) gets
//! WebSocket with the first subprotocol it offers that the endpoint
//! serves (none offered: the plain binary channel protocol). Anything else
//! is SPDY: the first `X-Stream-Protocol-Version` the client lists that the
//! endpoint serves (none: 403 with `X-Accepted-Stream-Protocol-Versions`;
//! no header: 400), then `Upgrade: SPDY/3.1` is required (400).

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::channel::ExecVersion;
use crate::channel::portforward::PORT_FORWARD_PROTOCOL;
use crate::channel::wire::Encoding;

/// The SPDY protocol version header.
pub const PROTOCOL_VERSION_HEADER: &str = "x-stream-protocol-version";
/// The header listing what the server accepts, on a 403.
pub const ACCEPTED_VERSIONS_HEADER: &str = "x-accepted-stream-protocol-versions";

/// The endpoint the request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Exec or attach (remotecommand).
    Exec,
    /// Port-forward.
    PortForward,
}

/// What the stream over the upgraded connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// remotecommand of a version.
    Exec(ExecVersion),
    /// `portforward.k8s.io` (SPDY) or the WebSocket port channels.
    PortForward,
}

/// The chosen WebSocket subprotocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsProtocol {
    /// Its name (empty: the client offered none).
    pub name: &'static str,
    /// What runs inside.
    pub protocol: Protocol,
    /// Binary or base64 channel messages.
    pub encoding: Encoding,
}

impl WsProtocol {
    /// Whether channel 255 closes a channel (v5).
    pub fn close_signal(&self) -> bool {
        self.protocol == Protocol::Exec(ExecVersion::V5)
    }
}

/// The answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Upgrade to SPDY/3.1; send `101` with `headers`, then run a server
    /// [`crate::spdy::Session`].
    Spdy {
        /// The negotiated `X-Stream-Protocol-Version`.
        protocol: Protocol,
        /// `Connection`, `Upgrade`, `X-Stream-Protocol-Version`.
        headers: HeaderMap,
    },
    /// Upgrade to WebSocket; send `101` with `headers`, then run
    /// [`crate::ws::WsChannels`].
    WebSocket {
        /// The subprotocol chosen.
        subprotocol: WsProtocol,
        /// `Connection`, `Upgrade`, `Sec-WebSocket-Accept`, and
        /// `Sec-WebSocket-Protocol` unless none was offered.
        headers: HeaderMap,
    },
    /// Refuse with this status, these headers and the reason as the body.
    Refuse {
        /// 400 or 403.
        status: StatusCode,
        /// Why, for the body and the log.
        reason: String,
        /// `X-Accepted-Stream-Protocol-Versions` on a failed negotiation.
        headers: HeaderMap,
    },
}

impl Decision {
    /// The status to answer with: 101, or the refusal's.
    pub fn status(&self) -> StatusCode {
        match self {
            Decision::Refuse { status, .. } => *status,
            _ => StatusCode::SWITCHING_PROTOCOLS,
        }
    }
}

/// The SPDY protocols an endpoint serves, most preferred first.
pub fn spdy_protocols(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Exec => &[
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io",
        ],
        Endpoint::PortForward => &[PORT_FORWARD_PROTOCOL],
    }
}

/// The WebSocket subprotocols an endpoint serves (kubelet's, plus v5 for
/// exec). `""` is what a client that offers none gets.
pub fn ws_protocols(endpoint: Endpoint) -> Vec<WsProtocol> {
    use Encoding::{Base64, Binary};
    let exec = |name, version, encoding| WsProtocol {
        name,
        protocol: Protocol::Exec(version),
        encoding,
    };
    let pf = |name, encoding| WsProtocol {
        name,
        protocol: Protocol::PortForward,
        encoding,
    };
    match endpoint {
        Endpoint::Exec => vec![
            exec("v5.channel.k8s.io", ExecVersion::V5, Binary),
            exec("v4.channel.k8s.io", ExecVersion::V4, Binary),
            exec("v4.base64.channel.k8s.io", ExecVersion::V4, Base64),
            exec("channel.k8s.io", ExecVersion::V1, Binary),
            exec("base64.channel.k8s.io", ExecVersion::V1, Base64),
            exec("", ExecVersion::V1, Binary),
        ],
        Endpoint::PortForward => vec![
            pf("v4.channel.k8s.io", Binary),
            pf("v4.base64.channel.k8s.io", Base64),
            pf("", Binary),
        ],
    }
}

/// Decides how to answer an upgrade request to `endpoint`.
pub fn negotiate(endpoint: Endpoint, headers: &HeaderMap) -> Decision {
    if is_websocket(headers) {
        negotiate_ws(endpoint, headers)
    } else {
        negotiate_spdy(endpoint, headers)
    }
}

/// `Upgrade: websocket` and a `Connection` that has the `upgrade` token.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    upgrade.is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"))
        && tokens(headers, http::header::CONNECTION.as_str())
            .any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The comma-separated values of every instance of a header, trimmed.
fn tokens<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn refuse(status: StatusCode, reason: String) -> Decision {
    Decision::Refuse {
        status,
        reason,
        headers: HeaderMap::new(),
    }
}

fn negotiate_spdy(endpoint: Endpoint, headers: &HeaderMap) -> Decision {
    let served = spdy_protocols(endpoint);
    if headers.get(PROTOCOL_VERSION_HEADER).is_none() {
        let reason =
            "unable to upgrade: header X-Stream-Protocol-Version does not exist in request";
        return refuse(StatusCode::BAD_REQUEST, reason.into());
    }
    let offered: Vec<&str> = tokens(headers, PROTOCOL_VERSION_HEADER).collect();
    if offered.is_empty() {
        let reason =
            "unable to upgrade: header X-Stream-Protocol-Version contains no valid protocols";
        return refuse(StatusCode::BAD_REQUEST, reason.into());
    }
    let Some(chosen) = offered.iter().find(|p| served.contains(p)) else {
        let mut out = HeaderMap::new();
        for p in served {
            out.append(ACCEPTED_VERSIONS_HEADER, HeaderValue::from_static(p));
        }
        return Decision::Refuse {
            status: StatusCode::FORBIDDEN,
            reason: format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {served:?}"
            ),
            headers: out,
        };
    };
    let upgrade_ok = tokens(headers, http::header::CONNECTION.as_str())
        .any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(headers, http::header::UPGRADE.as_str())
            .any(|t| t.eq_ignore_ascii_case("spdy/3.1"));
    if !upgrade_ok {
        let reason = "unable to upgrade: missing upgrade headers in request (Connection: Upgrade, Upgrade: SPDY/3.1)";
        return refuse(StatusCode::BAD_REQUEST, reason.into());
    }
    let protocol = match ExecVersion::from_name(chosen) {
        Some(version) if endpoint == Endpoint::Exec => Protocol::Exec(version),
        _ => Protocol::PortForward,
    };
    let mut out = HeaderMap::new();
    out.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    out.insert(http::header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(value) = HeaderValue::from_str(chosen) {
        out.insert(PROTOCOL_VERSION_HEADER, value);
    }
    Decision::Spdy {
        protocol,
        headers: out,
    }
}

fn negotiate_ws(endpoint: Endpoint, headers: &HeaderMap) -> Decision {
    let version = headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version.map(str::trim) != Some("13") {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("unsupported WebSocket version {version:?}, not 13"),
        );
    }
    let Some(key) = headers.get(http::header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key".into());
    };
    let served = ws_protocols(endpoint);
    let mut offered: Vec<&str> =
        tokens(headers, http::header::SEC_WEBSOCKET_PROTOCOL.as_str()).collect();
    if offered.is_empty() {
        offered.push("");
    }
    let Some(chosen) = offered
        .iter()
        .find_map(|o| served.iter().find(|s| s.name == *o))
    else {
        let names: Vec<&str> = served
            .iter()
            .map(|s| s.name)
            .filter(|n| !n.is_empty())
            .collect();
        return refuse(
            StatusCode::FORBIDDEN,
            format!("requested protocol(s) are not supported: {offered:?}; supports {names:?}"),
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut out = HeaderMap::new();
    out.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    out.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        out.insert(http::header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if !chosen.name.is_empty() {
        out.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(chosen.name),
        );
    }
    Decision::WebSocket {
        subprotocol: chosen.clone(),
        headers: out,
    }
}
