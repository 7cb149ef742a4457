//! StopPodSandbox: the pod's processes killed, its network torn down.

use std::path::{Path, PathBuf};

use crius_core::config::Config;
use crius_core::sandbox::SandboxEvent;
use crius_core::{Error, Result};

use super::{Sandboxes, attachment};
use crate::events::EventKind;
use crate::meta;
use crate::store::Sandbox;

impl Sandboxes {
    /// Stops a sandbox: its processes killed, its network torn down.
    /// Idempotent; unknown ids are fine (CRI: a stop of what is gone
    /// succeeds, so kubelet's retries after a removal do too).
    pub async fn stop(&self, config: &Config, id: &str) -> Result<()> {
        let Some(sandbox) = self.store.find(id)? else {
            tracing::debug!(
                sandbox = id,
                "StopPodSandbox of an unknown id: nothing to do"
            );
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        self.stop_locked(config, &sandbox).await
    }

    pub(crate) async fn stop_locked(&self, config: &Config, sandbox: &Sandbox) -> Result<()> {
        let id = &sandbox.meta.id;
        // A pinned pod is NOTREADY from here on, also after a restart.
        if sandbox.meta.pinned.is_some() {
            self.mark_stopped(sandbox).await?;
        }
        self.container_ops.stop_containers_of(id).await?;
        match &sandbox.meta.pinned {
            Some(pins) => {
                for pin in pins.ipc.iter().chain(&pins.uts) {
                    self.net.netns_remove(Path::new(pin)).await?;
                }
                sandbox.apply(SandboxEvent::Stopped);
            }
            None => {
                self.kill_and_delete_task(id).await?;
                sandbox.pause_exited();
            }
        }
        if sandbox.network_down() {
            tracing::debug!(sandbox = %id, "network already torn down");
        } else if let (Some(network), Some(netns)) = (&sandbox.meta.network, &sandbox.meta.netns) {
            // The network config may have changed since; DEL with the cached
            // config when the named network is gone is the plugin's job.
            match self.net.load(&config.cni.conf_dir, &config.cni.bin_dirs) {
                Ok(net) if &net.name == network => {
                    let netns = if self.net.netns_is_pinned(Path::new(netns)) {
                        PathBuf::from(netns)
                    } else {
                        PathBuf::new()
                    };
                    self.net
                        .del(&net, &attachment(&sandbox.meta, &netns))
                        .await?;
                }
                Ok(net) => {
                    tracing::warn!(sandbox = %id, was = %network, now = %net.name, "the pod's network is no longer configured; skipping CNI DEL")
                }
                Err(e) => {
                    tracing::warn!(sandbox = %id, "no CNI config to tear the pod network down: {e}")
                }
            }
        }
        sandbox.set_network_down();
        sandbox.apply(SandboxEvent::Stopped);
        self.emit(EventKind::Stopped, id, id);
        tracing::info!(sandbox = %id, "sandbox stopped");
        Ok(())
    }

    /// Records on a pinned pod's containerd record that it was stopped
    /// (once: a repeated stop finds it there).
    async fn mark_stopped(&self, sandbox: &Sandbox) -> Result<()> {
        if sandbox.marked_stopped() {
            return Ok(());
        }
        let any = prost_types::Any {
            type_url: meta::STOPPED_TYPE_URL.into(),
            value: b"true".to_vec(),
        };
        match self
            .containerd
            .container_set_extension(&sandbox.meta.id, meta::STOPPED_EXTENSION, any)
            .await
        {
            // A record removed behind crius' back: nothing can be ready.
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        sandbox.set_marked_stopped();
        Ok(())
    }
}
