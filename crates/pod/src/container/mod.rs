//! Containers: CreateContainer ([`create`]), StartContainer ([`start`]),
//! StopContainer ([`stop`]), RemoveContainer ([`remove`]),
//! ContainerStatus, ListContainers, UpdateContainerResources and
//! ReopenContainerLog ([`status`]), ExecSync ([`exec`]), CheckpointContainer
//! ([`checkpoint`]); start-up recovery of containers ([`recover`]). Served by
//! [`Containers`] over the shared [`Ctx`].
//!
//! Each container is a containerd container record (labels, the OCI spec,
//! the pod's runtime, extensions `io.crius.container` = [`ContainerMeta`]
//! and `io.crius.container.status` = [`ContainerStatus`]) with a writable
//! snapshot and a task whose stdout/stderr FIFOs crius copies into the CRI
//! log file. A watcher per started container records its exit.

mod checkpoint;
mod create;
mod exec;
mod recover;
mod remove;
mod start;
mod status;
mod stop;

pub(crate) use exec::Exec;
pub use exec::{EXEC_OUTPUT_CAP, ExecOutput};

use crius_core::Result;

use crate::ctx::Ctx;
use crate::events::EventKind;
use crate::meta::to_any;
use crate::now_ns;

pub use crius_core::container::state::VANISHED_EXIT_CODE;
use crius_core::container::{self, ContainerRequest, ImageConfig, container_name_key};
pub use crius_core::container::{ContainerEvent, ContainerState, ContainerStatus};
use crius_core::sandbox::PodSandboxRequest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The containers: their lifecycle, exits and status records. Cheap to
/// clone.
#[derive(Clone)]
pub(crate) struct Containers {
    pub(crate) ctx: Arc<Ctx>,
}

/// runc's refusal to run a command (missing, not executable), at
/// StartContainer or an exec, is the client's: the command and image are
/// what it sent. So is runc refusing to create the container as its
/// config asks (a mount over `/dev/null`, a working directory whose name
/// is too long, a memory limit below what it uses, a cgroup parent the
/// kernel cannot make): crius builds the spec from that config and passes
/// such values on as containerd does. Every other failure stays what it is.
pub(crate) fn command_refused(e: crius_core::Error) -> crius_core::Error {
    let message = e.to_string();
    if message.contains("unable to start container process: exec:") {
        crius_core::Error::FailedPrecondition(format!("the command cannot run: {message}"))
    } else if message.contains("runc create failed:") {
        crius_core::Error::FailedPrecondition(format!(
            "the runtime cannot create the container as configured: {message}"
        ))
    } else {
        e
    }
}

/// The operations read the shared ports, directories and indexes as if
/// they were the service's own.
impl std::ops::Deref for Containers {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

/// Extension names on a container's containerd record.
pub const META_EXTENSION: &str = "io.crius.container";

pub const STATUS_EXTENSION: &str = "io.crius.container.status";

const TYPE_URL: &str = "io.crius/ContainerMeta";

const STATUS_TYPE_URL: &str = "io.crius/ContainerStatus";

/// How long a stop waits for the process after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long an exit waits for the log copy to reach EOF (a process the
/// container left behind may hold its pipes open).
const LOG_DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a watcher whose Wait broke off waits for containerd's exit event.
const EXIT_EVENT_WAIT: Duration = Duration::from_secs(3);

/// A container's immutable facts, persisted as versioned JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub version: u32,
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    /// The image as the request named it.
    pub image: String,
    /// The image's first tag when it was created ("" when it had none, or
    /// in records written before it was kept): what `ContainerStatus`
    /// names the image by, as containerd does (kubelet sends the id).
    #[serde(default)]
    pub image_tag: String,
    /// The image id (config digest).
    pub image_id: String,
    /// A repo digest of the image, else its id.
    pub image_ref: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Absolute log file path ("" when the pod or container sets none).
    pub log_path: String,
    pub tty: bool,
    /// The main process has a stdin crius keeps open for Attach (CRI
    /// `stdin`; `false` in records written before it was kept).
    #[serde(default)]
    pub stdin: bool,
    /// The container's stdin is closed once the first attached client's
    /// stdin ends (CRI `stdin_once`).
    #[serde(default)]
    pub stdin_once: bool,
    pub stop_signal: String,
    /// The request's mounts, as `ContainerStatus` gives them back.
    #[serde(deserialize_with = "mounts_of_any_record")]
    pub mounts: Vec<MountRecord>,
    /// The resources in force at create, read back from the spec (`None`
    /// in records written before they were kept); after an update the
    /// record's spec is newer, and recovery reads them from there.
    #[serde(default)]
    pub resources: Option<container::ContainerResources>,
    pub created_at: i64,
    /// The snapshotter of the container's snapshot (its pod's; "" = the
    /// configured default, for records written before handlers had one).
    #[serde(default)]
    pub snapshotter: String,
    /// The shim binary's absolute path, when the pod's handler names one.
    #[serde(default)]
    pub runtime_path: String,
    /// The spec's `linux.cgroupsPath`, for stats ("" in records written
    /// before it was kept).
    #[serde(default)]
    pub cgroups_path: String,
    /// The process' uid, gid and groups, read back from the spec (`None`
    /// in records written before they were kept).
    #[serde(default)]
    pub user: Option<container::User>,
    /// Its image volumes, to unmount and remove with it.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolume>,
}

impl ContainerMeta {
    /// The key that reserves this container's name in `pod` (see
    /// [`container_name_key`]).
    pub(crate) fn name_key(&self, pod: &PodSandboxRequest) -> String {
        container_name_key(
            &ContainerRequest {
                name: self.name.clone(),
                attempt: self.attempt,
                ..Default::default()
            },
            pod,
        )
    }
}

/// A mount as the request asked for it (host path unresolved).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    #[serde(default)]
    pub selinux_relabel: bool,
    #[serde(default)]
    pub propagation: container::Propagation,
    #[serde(default)]
    pub recursive_read_only: bool,
    /// An image volume's image as asked (empty: a bind mount).
    #[serde(default)]
    pub image: String,
    /// The id of the image mounted there.
    #[serde(default)]
    pub image_ref: String,
    #[serde(default)]
    pub image_sub_path: String,
}

impl From<&container::Mount> for MountRecord {
    fn from(m: &container::Mount) -> Self {
        MountRecord {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            selinux_relabel: m.selinux_relabel,
            propagation: m.propagation,
            recursive_read_only: m.recursive_read_only,
            image: m.image.clone(),
            image_ref: String::new(),
            image_sub_path: m.image_sub_path.clone(),
        }
    }
}

/// An image volume of a container: a read-only view snapshot of the
/// image, mounted at `dir` (under the container's directory) while the
/// container exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    pub snapshotter: String,
    /// The view snapshot's key.
    pub key: String,
    pub dir: String,
    /// The request mount it serves (its index).
    pub mount: usize,
    /// The id of the image mounted.
    pub image_ref: String,
}

/// Reads the mounts of a record: named, or the `(container path, host
/// path, readonly)` tuples of records written before propagation was kept.
fn mounts_of_any_record<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<MountRecord>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Named(MountRecord),
        Legacy(String, String, bool),
    }
    let wire: Vec<Wire> = Deserialize::deserialize(d)?;
    Ok(wire
        .into_iter()
        .map(|w| match w {
            Wire::Named(m) => m,
            Wire::Legacy(container_path, host_path, readonly) => MountRecord {
                container_path,
                host_path,
                readonly,
                selinux_relabel: false,
                propagation: container::Propagation::Private,
                ..Default::default()
            },
        })
        .collect())
}

/// One container in the index.
pub struct Container {
    pub meta: ContainerMeta,
    status: Mutex<ContainerStatus>,
    /// The resources in force: `meta.resources` until an update changes
    /// them (the record's spec holds them; recovery reads them from there).
    resources: Mutex<Option<container::ContainerResources>>,
    /// Held while a status change is persisted and then published, so
    /// changes apply in order and nobody sees one before it is on record.
    transition: tokio::sync::Mutex<()>,
    pub(crate) op: tokio::sync::Mutex<()>,
    log: Mutex<Option<Arc<crius_logs::LogHandle>>>,
    /// The write end of the main process' stdin FIFO (containers with
    /// `stdin`, while it is open); attached clients write through it.
    pub(crate) stdin: tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>,
    /// Turns true once an exit is recorded and its task deleted.
    exit_recorded: tokio::sync::watch::Sender<bool>,
}

impl Container {
    pub(crate) fn new(meta: ContainerMeta, status: ContainerStatus) -> Self {
        Container {
            resources: Mutex::new(meta.resources.clone()),
            meta,
            status: Mutex::new(status),
            transition: tokio::sync::Mutex::new(()),
            op: tokio::sync::Mutex::new(()),
            log: Mutex::new(None),
            stdin: tokio::sync::Mutex::new(None),
            exit_recorded: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The metadata with the resources in force now.
    pub(crate) fn meta_now(&self) -> ContainerMeta {
        ContainerMeta {
            resources: crate::lock(&self.resources).clone(),
            ..self.meta.clone()
        }
    }

    /// Records the resources an update put in force.
    pub(crate) fn set_resources(&self, resources: container::ContainerResources) {
        *crate::lock(&self.resources) = Some(resources);
    }

    /// Waits (up to `limit`) for the exit watcher to have recorded the exit.
    pub(crate) async fn exit_recorded(&self, limit: Duration) {
        let mut rx = self.exit_recorded.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }

    pub fn status(&self) -> ContainerStatus {
        crate::lock(&self.status).clone()
    }

    pub(crate) fn publish(&self, status: ContainerStatus) {
        *crate::lock(&self.status) = status;
    }

    pub(crate) fn set_log(&self, h: Option<Arc<crius_logs::LogHandle>>) {
        *crate::lock(&self.log) = h;
    }

    pub(crate) fn log(&self) -> Option<Arc<crius_logs::LogHandle>> {
        crate::lock(&self.log).clone()
    }
}

/// Filters of `ListContainers`.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub id: String,
    pub sandbox_id: String,
    pub state: Option<ContainerState>,
    pub label_selector: BTreeMap<String, String>,
}

/// The task's stdio: the FIFOs crius reads (no stdin), on a terminal or not.
fn fifo_stdio(fifos: &crius_logs::Fifos, terminal: bool) -> crius_containerd::Stdio {
    crius_containerd::Stdio {
        stdin: String::new(),
        stdout: fifos.stdout.display().to_string(),
        stderr: fifos
            .stderr
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        terminal,
    }
}

fn ns_of(t: Option<std::time::SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_else(now_ns)
}

/// An image config (JSON) as the core sees it.
pub(crate) fn image_config(v: &serde_json::Value) -> ImageConfig {
    let c = &v["config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    ImageConfig {
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        env: strings(&c["Env"]),
        working_dir: c["WorkingDir"].as_str().unwrap_or_default().into(),
        user: c["User"].as_str().unwrap_or_default().into(),
        stop_signal: c["StopSignal"].as_str().unwrap_or_default().into(),
        volumes: c["Volumes"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        labels: c["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

async fn wait_log(log: Arc<crius_logs::LogHandle>) {
    log.done().await;
}

impl Containers {
    /// Applies `event` to `c`'s status: persisted, then published.
    pub(crate) async fn record(&self, c: &Container, event: ContainerEvent) -> ContainerStatus {
        let _t = c.transition.lock().await;
        let next = c.status().after(&event);
        self.persist_status(c, &next).await;
        c.publish(next.clone());
        self.emit(
            EventKind::of_container(next.state),
            &c.meta.id,
            &c.meta.sandbox_id,
        );
        next
    }

    pub(crate) async fn persist_status(&self, c: &Container, status: &ContainerStatus) {
        match to_any(STATUS_TYPE_URL, status) {
            Ok(a) => {
                if let Err(e) = self
                    .containerd
                    .container_set_extension(&c.meta.id, STATUS_EXTENSION, a)
                    .await
                {
                    tracing::warn!(container = %c.meta.id, "cannot record the status: {e}");
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// The writer of a container's log: its file opened beneath the pod's
    /// log directory (no symlink followed), or nowhere when the pod or the
    /// container names no log (the FIFOs are still drained, so the
    /// container never blocks on a full pipe).
    pub(crate) fn log_writer(&self, meta: &ContainerMeta) -> Result<crius_logs::LogWriter> {
        let log_dir = self
            .store
            .find(&meta.sandbox_id)?
            .map(|s| s.meta.log_directory.clone())
            .unwrap_or_default();
        match Path::new(&meta.log_path).strip_prefix(&log_dir) {
            Ok(rel) if !log_dir.is_empty() && !meta.log_path.is_empty() => {
                crius_logs::LogWriter::beneath(Path::new(&log_dir), &rel.display().to_string())
            }
            _ => Ok(crius_logs::LogWriter::discard()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn mounts_of_old_and_new_records_read_back() -> serde_json::Result<()> {
        // Records written before propagation was kept hold tuples.
        let old = mounts_of_any_record(&mut serde_json::Deserializer::from_str(
            r#"[["/data", "/srv", true]]"#,
        ))?;
        assert_eq!(old[0].container_path, "/data");
        assert!(old[0].readonly && !old[0].selinux_relabel);
        assert_eq!(old[0].propagation, container::Propagation::Private);
        let new = MountRecord {
            container_path: "/shared".into(),
            host_path: "/mnt/s".into(),
            readonly: false,
            selinux_relabel: true,
            propagation: container::Propagation::Bidirectional,
            ..Default::default()
        };
        let text = serde_json::to_string(&new)?;
        assert!(text.contains(r#""propagation":"bidirectional""#), "{text}");
        assert_eq!(serde_json::from_str::<MountRecord>(&text)?, new);
        Ok(())
    }
}
