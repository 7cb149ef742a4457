//! ExecSync: a command in a running container, its output captured.

use std::path::PathBuf;
use std::time::Duration;

use crius_containerd::{Stdio, TaskStatus};
use crius_core::{Error, Result};

use std::sync::Arc;

use super::KILL_WAIT;
use crate::ctx::Ctx;

/// Most output ExecSync keeps, both streams together; the rest is read and
/// dropped. The answer must fit the 16 MiB message kubelet reads (and
/// crius sends): 1 KiB is left for the rest of it.
pub const EXEC_OUTPUT_CAP: usize = (16 << 20) - 1024;

/// Trims an exec's output to `cap` bytes in all: stderr keeps what it
/// has up to half of it (more if stdout leaves room), stdout the rest.
fn fit(mut out: Vec<u8>, mut err: Vec<u8>, cap: usize) -> (Vec<u8>, Vec<u8>) {
    if out.len() + err.len() <= cap {
        return (out, err);
    }
    let err_keep = (cap / 2).max(cap.saturating_sub(out.len()));
    err.truncate(err_keep);
    out.truncate(cap - err.len());
    (out, err)
}

/// What ExecSync returns.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Reads a FIFO to EOF, keeping at most `cap` bytes.
/// Reads the FIFO at `path` to EOF (or until `stop` turns true), keeping
/// the first `cap` bytes.
async fn drain(path: PathBuf, cap: usize, mut stop: tokio::sync::watch::Receiver<bool>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::OpenOptions::new().open_receiver(&path) else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            r = rx.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    kept
}

/// How long ExecSync still reads output after the command exited (a
/// process it left in the background may hold the pipes open).
const EXEC_DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long after runc failed to join a container's namespaces its task's
/// state is asked again (a dying container's task is stopped by then).
const SETNS_RECHECK: Duration = Duration::from_millis(300);

/// ExecSync: commands run in containers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Exec {
    pub(crate) ctx: Arc<Ctx>,
}

/// The operations read the shared ports, directories and indexes as if
/// they were the service's own.
impl std::ops::Deref for Exec {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl Exec {
    /// Runs `cmd` in a running container and returns its output (capped
    /// at [`EXEC_OUTPUT_CAP`] in all) and exit code. `timeout`
    /// seconds (0: none) bound the command; on expiry it is killed.
    /// Runs in a task of its own: a client that gives up does not leave the
    /// exec process or its FIFOs behind.
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: i64) -> Result<ExecOutput> {
        let pods = self.clone();
        let id = id.to_string();
        crius_rt::detached("exec task", async move {
            pods.exec_sync_inner(&id, cmd, timeout).await
        })
        .await
    }

    pub(crate) async fn exec_sync_inner(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecOutput> {
        crius_core::container::validate_exec_cmd(&cmd)?;
        let c = self.find_container(id)?;
        let id = c.meta.id.clone();
        let process = self.exec_process(&id, cmd).await?;
        let exec_id = format!("exec-{}", &crate::sandbox::random_id()[..16]);
        let fifos = crius_logs::create_fifos(&self.containers_dir().join(&id), &exec_id, false)?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let stdout = tokio::spawn(drain(fifos.stdout.clone(), EXEC_OUTPUT_CAP, stop.clone()));
        let stderr = tokio::spawn(drain(
            fifos.stderr.clone().unwrap_or_default(),
            EXEC_OUTPUT_CAP,
            stop,
        ));
        let stdio = super::fifo_stdio(&fifos, false);
        let result = self
            .run_exec(&id, &exec_id, &process, &stdio, timeout)
            .await;
        // The output of the command is in the pipes by now; what a process
        // it left behind may still write is cut off after a grace period.
        // Without an exit code there is no output to give: no grace.
        let grace = if result.is_ok() {
            EXEC_DRAIN_WAIT
        } else {
            Duration::ZERO
        };
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            stop_tx.send_replace(true);
        });
        let (out, err) = fit(
            stdout.await.unwrap_or_default(),
            stderr.await.unwrap_or_default(),
            EXEC_OUTPUT_CAP,
        );
        timer.abort();
        let _ = self.containerd.exec_delete(&id, &exec_id).await;
        let _ = crius_logs::remove_fifos(&fifos);
        Ok(ExecOutput {
            stdout: out,
            stderr: err,
            exit_code: result?,
        })
    }

    /// Why an exec did not start: a container that stopped meanwhile (an
    /// exec racing the exit: runc's "broken pipe", "process already
    /// finished") is the client's precondition, not crius' fault; so is a
    /// command runc cannot run (missing, not executable).
    async fn exec_start_error(&self, id: &str, e: Error) -> Error {
        let mut running = self.task_running(id).await;
        // runc could not join the container's namespaces: its process is
        // going (a stop or removal racing the exec), or something is wrong;
        // the task's state a moment later tells which.
        if running && e.to_string().contains("error executing setns process") {
            tokio::time::sleep(SETNS_RECHECK).await;
            running = self.task_running(id).await;
        }
        if running {
            super::command_refused(e)
        } else {
            Error::FailedPrecondition(format!("container {id} is not running (it stopped): {e}"))
        }
    }

    async fn task_running(&self, id: &str) -> bool {
        matches!(
            self.containerd.task_get(id).await,
            Ok(Some(t)) if t.status == TaskStatus::Running
        )
    }

    /// Why waiting for an exec failed: the container stopped meanwhile (its
    /// shim gone with it: "ttrpc: closed") is the client's race, not
    /// crius' fault.
    async fn exec_wait_error(&self, id: &str, e: Error) -> Error {
        if self.task_running(id).await {
            e
        } else {
            Error::FailedPrecondition(format!("container {id} stopped while the command ran: {e}"))
        }
    }

    /// The process of an exec in running container `id`: its own, with
    /// `cmd` as arguments and no terminal.
    pub(crate) async fn exec_process(
        &self,
        id: &str,
        cmd: Vec<String>,
    ) -> Result<oci_spec::runtime::Process> {
        let running = self
            .containerd
            .task_get(id)
            .await?
            .is_some_and(|t| t.status == TaskStatus::Running);
        if !running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let record = self
            .containerd
            .container_get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("container {id}")))?;
        let mut process =
            record.spec.process().clone().ok_or_else(|| {
                Error::Internal(format!("container {id} has no process in its spec"))
            })?;
        process.set_args(Some(cmd));
        process.set_terminal(Some(false));
        Ok(process)
    }

    /// Runs exec `exec_id` to its end (killed after `timeout` seconds, 0:
    /// none); its exit code.
    pub(crate) async fn run_exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &Stdio,
        timeout: i64,
    ) -> Result<i32> {
        let started = async {
            self.containerd
                .exec_create(id, exec_id, process, stdio)
                .await?;
            self.containerd.exec_start(id, exec_id).await
        }
        .await;
        if let Err(e) = started {
            return Err(self.exec_start_error(id, e).await);
        }
        let wait = self.containerd.exec_wait(id, exec_id);
        let exit = if timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout as u64), wait).await {
                Ok(Ok(exit)) => exit,
                Ok(Err(e)) => return Err(self.exec_wait_error(id, e).await),
                Err(_) => {
                    let _ = self.containerd.exec_kill(id, exec_id, 9).await;
                    let _ = tokio::time::timeout(KILL_WAIT, self.containerd.exec_wait(id, exec_id))
                        .await;
                    return Err(Error::DeadlineExceeded(format!(
                        "command timed out after {timeout} s and was killed"
                    )));
                }
            }
        } else {
            match wait.await {
                Ok(exit) => exit,
                Err(e) => return Err(self.exec_wait_error(id, e).await),
            }
        };
        Ok(exit.exit_status as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn output_fits_the_cap_in_all() {
        let (a, b) = fit(vec![1; 5], vec![2; 3], 10);
        assert_eq!((a.len(), b.len()), (5, 3));
        // stdout alone over: stdout gets it all.
        let (a, b) = fit(vec![1; 20], vec![], 10);
        assert_eq!((a.len(), b.len()), (10, 0));
        // Both over: stderr half, stdout the rest.
        let (a, b) = fit(vec![1; 20], vec![2; 20], 10);
        assert_eq!((a.len(), b.len()), (5, 5));
        // A little stdout leaves stderr more room.
        let (a, b) = fit(vec![1; 2], vec![2; 20], 10);
        assert_eq!((a.len(), b.len()), (2, 8));
    }
}
