//! Resource usage of running containers (`ContainerStats`,
//! `ListContainerStats`): read from each container's cgroup (cgroupfs
//! paths; v1 controllers or the unified hierarchy) and its writable
//! snapshot, with the CPU rate computed against the previous sample.

use std::path::Path;
use std::sync::Arc;

use crius_core::stats::{self, Memory};
use crius_core::{Error, Result};

use crate::container::{Container, ContainerState};
use crate::{Pods, Sandbox};
use crius_core::sandbox::SandboxState;

/// One container's usage at `timestamp` (ns since the epoch).
#[derive(Clone)]
pub struct ContainerUsage {
    pub container: Arc<Container>,
    pub timestamp: i64,
    /// Cumulative CPU time, ns.
    pub cpu_ns: Option<u64>,
    /// CPU use since the previous sample, core-nanoseconds per second.
    pub nano_cores: Option<u64>,
    pub memory: Option<Memory>,
    /// Bytes and inodes of the writable layer.
    pub writable_layer: Option<(u64, u64)>,
}

/// One pod's usage: its cgroup (the cgroup parent kubelet gives it), its
/// network namespace, its running containers.
#[derive(Clone)]
pub struct PodUsage {
    pub sandbox: Arc<Sandbox>,
    pub timestamp: i64,
    pub cpu_ns: Option<u64>,
    pub nano_cores: Option<u64>,
    pub memory: Option<Memory>,
    pub interfaces: Vec<stats::Interface>,
    pub processes: Option<u64>,
    pub containers: Vec<ContainerUsage>,
}

/// `ListContainerStats`' filter (AND of what is set).
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    pub id: String,
    pub pod_sandbox_id: String,
    pub label_selector: std::collections::BTreeMap<String, String>,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// How many processes the cgroup at `cgroups_path` holds.
fn cgroup_processes(cgroups_path: &str, unified: bool) -> Option<u64> {
    if !cgroups_path.starts_with('/') {
        return None;
    }
    let rel = cgroups_path.trim_start_matches('/');
    let dir = if unified {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup/pids").join(rel)
    };
    read(&dir.join("pids.current")).and_then(|s| s.trim().parse().ok())
}

/// CPU and memory of the cgroup at `cgroups_path` (a cgroupfs path; a
/// systemd `slice:prefix:name` gives nothing).
fn cgroup_usage(cgroups_path: &str, unified: bool) -> (Option<u64>, Option<Memory>) {
    if !cgroups_path.starts_with('/') {
        return (None, None);
    }
    let rel = cgroups_path.trim_start_matches('/');
    if unified {
        let dir = Path::new("/sys/fs/cgroup").join(rel);
        let cpu = read(&dir.join("cpu.stat")).and_then(|s| stats::cpu_v2(&s));
        let memory = match (
            read(&dir.join("memory.current")),
            read(&dir.join("memory.max")),
            read(&dir.join("memory.stat")),
        ) {
            (Some(c), Some(m), Some(s)) => stats::memory_v2(&c, &m, &s),
            _ => None,
        };
        (cpu, memory)
    } else {
        let cpu = read(
            &Path::new("/sys/fs/cgroup/cpuacct")
                .join(rel)
                .join("cpuacct.usage"),
        )
        .and_then(|s| stats::cpu_v1(&s));
        let mem = Path::new("/sys/fs/cgroup/memory").join(rel);
        let memory = match (
            read(&mem.join("memory.usage_in_bytes")),
            read(&mem.join("memory.limit_in_bytes")),
            read(&mem.join("memory.stat")),
        ) {
            (Some(u), Some(l), Some(s)) => stats::memory_v1(&u, &l, &s),
            _ => None,
        };
        (cpu, memory)
    }
}

impl Pods {
    /// Usage of pod sandbox `id` and its running containers.
    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<PodUsage> {
        let s = self
            .store
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id}")))?;
        self.pod_usage(s).await
    }

    /// Usage of the ready sandboxes whose id starts with `id` and whose
    /// labels match.
    pub async fn list_pod_sandbox_stats(
        &self,
        id: &str,
        label_selector: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<PodUsage>> {
        let mut out = Vec::new();
        for s in self.store.all() {
            if (!id.is_empty() && !s.meta.id.starts_with(id))
                || !label_selector
                    .iter()
                    .all(|(k, v)| s.meta.labels.get(k) == Some(v))
                || s.state() != SandboxState::Ready
            {
                continue;
            }
            out.push(self.pod_usage(s).await?);
        }
        out.sort_by_key(|u| u.sandbox.meta.created_at);
        Ok(out)
    }

    async fn pod_usage(&self, sandbox: Arc<Sandbox>) -> Result<PodUsage> {
        let timestamp = crate::now_ns();
        let parent = sandbox.meta.cgroup_parent.clone();
        let pid = sandbox.pid();
        let unified = self.host.cgroup_unified;
        let (cpu_ns, memory, processes, interfaces) = tokio::task::spawn_blocking(move || {
            let (cpu, memory) = cgroup_usage(&parent, unified);
            let processes = cgroup_processes(&parent, unified);
            let interfaces = pid
                .and_then(|pid| read(Path::new(&format!("/proc/{pid}/net/dev"))))
                .map(|t| stats::net_dev(&t))
                .unwrap_or_default();
            (cpu, memory, processes, interfaces)
        })
        .await
        .map_err(|e| Error::Internal(format!("stats task: {e}")))?;
        let nano_cores = cpu_ns.and_then(|now| self.cpu_rate(&sandbox.meta.id, timestamp, now));
        let mut containers = Vec::new();
        for c in self.containers.all() {
            if c.meta.sandbox_id == sandbox.meta.id && c.status().state == ContainerState::Running {
                containers.push(self.usage_of(c).await?);
            }
        }
        Ok(PodUsage {
            sandbox,
            timestamp,
            cpu_ns,
            nano_cores,
            memory,
            interfaces,
            processes,
            containers,
        })
    }

    /// The bytes and inodes of the container's writable layer.
    async fn writable_layer(&self, c: &Container) -> Result<Option<(u64, u64)>> {
        if c.meta.snapshotter.is_empty() {
            return Ok(None);
        }
        Ok(self
            .containerd
            .snapshot_usage(&c.meta.snapshotter, &c.meta.id)
            .await?
            .map(|u| (u.bytes, u.inodes)))
    }

    /// The CPU rate since the previous sample of `key`; records this one.
    fn cpu_rate(&self, key: &str, timestamp: i64, usage: u64) -> Option<u64> {
        let mut last = self.cpu_samples.lock().ok()?;
        let earlier = last.insert(key.to_string(), (timestamp, usage));
        earlier.and_then(|e| stats::nano_cores(e, (timestamp, usage)))
    }

    /// Usage of container `id` (a running one; others have none).
    pub async fn container_stats(&self, id: &str) -> Result<ContainerUsage> {
        let c = self
            .containers
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("container {id}")))?;
        self.usage_of(c).await
    }

    /// Usage of the containers `filter` selects: CPU and memory of running
    /// ones, the writable layer of all (as containerd lists them: kubelet
    /// accounts the disk of exited containers too).
    pub async fn list_container_stats(&self, filter: &StatsFilter) -> Result<Vec<ContainerUsage>> {
        let mut out = Vec::new();
        for c in self.containers.all() {
            let m = &c.meta;
            if (!filter.id.is_empty() && !m.id.starts_with(&filter.id))
                || (!filter.pod_sandbox_id.is_empty()
                    && !m.sandbox_id.starts_with(&filter.pod_sandbox_id))
                || !filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| m.labels.get(k) == Some(v))
            {
                continue;
            }
            out.push(self.usage_of(c).await?);
        }
        out.sort_by_key(|u| u.container.meta.created_at);
        Ok(out)
    }

    async fn usage_of(&self, c: Arc<Container>) -> Result<ContainerUsage> {
        let timestamp = crate::now_ns();
        let writable_layer = self.writable_layer(&c).await?;
        if c.status().state != ContainerState::Running {
            return Ok(ContainerUsage {
                container: c,
                timestamp,
                cpu_ns: None,
                nano_cores: None,
                memory: None,
                writable_layer,
            });
        }
        let cgroups_path = if c.meta.cgroups_path.is_empty() {
            self.containerd
                .container_get(&c.meta.id)
                .await?
                .and_then(|r| r.spec.linux().as_ref()?.cgroups_path().clone())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        } else {
            c.meta.cgroups_path.clone()
        };
        let unified = self.host.cgroup_unified;
        let (cpu_ns, memory) =
            tokio::task::spawn_blocking(move || cgroup_usage(&cgroups_path, unified))
                .await
                .map_err(|e| Error::Internal(format!("stats task: {e}")))?;
        let nano_cores = cpu_ns.and_then(|now| self.cpu_rate(&c.meta.id, timestamp, now));
        Ok(ContainerUsage {
            container: c,
            timestamp,
            cpu_ns,
            nano_cores,
            memory,
            writable_layer,
        })
    }
}
