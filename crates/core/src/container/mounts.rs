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
    let (mut binds, rootfs_propagation) = request_binds(input)?;
    add_image_volumes(&mut binds, input)?;
    add_pod_files(&mut binds, input)?;
    // Parents before children, so that a mount does not hide a deeper one
    // (stable: equal depths keep the request's order).
    binds.sort_by_key(|b| clean(&b.container_path).matches('/').count());
    let mut mounts = uncovered_default_mounts(&binds, input.request.linux.security.privileged)?;
    for b in binds {
        mounts.push(mount(&b.container_path, "bind", &b.source, &b.options)?);
    }
    Ok(Mounts {
        mounts,
        rootfs_propagation: rootfs_propagation.map(str::to_string),
    })
}

/// The request's mounts, in its order, and the `rootfsPropagation` their
/// propagations need.
fn request_binds(input: &ContainerSpecInput<'_>) -> Result<(Vec<Bind>, Option<&'static str>)> {
    let mut rootfs_propagation = None;
    let mut binds = Vec::new();
    for (i, m) in input.request.mounts.iter().enumerate() {
        let (source, propagation) = request_mount(input, i, m)?;
        rootfs_propagation = rootfs_propagation_with(rootfs_propagation, m.propagation);
        // Cleaned (a relative target is taken from `/`, as runc does), so
        // that the dedupe below and runc see one spelling.
        binds.push(Bind {
            container_path: clean(&m.container_path),
            source,
            options: bind_options(propagation, m),
        });
    }
    Ok((binds, rootfs_propagation))
}

/// A request mount's options: `rro` (validated read-only and private)
/// makes the mounts below it read-only too; plain `ro` only the top one.
fn bind_options(propagation: &'static str, m: &super::Mount) -> Vec<&'static str> {
    let mut options = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
    if m.recursive_read_only {
        options.push("rro");
    }
    options
}

/// The root filesystem's propagation once a mount with `propagation` is
/// added: `rshared` for a bidirectional mount, else at least `rslave` for a
/// host-to-container one.
fn rootfs_propagation_with(
    current: Option<&'static str>,
    propagation: Propagation,
) -> Option<&'static str> {
    match propagation {
        Propagation::Private => current,
        Propagation::HostToContainer if current == Some("rshared") => current,
        Propagation::HostToContainer => Some("rslave"),
        Propagation::Bidirectional => Some("rshared"),
    }
}

/// Adds `bind` unless a mount is already at its container path.
fn add_unless_covered(binds: &mut Vec<Bind>, bind: Bind) {
    if !binds
        .iter()
        .any(|b| clean(&b.container_path) == bind.container_path)
    {
        binds.push(bind);
    }
}

/// Image volumes: read-write, private, whatever readonly_rootfs says.
fn add_image_volumes(binds: &mut Vec<Bind>, input: &ContainerSpecInput<'_>) -> Result<()> {
    for (path, source) in &input.image_volumes {
        let path = clean(path);
        if !source.starts_with('/') {
            return Err(Error::Internal(format!(
                "the volume for {path} is not an absolute path: {source:?}"
            )));
        }
        add_unless_covered(
            binds,
            Bind {
                container_path: path,
                source: source.clone(),
                options: vec!["rbind", "rprivate", "rw"],
            },
        );
    }
    Ok(())
}

/// The pod's files, unless the request mounts something there. They
/// follow readonly_rootfs (containerd's choice): a read-only container
/// cannot rewrite its pod's /etc/hosts either.
fn add_pod_files(binds: &mut Vec<Bind>, input: &ContainerSpecInput<'_>) -> Result<()> {
    let files = &input.files;
    let pod_ro = if input.request.linux.security.readonly_rootfs {
        "ro"
    } else {
        "rw"
    };
    let shm = pod_shm_source(files.shm.as_ref(), input.sandbox.linux.namespaces.ipc)?;
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
        add_unless_covered(
            binds,
            Bind {
                container_path: path.to_string(),
                source,
                options,
            },
        );
    }
    Ok(())
}

/// The container's `/dev/shm`: the host's for a host-IPC pod, else the
/// pod's own (an absolute path).
fn pod_shm_source(shm: Option<&String>, ipc: NamespaceMode) -> Result<String> {
    match (shm, ipc) {
        (None, NamespaceMode::Node) => Ok(HOST_DEV_SHM.to_string()),
        (Some(path), mode) if mode != NamespaceMode::Node && path.starts_with('/') => {
            Ok(path.to_string())
        }
        (Some(_), NamespaceMode::Node) => Err(Error::Internal(
            "a pod /dev/shm was given for a host-IPC pod".into(),
        )),
        _ => Err(Error::Internal(
            "a pod with its own IPC namespace needs an absolute /dev/shm path".into(),
        )),
    }
}

/// The default mounts that no bind replaces: none at a bind's path, and
/// none under `/dev` when `/dev` itself is bound.
fn uncovered_default_mounts(binds: &[Bind], privileged: bool) -> Result<Vec<OciMount>> {
    let supplied: Vec<String> = binds.iter().map(|b| clean(&b.container_path)).collect();
    let dev_supplied = supplied.iter().any(|p| p == "/dev");
    let mut mounts = default_mounts(privileged)?;
    mounts.retain(|m| {
        let dst = clean(&m.destination().to_string_lossy());
        !(supplied.contains(&dst) || (dev_supplied && dst.starts_with("/dev/")))
    });
    Ok(mounts)
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
    if matches!(m.propagation, Propagation::Private) {
        return Ok((source, "rprivate"));
    }
    let host = facts.map(|f| f.propagation).ok_or_else(|| {
        Error::Internal(format!(
            "no propagation facts for host path {:?}",
            m.host_path
        ))
    })?;
    Ok((source, propagation_option(i, m, host)?))
}

/// The propagation option of a host-to-container or bidirectional request
/// mount `i` whose source is on a host mount with propagation `host`.
fn propagation_option(i: usize, m: &Mount, host: HostPropagation) -> Result<&'static str> {
    let field = format!("config.mounts[{i}].propagation");
    // containerd refuses both too (ensureSharedOrSlave, ensureShared):
    // the propagation asked for cannot happen from a private mount.
    match (m.propagation, host) {
        (Propagation::Private, _) => Ok("rprivate"),
        (Propagation::HostToContainer, HostPropagation::Shared | HostPropagation::Slave) => {
            Ok("rslave")
        }
        (Propagation::HostToContainer, HostPropagation::Private) => Err(Error::invalid(
            field,
            format!(
                "HostToContainer needs {:?} to be on a shared or slave mount of the \
                 host, and it is on a private one",
                m.host_path
            ),
        )),
        (Propagation::Bidirectional, HostPropagation::Shared) => Ok("rshared"),
        (Propagation::Bidirectional, other) => Err(Error::invalid(
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
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bidirectional_mount_makes_the_rootfs_rshared_whatever_the_order() {
        use Propagation::{Bidirectional, HostToContainer, Private};
        let after = |ps: &[Propagation]| {
            ps.iter()
                .fold(None, |current, p| rootfs_propagation_with(current, *p))
        };
        assert_eq!(after(&[]), None);
        assert_eq!(after(&[Private, Private]), None);
        assert_eq!(after(&[Private, HostToContainer, Private]), Some("rslave"));
        assert_eq!(after(&[HostToContainer, Bidirectional]), Some("rshared"));
        assert_eq!(after(&[Bidirectional, HostToContainer]), Some("rshared"));
        assert_eq!(after(&[Bidirectional, Private]), Some("rshared"));
    }

    #[test]
    fn dev_shm_is_the_hosts_only_for_a_host_ipc_pod() {
        let own = "/run/crius/sandboxes/a/shm".to_string();
        assert_eq!(
            pod_shm_source(None, NamespaceMode::Node).ok().as_deref(),
            Some(HOST_DEV_SHM)
        );
        assert_eq!(
            pod_shm_source(Some(&own), NamespaceMode::Pod).ok(),
            Some(own.clone())
        );
        for (shm, ipc) in [
            (Some(&own), NamespaceMode::Node),
            (None, NamespaceMode::Pod),
            (Some(&"shm".to_string()), NamespaceMode::Pod),
        ] {
            assert!(
                matches!(pod_shm_source(shm, ipc), Err(Error::Internal(_))),
                "{shm:?} {ipc:?}"
            );
        }
    }
}
