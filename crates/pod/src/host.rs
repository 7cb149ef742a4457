//! Facts about this host that container specs depend on, read once.

use std::collections::BTreeMap;
use std::path::Path;

use crius_core::container::{
    HostDevice, HostDeviceKind, HostFacts, HostPath, HostPropagation, capabilities_from_mask,
};
use crius_core::runtime::OciFeatures;

/// Reads the host facts (capabilities, cgroup controllers, swap, kernel);
/// AppArmor is what the daemon's start-up decided. Missing information
/// falls back to the restrictive answer.
pub fn facts(apparmor: crius_core::apparmor::Mode) -> HostFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let unified_controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").ok();
    let controllers = crius_core::cgroup::available_controllers(
        &std::fs::read_to_string("/proc/cgroups").unwrap_or_default(),
        unified_controllers.as_deref(),
    );
    let unified = unified_controllers.is_some();
    let kernel = nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.release().to_str().map(str::to_string))
        .and_then(|r| crius_core::container::seccomp::parse_kernel(&r));
    HostFacts {
        daemon_oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        capabilities: capabilities_from_mask(cap_eff),
        cgroup_controllers: controllers,
        memory_swap: Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
        cgroup_unified: unified,
        apparmor,
        kernel_version: kernel,
    }
}

/// The contents of the file a `Localhost` seccomp profile names (for a pod
/// or a container); a file that cannot be read is the client's error.
pub fn localhost_seccomp(
    profile: Option<&crius_core::sandbox::SecurityProfile>,
    read: impl FnOnce(&Path) -> std::io::Result<String>,
) -> crius_core::Result<Option<String>> {
    let Some(crius_core::sandbox::SecurityProfile::Localhost(path)) = profile else {
        return Ok(None);
    };
    // containerd refuses it too (its loader cannot read the file): running
    // unconfined instead would give less than asked.
    read(Path::new(path)).map(Some).map_err(|e| {
        crius_core::Error::invalid(
            "config.linux.security_context.seccomp.localhost_ref",
            format!("{path}: {e}"),
        )
    })
}

/// The loaded AppArmor profiles, when the container's profile depends on
/// them ([`crius_core::apparmor::needs_loaded_profiles`]); `read` reads
/// [`crius_core::apparmor::PROFILES_FILE`]. A list that cannot be read
/// refuses the container: the profile it names cannot be checked.
pub fn loaded_apparmor_profiles(
    mode: &crius_core::apparmor::Mode,
    requested: Option<&crius_core::container::SecurityProfile>,
    read: impl FnOnce() -> std::io::Result<String>,
) -> crius_core::Result<Option<String>> {
    use crius_core::apparmor::{PROFILES_FILE, needs_loaded_profiles};
    if !needs_loaded_profiles(mode, requested) {
        return Ok(None);
    }
    read().map(Some).map_err(|e| {
        crius_core::Error::FailedPrecondition(format!(
            "config.linux.security_context.apparmor: cannot check that the profile is loaded: \
             reading {PROFILES_FILE}: {e}"
        ))
    })
}

/// What the spec needs to know of each host path a container mounts: its
/// symlink-resolved form and the propagation of the mount holding it.
/// A missing host path is created as a directory (as kubelet-era runtimes do).
pub fn host_paths(paths: &[String]) -> crius_core::Result<BTreeMap<String, HostPath>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = BTreeMap::new();
    for (i, p) in paths.iter().enumerate() {
        // containerd refuses it too (it creates a missing host path, and
        // fails the create when that fails): there is nothing to mount.
        let refused = |what: &str, e: std::io::Error| {
            crius_core::Error::invalid(
                format!("config.mounts[{i}].host_path"),
                format!("{what} {p}: {e}"),
            )
        };
        if !Path::new(p).exists() {
            std::fs::create_dir_all(p).map_err(|e| refused("cannot create", e))?;
        }
        let resolved = std::fs::canonicalize(p).map_err(|e| refused("cannot resolve", e))?;
        let resolved_s = resolved.display().to_string();
        out.insert(
            p.clone(),
            HostPath {
                propagation: propagation_of(&info, &resolved_s),
                resolved: (resolved_s != *p).then_some(resolved_s),
            },
        );
    }
    Ok(out)
}

/// Directories of `/dev` that hold no devices a container should get
/// (containerd skips the same ones).
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// CDI spec files of `dirs` (see `ports::HostFs::cdi_specs`).
pub fn cdi_specs(dirs: &[std::path::PathBuf]) -> Vec<(usize, std::path::PathBuf, String)> {
    let mut out = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<std::path::PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
            })
            .collect();
        files.sort();
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => out.push((i, f, text)),
                Err(e) => tracing::warn!(file = %f.display(), "cannot read a CDI spec: {e}"),
            }
        }
    }
    out
}

/// The node at `path` when it is a character or block device (symlinks
/// not followed).
pub(crate) fn device_at(path: &Path) -> Option<HostDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::symlink_metadata(path).ok()?;
    let kind = if md.file_type().is_char_device() {
        HostDeviceKind::Char
    } else if md.file_type().is_block_device() {
        HostDeviceKind::Block
    } else {
        return None;
    };
    let rdev = md.rdev();
    Some(HostDevice {
        path: path.display().to_string(),
        kind,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        file_mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

/// Every device node under `dir`, depth first, sorted by path; symlinks
/// and the directories in [`SKIPPED_DEV_DIRS`] are skipped (as is
/// `/dev/console`, which runc sets up itself).
fn devices_under(dir: &Path, out: &mut Vec<HostDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name();
        let name = name.to_string_lossy();
        if ft.is_dir() {
            if !SKIPPED_DEV_DIRS.contains(&name.as_ref()) {
                devices_under(&path, out);
            }
        } else if name != "console"
            && let Some(d) = device_at(&path)
        {
            out.push(d);
        }
    }
}

/// Every device node of the host (`/dev`), for privileged containers.
pub fn host_devices() -> Vec<HostDevice> {
    let mut out = Vec::new();
    devices_under(Path::new("/dev"), &mut out);
    out
}

/// The device nodes behind each CRI device's `host_path`: the node itself
/// (symlinks resolved) or every node under a directory. A path that is
/// missing or holds no device is refused, naming the field.
pub fn device_nodes(
    devices: &[crius_core::container::Device],
) -> crius_core::Result<BTreeMap<String, Vec<HostDevice>>> {
    let mut out = BTreeMap::new();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("config.devices[{i}].host_path");
        // containerd refuses a missing device and a path holding no device
        // node too (DeviceFromPath fails the create).
        let resolved = std::fs::canonicalize(&d.host_path)
            .map_err(|e| crius_core::Error::invalid(&field, format!("{:?}: {e}", d.host_path)))?;
        let nodes = if resolved.is_dir() {
            let mut nodes = Vec::new();
            devices_under(&resolved, &mut nodes);
            // Paths as the request names them, so the container paths
            // are computed beneath the request's host path.
            let base = resolved.display().to_string();
            for n in &mut nodes {
                n.path = format!(
                    "{}{}",
                    d.host_path.trim_end_matches('/'),
                    &n.path[base.len()..]
                );
            }
            nodes
        } else {
            device_at(&resolved)
                .map(|mut n| {
                    n.path = d.host_path.clone();
                    vec![n]
                })
                .unwrap_or_default()
        };
        if nodes.is_empty() {
            return Err(crius_core::Error::invalid(
                field,
                format!(
                    "{:?} is not a device node or a directory holding any",
                    d.host_path
                ),
            ));
        }
        out.insert(d.host_path.clone(), nodes);
    }
    Ok(out)
}

/// The propagation of the mount that holds `path` (the longest mount point
/// that is a prefix of it).
fn propagation_of(mountinfo: &str, path: &str) -> HostPropagation {
    let mut best: Option<(usize, HostPropagation)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4).map(|p| unescape_mountinfo(p)) else {
            continue;
        };
        let point = point.as_str();
        let holds = path == point || point == "/" || path.starts_with(&format!("{point}/"));
        if !holds || best.is_some_and(|(len, _)| len > point.len()) {
            continue;
        }
        let optional = fields.iter().skip(6).take_while(|f| **f != "-");
        let mut prop = HostPropagation::Private;
        for f in optional {
            if f.starts_with("shared:") {
                prop = HostPropagation::Shared;
            } else if f.starts_with("master:") && prop != HostPropagation::Shared {
                prop = HostPropagation::Slave;
            }
        }
        best = Some((point.len(), prop));
    }
    best.map(|(_, p)| p).unwrap_or(HostPropagation::Private)
}

/// A mountinfo field as the kernel escapes it (space, tab, newline and
/// backslash as `\ooo` octal) back to the path.
/// The mount points at or below `path` in `mountinfo`, deepest first (the
/// order to unmount them in).
pub(crate) fn mounts_under(mountinfo: &str, path: &str) -> Vec<String> {
    let path = path.trim_end_matches('/');
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|p| p == path || p.starts_with(&format!("{path}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    points.dedup();
    points
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long an OCI runtime may take to print its features.
const FEATURES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The OCI runtimes of this host, asked what they support (`runc
/// features`, runc 1.1 and later) once per binary: the answer changes
/// only when the binary does, and `Status` asks every few seconds.
#[derive(Default)]
pub struct OciRuntimes {
    known: std::sync::Mutex<std::collections::HashMap<String, OciFeatures>>,
}

#[async_trait::async_trait]
impl crate::ports::OciRuntimes for OciRuntimes {
    async fn features(&self, binary: &str) -> Option<OciFeatures> {
        if let Some(f) = crate::lock(&self.known).get(binary) {
            return Some(f.clone());
        }
        match ask_features(binary).await {
            Ok(f) => {
                tracing::info!(runtime = binary, mount_options = ?f.mount_options, "OCI runtime features");
                crate::lock(&self.known).insert(binary.to_string(), f.clone());
                Some(f)
            }
            Err(why) => {
                tracing::warn!(
                    runtime = binary,
                    "cannot learn what the OCI runtime supports: {why}"
                );
                None
            }
        }
    }

    async fn criu_version(&self) -> Option<u32> {
        ask_criu_version()
            .await
            .inspect_err(|why| tracing::info!("no usable CRIU: {why}"))
            .ok()
    }
}

/// Runs `criu --version` (the CRIU runc finds on the same `PATH`).
async fn ask_criu_version() -> Result<u32, String> {
    let out = probe("criu", "--version").await?;
    let text = String::from_utf8_lossy(&out.stdout);
    crius_core::checkpoint::criu_version(&text)
        .ok_or_else(|| format!("unexpected `criu --version` output: {}", text.trim()))
}

/// What `binary arg` prints, once it succeeded within [`FEATURES_TIMEOUT`].
async fn probe(binary: &str, arg: &str) -> Result<std::process::Output, String> {
    let run = tokio::process::Command::new(binary)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(FEATURES_TIMEOUT, run).await {
        Err(_) => return Err(format!("no answer within {FEATURES_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{}: {}", out.status, stderr.trim()));
    }
    Ok(out)
}

/// Runs `<binary> features` and parses what it prints.
async fn ask_features(binary: &str) -> Result<OciFeatures, String> {
    let out = probe(binary, "features").await?;
    OciFeatures::parse(&out.stdout).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(host_path: &str) -> crius_core::container::Device {
        crius_core::container::Device {
            container_path: "/dev/x".into(),
            host_path: host_path.into(),
            permissions: "rwm".into(),
        }
    }

    #[test]
    fn device_nodes_of_a_node_a_directory_and_a_file() {
        let nodes = device_nodes(&[dev("/dev/null")]).expect("/dev/null");
        let null = &nodes["/dev/null"][0];
        assert_eq!(
            (null.kind, null.major, null.minor, null.path.as_str()),
            (HostDeviceKind::Char, 1, 3, "/dev/null")
        );
        // A directory of nodes, reached through a symlink: paths stay
        // under the requested path.
        let tmp = tempfile::tempdir().expect("tmp");
        let link = tmp.path().join("devdir");
        std::os::unix::fs::symlink("/dev", &link).expect("symlink");
        let link = link.display().to_string();
        let nodes = device_nodes(&[dev(&link)]).expect("directory");
        assert!(
            nodes[&link]
                .iter()
                .any(|n| n.path == format!("{link}/null")),
            "{:?}",
            nodes[&link]
        );
        assert!(nodes[&link].iter().all(|n| !n.path.contains("/pts/")));
        for bad in ["/etc/hostname", "/no/such/device"] {
            match device_nodes(&[dev("/dev/null"), dev(bad)]) {
                Err(crius_core::Error::InvalidArgument { field, .. }) => {
                    assert_eq!(field, "config.devices[1].host_path")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_devices_skip_links_and_pseudo_directories() {
        let all = host_devices();
        assert!(all.iter().any(|d| d.path == "/dev/null"), "{all:?}");
        assert!(
            all.iter().all(|d| !d.path.starts_with("/dev/pts/")
                && d.path != "/dev/console"
                && !d.path.starts_with("/dev/fd/")),
            "{all:?}"
        );
    }

    #[test]
    fn apparmor_profiles_are_read_only_for_a_localhost_profile() {
        use crius_core::apparmor::{Mode, after_load};
        use crius_core::container::SecurityProfile;
        let enabled = after_load(Ok(()));
        let localhost = SecurityProfile::Localhost("k8s-x".into());
        let unread = || -> std::io::Result<String> { panic!("read without need") };
        for (mode, requested) in [
            (&enabled, None),
            (&enabled, Some(&SecurityProfile::RuntimeDefault)),
            (&Mode::Disabled, Some(&localhost)),
        ] {
            assert_eq!(
                loaded_apparmor_profiles(mode, requested, unread).ok(),
                Some(None)
            );
        }
        let read = || Ok("k8s-x (enforce)\n".to_string());
        assert_eq!(
            loaded_apparmor_profiles(&enabled, Some(&localhost), read).ok(),
            Some(Some("k8s-x (enforce)\n".to_string()))
        );
        let denied = || Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        match loaded_apparmor_profiles(&enabled, Some(&localhost), denied) {
            Err(crius_core::Error::FailedPrecondition(m)) => {
                assert!(m.contains("config.linux.security_context.apparmor"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mounts_under_a_path_come_deepest_first() {
        let info = "22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:5 / /run/c/x/image-volumes/0 ro - overlay overlay ro\n\
                    31 22 0:6 / /run/c/x rw - tmpfs tmpfs rw\n\
                    32 22 0:7 / /run/c/xy rw - tmpfs tmpfs rw\n\
                    33 30 0:8 / /run/c/x/image-volumes/0/a\\040b ro - tmpfs tmpfs ro\n";
        assert_eq!(
            mounts_under(info, "/run/c/x/"),
            [
                "/run/c/x/image-volumes/0/a b",
                "/run/c/x/image-volumes/0",
                "/run/c/x"
            ]
        );
        assert!(mounts_under(info, "/run/none").is_empty());
    }

    #[test]
    fn propagation_from_mountinfo() {
        let info = "22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:5 / /mnt/private rw - tmpfs tmpfs rw\n\
                    31 22 0:6 / /mnt/slave rw master:3 - tmpfs tmpfs rw\n";
        assert_eq!(propagation_of(info, "/var/lib/x"), HostPropagation::Shared);
        assert_eq!(
            propagation_of(info, "/mnt/private/a"),
            HostPropagation::Private
        );
        assert_eq!(propagation_of(info, "/mnt/slave"), HostPropagation::Slave);
        assert_eq!(
            propagation_of(info, "/mnt/privatex"),
            HostPropagation::Shared
        );
        // Mount points with blanks or line breaks are escaped by the kernel.
        let info = "22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:5 / /mnt/a\\040b\\012c rw - tmpfs tmpfs rw\n";
        assert_eq!(
            propagation_of(info, "/mnt/a b\nc/x"),
            HostPropagation::Private
        );
        assert_eq!(unescape_mountinfo("a\\134b\\011"), "a\\b\t");
    }

    /// An executable script in `dir` that counts its runs in `dir/runs`.
    fn script(dir: &Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let text = format!("#!/bin/sh\necho run >> {}/runs\n{body}\n", dir.display());
        std::fs::write(&path, text).expect("write the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    #[tokio::test]
    async fn runtimes_are_asked_once_and_failures_again() {
        use crate::ports::OciRuntimes as _;
        let dir = tempfile::tempdir().expect("a scratch directory");
        let runs = || {
            std::fs::read_to_string(dir.path().join("runs"))
                .unwrap_or_default()
                .lines()
                .count()
        };
        let runtimes = OciRuntimes::default();
        let good = script(
            dir.path(),
            "good",
            r#"[ "$1" = features ] && echo '{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2","mountOptions":["ro","rro"]}'"#,
        );
        for _ in 0..3 {
            let f = runtimes.features(&good).await.expect("it answers");
            assert!(f.mount_options.is_some_and(|o| o.contains("rro")));
        }
        assert_eq!(runs(), 1, "asked once");
        let old = script(
            dir.path(),
            "old",
            "echo 'unknown command features' >&2; exit 1",
        );
        assert_eq!(runtimes.features(&old).await, None);
        assert_eq!(runtimes.features(&old).await, None);
        assert_eq!(runs(), 3, "a failure is asked again");
        let junk = script(dir.path(), "junk", "echo not json");
        assert_eq!(runtimes.features(&junk).await, None);
        let missing = dir.path().join("missing").display().to_string();
        assert_eq!(runtimes.features(&missing).await, None);
    }
}
