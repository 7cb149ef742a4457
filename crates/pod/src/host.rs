//! Facts about this host that container specs depend on, read once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crius_core::container::{HostFacts, HostPath, HostPropagation, capabilities_from_mask};

/// Reads the host facts (capabilities, cgroup controllers, swap, AppArmor,
/// kernel). Missing information falls back to the restrictive answer.
pub fn facts() -> HostFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let controllers: BTreeSet<String> = std::fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect();
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
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
        apparmor_enabled: Path::new("/sys/module/apparmor").exists(),
        kernel_version: kernel,
    }
}

/// What the spec needs to know of each host path a container mounts: its
/// symlink-resolved form and the propagation of the mount holding it.
/// A missing host path is created as a directory (as kubelet-era runtimes do).
pub fn host_paths(paths: &[String]) -> crius_core::Result<BTreeMap<String, HostPath>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = BTreeMap::new();
    for p in paths {
        if !Path::new(p).exists() {
            std::fs::create_dir_all(p)
                .map_err(|e| crius_core::Error::io(format!("creating host path {p}"), e))?;
        }
        let resolved = std::fs::canonicalize(p)
            .map_err(|e| crius_core::Error::io(format!("resolving host path {p}"), e))?;
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

/// The propagation of the mount that holds `path` (the longest mount point
/// that is a prefix of it).
fn propagation_of(mountinfo: &str, path: &str) -> HostPropagation {
    let mut best: Option<(usize, HostPropagation)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let holds = path == *point || point == &"/" || path.starts_with(&format!("{point}/"));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
