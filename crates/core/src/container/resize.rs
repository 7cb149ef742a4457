//! UpdateContainerResources (in-place resize): new resources merged over
//! a container's spec as containerd merges them (`WithResources`): each
//! value the update sets replaces the spec's, a value it leaves at zero
//! (or empty) stays as it was. The spec is then what the container runs
//! with, now or at its start, and what `ContainerStatus.resources` reads.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources, Spec};

use super::ContainerResources;
use super::spec::{HostFacts, linux_resources};
use crate::Result;

/// `spec` with `update` applied (checked as CreateContainer checks it).
pub fn resized(spec: &Spec, update: &ContainerResources, host: &HostFacts) -> Result<Spec> {
    let new = linux_resources(update, host)?;
    let mut spec = spec.clone();
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut r = linux.resources().clone().unwrap_or_default();
    if let Some(cpu) = new.cpu() {
        r.set_cpu(Some(merged_cpu(r.cpu().clone().unwrap_or_default(), cpu)));
    }
    if let Some(memory) = new.memory() {
        let old = r.memory().unwrap_or_default();
        r.set_memory(Some(merged_memory(old, memory)));
    }
    if let Some(pages) = new.hugepage_limits() {
        r.set_hugepage_limits(Some(pages.clone()));
    }
    if let Some(unified) = new.unified() {
        let mut all = r.unified().clone().unwrap_or_default();
        all.extend(unified.clone());
        r.set_unified(Some(all));
    }
    linux.set_resources(Some(r));
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn merged_cpu(mut old: LinuxCpu, new: &LinuxCpu) -> LinuxCpu {
    if new.period().is_some() {
        old.set_period(new.period());
    }
    if new.quota().is_some() {
        old.set_quota(new.quota());
    }
    if new.shares().is_some() {
        old.set_shares(new.shares());
    }
    if new.cpus().is_some() {
        old.set_cpus(new.cpus().clone());
    }
    if new.mems().is_some() {
        old.set_mems(new.mems().clone());
    }
    old
}

fn merged_memory(mut old: LinuxMemory, new: &LinuxMemory) -> LinuxMemory {
    if new.limit().is_some() {
        old.set_limit(new.limit());
    }
    if new.swap().is_some() {
        old.set_swap(new.swap());
    }
    old
}

/// What a running task is updated with: the spec's resources without its
/// device rules (runc's update does not take them; they stay as created).
pub fn task_resources(spec: &Spec) -> LinuxResources {
    let mut r = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    r.set_devices(None);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::resources_in_force;

    fn host() -> HostFacts {
        HostFacts {
            daemon_oom_score_adj: 0,
            capabilities: vec![],
            cgroup_controllers: ["cpu", "memory"].map(String::from).into(),
            memory_swap: true,
            cgroup_unified: false,
            apparmor: crate::apparmor::Mode::Disabled,
            kernel_version: Some((6, 1)),
        }
    }

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "oomScoreAdj": 100},
            "linux": {"resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "cpu": {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"},
                "memory": {"limit": 268435456, "swap": 268435456}
            }}
        }))
        .expect("a spec")
    }

    #[test]
    fn what_the_update_sets_replaces_and_the_rest_stays() -> Result<()> {
        let update = ContainerResources {
            cpu_quota: 150_000,
            memory_limit_in_bytes: 512 << 20,
            ..Default::default()
        };
        let new = resized(&spec(), &update, &host())?;
        let r = resources_in_force(&new);
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares),
            (100_000, 150_000, 512)
        );
        assert_eq!(r.cpuset_cpus, "0");
        // The swap limit follows the memory limit (no swapping), as at create.
        assert_eq!(
            (r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes),
            (512 << 20, 512 << 20)
        );
        // The process and the device rules are untouched.
        assert_eq!(r.oom_score_adj, 100);
        let devices = new
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .and_then(|r| r.devices().clone());
        assert_eq!(devices.map(|d| d.len()), Some(1));
        // The task gets the whole set, without device rules.
        let t = task_resources(&new);
        assert!(t.devices().is_none());
        assert_eq!(t.cpu().as_ref().and_then(|c| c.quota()), Some(150_000));
        assert_eq!(t.memory().as_ref().and_then(|m| m.limit()), Some(512 << 20));
        Ok(())
    }

    #[test]
    fn an_empty_update_changes_nothing_and_a_bad_one_is_refused() -> Result<()> {
        let same = resized(&spec(), &ContainerResources::default(), &host())?;
        assert_eq!(resources_in_force(&same), resources_in_force(&spec()));
        let unified = ContainerResources {
            unified: [("memory.high".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        assert!(
            resized(&spec(), &unified, &host()).is_err(),
            "unified on cgroup v1"
        );
        Ok(())
    }
}
