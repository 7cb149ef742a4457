//! What an endpoint costs the machine, read from /proc and /sys: memory and
//! CPU of its daemons, its shims and container processes, its mounts,
//! network namespaces, cgroups and open files.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The processes and places that belong to one endpoint `compare` started.
#[derive(Debug, Clone)]
pub struct Local {
    /// `criusd` (A); `None` when the CRI code runs inside containerd (B).
    pub daemon_pid: Option<i32>,
    /// The containerd behind the endpoint.
    pub containerd_pid: i32,
    /// Its socket: shims name it on their command line.
    pub containerd_socket: PathBuf,
    /// Directories holding everything the endpoint mounts (rootfs, shm,
    /// pinned network namespaces).
    pub dirs: Vec<PathBuf>,
    /// Absolute cgroup path under which its pods' cgroups live
    /// (`/crius-bench-<pid>/a`).
    pub cgroup: String,
}

/// CPU and memory of one process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcStat {
    pub rss_kib: u64,
    /// The anonymous part of the RSS (heap, stacks): what the process costs
    /// beyond its binary's pages, which are shared and reclaimable.
    pub anon_kib: u64,
    /// utime + stime.
    pub cpu_s: f64,
    /// cutime + cstime: reaped children (CNI plugins, `shim start`).
    pub children_cpu_s: f64,
    pub threads: u64,
    pub fds: u64,
}

impl ProcStat {
    pub fn total_cpu_s(&self) -> f64 {
        self.cpu_s + self.children_cpu_s
    }
}

/// One look at an endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// `criusd` (A only).
    pub daemon: Option<ProcStat>,
    pub containerd: ProcStat,
    /// Shim processes of its containerd.
    pub shims: u64,
    pub shims_rss_kib: u64,
    /// Shims and everything below them (pause, containers), plus children
    /// of the daemons (CNI plugins in flight).
    pub processes: u64,
    /// Mounts under the endpoint's directories.
    pub mounts: u64,
    /// Network namespaces pinned (nsfs mounts) under its directories.
    pub netns: u64,
    /// Cgroup directories below the pods' cgroup parents (memory
    /// hierarchy): container cgroups left behind show up here.
    pub cgroups: u64,
}

impl Snapshot {
    /// RSS of the CRI daemon and containerd together, KiB.
    pub fn rss_total_kib(&self) -> u64 {
        self.containerd.rss_kib + self.daemon.map_or(0, |d| d.rss_kib)
    }

    /// Anonymous RSS of the CRI daemon and containerd together, KiB.
    pub fn anon_total_kib(&self) -> u64 {
        self.containerd.anon_kib + self.daemon.map_or(0, |d| d.anon_kib)
    }

    /// CPU seconds (self and reaped children) of the daemon and containerd.
    pub fn cpu_total_s(&self) -> f64 {
        self.containerd.total_cpu_s() + self.daemon.map_or(0.0, |d| d.total_cpu_s())
    }
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14.
    let get = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let tick = clock_ticks();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcStat {
        rss_kib: field("VmRSS:").unwrap_or(0),
        anon_kib: field("RssAnon:").unwrap_or(0),
        cpu_s: (get(14)? + get(15)?) / tick,
        children_cpu_s: (get(16)? + get(17)?) / tick,
        threads: field("Threads:").unwrap_or(0),
        fds,
    })
}

/// pid -> parent pid of every process.
fn parents() -> HashMap<i32, i32> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(close) = stat.rfind(')')
            && let Some(ppid) = stat[close + 2..]
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i32>().ok())
        {
            out.insert(pid, ppid);
        }
    }
    out
}

/// `roots` and all their descendants.
fn with_descendants(roots: &[i32], parents: &HashMap<i32, i32>) -> BTreeSet<i32> {
    let mut set: BTreeSet<i32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for (pid, ppid) in parents {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// `roots` and every process below them.
pub fn descendants(roots: &[i32]) -> Vec<i32> {
    with_descendants(roots, &parents()).into_iter().collect()
}

/// Mount points (field 5) and filesystem types of /proc/self/mountinfo.
fn mounts() -> Vec<(String, String)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let point = l.split(' ').nth(4)?.replace("\\040", " ");
            let fstype = l.split(" - ").nth(1)?.split(' ').next()?.to_owned();
            Some((point, fstype))
        })
        .collect()
}

fn under(path: &str, dir: &Path) -> bool {
    let d = dir.display().to_string();
    path == d || path.starts_with(&format!("{d}/"))
}

/// Directories strictly below `dir`, recursively.
fn count_dirs(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| 1 + count_dirs(&e.path()))
        .sum()
}

impl Local {
    /// The shims of this endpoint's containerd.
    pub fn shim_pids(&self) -> Vec<i32> {
        crius_testkit::pids_with_arg(&self.containerd_socket.display().to_string())
    }

    pub fn snapshot(&self) -> Snapshot {
        let shims = self.shim_pids();
        let shims_rss_kib = shims
            .iter()
            .filter_map(|p| proc_stat(*p))
            .map(|s| s.rss_kib)
            .sum();
        let parents = parents();
        let mut roots = shims.clone();
        let daemons: Vec<i32> = self
            .daemon_pid
            .into_iter()
            .chain([self.containerd_pid])
            .collect();
        roots.extend(&daemons);
        let processes = with_descendants(&roots, &parents)
            .into_iter()
            .filter(|p| !daemons.contains(p))
            .count() as u64;
        let mounts = mounts();
        let mine: Vec<&(String, String)> = mounts
            .iter()
            .filter(|(p, _)| self.dirs.iter().any(|d| under(p, d)))
            .collect();
        // Pod cgroup parents are directories of their own; what is below
        // them is a container's (or the pause process') cgroup.
        let pods_root =
            Path::new("/sys/fs/cgroup/memory").join(self.cgroup.trim_start_matches('/'));
        let cgroups = std::fs::read_dir(&pods_root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| count_dirs(&e.path()))
                    .sum()
            })
            .unwrap_or(0);
        Snapshot {
            daemon: self.daemon_pid.and_then(proc_stat),
            containerd: proc_stat(self.containerd_pid).unwrap_or_default(),
            shims: shims.len() as u64,
            shims_rss_kib,
            processes,
            mounts: mine.len() as u64,
            netns: mine.iter().filter(|(_, t)| t == "nsfs").count() as u64,
            cgroups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself() {
        let me = std::process::id() as i32;
        let s = proc_stat(me).expect("own stat");
        assert!(s.rss_kib > 0 && s.threads > 0 && s.fds > 0);
        let parents = parents();
        assert!(parents.contains_key(&me));
        assert!(with_descendants(&[me], &parents).contains(&me));
    }
}
