//! Exec and attach sessions: the client's streams (SPDY) or channels
//! (WebSocket) become an [`Io`], the backend runs with it, and its
//! [`ExitStatus`] goes out on the error stream in the version's form.
//! The backend's future lives inside the session's: when the client goes
//! away, it is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Ctx;
use crate::backend::{Io, Request};
use crate::channel::wire::ChannelMessage;
use crate::channel::{ExecVersion, ExitStatus, ResizeDecoder, STREAM_TYPE_HEADER, StreamType};
use crate::channel::{TerminalSize, portforward::PORT_FORWARD_PROTOCOL};
use crate::spdy::{RecvHalf, Role, RstStatus, SendHalf, Session, Stream};
use crate::upgrade::{Protocol, WsProtocol};
use crate::ws::{WsChannels, WsReceiver};
use crate::wsio::{self, ChannelWriter, Out};

/// Terminal sizes queued for the backend.
const RESIZE_QUEUE: usize = 8;
/// Bytes of stdin buffered between the WebSocket and the backend.
const STDIN_PIPE: usize = 64 * 1024;

/// Which of the process' streams the client has, from the request (with
/// a tty there is no stderr: the terminal merges it into stdout).
#[derive(Debug, Clone, Copy)]
struct Wanted {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Wanted {
    fn of(request: &Request) -> Self {
        let (stdin, stdout, stderr, tty) = match request {
            Request::Exec(r) => (r.stdin, r.stdout, r.stderr, r.tty),
            Request::Attach(r) => (r.stdin, r.stdout, r.stderr, r.tty),
            Request::PortForward(_) => (false, false, false, false),
        };
        Self {
            stdin,
            stdout,
            stderr: stderr && !tty,
            tty,
        }
    }

    fn expected(self, version: ExecVersion) -> usize {
        version.expected_streams(self.stdin, self.stdout, self.stderr, self.tty)
    }
}

/// Runs the backend for `request` (exec or attach) with `io`.
async fn call(ctx: &Ctx, request: Request, io: Io) -> ExitStatus {
    match request {
        Request::Exec(r) => ctx.backend.exec(r, io).await,
        Request::Attach(r) => ctx.backend.attach(r, io).await,
        Request::PortForward(_) => ExitStatus::Failure {
            message: format!("{PORT_FORWARD_PROTOCOL} is not an exec protocol"),
            reason: Some("BadRequest".into()),
        },
    }
}

/// Exec or attach over SPDY.
pub(super) async fn spdy<T>(ctx: &Arc<Ctx>, io: T, protocol: Protocol, request: Request)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let Protocol::Exec(version) = protocol else {
        return;
    };
    let session = Session::spawn(io, Role::Server, ctx.config.spdy.clone());
    let wanted = Wanted::of(&request);
    let accepted = tokio::time::timeout(
        ctx.config.stream_creation_timeout,
        accept_streams(&session, wanted.expected(version)),
    )
    .await;
    let Ok(Some(mut streams)) = accepted else {
        tracing::info!("exec: the client did not open its streams in time");
        session.close();
        return;
    };
    let Some(error) = streams.remove(&StreamType::Error) else {
        session.close();
        return;
    };
    let mut tasks = JoinSet::new();
    let (io, _open) = spdy_io(&mut streams, wanted, &mut tasks);
    let status = tokio::select! {
        status = call(ctx, request, io) => status,
        reason = session.closed() => {
            tracing::info!(%reason, "exec: the client went away; the process is abandoned");
            return;
        }
    };
    let (_, mut error_send) = error.split();
    let bytes = version.error_stream_bytes(&status);
    if let Err(e) = error_send.write_all(&bytes).await {
        tracing::debug!(error = %e, "exec: the status could not be sent");
    }
    let _ = error_send.finish();
    drop((error_send, streams, tasks));
    session.close();
}

/// Accepts streams until `expected` of distinct known types arrived;
/// others are reset. `None` if the session ended first.
async fn accept_streams(session: &Session, expected: usize) -> Option<HashMap<StreamType, Stream>> {
    let mut streams = HashMap::new();
    while streams.len() < expected {
        let mut stream = session.accept().await?;
        let kind = stream
            .headers()
            .get(STREAM_TYPE_HEADER)
            .and_then(StreamType::from_header);
        match kind {
            Some(kind) if !streams.contains_key(&kind) => {
                streams.insert(kind, stream);
            }
            other => {
                tracing::debug!(?other, "exec: unexpected stream reset");
                stream.send.reset(RstStatus::PROTOCOL_ERROR);
            }
        }
    }
    Some(streams)
}

/// The backend's view of the streams (a resize stream gets a decoding
/// task in `tasks`), and the send halves of the streams only read from,
/// to be kept open until the session ends: a FIN on the stdin stream is
/// client-go's sign to close its stdin (`copyStdin` waits for the server
/// to close remoteStdin), which would end an attach with `stdin_once`.
fn spdy_io(
    streams: &mut HashMap<StreamType, Stream>,
    wanted: Wanted,
    tasks: &mut JoinSet<()>,
) -> (Io, Vec<SendHalf>) {
    let mut take = |kind, wanted: bool| streams.remove(&kind).filter(|_| wanted);
    let stdin = take(StreamType::Stdin, wanted.stdin);
    let stdout = take(StreamType::Stdout, wanted.stdout);
    let stderr = take(StreamType::Stderr, wanted.stderr);
    let resize = take(StreamType::Resize, wanted.tty);
    let mut open = Vec::new();
    let resize = resize.map(|stream| {
        let (recv, send) = stream.split();
        open.push(send);
        let (tx, rx) = mpsc::channel(RESIZE_QUEUE);
        tasks.spawn(read_resizes(recv, tx));
        rx
    });
    let stdin = stdin.map(|stream| {
        let (recv, send) = stream.split();
        open.push(send);
        Box::pin(recv) as _
    });
    let io = Io {
        stdin,
        stdout: stdout.map(|s| Box::pin(s.send) as _),
        stderr: stderr.map(|s| Box::pin(s.send) as _),
        resize,
    };
    (io, open)
}

async fn read_resizes(mut recv: RecvHalf, tx: mpsc::Sender<TerminalSize>) {
    let mut decoder = ResizeDecoder::default();
    while let Ok(Some(chunk)) = recv.chunk().await {
        match decoder.push(&chunk) {
            Ok(sizes) => {
                for size in sizes {
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "exec: bad resize stream");
                return;
            }
        }
    }
}

/// Exec or attach over WebSocket channels.
pub(super) async fn ws<T>(ctx: &Arc<Ctx>, io: T, protocol: WsProtocol, request: Request)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Protocol::Exec(version) = protocol.protocol else {
        return;
    };
    let close_signal = protocol.close_signal();
    let (sender, receiver) = WsChannels::server(io, protocol).await.split();
    let (out, out_rx) = mpsc::channel(wsio::QUEUE);
    let wanted = Wanted::of(&request);
    let (stdin_w, stdin_r) = tokio::io::duplex(STDIN_PIPE);
    let (resize_tx, resize_rx) = mpsc::channel(RESIZE_QUEUE);
    let writer = |channel: StreamType| {
        let w = ChannelWriter::new(out.clone(), channel.channel(), close_signal);
        Box::pin(w) as _
    };
    let io = Io {
        stdin: wanted.stdin.then(|| Box::pin(stdin_r) as _),
        stdout: wanted.stdout.then(|| writer(StreamType::Stdout)),
        stderr: wanted.stderr.then(|| writer(StreamType::Stderr)),
        resize: wanted.tty.then_some(resize_rx),
    };
    let stdin_w = wanted.stdin.then_some(stdin_w);
    let resize_tx = wanted.tty.then_some(resize_tx);
    let run = async move {
        let status = call(ctx, request, io).await;
        let bytes = version.error_stream_bytes(&status);
        if !bytes.is_empty() {
            let _ = out
                .send(Out::Data(StreamType::Error.channel(), bytes))
                .await;
        }
    };
    let main = async { tokio::join!(run, wsio::pump(sender, out_rx)) };
    let mut demux = std::pin::pin!(demux(receiver, stdin_w, resize_tx));
    tokio::select! {
        _ = main => {
            // The client's close answers ours.
            let _ = tokio::time::timeout(ctx.config.linger, demux).await;
        }
        () = &mut demux => {
            tracing::info!("exec: the client went away; the process is abandoned");
        }
    }
}

/// Hands the client's channels to the backend until the WebSocket ends:
/// stdin into the pipe (v5 close: EOF), resizes into the queue.
async fn demux<T>(
    mut receiver: WsReceiver<T>,
    mut stdin: Option<DuplexStream>,
    mut resize: Option<mpsc::Sender<TerminalSize>>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = ResizeDecoder::default();
    loop {
        let message = match receiver.recv().await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "exec: WebSocket receive failed");
                return;
            }
        };
        match message {
            ChannelMessage::Data { channel: 0, data } => {
                if let Some(pipe) = &mut stdin
                    && pipe.write_all(&data).await.is_err()
                {
                    stdin = None;
                }
            }
            ChannelMessage::Close { channel: 0 } => stdin = None,
            ChannelMessage::Data { channel: 4, data } => {
                let sizes = decoder.push(&data).unwrap_or_default();
                for size in sizes {
                    if let Some(tx) = &resize
                        && tx.send(size).await.is_err()
                    {
                        resize = None;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spdy::{Config, Headers};

    #[tokio::test]
    async fn the_stdin_stream_stays_open_towards_the_client_until_the_session_ends() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = Session::spawn(a, Role::Client, Config::default());
        let server = Session::spawn(b, Role::Server, Config::default());
        let opening = tokio::spawn({
            let client = client.clone();
            async move {
                let headers = Headers::new().with(STREAM_TYPE_HEADER, "stdin");
                client.open(headers, false).await.expect("open")
            }
        });
        let accepted = server.accept().await.expect("a stream");
        let mut client_stdin = opening.await.expect("opened");
        let mut streams = HashMap::from([(StreamType::Stdin, accepted)]);
        let wanted = Wanted {
            stdin: true,
            stdout: false,
            stderr: false,
            tty: false,
        };
        let mut tasks = JoinSet::new();
        let (io, open) = spdy_io(&mut streams, wanted, &mut tasks);
        assert!(io.stdin.is_some());
        // client-go reads its stdin stream until the server closes it, then
        // closes its stdin: nothing may arrive while the session runs.
        let early =
            tokio::time::timeout(Duration::from_millis(200), client_stdin.recv.chunk()).await;
        assert!(
            early.is_err(),
            "the server ended the stdin stream early: {early:?}"
        );
        drop(open);
        let end =
            tokio::time::timeout(Duration::from_secs(5), client_stdin.recv.read_to_end(16)).await;
        assert!(matches!(&end, Ok(Ok(rest)) if rest.is_empty()), "{end:?}");
    }
}
