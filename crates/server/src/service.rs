//! The services of the RPCs that no adapter owns whole: the runtime's
//! status (start-up, containerd, CNI, handlers' shims, AppArmor) and stats
//! with the filesystems of writable layers (pods' usage from `crius-pod`,
//! snapshotter roots from containerd). Each gathers facts from the adapters
//! and leaves the rules to [`crius_core::status`]; the handlers translate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::Usage;
use crius_core::config::Config;
use crius_core::status::{
    self, Condition, ContainerdVersion, Facts, RuntimeProblem, RuntimeStatus,
};
use crius_core::{Error, Result};
use crius_cri_api::CRI_API_VERSION;
use crius_pod::{ContainerUsage, PodUsage, StatsFilter, now_ns};

use crate::state::State;

/// How long `Status` waits for containerd before calling it not ready.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl State {
    /// What `Status` answers; `verbose` adds the report.
    pub(crate) async fn runtime_status(&self, verbose: bool) -> Result<RuntimeStatus> {
        let config = self.config();
        let (runtime, containerd) = self.runtime_condition().await;
        let network =
            match crius_network::cni::load_async(&config.cni.conf_dir, &config.cni.bin_dirs).await?
            {
                Ok(_) => status::network_condition(None),
                Err(e) => status::network_condition(Some(e.to_string())),
            };
        let facts = match verbose {
            true => Some(self.facts(&config, containerd).await),
            false => None,
        };
        let verbose = facts.as_ref().map(|f| (f, self.apparmor()));
        // Until start-up is done nothing is advertised (kubelet asks
        // again every few seconds).
        let handlers = match self.backend() {
            Ok(b) => b.pods.advertised_handlers(&config).await,
            Err(_) => status::advertised_handlers(&config, &HashMap::new(), None),
        };
        status::runtime_status(&config, [runtime, network], handlers, verbose)
    }

    /// `RuntimeReady`: start-up finished and containerd answers now (then
    /// its version).
    async fn runtime_condition(&self) -> (Condition, Option<ContainerdVersion>) {
        let c = match self.containerd() {
            Ok(c) => c,
            Err(e) => {
                let starting = RuntimeProblem::Starting(e.to_string());
                return (status::runtime_condition(Some(starting)), None);
            }
        };
        let failure = match tokio::time::timeout(HEALTH_TIMEOUT, c.version()).await {
            Ok(Ok(v)) => {
                let v = ContainerdVersion {
                    version: v.version,
                    revision: v.revision,
                };
                return (status::runtime_condition(None), Some(v));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "containerd at {} did not answer within {HEALTH_TIMEOUT:?}",
                c.address().display()
            ),
        };
        let down = RuntimeProblem::Containerd(failure);
        (status::runtime_condition(Some(down)), None)
    }

    /// What the verbose report needs from the adapters.
    async fn facts(&self, config: &Config, containerd: Option<ContainerdVersion>) -> Facts {
        let mut shims = HashMap::new();
        for (name, h) in &config.runtimes {
            let shim = match self.containerd() {
                Ok(c) => c.shim_binary(&h.runtime_type, &h.runtime_path).await,
                Err(_) => None,
            };
            shims.insert(name.clone(), shim);
        }
        Facts {
            containerd,
            shims,
            pod_cidr: self.pod_cidr(),
            cri_api_version: CRI_API_VERSION,
            recovery: match self.backend() {
                Ok(b) => b.pods.recovery_report(),
                Err(_) => Default::default(),
            },
        }
    }

    /// A container's usage and the filesystem of its writable layer.
    pub(crate) async fn container_stats(&self, id: &str) -> Result<(ContainerUsage, String)> {
        let usage = self.backend()?.pods.container_stats(id).await?;
        let root = self.roots().of(&usage).await?;
        Ok((usage, root))
    }

    /// [`State::container_stats`] of every container `filter` selects.
    pub(crate) async fn list_container_stats(
        &self,
        filter: &StatsFilter,
    ) -> Result<Vec<(ContainerUsage, String)>> {
        let usages = self.backend()?.pods.list_container_stats(filter).await?;
        let mut roots = self.roots();
        let mut stats = Vec::with_capacity(usages.len());
        for u in usages {
            let root = roots.of(&u).await?;
            stats.push((u, root));
        }
        Ok(stats)
    }

    /// A pod's usage and its containers' writable-layer filesystems (in the
    /// order of its containers).
    pub(crate) async fn pod_sandbox_stats(&self, id: &str) -> Result<(PodUsage, Vec<String>)> {
        let driver = self.cgroup_driver();
        let usage = self.backend()?.pods.pod_sandbox_stats(id, driver).await?;
        let roots = self.roots().of_pod(&usage).await?;
        Ok((usage, roots))
    }

    /// [`State::pod_sandbox_stats`] of every pod the filter selects.
    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        id: &str,
        label_selector: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<(PodUsage, Vec<String>)>> {
        let driver = self.cgroup_driver();
        let usages = self
            .backend()?
            .pods
            .list_pod_sandbox_stats(id, label_selector, driver)
            .await?;
        let mut roots = self.roots();
        let mut stats = Vec::with_capacity(usages.len());
        for u in usages {
            let container_roots = roots.of_pod(&u).await?;
            stats.push((u, container_roots));
        }
        Ok(stats)
    }

    /// The filesystems of images and containers' writable layers: each
    /// snapshotter in use, the default first. Only the default's is
    /// required: another that containerd cannot serve (not loaded) is left
    /// out with a warning, so eviction still has the default's numbers.
    pub(crate) async fn image_fs(&self) -> Result<Vec<ImageFs>> {
        let containerd = &self.backend()?.containerd;
        let mut out = Vec::new();
        for (n, snapshotter) in status::snapshotters_in_use(&self.config())
            .into_iter()
            .enumerate()
        {
            let fs = async {
                let root = containerd.snapshotter_root(&snapshotter).await?;
                let usage = containerd.snapshots_usage(&snapshotter).await?;
                Ok::<_, crius_containerd::Error>(ImageFs {
                    mountpoint: root.display().to_string(),
                    usage,
                    timestamp: now_ns(),
                })
            };
            match fs.await {
                Ok(fs) => out.push(fs),
                Err(e) if n == 0 => return Err(e.into()),
                Err(e) => tracing::warn!(snapshotter, "ImageFsInfo leaves it out: {e}"),
            }
        }
        Ok(out)
    }

    fn roots(&self) -> Roots<'_> {
        Roots {
            state: self,
            config: self.config(),
            known: HashMap::new(),
        }
    }
}

/// The image filesystem's usage, as measured at `timestamp`.
pub(crate) struct ImageFs {
    pub mountpoint: String,
    pub usage: Usage,
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
}

/// Snapshotter roots (the filesystem of the writable layers each holds),
/// asked of containerd once per snapshotter and request.
struct Roots<'s> {
    state: &'s State,
    config: Arc<Config>,
    known: HashMap<String, String>,
}

impl Roots<'_> {
    /// The root of the snapshotter holding `u`'s writable layer.
    async fn of(&mut self, u: &ContainerUsage) -> Result<String> {
        let snapshotter =
            status::container_snapshotter(&u.container.meta.snapshotter, &self.config);
        if let Some(r) = self.known.get(snapshotter) {
            return Ok(r.clone());
        }
        let root = self
            .state
            .backend()?
            .containerd
            .snapshotter_root(snapshotter)
            .await?
            .display()
            .to_string();
        self.known.insert(snapshotter.to_string(), root.clone());
        Ok(root)
    }

    /// The roots of a pod's containers, in their order.
    async fn of_pod(&mut self, u: &PodUsage) -> Result<Vec<String>, Error> {
        let mut roots = Vec::with_capacity(u.containers.len());
        for c in &u.containers {
            roots.push(self.of(c).await?);
        }
        Ok(roots)
    }
}

/// Streaming sessions reach only what can take one.
impl State {
    /// Exec and Attach: the container exists and runs (NotFound otherwise,
    /// FailedPrecondition when it is not running), as containerd checks.
    pub(crate) fn require_running_container(
        &self,
        request: &crius_stream::backend::Request,
    ) -> Result<()> {
        use crius_stream::backend::Request;
        let id = match request {
            Request::Exec(e) => &e.container_id,
            Request::Attach(a) => &a.container_id,
            Request::PortForward(_) => return Ok(()),
        };
        let (_, status) = self.backend()?.pods.container_status(id)?;
        crius_core::streaming::require_running(id, status.state)
    }

    /// PortForward: the pod exists and is ready (containerd: "sandbox
    /// container is not running" otherwise).
    pub(crate) async fn require_ready_sandbox(
        &self,
        request: &crius_stream::backend::Request,
    ) -> Result<()> {
        let crius_stream::backend::Request::PortForward(p) = request else {
            return Ok(());
        };
        let status = self
            .backend()?
            .pods
            .status(&p.pod_sandbox_id, false)
            .await?;
        if status.state == crius_core::sandbox::SandboxState::Ready {
            Ok(())
        } else {
            Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                p.pod_sandbox_id
            )))
        }
    }
}
