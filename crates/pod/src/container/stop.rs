//! StopContainer: the stop signal, then SIGKILL.

use std::time::Duration;

use crius_containerd::TaskStatus;
use crius_core::{Error, Result};

use super::{Container, ContainerState, Containers, KILL_WAIT, LOG_DRAIN_WAIT};
use crius_core::container::signal::signal_number;

impl Containers {
    /// Stops a container: its stop signal, then SIGKILL after `timeout`
    /// seconds (0: at once). Idempotent; unknown ids are fine.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let Some(c) = self.containers.find(id)? else {
            tracing::debug!(
                container = id,
                "StopContainer of an unknown id: nothing to do"
            );
            return Ok(());
        };
        // The grace period runs outside the operation lock: a stop with a
        // shorter one (kubelet's way of cutting a pod's grace period short)
        // or a removal kills at once meanwhile, as with containerd. Held
        // through it, a stop signal the process ignores (PID 1 ignores
        // SIGTERM without a handler) kept every other call on the
        // container waiting for the whole timeout.
        if timeout > 0 {
            self.stop_gracefully(&c, timeout).await?;
        }
        let _op = c.op.lock().await;
        self.stop_container_locked(&c).await
    }

    /// Sends `c`'s stop signal and waits up to `timeout` seconds for its
    /// exit; the SIGKILL is the caller's. The signal is sent under the
    /// operation lock, so it never reaches a task that a start has created
    /// but not started yet (runc would kill it, and the start fail).
    async fn stop_gracefully(&self, c: &Container, timeout: i64) -> Result<()> {
        let id = &c.meta.id;
        {
            let _op = c.op.lock().await;
            if !self.task_alive(id).await? {
                return Ok(());
            }
            let signal = signal_number(&c.meta.stop_signal).unwrap_or(15);
            // A task gone already is what the wait below finds.
            self.containerd.task_kill(id, signal, false).await?;
        }
        self.wait_task_exit(id, Duration::from_secs(timeout as u64))
            .await
            .map(|_| ())
    }

    /// Whether `id`'s task is there and not stopped.
    async fn task_alive(&self, id: &str) -> Result<bool> {
        Ok(self.containerd.task_get(id).await?.is_some_and(|t| {
            matches!(
                t.status,
                TaskStatus::Running | TaskStatus::Paused | TaskStatus::Created
            )
        }))
    }

    /// Kills `c` (held under its operation lock) and waits for its exit
    /// to be recorded.
    pub(crate) async fn stop_container_locked(&self, c: &Container) -> Result<()> {
        self.kill_task(c).await?;
        // Answer once the exit is recorded, as containerd does: a status
        // asked for next says EXITED.
        if c.status().state == ContainerState::Running {
            c.exit_recorded(LOG_DRAIN_WAIT + Duration::from_secs(3))
                .await;
        }
        Ok(())
    }

    /// SIGKILLs `c`'s task, if alive, and waits for it to die.
    pub(crate) async fn kill_task(&self, c: &Container) -> Result<()> {
        let id = &c.meta.id;
        if !self.task_alive(id).await? {
            return Ok(());
        }
        self.containerd.task_kill(id, 9, true).await?;
        if self.wait_task_exit(id, KILL_WAIT).await? {
            Ok(())
        } else {
            Err(Error::DeadlineExceeded(format!(
                "container {id} did not die within {KILL_WAIT:?} of SIGKILL"
            )))
        }
    }

    /// Whether the task exited within `limit`. The exit watcher deletes an
    /// exited task at once, which may cut this wait off: a task that is
    /// gone or stopped then counts as exited.
    pub(crate) async fn wait_task_exit(&self, id: &str, limit: Duration) -> Result<bool> {
        match tokio::time::timeout(limit, self.containerd.task_wait(id)).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => match self.containerd.task_get(id).await? {
                None => Ok(true),
                Some(t) if t.status == TaskStatus::Stopped => Ok(true),
                Some(_) => Err(e),
            },
            Err(_) => Ok(false),
        }
    }

    /// Stops every container of a sandbox (StopPodSandbox).
    pub(crate) async fn stop_containers_of(&self, sandbox_id: &str) -> Result<()> {
        for c in self
            .containers
            .all()
            .into_iter()
            .filter(|c| c.meta.sandbox_id == sandbox_id)
        {
            let _op = c.op.lock().await;
            self.stop_container_locked(&c).await?;
        }
        Ok(())
    }
}
