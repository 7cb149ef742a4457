//! What `ContainerStatus.resources` and `.user` report: the resources in
//! force and the process' identity, read back from the container's OCI
//! spec (what runc applied), as containerd reports them. Limits crius left out (hugepages without a hugetlb
//! controller, swap without swap accounting) are not reported.

use oci_spec::runtime::Spec;

use super::{ContainerResources, User};

/// The uid, gid and groups the container's process runs with (`None`: the
/// spec has no process).
pub fn user_in_force(spec: &Spec) -> Option<User> {
    let user = spec.process().as_ref()?.user();
    Some(User {
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
    })
}

/// The CRI resources of `spec`: CPU, cpuset, memory, swap, hugepages and
/// unified from `linux.resources`, `oom_score_adj` from the process.
pub fn resources_in_force(spec: &Spec) -> ContainerResources {
    let mut out = ContainerResources {
        oom_score_adj: spec
            .process()
            .as_ref()
            .and_then(|p| p.oom_score_adj())
            .map_or(0, i64::from),
        ..Default::default()
    };
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else {
        return out;
    };
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    if let Some(cpu) = r.cpu() {
        out.cpu_period = cpu.period().map_or(0, signed);
        out.cpu_quota = cpu.quota().unwrap_or(0);
        out.cpu_shares = cpu.shares().map_or(0, signed);
        out.cpuset_cpus = cpu.cpus().clone().unwrap_or_default();
        out.cpuset_mems = cpu.mems().clone().unwrap_or_default();
    }
    if let Some(memory) = r.memory() {
        out.memory_limit_in_bytes = memory.limit().unwrap_or(0);
        out.memory_swap_limit_in_bytes = memory.swap().unwrap_or(0);
    }
    out.hugepage_limits = r
        .hugepage_limits()
        .iter()
        .flatten()
        .map(|h| (h.page_size().clone(), u64::try_from(h.limit()).unwrap_or(0)))
        .collect();
    out.unified = r
        .unified()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_the_specs_process_user() -> Result<(), serde_json::Error> {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"cwd": "/", "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 1234]}},
        }))?;
        assert_eq!(
            user_in_force(&spec),
            Some(User {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1000, 1234]
            })
        );
        let bare: Spec = serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2-dev"}))?;
        assert_eq!(user_in_force(&bare), None);
        Ok(())
    }

    #[test]
    fn read_back_from_a_spec() -> Result<(), serde_json::Error> {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"cwd": "/", "oomScoreAdj": 1000, "user": {"uid": 0, "gid": 0}},
            "linux": {"resources": {
                "cpu": {"period": 100000, "quota": 50000, "shares": 2, "cpus": "0-1"},
                "memory": {"limit": 268435456, "swap": 268435456},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "unified": {"memory.high": "1000"}
            }}
        }))?;
        let r = resources_in_force(&spec);
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares, r.oom_score_adj),
            (100_000, 50_000, 2, 1000)
        );
        assert_eq!(r.cpuset_cpus, "0-1");
        assert_eq!(r.memory_limit_in_bytes, 256 << 20);
        assert_eq!(r.memory_swap_limit_in_bytes, 256 << 20);
        assert_eq!(r.hugepage_limits, vec![("2MB".to_string(), 0)]);
        assert_eq!(
            r.unified.get("memory.high").map(String::as_str),
            Some("1000")
        );
        // No resources at all: nothing but the process' score.
        let bare: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}}
        }))?;
        assert_eq!(resources_in_force(&bare), ContainerResources::default());
        Ok(())
    }
}
