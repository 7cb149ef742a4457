//! What the services share: the ports, the daemon's directories, the host
//! facts, the indexes and the background tasks; and the few operations more
//! than one service performs (a task killed and deleted, a creation lease,
//! a rootfs snapshot).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crius_containerd::TaskStatus;
use crius_core::config::Config;
use crius_core::image::CriImage;
use crius_core::{Error, Result};

use crate::container::Container;
use crate::ports::Made;
use crate::store::{Sandbox, Store};
use crate::{exits, ports};

/// The shared context of [`crate::Pods`]' services.
pub(crate) struct Ctx {
    pub(crate) containerd: Arc<dyn ports::Containerd>,
    pub(crate) images: Arc<dyn ports::ImageStore>,
    pub(crate) net: Arc<dyn ports::Network>,
    pub(crate) fs: Arc<dyn ports::HostFs>,
    pub(crate) runtimes: Arc<dyn ports::OciRuntimes>,
    /// Exit watchers and event followers: stopped at shutdown.
    pub(crate) background: crius_rt::Background,
    pub(crate) state_dir: PathBuf,
    pub(crate) host: crius_core::container::HostFacts,
    /// The pause program of the built-in sandbox image.
    pub(crate) pause: &'static [u8],
    pub(crate) store: Store<Sandbox>,
    pub(crate) containers: Store<Container>,
    /// Exits reported by containerd's events.
    pub(crate) exits: Arc<exits::Exits>,
    /// The previous CPU sample of each container and pod (timestamp,
    /// cumulative ns), for the CPU rate of the next one; removals forget
    /// theirs.
    pub(crate) cpu_samples: Mutex<HashMap<String, (i64, u64)>>,
    /// What start-up recovery did and still does (`Status` reports it).
    pub(crate) recovery: Mutex<crius_core::status::RecoveryReport>,
}

/// How long a stop waits for a task to die after SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Ctx {
    pub(crate) fn pods_dir(&self) -> PathBuf {
        self.state_dir.join("sandboxes")
    }

    pub(crate) fn netns_dir(&self) -> PathBuf {
        self.state_dir.join("netns")
    }

    /// Where pinned pods' IPC and UTS namespaces are pinned
    /// (`<id>.ipc`, `<id>.uts`).
    pub(crate) fn pins_dir(&self) -> PathBuf {
        self.state_dir.join("pins")
    }

    /// What works on the runtime a pod runs on (its containerd record's):
    /// its OCI runtime asked what it supports.
    pub(crate) async fn pod_runtime_features(
        &self,
        runtime: &crius_containerd::Runtime,
    ) -> crius_core::runtime::HandlerFeatures {
        let binary_name = runtime
            .options
            .as_ref()
            .and_then(crius_containerd::decode_runc_options)
            .map(|o| o.binary_name)
            .unwrap_or_default();
        let oci = match crius_core::runtime::oci_runtime_binary(&runtime.name, &binary_name) {
            Some(binary) => self.runtimes.features(&binary).await,
            None => None,
        };
        crius_core::runtime::handler_features(oci.as_ref(), self.host.kernel_version)
    }

    /// Forgets the CPU sample of a removed container or pod.
    pub(crate) fn forget_cpu_sample(&self, id: &str) {
        crate::lock(&self.cpu_samples).remove(id);
    }

    /// A task's state as containerd has it from the task's shim, if it
    /// answers within `wait` (`Some(None)`: there is no task). A shim that
    /// hangs (containerd waiting for it, or saying UNKNOWN), or an error,
    /// gives `None`: the caller goes on without it.
    pub(crate) async fn ask_task(
        &self,
        id: &str,
        wait: Duration,
    ) -> Option<Option<crius_containerd::TaskInfo>> {
        match tokio::time::timeout(wait, self.containerd.task_get(id)).await {
            // containerd answers UNKNOWN when the shim did not answer it
            // (within its own 2 s): no answer either.
            Ok(Ok(Some(t))) if t.status == TaskStatus::Unknown => {
                tracing::warn!(
                    id,
                    "containerd does not know the task's state: its shim did not answer"
                );
                None
            }
            Ok(Ok(task)) => Some(task),
            Ok(Err(e)) => {
                tracing::warn!(id, "the state of the task: {e}");
                None
            }
            Err(_) => {
                tracing::warn!(id, ?wait, "the task's shim did not answer");
                None
            }
        }
    }

    /// Kills a task (all its processes), waits for it, deletes it. Absent is fine.
    pub(crate) async fn kill_and_delete_task(&self, id: &str) -> Result<()> {
        let Some(task) = self.containerd.task_get(id).await? else {
            return Ok(());
        };
        if matches!(
            task.status,
            TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing | TaskStatus::Created
        ) {
            self.containerd.task_kill(id, 9, true).await?;
            if task.status != TaskStatus::Created {
                match tokio::time::timeout(STOP_TIMEOUT, self.containerd.task_wait(id)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(Error::DeadlineExceeded(format!(
                            "task {id} did not exit within {STOP_TIMEOUT:?} of SIGKILL"
                        )));
                    }
                }
            }
        }
        self.containerd.task_delete(id).await?;
        Ok(())
    }

    /// Creates lease `id` (recorded in `held` for the undo) and returns the
    /// connection whose requests carry it.
    pub(crate) async fn take_lease(
        &self,
        id: &str,
        expire: Duration,
        held: &mut Option<String>,
    ) -> Result<Arc<dyn ports::Containerd>> {
        self.containerd.lease_create(id, expire).await?;
        *held = Some(id.to_string());
        Ok(self.containerd.with_lease(id))
    }

    /// The snapshot `key` of `image`'s rootfs (a read-only view or a
    /// writable snapshot); its mounts.
    pub(crate) async fn rootfs_snapshot(
        &self,
        c: &dyn ports::Containerd,
        kind: Rootfs,
        image: &CriImage,
        snapshotter: &str,
        key: &str,
    ) -> Result<Vec<crius_containerd::Mount>> {
        let make = || async {
            match kind {
                Rootfs::View => {
                    c.snapshot_view(snapshotter, key, Some(&image.chain_id))
                        .await
                }
                Rootfs::Writable => {
                    c.snapshot_prepare(snapshotter, key, Some(&image.chain_id))
                        .await
                }
            }
        };
        if let Made::Mounts(m) = make().await? {
            return Ok(m);
        }
        // The image's layers are not (or no longer) unpacked: unpack them
        // now, then and only then (lazy unpack).
        c.snapshot_remove(snapshotter, key).await?;
        self.images.ensure_unpacked(image, snapshotter).await?;
        match make().await? {
            Made::Mounts(m) => Ok(m),
            Made::ParentMissing => Err(Error::FailedPrecondition(format!(
                "image {}: its snapshot {} is missing right after unpacking it",
                image.id, image.chain_id
            ))),
        }
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }

    /// Where a container's image volumes live: persistent, under `root_dir`.
    pub(crate) fn volumes_dir(&self, config: &Config, id: &str) -> PathBuf {
        config.root_dir.join("containers").join(id).join("volumes")
    }

    pub(crate) fn find_container(&self, id: &str) -> Result<Arc<Container>> {
        self.containers
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("container {id}")))
    }
}

/// Which snapshot a rootfs is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rootfs {
    /// Read-only (the pause container's).
    View,
    /// Writable (a container's).
    Writable,
}
