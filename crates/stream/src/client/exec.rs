//! The exec (and attach) client: opens the streams (SPDY) or channels
//! (WebSocket) the options ask for and hands them out as tokio I/O; the
//! error stream becomes the [`Exit`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use super::{ClientError, ClientTls, Transport, upgrade};
use crate::backend::{Reader, Writer};
use crate::channel::wire::ChannelMessage;
use crate::channel::{ExecVersion, ExitStatus, STREAM_TYPE_HEADER, StreamType, TerminalSize};
use crate::spdy::{self, Headers, RecvHalf, Role, Session};
use crate::upgrade::{Endpoint, PROTOCOL_VERSION_HEADER, Protocol, WsProtocol, ws_protocols};
use crate::ws::{WsChannels, WsReceiver};
use crate::wsio::{self, ChannelWriter, Out};

/// The most bytes the error stream may carry.
const STATUS_LIMIT: usize = 64 * 1024;
/// Bytes of output buffered per stream (WebSocket).
const OUTPUT_PIPE: usize = 64 * 1024;

/// What the exec asks for; must match the request the URL was made for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A running exec: the process' streams (`None` where not asked for) and
/// its end.
pub struct ClientSession {
    /// Shut it down for the process' EOF (SPDY; WebSocket v5).
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    /// Terminal sizes (tty only).
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// The status; owns the session (dropping it ends the session).
    pub exit: Exit,
}

impl ClientSession {
    /// Drops the streams and waits for the status.
    pub async fn wait(self) -> Result<ExitStatus, ClientError> {
        self.exit.wait().await
    }
}

/// How the exec ended, once the server says it.
pub struct Exit {
    status: oneshot::Receiver<Result<ExitStatus, ClientError>>,
    session: Option<Session>,
    _tasks: JoinSet<()>,
}

impl Exit {
    /// Waits for the status on the error stream.
    pub async fn wait(mut self) -> Result<ExitStatus, ClientError> {
        let status = (&mut self.status).await;
        status.unwrap_or(Err(ClientError::NoStatus))
    }
}

impl Drop for Exit {
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            session.close();
        }
    }
}

/// Reads an error stream's bytes as `version` writes them.
fn parse_status(version: ExecVersion, bytes: &[u8]) -> Result<ExitStatus, ClientError> {
    if bytes.is_empty() {
        return Ok(ExitStatus::Success);
    }
    if version.status_json() {
        return Ok(ExitStatus::from_json(bytes)?);
    }
    Ok(ExitStatus::Failure {
        message: String::from_utf8_lossy(bytes).into_owned(),
        reason: None,
    })
}

/// Starts an exec (or attach) at an `http://` `url`.
pub async fn exec(
    url: &str,
    options: ExecOptions,
    transport: Transport,
) -> Result<ClientSession, ClientError> {
    exec_with(url, options, transport, None).await
}

/// Starts an exec (or attach) at `url`, `https://` ones over TLS with `tls`.
pub async fn exec_tls(
    url: &str,
    options: ExecOptions,
    transport: Transport,
    tls: &ClientTls,
) -> Result<ClientSession, ClientError> {
    exec_with(url, options, transport, Some(tls)).await
}

async fn exec_with(
    url: &str,
    options: ExecOptions,
    transport: Transport,
    tls: Option<&ClientTls>,
) -> Result<ClientSession, ClientError> {
    match transport {
        Transport::Spdy => spdy_exec(url, options, tls).await,
        Transport::WebSocket => ws_exec(url, options, tls).await,
    }
}

async fn spdy_exec(
    url: &str,
    options: ExecOptions,
    tls: Option<&ClientTls>,
) -> Result<ClientSession, ClientError> {
    let offered = [ExecVersion::V5, ExecVersion::V4, ExecVersion::V3];
    let names: Vec<&str> = offered.iter().map(|v| v.name()).collect();
    let headers = [
        ("connection", "Upgrade".to_owned()),
        ("upgrade", "SPDY/3.1".to_owned()),
        (PROTOCOL_VERSION_HEADER, names.join(", ")),
    ];
    let up = upgrade(url, Method::POST, &headers, tls).await?;
    let chosen = up.headers.get(PROTOCOL_VERSION_HEADER);
    let version = chosen
        .and_then(|v| v.to_str().ok())
        .and_then(ExecVersion::from_name)
        .ok_or_else(|| ClientError::Upgrade(format!("protocol {chosen:?}")))?;
    let session = Session::spawn(up.io, Role::Client, spdy::Config::default());
    let open = |kind: StreamType, fin: bool| {
        let headers = Headers::new().with(STREAM_TYPE_HEADER, kind.header_value());
        session.open(headers, fin)
    };
    let error = open(StreamType::Error, true).await?;
    let stdin = maybe(options.stdin, open(StreamType::Stdin, false)).await?;
    let stdout = maybe(options.stdout, open(StreamType::Stdout, true)).await?;
    let stderr_wanted = options.stderr && !options.tty;
    let stderr = maybe(stderr_wanted, open(StreamType::Stderr, true)).await?;
    let resize_wanted = options.tty && version.supports_resize();
    let resize = maybe(resize_wanted, open(StreamType::Resize, false)).await?;
    let mut tasks = JoinSet::new();
    let (status_tx, status) = oneshot::channel();
    tasks.spawn(read_status(error.recv, version, status_tx));
    let resize = resize.map(|stream| {
        let (tx, rx) = mpsc::channel(8);
        tasks.spawn(write_resizes(stream.send, rx));
        tx
    });
    Ok(ClientSession {
        stdin: stdin.map(|s| Box::pin(s.send) as _),
        stdout: stdout.map(|s| Box::pin(s.recv) as _),
        stderr: stderr.map(|s| Box::pin(s.recv) as _),
        resize,
        exit: Exit {
            status,
            session: Some(session),
            _tasks: tasks,
        },
    })
}

async fn maybe<T, E>(wanted: bool, f: impl Future<Output = Result<T, E>>) -> Result<Option<T>, E> {
    if wanted { f.await.map(Some) } else { Ok(None) }
}

async fn read_status(
    mut recv: RecvHalf,
    version: ExecVersion,
    tx: oneshot::Sender<Result<ExitStatus, ClientError>>,
) {
    let _ = tx.send(status_of(&mut recv, version).await);
}

/// The error stream to its end. A reset after a status was received ends
/// it too: that is how Go's spdystream (containerd's and kubelet's
/// streaming servers) closes a session after writing the status.
async fn status_of(recv: &mut RecvHalf, version: ExecVersion) -> Result<ExitStatus, ClientError> {
    let mut bytes = Vec::new();
    loop {
        match recv.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= STATUS_LIMIT => {
                bytes.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => {
                let why = format!("more than {STATUS_LIMIT} bytes on the error stream");
                return Err(spdy::Error::Protocol(why).into());
            }
            Ok(None) => break,
            Err(spdy::Error::Reset(_)) if !bytes.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
    }
    parse_status(version, &bytes)
}

async fn write_resizes<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<TerminalSize>) {
    while let Some(size) = rx.recv().await {
        if w.write_all(&size.to_json()).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn ws_exec(
    url: &str,
    options: ExecOptions,
    tls: Option<&ClientTls>,
) -> Result<ClientSession, ClientError> {
    let key = ws_key()?;
    let headers = [
        ("connection", "Upgrade".to_owned()),
        ("upgrade", "websocket".to_owned()),
        ("sec-websocket-version", "13".to_owned()),
        ("sec-websocket-key", key.clone()),
        (
            "sec-websocket-protocol",
            "v5.channel.k8s.io, v4.channel.k8s.io".to_owned(),
        ),
    ];
    let up = upgrade(url, Method::GET, &headers, tls).await?;
    let protocol = ws_answer(&up.headers, &key)?;
    let Protocol::Exec(version) = protocol.protocol else {
        return Err(ClientError::Upgrade("not an exec protocol".into()));
    };
    let close_signal = protocol.close_signal();
    let ws = WebSocketStream::from_raw_socket(up.io, WsRole::Client, None).await;
    let (sender, receiver) = WsChannels::from_stream(ws, protocol).split();
    let (out, out_rx) = mpsc::channel(wsio::QUEUE);
    let mut tasks = JoinSet::new();
    tasks.spawn(wsio::pump(sender, out_rx));
    let stdin = options
        .stdin
        .then(|| Box::pin(ChannelWriter::new(out.clone(), 0, close_signal)) as Writer);
    let resize = options.tty.then(|| {
        let (tx, rx) = mpsc::channel(8);
        let w = ChannelWriter::new(out.clone(), StreamType::Resize.channel(), false);
        tasks.spawn(write_resizes(w, rx));
        tx
    });
    let (stdout_w, stdout_r) = tokio::io::duplex(OUTPUT_PIPE);
    let (stderr_w, stderr_r) = tokio::io::duplex(OUTPUT_PIPE);
    let stderr_wanted = options.stderr && !options.tty;
    let (status_tx, status) = oneshot::channel();
    let outputs = Outputs {
        stdout: options.stdout.then_some(stdout_w),
        stderr: stderr_wanted.then_some(stderr_w),
    };
    tasks.spawn(ws_receive(receiver, outputs, version, status_tx, out));
    Ok(ClientSession {
        stdin,
        stdout: options.stdout.then(|| Box::pin(stdout_r) as Reader),
        stderr: stderr_wanted.then(|| Box::pin(stderr_r) as Reader),
        resize,
        exit: Exit {
            status,
            session: None,
            _tasks: tasks,
        },
    })
}

/// A fresh `Sec-WebSocket-Key`.
pub(super) fn ws_key() -> Result<String, ClientError> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| ClientError::Upgrade(e.to_string()))?;
    Ok(STANDARD.encode(key))
}

/// The subprotocol a 101 chose, after checking its accept key.
fn ws_answer(headers: &http::HeaderMap, key: &str) -> Result<WsProtocol, ClientError> {
    ws_answer_for(Endpoint::Exec, headers, key)
}

/// [`ws_answer`] for `endpoint`'s subprotocols.
pub(super) fn ws_answer_for(
    endpoint: Endpoint,
    headers: &http::HeaderMap,
    key: &str,
) -> Result<WsProtocol, ClientError> {
    let accept = headers
        .get(http::header::SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok());
    if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(ClientError::Upgrade("wrong Sec-WebSocket-Accept".into()));
    }
    let name = headers
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ws_protocols(endpoint)
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ClientError::Upgrade(format!("subprotocol {name:?}")))
}

struct Outputs {
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
}

/// Feeds the output pipes and collects the error channel until the
/// WebSocket ends. `_keep` holds the WebSocket open until then.
async fn ws_receive<T>(
    mut receiver: WsReceiver<T>,
    mut outputs: Outputs,
    version: ExecVersion,
    tx: oneshot::Sender<Result<ExitStatus, ClientError>>,
    _keep: mpsc::Sender<Out>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut error = Vec::new();
    let end = loop {
        let (channel, data) = match receiver.recv().await {
            Ok(Some(ChannelMessage::Data { channel, data })) => (channel, data),
            Ok(Some(ChannelMessage::Close { .. })) => continue,
            Ok(None) => break Ok(()),
            Err(e) => break Err(ClientError::from(e)),
        };
        let pipe = match channel {
            1 => &mut outputs.stdout,
            2 => &mut outputs.stderr,
            3 if error.len() + data.len() <= STATUS_LIMIT => {
                error.extend_from_slice(&data);
                continue;
            }
            _ => continue,
        };
        if let Some(w) = pipe
            && w.write_all(&data).await.is_err()
        {
            *pipe = None;
        }
    };
    drop(outputs);
    let _ = tx.send(end.and_then(|()| parse_status(version, &error)));
}
