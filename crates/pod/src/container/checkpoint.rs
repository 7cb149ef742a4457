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

/// How often a resume is tried before the error is the answer.
const RESUME_TRIES: u32 = 3;

impl Containers {
    /// Checkpoints running container `id` into the archive `location` (an
    /// absolute path, validated by the caller), working in a directory of
    /// its own under `work_root` (on disk: CRIU's images are as large as
    /// the container's memory); returns the archive's size. Past
    /// `deadline` nothing more is done: the caller has given up.
    pub async fn checkpoint_container(
        &self,
        work_root: &Path,
        id: &str,
        (location, deadline): (&Path, Option<Instant>),
    ) -> Result<u64> {
        let c = self.find_container(id)?;
        let record = self
            .containerd
            .container_get(&c.meta.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("container {id}")))?;
        self.can_checkpoint(&record).await?;
        let name = format!("{}-{}", c.meta.id, crate::sandbox::random_id());
        let work = work_root.join(name);
        let made = self
            .checkpoint_into(&c, &record, &work, (location, deadline))
            .await;
        let (fs, dir) = (self.fs.clone(), work.clone());
        let cleaned =
            crius_rt::blocking("checkpoint clean-up", move || fs.remove_tree(&dir, false));
        if let Err(e) = cleaned.await {
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

    /// Fills `work` with the checkpoint of `c` (paused meanwhile, under its
    /// operation lock, so no start, stop or removal runs meanwhile) and
    /// archives it at `location` (the lock released: the container runs).
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
        let (fs, made) = (self.fs.clone(), images.clone());
        crius_rt::blocking("checkpoint directory", move || fs.create_dir(&made)).await?;
        {
            let _op = c.op.lock().await;
            let state = c.status().state;
            if state != ContainerState::Running {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is {}: only running containers can be checkpointed",
                    cri_state(state).1
                )));
            }
            past(deadline, id)?;
            self.frozen(record, &images, work, &dir).await?;
        }
        let at = crius_logs::format_timestamp(std::time::SystemTime::now());
        let files = Files::of(c, record, at);
        let (fs, work, dest) = (self.fs.clone(), work.to_path_buf(), location.to_path_buf());
        let size = crius_rt::blocking("checkpoint archive", move || {
            files.write(&*fs, &work, &dir)?;
            past(deadline, &files.id)?;
            fs.write_archive(&dir, &dest)
        })
        .await?;
        tracing::info!(container = %id, archive = %location.display(), size, "checkpoint written");
        Ok(size)
    }

    /// The dump and the diff with the task paused; resumed whatever
    /// happens (also after a pause that failed: one that timed out may
    /// have frozen it all the same).
    async fn frozen(
        &self,
        record: &ContainerRecord,
        images: &Path,
        work: &Path,
        dir: &Path,
    ) -> Result<()> {
        let id = &record.id;
        if let Err(e) = self.containerd.task_pause(id).await {
            let _ = self.resume(id).await;
            return Err(match e {
                Error::NotFound { .. } => Error::FailedPrecondition(format!(
                    "container {id} exited: nothing to checkpoint"
                )),
                e => e,
            });
        }
        let dumped = self.dump(record, images, work, dir).await;
        let resumed = self.resume(id).await;
        dumped.and(resumed)
    }

    /// Resumes `id`'s task, trying again a few times: a container left
    /// frozen is worse than a slow answer (recovery resumes it too).
    async fn resume(&self, id: &str) -> Result<()> {
        let mut last = Ok(());
        for attempt in 1..=RESUME_TRIES {
            match self.containerd.task_resume(id).await {
                // A task gone has nothing frozen left.
                Ok(()) | Err(Error::NotFound { .. }) => return Ok(()),
                Err(e) => {
                    tracing::error!(
                        container = id,
                        attempt,
                        "cannot resume the task a checkpoint paused: {e}"
                    );
                    last = Err(e);
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
            }
        }
        last
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
}

/// The archive's metadata files, taken from the container as it was at
/// the checkpoint.
struct Files {
    id: String,
    config: ConfigDump,
    spec: oci_spec::runtime::Spec,
    status: serde_json::Value,
    containerd: ContainerdStatus,
    log_path: String,
}

impl Files {
    fn of(c: &Container, record: &ContainerRecord, checkpointed_at: String) -> Files {
        let (meta, status) = (c.meta_now(), c.status());
        Files {
            id: meta.id.clone(),
            config: config_dump(&meta, &record.runtime.name, checkpointed_at),
            spec: record.spec.clone(),
            status: status_dump(&meta, &status),
            containerd: containerd_status(&meta, &status),
            log_path: meta.log_path.clone(),
        }
    }

    /// config.dump, spec.dump, status.dump, containerd's status, the
    /// container's log and CRIU's files (from `work`), into `dir`.
    fn write(&self, fs: &dyn ports::HostFs, work: &Path, dir: &Path) -> Result<()> {
        fs.write_atomic(&dir.join(cp::CONFIG_DUMP), &to_json(&self.config)?, 0o600)?;
        fs.write_atomic(&dir.join(cp::SPEC_DUMP), &to_json(&self.spec)?, 0o600)?;
        fs.write_atomic(&dir.join(cp::STATUS_DUMP), &to_json(&self.status)?, 0o600)?;
        let ctrd = to_json(&self.containerd)?;
        fs.write_atomic(&dir.join(cp::CONTAINERD_STATUS), &ctrd, 0o600)?;
        if !self.log_path.is_empty() {
            fs.copy_file(Path::new(&self.log_path), &dir.join(cp::CONTAINER_LOG))?;
        }
        for name in cp::CRIU_FILES {
            fs.copy_file(&work.join(name), &dir.join(name))?;
        }
        Ok(())
    }
}

/// `DeadlineExceeded` once `deadline` has passed.
fn past(deadline: Option<Instant>, id: &str) -> Result<()> {
    if deadline.is_some_and(|d| Instant::now() > d) {
        return Err(Error::DeadlineExceeded(format!(
            "the checkpoint of container {id} took longer than its timeout: no archive written"
        )));
    }
    Ok(())
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
        // containerd or its shim not answering is not the runtime's refusal.
        if !matches!(
            e,
            Error::Containerd { .. } | Error::Internal(_) | Error::FailedPrecondition(_)
        ) {
            return e;
        }
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
