//! PodSandboxStatus, ListPodSandbox, and the pause process' watcher that
//! keeps both answering from memory.

use crius_core::filter::Selector;
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::TaskStatus;
use crius_core::sandbox::{SandboxEvent, SandboxState};
use crius_core::{Error, Result};
use std::path::Path;

use super::{ListFilter, SandboxStatus, Sandboxes};
use crate::events::EventKind;
use crate::store::Sandbox;

impl Sandboxes {
    /// A sandbox's status, checked against its pause task.
    pub async fn status(&self, id: &str, verbose: bool) -> Result<SandboxStatus> {
        let sandbox = self
            .store
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id}")))?;
        // From memory: the pause process' watcher turns the sandbox NOTREADY
        // when it exits (kubelet asks for every pod's status every second).
        // A verbose status also asks containerd.
        self.check_pins(&sandbox);
        // Only a task that is gone or stopped is an exit: a shim that does
        // not know (UNKNOWN, a shim still busy after a restart) is no news.
        if verbose && sandbox.meta.pinned.is_none() {
            let ended = self
                .containerd
                .task_get(&sandbox.meta.id)
                .await?
                .is_none_or(|t| t.status == TaskStatus::Stopped);
            if ended {
                sandbox.pause_exited();
            }
        }
        let spec = if verbose {
            self.containerd
                .container_get(&sandbox.meta.id)
                .await?
                .and_then(|r| serde_json::to_value(r.spec).ok())
        } else {
            None
        };
        Ok(SandboxStatus::of(&sandbox, spec))
    }

    /// Sandboxes matching `filter`, oldest first, shared (not copied).
    pub fn list(&self, filter: &ListFilter) -> Vec<(Arc<Sandbox>, SandboxState)> {
        let mut out: Vec<_> = self
            .store
            .all()
            .into_iter()
            .filter(|s| {
                Selector::new(&filter.id, &filter.label_selector).matches(
                    &s.meta.id,
                    "",
                    &s.meta.labels,
                )
            })
            .inspect(|s| self.check_pins(s))
            .filter(|s| filter.state.is_none_or(|st| s.state() == st))
            .map(|s| {
                let state = s.state();
                (s, state)
            })
            .collect();
        out.sort_by_key(|(s, _)| s.meta.created_at);
        out
    }

    /// A ready pinned pod whose namespace pins (or network namespace) are
    /// gone turns NOTREADY: nothing else would notice, as no process of
    /// its own watches them. A few `statfs` calls.
    fn check_pins(&self, sandbox: &Sandbox) {
        let Some(pins) = &sandbox.meta.pinned else {
            return;
        };
        if sandbox.state() != SandboxState::Ready {
            return;
        }
        let mut paths = pins.ipc.iter().chain(&pins.uts).chain(&sandbox.meta.netns);
        if let Some(lost) = paths.find(|p| !self.net.netns_is_pinned(Path::new(p))) {
            tracing::warn!(sandbox = %sandbox.meta.id, pin = %lost, "a pinned namespace of the pod is gone");
            sandbox.apply(SandboxEvent::PinLost);
            self.emit(EventKind::Stopped, &sandbox.meta.id, &sandbox.meta.id);
        }
    }

    /// Waits for the pause process to exit and turns the sandbox NOTREADY,
    /// so that status and list answer from memory.
    pub(crate) fn watch_pause(&self, sandbox: Arc<Sandbox>) {
        let pods = self.clone();
        self.background.spawn("pause watcher", async move {
            loop {
                match pods.containerd.task_wait(&sandbox.meta.id).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(sandbox = %sandbox.meta.id, "waiting for the pause process: {e}; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            sandbox.pause_exited();
            let id = &sandbox.meta.id;
            pods.emit(EventKind::of_sandbox(sandbox.state()), id, id);
            tracing::debug!(sandbox = %id, "pause process exited");
        });
    }
}
