//! Tests of the upgrade decision.

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::channel::ExecVersion;
use crate::channel::wire::Encoding;
use crate::upgrade::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

const SPDY: [(&str, &str); 2] = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];

fn spdy_with(version: &'static str) -> HeaderMap {
    let mut map = headers(&SPDY);
    map.append(PROTOCOL_VERSION_HEADER, HeaderValue::from_static(version));
    map
}

#[test]
fn spdy_takes_the_clients_first_protocol_the_server_serves() {
    let decision = negotiate(
        Endpoint::Exec,
        &spdy_with("v9.channel.k8s.io, v4.channel.k8s.io,v3.channel.k8s.io"),
    );
    let Decision::Spdy { protocol, headers } = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(protocol, Protocol::Exec(ExecVersion::V4));
    assert_eq!(headers["x-stream-protocol-version"], "v4.channel.k8s.io");
    assert_eq!(headers["upgrade"], "SPDY/3.1");
    assert_eq!(headers["connection"], "Upgrade");
    // Repeated headers count too, in order.
    let mut map = spdy_with("v2.channel.k8s.io");
    map.append(
        PROTOCOL_VERSION_HEADER,
        HeaderValue::from_static("v5.channel.k8s.io"),
    );
    assert!(matches!(
        negotiate(Endpoint::Exec, &map),
        Decision::Spdy {
            protocol: Protocol::Exec(ExecVersion::V2),
            ..
        }
    ));
    let pf = negotiate(Endpoint::PortForward, &spdy_with("portforward.k8s.io"));
    assert!(
        matches!(
            pf,
            Decision::Spdy {
                protocol: Protocol::PortForward,
                ..
            }
        ),
        "{pf:?}"
    );
}

#[test]
fn spdy_refusals_say_why() {
    let missing = negotiate(Endpoint::Exec, &headers(&SPDY));
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let empty = negotiate(Endpoint::Exec, &spdy_with(" , "));
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let Decision::Refuse {
        status,
        reason,
        headers,
    } = negotiate(Endpoint::PortForward, &spdy_with("v4.channel.k8s.io"))
    else {
        panic!("accepted")
    };
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(reason.contains("unable to negotiate protocol"), "{reason}");
    assert_eq!(headers[ACCEPTED_VERSIONS_HEADER], "portforward.k8s.io");
    let mut no_upgrade = HeaderMap::new();
    no_upgrade.insert(
        PROTOCOL_VERSION_HEADER,
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let Decision::Refuse { status, reason, .. } = negotiate(Endpoint::Exec, &no_upgrade) else {
        panic!("accepted")
    };
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reason.contains("missing upgrade headers"), "{reason}");
}

fn ws_with(protocols: Option<&'static str>) -> HeaderMap {
    let mut map = headers(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]);
    if let Some(p) = protocols {
        map.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    map
}

#[test]
fn websocket_takes_the_first_offered_subprotocol_served() {
    let decision = negotiate(
        Endpoint::Exec,
        &ws_with(Some(
            "v9.channel.k8s.io, v4.base64.channel.k8s.io, v5.channel.k8s.io",
        )),
    );
    let Decision::WebSocket {
        subprotocol,
        headers,
    } = decision
    else {
        panic!("{decision:?}")
    };
    assert_eq!(subprotocol.name, "v4.base64.channel.k8s.io");
    assert_eq!(subprotocol.encoding, Encoding::Base64);
    assert!(!subprotocol.close_signal());
    // RFC 6455's example key and accept value.
    assert_eq!(
        headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(
        headers["sec-websocket-protocol"],
        "v4.base64.channel.k8s.io"
    );
    assert_eq!(headers["upgrade"], "websocket");
    let v5 = negotiate(Endpoint::Exec, &ws_with(Some("v5.channel.k8s.io")));
    assert!(matches!(&v5, Decision::WebSocket { subprotocol, .. } if subprotocol.close_signal()));
    // None offered: the plain binary protocol, and no protocol header back.
    let Decision::WebSocket {
        subprotocol,
        headers,
    } = negotiate(Endpoint::PortForward, &ws_with(None))
    else {
        panic!("refused")
    };
    assert_eq!(
        (subprotocol.name, subprotocol.protocol),
        ("", Protocol::PortForward)
    );
    assert!(!headers.contains_key("sec-websocket-protocol"));
}

#[test]
fn websocket_refusals_say_why() {
    let unknown = negotiate(Endpoint::PortForward, &ws_with(Some("v5.channel.k8s.io")));
    assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
    let mut old = ws_with(None);
    old.insert("sec-websocket-version", HeaderValue::from_static("8"));
    assert_eq!(
        negotiate(Endpoint::Exec, &old).status(),
        StatusCode::BAD_REQUEST
    );
    let mut keyless = ws_with(None);
    keyless.remove("sec-websocket-key");
    assert_eq!(
        negotiate(Endpoint::Exec, &keyless).status(),
        StatusCode::BAD_REQUEST
    );
    // Upgrade: websocket without the Connection token is not WebSocket; as
    // SPDY it lacks its headers.
    let mut no_token = ws_with(None);
    no_token.insert("connection", HeaderValue::from_static("keep-alive"));
    assert!(!is_websocket(&no_token));
    assert_eq!(
        negotiate(Endpoint::Exec, &no_token).status(),
        StatusCode::BAD_REQUEST
    );
}
