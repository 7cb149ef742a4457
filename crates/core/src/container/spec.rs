//! The OCI runtime spec of a container in a pod.
//!
//! Modelled on containerd 1.6's CRI plugin (`containerSpec` and the
//! `pkg/cri/opts` it applies), built field by field like the sandbox's spec
//! (oci-spec's defaults are youki's). Where containerd's behaviour is a
//! choice, the choice is documented at the field. The golden tests
//! (`golden.rs`) pin the result.
//!
//! Choices in short (see the functions for details):
//! - the container's snapshot is always writable; `readonly_rootfs` only
//!   sets `root.readonly` (and makes the pod's `/etc` files read-only);
//! - image `VOLUMES` not covered by a request mount are bind-mounted
//!   read-write from fresh host directories holding a copy of the image's
//!   content there (containerd's image volumes), so they stay writable with
//!   `readonly_rootfs`;
//! - network and IPC always follow the pod; the container joins the pause
//!   container's namespaces by path, leaves out those the pod shares with
//!   the host, and gets its own mount namespace;
//! - hugepage limits are dropped without error when the node has no
//!   hugetlb controller (containerd's `tolerate_missing_hugetlb_controller`
//!   default); `unified` on a cgroup v1 node is an error (runc refuses it);
//! - the oom_score_adj is clamped to no lower than the daemon's own
//!   (containerd's `restrict_oom_score_adj`): without CAP_SYS_RESOURCE runc
//!   cannot lower it;
//! - seccomp: none without a profile or with `Unconfined` (containerd
//!   1.6's default), crius' `RuntimeDefault`, or the caller-loaded
//!   `Localhost` one; never for privileged containers;
//! - AppArmor: [`crate::apparmor::container_profile`] (crius' default
//!   profile as loaded at start-up, a loaded `Localhost` one, or none).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, Linux, LinuxCpu, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimit,
    LinuxHugepageLimitBuilder, LinuxMemory, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Process, RootBuilder,
    Spec, UserBuilder,
};

use super::caps::{container_capabilities, linux_capabilities};
use super::mounts::container_mounts;
use super::process::{ContainerProcess, DEFAULT_PATH_ENV, set_env};
use super::seccomp::{self, Conditions, Platform};
use super::user::User;
use super::validate::{check_page_size, check_path, container_paths, device_permissions, validate};
use super::{ContainerRequest, ContainerResources, SecurityProfile};
use crate::cgroup::CgroupDriver;
use crate::sandbox::annotations as ann;
use crate::sandbox::id::is_valid_id;
use crate::sandbox::mode::PinPaths;
use crate::sandbox::spec::{MASKED_PATHS, OCI_VERSION, READONLY_PATHS, ROOTFS_PATH, cgroups_path};
use crate::sandbox::{NamespaceMode, PodSandboxRequest};
use crate::{Error, Result};

/// Facts about the node, measured once by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The daemon's own `/proc/self/oom_score_adj`.
    pub daemon_oom_score_adj: i32,
    /// The daemon's effective capabilities (`CapEff`, see
    /// [`super::capabilities_from_mask`]): what `ALL` and privileged mean.
    pub capabilities: Vec<Capability>,
    /// The cgroup controllers present (`cpu`, `memory`, `hugetlb`...).
    pub cgroup_controllers: BTreeSet<String>,
    /// Whether memory+swap limits can be set (cgroup v1
    /// `memory.memsw.limit_in_bytes` exists, or v2 `memory.swap.max`).
    pub memory_swap: bool,
    /// cgroup v2 unified mode (then containers get a cgroup namespace).
    pub cgroup_unified: bool,
    /// AppArmor as start-up found it (and loaded crius' default profile).
    pub apparmor: crate::apparmor::Mode,
    /// `(major, minor)` of the running kernel, for seccomp `minKernel`.
    pub kernel_version: Option<(u32, u32)>,
}

/// The pod's files on the host, bind-mounted into each container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// The pod's hostname file; `None` to mount none.
    pub hostname: Option<String>,
    pub hosts: String,
    pub resolv_conf: String,
    /// The pod's /dev/shm; `None` exactly when the pod uses the host's IPC
    /// namespace (the host's /dev/shm is mounted then).
    pub shm: Option<String>,
}

/// How a host mount propagates (`shared:N` / `master:N` in mountinfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPropagation {
    Shared,
    Slave,
    Private,
}

/// What the caller found out about the host path of a request mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    /// The path with symlinks resolved (what runc mounts); `None` to use
    /// the path as given.
    pub resolved: Option<String>,
    /// The propagation of the host mount holding the (resolved) path.
    pub propagation: HostPropagation,
}

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDeviceKind {
    Char,
    Block,
}

/// A device node on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Its path on the host (symlinks resolved).
    pub path: String,
    pub kind: HostDeviceKind,
    pub major: i64,
    pub minor: i64,
    /// Permission bits (`st_mode & 07777`).
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Where a container joins its pod's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodNamespaces {
    /// The pause process: `/proc/<pid>/ns/*`.
    Pause(u32),
    /// Pinned namespaces (no pause process; the pod shares no PID
    /// namespace): their paths, `None` for what the pod shares with the
    /// host.
    Pinned(PinPaths),
}

/// Everything [`container_spec`] needs; the caller resolves what takes I/O.
#[derive(Debug, Clone)]
pub struct ContainerSpecInput<'a> {
    /// The container's ID (64 hex digits).
    pub id: String,
    /// The sandbox's ID (64 hex digits).
    pub sandbox_id: String,
    pub request: &'a ContainerRequest,
    /// The sandbox's request (its namespaces, cgroup parent, privileged...).
    pub sandbox: &'a PodSandboxRequest,
    /// Where the container joins the pod's namespaces from.
    pub pod_namespaces: PodNamespaces,
    /// The pod's network namespace (bind-mounted file), joined rather than
    /// the pause's; `None` for host networking (or to use the pause's).
    pub netns_path: Option<String>,
    /// The init process of the `target_id` container, with PID mode Target.
    pub target_pid: Option<u32>,
    /// From [`super::image_process`].
    pub process: ContainerProcess,
    /// From [`super::resolve_user`].
    pub user: User,
    /// The pod's hostname, or the node's with host networking: `HOSTNAME`
    /// in the environment, and the spec's hostname when the pod has its own
    /// UTS namespace.
    pub hostname: String,
    pub files: PodFiles,
    /// The image as resolved (the containerd image record's name), for the
    /// `image-name` annotation; empty to use the request's.
    pub image_name: String,
    pub cgroup_driver: CgroupDriver,
    pub host: &'a HostFacts,
    /// Every device node of the host, for privileged containers.
    pub host_devices: Vec<HostDevice>,
    /// The runtime handler's `privileged_without_host_devices`.
    pub privileged_without_host_devices: bool,
    /// The device nodes behind each request device, by its `host_path` (a
    /// directory gives all the nodes under it).
    pub device_nodes: BTreeMap<String, Vec<HostDevice>>,
    /// Facts on each request mount's `host_path`; needed for the mounts
    /// with a propagation other than Private.
    pub host_paths: BTreeMap<String, HostPath>,
    /// Pod and container annotations allowed to pass through to the spec
    /// (the CRI annotations below win over them; empty keys are dropped).
    pub annotations: BTreeMap<String, String>,
    /// The contents of the `Localhost` seccomp profile the request names.
    pub localhost_seccomp: Option<String>,
    /// The loaded AppArmor profiles (`/sys/kernel/security/apparmor/profiles`),
    /// read when [`crate::apparmor::needs_loaded_profiles`] says so.
    pub apparmor_profiles: Option<String>,
    /// Image volumes: container path (from [`super::image_volume_paths`])
    /// to the host directory that holds it.
    pub image_volumes: BTreeMap<String, String>,
}

/// The OCI spec of the container `input.request` (validated again here).
pub fn container_spec(input: &ContainerSpecInput<'_>) -> Result<Spec> {
    let req = input.request;
    validate(req)?;
    for (what, id) in [("container", &input.id), ("sandbox", &input.sandbox_id)] {
        if !is_valid_id(id) {
            return Err(Error::Internal(format!(
                "{what} id {id:?} is not 64 hex digits"
            )));
        }
    }
    let sc = &req.linux.security;
    // containerd refuses it too ("no privileged container allowed in
    // sandbox").
    if sc.privileged && !input.sandbox.linux.privileged {
        return Err(Error::invalid(
            "config.linux.security_context.privileged",
            "a privileged container needs a privileged pod sandbox",
        ));
    }
    let caps = container_capabilities(&sc.capabilities, sc.privileged, &input.host.capabilities)?;
    let mounts = container_mounts(input)?;
    let root = RootBuilder::default()
        .path(ROOTFS_PATH)
        .readonly(sc.readonly_rootfs)
        .build()
        .map_err(oci)?;
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(mounts.mounts))
        .set_process(Some(process(input, &caps)?))
        .set_hostname(spec_hostname(input))
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations(input)))
        .set_linux(Some(linux(input, &caps, mounts.rootfs_propagation)?))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None);
    Ok(spec)
}

/// The container's log file: `<sandbox log directory>/<log_path>` joined
/// as containerd joins them ([`super::log_path_beneath`]), or `None` when
/// either is empty (no log) or the log path is not one crius takes.
pub fn log_file_path(sandbox_log_directory: &str, log_path: &str) -> Option<String> {
    if sandbox_log_directory.is_empty() || log_path.is_empty() {
        return None;
    }
    let rel = super::log_path_beneath(log_path).ok()?;
    Some(format!(
        "{}/{rel}",
        sandbox_log_directory.trim_end_matches('/')
    ))
}

pub(crate) fn oci(e: OciSpecError) -> Error {
    Error::Internal(format!("building the container spec: {e}"))
}

fn host_network(input: &ContainerSpecInput<'_>) -> bool {
    input.sandbox.linux.namespaces.network == NamespaceMode::Node
}

/// The pod's hostname, set again in the pod's UTS namespace (a no-op); left
/// out with host networking, where runc refuses a hostname.
fn spec_hostname(input: &ContainerSpecInput<'_>) -> Option<String> {
    (!host_network(input) && !input.hostname.is_empty()).then(|| input.hostname.clone())
}

fn process(input: &ContainerSpecInput<'_>, caps: &[Capability]) -> Result<Process> {
    let req = input.request;
    let sc = &req.linux.security;
    let p = &input.process;
    if p.args.is_empty() {
        return Err(Error::Internal("the container process has no args".into()));
    }
    check_path(&p.cwd)
        .map_err(|r| Error::Internal(format!("the container's working directory: {r}")))?;

    let user = process_user(&input.user)?;
    let oom_score_adj = req.linux.resources.as_ref().map(|r| {
        let wanted = i32::try_from(r.oom_score_adj.clamp(-1000, 1000)).unwrap_or_default();
        wanted
            .max(input.host.daemon_oom_score_adj)
            .clamp(-1000, 1000)
    });

    let mut process = Process::default();
    process
        .set_terminal(Some(req.tty))
        .set_console_size(None)
        .set_user(user)
        .set_args(Some(p.args.clone()))
        .set_command_line(None)
        .set_env(Some(process_env(input)))
        .set_cwd(PathBuf::from(&p.cwd))
        .set_capabilities(Some(linux_capabilities(caps)))
        .set_rlimits(None)
        .set_no_new_privileges(Some(sc.no_new_privs))
        .set_apparmor_profile(apparmor_profile(input)?)
        .set_oom_score_adj(oom_score_adj)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    Ok(process)
}

/// containerd's order: the default PATH and HOSTNAME first, each
/// overridden in place by the image's and then the request's entries.
fn process_env(input: &ContainerSpecInput<'_>) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH_ENV}")];
    if !input.hostname.is_empty() {
        env.push(format!("HOSTNAME={}", input.hostname));
    }
    for entry in &input.process.env {
        match entry.split_once('=') {
            Some((key, value)) => set_env(&mut env, key, value),
            None => env.push(entry.clone()),
        }
    }
    env
}

/// The process' uid, gid and additional gids, each id in range.
fn process_user(user: &User) -> Result<oci_spec::runtime::User> {
    for (what, id) in [("uid", user.uid), ("gid", user.gid)] {
        if id > super::MAX_ID {
            return Err(Error::Internal(format!("{what} {id} is out of range")));
        }
    }
    let mut user_builder = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        user_builder = user_builder.additional_gids(user.additional_gids.clone());
    }
    user_builder.build().map_err(oci)
}

/// See [`crate::apparmor::container_profile`].
fn apparmor_profile(input: &ContainerSpecInput<'_>) -> Result<Option<String>> {
    let sc = &input.request.linux.security;
    crate::apparmor::container_profile(
        &input.host.apparmor,
        sc.apparmor.as_ref(),
        sc.privileged,
        input.apparmor_profiles.as_deref(),
    )
}

fn linux(
    input: &ContainerSpecInput<'_>,
    caps: &[Capability],
    rootfs_propagation: Option<String>,
) -> Result<Linux> {
    let sc = &input.request.linux.security;
    let cgroups_path = cgroups_path(
        input.cgroup_driver,
        &input.sandbox.linux.cgroup_parent,
        &input.id,
    )?;
    let (masked, readonly) = if sc.privileged {
        (None, None)
    } else {
        let defaults = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        let given = |list: &Option<Vec<String>>, default: &[&str]| {
            list.as_deref()
                .map_or_else(|| defaults(default), container_paths)
        };
        (
            Some(given(&sc.masked_paths, &MASKED_PATHS)),
            Some(given(&sc.readonly_paths, &READONLY_PATHS)),
        )
    };
    let (devices, device_rules) = devices(input)?;
    // runc wants the mappings of a user namespace it joins.
    let maps = input.sandbox.linux.userns_maps();
    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(maps.map(|m| vec![crate::userns::oci(&m.uids)]))
        .set_gid_mappings(maps.map(|m| vec![crate::userns::oci(&m.gids)]))
        .set_sysctl(None)
        .set_resources(Some(resources(input, device_rules)?))
        .set_cgroups_path(Some(PathBuf::from(cgroups_path)))
        .set_namespaces(Some(namespaces(input)?))
        .set_devices((!devices.is_empty()).then_some(devices))
        .set_seccomp(seccomp(input, caps)?)
        .set_rootfs_propagation(rootfs_propagation)
        .set_masked_paths(masked)
        .set_readonly_paths(readonly)
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);
    Ok(linux)
}

/// containerd's order (pid, ipc, uts, mount, network, cgroup).
/// - pid: Container gets a new namespace, Target joins the target's, Pod
///   (and Node, which kubelet only sends with a host-PID pod) follows the
///   pod: the host's when the pod uses it, else the pause's;
/// - ipc, uts, network: the pause's, or the host's when the pod uses the
///   host's (uts follows network); the network is joined by the pod's
///   netns path when given;
/// - the container's network and IPC modes are ignored (containerd's
///   `WithPodNamespaces`): whatever it asks, it gets the pod's, and a PID
///   mode of NODE in a pod with its own PID namespace gets the pod's too
///   (less access than asked, never more);
/// - mount: always new; cgroup: new on cgroup v2 for unprivileged
///   containers (containerd's rule).
fn namespaces(input: &ContainerSpecInput<'_>) -> Result<Vec<LinuxNamespace>> {
    let pod = &input.sandbox.linux.namespaces;
    let mut out = Vec::with_capacity(6);
    out.extend(pid_namespace(input)?);
    if pod.ipc != NamespaceMode::Node {
        out.push(join_namespace(
            LinuxNamespaceType::Ipc,
            pause_namespace(input, "ipc")?,
        )?);
    }
    if pod.network != NamespaceMode::Node {
        out.push(join_namespace(
            LinuxNamespaceType::Uts,
            pause_namespace(input, "uts")?,
        )?);
    }
    out.push(new_namespace(LinuxNamespaceType::Mount)?);
    if input.sandbox.linux.userns_maps().is_some() {
        out.push(join_namespace(
            LinuxNamespaceType::User,
            pause_namespace(input, "user")?,
        )?);
    }
    out.extend(network_namespace(input)?);
    if input.host.cgroup_unified && !input.request.linux.security.privileged {
        out.push(new_namespace(LinuxNamespaceType::Cgroup)?);
    }
    Ok(out)
}

/// The pid namespace: a new one, the target container's, the pause's, or
/// none (the host's) when the pod uses the host's.
fn pid_namespace(input: &ContainerSpecInput<'_>) -> Result<Option<LinuxNamespace>> {
    let own = &input.request.linux.security.namespace_options;
    match own.pid {
        NamespaceMode::Container => new_namespace(LinuxNamespaceType::Pid).map(Some),
        NamespaceMode::Target => {
            let pid = input.target_pid.filter(|p| *p != 0).ok_or_else(|| {
                Error::Internal(format!(
                    "no pid for the target container {:?}",
                    own.target_id
                ))
            })?;
            join_namespace(LinuxNamespaceType::Pid, format!("/proc/{pid}/ns/pid")).map(Some)
        }
        NamespaceMode::Pod | NamespaceMode::Node => {
            if input.sandbox.linux.namespaces.pid == NamespaceMode::Node {
                return Ok(None);
            }
            // A pinned pod has no PID namespace to share: each container
            // has its own, as the pod asked (its PID mode is not POD).
            if let PodNamespaces::Pinned(_) = input.pod_namespaces {
                return new_namespace(LinuxNamespaceType::Pid).map(Some);
            }
            join_namespace(LinuxNamespaceType::Pid, pause_namespace(input, "pid")?).map(Some)
        }
    }
}

/// The network namespace: the pod's netns path (absolute) or else the
/// pause's; none (the host's) for a host-network pod, which must have no
/// netns path.
fn network_namespace(input: &ContainerSpecInput<'_>) -> Result<Option<LinuxNamespace>> {
    if input.sandbox.linux.namespaces.network == NamespaceMode::Node {
        if input.netns_path.is_some() {
            return Err(Error::Internal(
                "a network namespace was given for a host-network pod".into(),
            ));
        }
        return Ok(None);
    }
    let path = match input.netns_path.as_deref() {
        Some(path) if path.starts_with('/') => path.to_string(),
        Some(path) => {
            return Err(Error::Internal(format!(
                "the pod's network namespace path {path:?} is not absolute"
            )));
        }
        None => pause_namespace(input, "net")?,
    };
    join_namespace(LinuxNamespaceType::Network, path).map(Some)
}

/// The path of the pod's namespace `ns`: the pause process', or its pin.
fn pause_namespace(input: &ContainerSpecInput<'_>, ns: &str) -> Result<String> {
    let pin = match &input.pod_namespaces {
        PodNamespaces::Pause(0) => {
            return Err(Error::Internal(
                "joining the pod's namespaces needs the pause process' pid".into(),
            ));
        }
        PodNamespaces::Pause(pid) => return Ok(format!("/proc/{pid}/ns/{ns}")),
        PodNamespaces::Pinned(pins) if ns == "ipc" => &pins.ipc,
        PodNamespaces::Pinned(pins) if ns == "uts" => &pins.uts,
        PodNamespaces::Pinned(_) => &None,
    };
    pin.clone()
        .ok_or_else(|| Error::Internal(format!("the pinned pod has no {ns} namespace to join")))
}

fn join_namespace(typ: LinuxNamespaceType, path: String) -> Result<LinuxNamespace> {
    LinuxNamespaceBuilder::default()
        .typ(typ)
        .path(path)
        .build()
        .map_err(oci)
}

fn new_namespace(typ: LinuxNamespaceType) -> Result<LinuxNamespace> {
    LinuxNamespaceBuilder::default()
        .typ(typ)
        .build()
        .map_err(oci)
}

/// The device nodes and cgroup device rules.
/// - unprivileged (or `privileged_without_host_devices`): deny all (runc
///   adds its defaults after), then each request device with its
///   permissions;
/// - privileged: every host device and allow all; request devices are
///   added too (containerd drops them, losing a different container path).
fn devices(input: &ContainerSpecInput<'_>) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let req = input.request;
    let all_host = req.linux.security.privileged && !input.privileged_without_host_devices;
    let mut devices: Vec<LinuxDevice> = Vec::new();
    let mut rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(all_host)
            .access("rwm")
            .build()
            .map_err(oci)?,
    ];
    if all_host {
        for d in &input.host_devices {
            devices.push(device(d, &d.path)?);
        }
    }
    for d in &req.devices {
        let nodes = input.device_nodes.get(&d.host_path).ok_or_else(|| {
            Error::Internal(format!("no device nodes for host path {:?}", d.host_path))
        })?;
        for node in nodes {
            let container_path = if node.path == d.host_path {
                d.container_path.clone()
            } else {
                let rest = node
                    .path
                    .strip_prefix(d.host_path.trim_end_matches('/'))
                    .filter(|rest| rest.starts_with('/'))
                    .ok_or_else(|| {
                        Error::Internal(format!(
                            "device node {:?} is not under {:?}",
                            node.path, d.host_path
                        ))
                    })?;
                format!("{}{rest}", d.container_path.trim_end_matches('/'))
            };
            // The same target twice: the later node wins (containerd
            // appends both, runc creates the last).
            devices.retain(|existing| existing.path().to_string_lossy() != container_path);
            devices.push(device(node, &container_path)?);
            // No permissions: the node without any cgroup access.
            let access = device_permissions(&d.permissions);
            if !all_host && !access.is_empty() {
                rules.push(
                    LinuxDeviceCgroupBuilder::default()
                        .allow(true)
                        .typ(device_type(node.kind))
                        .major(node.major)
                        .minor(node.minor)
                        .access(access)
                        .build()
                        .map_err(oci)?,
                );
            }
        }
    }
    Ok((devices, rules))
}

fn device_type(kind: HostDeviceKind) -> LinuxDeviceType {
    match kind {
        HostDeviceKind::Char => LinuxDeviceType::C,
        HostDeviceKind::Block => LinuxDeviceType::B,
    }
}

fn device(d: &HostDevice, container_path: &str) -> Result<LinuxDevice> {
    LinuxDeviceBuilder::default()
        .path(container_path)
        .typ(device_type(d.kind))
        .major(d.major)
        .minor(d.minor)
        .file_mode(d.file_mode & 0o7777)
        .uid(d.uid)
        .gid(d.gid)
        .build()
        .map_err(oci)
}

/// containerd's `WithResources`: each value set when non-zero (a memory
/// limit of -1 is runc's unlimited); the swap limit defaults to the memory
/// limit (no swapping) where swap can be limited, and is dropped (not
/// checked) elsewhere; hugepage limits only with a hugetlb controller
/// (their page sizes checked then, limits above `i64::MAX` clamped).
fn resources(
    input: &ContainerSpecInput<'_>,
    device_rules: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources> {
    let mut out = match &input.request.linux.resources {
        Some(r) => linux_resources(r, input.host)?,
        None => LinuxResources::default(),
    };
    out.set_devices(Some(device_rules));
    Ok(out)
}

/// The OCI resources of CRI container resources on this host (also what
/// `UpdateContainerResources` sends to a running container).
pub fn linux_resources(r: &ContainerResources, host: &HostFacts) -> Result<LinuxResources> {
    let mut out = LinuxResources::default();
    // impossible: runc refuses unified resources on cgroup v1.
    if !r.unified.is_empty() && !host.cgroup_unified {
        return Err(Error::FailedPrecondition(
            "config.linux.resources.unified needs cgroup v2, and this node uses cgroup v1".into(),
        ));
    }
    out.set_cpu(cpu_resources(r)?);
    out.set_memory(memory_resources(r, host)?);
    if host.cgroup_controllers.contains("hugetlb") && !r.hugepage_limits.is_empty() {
        out.set_hugepage_limits(Some(hugepage_limits(r)?));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(r.unified.clone().into_iter().collect()));
    }
    Ok(out)
}

fn resources_field(f: &str) -> String {
    format!("config.linux.resources.{f}")
}

/// The CPU period, quota, shares and cpusets that are set (0 or "" is
/// unset); `None` when none is.
fn cpu_resources(r: &ContainerResources) -> Result<Option<LinuxCpu>> {
    let mut cpu = LinuxCpuBuilder::default();
    let mut cpu_set = false;
    if let Some(period) = u64::try_from(r.cpu_period).ok().filter(|p| *p != 0) {
        cpu = cpu.period(period);
        cpu_set = true;
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
        cpu_set = true;
    }
    if let Some(shares) = u64::try_from(r.cpu_shares).ok().filter(|s| *s != 0) {
        cpu = cpu.shares(shares);
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
        cpu_set = true;
    }
    cpu_set.then(|| cpu.build().map_err(oci)).transpose()
}

/// The memory limit, and the memory+swap limit where the host can limit
/// swap (the memory limit itself when only that is set: no swapping);
/// `None` when neither is set.
fn memory_resources(r: &ContainerResources, host: &HostFacts) -> Result<Option<LinuxMemory>> {
    let (limit, swap) = (r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes);
    if host.memory_swap && swap != 0 {
        // impossible: runc refuses a swap limit below -1 (unlimited)...
        if swap < -1 {
            return Err(Error::invalid(
                resources_field("memory_swap_limit_in_bytes"),
                "must be -1 (unlimited), 0 (unset) or positive",
            ));
        }
        // ...and one below the memory limit (it is memory plus swap).
        if swap > 0 && limit > 0 && swap < limit {
            return Err(Error::invalid(
                resources_field("memory_swap_limit_in_bytes"),
                "is memory plus swap, so it must not be below memory_limit_in_bytes",
            ));
        }
    }
    let mut memory = LinuxMemoryBuilder::default();
    let mut memory_set = false;
    if limit != 0 {
        memory = memory.limit(limit);
        memory_set = true;
        if swap == 0 && host.memory_swap {
            memory = memory.swap(limit);
        }
    }
    if swap != 0 && host.memory_swap {
        memory = memory.swap(swap);
        memory_set = true;
    }
    memory_set.then(|| memory.build().map_err(oci)).transpose()
}

/// The hugepage limits, each page size checked; a limit above `i64::MAX`
/// is clamped (the kernel clamps page counters).
fn hugepage_limits(r: &ContainerResources) -> Result<Vec<LinuxHugepageLimit>> {
    let mut limits = Vec::with_capacity(r.hugepage_limits.len());
    for (i, (page_size, limit)) in r.hugepage_limits.iter().enumerate() {
        check_page_size(page_size).map_err(|reason| {
            Error::invalid(
                resources_field(&format!("hugepage_limits[{i}].page_size")),
                reason,
            )
        })?;
        limits.push(
            LinuxHugepageLimitBuilder::default()
                .page_size(page_size.clone())
                .limit(i64::try_from(*limit).unwrap_or(i64::MAX))
                .build()
                .map_err(oci)?,
        );
    }
    Ok(limits)
}

fn seccomp(input: &ContainerSpecInput<'_>, caps: &[Capability]) -> Result<Option<LinuxSeccomp>> {
    let sc = &input.request.linux.security;
    if sc.privileged {
        return Ok(None);
    }
    let conditions = Conditions {
        capabilities: caps,
        kernel_version: input.host.kernel_version,
        platform: Platform::current(),
    };
    match &sc.seccomp {
        None | Some(SecurityProfile::Unconfined) => Ok(None),
        Some(SecurityProfile::RuntimeDefault) => seccomp::runtime_default(&conditions).map(Some),
        Some(SecurityProfile::Localhost(path)) => {
            let json = input.localhost_seccomp.as_deref().ok_or_else(|| {
                Error::Internal(format!("the seccomp profile {path:?} was not loaded"))
            })?;
            seccomp::localhost(json, &conditions).map(Some)
        }
    }
}

/// The pass-through annotations, then the CRI contract's (which win).
fn annotations(input: &ContainerSpecInput<'_>) -> HashMap<String, String> {
    let sandbox = input.sandbox;
    let mut out: HashMap<String, String> = input
        .annotations
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let image_name = if input.image_name.is_empty() {
        &input.request.image
    } else {
        &input.image_name
    };
    for (key, value) in [
        (ann::CONTAINER_TYPE, ann::CONTAINER_TYPE_CONTAINER),
        (ann::SANDBOX_ID, input.sandbox_id.as_str()),
        (ann::SANDBOX_NAME, &sandbox.name),
        (ann::SANDBOX_NAMESPACE, &sandbox.namespace),
        (ann::SANDBOX_UID, &sandbox.uid),
        (ann::CONTAINER_NAME, &input.request.name),
        (ann::IMAGE_NAME, image_name),
    ] {
        out.insert(key.to_string(), value.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxSeccompAction;

    use super::*;
    use crate::container::{
        ContainerNamespaces, Device, LinuxContainer, Mount, Propagation, SecurityContext,
        capabilities_from_mask,
    };
    use crate::sandbox::LinuxSandbox;

    fn host() -> HostFacts {
        HostFacts {
            daemon_oom_score_adj: 0,
            capabilities: capabilities_from_mask(0x0000_01ff_feff_ffff),
            cgroup_controllers: BTreeSet::new(),
            memory_swap: false,
            cgroup_unified: false,
            apparmor: crate::apparmor::Mode::Disabled,
            kernel_version: Some((6, 1)),
        }
    }

    fn sandbox() -> PodSandboxRequest {
        PodSandboxRequest {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            hostname: "web-0".into(),
            linux: LinuxSandbox {
                cgroup_parent: "/kubepods/pod1".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn request() -> ContainerRequest {
        ContainerRequest {
            name: "app".into(),
            image: "busybox".into(),
            linux: LinuxContainer {
                resources: None,
                security: SecurityContext::default(),
            },
            ..Default::default()
        }
    }

    fn input<'a>(
        req: &'a ContainerRequest,
        sandbox: &'a PodSandboxRequest,
        host: &'a HostFacts,
    ) -> ContainerSpecInput<'a> {
        ContainerSpecInput {
            id: "c".repeat(64),
            sandbox_id: "a".repeat(64),
            request: req,
            sandbox,
            pod_namespaces: PodNamespaces::Pause(100),
            netns_path: Some("/var/run/netns/cni-1".into()),
            target_pid: None,
            process: ContainerProcess {
                args: vec!["sh".into()],
                env: vec!["PATH=/bin".into(), "HOSTNAME=mine".into()],
                cwd: "/".into(),
            },
            user: User::default(),
            hostname: "web-0".into(),
            files: PodFiles {
                hostname: None,
                hosts: "/run/pod/hosts".into(),
                resolv_conf: "/run/pod/resolv.conf".into(),
                shm: Some("/run/pod/shm".into()),
            },
            image_name: String::new(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            host,
            host_devices: vec![],
            privileged_without_host_devices: false,
            device_nodes: BTreeMap::new(),
            host_paths: BTreeMap::new(),
            annotations: BTreeMap::new(),
            localhost_seccomp: None,
            apparmor_profiles: None,
            image_volumes: BTreeMap::new(),
        }
    }

    fn linux(spec: &Spec) -> Linux {
        spec.linux().clone().unwrap_or_default()
    }

    fn namespaces(spec: &Spec) -> Vec<(String, Option<String>)> {
        linux(spec)
            .namespaces()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|n| {
                (
                    format!("{:?}", n.typ()),
                    n.path().as_ref().map(|p| p.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    fn invalid_field(result: Result<Spec>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn environment_order_and_image_name() -> Result<()> {
        let (req, sb, host) = (request(), sandbox(), host());
        let spec = container_spec(&input(&req, &sb, &host))?;
        let process = spec.process().clone().unwrap_or_default();
        // The image's HOSTNAME wins over crius', in place.
        assert_eq!(
            process.env().clone().unwrap_or_default(),
            ["PATH=/bin", "HOSTNAME=mine"]
        );
        let annotations = spec.annotations().clone().unwrap_or_default();
        assert_eq!(annotations[ann::IMAGE_NAME], "busybox");
        assert_eq!(annotations[ann::CONTAINER_TYPE], "container");
        // No resources: no oom_score_adj, only the device rule.
        assert_eq!(process.oom_score_adj(), None);
        let resources = linux(&spec).resources().clone().unwrap_or_default();
        assert!(resources.cpu().is_none() && resources.memory().is_none());
        assert_eq!(resources.devices().as_ref().map(Vec::len), Some(1));
        Ok(())
    }

    #[test]
    fn a_pinned_pod_is_joined_by_its_pins_with_a_pid_namespace_per_container() -> Result<()> {
        let host = host();
        let mut req = request();
        let sb = sandbox();
        let ns = |t: &str, p: Option<&str>| (t.to_string(), p.map(str::to_string));
        let mut i = input(&req, &sb, &host);
        i.pod_namespaces = PodNamespaces::Pinned(PinPaths {
            ipc: Some("/run/crius/pins/a.ipc".into()),
            uts: Some("/run/crius/pins/a.uts".into()),
        });
        let pinned = i.pod_namespaces.clone();
        assert_eq!(
            namespaces(&container_spec(&i)?),
            [
                ns("Pid", None),
                ns("Ipc", Some("/run/crius/pins/a.ipc")),
                ns("Uts", Some("/run/crius/pins/a.uts")),
                ns("Mount", None),
                ns("Network", Some("/var/run/netns/cni-1")),
            ]
        );
        // Whatever PID mode the container names, it gets its own.
        req.linux.security.namespace_options.pid = NamespaceMode::Container;
        let mut i = input(&req, &sb, &host);
        i.pod_namespaces = pinned;
        assert_eq!(namespaces(&container_spec(&i)?)[0], ns("Pid", None));
        // A pin the pod lacks is an internal error, never the host's.
        i.pod_namespaces = PodNamespaces::Pinned(PinPaths {
            ipc: None,
            uts: Some("/u".into()),
        });
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        Ok(())
    }

    #[test]
    fn namespaces_follow_the_pod() -> Result<()> {
        let host = host();
        let mut req = request();
        let mut sb = sandbox();
        let spec = container_spec(&input(&req, &sb, &host))?;
        let ns = |t: &str, p: Option<&str>| (t.to_string(), p.map(str::to_string));
        assert_eq!(
            namespaces(&spec),
            [
                ns("Pid", Some("/proc/100/ns/pid")),
                ns("Ipc", Some("/proc/100/ns/ipc")),
                ns("Uts", Some("/proc/100/ns/uts")),
                ns("Mount", None),
                ns("Network", Some("/var/run/netns/cni-1")),
            ]
        );
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));

        // Without a netns path the pause's is joined; cgroup v2 adds a
        // cgroup namespace.
        let mut i = input(&req, &sb, &host);
        i.netns_path = None;
        let v2 = HostFacts {
            cgroup_unified: true,
            ..host.clone()
        };
        i.host = &v2;
        let spec = container_spec(&i)?;
        let got = namespaces(&spec);
        assert_eq!(got[4], ns("Network", Some("/proc/100/ns/net")));
        assert_eq!(got[5], ns("Cgroup", None));

        // PID: own, target's.
        req.linux.security.namespace_options.pid = NamespaceMode::Container;
        assert_eq!(
            namespaces(&container_spec(&input(&req, &sb, &host))?)[0],
            ns("Pid", None)
        );
        req.linux.security.namespace_options = ContainerNamespaces {
            pid: NamespaceMode::Target,
            target_id: "b".repeat(64),
            ..Default::default()
        };
        let mut i = input(&req, &sb, &host);
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        i.target_pid = Some(777);
        assert_eq!(
            namespaces(&container_spec(&i)?)[0],
            ns("Pid", Some("/proc/777/ns/pid"))
        );

        // A host namespace the pod does not have is not given: the
        // container gets the pod's (containerd ignores the container's
        // network and IPC modes); a stray target_id is ignored.
        req.linux.security.namespace_options = ContainerNamespaces {
            network: NamespaceMode::Node,
            ipc: NamespaceMode::Container,
            pid: NamespaceMode::Node,
            target_id: "b".repeat(64),
        };
        let spec = container_spec(&input(&req, &sb, &host))?;
        assert_eq!(
            namespaces(&spec),
            [
                ns("Pid", Some("/proc/100/ns/pid")),
                ns("Ipc", Some("/proc/100/ns/ipc")),
                ns("Uts", Some("/proc/100/ns/uts")),
                ns("Mount", None),
                ns("Network", Some("/var/run/netns/cni-1")),
            ]
        );

        // Host pod: only a mount namespace; no hostname; the container
        // saying POD (crictl's default) follows the pod.
        req.linux.security.namespace_options = ContainerNamespaces::default();
        sb.linux.namespaces = crate::sandbox::NamespaceOptions {
            network: NamespaceMode::Node,
            pid: NamespaceMode::Node,
            ipc: NamespaceMode::Node,
        };
        let mut i = input(&req, &sb, &host);
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        i.netns_path = None;
        i.files.shm = None;
        i.pod_namespaces = PodNamespaces::Pause(0);
        let spec = container_spec(&i)?;
        assert_eq!(namespaces(&spec), [ns("Mount", None)]);
        assert_eq!(spec.hostname(), &None);
        Ok(())
    }

    #[test]
    fn privileged_needs_a_privileged_sandbox() -> Result<()> {
        let host = host();
        let mut req = request();
        req.linux.security.privileged = true;
        let mut sb = sandbox();
        assert_eq!(
            invalid_field(container_spec(&input(&req, &sb, &host))),
            "config.linux.security_context.privileged"
        );
        sb.linux.privileged = true;
        let mut i = input(&req, &sb, &host);
        i.privileged_without_host_devices = true;
        i.host_devices = vec![HostDevice {
            path: "/dev/kmsg".into(),
            kind: HostDeviceKind::Char,
            major: 1,
            minor: 11,
            file_mode: 0o644,
            uid: 0,
            gid: 0,
        }];
        let spec = container_spec(&i)?;
        let l = linux(&spec);
        // Without host devices: deny-all stays, no host device.
        assert_eq!(l.devices(), &None);
        let rules = l.resources().clone().unwrap_or_default();
        assert!(!rules.devices().clone().unwrap_or_default()[0].allow());
        assert_eq!(l.masked_paths(), &None);
        assert_eq!(l.seccomp(), &None);
        Ok(())
    }

    #[test]
    fn mount_propagation_needs_the_right_host_mount() -> Result<()> {
        let host = host();
        let sb = sandbox();
        let mut req = request();
        req.mounts = vec![Mount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            propagation: Propagation::Bidirectional,
            ..Default::default()
        }];
        let mut i = input(&req, &sb, &host);
        // No facts: the caller's bug.
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        for (propagation, ok) in [
            (HostPropagation::Private, false),
            (HostPropagation::Slave, false),
            (HostPropagation::Shared, true),
        ] {
            i.host_paths = BTreeMap::from([(
                "/srv".to_string(),
                HostPath {
                    resolved: None,
                    propagation,
                },
            )]);
            match container_spec(&i) {
                Ok(spec) => {
                    assert!(ok);
                    assert_eq!(
                        linux(&spec).rootfs_propagation().as_deref(),
                        Some("rshared")
                    );
                }
                Err(Error::InvalidArgument { field, .. }) => {
                    assert!(!ok);
                    assert_eq!(field, "config.mounts[0].propagation");
                }
                Err(e) => panic!("{e}"),
            }
        }
        req.mounts[0].propagation = Propagation::HostToContainer;
        let mut i = input(&req, &sb, &host);
        i.host_paths = BTreeMap::from([(
            "/srv".to_string(),
            HostPath {
                resolved: Some("/mnt/srv".into()),
                propagation: HostPropagation::Slave,
            },
        )]);
        let spec = container_spec(&i)?;
        assert_eq!(linux(&spec).rootfs_propagation().as_deref(), Some("rslave"));
        let data = spec
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination().to_string_lossy() == "/data")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            data.source()
                .as_deref()
                .map(|p| p.to_string_lossy().into_owned()),
            Some("/mnt/srv".into())
        );
        assert_eq!(
            data.options().clone().unwrap_or_default(),
            ["rbind", "rslave", "rw"]
        );
        Ok(())
    }

    #[test]
    fn recursive_read_only_mounts_get_rro_and_plain_ones_ro() -> Result<()> {
        let host = host();
        let sb = sandbox();
        let mut req = request();
        let m = |path: &str, recursive_read_only| Mount {
            container_path: path.into(),
            host_path: "/srv".into(),
            readonly: true,
            recursive_read_only,
            ..Default::default()
        };
        req.mounts = vec![m("/rro", true), m("/ro", false)];
        let spec = container_spec(&input(&req, &sb, &host))?;
        let options = |dest: &str| {
            spec.mounts()
                .iter()
                .flatten()
                .find(|m| m.destination().to_string_lossy() == dest)
                .and_then(|m| m.options().clone())
                .unwrap_or_default()
        };
        assert_eq!(options("/rro"), ["rbind", "rprivate", "ro", "rro"]);
        assert_eq!(options("/ro"), ["rbind", "rprivate", "ro"]);
        Ok(())
    }

    #[test]
    fn a_request_mount_of_dev_replaces_everything_under_it() -> Result<()> {
        let host = host();
        let sb = sandbox();
        let mut req = request();
        req.mounts = vec![Mount {
            container_path: "/dev".into(),
            host_path: "/dev".into(),
            ..Default::default()
        }];
        let spec = container_spec(&input(&req, &sb, &host))?;
        let dests: Vec<String> = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/sys",
                "/sys/fs/cgroup",
                "/dev",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/shm"
            ]
        );
        Ok(())
    }

    #[test]
    fn relative_and_repeated_mount_targets() -> Result<()> {
        let host = host();
        let sb = sandbox();
        let mut req = request();
        let bind = |container: &str, host: &str| Mount {
            container_path: container.into(),
            host_path: host.into(),
            ..Default::default()
        };
        req.mounts = vec![
            bind("data", "/srv/a"),
            bind("/data/./", "/srv/b"),
            bind("/etc/x/../hosts", "/srv/hosts"),
        ];
        req.linux.security.masked_paths = Some(vec!["proc/kcore".into(), String::new()]);
        // The caller's normalizing changes nothing the spec shows.
        for req in [req.clone(), super::super::normalized(req)] {
            let spec = container_spec(&input(&req, &sb, &host))?;
            let binds: Vec<(String, String)> = spec
                .mounts()
                .iter()
                .flatten()
                .filter(|m| m.typ().as_deref() == Some("bind"))
                .map(|m| {
                    (
                        m.destination().to_string_lossy().into_owned(),
                        m.source()
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            // Both /data mounts, the later last (what the container sees);
            // the request's /etc/hosts replaces the pod's.
            let data: Vec<&(String, String)> = binds.iter().filter(|(d, _)| d == "/data").collect();
            assert_eq!(data.len(), 2);
            assert_eq!(data[1].1, "/srv/b");
            let hosts: Vec<&(String, String)> =
                binds.iter().filter(|(d, _)| d == "/etc/hosts").collect();
            assert_eq!(hosts.len(), 1);
            assert_eq!(hosts[0].1, "/srv/hosts");
            assert_eq!(
                linux(&spec).masked_paths().clone().unwrap_or_default(),
                ["/proc/kcore"]
            );
        }
        Ok(())
    }

    #[test]
    fn device_permissions_and_repeated_targets() -> Result<()> {
        let host = host();
        let sb = sandbox();
        let mut req = request();
        let dev = |host_path: &str, perms: &str| Device {
            container_path: "/dev/x".into(),
            host_path: host_path.into(),
            permissions: perms.into(),
        };
        req.devices = vec![dev("/dev/null", "mwrw"), dev("/dev/zero", "")];
        let node = |path: &str, minor| HostDevice {
            path: path.into(),
            kind: HostDeviceKind::Char,
            major: 1,
            minor,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let mut i = input(&req, &sb, &host);
        i.device_nodes = BTreeMap::from([
            ("/dev/null".to_string(), vec![node("/dev/null", 3)]),
            ("/dev/zero".to_string(), vec![node("/dev/zero", 5)]),
        ]);
        let l = linux(&container_spec(&i)?);
        // The later node at /dev/x wins; the empty permissions give it no
        // cgroup rule, the first keeps its (in rwm order).
        let devices = l.devices().clone().unwrap_or_default();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].minor(), 5);
        let rules = l
            .resources()
            .clone()
            .unwrap_or_default()
            .devices()
            .clone()
            .unwrap_or_default();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].minor(), Some(3));
        assert_eq!(rules[1].access().as_deref(), Some("rwm"));
        Ok(())
    }

    #[test]
    fn devices_from_a_directory() -> Result<()> {
        let host = host();
        let sb = sandbox();
        let mut req = request();
        req.devices = vec![Device {
            container_path: "/dev/snd".into(),
            host_path: "/dev/snd".into(),
            permissions: "rw".into(),
        }];
        let node = |path: &str, minor| HostDevice {
            path: path.into(),
            kind: HostDeviceKind::Char,
            major: 116,
            minor,
            file_mode: 0o20660,
            uid: 0,
            gid: 29,
        };
        let mut i = input(&req, &sb, &host);
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        i.device_nodes = BTreeMap::from([(
            "/dev/snd".to_string(),
            vec![node("/dev/snd/timer", 33), node("/dev/snd/pcmC0D0p", 16)],
        )]);
        let l = linux(&container_spec(&i)?);
        let devices = l.devices().clone().unwrap_or_default();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].path().to_string_lossy(), "/dev/snd/pcmC0D0p");
        assert_eq!(devices[1].file_mode(), Some(0o660));
        let rules = l
            .resources()
            .clone()
            .unwrap_or_default()
            .devices()
            .clone()
            .unwrap_or_default();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].access().as_deref(), Some("rw"));
        assert_eq!(rules[2].minor(), Some(16));
        i.device_nodes = BTreeMap::from([("/dev/snd".to_string(), vec![node("/dev/sndx", 1)])]);
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        Ok(())
    }

    #[test]
    fn resources_follow_the_host() -> Result<()> {
        let sb = sandbox();
        let mut req = request();
        req.linux.resources = Some(ContainerResources {
            memory_limit_in_bytes: 1 << 30,
            hugepage_limits: vec![("2MB".into(), 1 << 21)],
            oom_score_adj: -999,
            cpu_quota: -1,
            ..Default::default()
        });
        let mut host = host();
        host.daemon_oom_score_adj = -500;
        let spec = container_spec(&input(&req, &sb, &host))?;
        let r = linux(&spec).resources().clone().unwrap_or_default();
        assert_eq!(r.hugepage_limits(), &None);
        assert_eq!(r.memory().and_then(|m| m.swap()), None);
        assert_eq!(r.cpu().as_ref().and_then(|c| c.quota()), Some(-1));
        let process = spec.process().clone().unwrap_or_default();
        assert_eq!(process.oom_score_adj(), Some(-500));

        host.cgroup_controllers.insert("hugetlb".into());
        host.memory_swap = true;
        let spec = container_spec(&input(&req, &sb, &host))?;
        let r = linux(&spec).resources().clone().unwrap_or_default();
        let limits = r.hugepage_limits().clone().unwrap_or_default();
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].page_size(), "2MB");
        assert_eq!(limits[0].limit(), 1 << 21);
        // No swapping by default where swap can be limited.
        assert_eq!(r.memory().and_then(|m| m.swap()), Some(1 << 30));
        if let Some(res) = req.linux.resources.as_mut() {
            res.memory_swap_limit_in_bytes = -1;
        }
        let spec = container_spec(&input(&req, &sb, &host))?;
        let r = linux(&spec).resources().clone().unwrap_or_default();
        assert_eq!(r.memory().and_then(|m| m.swap()), Some(-1));

        if let Some(res) = req.linux.resources.as_mut() {
            res.unified.insert("memory.high".into(), "max".into());
        }
        assert!(matches!(
            container_spec(&input(&req, &sb, &host)),
            Err(Error::FailedPrecondition(_))
        ));
        host.cgroup_unified = true;
        let spec = container_spec(&input(&req, &sb, &host))?;
        let r = linux(&spec).resources().clone().unwrap_or_default();
        assert_eq!(
            r.unified().clone().unwrap_or_default()["memory.high"],
            "max"
        );
        Ok(())
    }

    #[test]
    fn node_dependent_resources_are_checked_when_applied() -> Result<()> {
        let mut host = host();
        let odd = ContainerResources {
            memory_limit_in_bytes: 2 << 20,
            memory_swap_limit_in_bytes: 1 << 20,
            hugepage_limits: vec![("2M".into(), 1)],
            ..Default::default()
        };
        // No swap control, no hugetlb: dropped, as containerd does.
        let r = linux_resources(&odd, &host)?;
        assert_eq!(r.memory().and_then(|m| m.swap()), None);
        assert_eq!(r.hugepage_limits(), &None);
        host.memory_swap = true;
        assert!(matches!(
            linux_resources(&odd, &host),
            Err(Error::InvalidArgument { field, .. })
                if field == "config.linux.resources.memory_swap_limit_in_bytes"
        ));
        host.memory_swap = false;
        host.cgroup_controllers.insert("hugetlb".into());
        assert!(matches!(
            linux_resources(&odd, &host),
            Err(Error::InvalidArgument { field, .. })
                if field == "config.linux.resources.hugepage_limits[0].page_size"
        ));
        // Huge limits are clamped; -1 memory is unlimited (swap too).
        host.memory_swap = true;
        let r = linux_resources(
            &ContainerResources {
                memory_limit_in_bytes: -1,
                hugepage_limits: vec![("2MB".into(), u64::MAX)],
                ..Default::default()
            },
            &host,
        )?;
        assert_eq!(r.memory().and_then(|m| m.limit()), Some(-1));
        assert_eq!(r.memory().and_then(|m| m.swap()), Some(-1));
        let limits = r.hugepage_limits().clone().unwrap_or_default();
        assert_eq!(limits[0].limit(), i64::MAX);
        Ok(())
    }

    #[test]
    fn security_profiles() -> Result<()> {
        let sb = sandbox();
        let mut req = request();
        let mut host = host();
        req.linux.security.apparmor = Some(SecurityProfile::Localhost("k8s-x".into()));
        assert!(matches!(
            container_spec(&input(&req, &sb, &host)),
            Err(Error::FailedPrecondition(_))
        ));
        req.linux.security.apparmor = Some(SecurityProfile::RuntimeDefault);
        let profile = |req: &ContainerRequest, host: &HostFacts| -> Result<Option<String>> {
            let spec = container_spec(&input(req, &sb, host))?;
            Ok(spec
                .process()
                .clone()
                .unwrap_or_default()
                .apparmor_profile()
                .clone())
        };
        assert_eq!(profile(&req, &host)?, None);
        // The spec takes the profile `apparmor::container_profile` picks
        // (its own tests cover the rules), with the loaded list as input.
        host.apparmor = crate::apparmor::after_load(Ok(()));
        assert_eq!(
            profile(&req, &host)?.as_deref(),
            Some(crate::apparmor::DEFAULT_PROFILE)
        );
        req.linux.security.apparmor = Some(SecurityProfile::Localhost("localhost/k8s-x".into()));
        let mut i = input(&req, &sb, &host);
        i.apparmor_profiles = Some("other (enforce)\n".into());
        assert_eq!(
            invalid_field(container_spec(&i)),
            "config.linux.security_context.apparmor"
        );
        i.apparmor_profiles = Some("k8s-x (enforce)\n".into());
        let process = container_spec(&i)?.process().clone().unwrap_or_default();
        assert_eq!(process.apparmor_profile().as_deref(), Some("k8s-x"));
        req.linux.security.apparmor = None;

        req.linux.security.seccomp = Some(SecurityProfile::Localhost(
            "/var/lib/kubelet/seccomp/a.json".into(),
        ));
        let mut i = input(&req, &sb, &host);
        assert!(matches!(container_spec(&i), Err(Error::Internal(_))));
        i.localhost_seccomp = Some("{\"defaultAction\": \"SCMP_ACT_LOG\"}".into());
        let seccomp = linux(&container_spec(&i)?).seccomp().clone();
        assert_eq!(
            seccomp.map(|s| s.default_action()),
            Some(LinuxSeccompAction::ScmpActLog)
        );
        i.localhost_seccomp = Some("{".into());
        assert_eq!(
            invalid_field(container_spec(&i)),
            "config.linux.security_context.seccomp.localhost_ref"
        );
        Ok(())
    }

    #[test]
    fn image_volumes_are_writable_binds_unless_a_request_mount_covers_them() -> Result<()> {
        let (host, sb) = (host(), sandbox());
        let mut req = request();
        req.linux.security.readonly_rootfs = true;
        req.mounts = vec![super::super::Mount {
            container_path: "/srv/".into(),
            host_path: "/data".into(),
            ..Default::default()
        }];
        let volumes: std::collections::BTreeSet<String> = [
            "/var/lib/db/",
            "/srv",
            "relative",
            "/",
            "/a/../etc",
            "/cache",
            "//cache",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let paths = super::super::image_volume_paths(&volumes, &req);
        assert_eq!(paths, ["/cache", "/var/lib/db"]);
        let mut i = input(&req, &sb, &host);
        i.image_volumes = paths
            .iter()
            .enumerate()
            .map(|(n, p)| {
                (
                    p.clone(),
                    format!("/var/lib/crius/containers/c/volumes/{n}"),
                )
            })
            .collect();
        let spec = container_spec(&i)?;
        let mounts = spec.mounts().clone().unwrap_or_default();
        let db = mounts
            .iter()
            .find(|m| m.destination().to_string_lossy() == "/var/lib/db")
            .expect("db volume");
        assert_eq!(
            db.source()
                .as_ref()
                .map(|p| p.display().to_string())
                .as_deref(),
            Some("/var/lib/crius/containers/c/volumes/1")
        );
        assert_eq!(
            db.options().clone().unwrap_or_default(),
            ["rbind", "rprivate", "rw"]
        );
        assert_eq!(
            mounts
                .iter()
                .filter(|m| m.destination().to_string_lossy().starts_with("/srv"))
                .count(),
            1,
            "the request mount wins"
        );
        Ok(())
    }

    #[test]
    fn log_files() {
        assert_eq!(
            log_file_path("/var/log/pods/x/", "app/0.log").as_deref(),
            Some("/var/log/pods/x/app/0.log")
        );
        assert_eq!(
            log_file_path("/var/log/pods/x", "/./abs.log").as_deref(),
            Some("/var/log/pods/x/abs.log")
        );
        assert_eq!(log_file_path("/var/log/pods/x", "../x.log"), None);
        assert_eq!(log_file_path("", "app/0.log"), None);
        assert_eq!(log_file_path("/var/log/pods/x", ""), None);
    }

    #[test]
    fn cpu_values_of_zero_or_below_are_unset() -> Result<()> {
        let none = ContainerResources {
            cpu_period: -1,
            cpu_shares: -2,
            ..Default::default()
        };
        assert_eq!(cpu_resources(&none)?, None);
        let quota = ContainerResources {
            cpu_quota: -1,
            cpuset_mems: "0".into(),
            ..none
        };
        let cpu = cpu_resources(&quota)?.unwrap_or_default();
        assert_eq!((cpu.period(), cpu.shares()), (None, None));
        assert_eq!(cpu.quota(), Some(-1));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        Ok(())
    }

    #[test]
    fn ids_beyond_2_pow_31_never_reach_the_spec() -> Result<()> {
        let u = process_user(&User {
            uid: 1000,
            gid: 2000,
            additional_gids: vec![2000, 3000],
        })?;
        assert_eq!((u.uid(), u.gid()), (1000, 2000));
        assert_eq!(u.additional_gids().as_deref(), Some(&[2000, 3000][..]));
        assert_eq!(process_user(&User::default())?.additional_gids(), &None);
        for user in [
            User {
                uid: super::super::MAX_ID + 1,
                ..Default::default()
            },
            User {
                gid: u32::MAX,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(process_user(&user), Err(Error::Internal(_))),
                "{user:?}"
            );
        }
        Ok(())
    }
}
