//! RemovePodSandbox: stopped first, then every trace of the pod removed.

use std::path::Path;

use crius_core::Result;
use crius_core::config::Config;
use crius_core::sandbox::labels;

use super::Sandboxes;
use crate::store::Sandbox;

impl Sandboxes {
    /// Removes a sandbox, stopping it first. Unknown ids are fine.
    pub async fn remove(&self, config: &Config, id: &str) -> Result<()> {
        let Some(sandbox) = self.store.find(id)? else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        if self.store.find(&sandbox.meta.id)?.is_none() {
            return Ok(()); // removed while we waited
        }
        // Always: a sandbox found NOTREADY at start-up may never have been
        // stopped (its run was cut short), so its network may still be up.
        // Both steps are idempotent.
        self.stop_locked(config, &sandbox).await?;
        let id = sandbox.meta.id.clone();
        self.container_ops.remove_containers_of(config, &id).await?;
        self.containerd.container_delete(&id).await?;
        self.forget_cpu_sample(&id);
        if sandbox.meta.pinned.is_none() {
            self.remove_pause_remains(config, &sandbox).await?;
        }
        if let Some(netns) = &sandbox.meta.netns {
            self.net.netns_remove(Path::new(netns)).await?;
        }
        self.fs.remove_pod_dir(&self.pods_dir().join(&id))?;
        let key = labels::sandbox_name_key(
            &sandbox.meta.name,
            &sandbox.meta.uid,
            &sandbox.meta.namespace,
            sandbox.meta.attempt,
        );
        self.store.names.release(&key, &id);
        self.store.remove(&id);
        tracing::info!(sandbox = %id, "sandbox removed");
        Ok(())
    }

    /// What a pause pod leaves besides its record: a shim containerd lost,
    /// the pause image's view.
    async fn remove_pause_remains(&self, config: &Config, sandbox: &Sandbox) -> Result<()> {
        let id = sandbox.meta.id.clone();
        // A shim containerd lost while its start was cut short (a daemon
        // killed mid-run) would otherwise run forever.
        let containerd = self.containerd.clone();
        let shim_of = id.clone();
        let killed = crius_rt::blocking("shim clean-up", move || {
            Ok(containerd.kill_lost_shims(&shim_of))
        })
        .await;
        if let Err(e) = killed {
            tracing::warn!(sandbox = %id, "looking for lost shims: {e}");
        }
        self.containerd
            .snapshot_remove(
                sandbox.meta.snapshotter_or(&config.containerd.snapshotter),
                &id,
            )
            .await
    }
}
