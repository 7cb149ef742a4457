//! cgroup driver choice, and which controllers the host can apply.

use std::collections::BTreeSet;

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
}
