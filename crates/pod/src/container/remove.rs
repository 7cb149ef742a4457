//! RemoveContainer: killed first, then its task, record, snapshot and
//! files removed.

use std::time::Duration;

use crate::events::EventKind;
use crius_core::Result;
use crius_core::config::Config;

use super::{Container, Containers, wait_log};

impl Containers {
    /// Removes a container, killing it first. Unknown ids are fine.
    pub async fn remove_container(&self, config: &Config, id: &str) -> Result<()> {
        let Some(c) = self.containers.find(id)? else {
            return Ok(());
        };
        let _op = c.op.lock().await;
        self.remove_container_locked(config, &c).await
    }

    pub(crate) async fn remove_container_locked(
        &self,
        config: &Config,
        c: &Container,
    ) -> Result<()> {
        let id = c.meta.id.clone();
        self.stop_container_locked(c).await?;
        if let Err(e) = self.containerd.task_delete(&id).await {
            // The exit watcher may have deleted it meanwhile.
            if self.containerd.task_get(&id).await?.is_some() {
                return Err(e);
            }
        }
        if let Some(log) = c.log() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait_log(log)).await;
        }
        c.set_log(None);
        self.remove_image_volumes(&c.meta.image_volumes, None).await;
        self.remove_idmapped(&id).await;
        self.containerd.container_delete(&id).await?;
        let snapshotter = if c.meta.snapshotter.is_empty() {
            &config.containerd.snapshotter
        } else {
            &c.meta.snapshotter
        };
        self.containerd.snapshot_remove(snapshotter, &id).await?;
        self.forget_cpu_sample(&id);
        // Image volumes may hold a lot: off the async workers.
        let dirs = [
            self.containers_dir().join(&id),
            config.root_dir.join("containers").join(&id),
        ];
        let fs = self.fs.clone();
        crius_rt::blocking("removal task", move || {
            dirs.iter().try_for_each(|dir| fs.remove_tree(dir, false))
        })
        .await?;
        if let Some(sandbox) = self.store.find(&c.meta.sandbox_id)? {
            let key = c.meta.name_key(&sandbox.meta.request());
            self.containers.names.release(&key, &id);
        }
        self.containers.remove(&id);
        self.emit(EventKind::Deleted, &id, &c.meta.sandbox_id);
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    /// Unmounts and removes image volumes and their views (and `dir`, the
    /// container's directory, when given: a failed create's); what fails is
    /// logged (a view left behind is containerd's garbage once no record
    /// refers to it).
    pub(crate) async fn remove_image_volumes(
        &self,
        volumes: &[super::ImageVolume],
        dir: Option<&std::path::Path>,
    ) {
        let dirs: Vec<std::path::PathBuf> = volumes.iter().map(|v| v.dir.clone().into()).collect();
        let (fs, parent) = (self.fs.clone(), dir.map(std::path::Path::to_path_buf));
        let unmounted = crius_rt::blocking("image volume unmount", move || {
            dirs.iter().try_for_each(|d| fs.remove_tree(d, true))?;
            parent.map_or(Ok(()), |p| fs.remove_tree(&p, false))
        })
        .await;
        if let Err(e) = unmounted {
            tracing::warn!("image volumes: {e}");
        }
        for v in volumes {
            if let Err(e) = self
                .containerd
                .snapshot_remove(&v.snapshotter, &v.key)
                .await
            {
                tracing::warn!(key = %v.key, "image volume view: {e}");
            }
        }
    }

    /// Unmounts and removes the idmapped volume mounts of container `id`
    /// (its directory under [`Ctx::idmapped_dir`]), never deleting through
    /// one; a mount that will not go is logged and left.
    pub(crate) async fn remove_idmapped(&self, id: &str) {
        let (fs, dir) = (self.fs.clone(), self.idmapped_dir().join(id));
        let removed = crius_rt::blocking("idmapped unmount", move || fs.remove_mount_points(&dir));
        if let Err(e) = removed.await {
            tracing::warn!(container = id, "idmapped mounts: {e}");
        }
    }

    /// Removes every container of a sandbox (RemovePodSandbox).
    pub(crate) async fn remove_containers_of(
        &self,
        config: &Config,
        sandbox_id: &str,
    ) -> Result<()> {
        for c in self
            .containers
            .all()
            .into_iter()
            .filter(|c| c.meta.sandbox_id == sandbox_id)
        {
            let _op = c.op.lock().await;
            self.remove_container_locked(config, &c).await?;
        }
        Ok(())
    }
}
