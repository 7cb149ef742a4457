//! The runtime side of CRI streaming: [`Streams`] implements
//! [`crius_stream::backend::Backend`] for crius' pods. The streaming server
//! (crates/stream) owns the protocols; this module only moves bytes between
//! a client's [`Io`] and containerd's processes:
//!
//! - [`exec`](Streams::exec): a new exec process with its own FIFOs under the
//!   container's directory; killed, deleted and its FIFOs removed when the
//!   client goes away mid-session (`exec`).
//! - [`attach`](Streams::attach): the container's main process: its stdin
//!   FIFO (kept open by crius from the start when the container asked for
//!   stdin) and its live output, fanned out by the log copier
//!   ([`crius_logs::LogHandle::subscribe`]) so the CRI log keeps everything
//!   (`attach`).
//! - [`connect`](Streams::connect): TCP to the loopback of the pod's network
//!   namespace, from a short-lived thread that enters it (`connect`).

mod attach;
mod connect;
mod exec;

use std::sync::Arc;

use crius_stream::backend::{AttachRequest, Backend, Connection, ExecRequest, Io};
use crius_stream::channel::{ExitStatus, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::ctx::Ctx;

pub use connect::connect_in_netns;
pub(crate) use exec::open_stdin_sender;

/// The streaming backend over the pods' shared context. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    pub(crate) ctx: Arc<Ctx>,
}

#[async_trait::async_trait]
impl Backend for Streams {
    async fn exec(&self, req: ExecRequest, io: Io) -> ExitStatus {
        self.exec_session(req, io).await
    }

    async fn attach(&self, req: AttachRequest, io: Io) -> ExitStatus {
        self.attach_session(req, io).await
    }

    async fn connect(&self, pod_sandbox_id: &str, port: u16) -> std::io::Result<Connection> {
        self.connect_to(pod_sandbox_id, port).await
    }
}

/// How a failure before or around the process reaches the client.
pub fn failure(e: &crius_core::Error) -> ExitStatus {
    ExitStatus::Failure {
        message: e.to_string(),
        reason: None,
    }
}

/// Copies `r` to `w` until EOF; when writing fails (the client went away)
/// it keeps reading and dropping, so the process never blocks on a full
/// pipe. `w` is flushed at the end.
async fn pump_output<R: AsyncRead + Unpin>(mut r: R, mut w: Option<crius_stream::backend::Writer>) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("reading process output: {e}; treated as EOF");
                break;
            }
        };
        if let Some(out) = w.as_mut()
            && let Err(e) = out.write_all(&buf[..n]).await
        {
            tracing::debug!("writing to the client: {e}; dropping the rest");
            w = None;
        }
    }
    if let Some(mut out) = w {
        let _ = out.flush().await;
    }
}

/// Forwards the client's terminal sizes to the process' pty with `resize`
/// until the client stops sending them; a failed resize is logged only.
async fn forward_resizes<F, Fut>(rx: Option<mpsc::Receiver<TerminalSize>>, resize: F)
where
    F: Fn(u32, u32) -> Fut,
    Fut: Future<Output = crius_core::Result<()>>,
{
    let Some(mut rx) = rx else { return };
    while let Some(size) = rx.recv().await {
        // A zero size means nothing to a pty (clients send one before
        // they know theirs).
        if size.width == 0 || size.height == 0 {
            continue;
        }
        if let Err(e) = resize(size.width.into(), size.height.into()).await {
            tracing::debug!("resizing the terminal: {e}");
        }
    }
}
