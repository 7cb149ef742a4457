//! cgroup driver choice, which controllers the host can apply, and where
//! a container's or a pod's cgroup is in cgroupfs (for stats).
//!
//! Where runc puts a spec's `linux.cgroupsPath` depends on the driver it
//! was given:
//! - cgroupfs: the path is absolute and is the cgroup's path below each
//!   hierarchy's root;
//! - systemd: the path is `slice:prefix:name` and names the transient
//!   scope `<prefix>-<name>.scope` (`<name>` when it is itself a
//!   `.slice`) in `slice` (`system.slice` when empty), whose cgroup is
//!   the slice's expanded path (`a-b-c.slice` is
//!   `/a.slice/a-b.slice/a-b-c.slice`, [`expand_slice`]) followed by the
//!   unit: runc's systemd driver and containerd's cgroups library place it
//!   so.
//!
//! On cgroup v1 each controller has its own hierarchy
//! (`/sys/fs/cgroup/<controller>/<path>`), on v2 there is one
//! (`/sys/fs/cgroup/<path>`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The controllers a container's limits can use: on cgroup v2 (`unified`
/// holds the root's `cgroup.controllers`) those listed there; on cgroup v1
/// those of `/proc/cgroups` (`proc_cgroups`) that are enabled *and mounted*
/// (a non-zero hierarchy). A controller the kernel knows but nobody mounted
/// (`hugetlb` on many v1 hosts) cannot be joined: runc fails a container
/// that asks for its limits, so crius leaves them out, as containerd does.
pub fn available_controllers(proc_cgroups: &str, unified: Option<&str>) -> BTreeSet<String> {
    if let Some(list) = unified {
        return list.split_whitespace().map(str::to_string).collect();
    }
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, hierarchy, _, "1"] if hierarchy != "0" => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

/// The cgroup driver setting in the config: a fixed driver or detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriverSetting {
    /// systemd when the host runs systemd as init, else cgroupfs.
    #[default]
    Auto,
    Cgroupfs,
    Systemd,
}

/// The cgroup driver in force, reported to kubelet by `RuntimeConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl CgroupDriverSetting {
    /// Resolve the setting; `systemd_booted` is whether the host was booted by
    /// systemd (the caller checks `/run/systemd/system`).
    pub fn resolve(self, systemd_booted: bool) -> CgroupDriver {
        match self {
            CgroupDriverSetting::Cgroupfs => CgroupDriver::Cgroupfs,
            CgroupDriverSetting::Systemd => CgroupDriver::Systemd,
            CgroupDriverSetting::Auto if systemd_booted => CgroupDriver::Systemd,
            CgroupDriverSetting::Auto => CgroupDriver::Cgroupfs,
        }
    }
}

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The slice runc's systemd driver puts a scope in when the path names none.
const SYSTEMD_DEFAULT_SLICE: &str = "system.slice";

/// The controllers whose files stats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// CPU time (`cpuacct.usage` on v1, `cpu.stat` on v2).
    Cpuacct,
    Memory,
    Pids,
}

impl Controller {
    /// The name of its cgroup v1 hierarchy under [`CGROUP_ROOT`]
    /// (`cpuacct` is a link to `cpu,cpuacct` where the two share one).
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }
}

impl CgroupDriver {
    /// The driver a spec's `cgroupsPath` is written for: systemd's
    /// `slice:prefix:name`, else cgroupfs.
    pub fn of_cgroups_path(cgroups_path: &str) -> CgroupDriver {
        if !cgroups_path.starts_with('/') && cgroups_path.split(':').count() == 3 {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        }
    }
}

/// The cgroup path of systemd slice `slice`, as systemd lays it out:
/// `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`, the root slice
/// `-.slice` is `""`. `None` for what is no slice name (no `.slice`
/// suffix, a `/`, an empty component as in `a--b.slice` or `-a.slice`),
/// as runc's `ExpandSlice` refuses them.
pub fn expand_slice(slice: &str) -> Option<String> {
    let name = slice.strip_suffix(".slice")?;
    if slice.contains('/') || name.is_empty() {
        return None;
    }
    if name == "-" {
        return Some(String::new());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in name.split('-') {
        if component.is_empty() {
            return None;
        }
        prefix.push_str(component);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
        prefix.push('-');
    }
    Some(path)
}

/// A path below a hierarchy's root that stays below it: absolute, without
/// `.` or `..` components, trailing `/` dropped.
fn below_root(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "." || c == "..") {
        return None;
    }
    Some(path.trim_end_matches('/').to_string())
}

/// The cgroup of a spec's `cgroupsPath` that `driver` (the one runc was
/// given) creates, as a path below each hierarchy's root (`""` is the
/// root); `None` when the path is not of the driver's form.
pub fn cgroup_path(driver: CgroupDriver, cgroups_path: &str) -> Option<String> {
    match driver {
        CgroupDriver::Cgroupfs => below_root(cgroups_path),
        CgroupDriver::Systemd => {
            let [slice, prefix, name] = cgroups_path.split(':').collect::<Vec<_>>()[..] else {
                return None;
            };
            let slice = if slice.is_empty() {
                SYSTEMD_DEFAULT_SLICE
            } else {
                slice
            };
            if name.is_empty() || name.contains('/') || prefix.contains('/') {
                return None;
            }
            let unit = match (name.ends_with(".slice"), prefix) {
                (true, _) => name.to_string(),
                (false, "") => format!("{name}.scope"),
                (false, prefix) => format!("{prefix}-{name}.scope"),
            };
            Some(format!("{}/{unit}", expand_slice(slice)?))
        }
    }
}

/// The pod's own cgroup, from the cgroup parent kubelet gave it, as a path
/// below each hierarchy's root: cgroupfs takes the parent as it is;
/// systemd its last component, a slice (kubelet's systemd parents are the
/// expanded path, e.g. `/kubepods.slice/kubepods-burstable.slice/
/// kubepods-burstable-pod<uid>.slice`, or the bare slice name). `None`
/// without a parent: the pod then shares crius' default parent with every
/// other such pod and has no cgroup of its own.
pub fn pod_cgroup_path(driver: CgroupDriver, cgroup_parent: &str) -> Option<String> {
    if cgroup_parent.trim_matches('/').is_empty() {
        return None;
    }
    match driver {
        CgroupDriver::Cgroupfs => below_root(cgroup_parent),
        CgroupDriver::Systemd => {
            let last = cgroup_parent.trim_end_matches('/').rsplit('/').next()?;
            expand_slice(last).filter(|p| !p.is_empty())
        }
    }
}

/// The directory of `controller`'s files for the cgroup at `path` (from
/// [`cgroup_path`] or [`pod_cgroup_path`]) with the hierarchies mounted at
/// `root` ([`CGROUP_ROOT`]): `<root>/<path>` on cgroup v2 (`unified`),
/// `<root>/<controller>/<path>` on v1.
pub fn controller_dir(root: &Path, path: &str, unified: bool, controller: Controller) -> PathBuf {
    let mut dir = root.to_path_buf();
    if !unified {
        dir.push(controller.v1_name());
    }
    dir.push(path.trim_start_matches('/'));
    dir
}

/// The cgroupfs directory of `controller` for a spec's `cgroupsPath`
/// under `driver`, on cgroup v2 (`unified`) or v1.
pub fn cgroup_dir(
    driver: CgroupDriver,
    cgroups_path: &str,
    unified: bool,
    controller: Controller,
) -> Option<PathBuf> {
    cgroup_path(driver, cgroups_path)
        .map(|p| controller_dir(Path::new(CGROUP_ROOT), &p, unified, controller))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_those_mounted() {
        // This machine: cgroup v1, hugetlb known and enabled but unmounted.
        let proc = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                    cpuset\t5\t1\t1\ncpu\t3\t40\t1\nmemory\t9\t60\t1\n\
                    hugetlb\t0\t1\t1\nnet_cls\t0\t1\t1\nrdma\t7\t1\t0\n";
        let got = available_controllers(proc, None);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["cpu", "cpuset", "memory"]
        );
        // cgroup v2: /proc/cgroups says hierarchy 0 for all; the root's
        // cgroup.controllers is what counts.
        let proc_v2 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                       cpu\t0\t90\t1\nhugetlb\t0\t90\t1\n";
        let got = available_controllers(proc_v2, Some("cpuset cpu io memory hugetlb pids\n"));
        assert!(got.contains("hugetlb") && got.contains("io"), "{got:?}");
        assert!(!available_controllers(proc_v2, Some("cpu memory\n")).contains("hugetlb"));
    }

    #[test]
    fn auto_follows_the_init_system() {
        assert_eq!(
            CgroupDriverSetting::Auto.resolve(false),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            CgroupDriverSetting::Auto.resolve(true),
            CgroupDriver::Systemd
        );
        assert_eq!(
            CgroupDriverSetting::Cgroupfs.resolve(true),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            CgroupDriverSetting::Systemd.resolve(false),
            CgroupDriver::Systemd
        );
    }

    #[test]
    fn slices_expand_as_systemd_lays_them_out() {
        assert_eq!(
            expand_slice("system.slice").as_deref(),
            Some("/system.slice")
        );
        assert_eq!(
            expand_slice("kubepods-besteffort-pod1.slice").as_deref(),
            Some("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice")
        );
        assert_eq!(expand_slice("-.slice").as_deref(), Some(""));
        for bad in [
            "",
            ".slice",
            "system",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
            "system.scope",
        ] {
            assert_eq!(expand_slice(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn container_cgroups_under_either_driver() {
        let fs = |p| cgroup_path(CgroupDriver::Cgroupfs, p);
        let sd = |p| cgroup_path(CgroupDriver::Systemd, p);
        assert_eq!(
            fs("/kubepods/burstable/pod1/abc").as_deref(),
            Some("/kubepods/burstable/pod1/abc")
        );
        assert_eq!(fs("/crius/abc/").as_deref(), Some("/crius/abc"));
        assert_eq!(fs("crius/abc"), None, "relative to runc's own cgroup");
        assert_eq!(fs("/crius/../abc"), None);
        assert_eq!(
            sd("kubepods-burstable-pod1.slice:crius:abc").as_deref(),
            Some(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crius-abc.scope"
            )
        );
        assert_eq!(
            sd("system.slice:crius:abc").as_deref(),
            Some("/system.slice/crius-abc.scope")
        );
        assert_eq!(
            sd(":crius:abc").as_deref(),
            Some("/system.slice/crius-abc.scope")
        );
        assert_eq!(sd("-.slice::abc").as_deref(), Some("/abc.scope"));
        assert_eq!(
            sd("a.slice:x:a-b.slice").as_deref(),
            Some("/a.slice/a-b.slice")
        );
        for bad in [
            "/crius/abc",
            "system.slice:abc",
            "a:b:c:d",
            "bad:crius:abc",
            "system.slice:crius:",
        ] {
            assert_eq!(sd(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_form_of_a_cgroups_path_names_its_driver() {
        assert_eq!(
            CgroupDriver::of_cgroups_path("/crius/abc"),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            CgroupDriver::of_cgroups_path("/a:b:c"),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            CgroupDriver::of_cgroups_path("system.slice:crius:abc"),
            CgroupDriver::Systemd
        );
    }

    #[test]
    fn pod_cgroups_under_either_driver() {
        let full = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice";
        assert_eq!(
            pod_cgroup_path(CgroupDriver::Systemd, full).as_deref(),
            Some(full)
        );
        let bare = pod_cgroup_path(CgroupDriver::Systemd, "kubepods-besteffort-pod1.slice/");
        assert_eq!(bare.as_deref(), Some(full));
        assert_eq!(
            pod_cgroup_path(CgroupDriver::Systemd, "/kubepods/pod1"),
            None
        );
        assert_eq!(pod_cgroup_path(CgroupDriver::Systemd, "-.slice"), None);
        assert_eq!(
            pod_cgroup_path(CgroupDriver::Cgroupfs, "/kubepods/besteffort/pod1/").as_deref(),
            Some("/kubepods/besteffort/pod1")
        );
        assert_eq!(pod_cgroup_path(CgroupDriver::Cgroupfs, "kubepods"), None);
        for driver in [CgroupDriver::Cgroupfs, CgroupDriver::Systemd] {
            assert_eq!(pod_cgroup_path(driver, ""), None);
            assert_eq!(pod_cgroup_path(driver, "/"), None);
        }
    }

    #[test]
    fn controller_directories_on_v1_and_v2() {
        let sd = "kubepods-pod1.slice:crius:abc";
        let dir = |unified, c| cgroup_dir(CgroupDriver::Systemd, sd, unified, c);
        assert_eq!(
            dir(false, Controller::Memory),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/kubepods.slice/kubepods-pod1.slice/crius-abc.scope"
            ))
        );
        assert_eq!(
            dir(false, Controller::Cpuacct),
            Some(PathBuf::from(
                "/sys/fs/cgroup/cpuacct/kubepods.slice/kubepods-pod1.slice/crius-abc.scope"
            ))
        );
        assert_eq!(
            dir(true, Controller::Pids),
            Some(PathBuf::from(
                "/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice/crius-abc.scope"
            ))
        );
        let fs = |unified, c| cgroup_dir(CgroupDriver::Cgroupfs, "/crius/abc", unified, c);
        assert_eq!(
            fs(false, Controller::Pids),
            Some(PathBuf::from("/sys/fs/cgroup/pids/crius/abc"))
        );
        assert_eq!(
            fs(true, Controller::Memory),
            Some(PathBuf::from("/sys/fs/cgroup/crius/abc"))
        );
        assert_eq!(
            controller_dir(Path::new(CGROUP_ROOT), "", true, Controller::Memory),
            PathBuf::from("/sys/fs/cgroup")
        );
        assert_eq!(
            cgroup_dir(CgroupDriver::Cgroupfs, sd, true, Controller::Memory),
            None
        );
    }

    #[test]
    fn containers_are_inside_their_pod_cgroup() -> crate::Result<()> {
        use crate::sandbox::spec::cgroups_path;
        let cases = [
            (CgroupDriver::Cgroupfs, "/kubepods/burstable/pod1"),
            (CgroupDriver::Systemd, "/kubepods.slice/kubepods-pod1.slice"),
            (CgroupDriver::Systemd, "kubepods-pod1.slice"),
        ];
        for (driver, parent) in cases {
            let spec_path = cgroups_path(driver, parent, "abc")?;
            assert_eq!(CgroupDriver::of_cgroups_path(&spec_path), driver);
            let container = cgroup_path(driver, &spec_path).expect("container cgroup");
            let pod = pod_cgroup_path(driver, parent).expect("pod cgroup");
            let (dir, leaf) = container.rsplit_once('/').expect("below the pod");
            assert_eq!(
                (dir, leaf.contains("abc")),
                (pod.as_str(), true),
                "{spec_path}"
            );
        }
        Ok(())
    }
}
