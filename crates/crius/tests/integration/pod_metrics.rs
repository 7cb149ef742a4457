//! Issue 15: ListMetricDescriptors / ListPodSandboxMetrics (kubelet's
//! CRI-only stats): a busy container's metrics match its cgroup, and every
//! metric matches a descriptor.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use crius_cri_api::v1;

use crate::Env;
use crate::containers::{container, create, start};
use crate::pods::{PodEnv, config, run};

crate::tests![a_busy_containers_metrics_match_its_cgroup];

/// A cgroup v1 file of the process `pid` in `controller`.
fn cgroup_file(pid: i32, controller: &str, file: &str) -> anyhow::Result<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })
        .with_context(|| format!("no {controller} cgroup for {pid}"))?;
    // `/sys/fs/cgroup/cpuacct` is the mount, or a link to `cpu,cpuacct`.
    let text = std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}"))?;
    Ok(text.trim().parse()?)
}

fn value(m: &v1::ContainerMetrics, name: &str) -> Option<u64> {
    m.metrics
        .iter()
        .find(|x| x.name == name)
        .and_then(|x| x.value.as_ref())
        .map(|v| v.value)
}

async fn a_busy_containers_metrics_match_its_cgroup(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let pod = run(&mut p.cri, config("metrics-busy")).await?;
    let busy = container("busy", &image, &["sh", "-c", "while :; do :; done"]);
    let id = create(&mut p.cri, &pod, busy).await?;
    start(&mut p.cri, &id).await?;
    let pid = i32::try_from(crate::containers::status_verbose_pid(&mut p.cri, &id).await?)?;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let descriptors = p
        .cri
        .runtime
        .list_metric_descriptors(v1::ListMetricDescriptorsRequest {})
        .await?
        .into_inner()
        .descriptors;
    let cpu_before = cgroup_file(pid, "cpuacct", "cpuacct.usage")?;
    let metrics = p
        .cri
        .runtime
        .list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {})
        .await?
        .into_inner()
        .pod_metrics;
    let cpu_after = cgroup_file(pid, "cpuacct", "cpuacct.usage")?;
    let memory = cgroup_file(pid, "memory", "memory.usage_in_bytes")?;
    let pm = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == pod)
        .context("the pod's metrics")?;
    for m in pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| &c.metrics))
    {
        let d = descriptors.iter().find(|d| d.name == m.name);
        let d = d.with_context(|| format!("{} has no descriptor", m.name))?;
        ensure!(
            d.label_keys.len() == m.label_values.len(),
            "{}: {:?} vs {:?}",
            m.name,
            d.label_keys,
            m.label_values
        );
    }
    let cm = pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .context("the container's")?;
    let cpu = value(cm, "container_cpu_usage_seconds_total").context("cpu")?;
    ensure!(
        cpu >= 1 && cpu >= cpu_before / 1_000_000_000 && cpu <= cpu_after / 1_000_000_000,
        "cpu {cpu} s, the cgroup {cpu_before}..{cpu_after} ns"
    );
    let usage = value(cm, "container_memory_usage_bytes").context("memory")?;
    ensure!(
        usage.abs_diff(memory) < 4 << 20,
        "memory {usage} B, the cgroup {memory} B"
    );
    let ws = value(cm, "container_memory_working_set_bytes").context("working set")?;
    ensure!(ws <= usage && ws > 0, "working set {ws}, usage {usage}");
    ensure!(
        pm.metrics
            .iter()
            .any(|m| m.name == "container_network_receive_bytes_total"),
        "the pod's network: {:?}",
        pm.metrics
    );
    pressure_matches_the_cgroup(&mut p, &id, pid, cm).await?;
    p.remove_all_and_check().await
}

/// The cgroup v2 pressure file of process `pid` (on a v1 host, in its
/// unified hierarchy); `None` where the kernel keeps none.
fn pressure_file(pid: i32, resource: &str) -> anyhow::Result<Option<String>> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let Some(path) = cgroups.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Ok(None);
    };
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let file = format!("{root}{path}/{resource}.pressure");
        if let Ok(text) = std::fs::read_to_string(&file) {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// `some`'s total of a pressure file, ns.
fn some_total_ns(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let total = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("total="))?;
    total.parse::<u64>().ok().map(|us| us * 1000)
}

/// PSI, where this kernel has it for the container's cgroup: in
/// ContainerStats (CPU, memory, I/O) and as cadvisor's pressure metrics,
/// within what the cgroup's file says before and after.
async fn pressure_matches_the_cgroup(
    p: &mut crate::pods::PodEnv,
    id: &str,
    pid: i32,
    cm: &v1::ContainerMetrics,
) -> anyhow::Result<()> {
    let host_has_psi = [
        "/sys/fs/cgroup/unified/cpu.pressure",
        "/sys/fs/cgroup/cpu.pressure",
    ]
    .iter()
    .any(|f| std::path::Path::new(f).exists());
    let Some(before) = pressure_file(pid, "cpu")? else {
        ensure!(
            !host_has_psi,
            "the host keeps PSI, the container's cgroup none"
        );
        // No PSI here: nothing may claim it.
        ensure!(value(cm, "container_pressure_cpu_waiting_seconds_total").is_none());
        return Ok(());
    };
    let before = some_total_ns(&before).context("cpu.pressure")?;
    let stats = p
        .cri
        .runtime
        .container_stats(v1::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await?
        .into_inner()
        .stats
        .context("stats")?;
    let after = pressure_file(pid, "cpu")?.and_then(|t| some_total_ns(&t));
    let cpu = stats.cpu.and_then(|c| c.psi).and_then(|p| p.some);
    let total = cpu
        .map(|s| s.total)
        .context("no CPU PSI in ContainerStats")?;
    ensure!(
        before <= total && Some(total) <= after,
        "CPU PSI {total} ns, the cgroup {before}..{after:?}"
    );
    ensure!(stats.memory.and_then(|m| m.psi).is_some(), "no memory PSI");
    ensure!(stats.io.and_then(|i| i.psi).is_some(), "no I/O PSI");
    ensure!(
        value(cm, "container_pressure_cpu_waiting_seconds_total").is_some(),
        "no pressure metric: {:?}",
        cm.metrics
    );
    Ok(())
}
