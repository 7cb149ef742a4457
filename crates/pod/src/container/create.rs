//! CreateContainer: the steps of a create and their undo.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::{ContainerRecord, TaskStatus};
use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::container::{
    self, ContainerRequest, ContainerSpecInput, ImageConfig, PodFiles, PodNamespaces,
    container_labels, container_name_key,
};
use crius_core::image::CriImage;
use crius_core::sandbox::{PodSandboxRequest, SandboxState};
use crius_core::{Error, Result};
use crius_image::Query;

use super::{
    Container, ContainerMeta, ContainerStatus, Containers, ImageVolume, META_EXTENSION,
    MountRecord, STATUS_EXTENSION, STATUS_TYPE_URL, TYPE_URL, image_config,
};
use crate::ctx::Rootfs;
use crate::events::EventKind;
use crate::meta::{SandboxMeta, to_any};
use crate::now_ns;
use crate::ports::HostLookup;
use crate::registrar::Reserve;

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
    /// The request's image volumes, mounted.
    image_volumes: Vec<ImageVolume>,
}

/// The process of a container and the namespaces it joins.
struct RunAs {
    /// Where the pod's namespaces are joined from.
    pod_namespaces: PodNamespaces,
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
        stdin: req.stdin,
        stdin_once: req.stdin_once,
        // The config's, else the image's (SIGTERM when neither names one).
        stop_signal: if req.stop_signal.is_empty() {
            plan.image_cfg.stop_signal.clone()
        } else {
            req.stop_signal.clone()
        },
        mounts: mount_records(req, &plan.image_volumes),
        resources: Some(container::resources_in_force(spec)),
        user: container::user_in_force(spec),
        image_volumes: plan.image_volumes.clone(),
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

/// The request's mounts as the record keeps them: an image volume with
/// the id of the image mounted.
fn mount_records(req: &ContainerRequest, volumes: &[ImageVolume]) -> Vec<MountRecord> {
    req.mounts
        .iter()
        .enumerate()
        .map(|(i, m)| MountRecord {
            image_ref: volumes
                .iter()
                .find(|v| v.mount == i)
                .map(|v| v.image_ref.clone())
                .unwrap_or_default(),
            ..MountRecord::from(m)
        })
        .collect()
}

/// Whether mount `i` of `req` is bound through an idmapped clone: it asks
/// for its pod's mappings (checked before), is private (a detached clone
/// would not receive the host's later mounts) and no other mount of its
/// host path differs (the clone replaces the host path's source for all).
fn idmappable(req: &ContainerRequest, i: usize) -> bool {
    let wants = |m: &container::Mount| {
        !m.id_mappings.uids.is_empty()
            && m.image.is_empty()
            && matches!(m.propagation, container::Propagation::Private)
    };
    let m = &req.mounts[i];
    wants(m)
        && req
            .mounts
            .iter()
            .filter(|o| o.host_path == m.host_path)
            .all(wants)
}

/// What a failed create must undo.
#[derive(Default)]
struct Undo {
    lease: Option<String>,
    snapshot: Option<(String, String)>,
    container: Option<String>,
    /// The container's image volumes.
    volumes: Option<PathBuf>,
    /// Its image volume mounts (`Mount.image`) and their directory.
    image_mounts: Vec<ImageVolume>,
    image_mounts_dir: Option<PathBuf>,
    /// The container whose idmapped volume mounts were tried.
    idmapped: Option<String>,
}

impl Containers {
    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
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
            Reserve::Duplicate(id) => return Ok(id),
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
                    let sandbox_id = c.meta.sandbox_id.clone();
                    pods.containers.insert(Arc::new(c));
                    reservation.commit();
                    pods.emit(EventKind::Created, &id, &sandbox_id);
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
        // The pins, or the pause process' pid from memory.
        let pod_namespaces = match &sandbox.pinned {
            Some(pins) => PodNamespaces::Pinned(pins.clone()),
            None => PodNamespaces::Pause(pod_sandbox.pid().ok_or_else(|| {
                Error::FailedPrecondition(format!("pod sandbox {} is not running", sandbox.id))
            })?),
        };
        self.check_pod_runtime(sandbox, req).await?;
        let sc = &req.linux.security;
        crius_core::userns::container_agrees(
            "config.linux.security_context.namespace_options",
            sandbox.userns.as_ref(),
            sc.user_namespace,
            &sc.userns_ids,
        )?;
        let mappings: Vec<_> = req.mounts.iter().map(|m| &m.id_mappings).collect();
        crius_core::userns::check_mounts(sandbox.userns.as_ref(), &mappings)?;
        // Before anything is made: an unknown device leaves nothing behind.
        let cdi = self.cdi_edits(config, req).await?;
        let lease = format!("crius-sandbox-c-{id}");
        let c = self
            .take_lease(&lease, Duration::from_secs(600), &mut undo.lease)
            .await?;
        let snapshotter = sandbox.snapshotter_or(&config.containerd.snapshotter);
        let (mounted, image_volumes) = self
            .mount_image_volumes(&*c, snapshotter, req, (id, sandbox.userns.as_ref()), undo)
            .await?;
        let req = &mounted;
        let mut plan = self.plan(config, driver, sandbox, req, id).await?;
        plan.image_volumes = image_volumes;
        let process = container::image_process(&plan.image_cfg, req)?;
        let mounts = self
            .rootfs_snapshot(
                &*c,
                Rootfs::Writable,
                &plan.image,
                &plan.snapshotter,
                id,
                sandbox.userns.as_ref(),
            )
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
        let mut lookup = self.host_lookup(req, sandbox).await?;
        if let (Some(_), PodNamespaces::Pause(pid)) = (&sandbox.userns, &pod_namespaces) {
            self.idmap_volumes(req, id, *pid, &mut lookup, undo).await?;
        }
        let run_as = RunAs {
            pod_namespaces,
            target_pid,
            process,
            user,
        };
        let mut spec = self.container_spec(&plan, run_as, lookup, &facts)?;
        let fs = &self.fs;
        crius_core::cdi::apply(&mut spec, &cdi, &|p| fs.device_at(p))?;
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

    /// Refuses what the pod's runtime cannot do, before anything is made
    /// (asked only of requests that need a feature).
    async fn check_pod_runtime(&self, sandbox: &SandboxMeta, req: &ContainerRequest) -> Result<()> {
        if !req.mounts.iter().any(|m| m.recursive_read_only) {
            return Ok(());
        }
        let runtime = self
            .containerd
            .container_get(&sandbox.id)
            .await?
            .map(|r| r.runtime)
            .ok_or_else(|| Error::not_found(format!("pod sandbox {}", sandbox.id)))?;
        let features = self.pod_runtime_features(&runtime).await;
        let handler = match sandbox.runtime_handler.as_str() {
            "" => &runtime.name,
            h => h,
        };
        container::check_handler_features(req, handler, &features)
    }

    /// Mounts each image volume of the request (`Mount.image`): a read-only
    /// view of the image in the pod's snapshotter, mounted under the
    /// container's directory, its `image_sub_path` resolved inside it. The
    /// request comes back with those mounts pointing there.
    async fn mount_image_volumes(
        &self,
        c: &dyn crate::ports::Containerd,
        snapshotter: &str,
        req: &ContainerRequest,
        (id, userns): (&str, Option<&crius_core::userns::IdMaps>),
        undo: &mut Undo,
    ) -> Result<(ContainerRequest, Vec<ImageVolume>)> {
        let mut mounted = req.clone();
        let mut volumes = Vec::new();
        for (i, m) in mounted.mounts.iter_mut().enumerate() {
            if m.image.is_empty() {
                continue;
            }
            let field = |f: &str| format!("config.mounts[{i}].{f}");
            let image = self
                .images
                .find(&Query::parse(&m.image).map_err(|e| rename_field(e, &field("image")))?)
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!("image {:?} of {}", m.image, field("image")))
                })?;
            let dir = self
                .containers_dir()
                .join(id)
                .join("image-volumes")
                .join(i.to_string());
            undo.image_mounts_dir = Some(self.containers_dir().join(id));
            let key = format!("{id}-image-volume-{i}");
            let view = self
                .rootfs_snapshot(c, Rootfs::View, &image, snapshotter, &key, userns)
                .await?;
            let volume = ImageVolume {
                snapshotter: snapshotter.to_string(),
                key,
                dir: dir.display().to_string(),
                mount: i,
                image_ref: image.id.clone(),
            };
            undo.image_mounts.push(volume.clone());
            let (fs, sub) = (self.fs.clone(), m.image_sub_path.clone());
            let host_path = crius_rt::blocking("image volume mount", move || {
                fs.mount_image_volume(&view, &dir, &sub)
            })
            .await
            .map_err(|e| rename_field(e, &field("image_sub_path")))?;
            m.host_path = host_path.display().to_string();
            volumes.push(volume);
        }
        Ok((mounted, volumes))
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
            image_volumes: Vec::new(),
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
        // containerd refuses both too (validateTargetContainer: the target
        // must be a running container of the same pod): its PID namespace
        // is what the container joins.
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

    /// An idmapped clone, through the pod's user namespace (the pause's,
    /// `pid`), of each host path a mount carries the pod's mappings for
    /// (kubelet gives them every mount of a user-namespaced container), so
    /// the pod's root owns what the host's root owns there, as with
    /// containerd 2; the spec binds the clone. Where the file system cannot
    /// be idmapped, the plain bind stays (less access, never more).
    async fn idmap_volumes(
        &self,
        req: &ContainerRequest,
        id: &str,
        pid: u32,
        lookup: &mut HostLookup,
        undo: &mut Undo,
    ) -> Result<()> {
        let userns = PathBuf::from(format!("/proc/{pid}/ns/user"));
        let dir = self.idmapped_dir().join(id);
        for (i, m) in req.mounts.iter().enumerate() {
            if !idmappable(req, i) {
                continue;
            }
            let host = lookup.host_paths.entry(m.host_path.clone()).or_insert(
                crius_core::container::HostPath {
                    resolved: None,
                    propagation: crius_core::container::HostPropagation::Private,
                },
            );
            let source = PathBuf::from(host.resolved.as_deref().unwrap_or(&m.host_path));
            let target = dir.join(i.to_string());
            undo.idmapped = Some(id.to_string());
            let (fs, ns, to) = (self.fs.clone(), userns.clone(), target.clone());
            let mounted = crius_rt::blocking("idmapped mount", move || {
                fs.idmapped_bind(&source, &ns, &to)
            })
            .await?;
            if mounted {
                host.resolved = Some(target.display().to_string());
            }
        }
        Ok(())
    }

    /// The edits of the CDI devices `req` names, from the spec files as
    /// they are now (read at each create that names one, so a device
    /// plugin's new spec needs no restart).
    async fn cdi_edits(
        &self,
        config: &Config,
        req: &ContainerRequest,
    ) -> Result<Vec<crius_core::cdi::ContainerEdits>> {
        let names = crius_core::cdi::requested(req);
        if names.is_empty() {
            return Ok(vec![]);
        }
        let (fs, dirs) = (self.fs.clone(), config.cdi.spec_dirs.clone());
        let files = crius_rt::blocking("CDI spec reader", move || Ok(fs.cdi_specs(&dirs))).await?;
        let registry = crius_core::cdi::Registry::new(files);
        for (file, why) in &registry.broken {
            tracing::warn!(file = %file.display(), "CDI spec file skipped: {why}");
        }
        registry.resolve(&names)
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
            pod_namespaces: run_as.pod_namespaces,
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
            localhost_seccomp: crate::host::localhost_seccomp(
                req.linux.security.seccomp.as_ref(),
                |p| self.fs.read_text(p),
            )?,
            apparmor_profiles: crate::host::loaded_apparmor_profiles(
                &self.host.apparmor,
                req.linux.security.apparmor.as_ref(),
                || {
                    self.fs
                        .read_text(Path::new(crius_core::apparmor::PROFILES_FILE))
                },
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
        let mut labels: HashMap<String, String> =
            container_labels(plan.req, &plan.pod, &sandbox.id, &plan.image_cfg.labels)
                .into_iter()
                .collect();
        // The image volumes' views live as long as the record: containerd's
        // garbage collector follows these references.
        for v in &plan.image_volumes {
            labels.insert(
                format!(
                    "containerd.io/gc.ref.snapshot.{}/image-volume-{}",
                    v.snapshotter, v.mount
                ),
                v.key.clone(),
            );
        }
        Ok(ContainerRecord {
            id: plan.id.to_string(),
            labels,
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
        self.remove_image_volumes(&undo.image_mounts, undo.image_mounts_dir.as_deref())
            .await;
        if let Some(id) = &undo.idmapped {
            self.remove_idmapped(id).await;
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
}

/// `e` naming `field` when it is an `InvalidArgument` (an adapter's
/// error about one part of a mount).
fn rename_field(e: Error, field: &str) -> Error {
    match e {
        Error::InvalidArgument { reason, .. } => Error::invalid(field.to_string(), reason),
        e => e,
    }
}
