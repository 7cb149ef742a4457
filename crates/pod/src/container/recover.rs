//! Start-up: containers from containerd's records, each reconciled with
//! its task.

use std::sync::Arc;

use crius_containerd::{TaskInfo, TaskStatus};
use crius_core::Result;
use futures::StreamExt;

use super::{
    Container, ContainerEvent, ContainerMeta, ContainerState, ContainerStatus, Containers,
    META_EXTENSION, STATUS_EXTENSION, VANISHED_EXIT_CODE, ns_of,
};
use crate::meta::from_any;
use crate::now_ns;
use crate::recover::TASK_STATE_WAIT;

/// Tasks asked about at once at start-up.
const ASK_CONCURRENCY: usize = 16;

impl Containers {
    /// Start-up: containers from containerd's records, each in the state
    /// its task says (see [`Containers::reconcile`]); a container whose
    /// shim does not answer keeps its recorded state and is reconciled in
    /// the background once it does. Returns how many were found.
    pub(crate) async fn recover_containers(&self) -> Result<usize> {
        let filter = format!(
            "labels.\"{}\"=={}",
            crius_core::sandbox::labels::KIND,
            crius_core::sandbox::labels::KIND_CONTAINER
        );
        let mut loaded = Vec::new();
        for r in self.containerd.container_list(&[filter]).await? {
            let (Some(m), Some(s)) = (
                r.extensions.get(META_EXTENSION),
                r.extensions.get(STATUS_EXTENSION),
            ) else {
                continue;
            };
            match (from_any::<ContainerMeta>(m), from_any::<ContainerStatus>(s)) {
                (Ok(mut m), Ok(s)) => {
                    // The spec is the truth: an update may have changed it.
                    m.resources = Some(crius_core::container::resources_in_force(&r.spec));
                    loaded.push(Arc::new(Container::new(m, s)))
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(container = %r.id, "unreadable crius metadata; ignoring the container: {e}");
                }
            }
        }
        let found = loaded.len();
        let asked: Vec<_> = futures::stream::iter(loaded)
            .map(|c| async move {
                let task = self.ask_task(&c.meta.id, TASK_STATE_WAIT).await;
                (c, task)
            })
            .buffer_unordered(ASK_CONCURRENCY)
            .collect()
            .await;
        for (c, task) in asked {
            if let Ok(Some(sandbox)) = self.store.find(&c.meta.sandbox_id) {
                let key = c.meta.name_key(&sandbox.meta.request());
                self.containers.names.insert_taken(&key, &c.meta.id);
            }
            self.containers.insert(c.clone());
            match task {
                Some(task) => self.reconcile(&c, task).await,
                None => self.reconcile_later(c),
            }
        }
        Ok(found)
    }

    /// Puts a recovered container in the state its task says: a running
    /// task is RUNNING (also when the daemon died before it recorded the
    /// start) and watched, its logs flowing again; a task created but never
    /// started (a start cut short) is deleted, so the container is CREATED
    /// and can be started; an exit that happened while the daemon was down
    /// is recorded.
    async fn reconcile(&self, c: &Arc<Container>, task: Option<TaskInfo>) {
        let state = c.status().state;
        let mut status = task.as_ref().map(|t| t.status);
        if let Some(TaskStatus::Paused | TaskStatus::Pausing) = status {
            // crius pauses a task only while it checkpoints it: a daemon
            // that died meanwhile left it frozen.
            tracing::info!(container = %c.meta.id, "resuming a task a checkpoint left paused");
            if let Err(e) = self.containerd.task_resume(&c.meta.id).await {
                tracing::error!(container = %c.meta.id, "cannot resume the paused task: {e}");
            }
            // Running either way: its logs and its exit are followed.
            status = Some(TaskStatus::Running);
        }
        match status {
            Some(TaskStatus::Running) => {
                if let (ContainerState::Created, Some(t)) = (state, &task) {
                    let started = ContainerEvent::Started {
                        pid: t.pid,
                        at: now_ns(),
                    };
                    self.record(c, started).await;
                }
                self.reattach(c).await;
                self.watch_exit(c.clone());
            }
            Some(TaskStatus::Created) if state == ContainerState::Created => {
                tracing::info!(container = %c.meta.id, "a start cut short before the task started: deleting the task");
                if let Err(e) = self.kill_and_delete_task(&c.meta.id).await {
                    tracing::warn!(container = %c.meta.id, "deleting the unstarted task: {e}");
                }
            }
            Some(TaskStatus::Stopped) if state != ContainerState::Exited => {
                let t = task.as_ref();
                let event = ContainerEvent::Exited {
                    exit_code: t.map_or(VANISHED_EXIT_CODE, |t| t.exit_status as i32),
                    at: ns_of(t.and_then(|t| t.exited_at)),
                    oom: false,
                };
                self.record(c, event).await;
            }
            None if state == ContainerState::Running => {
                let event = ContainerEvent::Vanished {
                    at: now_ns(),
                    message: "the task was gone when crius restarted".into(),
                };
                self.record(c, event).await;
            }
            _ => {}
        }
    }

    /// The log copy and stdin of a container still running.
    async fn reattach(&self, c: &Container) {
        let meta = &c.meta;
        let dir = self.containers_dir().join(&meta.id);
        let started = crius_logs::Fifos::paths(&dir, &meta.id, meta.tty)
            .and_then(|fifos| self.log_writer(meta)?.start(&fifos));
        match started {
            Ok(h) => c.set_log(Some(Arc::new(h))),
            Err(e) => tracing::warn!(container = %meta.id, "logs not reattached: {e}"),
        }
        // The FIFO is still there; the shim's side saw EOF when the
        // previous daemon's end closed, so this only keeps attach working
        // for a shim that kept it open.
        match self.open_stdin(c, &dir) {
            Ok(tx) => *c.stdin.lock().await = tx.map(|(_, tx)| tx),
            Err(e) => tracing::warn!(container = %meta.id, "stdin not reopened: {e}"),
        }
    }

    /// Reconciles, in the background, a container whose shim did not
    /// answer at start-up, once it does.
    fn reconcile_later(&self, c: Arc<Container>) {
        let this = self.clone();
        let id = c.meta.id.clone();
        crate::lock(&self.recovery)
            .waiting_for_shims
            .push(id.clone());
        self.background
            .spawn("recovery: a silent shim", async move {
                let task = this.ask_until_answered(&id).await;
                let current = this.containers.find(&id).ok().flatten();
                if current.is_some_and(|now| Arc::ptr_eq(&now, &c)) {
                    let _op = c.op.lock().await;
                    this.reconcile(&c, task).await;
                }
                crate::lock(&this.recovery)
                    .waiting_for_shims
                    .retain(|w| *w != id);
                tracing::info!(container = %id, "the task's shim answered at last");
            });
    }
}
