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
use crius_core::userns::IdMaps;
use crius_core::{Error, Result};

use crate::container::Container;
use crate::events::{EventKind, Events, PodEvent};
use crate::ports::Made;
use crate::sandbox::SandboxStatus;
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
    /// Transitions of containers and pods, for `GetContainerEvents`.
    pub(crate) events: Events,
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
        crius_core::runtime::handler_features(oci.as_ref(), self.host.kernel_version, false)
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
    /// writable snapshot); its mounts. In a user namespace (`userns`) its
    /// parent is the image's remapped copy.
    pub(crate) async fn rootfs_snapshot(
        &self,
        c: &dyn ports::Containerd,
        kind: Rootfs,
        image: &CriImage,
        snapshotter: &str,
        key: &str,
        userns: Option<&IdMaps>,
    ) -> Result<Vec<crius_containerd::Mount>> {
        let Some(maps) = userns else {
            return self.image_snapshot(c, kind, image, snapshotter, key).await;
        };
        let parent = self.remapped(c, image, snapshotter, maps).await?;
        match make_snapshot(c, kind, snapshotter, key, &parent).await? {
            Made::Mounts(m) => Ok(m),
            Made::ParentMissing => Err(Error::FailedPrecondition(format!(
                "image {}: its remapped snapshot {parent} is missing",
                image.id
            ))),
        }
    }

    /// The snapshot `key` on `image`'s own snapshot; its mounts.
    async fn image_snapshot(
        &self,
        c: &dyn ports::Containerd,
        kind: Rootfs,
        image: &CriImage,
        snapshotter: &str,
        key: &str,
    ) -> Result<Vec<crius_containerd::Mount>> {
        let parent = &image.chain_id;
        if let Made::Mounts(m) = make_snapshot(c, kind, snapshotter, key, parent).await? {
            return Ok(m);
        }
        // The image's layers are not (or no longer) unpacked: unpack them
        // now, then and only then (lazy unpack).
        c.snapshot_remove(snapshotter, key).await?;
        self.images.ensure_unpacked(image, snapshotter).await?;
        match make_snapshot(c, kind, snapshotter, key, parent).await? {
            Made::Mounts(m) => Ok(m),
            Made::ParentMissing => Err(Error::FailedPrecondition(format!(
                "image {}: its snapshot {parent} is missing right after unpacking it",
                image.id
            ))),
        }
    }

    /// The copy of `image`'s snapshot with its files owned by `maps`' host
    /// ids (what containerd 1.7 does without idmapped mounts): one per
    /// image and mapping, made once and shared; committed under the
    /// caller's lease, then kept by its children.
    async fn remapped(
        &self,
        c: &dyn ports::Containerd,
        image: &CriImage,
        snapshotter: &str,
        maps: &IdMaps,
    ) -> Result<String> {
        let name = maps.remapped_name(&image.chain_id);
        if c.snapshot_exists(snapshotter, &name).await? {
            return Ok(name);
        }
        let key = format!("{name}-making-{}", crate::sandbox::random_id());
        let mounts = self
            .image_snapshot(c, Rootfs::Writable, image, snapshotter, &key)
            .await?;
        let scratch = self.state_dir.join("remap").join(&key[key.len() - 16..]);
        let (fs, maps_now) = (self.fs.clone(), *maps);
        let started = std::time::Instant::now();
        let remapped = crius_rt::blocking("remap task", move || {
            fs.remap_ids(&mounts, &scratch, &maps_now)
        })
        .await;
        let committed = match remapped {
            Ok(()) => c.snapshot_commit(snapshotter, &name, &key).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(true) => {
                tracing::info!(image = %image.id, snapshot = %name, ms = started.elapsed().as_millis() as u64, "remapped the image for a user namespace");
                Ok(name)
            }
            // Another pod made it meanwhile.
            Ok(false) => {
                c.snapshot_remove(snapshotter, &key).await?;
                Ok(name)
            }
            Err(e) => {
                if let Err(rm) = c.snapshot_remove(snapshotter, &key).await {
                    tracing::warn!(key, "cannot remove a half-remapped snapshot: {rm}");
                }
                Err(e)
            }
        }
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }

    /// Where idmapped clones of user-namespaced containers' volumes are
    /// mounted (`<id>/<mount index>`), apart from the container's own
    /// directory, which is removed without unmounting.
    pub(crate) fn idmapped_dir(&self) -> PathBuf {
        self.state_dir.join("idmapped")
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

    /// The pod `sandbox_id` (`None` once gone) and all its containers,
    /// oldest first, as they are now (from memory).
    pub(crate) fn pod_now(&self, sandbox_id: &str) -> (Option<SandboxStatus>, PodContainers) {
        let sandbox = self.store.find(sandbox_id).ok().flatten();
        let sandbox = sandbox.map(|s| SandboxStatus::of(&s, None));
        (sandbox, self.containers_now(sandbox_id))
    }

    /// The containers of the pod `sandbox_id`, oldest first, as they are
    /// now (from memory).
    pub(crate) fn containers_now(&self, sandbox_id: &str) -> PodContainers {
        let mut containers: Vec<_> = self
            .containers
            .all()
            .into_iter()
            .filter(|c| c.meta.sandbox_id == sandbox_id)
            .collect();
        containers.sort_by_key(|c| c.meta.created_at);
        containers
            .into_iter()
            .map(|c| (c.meta_now(), c.status()))
            .collect()
    }

    /// Publishes `kind` of `id`: a container of `sandbox_id`, or the
    /// sandbox itself (`id == sandbox_id`).
    pub(crate) fn emit(&self, kind: EventKind, id: &str, sandbox_id: &str) {
        let (sandbox, containers) = self.pod_now(sandbox_id);
        self.events.publish(PodEvent {
            container_id: id.to_string(),
            kind,
            at: crate::now_ns(),
            sandbox,
            containers,
        });
    }
}

/// A pod's containers with their statuses.
pub(crate) type PodContainers = Vec<(
    crate::container::ContainerMeta,
    crius_core::container::ContainerStatus,
)>;

/// Makes the snapshot `key` of `kind` on `parent`.
async fn make_snapshot(
    c: &dyn ports::Containerd,
    kind: Rootfs,
    snapshotter: &str,
    key: &str,
    parent: &str,
) -> Result<Made> {
    match kind {
        Rootfs::View => c.snapshot_view(snapshotter, key, Some(parent)).await,
        Rootfs::Writable => c.snapshot_prepare(snapshotter, key, Some(parent)).await,
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
