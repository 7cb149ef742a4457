//! What the services share: the config in force, start-up readiness and the
//! containerd connection.

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arc_swap::ArcSwap;
use crius_containerd::Containerd;
use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::readiness::Readiness;
use crius_core::{Error, Result};
use crius_image::Images;
use crius_pod::Pods;

/// What serving needs once containerd answers.
pub struct Backend {
    pub containerd: Containerd,
    pub images: Arc<Images>,
    pub pods: Arc<Pods>,
}

impl Backend {
    /// The adapters over one containerd connection. `pause` is the pause
    /// program of the built-in sandbox image.
    pub fn new(containerd: Containerd, config: &Config, pause: &'static [u8]) -> Self {
        let images = Arc::new(Images::new(containerd.clone()));
        let pods = Arc::new(Pods::new(
            containerd.clone(),
            images.clone(),
            config.cni.bin_dirs.clone(),
            config.state_dir.clone(),
            pause,
        ));
        Backend {
            images,
            pods,
            containerd,
        }
    }
}

/// Daemon-wide state. Locks here are std locks held for a few instructions,
/// never across an `.await`.
pub struct State {
    config: ArcSwap<Config>,
    readiness: RwLock<Readiness>,
    backend: OnceLock<Backend>,
    cgroup_driver: CgroupDriver,
    pod_cidr: Mutex<String>,
}

impl State {
    /// A state that starts out waiting for containerd.
    pub fn new(config: Config, cgroup_driver: CgroupDriver) -> Self {
        let waiting = format!(
            "waiting for containerd at {}",
            config.containerd.address.display()
        );
        State {
            config: ArcSwap::from_pointee(config),
            readiness: RwLock::new(Readiness::Starting(waiting)),
            backend: OnceLock::new(),
            cgroup_driver,
            pod_cidr: Mutex::new(String::new()),
        }
    }

    /// The config in force; a reload swaps it whole.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Replaces the config (already validated) for new requests.
    pub fn swap_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// Start-up readiness.
    pub fn readiness(&self) -> Readiness {
        match self.readiness.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Says what start-up is waiting for now.
    pub fn set_waiting(&self, why: String) {
        self.set_readiness(Readiness::Starting(why));
    }

    /// Records the backend (once) and marks start-up done.
    pub fn set_ready(&self, backend: Backend) {
        // A second call keeps the first connection: tonic channels reconnect.
        let _ = self.backend.set(backend);
        self.set_readiness(Readiness::Ready);
    }

    fn set_readiness(&self, r: Readiness) {
        match self.readiness.write() {
            Ok(mut g) => *g = r,
            Err(poisoned) => *poisoned.into_inner() = r,
        }
    }

    /// The backend, or `Unavailable` while starting.
    pub fn backend(&self) -> Result<&Backend> {
        self.readiness().check()?;
        self.backend
            .get()
            .ok_or_else(|| Error::Internal("ready without a containerd connection".into()))
    }

    /// The containerd connection, or `Unavailable` while starting.
    pub fn containerd(&self) -> Result<&Containerd> {
        Ok(&self.backend()?.containerd)
    }

    /// The cgroup driver in force.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        self.cgroup_driver
    }

    /// The pod CIDR kubelet last sent in `UpdateRuntimeConfig`.
    pub fn pod_cidr(&self) -> String {
        match self.pod_cidr.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stores the pod CIDR.
    pub fn set_pod_cidr(&self, cidr: String) {
        match self.pod_cidr.lock() {
            Ok(mut g) => *g = cidr,
            Err(poisoned) => *poisoned.into_inner() = cidr,
        }
    }
}
