//! Issue 16: pods without a pause process. A pod whose containers each
//! have their own PID namespace (kubelet's default) gets pinned network,
//! IPC and UTS namespaces on a runc-family handler; its containers share
//! them. A pod sharing one PID namespace still gets a pause process.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::client::{self, Cri};
use crius_testkit::images as ti;
use nix::sys::signal::Signal;

use crate::Env;
use crate::containers::{container, create, start, status};
use crate::pods::{PodEnv, config, ready, run, status as verbose_status};

crate::tests![
    containers_of_a_pinned_pod_share_network_ipc_and_uts,
    a_shared_pid_namespace_gets_a_pause_process,
    pinned_pods_survive_a_killed_daemon_and_stop_for_good,
    host_namespaces_of_a_pinned_pod_are_the_hosts,
    killed_between_pinning_and_cni_leaves_nothing,
];

/// kubelet's default pod: each container its own PID namespace.
pub(crate) fn pinned_config(name: &str) -> v1::PodSandboxConfig {
    let mut c = config(name);
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: v1::NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        sysctls: HashMap::from([
            ("kernel.shmmni".to_string(), "1234".to_string()),
            ("net.ipv4.ping_group_range".to_string(), "0 0".to_string()),
        ]),
        ..Default::default()
    });
    c
}

async fn exec(cri: &mut Cri, id: &str, script: &str) -> anyhow::Result<String> {
    let r = cri
        .runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    ensure!(
        r.exit_code == 0,
        "{script}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    Ok(String::from_utf8_lossy(&r.stdout).trim().to_string())
}

/// Two running containers (busybox `sleep`) in pod `pod`.
async fn two_sleepers(p: &mut PodEnv, env: &Env, pod: &str) -> anyhow::Result<[String; 2]> {
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let id = create(&mut p.cri, pod, container(name, &image, &["sleep", "1000"])).await?;
        start(&mut p.cri, &id).await?;
        ids.push(id);
    }
    Ok([ids[0].clone(), ids[1].clone()])
}

/// Creates a SysV shared memory segment with `key` inside the IPC
/// namespace pinned at `pin`, from the host (busybox has no ipcmk).
fn shm_segment_in(pin: &Path, key: u32) -> anyhow::Result<()> {
    let script = format!(
        "import ctypes, sys\nid = ctypes.CDLL(None).shmget({key}, 4096, 0o1600)\nsys.exit(id < 0)"
    );
    let out = Command::new("nsenter")
        .arg(format!("--ipc={}", pin.display()))
        .args(["/usr/bin/python3", "-c", &script])
        .output()
        .context("nsenter and python3")?;
    ensure!(
        out.status.success(),
        "shmget: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn containers_of_a_pinned_pod_share_network_ipc_and_uts(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let pod = run(&mut p.cri, pinned_config("pinned")).await?;
    let (s, info) = verbose_status(&mut p.cri, &pod).await?;
    ensure!(ready(&s), "{s:?}");
    ensure!(
        info["pid"].as_u64().is_none(),
        "a pinned pod has no pause process: {info}"
    );
    ensure!(
        p.containerd.task_get(&pod).await?.is_none(),
        "a sandbox task exists"
    );
    let ipc_pin = p.pins_dir().join(format!("{pod}.ipc"));
    let uts_pin = p.pins_dir().join(format!("{pod}.uts"));
    ensure!(
        info["pinned"]["ipc"] == ipc_pin.display().to_string(),
        "{info}"
    );
    ensure!(
        info["pinned"]["uts"] == uts_pin.display().to_string(),
        "{info}"
    );
    // The pin holds the hostname itself (runc sets it again per container).
    let out = Command::new("nsenter")
        .arg(format!("--uts={}", uts_pin.display()))
        .arg("hostname")
        .output()?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "pinned",
        "{out:?}"
    );
    let key = 305_419_896_u32;
    shm_segment_in(&ipc_pin, key)?;
    let [one, two] = two_sleepers(&mut p, &env, &pod).await?;
    let probe = format!(
        "for ns in net ipc uts; do readlink /proc/self/ns/$ns; done; hostname; \
         cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ping_group_range; \
         grep -c -E '^ *{key} ' /proc/sysvipc/shm; readlink /proc/self/ns/pid"
    );
    let a = exec(&mut p.cri, &one, &probe).await?;
    let b = exec(&mut p.cri, &two, &probe).await?;
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    ensure!(a.len() == 8 && b.len() == 8, "{a:?} {b:?}");
    // Network, IPC and UTS namespaces, hostname, sysctls and the segment:
    // the same in both; PID namespaces: one each.
    ensure!(a[..7] == b[..7], "{a:?} vs {b:?}");
    ensure!(a[7] != b[7], "one PID namespace for both: {a:?}");
    ensure!(a[3] == "pinned" && a[4] == "1234", "{a:?}");
    ensure!(a[5].split_whitespace().eq(["0", "0"]), "{a:?}");
    ensure!(
        a[6] == "1",
        "the segment made in the pin is not seen: {a:?}"
    );
    for (i, ns) in ["net", "ipc", "uts"].iter().enumerate() {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}"))?;
        ensure!(Path::new(a[i]) != host, "the host's {ns} namespace: {a:?}");
    }
    let host_shm = std::fs::read_to_string("/proc/sysvipc/shm")?;
    let on_host = host_shm
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&key.to_string()));
    ensure!(!on_host, "the segment is the host's");
    // The pod's IP is on the containers' eth0.
    let ip = s.network.map(|n| n.ip).unwrap_or_default();
    let addrs = exec(&mut p.cri, &one, "ip -o -4 addr show eth0").await?;
    ensure!(addrs.contains(&format!(" {ip}/")), "{ip} not in {addrs}");
    // Stats read the pod's network through its netns.
    let stats = p
        .cri
        .runtime
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?
        .into_inner();
    let net = stats.stats.and_then(|s| s.linux).and_then(|l| l.network);
    ensure!(
        net.is_some_and(|n| n
            .interfaces
            .iter()
            .chain(&n.default_interface)
            .any(|i| i.name == "eth0")),
        "no eth0 in the pod's network stats"
    );
    p.remove_all_and_check().await
}

async fn a_shared_pid_namespace_gets_a_pause_process(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut c = pinned_config("shared");
    if let Some(ns) = c
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = v1::NamespaceMode::Pod as i32;
    }
    let pod = run(&mut p.cri, c).await?;
    let (s, info) = verbose_status(&mut p.cri, &pod).await?;
    ensure!(ready(&s), "{s:?}");
    ensure!(
        info["pid"].as_u64().is_some_and(|p| p > 0),
        "no pause process: {info}"
    );
    ensure!(
        p.containerd.task_get(&pod).await?.is_some(),
        "no sandbox task"
    );
    ensure!(
        !p.pins_dir().join(format!("{pod}.ipc")).exists(),
        "pinned too"
    );
    let [one, _] = two_sleepers(&mut p, &env, &pod).await?;
    // PID 1 of the shared namespace is the pause process.
    let init = exec(&mut p.cri, &one, "cat /proc/1/cmdline").await?;
    ensure!(init.starts_with("/pause"), "PID 1 is {init:?}");
    p.remove_all_and_check().await
}

async fn pinned_pods_survive_a_killed_daemon_and_stop_for_good(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let kept = run(&mut p.cri, pinned_config("kept")).await?;
    let stopped = run(&mut p.cri, pinned_config("stopped")).await?;
    let [one, _] = two_sleepers(&mut p, &env, &kept).await?;
    let hostname_before = exec(&mut p.cri, &one, "hostname").await?;
    p.cri
        .runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: stopped.clone(),
        })
        .await?;
    ensure!(
        !p.pins_dir().join(format!("{stopped}.ipc")).exists(),
        "a stop unpins"
    );
    for round in 0..2 {
        let daemon = p.daemon.as_mut().context("no daemon")?;
        daemon.restart(Signal::SIGKILL)?;
        daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
        p.cri = client::connect(p.daemon().socket()).await?;
        let (k, _) = verbose_status(&mut p.cri, &kept).await?;
        let (s, _) = verbose_status(&mut p.cri, &stopped).await?;
        ensure!(ready(&k) && !ready(&s), "round {round}: {k:?} {s:?}");
        let c = status(&mut p.cri, &one).await?;
        ensure!(
            c.state == v1::ContainerState::ContainerRunning as i32,
            "{c:?}"
        );
        ensure!(exec(&mut p.cri, &one, "hostname").await? == hostname_before);
    }
    // A new container still joins the kept pod.
    let image = env.images.reference(ti::BUSYBOX);
    let late = create(
        &mut p.cri,
        &kept,
        container("late", &image, &["sleep", "1000"]),
    )
    .await?;
    start(&mut p.cri, &late).await?;
    ensure!(exec(&mut p.cri, &late, "hostname").await? == hostname_before);
    p.remove_all_and_check().await
}

async fn host_namespaces_of_a_pinned_pod_are_the_hosts(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut c = config("host-ns");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: v1::NamespaceMode::Node as i32,
                ipc: v1::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run(&mut p.cri, c).await?;
    let (s, info) = verbose_status(&mut p.cri, &pod).await?;
    ensure!(ready(&s) && info["pid"].as_u64().is_none(), "{info}");
    ensure!(
        !p.pins_dir().join(format!("{pod}.ipc")).exists(),
        "the host's IPC is not pinned"
    );
    let [one, _] = two_sleepers(&mut p, &env, &pod).await?;
    for (ns, host) in [("pid", true), ("ipc", true), ("net", false), ("uts", false)] {
        let inside = exec(&mut p.cri, &one, &format!("readlink /proc/self/ns/{ns}")).await?;
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}"))?;
        ensure!(
            (Path::new(&inside) == mine) == host,
            "{ns}: {inside} (host {})",
            mine.display()
        );
    }
    p.remove_all_and_check().await
}

/// A CNI directory whose IPAM plugin (host-local, run by bridge once the
/// pod's veth exists) sleeps `secs` before each ADD.
fn slow_ipam(secs: u32) -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("crius-slow-cni-")
        .tempdir_in("/tmp")?;
    for plugin in ["bridge", "portmap", "loopback"] {
        std::os::unix::fs::symlink(format!("/usr/lib/cni/{plugin}"), dir.path().join(plugin))?;
    }
    let ipam = dir.path().join("host-local");
    std::fs::write(
        &ipam,
        format!(
            "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] && sleep {secs}\nexec /usr/lib/cni/host-local \"$@\"\n"
        ),
    )?;
    std::fs::set_permissions(&ipam, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

async fn killed_between_pinning_and_cni_leaves_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let cni = slow_ipam(4)?;
    // The [cni] table is the config file's last: a line appended joins it.
    let config = p.daemon().dir().join("config.toml");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "bin_dirs = [{:?}]\n",
        cni.path().display().to_string()
    ));
    std::fs::write(&config, text)?;
    let daemon = p.daemon.as_mut().context("no daemon")?;
    daemon.restart(Signal::SIGTERM)?;
    daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
    p.cri = client::connect(p.daemon().socket()).await?;
    let mut cri = p.cri.clone();
    let doomed = tokio::spawn(async move { run(&mut cri, pinned_config("doomed")).await });
    // Pinned, and the ADD is sleeping: kill the daemon in that window.
    let mut pinned = false;
    for _ in 0..100 {
        pinned = std::fs::read_dir(p.pins_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().ends_with(".ipc"))
            })
            .unwrap_or(false);
        if pinned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(pinned, "the run never pinned its namespaces");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        adds_running(cni.path()) > 0,
        "no CNI ADD in flight at the kill"
    );
    let daemon = p.daemon.as_mut().context("no daemon")?;
    daemon.restart(Signal::SIGKILL)?;
    ensure!(doomed.await?.is_err(), "the run finished despite the kill");
    daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
    p.cri = client::connect(p.daemon().socket()).await?;
    // Start-up killed the ADD the dead daemon left running (it sleeps 4 s):
    // finishing after start-up's DEL, an IPAM that keeps its own books
    // (Calico, Cilium...) would leak the pod's address.
    ensure!(
        adds_running(cni.path()) == 0,
        "a CNI ADD of the killed daemon still runs"
    );
    let left = crate::pods::list_pods_pub(&mut p.cri).await?;
    ensure!(left.is_empty(), "{left:?}");
    p.remove_all_and_check().await
}

/// Processes running a CNI ADD (their environment says `CNI_COMMAND=ADD`).
/// CNI ADDs running with plugins from `bin_dir` (this test's daemon's:
/// other tests' pods run their own ADDs meanwhile).
fn adds_running(bin_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let path = format!("CNI_PATH={}", bin_dir.display()).into_bytes();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
                vars.contains(&&b"CNI_COMMAND=ADD"[..]) && vars.iter().any(|v| v.starts_with(&path))
            })
        })
        .count()
}
