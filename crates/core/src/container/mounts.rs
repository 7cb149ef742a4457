//! The mounts of a container's spec, containerd's way (`WithMounts`):
//! the default mounts, then the pod's files and `/dev/shm` and the
//! request's bind mounts sorted by depth, a request mount replacing any
//! other at the same container path. Two request mounts at one path are
//! both made, in the request's order: the later one is what the container
//! sees.

use oci_spec::runtime::Mount as OciMount;

use super::spec::{ContainerSpecInput, HostPropagation};
use super::validate::clean;
use super::{Mount, Propagation};
use crate::sandbox::NamespaceMode;
use crate::sandbox::spec::{HOST_DEV_SHM, mount};
use crate::{Error, Result};

/// The mounts and the `linux.rootfsPropagation` they need.
pub(crate) struct Mounts {
    pub mounts: Vec<OciMount>,
    pub rootfs_propagation: Option<String>,
}

/// A bind mount to add: from the request, or one of the pod's files.
struct Bind {
    container_path: String,
    source: String,
    options: Vec<&'static str>,
}

/// The image's `VOLUMES` that get a volume of their own, as containerd's
/// image volumes do: absolute paths (cleaned; `/` and anything with a `..`
/// or control character skipped) that no request mount covers, sorted.
/// The caller gives each a fresh host directory holding a copy of what the
/// image has there, and passes them back as [`ContainerSpecInput::image_volumes`].
pub fn image_volume_paths(
    volumes: &std::collections::BTreeSet<String>,
    req: &super::ContainerRequest,
) -> Vec<String> {
    let covered: Vec<String> = req
        .mounts
        .iter()
        .map(|m| clean(&m.container_path))
        .collect();
    let mut out: Vec<String> = volumes
        .iter()
        .filter(|v| {
            v.starts_with('/')
                && !v.chars().any(char::is_control)
                && !v.split('/').any(|c| c == "..")
        })
        .map(|v| clean(v))
        .filter(|v| v != "/" && !covered.contains(v))
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn container_mounts(input: &ContainerSpecInput<'_>) -> Result<Mounts> {
    let req = input.request;
    let sc = &req.linux.security;
    let mut rootfs_propagation: Option<&str> = None;

    let mut binds: Vec<Bind> = Vec::new();
    for (i, m) in req.mounts.iter().enumerate() {
        let (source, propagation) = request_mount(input, i, m)?;
        match m.propagation {
            Propagation::Private => {}
            Propagation::HostToContainer => {
                if rootfs_propagation != Some("rshared") {
                    rootfs_propagation = Some("rslave");
                }
            }
            Propagation::Bidirectional => rootfs_propagation = Some("rshared"),
        }
        // Cleaned (a relative target is taken from `/`, as runc does), so
        // that the dedupe below and runc see one spelling.
        binds.push(Bind {
            container_path: clean(&m.container_path),
            source,
            options: vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }],
        });
    }

    // Image volumes: read-write, private, whatever readonly_rootfs says.
    for (path, source) in &input.image_volumes {
        let path = clean(path);
        if !source.starts_with('/') {
            return Err(Error::Internal(format!(
                "the volume for {path} is not an absolute path: {source:?}"
            )));
        }
        if !binds.iter().any(|b| clean(&b.container_path) == path) {
            binds.push(Bind {
                container_path: path,
                source: source.clone(),
                options: vec!["rbind", "rprivate", "rw"],
            });
        }
    }

    // The pod's files, unless the request mounts something there. They
    // follow readonly_rootfs (containerd's choice): a read-only container
    // cannot rewrite its pod's /etc/hosts either.
    let files = &input.files;
    let pod_ro = if sc.readonly_rootfs { "ro" } else { "rw" };
    let shm = match (&files.shm, input.sandbox.linux.namespaces.ipc) {
        (None, NamespaceMode::Node) => HOST_DEV_SHM.to_string(),
        (Some(path), mode) if mode != NamespaceMode::Node && path.starts_with('/') => path.clone(),
        (Some(_), NamespaceMode::Node) => {
            return Err(Error::Internal(
                "a pod /dev/shm was given for a host-IPC pod".into(),
            ));
        }
        _ => {
            return Err(Error::Internal(
                "a pod with its own IPC namespace needs an absolute /dev/shm path".into(),
            ));
        }
    };
    let mut pod_files: Vec<(&str, String, Vec<&'static str>)> = Vec::new();
    if let Some(hostname) = &files.hostname {
        pod_files.push((
            "/etc/hostname",
            hostname.clone(),
            vec!["rbind", "rprivate", pod_ro],
        ));
    }
    pod_files.push((
        "/etc/hosts",
        files.hosts.clone(),
        vec!["rbind", "rprivate", pod_ro],
    ));
    pod_files.push((
        "/etc/resolv.conf",
        files.resolv_conf.clone(),
        vec!["rbind", "rprivate", pod_ro],
    ));
    pod_files.push((
        "/dev/shm",
        shm,
        vec!["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"],
    ));
    for (path, source, options) in pod_files {
        if !source.starts_with('/') {
            return Err(Error::Internal(format!(
                "the pod's file for {path} is not an absolute path: {source:?}"
            )));
        }
        if !binds.iter().any(|b| clean(&b.container_path) == path) {
            binds.push(Bind {
                container_path: path.to_string(),
                source,
                options,
            });
        }
    }
    // Parents before children, so that a mount does not hide a deeper one
    // (stable: equal depths keep the request's order).
    binds.sort_by_key(|b| clean(&b.container_path).matches('/').count());

    let supplied: Vec<String> = binds.iter().map(|b| clean(&b.container_path)).collect();
    let dev_supplied = supplied.iter().any(|p| p == "/dev");
    let mut mounts = Vec::new();
    for m in default_mounts(sc.privileged)? {
        let dst = clean(&m.destination().to_string_lossy());
        if supplied.contains(&dst) || (dev_supplied && dst.starts_with("/dev/")) {
            continue;
        }
        mounts.push(m);
    }
    for b in binds {
        mounts.push(mount(&b.container_path, "bind", &b.source, &b.options)?);
    }
    Ok(Mounts {
        mounts,
        rootfs_propagation: rootfs_propagation.map(str::to_string),
    })
}

/// The source of request mount `i` (its host path with symlinks resolved by
/// the caller) and its propagation option, checked against the host mount
/// holding the source.
fn request_mount(
    input: &ContainerSpecInput<'_>,
    i: usize,
    m: &Mount,
) -> Result<(String, &'static str)> {
    let facts = input.host_paths.get(&m.host_path);
    let source = facts
        .and_then(|f| f.resolved.clone())
        .unwrap_or_else(|| m.host_path.clone());
    if !source.starts_with('/') {
        return Err(Error::Internal(format!(
            "host path {:?} resolved to the relative path {source:?}",
            m.host_path
        )));
    }
    let propagation = || {
        facts.map(|f| f.propagation).ok_or_else(|| {
            Error::Internal(format!(
                "no propagation facts for host path {:?}",
                m.host_path
            ))
        })
    };
    let field = format!("config.mounts[{i}].propagation");
    Ok(match m.propagation {
        Propagation::Private => (source, "rprivate"),
        // containerd refuses both too (ensureSharedOrSlave, ensureShared):
        // the propagation asked for cannot happen from a private mount.
        Propagation::HostToContainer => match propagation()? {
            HostPropagation::Shared | HostPropagation::Slave => (source, "rslave"),
            HostPropagation::Private => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "HostToContainer needs {:?} to be on a shared or slave mount of the \
                         host, and it is on a private one",
                        m.host_path
                    ),
                ));
            }
        },
        Propagation::Bidirectional => match propagation()? {
            HostPropagation::Shared => (source, "rshared"),
            other => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "Bidirectional needs {:?} to be on a shared mount of the host, and it \
                         is on a {} one",
                        m.host_path,
                        if other == HostPropagation::Slave {
                            "slave"
                        } else {
                            "private"
                        }
                    ),
                ));
            }
        },
    })
}

/// containerd's default mounts without `/run`; `/sys` and the cgroup view
/// are writable only for privileged containers.
fn default_mounts(privileged: bool) -> Result<Vec<OciMount>> {
    let shm = mount(
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    )?;
    crate::sandbox::spec::default_mounts(shm, if privileged { "rw" } else { "ro" })
}
