//! Container events (CRI `GetContainerEvents`, kubelet's evented PLEG):
//! each transition of a container or a pod sandbox (a sandbox's events
//! carry its own id as the container id, as containerd's do), with the
//! complete status of its pod and of all the pod's containers taken at
//! that moment from memory.
//!
//! One bounded broadcast ring ([`BUFFER`] events) whatever the number of
//! subscribers: publishing never waits, memory stays flat, and a
//! subscriber that falls behind by more than the ring loses its place
//! (its stream ends with an error and it subscribes again). A new
//! subscriber first gets one event per pod and container describing its
//! state now ([`Pods::subscribe_events`](crate::Pods::subscribe_events)),
//! so nothing that happened while it was away (a restart of criusd
//! included) goes unseen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crius_core::container::{ContainerState, ContainerStatus};
use crius_core::sandbox::SandboxState;
use tokio::sync::broadcast;

use crate::container::ContainerMeta;
use crate::sandbox::SandboxStatus;

/// Events kept for subscribers that have not read them yet.
pub const BUFFER: usize = 1024;

/// What happened (CRI's `ContainerEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

impl EventKind {
    /// The event that describes a container in `state` now.
    pub fn of_container(state: ContainerState) -> Self {
        match state {
            ContainerState::Created => EventKind::Created,
            ContainerState::Running => EventKind::Started,
            ContainerState::Exited | ContainerState::Unknown => EventKind::Stopped,
        }
    }

    /// The event that describes a sandbox in `state` now.
    pub fn of_sandbox(state: SandboxState) -> Self {
        match state {
            SandboxState::Ready => EventKind::Started,
            SandboxState::NotReady | SandboxState::Unknown => EventKind::Stopped,
        }
    }
}

/// One event: what happened to `container_id` (a container's or a
/// sandbox's id), and its pod as it was then.
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub container_id: String,
    pub kind: EventKind,
    /// Nanoseconds since the epoch.
    pub at: i64,
    /// `None` once the pod is gone.
    pub sandbox: Option<SandboxStatus>,
    /// Every container of the pod, oldest first.
    pub containers: Vec<(ContainerMeta, ContainerStatus)>,
}

/// The daemon's event ring.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Arc<PodEvent>>,
    /// The last kind published per id: a transition seen twice (a stop's,
    /// then the exit watcher's) is published once.
    last: Mutex<HashMap<String, EventKind>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::Sender::new(BUFFER),
            last: Mutex::default(),
        }
    }
}

impl Events {
    /// Publishes `event` unless it repeats the last one of its id; never
    /// waits.
    pub(crate) fn publish(&self, event: PodEvent) {
        {
            let mut last = crate::lock(&self.last);
            if event.kind == EventKind::Deleted {
                last.remove(&event.container_id);
            } else if last.insert(event.container_id.clone(), event.kind) == Some(event.kind) {
                return;
            }
        }
        tracing::debug!(id = %event.container_id, kind = ?event.kind, "event");
        // No subscriber: nothing to do.
        let _ = self.tx.send(Arc::new(event));
    }

    /// A receiver of every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<PodEvent>> {
        self.tx.subscribe()
    }
}
