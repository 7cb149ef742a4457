//! Pods: the lifecycle of pod sandboxes over containerd (a pause container
//! per pod), CNI (the pod network) and files under the daemon's state
//! directory (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, `/dev/shm`).
//!
//! containerd's container records are the source of truth: each sandbox's
//! record carries its labels and, as an extension, [`meta::SandboxMeta`];
//! a restarted daemon rebuilds its index from them ([`Pods::recover`]).
//!
//! [`Pods`] is the entry point the server holds; it hands each call to the
//! service that owns it: the sandboxes (`sandbox::{run, stop, remove,
//! status}`), the containers (`container::{create, start, stop, remove,
//! status, recover}`), ExecSync (`container::exec`), the stats (`stats`)
//! and start-up recovery (`recover`). They share one context (`ctx`): the ports ([`ports`]: the
//! real adapters, or [`fake`]s in tests), the directories, the indexes and
//! the background tasks.
//!
//! Lock policy: std locks (`Mutex`, `RwLock`) guard plain values for a few
//! instructions and are never held across an `.await`; a poisoned one is
//! taken over (`PoisonError::into_inner`, through `lock()` for mutexes),
//! since a panic cannot leave such a value half-changed. Long operations on one object (stop, remove, a
//! status change persisted then published) hold that object's tokio mutex.

mod archive;
#[cfg(test)]
mod checkpoint_tests;
pub mod container;
mod ctx;
pub mod events;
#[cfg(test)]
mod events_tests;
mod exits;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
mod host;
mod meta;
#[cfg(test)]
mod pinned_tests;
mod podfs;
pub mod ports;
mod real;
mod recover;
#[cfg(test)]
mod recovery_tests;
pub mod registrar;
mod rootfs;
mod sandbox;
mod stats;
mod steps;
mod store;
pub mod streaming;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::Containerd;
use crius_core::Result;
use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::container::{ContainerRequest, ContainerResources};
use crius_core::image::CriImage;
use crius_core::sandbox::{PodSandboxRequest, SandboxState};
use crius_image::Images;
use crius_network::exec::Cni;

use container::{ContainerFilter, ContainerMeta, ContainerStatus, Containers, Exec, ExecOutput};
use ctx::Ctx;
use recover::Recovery;
use sandbox::Sandboxes;
use stats::Stats;

pub use meta::{ModeRecord, NamespaceRecord, PodResources, PortRecord, SandboxMeta};
pub use sandbox::{ListFilter, SandboxStatus};
pub use stats::{ContainerUsage, PodUsage, StatsFilter};
pub use store::Sandbox;

/// Nanoseconds since the Unix epoch by the system clock (0 if it reads
/// before the epoch).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Locks `m`, taking a poisoned lock over: the crate's one lock policy
/// (see the crate docs).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The adapters a [`Pods`] works through (see [`ports`]).
#[derive(Clone)]
pub struct Ports {
    pub containerd: Arc<dyn ports::Containerd>,
    pub images: Arc<dyn ports::ImageStore>,
    pub network: Arc<dyn ports::Network>,
    pub fs: Arc<dyn ports::HostFs>,
    pub runtimes: Arc<dyn ports::OciRuntimes>,
}

/// Pod sandboxes and their containers in one containerd namespace.
///
/// Every call that changes something runs in a task of its own
/// (`crius_rt::detached`): a client that gives up (its deadline, a
/// dropped connection) does not cut a task create, a kill or a removal
/// short halfway, which would leave a half-made shim for the next call.
pub struct Pods {
    ctx: Arc<Ctx>,
    sandboxes: Sandboxes,
    containers: Containers,
    exec: Exec,
    stats: Stats,
    recovery: Recovery,
}

impl Pods {
    /// `state_dir` is the daemon's volatile state directory; `apparmor` is
    /// what the daemon's start-up found (and loaded).
    pub fn new(
        containerd: Containerd,
        images: Arc<Images>,
        cni_bin_dirs: Vec<PathBuf>,
        state_dir: PathBuf,
        pause: &'static [u8],
        apparmor: crius_core::apparmor::Mode,
    ) -> Self {
        let ports = Ports {
            containerd: Arc::new(real::Containerd(containerd)),
            images: Arc::new(real::ImageStore(images)),
            network: Arc::new(real::Network(Cni::new(
                cni_bin_dirs,
                state_dir.join("cni-cache"),
            ))),
            fs: Arc::new(real::HostFs),
            runtimes: Arc::new(host::OciRuntimes::default()),
        };
        Self::with_ports(ports, state_dir, pause, host::facts(apparmor))
    }

    /// Pods over the given adapters (fakes, in tests) and host facts.
    pub fn with_ports(
        ports: Ports,
        state_dir: PathBuf,
        pause: &'static [u8],
        host: crius_core::container::HostFacts,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            containerd: ports.containerd,
            images: ports.images,
            net: ports.network,
            fs: ports.fs,
            runtimes: ports.runtimes,
            background: crius_rt::Background::new(),
            state_dir,
            host,
            pause,
            store: store::Store::default(),
            containers: store::Store::default(),
            exits: Arc::default(),
            cpu_samples: Default::default(),
            recovery: Default::default(),
            events: Default::default(),
        });
        let containers = Containers { ctx: ctx.clone() };
        let sandboxes = Sandboxes {
            ctx: ctx.clone(),
            container_ops: containers.clone(),
        };
        Pods {
            exec: Exec { ctx: ctx.clone() },
            stats: Stats { ctx: ctx.clone() },
            recovery: Recovery {
                ctx: ctx.clone(),
                sandbox_ops: sandboxes.clone(),
                container_ops: containers.clone(),
            },
            ctx,
            sandboxes,
            containers,
        }
    }

    /// The CRI streaming backend (Exec, Attach, PortForward) over these
    /// pods, for the streaming server.
    pub fn streams(&self) -> streaming::Streams {
        streaming::Streams {
            ctx: self.ctx.clone(),
        }
    }

    /// Stops the exit watchers and event followers and waits up to `grace`
    /// for them; returns how many were still running. Containers keep
    /// running: a restarted daemon recovers them.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.ctx.background.shutdown(grace).await
    }

    /// A subscription to container and pod events: first one event per
    /// pod and container saying what it is in now, then every transition
    /// (see [`events`]).
    pub fn subscribe_events(
        &self,
    ) -> (
        Vec<events::PodEvent>,
        tokio::sync::broadcast::Receiver<Arc<events::PodEvent>>,
    ) {
        // Subscribed first: a transition during the snapshot is seen twice
        // at worst, never lost.
        let rx = self.ctx.events.subscribe();
        let mut now = Vec::new();
        for (s, _) in self.sandboxes.list(&ListFilter::default()) {
            let id = &s.meta.id;
            let sandbox = SandboxStatus::of(&s, None);
            let containers = self.ctx.containers_now(id);
            let kind = events::EventKind::of_sandbox(sandbox.state);
            let event = |id: &str, kind| events::PodEvent {
                container_id: id.to_string(),
                kind,
                at: now_ns(),
                sandbox: Some(sandbox.clone()),
                containers: containers.clone(),
            };
            now.push(event(id, kind));
            for (meta, st) in &containers {
                now.push(event(&meta.id, events::EventKind::of_container(st.state)));
            }
        }
        (now, rx)
    }

    /// Rebuilds the indexes from containerd's records and removes the
    /// leftovers of interrupted runs (start-up).
    pub async fn recover(self: &Arc<Self>, config: &Config) -> Result<()> {
        self.recovery.recover(config).await
    }

    /// The handlers `Status` advertises, with what works on each (their
    /// OCI runtimes asked, once each, what they support).
    pub async fn advertised_handlers(
        &self,
        config: &Config,
    ) -> Vec<(String, crius_core::runtime::HandlerFeatures)> {
        let mut oci = std::collections::HashMap::new();
        for binary in crius_core::status::runtimes_to_ask(config) {
            if let Some(f) = self.ctx.runtimes.features(&binary).await {
                oci.insert(binary, f);
            }
        }
        crius_core::status::advertised_handlers(config, &oci, self.ctx.host.kernel_version)
    }

    /// What start-up recovery did and still does.
    pub fn recovery_report(&self) -> crius_core::status::RecoveryReport {
        crate::lock(&self.ctx.recovery).clone()
    }

    /// Runs a sandbox; returns its id. An identical retry of a request in
    /// flight gets the same id.
    pub async fn run(
        self: &Arc<Self>,
        config: Arc<Config>,
        driver: CgroupDriver,
        req: PodSandboxRequest,
    ) -> Result<String> {
        self.sandboxes.run(config, driver, req).await
    }

    /// Builds the built-in pause image when it is missing.
    pub async fn ensure_pause_image(&self, config: &Config) -> Result<CriImage> {
        self.sandboxes.ensure_pause_image(config).await
    }

    /// Stops a sandbox (idempotent; unknown ids are fine).
    pub async fn stop(&self, config: &Config, id: &str) -> Result<()> {
        let (ops, config, id) = (self.sandboxes.clone(), config.clone(), id.to_string());
        crius_rt::detached("sandbox stop", async move { ops.stop(&config, &id).await }).await
    }

    /// Removes a sandbox, stopping it first (unknown ids are fine).
    pub async fn remove(&self, config: &Config, id: &str) -> Result<()> {
        let (ops, config, id) = (self.sandboxes.clone(), config.clone(), id.to_string());
        crius_rt::detached(
            "sandbox removal",
            async move { ops.remove(&config, &id).await },
        )
        .await
    }

    /// Records a pod's new size (UpdatePodSandboxResources).
    pub async fn update_sandbox_resources(&self, id: &str, update: PodResources) -> Result<()> {
        let (ops, id) = (self.sandboxes.clone(), id.to_string());
        crius_rt::detached("sandbox update", async move {
            ops.update_resources(&id, update).await
        })
        .await
    }

    /// A sandbox's status.
    pub async fn status(&self, id: &str, verbose: bool) -> Result<SandboxStatus> {
        self.sandboxes.status(id, verbose).await
    }

    /// Sandboxes matching `filter`, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Vec<(Arc<Sandbox>, SandboxState)> {
        self.sandboxes.list(filter)
    }

    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        self: &Arc<Self>,
        config: Arc<Config>,
        driver: CgroupDriver,
        sandbox_id: &str,
        req: ContainerRequest,
    ) -> Result<String> {
        self.containers
            .create_container(config, driver, sandbox_id, req)
            .await
    }

    /// Starts a created container and watches for its exit.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let (ops, id) = (self.containers.clone(), id.to_string());
        crius_rt::detached(
            "container start",
            async move { ops.start_container(&id).await },
        )
        .await
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout`
    /// seconds (idempotent; unknown ids are fine).
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let (ops, id) = (self.containers.clone(), id.to_string());
        crius_rt::detached("container stop", async move {
            ops.stop_container(&id, timeout).await
        })
        .await
    }

    /// Removes a container, killing it first (unknown ids are fine).
    pub async fn remove_container(&self, config: &Config, id: &str) -> Result<()> {
        let (ops, config, id) = (self.containers.clone(), config.clone(), id.to_string());
        crius_rt::detached("container removal", async move {
            ops.remove_container(&config, &id).await
        })
        .await
    }

    /// A container's metadata and status.
    pub fn container_status(&self, id: &str) -> Result<(ContainerMeta, ContainerStatus)> {
        self.containers.container_status(id)
    }

    /// Containers matching `filter`, oldest first.
    pub fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Vec<(ContainerMeta, ContainerStatus)> {
        self.containers.list_containers(filter)
    }

    /// Runs `cmd` in a running container (ExecSync).
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecOutput> {
        self.exec.exec_sync(id, cmd, timeout).await
    }

    /// Applies new resources to a running container.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: &ContainerResources,
    ) -> Result<()> {
        let (ops, id, resources) = (self.containers.clone(), id.to_string(), resources.clone());
        crius_rt::detached("container update", async move {
            ops.update_container_resources(&id, &resources).await
        })
        .await
    }

    /// Checkpoints a running container into the archive `location` (an
    /// absolute path); it keeps running. Returns the archive's size. With a
    /// `timeout`, nothing is written once it has passed.
    pub async fn checkpoint_container(
        &self,
        config: &Config,
        id: &str,
        location: &Path,
        timeout: Option<Duration>,
    ) -> Result<u64> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let (ops, id, location) = (
            self.containers.clone(),
            id.to_string(),
            location.to_path_buf(),
        );
        let work_root = config.root_dir.join("checkpoints");
        crius_rt::detached("container checkpoint", async move {
            ops.checkpoint_container(&work_root, &id, (&location, deadline))
                .await
        })
        .await
    }

    /// Reopens a running container's log file.
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.containers.reopen_container_log(id).await
    }

    /// Usage of a pod sandbox and its running containers.
    pub async fn pod_sandbox_stats(&self, id: &str, driver: CgroupDriver) -> Result<PodUsage> {
        self.stats.pod_sandbox_stats(id, driver).await
    }

    /// Usage of the ready sandboxes `id` (a prefix) and `label_selector`
    /// select.
    pub async fn list_pod_sandbox_stats(
        &self,
        id: &str,
        label_selector: &BTreeMap<String, String>,
        driver: CgroupDriver,
    ) -> Result<Vec<PodUsage>> {
        self.stats
            .list_pod_sandbox_stats(id, label_selector, driver)
            .await
    }

    /// Usage of a container.
    pub async fn container_stats(&self, id: &str) -> Result<ContainerUsage> {
        self.stats.container_stats(id).await
    }

    /// Usage of the containers `filter` selects.
    pub async fn list_container_stats(&self, filter: &StatsFilter) -> Result<Vec<ContainerUsage>> {
        self.stats.list_container_stats(filter).await
    }
}
