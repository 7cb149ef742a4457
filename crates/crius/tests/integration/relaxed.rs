//! Issue 11: requests containerd's CRI accepts, which crius used to refuse,
//! really run: a hostname that is not RFC 1123, a sysctl value with a
//! comma, port mappings without a host port, pod resources that would make
//! runc fail if applied to the pause container, an absolute log path, an
//! unknown capability.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::ensure;
use crius_cri_api::v1;
use crius_testkit::images as ti;

use crate::Env;
use crate::containers::{container, create, start, status, wait_exited};
use crate::pods::{PodEnv, config, run};

crate::tests![relaxed_requests_run];

async fn relaxed_requests_run(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let logs = tempfile::tempdir()?;
    let mut c = config("relaxed");
    c.hostname = "crictl_host".into();
    c.log_directory = format!("{}/./pod/../pod", logs.path().display());
    c.port_mappings = vec![
        // What kubelet sends for every container port: no host port.
        v1::PortMapping {
            protocol: v1::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 0,
            host_ip: String::new(),
        },
        // Dropped whatever else it says, as containerd drops it.
        v1::PortMapping {
            protocol: v1::Protocol::Udp as i32,
            container_port: 0,
            host_port: -1,
            host_ip: "not-an-ip".into(),
        },
    ];
    c.linux = Some(v1::LinuxPodSandboxConfig {
        sysctls: HashMap::from([
            // A Kubernetes safe sysctl whose value is a list.
            (
                "net.ipv4.ip_local_reserved_ports".to_string(),
                "8080,9148".to_string(),
            ),
            // The same one spelt with slashes, saying the same.
            (
                "net/ipv4/ip_local_reserved_ports".to_string(),
                "8080,9148".to_string(),
            ),
        ]),
        // Only annotations, as in containerd: applied to the pause
        // container, a quota of 1 µs would make runc fail the pod.
        resources: Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 1,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run(&mut p.cri, c).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;

    let mut cc = container(
        "relaxed",
        &image,
        &[
            "sh",
            "-c",
            "hostname; cat /proc/sys/net/ipv4/ip_local_reserved_ports",
        ],
    );
    // containerd joins it under the log directory (Go's filepath.Join).
    cc.log_path = "/abs.log".into();
    cc.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            // Ignored with a warning, as runc ignores it.
            capabilities: Some(v1::Capability {
                add_capabilities: vec!["CAP_FLY".into(), "NET_ADMIN".into()],
                drop_capabilities: vec!["NOPE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let cri = &mut p.cri;
    let id = create(cri, &pod, cc).await?;
    let want_log = logs.path().join("pod/abs.log");
    let s = status(cri, &id).await?;
    ensure!(
        s.log_path == want_log.display().to_string(),
        "log path {:?}, expected {want_log:?}",
        s.log_path
    );
    start(cri, &id).await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 0, "{s:?}");
    let log = std::fs::read_to_string(&want_log)?;
    ensure!(log.contains(" stdout F crictl_host"), "{log}");
    ensure!(log.contains(" stdout F 8080,9148"), "{log}");
    ensure!(
        !logs.path().join("abs.log").exists() && !std::path::Path::new("/abs.log").exists(),
        "the log landed elsewhere"
    );
    p.remove_all_and_check().await
}
