//! Attach over the streaming server: a client joins the container's main
//! process. Its output comes from the log copier's live fan-out (the CRI
//! log still gets everything; a client too slow for it loses chunks, it
//! never holds back the log); its stdin goes into the stdin FIFO crius
//! holds for containers created with `stdin`.
//!
//! When the client's stdin ends, as containerd's CRI does: with
//! `stdin_once` and no tty the container's stdin is closed and the client
//! stays attached until the container exits; otherwise the client is
//! detached. A client that goes away (the future dropped) is just
//! detached. The container's exit ends every attach with its exit code.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use crius_core::{Error, Result};
use crius_stream::backend::{AttachRequest, Io, Reader, Writer};
use crius_stream::channel::ExitStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Streams, failure, forward_resizes};
use crate::container::{Container, ContainerState};

/// How long an attach whose output ended waits for the exit to be recorded.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// How an attach ended.
enum Ended {
    /// The container exited with this code.
    Exited(i32),
    /// The client detached (its stdin ended).
    Detached,
}

impl Streams {
    /// An attach session: how it ended, as the client is told.
    pub(super) async fn attach_session(&self, req: AttachRequest, io: Io) -> ExitStatus {
        match self.run_attach(req, io).await {
            Ok(Ended::Detached) => ExitStatus::Success,
            Ok(Ended::Exited(code)) => {
                ExitStatus::from_code(code, format!("container exited with code {code}"))
            }
            Err(e) => {
                tracing::info!("attach failed: {e}");
                failure(&e)
            }
        }
    }

    async fn run_attach(&self, req: AttachRequest, io: Io) -> Result<Ended> {
        let c = self.ctx.find_container(&req.container_id)?;
        let id = c.meta.id.clone();
        if c.status().state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let log = c.log().ok_or_else(|| {
            Error::FailedPrecondition(format!("container {id} has no output to attach to"))
        })?;
        let Io {
            stdin,
            stdout,
            stderr,
            resize,
        } = io;
        let output = pin!(forward_output(log.subscribe(), stdout, stderr));
        let input = pin!(async {
            let resizes = forward_resizes(resize, |w, h| {
                self.ctx.containerd.exec_resize(&id, "", w, h)
            });
            let stdin = async {
                if self.feed_container_stdin(&c, stdin).await {
                    return;
                }
                std::future::pending::<()>().await
            };
            // Ends only when the client detaches.
            tokio::select! {
                () = stdin => {}
                () = async { resizes.await; std::future::pending::<()>().await } => {}
            }
        });
        let exited = pin!(c.exit_recorded(Duration::MAX));
        tokio::select! {
            () = input => return Ok(Ended::Detached),
            () = output => c.exit_recorded(EXIT_WAIT).await,
            () = exited => {}
        }
        let st = c.status();
        if st.state == ContainerState::Exited {
            Ok(Ended::Exited(st.exit_code))
        } else {
            // The output ended but the exit is not on record (yet).
            Ok(Ended::Detached)
        }
    }

    /// Copies the client's stdin into the container's; whether the client
    /// is to be detached now that it ended (see the module docs). Without
    /// a stdin on either side there is nothing to copy and nothing ends.
    async fn feed_container_stdin(&self, c: &Arc<Container>, stdin: Option<Reader>) -> bool {
        let Some(mut r) = stdin else { return false };
        if !c.meta.stdin {
            return false;
        }
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(container = %c.meta.id, "reading the client's stdin: {e}");
                    break;
                }
            };
            let mut tx = c.stdin.lock().await;
            let Some(pipe) = tx.as_mut() else { break };
            if let Err(e) = pipe.write_all(&buf[..n]).await {
                tracing::debug!(container = %c.meta.id, "writing the container's stdin: {e}");
                break;
            }
        }
        if c.meta.stdin_once && !c.meta.tty {
            self.close_container_stdin(c).await;
            return false;
        }
        true
    }

    /// Closes the container's stdin for good: crius' end of the FIFO and
    /// the shim's (CloseIO).
    async fn close_container_stdin(&self, c: &Container) {
        let had = c.stdin.lock().await.take().is_some();
        if had && let Err(e) = self.ctx.containerd.exec_close_stdin(&c.meta.id, "").await {
            tracing::debug!(container = %c.meta.id, "closing the container's stdin: {e}");
        }
    }
}

/// Writes the live output to the client's streams until it ends (the
/// container's streams closed). A stream the client did not ask for is
/// dropped; a client stream that fails is given up.
async fn forward_output(
    mut sub: crius_logs::Subscription,
    mut stdout: Option<Writer>,
    mut stderr: Option<Writer>,
) {
    while let Some((stream, data)) = sub.next().await {
        let w = match stream {
            crius_logs::Stream::Stdout => &mut stdout,
            crius_logs::Stream::Stderr => &mut stderr,
        };
        if let Some(out) = w.as_mut()
            && let Err(e) = async {
                out.write_all(&data).await?;
                out.flush().await
            }
            .await
        {
            tracing::debug!("writing to the attached client: {e}; dropping that stream");
            *w = None;
        }
    }
    if sub.lost() > 0 {
        tracing::debug!(
            lost = sub.lost(),
            "an attached client was too slow for some output"
        );
    }
}
