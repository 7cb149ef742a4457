//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox.
//!
//! A run goes: validate → reserve the name → pod directory and intent record
//! → network namespace → CNI ADD → `/etc` files and `/dev/shm` → OCI spec →
//! a read-only view of the sandbox image → containerd container → pause
//! task. It runs in a task of its own, so a client that gives up does not
//! cut it short; a failure undoes every step done, in reverse.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::{ContainerRecord, Runtime, Stdio, TaskStatus, runc_options};
use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::image::{BUILTIN_SANDBOX_IMAGE, CriImage};
use crius_core::runtime::{PodTraits, Selection};
use crius_core::sandbox::{
    self, ImageProcess, NamespaceMode, PodSandboxRequest, SandboxEvent, SandboxSpecInput,
    SandboxState, files, labels,
};
use crius_core::{Error, Result};
use crius_image::Query;
use crius_network::exec::{Attachment, PortMapping, RuntimeConfig};
use sha2::{Digest as _, Sha256};

use crate::meta::{self, SandboxMeta};
use crate::registrar::Reserve;
use crate::store::Sandbox;
use crate::{Pods, now_ns, podfs, ports};

/// How long a stop waits for the pause process to die after SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lease around a sandbox's creation (its snapshot must not be collected
/// before the container record references it).
const CREATE_LEASE: Duration = Duration::from_secs(600);
/// kubelet's and containerd's oom_score_adj for the pause process.
const SANDBOX_OOM_SCORE_ADJ: i32 = -998;

/// Filters of `ListPodSandbox`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub id: String,
    pub state: Option<SandboxState>,
    pub label_selector: BTreeMap<String, String>,
}

/// What `PodSandboxStatus` reports.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub meta: SandboxMeta,
    pub state: SandboxState,
    pub pid: Option<u32>,
    /// The OCI spec containerd holds (verbose status).
    pub spec: Option<serde_json::Value>,
}

/// What a failed run must undo.
#[derive(Default)]
struct Undo {
    pod_dir: Option<PathBuf>,
    netns: Option<PathBuf>,
    network: Option<(crius_network::cni::NetworkConfig, Attachment)>,
    snapshot: Option<(String, String)>,
    container: Option<String>,
    task: Option<String>,
    lease: Option<String>,
}

pub(crate) fn random_id() -> String {
    let mut seed = [0u8; 32];
    // The kernel's randomness; the time and a counter would do, but need not.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .is_err()
    {
        let t = now_ns().to_le_bytes();
        seed[..8].copy_from_slice(&t);
    }
    sandbox::id::new_id(seed)
}

/// Identifies a request, so an identical retry is recognized.
fn fingerprint(req: &PodSandboxRequest) -> String {
    fingerprint_of(&format!("{req:?}"))
}

pub(crate) fn fingerprint_of(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn mode_of(m: NamespaceMode) -> i32 {
    match m {
        NamespaceMode::Pod => 0,
        NamespaceMode::Container => 1,
        NamespaceMode::Node => 2,
        NamespaceMode::Target => 3,
    }
}

/// The runtime a pod runs on (see [`crius_core::runtime::select`]).
pub(crate) fn select_runtime(config: &Config, req: &PodSandboxRequest) -> Result<Selection> {
    let ns = req.linux.namespaces;
    let privileged = req.linux.privileged
        || ns.network == NamespaceMode::Node
        || ns.pid == NamespaceMode::Node
        || ns.ipc == NamespaceMode::Node;
    let untrusted = req
        .annotations
        .get(crius_core::runtime::UNTRUSTED_WORKLOAD)
        .is_some_and(|v| v == "true");
    crius_core::runtime::select(
        config,
        PodTraits {
            requested: &req.runtime_handler,
            privileged,
            untrusted,
        },
    )
}

/// The process the pause image runs, from its config.
fn image_process(config: &serde_json::Value) -> ImageProcess {
    let c = crate::container::image_config(config);
    ImageProcess {
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        env: c.env,
        working_dir: c.working_dir,
        user: c.user,
    }
}

fn port_mappings(req: &PodSandboxRequest) -> Vec<PortMapping> {
    req.port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| PortMapping {
            host_port: p.host_port as u16,
            container_port: p.container_port as u16,
            protocol: p.protocol.to_string().to_lowercase(),
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

/// Which snapshot a rootfs is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rootfs {
    /// Read-only (the pause container's).
    View,
    /// Writable (a container's).
    Writable,
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
        snapshotter: meta.snapshotter.clone(),
        snapshot_key: meta.id.clone(),
        extensions: HashMap::from([(meta::EXTENSION.to_string(), meta.to_any()?)]),
        ..Default::default()
    })
}

pub(crate) fn attachment(meta: &SandboxMeta, netns: &Path) -> Attachment {
    Attachment {
        container_id: meta.id.clone(),
        netns: netns.to_path_buf(),
        ifname: "eth0".to_string(),
        args: Attachment::kubernetes_args(&meta.namespace, &meta.name, &meta.uid, &meta.id),
        capabilities: RuntimeConfig {
            port_mappings: meta
                .port_mappings
                .iter()
                .map(
                    |(protocol, host_port, container_port, host_ip)| PortMapping {
                        host_port: *host_port,
                        container_port: *container_port,
                        protocol: protocol.clone(),
                        host_ip: host_ip.clone(),
                    },
                )
                .collect(),
        },
    }
}

impl Pods {
    /// Runs a sandbox; returns its id. An identical retry of a request in
    /// flight gets the same id.
    pub async fn run(
        self: &Arc<Self>,
        config: Arc<Config>,
        driver: CgroupDriver,
        req: PodSandboxRequest,
    ) -> Result<String> {
        sandbox::validate(&req)?;
        let req = sandbox::normalized(req);
        // Before anything exists: a name containerd could take as a path
        // never gets further than this.
        let selection = select_runtime(&config, &req)?;
        let key = labels::sandbox_name_key(&req.name, &req.uid, &req.namespace, req.attempt);
        let id = random_id();
        let reservation = match self
            .store
            .names
            .reserve(&key, &id, &fingerprint(&req))
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
        crius_rt::detached("sandbox creation task", async move {
            let mut undo = Undo::default();
            match pods
                .create(
                    &config,
                    driver,
                    &req,
                    &selection,
                    reservation.id(),
                    &mut undo,
                )
                .await
            {
                Ok(sandbox) => {
                    let id = sandbox.meta.id.clone();
                    pods.watch_pause(sandbox.clone());
                    pods.store.insert(sandbox);
                    reservation.commit();
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
        req: &PodSandboxRequest,
        selection: &Selection,
        id: &str,
        undo: &mut Undo,
    ) -> Result<Arc<Sandbox>> {
        let snapshotter = selection
            .snapshotter
            .clone()
            .unwrap_or_else(|| config.containerd.snapshotter.clone());
        let image = self.sandbox_image(config, selection, &snapshotter).await?;
        let image_config = self.images.config(&image).await?;
        let mut meta = self.new_meta(req, selection, id, &image, &snapshotter);
        let pod_dir = self.pods_dir().join(id);
        // The directory first: its intent record lets start-up undo the rest.
        self.fs.create_dir(&pod_dir)?;
        undo.pod_dir = Some(pod_dir.clone());
        podfs::write_intent(&*self.fs, &pod_dir, &meta)?;
        let ips = self
            .set_up_network(config, &mut meta, &pod_dir, undo)
            .await?;
        self.write_pod_files(req, &mut meta, &pod_dir, &ips)?;
        let spec = self.sandbox_spec(config, driver, req, selection, &meta, &image_config)?;
        let lease = format!("crius-sandbox-{id}");
        let c = self
            .take_lease(&lease, CREATE_LEASE, &mut undo.lease)
            .await?;
        let mounts = self
            .rootfs_snapshot(&*c, Rootfs::View, &image, &snapshotter, id)
            .await?;
        undo.snapshot = Some((snapshotter.clone(), id.to_string()));
        let record = sandbox_record(req, selection, &meta, spec)?;
        c.container_create(&record).await?;
        undo.container = Some(id.to_string());
        undo.task = Some(id.to_string());
        c.task_create(id, mounts, &Stdio::null(), &meta.runtime_path)
            .await?;
        let pid = c.task_start(id).await?;
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
        image: &CriImage,
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
            namespace_modes: [mode_of(ns.network), mode_of(ns.pid), mode_of(ns.ipc)],
            image: image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            port_mappings: port_mappings(req)
                .into_iter()
                .map(|p| (p.protocol, p.host_port, p.container_port, p.host_ip))
                .collect(),
            shm: None,
            cgroup_parent: req.linux.cgroup_parent.clone(),
            privileged: req.linux.privileged,
            snapshotter: snapshotter.to_string(),
            runtime_path: selection.runtime_path.clone().unwrap_or_default(),
            privileged_without_host_devices: selection.privileged_without_host_devices,
        }
    }

    /// The pod's network namespace and CNI ADD (none with host network);
    /// returns the pod's IPs.
    async fn set_up_network(
        &self,
        config: &Config,
        meta: &mut SandboxMeta,
        pod_dir: &Path,
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
        let created = self.net.netns_create(&self.netns_dir(), &meta.id).await?;
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
        image_config: &serde_json::Value,
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
            image_config: image_process(image_config),
            netns_path: meta.netns.clone(),
            pod_shm: meta.shm.clone(),
            hostname: req.hostname.clone(),
            cgroup_driver: driver,
            daemon_oom_score_adj: self.host.daemon_oom_score_adj,
            sandbox_oom_score_adj: SANDBOX_OOM_SCORE_ADJ,
            annotations,
            localhost_seccomp: crate::host::localhost_seccomp(req.linux.seccomp.as_ref())?,
            kernel_version: self.host.kernel_version,
        })
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
        match make().await {
            Ok(m) => Ok(m),
            // The image's layers are not (or no longer) unpacked: unpack
            // them now, then and only then (lazy unpack).
            Err(Error::NotFound { .. }) => {
                c.snapshot_remove(snapshotter, key).await?;
                self.images.ensure_unpacked(image, snapshotter).await?;
                make().await
            }
            Err(e) => Err(e),
        }
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
        if let Some(path) = &undo.netns
            && let Err(e) = self.net.netns_remove(path).await
        {
            tracing::warn!("undo: netns: {e}");
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

    /// Waits for the pause process to exit and turns the sandbox NOTREADY,
    /// so that status and list answer from memory.
    pub(crate) fn watch_pause(self: &Arc<Self>, sandbox: Arc<Sandbox>) {
        let pods = self.clone();
        self.background.spawn("pause watcher", async move {
            loop {
                match pods.containerd.task_wait(&sandbox.meta.id).await {
                    Ok(_) | Err(Error::NotFound { .. }) => break,
                    Err(e) => {
                        tracing::debug!(sandbox = %sandbox.meta.id, "waiting for the pause process: {e}; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            sandbox.pause_exited();
            tracing::debug!(sandbox = %sandbox.meta.id, "pause process exited");
        });
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
            match self.containerd.task_kill(id, 9, true).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if task.status != TaskStatus::Created {
                match tokio::time::timeout(STOP_TIMEOUT, self.containerd.task_wait(id)).await {
                    Ok(Ok(_)) | Ok(Err(Error::NotFound { .. })) => {}
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

    /// Stops a sandbox: its processes killed, its network torn down.
    /// Idempotent; unknown ids are fine (CRI: a stop of what is gone
    /// succeeds, so kubelet's retries after a removal do too).
    pub async fn stop(&self, config: &Config, id: &str) -> Result<()> {
        let Some(sandbox) = self.store.find(id)? else {
            tracing::debug!(
                sandbox = id,
                "StopPodSandbox of an unknown id: nothing to do"
            );
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        self.stop_locked(config, &sandbox).await
    }

    async fn stop_locked(&self, config: &Config, sandbox: &Sandbox) -> Result<()> {
        let id = &sandbox.meta.id;
        self.stop_containers_of(id).await?;
        self.kill_and_delete_task(id).await?;
        sandbox.pause_exited();
        if sandbox.network_down() {
            tracing::debug!(sandbox = %id, "network already torn down");
        } else if let (Some(network), Some(netns)) = (&sandbox.meta.network, &sandbox.meta.netns) {
            // The network config may have changed since; DEL with the cached
            // config when the named network is gone is the plugin's job.
            match self.net.load(&config.cni.conf_dir, &config.cni.bin_dirs) {
                Ok(net) if &net.name == network => {
                    let netns = if self.net.netns_is_pinned(Path::new(netns)) {
                        PathBuf::from(netns)
                    } else {
                        PathBuf::new()
                    };
                    self.net
                        .del(&net, &attachment(&sandbox.meta, &netns))
                        .await?;
                }
                Ok(net) => {
                    tracing::warn!(sandbox = %id, was = %network, now = %net.name, "the pod's network is no longer configured; skipping CNI DEL")
                }
                Err(e) => {
                    tracing::warn!(sandbox = %id, "no CNI config to tear the pod network down: {e}")
                }
            }
        }
        sandbox.set_network_down();
        sandbox.apply(SandboxEvent::Stopped);
        tracing::info!(sandbox = %id, "sandbox stopped");
        Ok(())
    }

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
        self.remove_containers_of(config, &id).await?;
        self.containerd.container_delete(&id).await?;
        if let Ok(mut samples) = self.cpu_samples.lock() {
            samples.remove(&id);
        }
        // A shim containerd lost while its start was cut short (a daemon
        // killed mid-run) would otherwise run forever.
        let containerd = self.containerd.clone();
        let shim_of = id.clone();
        let killed = crius_rt::blocking("shim clean-up", move || {
            Ok(containerd.kill_lost_shims(&shim_of))
        })
        .await;
        if let Err(e) = killed {
            tracing::warn!(sandbox = %id, "looking for lost shims: {e}");
        }
        self.containerd
            .snapshot_remove(
                sandbox.meta.snapshotter_or(&config.containerd.snapshotter),
                &id,
            )
            .await?;
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
        self.store.remove(&id);
        tracing::info!(sandbox = %id, "sandbox removed");
        Ok(())
    }

    /// A sandbox's status, checked against its pause task.
    pub async fn status(&self, id: &str, verbose: bool) -> Result<SandboxStatus> {
        let sandbox = self
            .store
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id}")))?;
        // From memory: the pause process' watcher turns the sandbox NOTREADY
        // when it exits (kubelet asks for every pod's status every second).
        // A verbose status also asks containerd.
        if verbose {
            let running = self
                .containerd
                .task_get(&sandbox.meta.id)
                .await?
                .is_some_and(|t| t.status == TaskStatus::Running);
            if !running {
                sandbox.pause_exited();
            }
        }
        let spec = if verbose {
            self.containerd
                .container_get(&sandbox.meta.id)
                .await?
                .and_then(|r| serde_json::to_value(r.spec).ok())
        } else {
            None
        };
        Ok(SandboxStatus {
            meta: sandbox.meta.clone(),
            state: sandbox.state(),
            pid: sandbox.pid(),
            spec,
        })
    }

    /// Sandboxes matching `filter`, oldest first, shared (not copied).
    pub fn list(&self, filter: &ListFilter) -> Vec<(Arc<Sandbox>, SandboxState)> {
        let mut out: Vec<_> = self
            .store
            .all()
            .into_iter()
            .filter(|s| filter.id.is_empty() || s.meta.id.starts_with(&filter.id))
            .filter(|s| filter.state.is_none_or(|st| s.state() == st))
            .filter(|s| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| s.meta.labels.get(k) == Some(v))
            })
            .map(|s| {
                let state = s.state();
                (s, state)
            })
            .collect();
        out.sort_by_key(|(s, _)| s.meta.created_at);
        out
    }
}
