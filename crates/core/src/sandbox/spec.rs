//! The OCI runtime spec of a sandbox's pause container.
//!
//! Modelled on containerd 1.6's CRI plugin (`sandboxContainerSpec` on top of
//! `populateDefaultUnixSpec`), built field by field: oci-spec's `Default`
//! impls (and therefore its builders, which start from them) carry youki's
//! defaults (hostname "youki", rlimits, ambient capabilities...), so every
//! field of `Spec`, `Process` and `Linux` is set here explicitly. The golden
//! tests (`golden.rs`) pin the result.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources,
    LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, Process, RootBuilder, Spec, User,
    UserBuilder,
};

use super::annotations as ann;
use super::id::is_valid_id;
use super::mode::PinPaths;
use super::validate::{to_id, validate};
use super::{LinuxSandbox, NamespaceMode, PodSandboxRequest, SecurityProfile, sysctl};
use crate::cgroup::CgroupDriver;
use crate::container::seccomp::{self as container_seccomp, Conditions, Platform};
use crate::{Error, Result};

/// The OCI runtime spec version written (containerd 1.6's).
pub const OCI_VERSION: &str = "1.0.2-dev";
/// The oom_score_adj kubelet and containerd give the pause process.
pub const DEFAULT_SANDBOX_OOM_SCORE_ADJ: i32 = -998;
/// CPU shares of the pause container (containerd's
/// `DefaultSandboxCPUshares`), whatever the pod's resources say.
pub const DEFAULT_SANDBOX_CPU_SHARES: u64 = 2;
/// Root filesystem of the bundle, relative to it.
pub const ROOTFS_PATH: &str = "rootfs";
/// cgroupfs parent of sandboxes whose pod names none (containerd uses
/// `/<containerd namespace>`).
pub const DEFAULT_CGROUPFS_PARENT: &str = "/crius";
/// systemd slice of sandboxes whose pod names none.
pub const DEFAULT_SYSTEMD_SLICE: &str = "system.slice";
/// Prefix of the systemd scopes of crius containers (`crius-<id>.scope`).
pub const SYSTEMD_SCOPE_PREFIX: &str = "crius";
/// The node's /dev/shm, shared with host-IPC pods.
pub const HOST_DEV_SHM: &str = "/dev/shm";

/// containerd's default capabilities (Docker's set).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from unprivileged containers: containerd 1.6's list plus
/// `/sys/devices/virtual/powercap` (energy counters, CVE-2020-8694), which
/// Docker and later containerd mask too.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
];

/// Paths read-only in unprivileged containers (containerd's list).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the pause image's config says about its process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// Absolute, or empty for `/`.
    pub working_dir: String,
    /// `uid[:gid]` (numeric only), or empty for root.
    pub user: String,
}

/// Everything [`sandbox_spec`] needs; the caller resolves what takes I/O.
#[derive(Debug, Clone)]
pub struct SandboxSpecInput<'a> {
    /// The sandbox ID (64 hex digits, see [`super::id`]).
    pub id: String,
    pub request: &'a PodSandboxRequest,
    pub image_config: ImageProcess,
    /// The pod's network namespace (bind-mounted file); `None` exactly when
    /// the pod uses the host's network.
    pub netns_path: Option<String>,
    /// The pod's /dev/shm (a tmpfs on the host); `None` exactly when the pod
    /// uses the host's IPC namespace (the host's /dev/shm is used then).
    pub pod_shm: Option<String>,
    /// The pod's hostname, or the node's with host networking; only set in
    /// the spec when the pod has its own UTS namespace (not with host
    /// networking: runc refuses a hostname without one).
    pub hostname: String,
    pub cgroup_driver: CgroupDriver,
    /// The daemon's own oom_score_adj: the pause process cannot get a lower
    /// one without CAP_SYS_RESOURCE.
    pub daemon_oom_score_adj: i32,
    /// Usually [`DEFAULT_SANDBOX_OOM_SCORE_ADJ`].
    pub sandbox_oom_score_adj: i32,
    /// Pod annotations allowed to pass through to the spec (the CRI
    /// annotations below win over them; empty keys are dropped).
    pub annotations: BTreeMap<String, String>,
    /// The contents of the `Localhost` seccomp profile the request names.
    pub localhost_seccomp: Option<String>,
    /// `(major, minor)` of the running kernel, for the profile's `minKernel`.
    pub kernel_version: Option<(u32, u32)>,
    /// A pinned pod (no pause task): its record's spec has no process and
    /// no root, only what the pod is (namespaces by path, hostname,
    /// sysctls, annotations, resources), for verbose status and for VM
    /// runtimes' tooling.
    pub pinned: Option<PinPaths>,
}

/// The OCI spec of the pause container of `input.request` (which is
/// validated again here).
pub fn sandbox_spec(input: &SandboxSpecInput<'_>) -> Result<Spec> {
    validate(input.request)?;
    if !is_valid_id(&input.id) {
        return Err(Error::Internal(format!(
            "sandbox id {:?} is not 64 hex digits",
            input.id
        )));
    }
    let root = RootBuilder::default()
        .path(ROOTFS_PATH)
        .readonly(true)
        .build()
        .map_err(oci)?;
    let (root, process) = match input.pinned {
        None => (Some(root), Some(process(input)?)),
        Some(_) => (None, None),
    };
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string())
        .set_root(root)
        .set_mounts(Some(mounts(input)?))
        .set_process(process)
        .set_hostname(spec_hostname(input)?)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations(input)))
        .set_linux(Some(linux(input)?))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None);
    Ok(spec)
}

/// The spec's `cgroupsPath` for container `id` under the pod's
/// `cgroup_parent`, in the form `driver` needs:
/// - cgroupfs: `<parent>/<id>` (containerd's form); the parent must be
///   absolute, [`DEFAULT_CGROUPFS_PARENT`] when empty;
/// - systemd: `<slice>:crius:<id>` where `<slice>` is the last component of
///   the parent (containerd's form), [`DEFAULT_SYSTEMD_SLICE`] when empty.
pub fn cgroups_path(driver: CgroupDriver, cgroup_parent: &str, id: &str) -> Result<String> {
    const FIELD: &str = "config.linux.cgroup_parent";
    match driver {
        CgroupDriver::Cgroupfs => {
            let parent = if cgroup_parent.is_empty() {
                DEFAULT_CGROUPFS_PARENT
            } else {
                cgroup_parent
            };
            // impossible in effect: runc's cgroupfs manager would nest a
            // relative path under its own cgroup, outside kubelet's
            // hierarchy (the pod's limits silently lost).
            if !parent.starts_with('/') {
                return Err(Error::invalid(
                    FIELD,
                    format!(
                        "{parent:?} is not an absolute cgroup path; crius uses the cgroupfs \
                         driver (is kubelet configured for systemd?)"
                    ),
                ));
            }
            Ok(format!("{}/{id}", parent.trim_end_matches('/')))
        }
        CgroupDriver::Systemd => {
            let slice = match cgroup_parent.trim_end_matches('/').rsplit('/').next() {
                None | Some("") => DEFAULT_SYSTEMD_SLICE,
                Some(last) => last,
            };
            // impossible: runc's systemd manager refuses anything but
            // `<slice>:<prefix>:<name>`.
            if slice.len() <= ".slice".len() || !slice.ends_with(".slice") {
                return Err(Error::invalid(
                    FIELD,
                    format!(
                        "{cgroup_parent:?} does not name a systemd slice; crius uses the \
                         systemd driver (is kubelet configured for cgroupfs?)"
                    ),
                ));
            }
            Ok(format!("{slice}:{SYSTEMD_SCOPE_PREFIX}:{id}"))
        }
    }
}

fn oci(e: OciSpecError) -> Error {
    Error::Internal(format!("building the sandbox spec: {e}"))
}

fn host_network(req: &PodSandboxRequest) -> bool {
    req.linux.namespaces.network == NamespaceMode::Node
}

fn spec_hostname(input: &SandboxSpecInput<'_>) -> Result<Option<String>> {
    if host_network(input.request) || input.hostname.is_empty() {
        return Ok(None);
    }
    // The request's hostname passed validate; this is the one the caller
    // chose (the node's when the request gave none): the same rules apply
    // (impossible beyond 64 bytes, security for control characters).
    super::validate::check_hostname(&input.hostname)
        .map_err(|r| Error::invalid("config.hostname", format!("{:?}: {r}", input.hostname)))?;
    Ok(Some(input.hostname.clone()))
}

fn process(input: &SandboxSpecInput<'_>) -> Result<Process> {
    let image = &input.image_config;
    let args: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    // containerd refuses it too ("invalid empty entrypoint and cmd in image
    // config").
    if args.is_empty() {
        return Err(Error::FailedPrecondition(
            "the sandbox image has neither entrypoint nor cmd".into(),
        ));
    }
    let cwd = match image.working_dir.as_str() {
        "" => "/",
        dir if dir.starts_with('/') => dir,
        // impossible: runc refuses a relative cwd.
        dir => {
            return Err(Error::FailedPrecondition(format!(
                "the sandbox image's working directory {dir:?} is not absolute"
            )));
        }
    };
    let oom_score_adj = input
        .sandbox_oom_score_adj
        .max(input.daemon_oom_score_adj)
        .clamp(-1000, 1000);
    let mut process = Process::default();
    process
        .set_terminal(Some(false))
        .set_console_size(None)
        .set_user(process_user(&input.request.linux, &image.user)?)
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(image.env.clone()))
        .set_cwd(PathBuf::from(cwd))
        .set_capabilities(Some(capabilities()))
        .set_rlimits(None)
        .set_no_new_privileges(Some(true))
        .set_apparmor_profile(None)
        .set_oom_score_adj(Some(oom_score_adj))
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    Ok(process)
}

/// `run_as_user`/`run_as_group` when given (gid 0 without a group), else the
/// image's numeric `USER` (the pause image says 65535:65535), else root.
fn process_user(linux: &LinuxSandbox, image_user: &str) -> Result<User> {
    // validate_ids refused these already (security: a value out of range
    // would be truncated on its way to runc); the conversion must not panic.
    let id = |v: i64, field: &str| {
        to_id(v).ok_or_else(|| Error::invalid(field, format!("{v} is not a valid id")))
    };
    let (uid, gid) = match linux.run_as_user {
        Some(uid) => (
            id(uid, "config.linux.security_context.run_as_user")?,
            match linux.run_as_group {
                Some(gid) => id(gid, "config.linux.security_context.run_as_group")?,
                None => 0,
            },
        ),
        None => numeric_user(image_user)?,
    };
    let mut groups = Vec::with_capacity(linux.supplemental_groups.len());
    for gid in &linux.supplemental_groups {
        groups.push(id(
            *gid,
            "config.linux.security_context.supplemental_groups",
        )?);
    }
    let mut builder = UserBuilder::default().uid(uid).gid(gid);
    if !groups.is_empty() {
        builder = builder.additional_gids(groups);
    }
    builder.build().map_err(oci)
}

/// `uid[:gid]` in numbers; names would need the image's /etc/passwd.
/// security: crius does not read the pause image's /etc/passwd yet, and
/// running the pause process as root instead of the named user would give
/// it more than the image asked for (containerd resolves the name).
fn numeric_user(user: &str) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    match (uid.parse::<u32>(), gid.parse::<u32>()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(Error::FailedPrecondition(format!(
            "the sandbox image's user {user:?} is not numeric (uid[:gid]); \
             crius does not resolve user names for the sandbox"
        ))),
    }
}

/// [`DEFAULT_CAPABILITIES`] in the bounding, effective and permitted sets;
/// none inheritable or ambient.
fn capabilities() -> LinuxCapabilities {
    let set: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    caps
}

pub(crate) fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(oci)
}

/// containerd's default mounts without `/run`, `/dev/shm` from the pod (or
/// the host), and a read-only cgroup view.
fn mounts(input: &SandboxSpecInput<'_>) -> Result<Vec<Mount>> {
    let shm = mount(
        "/dev/shm",
        "bind",
        shm_source(input)?,
        &["rbind", "nosuid", "nodev", "noexec", "rw"],
    )?;
    default_mounts(shm, "ro")
}

/// The mounts every sandbox and container gets, in this order: `/proc`,
/// `/dev`, `/dev/pts`, the given `/dev/shm`, `/dev/mqueue`, `/sys` and the
/// cgroup view (both `sys_mode`: "ro", or "rw" for privileged containers).
pub(crate) fn default_mounts(shm: Mount, sys_mode: &str) -> Result<Vec<Mount>> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        shm,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
    ])
}

fn shm_source<'a>(input: &'a SandboxSpecInput<'_>) -> Result<&'a str> {
    let host_ipc = input.request.linux.namespaces.ipc == NamespaceMode::Node;
    match (host_ipc, input.pod_shm.as_deref()) {
        (true, None) => Ok(HOST_DEV_SHM),
        (false, Some(path)) if path.starts_with('/') => Ok(path),
        (true, Some(_)) => Err(Error::Internal(
            "a pod /dev/shm was given for a host-IPC pod".into(),
        )),
        (false, _) => Err(Error::Internal(
            "a pod with its own IPC namespace needs an absolute /dev/shm path".into(),
        )),
    }
}

fn linux(input: &SandboxSpecInput<'_>) -> Result<Linux> {
    let req = &input.request.linux;
    let sysctls = sysctl::validate(&req.sysctls, &req.namespaces)?;
    let cgroups_path = cgroups_path(input.cgroup_driver, &req.cgroup_parent, &input.id)?;
    let (masked, readonly) = if req.privileged {
        (None, None)
    } else {
        (Some(strings(&MASKED_PATHS)), Some(strings(&READONLY_PATHS)))
    };
    let maps = req.userns_maps();
    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(maps.map(|m| vec![crate::userns::oci(&m.uids)]))
        .set_gid_mappings(maps.map(|m| vec![crate::userns::oci(&m.gids)]))
        .set_sysctl((!sysctls.is_empty()).then(|| sysctls.into_iter().collect()))
        .set_resources(Some(resources()?))
        .set_cgroups_path(Some(PathBuf::from(cgroups_path)))
        .set_namespaces(Some(namespaces(input)?))
        .set_devices(None)
        .set_seccomp(seccomp(input)?)
        .set_rootfs_propagation(None)
        .set_masked_paths(masked)
        .set_readonly_paths(readonly)
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);
    Ok(linux)
}

/// The pause process' seccomp filter, as containerd applies it: none for a
/// privileged pod, without a profile or with `Unconfined`; crius' default
/// profile for `RuntimeDefault` (what kubelet sends for every pod); the
/// file's profile for `Localhost`. Evaluated for the pause process'
/// capabilities ([`DEFAULT_CAPABILITIES`]).
fn seccomp(input: &SandboxSpecInput<'_>) -> Result<Option<LinuxSeccomp>> {
    let linux = &input.request.linux;
    if linux.privileged {
        return Ok(None);
    }
    let conditions = Conditions {
        capabilities: &DEFAULT_CAPABILITIES,
        kernel_version: input.kernel_version,
        platform: Platform::current(),
    };
    match &linux.seccomp {
        None | Some(SecurityProfile::Unconfined) => Ok(None),
        Some(SecurityProfile::RuntimeDefault) => {
            container_seccomp::runtime_default(&conditions).map(Some)
        }
        Some(SecurityProfile::Localhost(path)) => {
            let json = input.localhost_seccomp.as_deref().ok_or_else(|| {
                Error::Internal(format!("the seccomp profile {path:?} was not loaded"))
            })?;
            container_seccomp::localhost(json, &conditions).map(Some)
        }
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// containerd's order (pid, ipc, uts, mount, network), without the host's.
fn namespaces(input: &SandboxSpecInput<'_>) -> Result<Vec<LinuxNamespace>> {
    let ns = &input.request.linux.namespaces;
    let host_net = host_network(input.request);
    let new = |typ: LinuxNamespaceType| LinuxNamespaceBuilder::default().typ(typ).build();
    let mut out = Vec::with_capacity(5);
    // A pinned pod's namespaces are its pins.
    let pinned = |typ: LinuxNamespaceType, pin: Option<&String>| -> Result<LinuxNamespace> {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(path) = pin {
            b = b.path(path);
        }
        b.build().map_err(oci)
    };
    let pins = input.pinned.clone().unwrap_or_default();
    if ns.pid != NamespaceMode::Node && input.pinned.is_none() {
        out.push(new(LinuxNamespaceType::Pid).map_err(oci)?);
    }
    if ns.ipc != NamespaceMode::Node {
        out.push(pinned(LinuxNamespaceType::Ipc, pins.ipc.as_ref())?);
    }
    if !host_net {
        out.push(pinned(LinuxNamespaceType::Uts, pins.uts.as_ref())?);
    }
    out.push(new(LinuxNamespaceType::Mount).map_err(oci)?);
    let userns = input.request.linux.userns_maps().is_some();
    if userns {
        out.push(new(LinuxNamespaceType::User).map_err(oci)?);
    }
    match (host_net, input.netns_path.as_deref()) {
        (true, None) => {}
        // In a user namespace the pause makes the pod's network namespace,
        // so that the namespace belongs to it (else runc cannot mount
        // sysfs); it is pinned, then set up, before the pause starts.
        (false, None) if userns => out.push(new(LinuxNamespaceType::Network).map_err(oci)?),
        (false, Some(path)) if path.starts_with('/') => out.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()
                .map_err(oci)?,
        ),
        (true, Some(_)) => {
            return Err(Error::Internal(
                "a network namespace was given for a host-network pod".into(),
            ));
        }
        (false, _) => {
            return Err(Error::Internal(
                "a pod network needs an absolute network namespace path".into(),
            ));
        }
    }
    Ok(out)
}

/// Deny all devices (runc adds its defaults after this rule) and
/// [`DEFAULT_SANDBOX_CPU_SHARES`], as containerd does: the pod's own
/// `resources` only go into annotations (its containers carry the limits;
/// applied to the pause container, a `cpu_quota` of 1 would make runc
/// fail the pod).
fn resources() -> Result<LinuxResources> {
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(oci)?;
    let cpu = LinuxCpuBuilder::default()
        .shares(DEFAULT_SANDBOX_CPU_SHARES)
        .build()
        .map_err(oci)?;
    LinuxResourcesBuilder::default()
        .devices(vec![deny_all])
        .cpu(cpu)
        .build()
        .map_err(oci)
}

/// The pass-through annotations, then the CRI contract's (which win).
fn annotations(input: &SandboxSpecInput<'_>) -> HashMap<String, String> {
    let req = input.request;
    let mut out: HashMap<String, String> = input
        .annotations
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut set = |k: &str, v: String| {
        out.insert(k.to_string(), v);
    };
    set(ann::CONTAINER_TYPE, ann::CONTAINER_TYPE_SANDBOX.to_string());
    set(ann::SANDBOX_ID, input.id.clone());
    set(ann::SANDBOX_NAME, req.name.clone());
    set(ann::SANDBOX_NAMESPACE, req.namespace.clone());
    set(ann::SANDBOX_UID, req.uid.clone());
    set(ann::SANDBOX_LOG_DIRECTORY, req.log_directory.clone());
    if let Some(r) = &req.linux.resources {
        for (k, v) in ann::resource_annotations(r) {
            set(k, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PodSandboxRequest {
        PodSandboxRequest {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            hostname: "web-0".into(),
            ..Default::default()
        }
    }

    fn input(req: &PodSandboxRequest) -> SandboxSpecInput<'_> {
        SandboxSpecInput {
            id: "a".repeat(64),
            request: req,
            image_config: ImageProcess {
                entrypoint: vec!["/pause".into()],
                ..Default::default()
            },
            netns_path: Some("/var/run/netns/cni-1".into()),
            pod_shm: Some("/run/crius/sandboxes/a/shm".into()),
            hostname: "web-0".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            daemon_oom_score_adj: 0,
            sandbox_oom_score_adj: DEFAULT_SANDBOX_OOM_SCORE_ADJ,
            annotations: BTreeMap::new(),
            localhost_seccomp: None,
            kernel_version: None,
            pinned: None,
        }
    }

    #[test]
    fn a_pinned_pods_spec_has_no_process_and_names_its_pins() -> Result<()> {
        let req = request();
        let mut i = input(&req);
        i.image_config = ImageProcess::default();
        i.pinned = Some(PinPaths {
            ipc: Some("/run/crius/pins/a.ipc".into()),
            uts: Some("/run/crius/pins/a.uts".into()),
        });
        let spec = sandbox_spec(&i)?;
        assert!(spec.process().is_none() && spec.root().is_none());
        let ns: Vec<(String, Option<String>)> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .map(|n| {
                let path = n.path().as_ref().map(|p| p.display().to_string());
                (format!("{:?}", n.typ()), path)
            })
            .collect();
        let pin = |t: &str, p: Option<&str>| (t.to_string(), p.map(str::to_string));
        assert_eq!(
            ns,
            [
                pin("Ipc", Some("/run/crius/pins/a.ipc")),
                pin("Uts", Some("/run/crius/pins/a.uts")),
                pin("Mount", None),
                pin("Network", Some("/var/run/netns/cni-1")),
            ]
        );
        let annotations = spec.annotations().clone().unwrap_or_default();
        assert_eq!(
            annotations.get(ann::CONTAINER_TYPE).map(String::as_str),
            Some(ann::CONTAINER_TYPE_SANDBOX)
        );
        Ok(())
    }

    fn oom(daemon: i32, sandbox: i32) -> Result<Option<i32>> {
        let req = request();
        let mut i = input(&req);
        i.daemon_oom_score_adj = daemon;
        i.sandbox_oom_score_adj = sandbox;
        let spec = sandbox_spec(&i)?;
        Ok(spec.process().as_ref().and_then(|p| p.oom_score_adj()))
    }

    #[test]
    fn oom_score_adj_is_clamped_to_the_daemons() -> Result<()> {
        assert_eq!(oom(0, -998)?, Some(0));
        assert_eq!(oom(-500, -998)?, Some(-500));
        assert_eq!(oom(-999, -998)?, Some(-998));
        assert_eq!(oom(-1000, -998)?, Some(-998));
        assert_eq!(oom(-1000, -2000)?, Some(-1000));
        assert_eq!(oom(0, 5000)?, Some(1000));
        Ok(())
    }

    #[test]
    fn cgroups_paths() -> Result<()> {
        let id = "abc";
        let fs = |p| cgroups_path(CgroupDriver::Cgroupfs, p, id);
        let sd = |p| cgroups_path(CgroupDriver::Systemd, p, id);
        assert_eq!(fs("")?, "/crius/abc");
        assert_eq!(
            fs("/kubepods/burstable/pod1")?,
            "/kubepods/burstable/pod1/abc"
        );
        assert_eq!(fs("/kubepods/")?, "/kubepods/abc");
        assert_eq!(fs("/")?, "/abc");
        assert!(fs("kubepods-pod1.slice").is_err());
        assert_eq!(sd("")?, "system.slice:crius:abc");
        assert_eq!(
            sd("kubepods-besteffort-pod1.slice")?,
            "kubepods-besteffort-pod1.slice:crius:abc"
        );
        assert_eq!(
            sd("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/")?,
            "kubepods-besteffort-pod1.slice:crius:abc"
        );
        assert!(sd("/kubepods/burstable").is_err());
        assert!(sd(".slice").is_err());
        Ok(())
    }

    #[test]
    fn user_comes_from_the_request_then_the_image() -> Result<()> {
        let linux = LinuxSandbox::default();
        let user = |l: &LinuxSandbox, image: &str| -> Result<(u32, u32)> {
            let u = process_user(l, image)?;
            Ok((u.uid(), u.gid()))
        };
        assert_eq!(user(&linux, "")?, (0, 0));
        assert_eq!(user(&linux, "65535:65535")?, (65535, 65535));
        assert_eq!(user(&linux, "1000")?, (1000, 0));
        assert!(matches!(
            user(&linux, "nobody"),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(user(&linux, "1000:staff").is_err());
        let mut linux = LinuxSandbox {
            run_as_user: Some(1000),
            ..Default::default()
        };
        assert_eq!(user(&linux, "65535:65535")?, (1000, 0));
        linux.run_as_group = Some(2000);
        assert_eq!(user(&linux, "nobody")?, (1000, 2000));
        Ok(())
    }

    #[test]
    fn the_pause_image_must_say_what_to_run() {
        let req = request();
        let mut i = input(&req);
        i.image_config.entrypoint.clear();
        assert!(matches!(
            sandbox_spec(&i),
            Err(Error::FailedPrecondition(_))
        ));
        i.image_config.cmd = vec!["/pause".into()];
        assert!(sandbox_spec(&i).is_ok());
        i.image_config.working_dir = "relative".into();
        assert!(matches!(
            sandbox_spec(&i),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[test]
    fn hostnames_the_kernel_takes() -> Result<()> {
        let mut req = request();
        req.hostname = "crictl_host".into();
        let mut i = input(&req);
        i.hostname = "crictl_host".into();
        assert_eq!(sandbox_spec(&i)?.hostname().as_deref(), Some("crictl_host"));
        i.hostname = "h".repeat(64);
        assert!(sandbox_spec(&i).is_ok());
        i.hostname = "h".repeat(65);
        assert!(matches!(
            sandbox_spec(&i),
            Err(Error::InvalidArgument { field, .. }) if field == "config.hostname"
        ));
        i.hostname = "node\nevil".into();
        assert!(sandbox_spec(&i).is_err());
        Ok(())
    }

    #[test]
    fn inputs_must_agree_with_the_namespaces() {
        let req = request();
        let mut i = input(&req);
        i.netns_path = None;
        assert!(matches!(sandbox_spec(&i), Err(Error::Internal(_))));
        let mut i = input(&req);
        i.pod_shm = None;
        assert!(matches!(sandbox_spec(&i), Err(Error::Internal(_))));
        let mut i = input(&req);
        i.id = "not-an-id".into();
        assert!(matches!(sandbox_spec(&i), Err(Error::Internal(_))));

        let mut host = request();
        host.linux.namespaces.network = NamespaceMode::Node;
        host.linux.namespaces.ipc = NamespaceMode::Node;
        let i = input(&host);
        assert!(matches!(sandbox_spec(&i), Err(Error::Internal(_))));
    }

    #[test]
    fn cri_annotations_win_over_pass_through_ones() -> Result<()> {
        let req = request();
        let mut i = input(&req);
        i.annotations = BTreeMap::from([
            (ann::SANDBOX_NAME.to_string(), "spoofed".to_string()),
            ("example.com/x".to_string(), "y".to_string()),
            (String::new(), "dropped".to_string()),
        ]);
        let spec = sandbox_spec(&i)?;
        let a = spec.annotations().clone().unwrap_or_default();
        assert_eq!(a[ann::SANDBOX_NAME], "web-0");
        assert_eq!(a["example.com/x"], "y");
        assert!(!a.contains_key(""));
        assert!(!a.contains_key(ann::SANDBOX_MEMORY));
        Ok(())
    }

    #[test]
    fn seccomp_of_the_pause_process() -> Result<()> {
        let filter = |profile: Option<SecurityProfile>, json: Option<&str>, privileged: bool| {
            let mut req = request();
            req.linux.seccomp = profile;
            req.linux.privileged = privileged;
            let mut i = input(&req);
            i.localhost_seccomp = json.map(str::to_string);
            sandbox_spec(&i).map(|s| s.linux().as_ref().and_then(|l| l.seccomp().clone()))
        };
        assert_eq!(filter(None, None, false)?, None);
        assert_eq!(
            filter(Some(SecurityProfile::Unconfined), None, false)?,
            None
        );
        // What kubelet sends for every pod (`seccomp: {}`).
        let default = filter(Some(SecurityProfile::RuntimeDefault), None, false)?
            .ok_or_else(|| Error::Internal("no filter".into()))?;
        assert!(container_seccomp::allows(&default, "read"));
        assert!(!container_seccomp::allows(&default, "sethostname"));
        assert_eq!(
            filter(Some(SecurityProfile::RuntimeDefault), None, true)?,
            None
        );
        let local = SecurityProfile::Localhost("/p.json".into());
        let json = r#"{"defaultAction": "SCMP_ACT_LOG"}"#;
        let custom = filter(Some(local.clone()), Some(json), false)?
            .ok_or_else(|| Error::Internal("no filter".into()))?;
        assert_eq!(
            custom.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActLog
        );
        assert!(matches!(
            filter(Some(local), Some("{"), false),
            Err(Error::InvalidArgument { field, .. })
                if field == "config.linux.security_context.seccomp.localhost_ref"
        ));
        Ok(())
    }

    #[test]
    fn privileged_sandboxes_have_nothing_masked() -> Result<()> {
        let mut req = request();
        req.linux.privileged = true;
        let spec = sandbox_spec(&input(&req))?;
        let linux = spec.linux().clone().unwrap_or_default();
        assert_eq!(linux.masked_paths(), &None);
        assert_eq!(linux.readonly_paths(), &None);
        Ok(())
    }

    #[test]
    fn invalid_requests_are_refused() {
        let mut req = request();
        req.linux
            .sysctls
            .insert("kernel.core_pattern".into(), "|/evil".into());
        assert!(matches!(
            sandbox_spec(&input(&req)),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
