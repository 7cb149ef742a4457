//! Pods: the lifecycle of pod sandboxes over containerd (a pause container
//! per pod), CNI (the pod network) and files under the daemon's state
//! directory (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, `/dev/shm`).
//!
//! containerd's container records are the source of truth: each sandbox's
//! record carries its labels and, as an extension, [`meta::SandboxMeta`];
//! a restarted daemon rebuilds its index from them ([`Pods::recover`]).

pub mod container;
mod exits;
mod host;
mod meta;
mod podfs;
mod recover;
pub mod registrar;
mod rootfs;
mod sandbox;
mod stats;
mod store;

use std::path::PathBuf;
use std::sync::Arc;

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

/// Pod sandboxes of one containerd namespace.
pub struct Pods {
    containerd: Containerd,
    images: Arc<Images>,
    cni: Cni,
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
        Pods {
            pause,
            cni: Cni::new(cni_bin_dirs, state_dir.join("cni-cache")),
            containerd,
            images,
            store: store::Store::default(),
            containers: store::Store::default(),
            host: host::facts(apparmor),
            state_dir,
            exits: Arc::default(),
            cpu_samples: Default::default(),
        }
    }

    fn pods_dir(&self) -> PathBuf {
        self.state_dir.join("sandboxes")
    }

    fn netns_dir(&self) -> PathBuf {
        self.state_dir.join("netns")
    }
}
