//! End-to-end exec conversations: over WebSocket with every exec
//! subprotocol (a tungstenite client against negotiate + WsChannels), and
//! over SPDY with the channel types.

use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::channel::wire::{self, ChannelMessage, Encoding};
use crate::channel::{ExecVersion, ExitStatus, StreamType, TerminalSize};
use crate::spdy::{Config, Headers, Role, Session};
use crate::upgrade::{Decision, Endpoint, Protocol, negotiate, ws_protocols};
use crate::ws::WsChannels;

const WAIT: Duration = Duration::from_secs(5);

/// Reads an HTTP request head and answers it with negotiate's decision.
async fn serve_upgrade(io: &mut DuplexStream) -> Decision {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.expect("request");
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).expect("utf-8");
    let mut headers = HeaderMap::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("a header");
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).expect("name");
        headers.append(name, value.trim().parse().expect("value"));
    }
    let decision = negotiate(Endpoint::Exec, &headers);
    let mut response = format!("HTTP/1.1 {}\r\n", decision.status());
    if let Decision::WebSocket { headers, .. } | Decision::Spdy { headers, .. } = &decision {
        for (name, value) in headers {
            response.push_str(&format!("{name}: {}\r\n", value.to_str().expect("ascii")));
        }
    }
    response.push_str("\r\n");
    io.write_all(response.as_bytes()).await.expect("response");
    decision
}

async fn ws_server(mut io: DuplexStream) {
    let Decision::WebSocket { subprotocol, .. } = serve_upgrade(&mut io).await else {
        panic!("not a WebSocket decision")
    };
    let Protocol::Exec(version) = subprotocol.protocol else {
        panic!("not exec")
    };
    let channels = WsChannels::server(io, subprotocol.clone()).await;
    let (mut tx, mut rx) = channels.split();
    let mut stdin = Vec::new();
    loop {
        match rx.recv().await.expect("a message") {
            Some(ChannelMessage::Data { channel: 0, data }) => {
                stdin.extend_from_slice(&data);
                if !subprotocol.close_signal() && stdin.ends_with(b"\n") {
                    break;
                }
            }
            Some(ChannelMessage::Close { channel: 0 }) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    tx.send(StreamType::Stdout.channel(), &stdin)
        .await
        .expect("stdout");
    tx.send(StreamType::Stderr.channel(), b"err")
        .await
        .expect("stderr");
    let status = ExitStatus::from_code(7, "exit status 7");
    tx.send(
        StreamType::Error.channel(),
        &version.error_stream_bytes(&status),
    )
    .await
    .expect("status");
    tx.close().await.expect("close");
}

#[tokio::test]
async fn exec_over_websocket_with_every_subprotocol() {
    for protocol in ws_protocols(Endpoint::Exec) {
        let (client_io, server_io) = duplex(64 * 1024);
        let server = tokio::spawn(ws_server(server_io));
        let mut request = "ws://localhost/exec"
            .into_client_request()
            .expect("request");
        if !protocol.name.is_empty() {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                protocol.name.parse().expect("value"),
            );
        }
        // tungstenite checks the accept key and the subprotocol we answer.
        let (mut ws, response) = tokio_tungstenite::client_async(request, client_io)
            .await
            .expect("handshake");
        let answered = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().expect("ascii"));
        assert_eq!(answered.unwrap_or(""), protocol.name);
        let encoding = protocol.encoding;
        let send = |channel: u8, data: &[u8]| match wire::encode(encoding, channel, data) {
            wire::Payload::Binary(b) => Message::binary(b),
            wire::Payload::Text(t) => Message::text(t),
        };
        use futures::{SinkExt, StreamExt};
        ws.send(send(0, b"hello\n")).await.expect("stdin");
        if protocol.close_signal() {
            ws.send(Message::binary(vec![255, 0]))
                .await
                .expect("close stdin");
        }
        let mut got: [Vec<u8>; 4] = Default::default();
        while let Some(message) = timeout(WAIT, ws.next()).await.expect("in time") {
            let payload = match message.expect("message") {
                Message::Binary(b) => {
                    assert_eq!(encoding, Encoding::Binary, "{}", protocol.name);
                    b.to_vec()
                }
                Message::Text(t) => {
                    assert_eq!(encoding, Encoding::Base64, "{}", protocol.name);
                    t.as_bytes().to_vec()
                }
                Message::Close(_) => break,
                _ => continue,
            };
            if let Some(ChannelMessage::Data { channel, data }) =
                wire::decode(encoding, false, &payload).expect("valid")
            {
                got[usize::from(channel)].extend_from_slice(&data);
            }
        }
        assert_eq!(got[1], b"hello\n", "{}", protocol.name);
        assert_eq!(got[2], b"err");
        let Protocol::Exec(version) = protocol.protocol else {
            panic!("exec")
        };
        if version.status_json() {
            let status = ExitStatus::from_json(&got[3]).expect("a status");
            assert!(
                matches!(status, ExitStatus::ExitCode { code: 7, .. }),
                "{status:?}"
            );
        } else {
            assert!(String::from_utf8_lossy(&got[3]).contains("exit status 7"));
        }
        timeout(WAIT, server)
            .await
            .expect("in time")
            .expect("server");
    }
}

#[tokio::test]
async fn exec_over_spdy_after_the_upgrade() {
    let (mut client_io, mut server_io) = duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let Decision::Spdy {
            protocol: Protocol::Exec(version),
            ..
        } = serve_upgrade(&mut server_io).await
        else {
            panic!("not SPDY exec")
        };
        assert_eq!(version, ExecVersion::V4);
        let session = Session::spawn(server_io, Role::Server, Config::default());
        let mut streams = std::collections::HashMap::new();
        for _ in 0..version.expected_streams(true, true, false, true) {
            let stream = timeout(WAIT, session.accept())
                .await
                .expect("in time")
                .expect("stream");
            let kind = StreamType::from_header(stream.headers().get("streamtype").expect("typed"))
                .expect("known");
            streams.insert(kind, stream);
        }
        let mut resize = streams.remove(&StreamType::Resize).expect("resize");
        let mut decoder = crate::channel::ResizeDecoder::default();
        let chunk = resize.recv.chunk().await.expect("resize").expect("data");
        let sizes = decoder.push(&chunk).expect("sizes");
        let mut stdin = streams.remove(&StreamType::Stdin).expect("stdin");
        let input = stdin.recv.read_to_end(1024).await.expect("stdin");
        let mut stdout = streams.remove(&StreamType::Stdout).expect("stdout");
        stdout.send.write_all(&input).await.expect("stdout");
        stdout.send.finish().expect("fin");
        let mut error = streams.remove(&StreamType::Error).expect("error");
        let status = ExitStatus::from_code(3, "exit status 3");
        error
            .send
            .write_all(&version.error_stream_bytes(&status))
            .await
            .expect("status");
        error.send.finish().expect("fin");
        sizes
    });
    let request = "GET /exec/abc HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n";
    client_io
        .write_all(request.as_bytes())
        .await
        .expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(client_io.read_u8().await.expect("response"));
    }
    let head = String::from_utf8(head).expect("utf-8");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    let client = Session::spawn(client_io, Role::Client, Config::default());
    let typed = |t: StreamType| Headers::new().with("streamType", t.header_value());
    let mut error = client
        .open(typed(StreamType::Error), true)
        .await
        .expect("error");
    let mut stdin = client
        .open(typed(StreamType::Stdin), false)
        .await
        .expect("stdin");
    let mut stdout = client
        .open(typed(StreamType::Stdout), true)
        .await
        .expect("stdout");
    let mut resize = client
        .open(typed(StreamType::Resize), false)
        .await
        .expect("resize");
    resize
        .send
        .write_all(
            &TerminalSize {
                width: 100,
                height: 30,
            }
            .to_json(),
        )
        .await
        .expect("resize");
    stdin.send.write_all(b"input").await.expect("stdin");
    stdin.send.finish().expect("fin");
    assert_eq!(
        stdout.recv.read_to_end(1024).await.expect("stdout"),
        b"input"
    );
    let status = ExitStatus::from_json(&error.recv.read_to_end(4096).await.expect("status"))
        .expect("parses");
    assert!(
        matches!(status, ExitStatus::ExitCode { code: 3, .. }),
        "{status:?}"
    );
    let sizes = timeout(WAIT, server)
        .await
        .expect("in time")
        .expect("server");
    assert_eq!(
        sizes,
        vec![TerminalSize {
            width: 100,
            height: 30
        }]
    );
}
