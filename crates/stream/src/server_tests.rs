//! The streaming server end to end over loopback TCP: a fake backend, the
//! real server, the crate's client (SPDY and WebSocket) and tungstenite
//! as a second WebSocket client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use crate::backend::{
    AttachRequest, Backend, Connection, ExecRequest, Io, PortForwardRequest, Request,
};
use crate::channel::{ExitStatus, TerminalSize};
use crate::client::{self, ClientError, ExecOptions, PortForwarder, Transport};
use crate::server::{ServerConfig, StreamServer, Urls};

pub(crate) const WAIT: Duration = Duration::from_secs(10);
const FLOOD: usize = 64 << 20;

/// Sets its flag when dropped: shows a backend future was dropped.
struct OnDrop(Arc<AtomicBool>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs commands by name; records calls, drops and bytes written.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) calls: AtomicUsize,
    dropped: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    flood_done: AtomicBool,
    seen: Mutex<Vec<String>>,
}

async fn read_all(r: &mut Option<crate::backend::Reader>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = r {
        r.read_to_end(&mut out).await.expect("stdin");
    }
    out
}

async fn write(w: &mut Option<crate::backend::Writer>, bytes: &[u8]) {
    if let Some(w) = w {
        w.write_all(bytes).await.expect("write");
    }
}

impl Fake {
    async fn run(&self, cmd: &[String], mut io: Io) -> ExitStatus {
        let arg = cmd.get(1).cloned().unwrap_or_default();
        match cmd.first().map(String::as_str) {
            Some("echo") => {
                let input = read_all(&mut io.stdin).await;
                write(&mut io.stdout, &input).await;
                write(&mut io.stderr, b"err\n").await;
                ExitStatus::from_code(arg.parse().unwrap_or(0), "exit")
            }
            Some("hello") => {
                write(&mut io.stdout, b"hi").await;
                ExitStatus::from_code(arg.parse().unwrap_or(0), "exit")
            }
            Some("tty") => {
                let size = match &mut io.resize {
                    Some(rx) => rx.recv().await,
                    None => None,
                };
                let text = format!("stderr={} size={size:?}", io.stderr.is_some());
                write(&mut io.stdout, text.as_bytes()).await;
                ExitStatus::Success
            }
            Some("sleep") => {
                let _flag = OnDrop(self.dropped.clone());
                futures::future::pending::<()>().await;
                ExitStatus::Success
            }
            Some("flood") => self.flood(io).await,
            _ => ExitStatus::Failure {
                message: "no such command".into(),
                reason: None,
            },
        }
    }

    async fn flood(&self, mut io: Io) -> ExitStatus {
        let chunk = vec![b'x'; 32 * 1024];
        let Some(out) = &mut io.stdout else {
            return ExitStatus::Success;
        };
        while self.written.load(Ordering::SeqCst) < FLOOD {
            if out.write_all(&chunk).await.is_err() {
                return ExitStatus::Success;
            }
            self.written.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        self.flood_done.store(true, Ordering::SeqCst);
        ExitStatus::Success
    }
}

#[async_trait::async_trait]
impl Backend for Fake {
    async fn exec(&self, req: ExecRequest, io: Io) -> ExitStatus {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.run(&req.cmd, io).await
    }

    async fn attach(&self, req: AttachRequest, mut io: Io) -> ExitStatus {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let input = read_all(&mut io.stdin).await;
        write(&mut io.stdout, format!("{}:", req.container_id).as_bytes()).await;
        write(&mut io.stdout, &input).await;
        ExitStatus::Success
    }

    async fn connect(&self, pod: &str, port: u16) -> std::io::Result<Connection> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen
            .lock()
            .expect("lock")
            .push(format!("{pod}:{port}"));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(Box::pin(tcp))
    }
}

pub(crate) struct Harness {
    pub(crate) urls: Urls,
    pub(crate) fake: Arc<Fake>,
    pub(crate) stop: CancellationToken,
    pub(crate) served: JoinHandle<()>,
}

pub(crate) async fn start(config: ServerConfig) -> Harness {
    let fake = Arc::new(Fake::default());
    let (server, addr) = StreamServer::bind(config, fake.clone())
        .await
        .expect("binds");
    assert!(addr.ip().is_loopback());
    let urls = server.urls();
    let stop = CancellationToken::new();
    let served = tokio::spawn(server.serve(stop.clone()));
    Harness {
        urls,
        fake,
        stop,
        served,
    }
}

pub(crate) fn exec_request(cmd: &[&str], stdin: bool, tty: bool) -> Request {
    Request::Exec(ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: true,
    })
}

pub(crate) fn options(stdin: bool, tty: bool) -> ExecOptions {
    ExecOptions {
        stdin,
        stdout: true,
        stderr: true,
        tty,
    }
}

pub(crate) async fn read_to_end(r: Option<crate::backend::Reader>) -> String {
    let mut out = Vec::new();
    let mut r = r.expect("a stream");
    timeout(WAIT, r.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("reads");
    String::from_utf8(out).expect("utf-8")
}

/// Echo with stdin: output until stdin's EOF, stderr, the exit code.
async fn echo(transport: Transport, code: i32) {
    let h = start(ServerConfig::default()).await;
    let code_arg = code.to_string();
    let url = h
        .urls
        .url(&exec_request(&["echo", &code_arg], true, false))
        .expect("url");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/exec/"),
        "{url}"
    );
    let mut session = client::exec(&url, options(true, false), transport)
        .await
        .expect("exec");
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"hello, stdin").await.expect("writes");
    stdin.shutdown().await.expect("EOF");
    let stdout = tokio::spawn(read_to_end(session.stdout.take()));
    let stderr = tokio::spawn(read_to_end(session.stderr.take()));
    let status = timeout(WAIT, session.exit.wait()).await.expect("in time");
    assert_eq!(stdout.await.expect("stdout"), "hello, stdin");
    assert_eq!(stderr.await.expect("stderr"), "err\n");
    assert_eq!(status.expect("status"), ExitStatus::from_code(code, "exit"));
    h.stop.cancel();
    timeout(WAIT, h.served)
        .await
        .expect("stops")
        .expect("joins");
}

#[tokio::test]
async fn spdy_exec_echoes_stdin_until_eof_and_exits_zero() {
    echo(Transport::Spdy, 0).await;
}

#[tokio::test]
async fn spdy_exec_reports_a_non_zero_exit_code() {
    echo(Transport::Spdy, 3).await;
}

#[tokio::test]
async fn websocket_exec_echoes_stdin_until_eof_and_exits_zero() {
    echo(Transport::WebSocket, 0).await;
}

#[tokio::test]
async fn websocket_exec_reports_a_non_zero_exit_code() {
    echo(Transport::WebSocket, 42).await;
}

/// A tty: no stderr stream, and the client's resize reaches the backend.
async fn tty(transport: Transport) {
    let h = start(ServerConfig::default()).await;
    let url = h
        .urls
        .url(&exec_request(&["tty"], false, true))
        .expect("url");
    let session = client::exec(&url, options(false, true), transport)
        .await
        .expect("exec");
    assert!(session.stderr.is_none());
    let size = TerminalSize {
        width: 80,
        height: 24,
    };
    let resize = session.resize.clone().expect("resize");
    resize.send(size).await.expect("sent");
    let stdout = read_to_end(session.stdout).await;
    assert_eq!(stdout, format!("stderr=false size={:?}", Some(size)));
    let status = timeout(WAIT, session.exit.wait()).await.expect("in time");
    assert_eq!(status.expect("status"), ExitStatus::Success);
}

#[tokio::test]
async fn spdy_tty_has_no_stderr_and_delivers_resizes() {
    tty(Transport::Spdy).await;
}

#[tokio::test]
async fn websocket_tty_has_no_stderr_and_delivers_resizes() {
    tty(Transport::WebSocket).await;
}

#[tokio::test]
async fn spdy_attach_joins_the_container() {
    let h = start(ServerConfig::default()).await;
    let request = Request::Attach(AttachRequest {
        container_id: "c9".into(),
        tty: false,
        stdin: true,
        stdout: true,
        stderr: false,
    });
    let url = h.urls.url(&request).expect("url");
    assert!(url.contains("/attach/"), "{url}");
    let opts = ExecOptions {
        stderr: false,
        ..options(true, false)
    };
    let mut session = client::exec(&url, opts, Transport::Spdy)
        .await
        .expect("attach");
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"typed").await.expect("writes");
    stdin.shutdown().await.expect("EOF");
    assert_eq!(read_to_end(session.stdout.take()).await, "c9:typed");
    let status = timeout(WAIT, session.wait()).await.expect("in time");
    assert_eq!(status.expect("status"), ExitStatus::Success);
}

/// tungstenite speaking v4 by hand: stdout on channel 1, the v4 JSON
/// status on channel 3, then the server closes.
#[tokio::test]
async fn tungstenite_v4_client_gets_output_and_the_json_status() {
    let h = start(ServerConfig::default()).await;
    let url = h
        .urls
        .url(&exec_request(&["hello", "7"], false, false))
        .expect("url");
    let mut request = url
        .replace("http://", "ws://")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io".parse().expect("value"),
    );
    let mut ws = ws_connect(request).await;
    let mut stdout = Vec::new();
    let mut status = None;
    while let Some(message) = timeout(WAIT, ws.next()).await.expect("in time") {
        let Message::Binary(bytes) = message.expect("message") else {
            continue;
        };
        match bytes.split_first() {
            Some((1, data)) => stdout.extend_from_slice(data),
            Some((3, data)) => status = Some(ExitStatus::from_json(data).expect("JSON")),
            _ => {}
        }
    }
    assert_eq!(stdout, b"hi");
    assert_eq!(status, Some(ExitStatus::from_code(7, "exit")));
}

/// tungstenite's handshake over a TCP connection of our own.
async fn ws_connect(request: http::Request<()>) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let authority = request.uri().authority().expect("authority").to_string();
    let tcp = TcpStream::connect(authority).await.expect("connects");
    let (ws, response) = timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("in time")
        .expect("handshake");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );
    ws
}

fn refused(result: Result<impl Sized, ClientError>) -> (StatusCode, String) {
    match result {
        Err(ClientError::Refused { status, body }) => (status, body),
        Err(other) => panic!("not refused: {other}"),
        Ok(_) => panic!("not refused"),
    }
}

#[tokio::test]
async fn unknown_reused_and_expired_tokens_get_404_and_call_nothing() {
    let config = ServerConfig {
        token_ttl: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let h = start(config).await;
    let url = h
        .urls
        .url(&exec_request(&["hello"], false, false))
        .expect("url");
    let base = url.rsplit_once('/').expect("a token").0.to_owned();
    let unknown = format!("{base}/AAAA");
    let unknown = client::exec(&unknown, options(false, false), Transport::Spdy);
    let (status, body) = refused(unknown.await);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("unknown or expired token"), "{body}");

    let session = client::exec(&url, options(false, false), Transport::Spdy)
        .await
        .expect("first use");
    timeout(WAIT, session.wait())
        .await
        .expect("in time")
        .expect("status");
    let again = client::exec(&url, options(false, false), Transport::WebSocket);
    assert_eq!(refused(again.await).0, StatusCode::NOT_FOUND);

    let late = h
        .urls
        .url(&exec_request(&["hello"], false, false))
        .expect("url");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired = client::exec(&late, options(false, false), Transport::Spdy);
    assert_eq!(refused(expired.await).0, StatusCode::NOT_FOUND);

    let pf = Request::PortForward(PortForwardRequest {
        pod_sandbox_id: "p".into(),
        ports: vec![1],
    });
    let wrong = h
        .urls
        .url(&pf)
        .expect("url")
        .replace("/portforward/", "/exec/");
    let wrong = client::exec(&wrong, options(false, false), Transport::Spdy);
    assert_eq!(refused(wrong.await).0, StatusCode::NOT_FOUND);
    assert_eq!(
        h.fake.calls.load(Ordering::SeqCst),
        1,
        "only the first use ran"
    );
}

#[tokio::test]
async fn an_unknown_protocol_gets_403_and_calls_nothing() {
    let h = start(ServerConfig::default()).await;
    let url = h
        .urls
        .url(&exec_request(&["hello"], false, false))
        .expect("url");
    let headers = [
        ("connection", "Upgrade".to_owned()),
        ("upgrade", "SPDY/3.1".to_owned()),
        ("x-stream-protocol-version", "v9.bogus.k8s.io".to_owned()),
    ];
    let (status, body) = refused(client::upgrade(&url, Method::POST, &headers, None).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("unable to negotiate protocol"), "{body}");
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
}

/// Waits until `flag` is set, or fails after `bound`.
async fn until(flag: &AtomicBool, bound: Duration) {
    timeout(bound, async {
        while !flag.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the backend future was dropped in time");
}

async fn disconnect(transport: Transport) {
    let h = start(ServerConfig::default()).await;
    let url = h
        .urls
        .url(&exec_request(&["sleep"], true, false))
        .expect("url");
    let session = client::exec(&url, options(true, false), transport)
        .await
        .expect("exec");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1, "running");
    assert!(!h.fake.dropped.load(Ordering::SeqCst), "still running");
    drop(session);
    until(&h.fake.dropped, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_spdy_client_that_disconnects_drops_the_backend_future() {
    disconnect(Transport::Spdy).await;
}

#[tokio::test]
async fn a_websocket_client_that_disconnects_drops_the_backend_future() {
    disconnect(Transport::WebSocket).await;
}

#[tokio::test]
async fn shutdown_ends_running_sessions() {
    let h = start(ServerConfig::default()).await;
    let url = h
        .urls
        .url(&exec_request(&["sleep"], false, false))
        .expect("url");
    let _session = client::exec(&url, options(false, false), Transport::Spdy)
        .await
        .expect("exec");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!h.fake.dropped.load(Ordering::SeqCst));
    h.stop.cancel();
    timeout(WAIT, h.served)
        .await
        .expect("stops")
        .expect("joins");
    assert!(h.fake.dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn an_idle_session_is_ended() {
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let h = start(config).await;
    let url = h
        .urls
        .url(&exec_request(&["sleep"], false, false))
        .expect("url");
    let session = client::exec(&url, options(false, false), Transport::Spdy)
        .await
        .expect("exec");
    until(&h.fake.dropped, Duration::from_secs(3)).await;
    let status = timeout(WAIT, session.wait()).await.expect("in time");
    assert!(status.is_err(), "no status after an idle end: {status:?}");
}

#[tokio::test]
async fn a_client_that_opens_no_streams_is_dropped_after_the_timeout() {
    let config = ServerConfig {
        stream_creation_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let h = start(config).await;
    let url = h
        .urls
        .url(&exec_request(&["hello"], false, false))
        .expect("url");
    let headers = [
        ("connection", "Upgrade".to_owned()),
        ("upgrade", "SPDY/3.1".to_owned()),
        ("x-stream-protocol-version", "v4.channel.k8s.io".to_owned()),
    ];
    let up = client::upgrade(&url, Method::POST, &headers, None)
        .await
        .expect("101");
    let session = crate::spdy::Session::spawn(
        up.io,
        crate::spdy::Role::Client,
        crate::spdy::Config::default(),
    );
    timeout(Duration::from_secs(3), session.closed())
        .await
        .expect("closed by the server");
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_client_that_never_reads_blocks_the_backends_writer() {
    let h = start(ServerConfig::default()).await;
    let url = h
        .urls
        .url(&exec_request(&["flood"], false, false))
        .expect("url");
    let session = client::exec(&url, options(false, false), Transport::Spdy)
        .await
        .expect("exec");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = h.fake.written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = h.fake.written.load(Ordering::SeqCst);
    assert!(first > 0, "the backend wrote something");
    assert_eq!(first, second, "the writer is blocked");
    assert!(second < 16 << 20, "{second} bytes buffered");
    assert!(!h.fake.flood_done.load(Ordering::SeqCst));
    // Reading lets it finish.
    let mut stdout = session.stdout.expect("stdout");
    let mut sink = tokio::io::sink();
    let copied = timeout(WAIT, tokio::io::copy(&mut stdout, &mut sink)).await;
    assert_eq!(copied.expect("in time").expect("copies"), FLOOD as u64);
    assert!(h.fake.flood_done.load(Ordering::SeqCst));
}

#[tokio::test]
async fn too_many_sessions_get_503_and_keep_their_token() {
    let config = ServerConfig {
        max_sessions: 1,
        ..ServerConfig::default()
    };
    let h = start(config).await;
    let first = h
        .urls
        .url(&exec_request(&["sleep"], false, false))
        .expect("url");
    let second = h
        .urls
        .url(&exec_request(&["hello"], false, false))
        .expect("url");
    let running = client::exec(&first, options(false, false), Transport::Spdy)
        .await
        .expect("first");
    let (status, _) = refused(client::exec(&second, options(false, false), Transport::Spdy).await);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    drop(running);
    until(&h.fake.dropped, Duration::from_secs(2)).await;
    // The permit goes with the session's task, just after the drop.
    let session = timeout(WAIT, async {
        loop {
            match client::exec(&second, options(false, false), Transport::Spdy).await {
                Err(ClientError::Refused { status, .. })
                    if status == StatusCode::SERVICE_UNAVAILABLE =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other.expect("the token still works"),
            }
        }
    })
    .await
    .expect("in time");
    assert_eq!(session.wait().await.expect("status"), ExitStatus::Success);
}

/// A TCP echo server on loopback.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

fn pf_request(ports: &[u16]) -> Request {
    Request::PortForward(PortForwardRequest {
        pod_sandbox_id: "pod-1".into(),
        ports: ports.to_vec(),
    })
}

/// Writes `data` and reads back as much, concurrently.
async fn round_trip<S>(stream: S, data: &[u8]) -> Vec<u8>
where
    S: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let sent = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.expect("writes");
        w.shutdown().await.expect("shuts");
        w
    });
    let mut back = Vec::new();
    timeout(WAIT, r.read_to_end(&mut back))
        .await
        .expect("in time")
        .expect("reads");
    drop(writer.await.expect("writer"));
    back
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test]
async fn port_forward_carries_a_mebibyte_both_ways() {
    let h = start(ServerConfig::default()).await;
    let port = echo_server().await;
    let url = h.urls.url(&pf_request(&[port])).expect("url");
    let forwarded = client::port_forward(&url, port).await.expect("forwards");
    let data = pattern(1 << 20, 0);
    let back = round_trip(forwarded, &data).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs");
    assert_eq!(
        *h.fake.seen.lock().expect("lock"),
        vec![format!("pod-1:{port}")]
    );
}

#[tokio::test]
async fn port_forward_serves_two_pairs_at_once() {
    let h = start(ServerConfig::default()).await;
    let port = echo_server().await;
    let url = h.urls.url(&pf_request(&[port])).expect("url");
    let forwarder = PortForwarder::open(&url).await.expect("session");
    let a = forwarder.connect(port).await.expect("a");
    let b = forwarder.connect(port).await.expect("b");
    let (da, db) = (pattern(300_000, 1), pattern(200_000, 2));
    let (ba, bb) = tokio::join!(round_trip(a, &da), round_trip(b, &db));
    assert!(ba == da && bb == db, "each pair gets its own bytes back");
    assert_eq!(h.fake.seen.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn port_forward_to_a_closed_port_says_why_on_the_error_stream() {
    let h = start(ServerConfig::default()).await;
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        listener.local_addr().expect("addr").port()
    };
    let url = h.urls.url(&pf_request(&[closed])).expect("url");
    let mut forwarded = client::port_forward(&url, closed).await.expect("forwards");
    let message = timeout(WAIT, forwarded.error()).await.expect("in time");
    let message = message.expect("reads").expect("a message");
    let expected = format!("error forwarding port {closed} to pod pod-1: ");
    assert!(message.starts_with(&expected), "{message}");
    let mut rest = Vec::new();
    let read = timeout(WAIT, forwarded.read_to_end(&mut rest)).await;
    assert_eq!(read.expect("in time").expect("EOF"), 0);
}

#[tokio::test]
async fn websocket_port_forward_prefixes_channels_and_echoes() {
    let h = start(ServerConfig::default()).await;
    let port = echo_server().await;
    let url = h.urls.url(&pf_request(&[1])).expect("url");
    let ws_url = format!("{}?port={port}", url.replace("http://", "ws://"));
    let mut request = ws_url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io".parse().expect("value"),
    );
    let mut ws = ws_connect(request).await;
    let mut prefixes = Vec::new();
    while prefixes.len() < 2 {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("in time")
            .expect("open");
        if let Message::Binary(bytes) = message.expect("message") {
            prefixes.push(bytes.to_vec());
        }
    }
    let le = port.to_le_bytes();
    prefixes.sort();
    assert_eq!(prefixes, vec![vec![0, le[0], le[1]], vec![1, le[0], le[1]]]);
    ws.send(Message::binary(b"\x00ping".to_vec()))
        .await
        .expect("sends");
    let mut echoed = Vec::new();
    while echoed.len() < 4 {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("in time")
            .expect("open");
        if let Message::Binary(bytes) = message.expect("message") {
            assert_eq!(bytes.first(), Some(&0), "data channel");
            echoed.extend_from_slice(&bytes[1..]);
        }
    }
    assert_eq!(echoed, b"ping");
    assert_eq!(
        *h.fake.seen.lock().expect("lock"),
        vec![format!("pod-1:{port}")]
    );
}

#[tokio::test]
async fn urls_of_a_wildcard_bind_carry_a_usable_address() {
    let config = ServerConfig {
        addr: "0.0.0.0:0".parse::<SocketAddr>().expect("addr"),
        ..ServerConfig::default()
    };
    let fake = Arc::new(Fake::default());
    let (server, addr) = StreamServer::bind(config, fake).await.expect("binds");
    let url = server.url(&pf_request(&[1])).expect("url");
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{}/portforward/", addr.port())),
        "{url}"
    );
}
