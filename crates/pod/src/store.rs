//! The in-memory index of sandboxes, rebuilt from containerd at start-up.
//!
//! Two levels: a std `RwLock` over the map (held for a lookup, never across
//! `.await`) and, per sandbox, immutable metadata plus a small status under a
//! std mutex and a tokio mutex that serializes the long operations (stop,
//! remove) of one sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crius_core::sandbox::{SandboxEvent, SandboxState};
use crius_core::{Error, Result};

use crate::meta::SandboxMeta;
use crate::registrar::Registrar;

/// One sandbox.
pub struct Sandbox {
    pub meta: SandboxMeta,
    state: Mutex<SandboxState>,
    /// The pause process while it runs; 0 otherwise.
    pid: std::sync::atomic::AtomicU32,
    /// The pod's network was torn down (by StopPodSandbox): RemovePodSandbox
    /// need not run CNI DEL again. Not persisted: after a restart DEL runs
    /// once more, which is harmless.
    network_down: std::sync::atomic::AtomicBool,
    /// A pinned pod's record says it was stopped
    /// ([`crate::meta::STOPPED_EXTENSION`]).
    marked_stopped: std::sync::atomic::AtomicBool,
    /// Held by stop and remove for their whole duration.
    pub(crate) op: tokio::sync::Mutex<()>,
    /// What UpdatePodSandboxResources last recorded.
    resources: Mutex<Option<crate::meta::PodResources>>,
}

impl Sandbox {
    pub fn new(meta: SandboxMeta, state: SandboxState) -> Self {
        Sandbox {
            meta,
            state: Mutex::new(state),
            pid: Default::default(),
            network_down: Default::default(),
            marked_stopped: Default::default(),
            op: tokio::sync::Mutex::new(()),
            resources: Mutex::new(None),
        }
    }

    /// What UpdatePodSandboxResources last recorded (`None`: never asked).
    pub fn resources(&self) -> Option<crate::meta::PodResources> {
        *crate::lock(&self.resources)
    }

    pub(crate) fn set_resources(&self, r: crate::meta::PodResources) {
        *crate::lock(&self.resources) = Some(r);
    }

    /// The pause process' pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(std::sync::atomic::Ordering::SeqCst)).filter(|p| *p != 0)
    }

    pub(crate) fn set_pid(&self, pid: u32) {
        self.pid.store(pid, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn network_down(&self) -> bool {
        self.network_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_network_down(&self) {
        self.network_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn marked_stopped(&self) -> bool {
        self.marked_stopped
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_marked_stopped(&self) {
        self.marked_stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The pause process exited (or was killed by a stop).
    pub(crate) fn pause_exited(&self) {
        self.set_pid(0);
        self.apply(SandboxEvent::TaskExited);
    }

    pub fn state(&self) -> SandboxState {
        *crate::lock(&self.state)
    }

    /// Moves the state as `event` says (`core::sandbox::state`). Sandbox
    /// states are not persisted: recovery reads them from the pause task.
    pub(crate) fn apply(&self, event: SandboxEvent) {
        let mut state = crate::lock(&self.state);
        let next = state.after(event);
        if next != *state {
            tracing::debug!(sandbox = %self.meta.id, from = ?*state, to = ?next, ?event, "sandbox state");
        }
        *state = next;
    }
}

/// Something the index holds, by id.
pub trait Keyed {
    /// The request field that names such an entry, for errors.
    const FIELD: &'static str;
    fn id(&self) -> &str;
}

impl Keyed for Sandbox {
    const FIELD: &'static str = "pod_sandbox_id";
    fn id(&self) -> &str {
        &self.meta.id
    }
}

impl Keyed for crate::container::Container {
    const FIELD: &'static str = "container_id";
    fn id(&self) -> &str {
        &self.meta.id
    }
}

/// All sandboxes (or containers), plus their name registrar.
pub struct Store<T> {
    map: RwLock<HashMap<String, Arc<T>>>,
    pub names: Registrar,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            map: RwLock::new(HashMap::new()),
            names: Registrar::default(),
        }
    }
}

impl<T: Keyed> Store<T> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<T>>> {
        match self.map.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<T>>> {
        match self.map.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn insert(&self, s: Arc<T>) {
        self.write().insert(s.id().to_string(), s);
    }

    pub fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    pub fn all(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }

    /// The entry an id or unique id prefix names.
    pub fn find(&self, id_or_prefix: &str) -> Result<Option<Arc<T>>> {
        // Impossible to answer (every id matches), as containerd's id
        // index refuses an empty prefix.
        if id_or_prefix.is_empty() {
            return Err(Error::invalid(T::FIELD, "must not be empty"));
        }
        let map = self.read();
        if let Some(s) = map.get(id_or_prefix) {
            return Ok(Some(s.clone()));
        }
        let found =
            crius_core::sandbox::id::match_prefix(map.keys().map(String::as_str), id_or_prefix)
                .map_err(|e| match e {
                    Error::InvalidArgument { reason, .. } => Error::invalid(T::FIELD, reason),
                    e => e,
                })?;
        Ok(found.and_then(|id| map.get(id).cloned()))
    }
}
