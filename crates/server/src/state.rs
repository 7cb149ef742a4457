//! What the services share: the config in force, start-up readiness and the
//! containerd connection.

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arc_swap::ArcSwap;
use crius_containerd::Containerd;
use crius_core::apparmor::Mode as AppArmor;
use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::readiness::Readiness;
use crius_core::{Error, Result};
use crius_image::Images;
use crius_pod::Pods;
use crius_rt::Background;

/// What serving needs once containerd answers.
pub struct Backend {
    pub containerd: Containerd,
    pub images: Arc<Images>,
    pub pods: Arc<Pods>,
}

impl Backend {
    /// The adapters over one containerd connection. `pause` is the pause
    /// program of the built-in sandbox image; `apparmor` what start-up found.
    pub fn new(
        containerd: Containerd,
        config: &Config,
        pause: &'static [u8],
        apparmor: AppArmor,
    ) -> Self {
        let images = Arc::new(Images::new(containerd.clone()));
        let pods = Arc::new(Pods::new(
            containerd.clone(),
            images.clone(),
            config.cni.bin_dirs.clone(),
            config.state_dir.clone(),
            pause,
            apparmor,
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
    loader: Option<ConfigLoader>,
    apparmor: AppArmor,
    background: Background,
    streams: OnceLock<Arc<dyn StreamUrls>>,
    /// Fires when shutdown begins: endless server streams (events) end, so
    /// that the wait for in-flight RPCs does not wait for them.
    ending: tokio_util::sync::CancellationToken,
}

/// Hands out the URLs Exec, Attach and PortForward answer (criusd's
/// streaming server).
pub trait StreamUrls: Send + Sync {
    /// A single-use URL for `request`.
    fn url(&self, request: crius_stream::backend::Request) -> Result<String>;
}

/// Reads and validates the config again (file + the daemon's flags).
pub type ConfigLoader = Box<dyn Fn() -> std::result::Result<Config, String> + Send + Sync>;

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
            loader: None,
            apparmor: AppArmor::Disabled,
            background: Background::new(),
            streams: OnceLock::new(),
            ending: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Shutdown begins: endless streams end now.
    pub fn begin_shutdown(&self) {
        self.ending.cancel();
    }

    /// Fires when shutdown begins.
    pub fn ending(&self) -> tokio_util::sync::CancellationToken {
        self.ending.clone()
    }

    /// The streaming server, once criusd has bound it.
    pub fn set_streams(&self, streams: Arc<dyn StreamUrls>) {
        if self.streams.set(streams).is_err() {
            tracing::warn!("the streaming server was set twice; keeping the first");
        }
    }

    /// A URL for `request` from the streaming server.
    pub fn stream_url(&self, request: crius_stream::backend::Request) -> Result<String> {
        self.streams
            .get()
            .ok_or_else(|| Error::Unavailable("crius' streaming server is not running".into()))?
            .url(request)
    }

    /// AppArmor as the daemon's start-up found it (default: disabled).
    pub fn with_apparmor(mut self, apparmor: AppArmor) -> Self {
        self.apparmor = apparmor;
        self
    }

    /// AppArmor as the daemon's start-up found it.
    pub fn apparmor(&self) -> &AppArmor {
        &self.apparmor
    }

    /// Where [`State::reload`] gets a new config from.
    pub fn with_loader(mut self, loader: ConfigLoader) -> Self {
        self.loader = Some(loader);
        self
    }

    /// Re-reads the config: a valid one replaces the old whole for new
    /// requests (running pods keep what they started with); an invalid one
    /// is refused with the reason, and the old one stays.
    pub fn reload(&self) -> Result<()> {
        let loader = self.loader.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("this daemon has no config file to reload".into())
        })?;
        match loader() {
            Ok(config) => {
                let old = self.config();
                if config.socket != old.socket
                    || config.containerd != old.containerd
                    || config.root_dir != old.root_dir
                    || config.state_dir != old.state_dir
                    || config.metrics != old.metrics
                {
                    tracing::warn!(
                        "socket, containerd, metrics and directory settings change only with a restart"
                    );
                }
                let handlers: Vec<&String> = config.runtimes.keys().collect();
                tracing::info!(?handlers, default = %config.default_runtime, "config reloaded");
                self.swap_config(config);
                Ok(())
            }
            Err(why) => {
                tracing::error!("config reload refused, keeping the old config: {why}");
                Err(Error::FailedPrecondition(format!(
                    "config reload refused: {why}"
                )))
            }
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

    /// The background work of the services (pulls a client left), for the
    /// daemon to stop at shutdown.
    pub fn background(&self) -> &Background {
        &self.background
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
