//! Containers: CreateContainer, StartContainer, StopContainer,
//! RemoveContainer, ContainerStatus, ListContainers.
//!
//! Each container is a containerd container record (labels, the OCI spec,
//! the pod's runtime, extensions `io.crius.container` = [`ContainerMeta`]
//! and `io.crius.container.status` = [`ContainerStatus`]) with a writable
//! snapshot and a task whose stdout/stderr FIFOs crius copies into the CRI
//! log file. A watcher per started container records its exit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crius_containerd::{ContainerRecord, Stdio, TaskStatus};
use crius_core::cgroup::{CgroupDriver, Controller};
use crius_core::config::Config;
use crius_core::container::{
    self, ContainerRequest, ContainerSpecInput, ImageConfig, PodFiles, container_labels,
    container_name_key,
};
use crius_core::image::CriImage;
use crius_core::sandbox::{PodSandboxRequest, SandboxState};
use crius_core::{Error, Result};
use crius_image::Query;
use serde::{Deserialize, Serialize};

use crate::meta::{SandboxMeta, from_any, to_any};
use crate::ports::HostLookup;
use crate::registrar::Reserve;
use crate::sandbox::Rootfs;
use crate::{Pods, now_ns};

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
    pub stop_signal: String,
    /// The request's mounts, as `ContainerStatus` gives them back.
    #[serde(deserialize_with = "mounts_of_any_record")]
    pub mounts: Vec<MountRecord>,
    /// The resources in force, read back from the spec (`None` in records
    /// written before they were kept).
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        }
    }
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
                recursive_read_only: false,
            },
        })
        .collect())
}

pub use crius_core::container::state::VANISHED_EXIT_CODE;
pub use crius_core::container::{ContainerEvent, ContainerState, ContainerStatus};

/// One container in the index.
pub struct Container {
    pub meta: ContainerMeta,
    status: Mutex<ContainerStatus>,
    /// Held while a status change is persisted and then published, so
    /// changes apply in order and nobody sees one before it is on record.
    transition: tokio::sync::Mutex<()>,
    pub(crate) op: tokio::sync::Mutex<()>,
    log: Mutex<Option<Arc<crius_logs::LogHandle>>>,
    /// Turns true once an exit is recorded and its task deleted.
    exit_recorded: tokio::sync::watch::Sender<bool>,
}

impl Container {
    fn new(meta: ContainerMeta, status: ContainerStatus) -> Self {
        Container {
            meta,
            status: Mutex::new(status),
            transition: tokio::sync::Mutex::new(()),
            op: tokio::sync::Mutex::new(()),
            log: Mutex::new(None),
            exit_recorded: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Waits (up to `limit`) for the exit watcher to have recorded the exit.
    async fn exit_recorded(&self, limit: Duration) {
        let mut rx = self.exit_recorded.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }

    pub fn status(&self) -> ContainerStatus {
        match self.status.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, status: ContainerStatus) {
        match self.status.lock() {
            Ok(mut g) => *g = status,
            Err(p) => *p.into_inner() = status,
        }
    }

    fn set_log(&self, h: Option<Arc<crius_logs::LogHandle>>) {
        match self.log.lock() {
            Ok(mut g) => *g = h,
            Err(p) => *p.into_inner() = h,
        }
    }

    fn log(&self) -> Option<Arc<crius_logs::LogHandle>> {
        match self.log.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
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

/// A signal by name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let name = s.trim_start_matches("SIG");
    nix::sys::signal::Signal::iterator()
        .find(|sig| sig.as_str().trim_start_matches("SIG") == name)
        .map(|sig| sig as i32 as u32)
}

impl Pods {
    fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }

    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        self: &Arc<Self>,
        config: Arc<Config>,
        driver: CgroupDriver,
        sandbox_id: &str,
        req: ContainerRequest,
    ) -> Result<String> {
        container::validate(&req)?;
        let req = container::normalized(req);
        for (field, name) in container::unknown_capabilities(&req.linux.security.capabilities) {
            tracing::warn!(container = %req.name, "{field}: {name:?} is not a Linux capability; ignored, as runc does");
        }
        let sandbox = self
            .store
            .find(sandbox_id)?
            .ok_or_else(|| Error::not_found(format!("pod sandbox {sandbox_id}")))?;
        if sandbox.state() != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sandbox.meta.id
            )));
        }
        let pod = sandbox.meta.request();
        let key = container_name_key(&req, &pod);
        let id = crate::sandbox::random_id();
        let fingerprint = crate::sandbox::fingerprint_of(&format!("{}{req:?}", sandbox.meta.id));
        let reservation = match self
            .containers
            .names
            .reserve(&key, &id, &fingerprint)
            .await?
        {
            Reserve::Duplicate(Some(id)) => return Ok(id),
            Reserve::Duplicate(None) => {
                return Err(Error::Internal(
                    "name reservation ended without an id".into(),
                ));
            }
            Reserve::Reserved(r) => r,
        };
        let pods = self.clone();
        crius_rt::detached("container creation task", async move {
            let mut undo = Undo::default();
            match pods
                .create_inner(&config, driver, &sandbox, &req, reservation.id(), &mut undo)
                .await
            {
                Ok(c) => {
                    let id = c.meta.id.clone();
                    pods.containers.insert(Arc::new(c));
                    reservation.commit();
                    Ok(id)
                }
                Err(e) => {
                    tracing::warn!(container = %req.name, "CreateContainer failed, undoing: {e}");
                    pods.undo_container(undo).await;
                    Err(e)
                }
            }
        })
        .await
    }

    /// The steps of a create, in order; each records in `undo` what it made.
    async fn create_inner(
        &self,
        config: &Config,
        driver: CgroupDriver,
        pod_sandbox: &crate::store::Sandbox,
        req: &ContainerRequest,
        id: &str,
        undo: &mut Undo,
    ) -> Result<Container> {
        let sandbox = &pod_sandbox.meta;
        // The pause process' pid, from memory: its namespaces are joined.
        let sandbox_pid = pod_sandbox.pid().ok_or_else(|| {
            Error::FailedPrecondition(format!("pod sandbox {} is not running", sandbox.id))
        })?;
        let plan = self.plan(config, driver, sandbox, req, id).await?;
        let process = container::image_process(&plan.image_cfg, req)?;
        let lease = format!("crius-sandbox-c-{id}");
        let c = self
            .take_lease(&lease, Duration::from_secs(600), &mut undo.lease)
            .await?;
        let mounts = self
            .rootfs_snapshot(&*c, Rootfs::Writable, &plan.image, &plan.snapshotter, id)
            .await?;
        undo.snapshot = Some((plan.snapshotter.clone(), id.to_string()));
        let facts = self.rootfs_facts(&plan, mounts, undo).await?;
        let user = container::resolve_user(
            req,
            &plan.image_cfg.user,
            facts.passwd.as_deref(),
            facts.group.as_deref(),
        )?;
        let target_pid = self.target_pid(req, &sandbox.id).await?;
        let lookup = self.host_lookup(req, sandbox).await?;
        let run_as = RunAs {
            sandbox_pid,
            target_pid,
            process,
            user,
        };
        let spec = self.container_spec(&plan, run_as, lookup, &facts)?;
        let meta = container_meta(&plan, &spec)?;
        let status = ContainerStatus::created();
        let record = self.container_record(&plan, &meta, &status, spec).await?;
        c.container_create(&record).await?;
        undo.container = Some(id.to_string());
        // The record now holds the snapshot: the lease can go after the
        // answer (it expires on its own if this fails).
        let containerd = self.containerd.clone();
        self.background.spawn_to_end(async move {
            if let Err(e) = containerd.lease_delete(&lease).await {
                tracing::warn!(lease, "cannot delete the creation lease: {e}");
            }
        });
        undo.lease = None;
        tracing::info!(container = id, name = %req.name, sandbox = %sandbox.id, "container created");
        Ok(Container::new(meta, status))
    }

    /// The image and snapshotter of a create.
    async fn plan<'a>(
        &self,
        config: &'a Config,
        driver: CgroupDriver,
        sandbox: &'a SandboxMeta,
        req: &'a ContainerRequest,
        id: &'a str,
    ) -> Result<Plan<'a>> {
        let snapshotter = sandbox
            .snapshotter_or(&config.containerd.snapshotter)
            .to_string();
        let image = self
            .images
            .find(&Query::parse(&req.image)?)
            .await?
            .ok_or_else(|| Error::not_found(format!("image {:?}", req.image)))?;
        let image_json = self.images.config(&image).await?;
        Ok(Plan {
            config,
            driver,
            sandbox,
            pod: sandbox.request(),
            req,
            id,
            snapshotter,
            image_cfg: image_config(&image_json),
            image,
        })
    }

    /// Reads the rootfs' `/etc/passwd` and `/etc/group` and fills the image
    /// volumes: fresh host directories holding a copy of the image's
    /// content there, made while the rootfs is mounted anyway.
    async fn rootfs_facts(
        &self,
        plan: &Plan<'_>,
        mounts: Vec<crius_containerd::Mount>,
        undo: &mut Undo,
    ) -> Result<RootfsFacts> {
        let volumes_dir = self.volumes_dir(plan.config, plan.id);
        let image_volumes: Vec<(String, PathBuf)> =
            container::image_volume_paths(&plan.image_cfg.volumes, plan.req)
                .into_iter()
                .enumerate()
                .map(|(n, path)| (path, volumes_dir.join(n.to_string())))
                .collect();
        if !image_volumes.is_empty() {
            undo.volumes = Some(volumes_dir.clone());
        }
        // Always read, as containerd does: a bare uid still takes its
        // primary group from /etc/passwd and its memberships from /etc/group.
        let scratch = self.containers_dir().join(format!("{}.rootfs", plan.id));
        let v = image_volumes.clone();
        let fs = self.fs.clone();
        let (passwd, group) = crius_rt::blocking("rootfs reader", move || {
            fs.read_rootfs(&mounts, &scratch, &v)
        })
        .await?;
        Ok(RootfsFacts {
            passwd,
            group,
            image_volumes,
        })
    }

    /// PID mode Target (ephemeral debug containers): the target's init
    /// process, which must be a running container of the same pod.
    async fn target_pid(&self, req: &ContainerRequest, sandbox_id: &str) -> Result<Option<u32>> {
        let ns = &req.linux.security.namespace_options;
        if ns.pid != crius_core::container::NamespaceMode::Target {
            return Ok(None);
        }
        let field = "config.linux.security_context.namespace_options.target_id";
        let target = self
            .containers
            .find(&ns.target_id)
            .map_err(|e| match e {
                Error::InvalidArgument { reason, .. } => Error::invalid(field, reason),
                e => e,
            })?
            .filter(|t| t.meta.sandbox_id == sandbox_id)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{field}: container {:?} in pod sandbox {sandbox_id}",
                    ns.target_id
                ))
            })?;
        let pid = self
            .containerd
            .task_get(&target.meta.id)
            .await?
            .filter(|t| t.status == TaskStatus::Running)
            .map(|t| t.pid)
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "{field}: container {} is not running",
                    target.meta.id
                ))
            })?;
        Ok(Some(pid))
    }

    /// The device nodes and host paths of the request (devices first: a
    /// refused device must not leave created host directories behind).
    /// All of it touches the host's filesystem (a client's host path may
    /// sit on a slow mount): off the async workers.
    async fn host_lookup(
        &self,
        req: &ContainerRequest,
        sandbox: &SandboxMeta,
    ) -> Result<HostLookup> {
        let devices = req.devices.clone();
        let paths: Vec<String> = req.mounts.iter().map(|m| m.host_path.clone()).collect();
        let all_devices = req.linux.security.privileged && !sandbox.privileged_without_host_devices;
        let fs = self.fs.clone();
        crius_rt::blocking("host facts task", move || {
            fs.host_lookup(&devices, &paths, all_devices)
        })
        .await
    }

    /// The container's OCI spec.
    fn container_spec(
        &self,
        plan: &Plan<'_>,
        run_as: RunAs,
        lookup: HostLookup,
        facts: &RootfsFacts,
    ) -> Result<oci_spec::runtime::Spec> {
        let (sandbox, req) = (plan.sandbox, plan.req);
        let pod_dir = self.pods_dir().join(&sandbox.id);
        let files = PodFiles {
            hostname: Some(pod_dir.join("hostname").display().to_string()),
            hosts: pod_dir.join("hosts").display().to_string(),
            resolv_conf: pod_dir.join("resolv.conf").display().to_string(),
            shm: sandbox.shm.clone(),
        };
        container::container_spec(&ContainerSpecInput {
            id: plan.id.to_string(),
            sandbox_id: sandbox.id.clone(),
            request: req,
            sandbox: &plan.pod,
            sandbox_pid: run_as.sandbox_pid,
            netns_path: sandbox.netns.clone(),
            target_pid: run_as.target_pid,
            process: run_as.process,
            user: run_as.user,
            hostname: sandbox.hostname.clone(),
            files,
            image_name: req.image.clone(),
            cgroup_driver: plan.driver,
            host: &self.host,
            host_devices: lookup.host_devices,
            privileged_without_host_devices: sandbox.privileged_without_host_devices,
            device_nodes: lookup.device_nodes,
            host_paths: lookup.host_paths,
            annotations: spec_annotations(plan.config, sandbox, req),
            image_volumes: facts
                .image_volumes
                .iter()
                .map(|(path, dir)| (path.clone(), dir.display().to_string()))
                .collect(),
            localhost_seccomp: crate::host::localhost_seccomp(req.linux.security.seccomp.as_ref())?,
            apparmor_profiles: crate::host::loaded_apparmor_profiles(
                &self.host.apparmor,
                req.linux.security.apparmor.as_ref(),
                || std::fs::read_to_string(crius_core::apparmor::PROFILES_FILE),
            )?,
        })
    }

    /// The container's containerd record: labels, its pod's runtime, the
    /// spec, its snapshot, meta and status.
    async fn container_record(
        &self,
        plan: &Plan<'_>,
        meta: &ContainerMeta,
        status: &ContainerStatus,
        spec: oci_spec::runtime::Spec,
    ) -> Result<ContainerRecord> {
        let sandbox = plan.sandbox;
        // Every container runs on its pod's runtime, whatever the config
        // says now.
        let pod_runtime = self
            .containerd
            .container_get(&sandbox.id)
            .await?
            .map(|r| r.runtime)
            .ok_or_else(|| Error::not_found(format!("pod sandbox {}", sandbox.id)))?;
        let image = &plan.image;
        Ok(ContainerRecord {
            id: plan.id.to_string(),
            labels: container_labels(plan.req, &plan.pod, &sandbox.id, &plan.image_cfg.labels)
                .into_iter()
                .collect(),
            image: image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            runtime: pod_runtime,
            spec,
            snapshotter: plan.snapshotter.clone(),
            snapshot_key: plan.id.to_string(),
            extensions: HashMap::from([
                (META_EXTENSION.to_string(), to_any(TYPE_URL, meta)?),
                (
                    STATUS_EXTENSION.to_string(),
                    to_any(STATUS_TYPE_URL, status)?,
                ),
            ]),
            ..Default::default()
        })
    }

    /// Undoes a failed create (it makes no task: tasks are made at start).
    async fn undo_container(&self, undo: Undo) {
        if let Some(id) = &undo.container
            && let Err(e) = self.containerd.container_delete(id).await
        {
            tracing::warn!(container = %id, "undo: record: {e}");
        }
        if let Some((snapshotter, key)) = &undo.snapshot
            && let Err(e) = self.containerd.snapshot_remove(snapshotter, key).await
        {
            tracing::warn!(key, "undo: snapshot: {e}");
        }
        if let Some(lease) = &undo.lease {
            let _ = self.containerd.lease_delete(lease).await;
        }
        if let Some(dir) = undo.volumes
            && let Some(parent) = dir.parent()
            && let Err(e) = self.fs.remove_tree(parent, false)
        {
            tracing::warn!(dir = %parent.display(), "undo: volumes: {e}");
        }
    }

    /// Where a container's image volumes live: persistent, under `root_dir`.
    fn volumes_dir(&self, config: &Config, id: &str) -> PathBuf {
        config.root_dir.join("containers").join(id).join("volumes")
    }

    fn find_container(&self, id: &str) -> Result<Arc<Container>> {
        self.containers
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("container {id}")))
    }

    /// Applies `event` to `c`'s status: persisted, then published.
    async fn record(&self, c: &Container, event: ContainerEvent) -> ContainerStatus {
        let _t = c.transition.lock().await;
        let next = c.status().after(&event);
        self.persist_status(c, &next).await;
        c.publish(next.clone());
        next
    }

    async fn persist_status(&self, c: &Container, status: &ContainerStatus) {
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

    /// Starts a created container and watches for its exit.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let c = self.find_container(id)?;
        let _op = c.op.lock().await;
        let st = c.status();
        if st.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not created",
                c.meta.id, st.state
            )));
        }
        let started_at = now_ns();
        if let Err(e) = self.create_task(&c).await {
            // The runtime refused (e.g. the command does not exist).
            self.start_failed(&c, &e).await;
            return Err(e);
        }
        match self.containerd.task_start(&c.meta.id).await {
            Ok(pid) => {
                // The exit follower may have recorded a quick exit already:
                // the state machine keeps it.
                self.record(
                    &c,
                    ContainerEvent::Started {
                        pid,
                        at: started_at,
                    },
                )
                .await;
                self.watch_exit(c.clone());
                tracing::info!(container = %c.meta.id, pid, "container started");
                Ok(())
            }
            Err(e) => {
                // The task exists but its process would not start: the
                // task, the log copy and the FIFOs go now.
                if let Err(d) = self.kill_and_delete_task(&c.meta.id).await {
                    tracing::warn!(container = %c.meta.id, "after a failed start: task: {d}");
                }
                if let Some(log) = c.log() {
                    log.stop();
                    let _ = tokio::time::timeout(LOG_DRAIN_WAIT, wait_log(log)).await;
                }
                c.set_log(None);
                let dir = self.containers_dir().join(&c.meta.id);
                if let Err(d) = std::fs::remove_dir_all(&dir)
                    && d.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(container = %c.meta.id, "after a failed start: FIFOs: {d}");
                }
                self.start_failed(&c, &e).await;
                Err(e)
            }
        }
    }

    /// The writer of a container's log: its file opened beneath the pod's
    /// log directory (no symlink followed), or nowhere when the pod or the
    /// container names no log (the FIFOs are still drained, so the
    /// container never blocks on a full pipe).
    fn log_writer(&self, meta: &ContainerMeta) -> Result<crius_logs::LogWriter> {
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

    /// Records a start the runtime refused (e.g. the command does not exist).
    async fn start_failed(&self, c: &Container, e: &Error) {
        let event = ContainerEvent::StartFailed {
            at: now_ns(),
            message: e.to_string(),
        };
        self.record(c, event).await;
    }

    /// The container's task, with its stdout/stderr FIFOs copied into the
    /// log; created at start (as containerd's CRI does), so a command the
    /// runtime cannot run fails StartContainer, not CreateContainer.
    async fn create_task(&self, c: &Container) -> Result<()> {
        let id = &c.meta.id;
        let snapshotter = if c.meta.snapshotter.is_empty() {
            self.containerd
                .container_get(id)
                .await?
                .map(|r| r.snapshotter)
                .ok_or_else(|| Error::not_found(format!("container {id}")))?
        } else {
            c.meta.snapshotter.clone()
        };
        let mounts = self.containerd.snapshot_mounts(&snapshotter, id).await?;
        let fifos = crius_logs::create_fifos(&self.containers_dir().join(id), id, c.meta.tty)?;
        let log = self.log_writer(&c.meta)?.start(&fifos)?;
        let stdio = Stdio {
            stdin: String::new(),
            stdout: fifos.stdout.display().to_string(),
            stderr: fifos
                .stderr
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            terminal: c.meta.tty,
        };
        match self
            .containerd
            .task_create(id, mounts, &stdio, &c.meta.runtime_path)
            .await
        {
            Ok(_) => {
                c.set_log(Some(Arc::new(log)));
                Ok(())
            }
            Err(e) => {
                log.stop();
                let _ = crius_logs::remove_fifos(&fifos);
                Err(e)
            }
        }
    }

    /// Waits for the container's task to exit and records it.
    fn watch_exit(self: &Arc<Self>, c: Arc<Container>) {
        let pods = self.clone();
        self.background.spawn("exit watcher", async move {
            let mut cut = false;
            let exit = loop {
                match pods.containerd.task_wait(&c.meta.id).await {
                    Ok(exit) => break Some(exit),
                    // Gone: when its shim died, containerd cleaned the task
                    // up and published the exit (128 + SIGKILL).
                    Err(Error::NotFound { .. }) => {
                        let patience = if cut { EXIT_EVENT_WAIT } else { Duration::ZERO };
                        break pods.exits.wait(&c.meta.id, patience).await;
                    }
                    Err(e) => {
                        cut = true;
                        tracing::warn!(container = %c.meta.id, "waiting for the exit: {e}; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            pods.record_exit(&c, exit).await;
        });
    }

    async fn record_exit(&self, c: &Container, exit: Option<crius_containerd::TaskExit>) {
        // The log first, as containerd does: whoever sees EXITED finds the
        // whole output in the log file.
        if let Some(log) = c.log() {
            let _ = tokio::time::timeout(LOG_DRAIN_WAIT, wait_log(log)).await;
        }
        let oom = self.oom_killed(&c.meta.id).await;
        // As containerd does: the task goes at once (its rootfs unmounted,
        // the shim's resources freed), not at RemoveContainer; and before
        // the status says EXITED, so that no one else deletes it meanwhile.
        if let Err(e) = self.containerd.task_delete(&c.meta.id).await {
            tracing::warn!(container = %c.meta.id, "deleting the exited task: {e}");
        }
        let event = match exit {
            Some(e) => ContainerEvent::Exited {
                exit_code: e.exit_status as i32,
                at: ns_of(e.exited_at),
                oom,
            },
            None => ContainerEvent::Vanished {
                at: now_ns(),
                message: "the task disappeared".into(),
            },
        };
        let st = self.record(c, event).await;
        c.exit_recorded.send_replace(true);
        tracing::info!(container = %c.meta.id, exit_code = st.exit_code, reason = %st.reason, "container exited");
    }

    /// Whether the container was OOM-killed: containerd's `/tasks/oom`
    /// event, else (cgroup v1) the memory cgroup's `oom_kill` count.
    async fn oom_killed(&self, id: &str) -> bool {
        if self.exits.take_oom(id) {
            return true;
        }
        let Ok(Some(record)) = self.containerd.container_get(id).await else {
            return false;
        };
        let Some(path) = record
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
        else {
            return false;
        };
        let path = path.display().to_string();
        let driver = CgroupDriver::of_cgroups_path(&path);
        let unified = self.host.cgroup_unified;
        let Some(dir) = crius_core::cgroup::cgroup_dir(driver, &path, unified, Controller::Memory)
        else {
            return false;
        };
        std::fs::read_to_string(dir.join("memory.oom_control"))
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("oom_kill ") && !l.ends_with(" 0"))
            })
            .unwrap_or(false)
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout`
    /// seconds (0: at once). Idempotent; unknown ids are fine.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let Some(c) = self.containers.find(id)? else {
            tracing::debug!(
                container = id,
                "StopContainer of an unknown id: nothing to do"
            );
            return Ok(());
        };
        let _op = c.op.lock().await;
        self.stop_container_locked(&c, timeout).await
    }

    async fn stop_container_locked(&self, c: &Container, timeout: i64) -> Result<()> {
        self.stop_task(c, timeout).await?;
        // Answer once the exit is recorded, as containerd does: a status
        // asked for next says EXITED.
        if c.status().state == ContainerState::Running {
            c.exit_recorded(LOG_DRAIN_WAIT + Duration::from_secs(3))
                .await;
        }
        Ok(())
    }

    async fn stop_task(&self, c: &Container, timeout: i64) -> Result<()> {
        let id = &c.meta.id;
        let running = self.containerd.task_get(id).await?.is_some_and(|t| {
            matches!(
                t.status,
                TaskStatus::Running | TaskStatus::Paused | TaskStatus::Created
            )
        });
        if !running {
            return Ok(());
        }
        if timeout > 0 {
            let signal = parse_signal(&c.meta.stop_signal).unwrap_or(15);
            match self.containerd.task_kill(id, signal, false).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if self
                .wait_task_exit(id, Duration::from_secs(timeout as u64))
                .await?
            {
                return Ok(());
            }
        }
        match self.containerd.task_kill(id, 9, true).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if self.wait_task_exit(id, KILL_WAIT).await? {
            Ok(())
        } else {
            Err(Error::DeadlineExceeded(format!(
                "container {id} did not die within {KILL_WAIT:?} of SIGKILL"
            )))
        }
    }

    /// Whether the task exited within `limit`. The exit watcher deletes an
    /// exited task at once, which may cut this wait off: a task that is
    /// gone or stopped then counts as exited.
    async fn wait_task_exit(&self, id: &str, limit: Duration) -> Result<bool> {
        match tokio::time::timeout(limit, self.containerd.task_wait(id)).await {
            Ok(Ok(_)) | Ok(Err(Error::NotFound { .. })) => Ok(true),
            Ok(Err(e)) => match self.containerd.task_get(id).await? {
                None => Ok(true),
                Some(t) if t.status == TaskStatus::Stopped => Ok(true),
                Some(_) => Err(e),
            },
            Err(_) => Ok(false),
        }
    }

    /// Removes a container, killing it first. Unknown ids are fine.
    pub async fn remove_container(&self, config: &Config, id: &str) -> Result<()> {
        let Some(c) = self.containers.find(id)? else {
            return Ok(());
        };
        let _op = c.op.lock().await;
        self.remove_container_locked(config, &c).await
    }

    async fn remove_container_locked(&self, config: &Config, c: &Container) -> Result<()> {
        let id = c.meta.id.clone();
        self.stop_container_locked(c, 0).await?;
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
        self.containerd.container_delete(&id).await?;
        let snapshotter = if c.meta.snapshotter.is_empty() {
            &config.containerd.snapshotter
        } else {
            &c.meta.snapshotter
        };
        self.containerd.snapshot_remove(snapshotter, &id).await?;
        if let Ok(mut samples) = self.cpu_samples.lock() {
            samples.remove(&id);
        }
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
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    /// Stops every container of a sandbox (StopPodSandbox).
    pub(crate) async fn stop_containers_of(&self, sandbox_id: &str) -> Result<()> {
        for c in self
            .containers
            .all()
            .into_iter()
            .filter(|c| c.meta.sandbox_id == sandbox_id)
        {
            let _op = c.op.lock().await;
            self.stop_container_locked(&c, 0).await?;
        }
        Ok(())
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

    /// A container's metadata and status.
    pub fn container_status(&self, id: &str) -> Result<(ContainerMeta, ContainerStatus)> {
        let c = self.find_container(id)?;
        Ok((c.meta.clone(), c.status()))
    }

    /// Containers matching `filter`, oldest first.
    pub fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Vec<(ContainerMeta, ContainerStatus)> {
        let mut out: Vec<_> = self
            .containers
            .all()
            .into_iter()
            .filter(|c| filter.id.is_empty() || c.meta.id.starts_with(&filter.id))
            .filter(|c| {
                filter.sandbox_id.is_empty() || c.meta.sandbox_id.starts_with(&filter.sandbox_id)
            })
            .filter(|c| filter.state.is_none_or(|s| c.status().state == s))
            .filter(|c| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| c.meta.labels.get(k) == Some(v))
            })
            .map(|c| (c.meta.clone(), c.status()))
            .collect();
        out.sort_by_key(|(m, _)| m.created_at);
        out
    }

    /// Start-up: containers from containerd's records; exits that happened
    /// while the daemon was down are recorded; running ones are watched and
    /// their logs keep flowing.
    pub(crate) async fn recover_containers(self: &Arc<Self>) -> Result<()> {
        let filter = format!(
            "labels.\"{}\"=={}",
            crius_core::sandbox::labels::KIND,
            crius_core::sandbox::labels::KIND_CONTAINER
        );
        // First everything that can fail (a retry then starts afresh),
        // then what starts copiers and watchers.
        let mut loaded = Vec::new();
        for r in self.containerd.container_list(&[filter]).await? {
            let (Some(m), Some(s)) = (
                r.extensions.get(META_EXTENSION),
                r.extensions.get(STATUS_EXTENSION),
            ) else {
                continue;
            };
            let (meta, status): (ContainerMeta, ContainerStatus) = match (from_any(m), from_any(s))
            {
                (Ok(m), Ok(s)) => (m, s),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(container = %r.id, "unreadable crius metadata; ignoring the container: {e}");
                    continue;
                }
            };
            let task = self.containerd.task_get(&meta.id).await?;
            loaded.push((meta, status, task));
        }
        for (meta, status, task) in loaded {
            let c = Arc::new(Container::new(meta.clone(), status.clone()));
            match task.as_ref().map(|t| t.status) {
                Some(TaskStatus::Running) => {
                    let writer = self.log_writer(&meta);
                    let started = crius_logs::Fifos::paths(
                        &self.containers_dir().join(&meta.id),
                        &meta.id,
                        meta.tty,
                    )
                    .and_then(|fifos| writer?.start(&fifos));
                    match started {
                        Ok(h) => c.set_log(Some(Arc::new(h))),
                        Err(e) => tracing::warn!(container = %meta.id, "logs not reattached: {e}"),
                    }
                    self.watch_exit(c.clone());
                }
                Some(TaskStatus::Stopped) if status.state != ContainerState::Exited => {
                    let t = task.as_ref();
                    let event = ContainerEvent::Exited {
                        exit_code: t.map_or(VANISHED_EXIT_CODE, |t| t.exit_status as i32),
                        at: ns_of(t.and_then(|t| t.exited_at)),
                        oom: false,
                    };
                    self.record(&c, event).await;
                }
                None if status.state == ContainerState::Running => {
                    let event = ContainerEvent::Vanished {
                        at: now_ns(),
                        message: "the task was gone when crius restarted".into(),
                    };
                    self.record(&c, event).await;
                }
                _ => {}
            }
            if let Ok(Some(sandbox)) = self.store.find(&meta.sandbox_id) {
                let key = meta.name_key(&sandbox.meta.request());
                self.containers.names.insert_taken(&key, &meta.id);
            }
            self.containers.insert(c);
        }
        Ok(())
    }
}

/// What the steps of one create share.
struct Plan<'a> {
    config: &'a Config,
    driver: CgroupDriver,
    sandbox: &'a SandboxMeta,
    /// What the container needs of its pod's request.
    pod: PodSandboxRequest,
    req: &'a ContainerRequest,
    id: &'a str,
    snapshotter: String,
    image: CriImage,
    image_cfg: ImageConfig,
}

/// The process of a container and the namespaces it joins.
struct RunAs {
    /// The pause process (whose namespaces are joined).
    sandbox_pid: u32,
    /// The target container's init process (PID mode Target).
    target_pid: Option<u32>,
    process: container::ContainerProcess,
    user: container::User,
}

/// What the rootfs told a create.
struct RootfsFacts {
    passwd: Option<String>,
    group: Option<String>,
    /// `(container path, host directory)` of each image volume.
    image_volumes: Vec<(String, PathBuf)>,
}

/// The annotations a container's runtime sees: the pod's and the
/// container's through its handler's allow-lists.
fn spec_annotations(
    config: &Config,
    sandbox: &SandboxMeta,
    req: &ContainerRequest,
) -> BTreeMap<String, String> {
    match config.runtimes.get(&sandbox.runtime_handler) {
        Some(h) => {
            let mut a =
                crius_core::runtime::filter_annotations(&h.pod_annotations, &sandbox.annotations);
            a.extend(crius_core::runtime::filter_annotations(
                &h.container_annotations,
                &req.annotations,
            ));
            a
        }
        None => BTreeMap::new(),
    }
}

/// The container's immutable facts, as its record will keep them.
fn container_meta(plan: &Plan<'_>, spec: &oci_spec::runtime::Spec) -> Result<ContainerMeta> {
    let (sandbox, req, image) = (plan.sandbox, plan.req, &plan.image);
    // Logs: the file beneath the pod's log directory (no symlink followed).
    let log_path = match container::log_file_path(&sandbox.log_directory, &req.log_path) {
        Some(_) => crius_logs::resolve_log_path(Path::new(&sandbox.log_directory), &req.log_path)?
            .display()
            .to_string(),
        None => String::new(),
    };
    Ok(ContainerMeta {
        version: 1,
        id: plan.id.to_string(),
        sandbox_id: sandbox.id.clone(),
        name: req.name.clone(),
        attempt: req.attempt,
        image: req.image.clone(),
        image_tag: image.repo_tags.first().cloned().unwrap_or_default(),
        image_id: image.id.clone(),
        image_ref: image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone()),
        labels: req.labels.clone(),
        annotations: req.annotations.clone(),
        log_path,
        tty: req.tty,
        stop_signal: plan.image_cfg.stop_signal.clone(),
        mounts: req.mounts.iter().map(MountRecord::from).collect(),
        resources: Some(container::resources_in_force(spec)),
        created_at: now_ns(),
        snapshotter: plan.snapshotter.clone(),
        runtime_path: sandbox.runtime_path.clone(),
        cgroups_path: spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    })
}

async fn wait_log(log: Arc<crius_logs::LogHandle>) {
    log.done().await;
}

/// What a failed create must undo.
#[derive(Default)]
struct Undo {
    lease: Option<String>,
    snapshot: Option<(String, String)>,
    container: Option<String>,
    /// The container's image volumes.
    volumes: Option<PathBuf>,
}

/// Most output ExecSync keeps per stream; the rest is read and dropped.
pub const EXEC_OUTPUT_CAP: usize = 16 << 20;

/// What ExecSync returns.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Reads a FIFO to EOF, keeping at most `cap` bytes.
/// Reads the FIFO at `path` to EOF (or until `stop` turns true), keeping
/// the first `cap` bytes.
async fn drain(path: PathBuf, cap: usize, mut stop: tokio::sync::watch::Receiver<bool>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::OpenOptions::new().open_receiver(&path) else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            r = rx.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    kept
}

/// How long ExecSync still reads output after the command exited (a
/// process it left in the background may hold the pipes open).
const EXEC_DRAIN_WAIT: Duration = Duration::from_secs(2);

impl Pods {
    /// Runs `cmd` in a running container and returns its output (each
    /// stream capped at [`EXEC_OUTPUT_CAP`]) and exit code. `timeout`
    /// seconds (0: none) bound the command; on expiry it is killed.
    /// Runs in a task of its own: a client that gives up does not leave the
    /// exec process or its FIFOs behind.
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecOutput> {
        let pods = self.clone();
        let id = id.to_string();
        crius_rt::detached("exec task", async move {
            pods.exec_sync_inner(&id, cmd, timeout).await
        })
        .await
    }

    async fn exec_sync_inner(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecOutput> {
        if cmd.is_empty() {
            return Err(Error::invalid("cmd", "must not be empty"));
        }
        let c = self.find_container(id)?;
        let id = c.meta.id.clone();
        let process = self.exec_process(&id, cmd).await?;
        let exec_id = format!("exec-{}", &crate::sandbox::random_id()[..16]);
        let fifos = crius_logs::create_fifos(&self.containers_dir().join(&id), &exec_id, false)?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let stdout = tokio::spawn(drain(fifos.stdout.clone(), EXEC_OUTPUT_CAP, stop.clone()));
        let stderr = tokio::spawn(drain(
            fifos.stderr.clone().unwrap_or_default(),
            EXEC_OUTPUT_CAP,
            stop,
        ));
        let stdio = Stdio {
            stdin: String::new(),
            stdout: fifos.stdout.display().to_string(),
            stderr: fifos
                .stderr
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            terminal: false,
        };
        let result = self
            .run_exec(&id, &exec_id, &process, &stdio, timeout)
            .await;
        // The output of the command is in the pipes by now; what a process
        // it left behind may still write is cut off after a grace period.
        let timer = tokio::spawn(async move {
            tokio::time::sleep(EXEC_DRAIN_WAIT).await;
            stop_tx.send_replace(true);
        });
        let out = stdout.await.unwrap_or_default();
        let err = stderr.await.unwrap_or_default();
        timer.abort();
        let _ = self.containerd.exec_delete(&id, &exec_id).await;
        let _ = crius_logs::remove_fifos(&fifos);
        Ok(ExecOutput {
            stdout: out,
            stderr: err,
            exit_code: result?,
        })
    }

    /// The process of an exec in running container `id`: its own, with
    /// `cmd` as arguments and no terminal.
    async fn exec_process(&self, id: &str, cmd: Vec<String>) -> Result<oci_spec::runtime::Process> {
        let running = self
            .containerd
            .task_get(id)
            .await?
            .is_some_and(|t| t.status == TaskStatus::Running);
        if !running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let record = self
            .containerd
            .container_get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("container {id}")))?;
        let mut process =
            record.spec.process().clone().ok_or_else(|| {
                Error::Internal(format!("container {id} has no process in its spec"))
            })?;
        process.set_args(Some(cmd));
        process.set_terminal(Some(false));
        Ok(process)
    }

    /// Runs exec `exec_id` to its end (killed after `timeout` seconds, 0:
    /// none); its exit code.
    async fn run_exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &Stdio,
        timeout: i64,
    ) -> Result<i32> {
        self.containerd
            .exec_create(id, exec_id, process, stdio)
            .await?;
        self.containerd.exec_start(id, exec_id).await?;
        let wait = self.containerd.exec_wait(id, exec_id);
        let exit = if timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout as u64), wait).await {
                Ok(r) => r?,
                Err(_) => {
                    let _ = self.containerd.exec_kill(id, exec_id, 9).await;
                    let _ = tokio::time::timeout(KILL_WAIT, self.containerd.exec_wait(id, exec_id))
                        .await;
                    return Err(Error::DeadlineExceeded(format!(
                        "command timed out after {timeout} s and was killed"
                    )));
                }
            }
        } else {
            wait.await?
        };
        Ok(exit.exit_status as i32)
    }

    /// Applies new resources to a running container, through its runtime.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: &crius_core::container::ContainerResources,
    ) -> Result<()> {
        let c = self.find_container(id)?;
        let r = crius_core::container::linux_resources(resources, &self.host)?;
        match self.containerd.task_update_resources(&c.meta.id, &r).await {
            Ok(()) => Ok(()),
            Err(Error::NotFound { .. }) => Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.meta.id
            ))),
            Err(e) => Err(e),
        }
    }

    /// Reopens a running container's log file (after kubelet rotated it).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let c = self.find_container(id)?;
        if c.status().state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.meta.id
            )));
        }
        match c.log() {
            Some(log) => log.reopen().await,
            // A container without a log file has nothing to reopen (as
            // containerd: its output goes nowhere).
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_of_old_and_new_records_read_back() -> serde_json::Result<()> {
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
            recursive_read_only: false,
        };
        let text = serde_json::to_string(&new)?;
        assert!(text.contains(r#""propagation":"bidirectional""#), "{text}");
        assert_eq!(serde_json::from_str::<MountRecord>(&text)?, new);
        Ok(())
    }
}
