//! CheckpointContainer: a running container's processes (CRIU, through
//! the runc shim) and what it changed in its root file system, with its
//! metadata, as one tar archive in the layout containerd and CRI-O write
//! (see [`crius_core::checkpoint`]). The container keeps running.
//!
//! As containerd's client does, the task is paused for the whole
//! checkpoint, so the file system changes and the memory image belong to
//! the same moment; it is resumed whatever happens (and by recovery, should
//! the daemon die meanwhile).

use std::path::Path;
use std::time::{Duration, Instant};

use crius_containerd::ContainerRecord;
use crius_core::checkpoint::{self as cp, ConfigDump, ContainerdStatus};
use crius_core::{Error, Result};

use super::{Container, ContainerMeta, ContainerState, ContainerStatus, Containers};
use crate::ports;

/// How long the lease that keeps the file system diff in containerd's
/// content store lives, should crius not delete it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

impl Containers {
    /// Checkpoints running container `id` into the archive `location` (an
    /// absolute path, validated by the caller); returns the archive's size.
    /// Past `deadline` no archive is written: the caller has given up.
    pub async fn checkpoint_container(
        &self,
        id: &str,
        location: &Path,
        deadline: Option<Instant>,
    ) -> Result<u64> {
        let c = self.find_container(id)?;
        let _op = c.op.lock().await;
        let status = c.status();
        if status.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {}: only running containers can be checkpointed",
                c.meta.id,
                cri_state(status.state).1
            )));
        }
        let record = self
            .containerd
            .container_get(&c.meta.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("container {id}")))?;
        self.can_checkpoint(&record).await?;
        let work = self.state_dir.join("checkpoints").join(format!(
            "{}-{}",
            c.meta.id,
            crate::sandbox::random_id()
        ));
        let made = self
            .checkpoint_into(&c, &record, &work, (location, deadline))
            .await;
        if let Err(e) = self.fs.remove_tree(&work, false) {
            tracing::warn!(container = %c.meta.id, dir = %work.display(), "cannot remove a checkpoint's work directory: {e}");
        }
        made
    }

    /// Whether `record`'s runtime and the node's CRIU can checkpoint.
    async fn can_checkpoint(&self, record: &ContainerRecord) -> Result<()> {
        let runtime = &record.runtime.name;
        if !cp::runtime_can_checkpoint(runtime) {
            return Err(Error::FailedPrecondition(format!(
                "container {} runs on {runtime}, which cannot checkpoint (runc's shim, io.containerd.runc.v2, does it with CRIU)",
                record.id
            )));
        }
        match self.runtimes.criu_version().await {
            Some(v) if v >= cp::MIN_CRIU_VERSION => Ok(()),
            found => Err(Error::FailedPrecondition(format!(
                "checkpoints need CRIU {} or newer on the node's PATH; found {}",
                version_text(cp::MIN_CRIU_VERSION),
                found.map_or("none".to_string(), version_text)
            ))),
        }
    }

    /// Fills `work` with the checkpoint of `c` (paused meanwhile) and
    /// archives it at `location`.
    async fn checkpoint_into(
        &self,
        c: &Container,
        record: &ContainerRecord,
        work: &Path,
        (location, deadline): (&Path, Option<Instant>),
    ) -> Result<u64> {
        let id = &c.meta.id;
        let dir = work.join("archive");
        let images = dir.join(cp::IMAGES_DIR);
        self.fs.create_dir(&images)?;
        self.containerd.task_pause(id).await?;
        let dumped = self.dump(record, &images, work, &dir).await;
        // Resumed before anything else can fail.
        let resumed = self.containerd.task_resume(id).await;
        dumped?;
        resumed?;
        let at = crius_logs::format_timestamp(std::time::SystemTime::now());
        self.write_metadata(c, record, work, &dir, at)?;
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(Error::DeadlineExceeded(format!(
                "the checkpoint of container {id} took longer than its timeout: no archive written"
            )));
        }
        let size = self.fs.write_archive(&dir, location)?;
        tracing::info!(container = %id, archive = %location.display(), size, "checkpoint written");
        Ok(size)
    }

    /// CRIU's images into `images` (its log into `work`), then the root
    /// file system's changes into `dir`.
    async fn dump(
        &self,
        record: &ContainerRecord,
        images: &Path,
        work: &Path,
        dir: &Path,
    ) -> Result<()> {
        self.containerd
            .task_checkpoint(&record.id, images, work)
            .await
            .map_err(|e| self.criu_failed(e, &record.id, work))?;
        if record.snapshot_key.is_empty() {
            return Ok(());
        }
        self.rootfs_diff(record, &dir.join(cp::ROOTFS_DIFF)).await
    }

    /// What the container changed over its image, as a layer tar in `dest`
    /// (containerd's diff service, under a lease of its own).
    async fn rootfs_diff(&self, record: &ContainerRecord, dest: &Path) -> Result<()> {
        let (snapshotter, key) = (&record.snapshotter, &record.snapshot_key);
        let lease = format!("crius-checkpoint-{}", crate::sandbox::random_id());
        self.containerd.lease_create(&lease, LEASE_EXPIRY).await?;
        let leased = self.containerd.with_lease(&lease);
        let view = format!("{lease}-view");
        let diffed = diff_over_parent(leased.as_ref(), snapshotter, key, &view, dest).await;
        if let Err(e) = self.containerd.snapshot_remove(snapshotter, &view).await {
            tracing::warn!(
                view,
                "cannot remove a checkpoint's view (its lease will): {e}"
            );
        }
        if let Err(e) = self.containerd.lease_delete(&lease).await {
            tracing::warn!(
                lease,
                "cannot delete a checkpoint's lease (it expires): {e}"
            );
        }
        diffed
    }

    /// config.dump, spec.dump, status.dump, containerd's status, the
    /// container's log and CRIU's files, into `dir`.
    fn write_metadata(
        &self,
        c: &Container,
        record: &ContainerRecord,
        work: &Path,
        dir: &Path,
        checkpointed_at: String,
    ) -> Result<()> {
        let (meta, status) = (c.meta_now(), c.status());
        let config = config_dump(&meta, &record.runtime.name, checkpointed_at);
        self.fs
            .write_atomic(&dir.join(cp::CONFIG_DUMP), &to_json(&config)?, 0o600)?;
        self.fs
            .write_atomic(&dir.join(cp::SPEC_DUMP), &to_json(&record.spec)?, 0o600)?;
        let cri = status_dump(&meta, &status);
        self.fs
            .write_atomic(&dir.join(cp::STATUS_DUMP), &to_json(&cri)?, 0o600)?;
        let ctrd = containerd_status(&meta, &status);
        self.fs
            .write_atomic(&dir.join(cp::CONTAINERD_STATUS), &to_json(&ctrd)?, 0o600)?;
        if !meta.log_path.is_empty() {
            self.fs
                .copy_file(Path::new(&meta.log_path), &dir.join(cp::CONTAINER_LOG))?;
        }
        for name in cp::CRIU_FILES {
            self.fs.copy_file(&work.join(name), &dir.join(name))?;
        }
        Ok(())
    }
}

/// The diff of snapshot `key` over its parent, seen through a view `view`.
async fn diff_over_parent(
    c: &dyn ports::Containerd,
    snapshotter: &str,
    key: &str,
    view: &str,
    dest: &Path,
) -> Result<()> {
    let lower = match c.snapshot_parent(snapshotter, key).await? {
        Some(parent) => match c.snapshot_view(snapshotter, view, Some(&parent)).await? {
            ports::Made::Mounts(m) => m,
            ports::Made::ParentMissing => {
                return Err(Error::FailedPrecondition(format!(
                    "the image snapshot {parent} of container {key} is gone"
                )));
            }
        },
        None => vec![],
    };
    let upper = c.snapshot_mounts(snapshotter, key).await?;
    c.diff_to_file(lower, upper, dest).await.map(|_| ())
}

impl Containers {
    /// A failed checkpoint, with CRIU's own errors from its log (the shim
    /// gives only runc's view of it; the log goes with the work directory).
    fn criu_failed(&self, e: Error, id: &str, work: &Path) -> Error {
        let log = self.fs.read(&work.join("dump.log")).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
        tracing::warn!(
            container = id,
            "checkpoint failed: {e}; CRIU: {}",
            errors.join(" | ")
        );
        let last = &errors[errors.len().saturating_sub(3)..];
        Error::FailedPrecondition(format!(
            "the runtime could not checkpoint container {id}: {e}{}{}",
            if last.is_empty() { "" } else { "; CRIU: " },
            last.join(" | ")
        ))
    }
}

fn version_text(v: u32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

fn rfc3339_of_ns(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    crius_logs::format_timestamp(t)
}

fn config_dump(meta: &ContainerMeta, runtime: &str, checkpointed_at: String) -> ConfigDump {
    let image = if meta.image_tag.is_empty() {
        &meta.image
    } else {
        &meta.image_tag
    };
    ConfigDump::new(
        (&meta.id, &meta.name),
        (image, &meta.image_ref),
        runtime,
        (rfc3339_of_ns(meta.created_at), checkpointed_at),
    )
}

/// The CRI `ContainerStatus` as Go's JSON of cri-api writes it (what
/// containerd's restore reads back: metadata, labels, annotations, image).
fn status_dump(meta: &ContainerMeta, status: &ContainerStatus) -> serde_json::Value {
    let image = if meta.image_tag.is_empty() {
        &meta.image
    } else {
        &meta.image_tag
    };
    let mounts: Vec<_> = meta
        .mounts
        .iter()
        .map(|m| {
            serde_json::json!({
                "container_path": m.container_path,
                "host_path": m.host_path,
                "readonly": m.readonly,
            })
        })
        .collect();
    serde_json::json!({
        "id": meta.id,
        "metadata": { "name": meta.name, "attempt": meta.attempt },
        "state": cri_state(status.state).0,
        "created_at": meta.created_at,
        "started_at": status.started_at,
        "image": { "image": image, "user_specified_image": meta.image },
        "image_ref": meta.image_ref,
        "image_id": meta.image_id,
        "labels": meta.labels,
        "annotations": meta.annotations,
        "mounts": mounts,
        "log_path": meta.log_path,
    })
}

fn containerd_status(meta: &ContainerMeta, status: &ContainerStatus) -> ContainerdStatus {
    ContainerdStatus {
        created_at: meta.created_at,
        started_at: status.started_at,
        finished_at: status.finished_at,
        exit_code: status.exit_code,
        pid: status.pid,
        reason: status.reason.clone(),
        message: status.message.clone(),
    }
}

/// One of the archive's JSON files.
fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))
}

/// CRI's number and name of a container state.
fn cri_state(s: ContainerState) -> (i32, &'static str) {
    match s {
        ContainerState::Created => (0, "CONTAINER_CREATED"),
        ContainerState::Running => (1, "CONTAINER_RUNNING"),
        ContainerState::Exited => (2, "CONTAINER_EXITED"),
        ContainerState::Unknown => (3, "CONTAINER_UNKNOWN"),
    }
}
