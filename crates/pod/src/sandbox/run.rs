//! RunPodSandbox: the steps of a run and their undo.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::{ContainerRecord, Runtime, Stdio, runc_options};
use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::image::{BUILTIN_SANDBOX_IMAGE, CriImage};
use crius_core::runtime::Selection;
use crius_core::sandbox::mode::{self, PinPaths, PinnedPlan, Shape};
use crius_core::sandbox::{
    self, ImageProcess, NamespaceMode, PodSandboxRequest, SandboxSpecInput, SandboxState, files,
    labels,
};
use crius_core::{Error, Result};
use crius_image::Query;
use crius_network::exec::Attachment;
use crius_network::pins::PinPlan;

use super::{
    Sandboxes, attachment, fingerprint, image_process, port_mappings, random_id, select_runtime,
};
use crate::ctx::Rootfs;
use crate::events::EventKind;
use crate::meta::{self, NamespaceRecord, PortRecord, SandboxMeta};
use crate::registrar::Reserve;
use crate::steps::{Steps, timed};
use crate::store::Sandbox;
use crate::{now_ns, podfs};

/// Lease around a sandbox's creation (its snapshot must not be collected
/// before the container record references it).
const CREATE_LEASE: Duration = Duration::from_secs(600);

/// kubelet's and containerd's oom_score_adj for the pause process.
const SANDBOX_OOM_SCORE_ADJ: i32 = -998;

/// The snapshotter of a pod's snapshots: its handler's, else the default.
fn snapshotter_of(config: &Config, selection: &Selection) -> String {
    selection
        .snapshotter
        .clone()
        .unwrap_or_else(|| config.containerd.snapshotter.clone())
}

/// What a run was asked for.
#[derive(Clone, Copy)]
struct Asked<'a> {
    req: &'a PodSandboxRequest,
    selection: &'a Selection,
    shape: &'a Shape,
}

/// What a failed run must undo.
#[derive(Default)]
struct Undo {
    pod_dir: Option<PathBuf>,
    netns: Option<PathBuf>,
    /// The pins of a pinned pod's IPC and UTS namespaces.
    pins: Vec<PathBuf>,
    network: Option<(crius_network::cni::NetworkConfig, Attachment)>,
    snapshot: Option<(String, String)>,
    container: Option<String>,
    task: Option<String>,
    lease: Option<String>,
}

/// The pod's containerd record: its labels, runtime, spec, snapshot and
/// [`SandboxMeta`].
fn sandbox_record(
    req: &PodSandboxRequest,
    selection: &Selection,
    meta: &SandboxMeta,
    spec: oci_spec::runtime::Spec,
) -> Result<ContainerRecord> {
    let options = selection
        .options
        .as_ref()
        .map(|o| runc_options(&o.binary_name, &o.root, o.systemd_cgroup));
    let mut labels: HashMap<String, String> = labels::sandbox_labels(req).into_iter().collect();
    labels.insert(
        "io.crius.sandbox.runtime-handler".to_string(),
        meta.runtime_handler.clone(),
    );
    Ok(ContainerRecord {
        id: meta.id.clone(),
        labels,
        image: meta.image.clone(),
        runtime: Runtime {
            name: selection.runtime_type.clone(),
            options,
        },
        spec,
        // A pinned pod has no root file system.
        snapshotter: match meta.pinned {
            None => meta.snapshotter.clone(),
            Some(_) => String::new(),
        },
        snapshot_key: match meta.pinned {
            None => meta.id.clone(),
            Some(_) => String::new(),
        },
        extensions: HashMap::from([(meta::EXTENSION.to_string(), meta.to_any()?)]),
        ..Default::default()
    })
}

impl Sandboxes {
    /// Runs a sandbox; returns its id. An identical retry of a request in
    /// flight gets the same id.
    pub async fn run(
        &self,
        config: Arc<Config>,
        driver: CgroupDriver,
        req: PodSandboxRequest,
    ) -> Result<String> {
        sandbox::validate(&req)?;
        let req = sandbox::normalized(req);
        // Before anything exists: a name containerd could take as a path
        // never gets further than this.
        let selection = select_runtime(&config, &req)?;
        let shape = mode::shape(selection.sandbox_mode, &selection.handler, &req)?;
        let key = labels::sandbox_name_key(&req.name, &req.uid, &req.namespace, req.attempt);
        let id = random_id();
        let reservation = match self
            .store
            .names
            .reserve(&key, &id, &fingerprint(&req))
            .await?
        {
            Reserve::Duplicate(id) => return Ok(id),
            Reserve::Reserved(r) => r,
        };
        let pods = self.clone();
        crius_rt::detached("sandbox creation task", async move {
            let mut undo = Undo::default();
            match pods
                .create(
                    &config,
                    driver,
                    Asked {
                        req: &req,
                        selection: &selection,
                        shape: &shape,
                    },
                    reservation.id(),
                    &mut undo,
                )
                .await
            {
                Ok(sandbox) => {
                    let id = sandbox.meta.id.clone();
                    if sandbox.meta.pinned.is_none() {
                        pods.watch_pause(sandbox.clone());
                    }
                    pods.store.insert(sandbox);
                    reservation.commit();
                    pods.emit(EventKind::Created, &id, &id);
                    pods.emit(EventKind::Started, &id, &id);
                    Ok(id)
                }
                Err(e) => {
                    tracing::warn!(pod = %req.name, namespace = %req.namespace, "RunPodSandbox failed, undoing: {e}");
                    pods.undo(undo).await;
                    drop(reservation);
                    Err(e)
                }
            }
        })
        .await
    }

    /// The pod's pause image: its handler's, else the configured one, else
    /// the built-in one; pulled (or built) when missing.
    async fn sandbox_image(
        &self,
        config: &Config,
        selection: &Selection,
        snapshotter: &str,
    ) -> Result<CriImage> {
        let name = match &selection.sandbox_image {
            Some(name) => name.as_str(),
            None if config.sandbox_image.is_empty() => BUILTIN_SANDBOX_IMAGE,
            None => config.sandbox_image.as_str(),
        };
        let query = Query::parse(name)?;
        let image = match self.images.find(&query).await? {
            Some(i) => i,
            None if name == BUILTIN_SANDBOX_IMAGE => self.ensure_pause_image(config).await?,
            None => self.images.pull(&config.images, snapshotter, name).await?,
        };
        Ok(image)
    }

    /// Builds the built-in pause image when it is missing.
    pub async fn ensure_pause_image(&self, config: &Config) -> Result<CriImage> {
        let pause = crius_image::File {
            path: "/pause",
            mode: 0o755,
            data: Some(self.pause),
        };
        let dir = |path| crius_image::File {
            path,
            mode: 0o755,
            data: None,
        };
        // The mount points runc needs: the rootfs is a read-only view.
        let files = [dir("/dev"), dir("/etc"), dir("/proc"), dir("/sys"), pause];
        self.images
            .ensure_builtin(
                &config.images,
                &config.containerd.snapshotter,
                BUILTIN_SANDBOX_IMAGE,
                &files,
                &["/pause"],
            )
            .await
    }

    /// The steps of a run, in order; each records in `undo` what it made.
    async fn create(
        &self,
        config: &Config,
        driver: CgroupDriver,
        asked: Asked<'_>,
        id: &str,
        undo: &mut Undo,
    ) -> Result<Arc<Sandbox>> {
        let Asked { req, selection, .. } = asked;
        let snapshotter = snapshotter_of(config, selection);
        let plan = match asked.shape {
            Shape::Pinned(plan) => plan,
            Shape::Pause => return self.create_paused(config, driver, asked, id, undo).await,
        };
        let mut steps = Steps::new();
        let mut meta = self.new_meta(req, selection, id, String::new(), &snapshotter);
        meta.pinned = Some(PinPaths::default());
        let pod_dir = self.begin(&meta, undo)?;
        steps.mark("pod_dir");
        let (ips, [cni, pins]) = self
            .network_and_pins(config, plan, &mut meta, &pod_dir, undo)
            .await?;
        steps.beside("netns_and_cni", cni);
        steps.beside("pins", pins);
        steps.mark("network_and_pins");
        self.write_pod_files(req, &mut meta, &pod_dir, &ips)?;
        steps.mark("files");
        let spec = self.sandbox_spec(config, driver, req, selection, &meta, &Default::default())?;
        let record = sandbox_record(req, selection, &meta, spec)?;
        steps.mark("spec");
        self.containerd.container_create(&record).await?;
        undo.container = Some(id.to_string());
        steps.mark("record");
        crius_rt::fault::point("sandbox-pinned-recorded");
        tracing::debug!(sandbox = id, "pinned run steps: {steps}");
        tracing::info!(sandbox = id, pod = %req.name, namespace = %req.namespace, "sandbox ready (pinned namespaces)");
        Ok(Arc::new(Sandbox::new(meta, SandboxState::Ready)))
    }

    /// The pod directory and its intent record, first: the record lets
    /// start-up undo the rest.
    fn begin(&self, meta: &SandboxMeta, undo: &mut Undo) -> Result<PathBuf> {
        let pod_dir = self.pods_dir().join(&meta.id);
        self.fs.create_dir(&pod_dir)?;
        undo.pod_dir = Some(pod_dir.clone());
        podfs::write_intent(&*self.fs, &pod_dir, meta)?;
        Ok(pod_dir)
    }

    /// A pinned pod's network (CNI ADD) and its pinned IPC and UTS
    /// namespaces, at once; then the `net.*` sysctls, which may name the
    /// interfaces CNI made. Returns the pod's IPs and how long the network
    /// and the pinning took.
    async fn network_and_pins(
        &self,
        config: &Config,
        plan: &PinnedPlan,
        meta: &mut SandboxMeta,
        pod_dir: &Path,
        undo: &mut Undo,
    ) -> Result<(Vec<IpAddr>, [Duration; 2])> {
        let pin_plan = PinPlan {
            ipc: plan.ipc,
            uts: plan.uts,
            hostname: plan.hostname.clone(),
            sysctls: plan.sysctls.clone(),
        };
        let (pins_dir, id) = (self.pins_dir(), meta.id.clone());
        let ((ips, cni), (pins, pinning)) = tokio::join!(
            timed(self.set_up_network(config, meta, pod_dir, None, undo)),
            timed(self.net.pin_namespaces(&pins_dir, &id, &pin_plan)),
        );
        // The pins go into undo before any error returns.
        let pins = pins?;
        undo.pins.extend(pins.ipc.iter().chain(&pins.uts).cloned());
        let ips = ips?;
        let text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        meta.pinned = Some(PinPaths {
            ipc: text(&pins.ipc),
            uts: text(&pins.uts),
        });
        if let Some(netns) = &meta.netns {
            self.net
                .net_sysctls(Path::new(netns), &plan.net_sysctls)
                .await?;
        }
        Ok((ips, [cni, pinning]))
    }

    /// A pod with a pause task: the pause image's view, the record, the
    /// task.
    async fn create_paused(
        &self,
        config: &Config,
        driver: CgroupDriver,
        asked: Asked<'_>,
        id: &str,
        undo: &mut Undo,
    ) -> Result<Arc<Sandbox>> {
        let Asked { req, selection, .. } = asked;
        let snapshotter = snapshotter_of(config, selection);
        let mut steps = Steps::new();
        let image = self.sandbox_image(config, selection, &snapshotter).await?;
        let image_config = self.images.config(&image).await?;
        steps.mark("image");
        let image_name = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let mut meta = self.new_meta(req, selection, id, image_name, &snapshotter);
        let pod_dir = self.begin(&meta, undo)?;
        steps.mark("pod_dir");
        // In a user namespace the network waits for the pause (below).
        let userns = meta.userns;
        let ips = match userns {
            None => {
                self.set_up_network(config, &mut meta, &pod_dir, None, undo)
                    .await?
            }
            Some(_) => vec![],
        };
        steps.mark("netns_and_cni");
        self.write_pod_files(req, &mut meta, &pod_dir, &ips)?;
        steps.mark("files");
        let process = image_process(&image_config);
        let spec = self.sandbox_spec(config, driver, req, selection, &meta, &process)?;
        steps.mark("spec");
        let lease = format!("crius-sandbox-{id}");
        let c = self
            .take_lease(&lease, CREATE_LEASE, &mut undo.lease)
            .await?;
        let mounts = self
            .rootfs_snapshot(&*c, Rootfs::View, &image, &snapshotter, id, userns.as_ref())
            .await?;
        undo.snapshot = Some((snapshotter.clone(), id.to_string()));
        steps.mark("snapshot");
        let record = sandbox_record(req, selection, &meta, spec)?;
        c.container_create(&record).await?;
        undo.container = Some(id.to_string());
        undo.task = Some(id.to_string());
        steps.mark("record");
        let pid = c
            .task_create(id, mounts, &Stdio::null(), &meta.runtime_path)
            .await?;
        steps.mark("task_create");
        if userns.is_some() {
            self.network_of_pause(config, &mut meta, &pod_dir, pid, undo)
                .await?;
            steps.mark("userns_netns_and_cni");
        }
        crius_rt::fault::point("sandbox-task-created");
        let pid = c.task_start(id).await?;
        steps.mark("task_start");
        crius_rt::fault::point("sandbox-task-started");
        tracing::debug!(sandbox = id, "pause run steps: {steps}");
        if let Err(e) = self.containerd.lease_delete(&lease).await {
            tracing::warn!(
                lease,
                "cannot delete the creation lease (it expires on its own): {e}"
            );
        }
        undo.lease = None;
        tracing::info!(sandbox = id, pod = %req.name, namespace = %req.namespace, pid, "sandbox ready");
        let sandbox = Sandbox::new(meta, SandboxState::Ready);
        sandbox.set_pid(pid);
        Ok(Arc::new(sandbox))
    }

    /// What the pod's record will say, before anything of it exists.
    fn new_meta(
        &self,
        req: &PodSandboxRequest,
        selection: &Selection,
        id: &str,
        image: String,
        snapshotter: &str,
    ) -> SandboxMeta {
        let ns = req.linux.namespaces;
        let host_network = ns.network == NamespaceMode::Node;
        let netns = (!host_network).then(|| self.netns_dir().join(id));
        // The name in the pod's /etc/hostname and /etc/hosts. A pod without
        // a hostname keeps the node's (as with containerd: no UTS name is
        // set, so the new UTS namespace starts with the node's).
        let hostname = if host_network || req.hostname.is_empty() {
            self.fs.node_hostname()
        } else {
            req.hostname.clone()
        };
        SandboxMeta {
            version: SandboxMeta::VERSION,
            id: id.to_string(),
            name: req.name.clone(),
            uid: req.uid.clone(),
            namespace: req.namespace.clone(),
            attempt: req.attempt,
            labels: req.labels.clone(),
            annotations: req.annotations.clone(),
            runtime_handler: selection.handler.clone(),
            runtime_type: selection.runtime_type.clone(),
            created_at: now_ns(),
            netns: netns.as_ref().map(|p| p.display().to_string()),
            network: None,
            ips: vec![],
            hostname,
            log_directory: req.log_directory.clone(),
            namespaces: NamespaceRecord {
                network: ns.network.into(),
                pid: ns.pid.into(),
                ipc: ns.ipc.into(),
            },
            image,
            port_mappings: port_mappings(req)
                .into_iter()
                .map(|p| PortRecord {
                    protocol: p.protocol,
                    host_port: p.host_port,
                    container_port: p.container_port,
                    host_ip: p.host_ip,
                })
                .collect(),
            shm: None,
            cgroup_parent: req.linux.cgroup_parent.clone(),
            privileged: req.linux.privileged,
            snapshotter: snapshotter.to_string(),
            runtime_path: selection.runtime_path.clone().unwrap_or_default(),
            privileged_without_host_devices: selection.privileged_without_host_devices,
            pinned: None,
            userns: req.linux.userns_maps(),
        }
    }

    /// The network of a pod in a user namespace: the namespace the pause
    /// process `pid` made (created, not started) is pinned and set up; the
    /// pod's `/etc/hosts` and record then get its IPs.
    async fn network_of_pause(
        &self,
        config: &Config,
        meta: &mut SandboxMeta,
        pod_dir: &Path,
        pid: u32,
        undo: &mut Undo,
    ) -> Result<()> {
        let ips = self
            .set_up_network(config, meta, pod_dir, Some(pid), undo)
            .await?;
        if meta.netns.is_none() {
            return Ok(());
        }
        self.fs.write_atomic(
            &pod_dir.join("hosts"),
            files::hosts(&meta.hostname, &ips).as_bytes(),
            0o644,
        )?;
        self.containerd
            .container_set_extension(&meta.id, meta::EXTENSION, meta.to_any()?)
            .await
    }

    /// The pod's network namespace (a new one, or the one process `pid`
    /// made) and CNI ADD (none with host network); returns the pod's IPs.
    async fn set_up_network(
        &self,
        config: &Config,
        meta: &mut SandboxMeta,
        pod_dir: &Path,
        made_by: Option<u32>,
        undo: &mut Undo,
    ) -> Result<Vec<IpAddr>> {
        let Some(netns) = meta.netns.clone().map(PathBuf::from) else {
            return Ok(vec![]);
        };
        let net = self
            .net
            .load(&config.cni.conf_dir, &config.cni.bin_dirs)
            .map_err(|e| Error::FailedPrecondition(format!("pod network is not ready: {e}")))?;
        meta.network = Some(net.name.clone());
        podfs::write_intent(&*self.fs, pod_dir, meta)?;
        let created = match made_by {
            None => self.net.netns_create(&self.netns_dir(), &meta.id).await?,
            Some(pid) => {
                self.net
                    .netns_pin_pid(&self.netns_dir(), &meta.id, pid)
                    .await?
            }
        };
        undo.netns = Some(created);
        let att = attachment(meta, &netns);
        // Before the ADD: a half-done ADD is undone by a DEL.
        undo.network = Some((net.clone(), att.clone()));
        let ips = self.net.add(&net, &att).await?;
        meta.ips = ips.iter().map(IpAddr::to_string).collect();
        tracing::info!(sandbox = %meta.id, ips = ?meta.ips, network = %net.name, "pod network set up");
        Ok(ips)
    }

    /// The pod's `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` and
    /// `/dev/shm`; the intent record then says all of it.
    fn write_pod_files(
        &self,
        req: &PodSandboxRequest,
        meta: &mut SandboxMeta,
        pod_dir: &Path,
        ips: &[IpAddr],
    ) -> Result<()> {
        let ns = req.linux.namespaces;
        let host_network = ns.network == NamespaceMode::Node;
        let host_files = |name: &str| {
            self.fs
                .read(&Path::new("/etc").join(name))
                .unwrap_or_default()
        };
        self.fs.write_atomic(
            &pod_dir.join("hostname"),
            files::hostname_file(&meta.hostname).as_bytes(),
            0o644,
        )?;
        let hosts = if host_network {
            host_files("hosts")
        } else {
            files::hosts(&meta.hostname, ips).into_bytes()
        };
        self.fs
            .write_atomic(&pod_dir.join("hosts"), &hosts, 0o644)?;
        let resolv = match &req.dns {
            Some(dns) if !host_network => files::resolv_conf(dns).into_bytes(),
            _ => host_files("resolv.conf"),
        };
        self.fs
            .write_atomic(&pod_dir.join("resolv.conf"), &resolv, 0o644)?;
        if ns.ipc != NamespaceMode::Node {
            let shm = self.fs.mount_shm(pod_dir)?;
            meta.shm = Some(shm.display().to_string());
        }
        podfs::write_intent(&*self.fs, pod_dir, meta)
    }

    /// The pause container's OCI spec.
    fn sandbox_spec(
        &self,
        config: &Config,
        driver: CgroupDriver,
        req: &PodSandboxRequest,
        selection: &Selection,
        meta: &SandboxMeta,
        process: &ImageProcess,
    ) -> Result<oci_spec::runtime::Spec> {
        // Pod annotations reach the spec only through the handler's
        // allow-list; the CRI ones are always there.
        let annotations = match config.runtimes.get(&selection.handler) {
            Some(h) => {
                crius_core::runtime::filter_annotations(&h.pod_annotations, &req.annotations)
            }
            None => BTreeMap::new(),
        };
        sandbox::sandbox_spec(&SandboxSpecInput {
            id: meta.id.clone(),
            request: req,
            image_config: process.clone(),
            // In a user namespace the pause makes it.
            netns_path: meta.netns.clone().filter(|_| meta.userns.is_none()),
            pod_shm: meta.shm.clone(),
            hostname: req.hostname.clone(),
            cgroup_driver: driver,
            daemon_oom_score_adj: self.host.daemon_oom_score_adj,
            sandbox_oom_score_adj: SANDBOX_OOM_SCORE_ADJ,
            annotations,
            localhost_seccomp: crate::host::localhost_seccomp(req.linux.seccomp.as_ref(), |p| {
                self.fs.read_text(p)
            })?,
            kernel_version: self.host.kernel_version,
            pinned: meta.pinned.clone(),
        })
    }

    /// Undoes a failed run, in reverse; errors are logged, not returned.
    async fn undo(&self, undo: Undo) {
        if let Some(id) = &undo.task
            && let Err(e) = self.kill_and_delete_task(id).await
        {
            tracing::warn!(sandbox = %id, "undo: task: {e}");
        }
        if let Some(id) = &undo.container
            && let Err(e) = self.containerd.container_delete(id).await
        {
            tracing::warn!(sandbox = %id, "undo: container: {e}");
        }
        if let Some((snapshotter, key)) = &undo.snapshot
            && let Err(e) = self.containerd.snapshot_remove(snapshotter, key).await
        {
            tracing::warn!(key, "undo: snapshot: {e}");
        }
        if let Some((net, att)) = &undo.network
            && let Err(e) = self.net.del(net, att).await
        {
            tracing::warn!(container = %att.container_id, "undo: CNI DEL: {e}");
        }
        for path in undo.pins.iter().chain(&undo.netns) {
            if let Err(e) = self.net.netns_remove(path).await {
                tracing::warn!(pin = %path.display(), "undo: namespace: {e}");
            }
        }
        if let Some(dir) = &undo.pod_dir
            && let Err(e) = self.fs.remove_pod_dir(dir)
        {
            tracing::warn!(dir = %dir.display(), "undo: pod directory: {e}");
        }
        if let Some(lease) = &undo.lease
            && let Err(e) = self.containerd.lease_delete(lease).await
        {
            tracing::warn!(lease, "undo: lease: {e}");
        }
    }
}
