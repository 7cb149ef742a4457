//! Start-up: rebuild the sandbox index from containerd, then clean up what a
//! daemon that died half-way through a run left behind.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crius_containerd::{ContainerRecord, TaskInfo, TaskStatus};
use crius_core::config::Config;
use crius_core::sandbox::{SandboxState, labels};
use crius_core::status::{RecoveryPhase, RecoveryReport};
use crius_core::{Error, Result};
use futures::StreamExt;

use crate::container::Containers;
use crate::ctx::Ctx;
use crate::meta::{self, SandboxMeta};
use crate::podfs;
use crate::sandbox::Sandboxes;
use crate::store::Sandbox;

/// Sandboxes loaded at once at start-up.
const RECOVERY_CONCURRENCY: usize = 16;

/// Start-up recovery: the indexes rebuilt from containerd, the remains of
/// interrupted runs removed.
#[derive(Clone)]
pub(crate) struct Recovery {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) sandbox_ops: Sandboxes,
    pub(crate) container_ops: Containers,
}

/// The operations read the shared ports, directories and indexes as if
/// they were the service's own.
impl std::ops::Deref for Recovery {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

/// How long start-up waits for one task's state (containerd asks its
/// shim) before it goes on without it.
pub(crate) const TASK_STATE_WAIT: Duration = Duration::from_millis(500);
/// How long a question asked again in the background may take.
pub(crate) const TASK_STATE_RETRY_WAIT: Duration = Duration::from_secs(5);
/// The first pause before asking again; doubled up to [`RETRY_MAX`].
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(1);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);

impl Recovery {
    /// Rebuilds the index from containerd's records (bounded concurrency),
    /// reconciles each sandbox with its pause task, and removes the
    /// leftovers of interrupted runs. A shim that does not answer holds
    /// up nothing: its sandbox keeps its last known state (READY) until it
    /// does, and `Status` lists it as waiting.
    pub async fn recover(&self, config: &Config) -> Result<()> {
        let began = Instant::now();
        self.report(|r| r.phase = RecoveryPhase::Running);
        crate::exits::Exits::follow(&self.exits, self.containerd.clone(), &self.background);
        self.sandbox_ops.ensure_pause_image(config).await?;
        let filter = format!("labels.\"{}\"=={}", labels::KIND, labels::KIND_SANDBOX);
        let records = self.containerd.container_list(&[filter]).await?;
        let loaded: Vec<Option<(Sandbox, bool)>> = futures::stream::iter(records)
            .map(|r| self.load_sandbox(r))
            .buffer_unordered(RECOVERY_CONCURRENCY)
            .collect()
            .await;
        let (mut ready, mut not_ready) = (0, 0);
        let (mut running, mut unknown) = (Vec::new(), Vec::new());
        for (s, answered) in loaded.into_iter().flatten() {
            let m = &s.meta;
            let key = labels::sandbox_name_key(&m.name, &m.uid, &m.namespace, m.attempt);
            self.store.names.insert_taken(&key, &m.id);
            match s.state() {
                SandboxState::Ready => ready += 1,
                _ => not_ready += 1,
            }
            let s = Arc::new(s);
            if !answered {
                unknown.push(s.clone());
            } else if s.pid().is_some() {
                running.push(s.clone());
            }
            self.store.insert(s);
        }
        // Leases of creations and checkpoints a dead daemon left.
        for prefix in ["crius-sandbox-", "crius-checkpoint-"] {
            for lease in self.containerd.lease_list_prefix(prefix).await? {
                self.containerd.lease_delete(&lease).await?;
            }
        }
        let containers = self.container_ops.recover_containers().await?;
        // Watchers last: nothing above can fail any more.
        for s in running {
            self.sandbox_ops.watch_pause(s);
        }
        for s in unknown {
            self.learn_later(s);
        }
        let orphans = self.remove_orphans(config).await;
        let took = began.elapsed();
        self.report(|r| {
            r.phase = RecoveryPhase::Done;
            r.took_ms = Some(took.as_millis() as u64);
            r.sandboxes = ready + not_ready;
            r.containers = containers;
        });
        tracing::info!(
            ready,
            not_ready,
            containers,
            orphans,
            ?took,
            "sandboxes recovered"
        );
        Ok(())
    }

    /// Changes the recovery report.
    fn report(&self, f: impl FnOnce(&mut RecoveryReport)) {
        f(&mut crate::lock(&self.recovery));
    }

    /// One sandbox from its record (`None`: not crius', or unreadable), and
    /// whether its state is known: a pause pod whose shim did not answer
    /// is READY as it last was (not stopped, or its task would be gone).
    async fn load_sandbox(&self, r: ContainerRecord) -> Option<(Sandbox, bool)> {
        let Some(any) = r.extensions.get(meta::EXTENSION) else {
            tracing::warn!(id = %r.id, "sandbox record without crius metadata; ignoring it");
            return None;
        };
        let meta = match SandboxMeta::from_any(any) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(id = %r.id, "unreadable sandbox metadata; ignoring it: {e}");
                return None;
            }
        };
        let (sandbox, known) = self.sandbox_state(&r, meta).await;
        if let Some(resources) = recorded_resources(&r) {
            sandbox.set_resources(resources);
        }
        Some((sandbox, known))
    }

    /// A sandbox in the state its record or its task says, and whether
    /// that is known.
    async fn sandbox_state(&self, r: &ContainerRecord, meta: SandboxMeta) -> (Sandbox, bool) {
        if meta.pinned.is_some() {
            let stopped = r.extensions.contains_key(meta::STOPPED_EXTENSION);
            return (self.recovered_pinned(meta, stopped), true);
        }
        let Some(task) = self.ask_task(&r.id, TASK_STATE_WAIT).await else {
            return (Sandbox::new(meta, SandboxState::Ready), false);
        };
        let pid = self.pause_pid(&r.id, task).await;
        let sandbox = Sandbox::new(meta, SandboxState::recovered(Some(pid.is_some())));
        if let Some(pid) = pid {
            sandbox.set_pid(pid);
        }
        (sandbox, true)
    }

    /// The pause process of a pod from its task, while it runs. A task
    /// created but never started (a run cut short between the two) is
    /// killed and deleted, as containerd does: its `runc init` would
    /// otherwise wait forever behind a NOTREADY pod.
    async fn pause_pid(&self, id: &str, task: Option<TaskInfo>) -> Option<u32> {
        match task {
            Some(t) if t.status == TaskStatus::Running => Some(t.pid),
            Some(t) if t.status == TaskStatus::Created => {
                tracing::info!(
                    sandbox = id,
                    "a run cut short before its pause task started: deleting the task"
                );
                if let Err(e) = self.kill_and_delete_task(id).await {
                    tracing::warn!(sandbox = id, "deleting the unstarted pause task: {e}");
                }
                None
            }
            _ => None,
        }
    }

    /// Asks again, in the background, about a sandbox whose pause task's
    /// shim did not answer at start-up, until it does.
    fn learn_later(&self, s: Arc<Sandbox>) {
        let this = self.clone();
        let id = s.meta.id.clone();
        self.report(|r| r.waiting_for_shims.push(id.clone()));
        self.background
            .spawn("recovery: a silent shim", async move {
                let task = this.ask_until_answered(&id).await;
                let pid = this.pause_pid(&id, task).await;
                let current = this.store.find(&id).ok().flatten();
                // A stop or removal meanwhile has the last word.
                if current.is_some_and(|c| Arc::ptr_eq(&c, &s)) && s.state() == SandboxState::Ready
                {
                    match pid {
                        Some(pid) => {
                            s.set_pid(pid);
                            this.sandbox_ops.watch_pause(s);
                        }
                        None => s.pause_exited(),
                    }
                }
                this.report(|r| r.waiting_for_shims.retain(|w| *w != id));
                tracing::info!(sandbox = %id, "the pause task's shim answered at last");
            });
    }
}

impl Ctx {
    /// Asks about a task until its shim answers, with a growing pause.
    pub(crate) async fn ask_until_answered(&self, id: &str) -> Option<TaskInfo> {
        let mut delay = RETRY_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            if let Some(task) = self.ask_task(id, TASK_STATE_RETRY_WAIT).await {
                return task;
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

impl Recovery {
    /// A pinned pod as its record says: READY unless it was stopped, a pin
    /// of it is gone (its namespaces then are no longer whole) or its
    /// `/etc` files are (`state_dir` is a tmpfs: after a reboot the record
    /// outlives them, also for a pod with nothing pinned).
    fn recovered_pinned(&self, meta: SandboxMeta, stopped: bool) -> Sandbox {
        let pins = meta.pinned.clone().unwrap_or_default();
        let hostname = self.pods_dir().join(&meta.id).join("hostname");
        let whole = self.fs.read(&hostname).is_some()
            && pins
                .ipc
                .iter()
                .chain(&pins.uts)
                .chain(&meta.netns)
                .all(|p| self.net.netns_is_pinned(Path::new(p)));
        let sandbox = Sandbox::new(meta, SandboxState::recovered(Some(whole && !stopped)));
        if stopped {
            sandbox.set_marked_stopped();
        }
        sandbox
    }

    /// Pod directories and network namespaces no sandbox record owns: the
    /// remains of runs interrupted before their record was written.
    async fn remove_orphans(&self, config: &Config) -> usize {
        let mut removed = 0;
        let known = |id: &str| {
            self.store
                .find(id)
                .ok()
                .flatten()
                .is_some_and(|s| s.meta.id == id)
        };
        let orphans: Vec<String> = self
            .dir_names(&self.pods_dir())
            .into_iter()
            .filter(|e| !known(e))
            .collect();
        // A plugin still running an ADD would finish it after the DEL below.
        self.kill_lost_plugins(orphans.clone()).await;
        for entry in orphans {
            let dir = self.pods_dir().join(&entry);
            if let Some(meta) = podfs::read_intent(&*self.fs, &dir)
                && let Err(e) = self.teardown_network(config, &meta).await
            {
                tracing::warn!(sandbox = %entry, "orphan network: {e}");
            }
            if let Err(e) = self.fs.remove_pod_dir(&dir) {
                tracing::warn!(sandbox = %entry, "orphan directory: {e}");
            }
            removed += 1;
        }
        removed += self.remove_orphan_pins(&known).await;
        // Containers: FIFO directories, rootfs scratch mounts (`<id>.rootfs`),
        // image volumes and idmapped volume mounts of creates cut short.
        let known_container = |id: &str| {
            self.containers
                .find(id)
                .ok()
                .flatten()
                .is_some_and(|c| c.meta.id == id)
        };
        for base in [
            self.state_dir.join("containers"),
            config.root_dir.join("containers"),
        ] {
            for entry in self.dir_names(&base) {
                let id = entry.strip_suffix(".rootfs").unwrap_or(&entry);
                if known_container(id) && id == entry {
                    continue;
                }
                let path = base.join(&entry);
                let fs = self.fs.clone();
                let gone = crius_rt::blocking("orphan clean-up", {
                    let path = path.clone();
                    move || fs.remove_tree(&path, true)
                })
                .await;
                match gone {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "orphan container files: {e}")
                    }
                }
            }
        }
        // Work directories of checkpoints a dead daemon left (none runs
        // before recovery ends).
        let (fs, checkpoints) = (self.fs.clone(), config.root_dir.join("checkpoints"));
        let cleaned = crius_rt::blocking("old checkpoint work", move || {
            fs.remove_tree(&checkpoints, false)
        });
        if let Err(e) = cleaned.await {
            tracing::warn!("cannot remove old checkpoint work: {e}");
        }
        removed + self.remove_orphan_idmapped(&known_container).await
    }

    /// The idmapped volume mounts of containers that are gone (a create
    /// cut short), unmounted, never deleted through.
    async fn remove_orphan_idmapped(&self, known: &(dyn Fn(&str) -> bool + Sync)) -> usize {
        let mut removed = 0;
        for id in self.dir_names(&self.idmapped_dir()) {
            if known(&id) {
                continue;
            }
            let (fs, dir) = (self.fs.clone(), self.idmapped_dir().join(&id));
            let gone = crius_rt::blocking("orphan idmapped mounts", move || {
                fs.remove_mount_points(&dir)
            });
            match gone.await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(container = %id, "orphan idmapped mounts: {e}"),
            }
        }
        removed
    }

    /// Kills the CNI plugins a killed daemon left running for `ids`.
    async fn kill_lost_plugins(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let net = self.net.clone();
        let killed = crius_rt::blocking("CNI plugin clean-up", move || {
            Ok(net.kill_lost_plugins(&ids))
        });
        if let Err(e) = killed.await {
            tracing::warn!("looking for lost CNI plugins: {e}");
        }
    }

    /// Network namespaces and IPC/UTS pins (`<id>.ipc`, `<id>.uts`) no
    /// known sandbox owns.
    async fn remove_orphan_pins(&self, known: &impl Fn(&str) -> bool) -> usize {
        let mut removed = 0;
        for dir in [self.netns_dir(), self.pins_dir()] {
            for entry in self.dir_names(&dir) {
                let id = entry
                    .strip_suffix(".ipc")
                    .or_else(|| entry.strip_suffix(".uts"))
                    .unwrap_or(&entry);
                if known(id) {
                    continue;
                }
                let path = dir.join(&entry);
                if let Err(e) = self.net.netns_remove(&path).await {
                    tracing::warn!(pin = %path.display(), "orphan namespace: {e}");
                }
                removed += 1;
            }
        }
        removed
    }

    /// CNI DEL for a sandbox's network, if it has one.
    async fn teardown_network(&self, config: &Config, meta: &SandboxMeta) -> Result<()> {
        let (Some(network), Some(netns)) = (&meta.network, &meta.netns) else {
            return Ok(());
        };
        let net = self
            .net
            .load(&config.cni.conf_dir, &config.cni.bin_dirs)
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        if &net.name != network {
            return Err(Error::FailedPrecondition(format!(
                "network {network} is no longer configured"
            )));
        }
        let netns = if self.net.netns_is_pinned(Path::new(netns)) {
            Path::new(netns).to_path_buf()
        } else {
            Default::default()
        };
        self.net
            .del(&net, &crate::sandbox::attachment(meta, &netns))
            .await
    }
}

impl Recovery {
    /// The names in `dir`, without the temporary files of atomic writes.
    fn dir_names(&self, dir: &Path) -> Vec<String> {
        let mut names = self.fs.dir_names(dir);
        names.retain(|n| !n.ends_with(".tmp"));
        names
    }
}

/// What UpdatePodSandboxResources recorded on a sandbox's record.
fn recorded_resources(r: &ContainerRecord) -> Option<meta::PodResources> {
    let any = r.extensions.get(meta::RESOURCES_EXTENSION)?;
    match meta::from_any(any) {
        Ok(resources) => Some(resources),
        Err(e) => {
            tracing::warn!(id = %r.id, "unreadable pod resources; ignoring them: {e}");
            None
        }
    }
}
