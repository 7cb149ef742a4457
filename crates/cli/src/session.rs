//! One interactive session over criusd's streaming server (exec or
//! attach), like `docker exec -it`: our stdin to the session's, its
//! stdout and stderr to ours, with a tty the local terminal raw and its
//! size (at the start and on every SIGWINCH) sent as resizes; the remote
//! exit code becomes ours.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;

use anyhow::{Context, bail};
use clap::ValueEnum;
use crius_stream::backend::{Reader, Writer};
use crius_stream::channel::{ExitStatus, TerminalSize};
use crius_stream::client::{self, ExecOptions, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::terminal::{self, Fd, RawGuard};

/// How the CLI talks to the streaming server (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TransportArg {
    /// SPDY/3.1, as kubectl did before WebSockets.
    #[default]
    Spdy,
    /// WebSocket channels (v5.channel.k8s.io).
    Websocket,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Spdy => Transport::Spdy,
            TransportArg::Websocket => Transport::WebSocket,
        }
    }
}

/// Bytes per read of stdin or of the session's output.
const CHUNK: usize = 32 << 10;

/// Whether a session may have a tty: `-t` asked for it and our stdin is a
/// terminal. As kubectl, a `-t` without one is a warning, not an error.
pub fn use_tty(asked: bool) -> bool {
    if asked && !std::io::stdin().is_terminal() {
        eprintln!("crius: unable to use a TTY: the input is not a terminal");
        return false;
    }
    asked
}

/// Runs the session at `url` (made for `options`) to its end; the remote
/// exit code, or 128 + the signal that ended crius first.
pub async fn run(url: &str, options: ExecOptions, transport: Transport) -> anyhow::Result<i32> {
    let stdin = std::io::stdin();
    // Only a terminal we read from is made raw; the guard restores it on
    // every way out of this function.
    let _raw = match options.tty && options.stdin {
        true => Some(RawGuard::enter(Fd(stdin.as_fd())).context("making the terminal raw")?),
        false => None,
    };
    let mut s = client::exec(url, options, transport)
        .await
        .context("connecting to the streaming server")?;
    let input = forward_stdin(s.stdin.take());
    let resizes = forward_resizes(s.resize.take());
    let (stdout, stderr) = (s.stdout.take(), s.stderr.take());
    let done = async {
        tokio::join!(
            copy_out(stdout, tokio::io::stdout()),
            copy_out(stderr, tokio::io::stderr())
        );
        s.wait().await
    };
    let status = tokio::select! {
        status = done => status.context("the session")?,
        signo = ended_by_signal() => return Ok(128 + signo?),
        () = forever_after(input) => unreachable_end()?,
        () = forever_after(resizes) => unreachable_end()?,
    };
    exit_code(status)
}

/// Runs `f`, then never ends: a side task of a session.
async fn forever_after(f: impl Future<Output = ()>) {
    f.await;
    std::future::pending::<()>().await
}

/// The arm of a `select!` that cannot be taken.
fn unreachable_end() -> anyhow::Result<ExitStatus> {
    bail!("a side task of the session ended it")
}

/// Crius' exit code for the remote one; a failure to run is an error.
pub fn exit_code(status: ExitStatus) -> anyhow::Result<i32> {
    match status {
        ExitStatus::Success => Ok(0),
        ExitStatus::ExitCode { code, .. } => Ok(code),
        ExitStatus::Failure { message, .. } => bail!("{message}"),
    }
}

/// Waits for SIGINT, SIGTERM or SIGHUP; its number. While crius handles
/// them, they end the session through its normal way out (the terminal
/// restored, the session dropped so the server ends its side).
async fn ended_by_signal() -> anyhow::Result<i32> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::select! {
        _ = int.recv() => 2,
        _ = term.recv() => 15,
        _ = hup.recv() => 1,
    })
}

/// Copies our stdin into the session's, then ends it (the remote EOF).
/// Stdin is read on a thread of its own: a read blocked on a terminal
/// must hold neither the runtime nor crius' exit.
async fn forward_stdin(w: Option<Writer>) {
    let Some(mut w) = w else { return };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let reader = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(&tx));
    if let Err(e) = reader {
        eprintln!("crius: cannot read stdin: {e}");
        return;
    }
    while let Some(chunk) = rx.recv().await {
        if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Reads stdin into `tx` until its end, an error, or nobody listening.
fn read_stdin(tx: &mpsc::Sender<Vec<u8>>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends the terminal's size now and after every SIGWINCH.
async fn forward_resizes(tx: Option<mpsc::Sender<TerminalSize>>) {
    let Some(tx) = tx else { return };
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    loop {
        let size = terminal::size(std::io::stdin()).or_else(|| terminal::size(std::io::stdout()));
        if let Some(size) = size
            && tx.send(size).await.is_err()
        {
            return;
        }
        if winch.recv().await.is_none() {
            return;
        }
    }
}

/// Copies `r` to `w` as it comes (flushed per chunk, for prompts without
/// a newline) until its end. A closed local side just stops the copy.
async fn copy_out(r: Option<Reader>, mut w: impl AsyncWrite + Unpin) {
    let Some(r) = r else { return };
    let _ = copy_flushed(r, &mut w).await;
}

async fn copy_flushed(
    mut r: impl AsyncRead + Unpin,
    w: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(ExitStatus::Success).expect("0"), 0);
        let code = ExitStatus::from_code(7, "seven");
        assert_eq!(exit_code(code).expect("7"), 7);
        let failed = ExitStatus::Failure {
            message: "no such file".into(),
            reason: None,
        };
        let e = exit_code(failed).expect_err("a failure is an error");
        assert!(e.to_string().contains("no such file"), "{e}");
    }

    #[test]
    fn transports() {
        assert_eq!(Transport::from(TransportArg::default()), Transport::Spdy);
        assert_eq!(
            Transport::from(TransportArg::Websocket),
            Transport::WebSocket
        );
    }

    #[tokio::test]
    async fn output_is_copied_to_its_end() -> std::io::Result<()> {
        let (mut w, r) = tokio::io::duplex(16);
        let writer = async move {
            w.write_all(b"prompt> ").await?;
            w.write_all(&[b'x'; 100]).await?;
            w.shutdown().await
        };
        let mut out = Vec::new();
        let (written, ()) = tokio::join!(writer, copy_out(Some(Box::pin(r)), &mut out));
        written?;
        assert_eq!(out.len(), 108);
        assert!(out.starts_with(b"prompt> "));
        Ok(())
    }
}
