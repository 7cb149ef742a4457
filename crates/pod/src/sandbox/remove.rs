//! RemovePodSandbox: stopped first, then every trace of the pod removed.

use std::path::Path;

use crate::events::EventKind;
use crius_core::Result;
use crius_core::config::Config;
use crius_core::sandbox::labels;

use super::Sandboxes;

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
        // A pinned pod's shim is named after its first container.
        let shim_ids = match sandbox.meta.pinned {
            None => vec![id.clone()],
            Some(_) => self.container_ids_of(&id),
        };
        self.container_ops.remove_containers_of(config, &id).await?;
        self.containerd.container_delete(&id).await?;
        self.forget_cpu_sample(&id);
        self.kill_lost_shims(&id, shim_ids).await;
        if sandbox.meta.pinned.is_none() {
            self.containerd
                .snapshot_remove(
                    sandbox.meta.snapshotter_or(&config.containerd.snapshotter),
                    &id,
                )
                .await?;
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
        // With its last status: kubelet drops a pod from its cache only for
        // a DELETED event whose sandbox status names it.
        self.emit(EventKind::Deleted, &id, &id);
        self.store.remove(&id);
        tracing::info!(sandbox = %id, "sandbox removed");
        Ok(())
    }

    /// The ids of the pod's containers.
    fn container_ids_of(&self, sandbox_id: &str) -> Vec<String> {
        let all = self.containers.all().into_iter();
        all.filter(|c| c.meta.sandbox_id == sandbox_id)
            .map(|c| c.meta.id.clone())
            .collect()
    }

    /// A shim containerd lost while its start was cut short (a daemon
    /// killed mid-run) would otherwise run forever: those of `ids`, once
    /// their tasks and records are gone.
    async fn kill_lost_shims(&self, sandbox: &str, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let containerd = self.containerd.clone();
        let killed =
            crius_rt::blocking(
                "shim clean-up",
                move || Ok(containerd.kill_lost_shims(&ids)),
            )
            .await;
        if let Err(e) = killed {
            tracing::warn!(sandbox, "looking for lost shims: {e}");
        }
    }
}
