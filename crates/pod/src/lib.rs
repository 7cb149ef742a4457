//! Pods: the lifecycle of pod sandboxes over containerd (a pause container
//! per pod), CNI (the pod network) and files under the daemon's state
//! directory (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, `/dev/shm`).
//!
//! containerd's container records are the source of truth: each sandbox's
//! record carries its labels and, as an extension, [`meta::SandboxMeta`];
//! a restarted daemon rebuilds its index from them ([`Pods::recover`]).

pub mod container;
mod exits;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
mod host;
mod meta;
mod podfs;
pub mod ports;
mod real;
mod recover;
pub mod registrar;
mod rootfs;
mod sandbox;
mod stats;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use crius_containerd::Containerd;
use crius_image::Images;
use crius_network::exec::Cni;

pub use meta::SandboxMeta;
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

/// The adapters a [`Pods`] works through (see [`ports`]).
#[derive(Clone)]
pub struct Ports {
    pub containerd: Arc<dyn ports::Containerd>,
    pub images: Arc<dyn ports::ImageStore>,
    pub network: Arc<dyn ports::Network>,
    pub fs: Arc<dyn ports::HostFs>,
}

/// Pod sandboxes of one containerd namespace.
pub struct Pods {
    containerd: Arc<dyn ports::Containerd>,
    images: Arc<dyn ports::ImageStore>,
    net: Arc<dyn ports::Network>,
    fs: Arc<dyn ports::HostFs>,
    /// Exit watchers and event followers: stopped at [`Pods::shutdown`].
    background: crius_rt::Background,
    state_dir: PathBuf,
    store: store::Store<store::Sandbox>,
    containers: store::Store<container::Container>,
    host: crius_core::container::HostFacts,
    /// The pause program of the built-in sandbox image.
    pause: &'static [u8],
    /// Exits reported by containerd's events.
    exits: Arc<exits::Exits>,
    /// The previous CPU sample of each container (timestamp, cumulative
    /// ns), for the CPU rate of the next one.
    cpu_samples: std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>,
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
        Pods {
            pause,
            containerd: ports.containerd,
            images: ports.images,
            net: ports.network,
            fs: ports.fs,
            background: crius_rt::Background::new(),
            store: store::Store::default(),
            containers: store::Store::default(),
            host,
            state_dir,
            exits: Arc::default(),
            cpu_samples: Default::default(),
        }
    }

    /// Stops the exit watchers and event followers and waits up to `grace`
    /// for them; returns how many were still running. Containers keep
    /// running: a restarted daemon recovers them.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.background.shutdown(grace).await
    }

    fn pods_dir(&self) -> PathBuf {
        self.state_dir.join("sandboxes")
    }

    fn netns_dir(&self) -> PathBuf {
        self.state_dir.join("netns")
    }
}
