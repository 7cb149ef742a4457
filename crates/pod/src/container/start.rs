//! StartContainer: the task with its log copy, and the exit watcher that
//! records how it ended.

use std::sync::Arc;
use std::time::Duration;

use crius_core::cgroup::{CgroupDriver, Controller};
use crius_core::{Error, Result};

use super::{
    Container, ContainerEvent, ContainerState, Containers, EXIT_EVENT_WAIT, LOG_DRAIN_WAIT,
    command_refused, ns_of, wait_log,
};
use crate::now_ns;
use crate::ports::Found;

impl Containers {
    /// Mounts again the image volumes a reboot took (the state directory is
    /// volatile; the views are containerd's): each must come back where the
    /// spec binds it.
    async fn ensure_image_volumes(&self, c: &Container) -> Result<()> {
        for v in &c.meta.image_volumes {
            let (dir, fs) = (std::path::PathBuf::from(&v.dir), self.fs.clone());
            let probe = dir.clone();
            if crius_rt::blocking("mount check", move || Ok(fs.mounted(&probe))).await? {
                continue;
            }
            let mount = c.meta.mounts.get(v.mount).cloned().unwrap_or_default();
            let view = self
                .containerd
                .snapshot_mounts(&v.snapshotter, &v.key)
                .await?;
            let fs = self.fs.clone();
            let sub = mount.image_sub_path.clone();
            let path = crius_rt::blocking("image volume mount", move || {
                fs.mount_image_volume(&view, &dir, &sub)
            })
            .await?;
            if path.display().to_string() != mount.host_path {
                return Err(Error::FailedPrecondition(format!(
                    "image volume {}: mounted again at {}, not at {} where the container binds it",
                    mount.container_path,
                    path.display(),
                    mount.host_path
                )));
            }
            tracing::info!(container = %c.meta.id, dir = %v.dir, "image volume mounted again");
        }
        Ok(())
    }

    /// Starts a created container and watches for its exit.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.find_container(id)?;
        let _op = c.op.lock().await;
        let st = c.status();
        if st.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not created",
                c.meta.id, st.state
            )));
        }
        self.require_ready_pod(&c)?;
        self.ensure_image_volumes(&c).await?;
        let started_at = now_ns();
        if let Err(e) = self.create_task(&c).await {
            // The runtime refused (e.g. the command does not exist), or the
            // pod stopped meanwhile and took its shim along: then that is
            // the answer.
            self.start_failed(&c, &e).await;
            self.require_ready_pod(&c)?;
            return Err(command_refused(e));
        }
        crius_rt::fault::point("container-task-created");
        match self.containerd.task_start(&c.meta.id).await {
            Ok(pid) => {
                crius_rt::fault::point("container-task-started");
                // The exit follower may have recorded a quick exit already:
                // the state machine keeps it.
                self.record(
                    &c,
                    ContainerEvent::Started {
                        pid,
                        at: started_at,
                    },
                )
                .await;
                self.watch_exit(c.clone());
                tracing::info!(container = %c.meta.id, pid, "container started");
                Ok(())
            }
            Err(e) => {
                // The task exists but its process would not start: the
                // task, the log copy and the FIFOs go now.
                if let Err(d) = self.kill_and_delete_task(&c.meta.id).await {
                    tracing::warn!(container = %c.meta.id, "after a failed start: task: {d}");
                }
                if let Some(log) = c.log() {
                    log.stop();
                    let _ = tokio::time::timeout(LOG_DRAIN_WAIT, wait_log(log)).await;
                }
                c.set_log(None);
                let dir = self.containers_dir().join(&c.meta.id);
                if let Err(d) = self.fs.remove_tree(&dir, false) {
                    tracing::warn!(container = %c.meta.id, "after a failed start: FIFOs: {d}");
                }
                self.start_failed(&c, &e).await;
                Err(command_refused(e))
            }
        }
    }

    /// A container starts only in a ready pod, as in containerd: a
    /// stopped pod's namespaces are gone (the runtime would fail joining
    /// them). The container stays CREATED.
    fn require_ready_pod(&self, c: &Container) -> Result<()> {
        let ready = self
            .store
            .find(&c.meta.sandbox_id)?
            .is_some_and(|s| s.state() == crius_core::sandbox::SandboxState::Ready);
        if ready {
            Ok(())
        } else {
            Err(Error::FailedPrecondition(format!(
                "pod sandbox {} of container {} is not ready",
                c.meta.sandbox_id, c.meta.id
            )))
        }
    }

    /// Records a start the runtime refused (e.g. the command does not exist).
    pub(crate) async fn start_failed(&self, c: &Container, e: &Error) {
        let event = ContainerEvent::StartFailed {
            at: now_ns(),
            message: e.to_string(),
        };
        self.record(c, event).await;
    }

    /// The container's task, with its stdout/stderr FIFOs copied into the
    /// log; created at start (as containerd's CRI does), so a command the
    /// runtime cannot run fails StartContainer, not CreateContainer.
    pub(crate) async fn create_task(&self, c: &Container) -> Result<()> {
        let id = &c.meta.id;
        let snapshotter = if c.meta.snapshotter.is_empty() {
            self.containerd
                .container_get(id)
                .await?
                .map(|r| r.snapshotter)
                .ok_or_else(|| Error::not_found(format!("container {id}")))?
        } else {
            c.meta.snapshotter.clone()
        };
        let mounts = self.containerd.snapshot_mounts(&snapshotter, id).await?;
        let dir = self.containers_dir().join(id);
        let fifos = crius_logs::create_fifos(&dir, id, c.meta.tty)?;
        let log = self.log_writer(&c.meta)?.start(&fifos)?;
        let mut stdio = super::fifo_stdio(&fifos, c.meta.tty);
        let stdin = match self.open_stdin(c, &dir) {
            Ok(stdin) => stdin,
            Err(e) => {
                log.stop();
                let _ = crius_logs::remove_fifos(&fifos);
                return Err(e);
            }
        };
        if let Some((path, _)) = &stdin {
            stdio.stdin = path.display().to_string();
        }
        match self
            .containerd
            .task_create(id, mounts, &stdio, &c.meta.runtime_path)
            .await
        {
            Ok(_) => {
                c.set_log(Some(Arc::new(log)));
                *c.stdin.lock().await = stdin.map(|(_, tx)| tx);
                Ok(())
            }
            Err(e) => {
                log.stop();
                let _ = crius_logs::remove_fifos(&fifos);
                if let Some((path, _)) = stdin {
                    let _ = std::fs::remove_file(path);
                }
                Err(e)
            }
        }
    }

    /// A container with `stdin`: its stdin FIFO in `dir`, with the write
    /// end crius keeps open (so the process never reads EOF until an
    /// attach with `stdin_once` ends, or the container does).
    pub(crate) fn open_stdin(
        &self,
        c: &Container,
        dir: &std::path::Path,
    ) -> Result<Option<(std::path::PathBuf, tokio::net::unix::pipe::Sender)>> {
        if !c.meta.stdin {
            return Ok(None);
        }
        let path = crius_logs::create_stdin_fifo(dir, &c.meta.id)?;
        let tx = crate::streaming::open_stdin_sender(&path)?;
        Ok(Some((path, tx)))
    }

    /// Waits for the container's task to exit and records it.
    pub(crate) fn watch_exit(&self, c: Arc<Container>) {
        let pods = self.clone();
        self.background.spawn("exit watcher", async move {
            let exit = loop {
                match pods.containerd.task_wait(&c.meta.id).await {
                    Ok(Found::Here(exit)) => break Some(exit),
                    // Gone: when its shim died, containerd published the
                    // exit (128 + SIGKILL) and cleaned the task up; the
                    // event may still be on its way, also when the shim
                    // died before this first Wait.
                    Ok(Found::Gone) => {
                        break pods.exits.wait(&c.meta.id, EXIT_EVENT_WAIT).await;
                    }
                    Err(e) => {
                        tracing::warn!(container = %c.meta.id, "waiting for the exit: {e}; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            pods.record_exit(&c, exit).await;
        });
    }

    pub(crate) async fn record_exit(
        &self,
        c: &Container,
        exit: Option<crius_containerd::TaskExit>,
    ) {
        // The log first, as containerd does: whoever sees EXITED finds the
        // whole output in the log file.
        if let Some(log) = c.log() {
            let _ = tokio::time::timeout(LOG_DRAIN_WAIT, wait_log(log)).await;
        }
        // No one can write to a process that is gone.
        *c.stdin.lock().await = None;
        let oom = self.oom_killed(&c.meta.id).await;
        // As containerd does: the task goes at once (its rootfs unmounted,
        // the shim's resources freed), not at RemoveContainer; and before
        // the status says EXITED, so that no one else deletes it meanwhile.
        if let Err(e) = self.containerd.task_delete(&c.meta.id).await {
            tracing::warn!(container = %c.meta.id, "deleting the exited task: {e}");
        }
        let event = match exit {
            Some(e) => ContainerEvent::Exited {
                exit_code: e.exit_status as i32,
                at: ns_of(e.exited_at),
                oom,
            },
            None => ContainerEvent::Vanished {
                at: now_ns(),
                message: "the task disappeared".into(),
            },
        };
        let st = self.record(c, event).await;
        c.exit_recorded.send_replace(true);
        tracing::info!(container = %c.meta.id, exit_code = st.exit_code, reason = %st.reason, "container exited");
    }

    /// Whether the container was OOM-killed: containerd's `/tasks/oom`
    /// event, else (cgroup v1) the memory cgroup's `oom_kill` count.
    pub(crate) async fn oom_killed(&self, id: &str) -> bool {
        if self.exits.take_oom(id) {
            return true;
        }
        let Ok(Some(record)) = self.containerd.container_get(id).await else {
            return false;
        };
        let Some(path) = record
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
        else {
            return false;
        };
        let path = path.display().to_string();
        let driver = CgroupDriver::of_cgroups_path(&path);
        let unified = self.host.cgroup_unified;
        let Some(dir) = crius_core::cgroup::cgroup_dir(driver, &path, unified, Controller::Memory)
        else {
            return false;
        };
        self.fs
            .read_text(&dir.join("memory.oom_control"))
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("oom_kill ") && !l.ends_with(" 0"))
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_runc_cannot_run_is_the_clients() {
        let runc = Error::Containerd {
            op: "task create",
            message: "failed to create shim task: OCI runtime create failed: runc create failed: \
                      unable to start container process: exec: \"/no/such\": stat /no/such: \
                      no such file or directory: unknown"
                .into(),
        };
        match command_refused(runc) {
            Error::FailedPrecondition(m) => assert!(m.contains("/no/such"), "{m}"),
            other => panic!("{other:?}"),
        }
        let init = Error::Containerd {
            op: "task create",
            message: "failed to create shim task: OCI runtime create failed: runc create failed: \
                      unable to start container process: error during container init: \
                      error reopening /dev/null inside container: open /dev/null: is a directory"
                .into(),
        };
        assert!(matches!(
            command_refused(init),
            Error::FailedPrecondition(_)
        ));
        let other = Error::Containerd {
            op: "task create",
            message: "failed to mount rootfs".into(),
        };
        assert!(matches!(command_refused(other), Error::Containerd { .. }));
    }
}
