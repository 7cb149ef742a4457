//! Exec over the streaming server: a new process in a running container,
//! its stdio between FIFOs crius owns and the client's [`Io`].
//!
//! Clean-up is owned by an [`ExecGuard`] from the moment the FIFOs exist:
//! a session that ends normally deletes the exec and removes its FIFOs;
//! one whose future is dropped (the client went away) or that fails hands
//! the guard's Drop a kill (SIGKILL), a bounded wait, the delete and the
//! FIFOs' removal, spawned on the pods' [`crius_rt::Background`], so no
//! exec process or task outlives its session (cf. containerd's
//! CVE-2022-23471, a goroutine leaked per failed tty exec).

use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::Stdio;
use crius_core::{Error, Result};
use crius_stream::backend::{ExecRequest, Io, Reader};
use crius_stream::channel::ExitStatus;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::{Streams, failure, forward_resizes, pump_output};
use crate::container::Exec;
use crate::ctx::Ctx;

/// How long the output is still read after the process exited (a child
/// it left in the background may hold the FIFOs open).
pub(crate) const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a clean-up waits for a killed exec to exit before deleting it.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long a clean-up waits for a create and start in flight to end.
const SETUP_WAIT: Duration = Duration::from_secs(30);

/// What one exec made: its ids and FIFOs.
#[derive(Debug)]
struct ExecFiles {
    id: String,
    exec_id: String,
    fifos: crius_logs::Fifos,
    stdin: Option<PathBuf>,
    /// Turns true once the create and start (run to their end even when
    /// the session is dropped meanwhile) answered.
    setup: Option<watch::Receiver<bool>>,
    /// crius' ends of the FIFOs until the start answered: the shim opens
    /// its write ends blocking during the start, so a read end closed
    /// before that (a client gone mid-setup) would hang the start, and
    /// with it the kill, in the shim for good.
    held: Option<Pipes>,
}

/// Owns an exec's clean-up (see the [module docs](self)).
struct ExecGuard {
    ctx: Arc<Ctx>,
    files: Option<ExecFiles>,
}

impl ExecGuard {
    fn files(&self) -> Result<&ExecFiles> {
        self.files
            .as_ref()
            .ok_or_else(|| Error::Internal("exec already cleaned up".into()))
    }

    /// crius' FIFO ends, for the session once the start answered.
    fn take_pipes(&mut self) -> Result<Pipes> {
        self.files
            .as_mut()
            .and_then(|f| f.held.take())
            .ok_or_else(|| Error::Internal("exec FIFOs already taken".into()))
    }

    /// The normal end: the exec (exited) is deleted, its FIFOs removed.
    async fn finish(mut self) {
        if let Some(files) = self.files.take() {
            clean_up(&self.ctx, files, false).await;
        }
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let Some(files) = self.files.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!(container = %files.id, exec_id = %files.exec_id,
                "exec session dropped outside the runtime: its process is left to the task's end");
            return;
        }
        tracing::debug!(container = %files.id, exec_id = %files.exec_id, "exec session dropped: killing the process");
        let ctx = self.ctx.clone();
        self.ctx
            .background
            .spawn_to_end(async move { clean_up(&ctx, files, true).await });
    }
}

/// Kills (when `kill`) and deletes the exec and removes its FIFOs; each
/// step goes on whatever the previous one answered.
async fn clean_up(ctx: &Ctx, mut f: ExecFiles, kill: bool) {
    let c = &ctx.containerd;
    // A create dropped mid-call would still make the exec in the shim
    // after this clean-up looked: its end comes first.
    if let Some(setup) = f.setup.as_mut()
        && tokio::time::timeout(SETUP_WAIT, setup.wait_for(|done| *done))
            .await
            .is_err()
    {
        tracing::warn!(container = %f.id, exec_id = %f.exec_id, "the exec's create and start did not answer within {SETUP_WAIT:?}");
    }
    if kill {
        match c.exec_kill(&f.id, &f.exec_id, 9).await {
            Ok(()) => {
                let waited = tokio::time::timeout(KILL_WAIT, c.exec_wait(&f.id, &f.exec_id)).await;
                if waited.is_err() {
                    tracing::warn!(container = %f.id, exec_id = %f.exec_id, "exec did not exit within {KILL_WAIT:?} of SIGKILL");
                }
            }
            // Never created or started, or gone with its task.
            Err(e) => {
                tracing::debug!(container = %f.id, exec_id = %f.exec_id, "killing the exec: {e}")
            }
        }
    }
    if let Err(e) = c.exec_delete(&f.id, &f.exec_id).await {
        tracing::warn!(container = %f.id, exec_id = %f.exec_id, "deleting the exec: {e}");
    }
    // The start answered and the process is gone: the shim needs crius'
    // ends no more.
    drop(f.held.take());
    if let Err(e) = crius_logs::remove_fifos(&f.fifos) {
        tracing::warn!(container = %f.id, "removing the exec's FIFOs: {e}");
    }
    if let Some(p) = &f.stdin
        && let Err(e) = std::fs::remove_file(p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(container = %f.id, "removing {}: {e}", p.display());
    }
}

/// The read ends of an exec's output FIFOs and the write end of its stdin.
#[derive(Debug)]
struct Pipes {
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
}

fn open_receiver(path: &std::path::Path) -> Result<pipe::Receiver> {
    pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| Error::io(format!("opening FIFO {}", path.display()), e))
}

/// The write end of a stdin FIFO, opened read-write: it opens at once with
/// no reader yet, and the process sees EOF only when crius closes it.
pub(crate) fn open_stdin_sender(path: &std::path::Path) -> Result<pipe::Sender> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| Error::io(format!("opening FIFO {}", path.display()), e))
}

impl Streams {
    /// An exec session: how it ended, as the client is told.
    pub(super) async fn exec_session(&self, req: ExecRequest, io: Io) -> ExitStatus {
        let cmd = req.cmd.join(" ");
        match self.run_exec(req, io).await {
            Ok(code) => ExitStatus::from_code(
                code,
                format!("error executing command [{cmd}], exit code {code}"),
            ),
            Err(e) => {
                tracing::info!("exec failed: {e}");
                failure(&e)
            }
        }
    }

    /// Creates, starts and runs the exec to its exit; its exit code.
    async fn run_exec(&self, req: ExecRequest, io: Io) -> Result<i32> {
        crius_core::container::validate_exec_cmd(&req.cmd)?;
        let c = self.ctx.find_container(&req.container_id)?;
        let id = c.meta.id.clone();
        let exec = Exec {
            ctx: self.ctx.clone(),
        };
        let mut process = exec.exec_process(&id, req.cmd.clone()).await?;
        process.set_terminal(Some(req.tty));
        let mut guard = self.exec_files(&id, &req)?;
        let f = guard.files()?;
        let stdio = Stdio {
            stdin: f
                .stdin
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            stdout: f.fifos.stdout.display().to_string(),
            stderr: f
                .fifos
                .stderr
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            terminal: req.tty,
        };
        let exec_id = f.exec_id.clone();
        let pid = self
            .create_and_start(&mut guard, &id, &exec_id, process, stdio)
            .await?;
        let pipes = guard.take_pipes()?;
        tracing::debug!(container = %id, exec_id, pid, "exec started");
        let code = self.pump(&id, &exec_id, io, pipes).await?;
        guard.finish().await;
        Ok(code)
    }

    /// Creates and starts the exec in a task of its own, so that a session
    /// dropped meanwhile cannot cut the two calls off half-way; the guard's
    /// clean-up waits for them. The exec's pid.
    async fn create_and_start(
        &self,
        guard: &mut ExecGuard,
        id: &str,
        exec_id: &str,
        process: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<u32> {
        let (done, setup) = watch::channel(false);
        if let Some(f) = guard.files.as_mut() {
            f.setup = Some(setup);
        }
        let containerd = self.ctx.containerd.clone();
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        crius_rt::detached("exec create and start", async move {
            let started = async {
                containerd
                    .exec_create(&id, &exec_id, &process, &stdio)
                    .await?;
                containerd.exec_start(&id, &exec_id).await
            }
            .await;
            let _ = done.send(true);
            started
        })
        .await
    }

    /// The exec's FIFOs under the container's directory, owned by a guard
    /// from now on, with crius' ends open (the read ends non-blocking,
    /// before the shim opens the others) and held by the guard until the
    /// start answered.
    fn exec_files(&self, id: &str, req: &ExecRequest) -> Result<ExecGuard> {
        let exec_id = new_exec_id();
        let dir = self.ctx.containers_dir().join(id);
        let fifos = crius_logs::create_fifos(&dir, &exec_id, req.tty)?;
        let mut guard = ExecGuard {
            ctx: self.ctx.clone(),
            files: Some(ExecFiles {
                id: id.to_string(),
                exec_id: exec_id.clone(),
                fifos: fifos.clone(),
                stdin: None,
                setup: None,
                held: None,
            }),
        };
        let stdin = if req.stdin {
            let path = crius_logs::create_stdin_fifo(&dir, &exec_id)?;
            if let Some(f) = guard.files.as_mut() {
                f.stdin = Some(path.clone());
            }
            Some(open_stdin_sender(&path)?)
        } else {
            None
        };
        let pipes = Pipes {
            stdout: open_receiver(&fifos.stdout)?,
            stderr: fifos.stderr.as_deref().map(open_receiver).transpose()?,
            stdin,
        };
        if let Some(f) = guard.files.as_mut() {
            f.held = Some(pipes);
        }
        Ok(guard)
    }

    /// Moves the bytes until the exec exits and its output is drained
    /// (at most [`DRAIN_WAIT`] after the exit); its exit code.
    async fn pump(&self, id: &str, exec_id: &str, io: Io, pipes: Pipes) -> Result<i32> {
        let Io {
            stdin,
            stdout,
            stderr,
            resize,
        } = io;
        let mut output = pin!(async {
            let err = async {
                if let Some(r) = pipes.stderr {
                    pump_output(r, stderr).await;
                }
            };
            tokio::join!(pump_output(pipes.stdout, stdout), err)
        });
        let mut input = pin!(async {
            let resizes = forward_resizes(resize, |w, h| {
                self.ctx.containerd.exec_resize(id, exec_id, w, h)
            });
            tokio::join!(self.feed_stdin(id, exec_id, stdin, pipes.stdin), resizes);
            // Both ended: nothing more to do but wait for the exit.
            std::future::pending::<()>().await
        });
        let mut wait = pin!(self.ctx.containerd.exec_wait(id, exec_id));
        let mut drained = false;
        let exit = loop {
            tokio::select! {
                exit = &mut wait => break exit?,
                _ = &mut output, if !drained => drained = true,
                () = &mut input => {}
            }
        };
        if !drained && tokio::time::timeout(DRAIN_WAIT, &mut output).await.is_err() {
            tracing::debug!(container = %id, exec_id, "exec output still open {DRAIN_WAIT:?} after its exit; cut off");
        }
        Ok(exit.exit_status as i32)
    }

    /// Copies the client's stdin into the exec's; at its end the FIFO is
    /// closed and containerd told to close the process' stdin (CloseIO).
    async fn feed_stdin(
        &self,
        id: &str,
        exec_id: &str,
        stdin: Option<Reader>,
        tx: Option<pipe::Sender>,
    ) {
        let Some(mut tx) = tx else { return };
        if let Some(mut r) = stdin
            && let Err(e) = tokio::io::copy(&mut r, &mut tx).await
        {
            tracing::debug!(container = %id, exec_id, "copying stdin: {e}");
        }
        drop(tx);
        if let Err(e) = self.ctx.containerd.exec_close_stdin(id, exec_id).await {
            tracing::debug!(container = %id, exec_id, "closing the exec's stdin: {e}");
        }
    }
}

/// A fresh exec id.
fn new_exec_id() -> String {
    format!("exec-{}", &crate::sandbox::random_id()[..16])
}
