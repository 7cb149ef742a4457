//! Start-up: containers from containerd's records.

use std::sync::Arc;

use crius_containerd::TaskStatus;
use crius_core::Result;

use super::{
    Container, ContainerEvent, ContainerMeta, ContainerState, ContainerStatus, Containers,
    META_EXTENSION, STATUS_EXTENSION, VANISHED_EXIT_CODE, ns_of,
};
use crate::meta::from_any;
use crate::now_ns;

impl Containers {
    /// Start-up: containers from containerd's records; exits that happened
    /// while the daemon was down are recorded; running ones are watched and
    /// their logs keep flowing.
    pub(crate) async fn recover_containers(&self) -> Result<()> {
        let filter = format!(
            "labels.\"{}\"=={}",
            crius_core::sandbox::labels::KIND,
            crius_core::sandbox::labels::KIND_CONTAINER
        );
        // First everything that can fail (a retry then starts afresh),
        // then what starts copiers and watchers.
        let mut loaded = Vec::new();
        for r in self.containerd.container_list(&[filter]).await? {
            let (Some(m), Some(s)) = (
                r.extensions.get(META_EXTENSION),
                r.extensions.get(STATUS_EXTENSION),
            ) else {
                continue;
            };
            let (meta, status): (ContainerMeta, ContainerStatus) = match (from_any(m), from_any(s))
            {
                (Ok(m), Ok(s)) => (m, s),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(container = %r.id, "unreadable crius metadata; ignoring the container: {e}");
                    continue;
                }
            };
            let task = self.containerd.task_get(&meta.id).await?;
            loaded.push((meta, status, task));
        }
        for (meta, status, task) in loaded {
            let c = Arc::new(Container::new(meta.clone(), status.clone()));
            match task.as_ref().map(|t| t.status) {
                Some(TaskStatus::Running) => {
                    let writer = self.log_writer(&meta);
                    let started = crius_logs::Fifos::paths(
                        &self.containers_dir().join(&meta.id),
                        &meta.id,
                        meta.tty,
                    )
                    .and_then(|fifos| writer?.start(&fifos));
                    match started {
                        Ok(h) => c.set_log(Some(Arc::new(h))),
                        Err(e) => tracing::warn!(container = %meta.id, "logs not reattached: {e}"),
                    }
                    // The FIFO is still there; the shim's side saw EOF
                    // when the previous daemon's end closed, so this only
                    // keeps attach working for a shim that kept it open.
                    match self.open_stdin(&c, &self.containers_dir().join(&meta.id)) {
                        Ok(tx) => *c.stdin.lock().await = tx.map(|(_, tx)| tx),
                        Err(e) => tracing::warn!(container = %meta.id, "stdin not reopened: {e}"),
                    }
                    self.watch_exit(c.clone());
                }
                Some(TaskStatus::Stopped) if status.state != ContainerState::Exited => {
                    let t = task.as_ref();
                    let event = ContainerEvent::Exited {
                        exit_code: t.map_or(VANISHED_EXIT_CODE, |t| t.exit_status as i32),
                        at: ns_of(t.and_then(|t| t.exited_at)),
                        oom: false,
                    };
                    self.record(&c, event).await;
                }
                None if status.state == ContainerState::Running => {
                    let event = ContainerEvent::Vanished {
                        at: now_ns(),
                        message: "the task was gone when crius restarted".into(),
                    };
                    self.record(&c, event).await;
                }
                _ => {}
            }
            if let Ok(Some(sandbox)) = self.store.find(&meta.sandbox_id) {
                let key = meta.name_key(&sandbox.meta.request());
                self.containers.names.insert_taken(&key, &meta.id);
            }
            self.containers.insert(c);
        }
        Ok(())
    }
}
