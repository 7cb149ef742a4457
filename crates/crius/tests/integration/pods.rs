//! Issue 4: pod sandboxes over real containerd, runc and CNI plugins.
//! Each test has a daemon of its own (own containerd namespace, own CNI
//! bridge and subnet), torn down with nothing left behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::client::{self, Cri};
use crius_testkit::criusd::Criusd;
use nix::sys::signal::Signal;

use crate::Env;

crate::tests![
    run_status_stop_remove,
    hostname_dns_and_hosts_files,
    sysctls_are_applied,
    bad_sysctls_are_refused_and_nothing_is_left,
    missing_metadata_is_invalid,
    list_filters,
    twenty_pods_in_parallel,
    host_network_pod_sees_host_interfaces,
    host_port_reaches_the_pod,
    labels_and_annotations_in_containerd,
    identical_retry_gets_the_same_id,
    daemon_restart_keeps_pods_running,
    cli_pod_commands,
    failed_cni_add_leaves_nothing,
    killed_mid_run_leaves_nothing,
    sandbox_image_is_unpacked_lazily,
    host_pid_and_ipc_and_cgroup_parent,
    lost_shims_go_with_their_pod,
    pause_death_shows_at_once,
];

static NEXT: AtomicUsize = AtomicUsize::new(1);

/// The default handler with a pause process for every pod.
pub(crate) const PAUSE_HANDLER: &str =
    "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nsandbox_mode = \"pause\"\n";

/// A daemon with a CNI network of its own.
pub(crate) struct PodEnv {
    pub(crate) daemon: Option<Criusd>,
    pub(crate) cri: Cri,
    bridge: String,
    subnet: String,
    pub(crate) containerd: crius_containerd::Containerd,
    /// Its containerd namespace (of its own: a shim's command line names it).
    pub(crate) namespace: String,
}

impl PodEnv {
    pub(crate) async fn start(env: &Env) -> anyhow::Result<PodEnv> {
        Self::start_with_range(env, None).await
    }

    /// With `last_octets = Some((a, b))`, host-local hands out only
    /// `.a` to `.b` of the subnet.
    async fn start_with_range(env: &Env, last_octets: Option<(u8, u8)>) -> anyhow::Result<PodEnv> {
        Self::start_with(env, last_octets, "", "").await
    }

    /// With config lines of its own: `top` (top-level keys) and `tables`.
    pub(crate) async fn start_with(
        env: &Env,
        last_octets: Option<(u8, u8)>,
        top: &str,
        tables: &str,
    ) -> anyhow::Result<PodEnv> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() % 10_000;
        let bridge = format!("crp{pid}x{n}");
        // A second octet per test process, so two test runs on one machine
        // (a developer's and a helper's) never share a subnet.
        let octet = 64 + std::process::id() % 128;
        let subnet = format!("10.{octet}.{n}.0/24");
        let mut opts = env.options();
        opts.extra_config = format!("{top}\n{}\n{tables}\n", opts.extra_config);
        opts.namespace = format!("crius-pods-{pid}-{n}");
        let daemon = Criusd::start(&opts)?;
        let mut range = serde_json::json!({ "subnet": subnet });
        if let Some((a, b)) = last_octets {
            range["rangeStart"] = format!("10.{octet}.{n}.{a}").into();
            range["rangeEnd"] = format!("10.{octet}.{n}.{b}").into();
        }
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "crius-test",
            "plugins": [
                {
                    "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                    "ipam": {
                        "type": "host-local", "ranges": [[range]],
                        "dataDir": daemon.dir().join("ipam"),
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                { "type": "loopback" }
            ]
        });
        std::fs::write(
            daemon.cni_conf_dir().join("10-test.conflist"),
            conf.to_string(),
        )?;
        daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
        let cri = client::connect(daemon.socket()).await?;
        let containerd =
            crius_containerd::Containerd::connect(env.containerd.socket(), &opts.namespace).await?;
        Ok(PodEnv {
            daemon: Some(daemon),
            cri,
            bridge,
            subnet,
            containerd,
            namespace: opts.namespace.clone(),
        })
    }

    pub(crate) fn daemon(&self) -> &Criusd {
        self.daemon.as_ref().expect("daemon running")
    }

    /// SIGKILLs criusd, starts it again on the same state and reconnects.
    pub(crate) async fn restart_daemon(&mut self) -> anyhow::Result<()> {
        // SIGKILLs it first, unless the test did.
        let daemon = self.daemon.as_mut().context("daemon")?;
        daemon.restart(Signal::SIGKILL)?;
        daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
        self.cri = client::connect(daemon.socket()).await?;
        Ok(())
    }

    fn ipam_dir(&self) -> PathBuf {
        self.daemon().dir().join("ipam").join("crius-test")
    }

    fn netns_dir(&self) -> PathBuf {
        self.daemon().dir().join("state").join("netns")
    }

    /// Where pinned pods' IPC and UTS namespaces are pinned.
    pub(crate) fn pins_dir(&self) -> PathBuf {
        self.daemon().dir().join("state").join("pins")
    }

    /// Removes every pod, then checks nothing is left: no sandbox, netns,
    /// pod directory, allocated IP, containerd container, snapshot of a
    /// sandbox, or shim.
    pub(crate) async fn remove_all_and_check(&mut self) -> anyhow::Result<()> {
        let pods = list_pods(&mut self.cri).await?;
        for p in &pods {
            self.cri
                .runtime
                .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await?;
        }
        let left = list_pods(&mut self.cri).await?;
        ensure!(left.is_empty(), "pods left: {left:?}");
        let entries = |d: PathBuf| -> Vec<String> {
            std::fs::read_dir(&d)
                .map(|e| {
                    e.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        ensure!(
            entries(self.netns_dir()).is_empty(),
            "netns left: {:?}",
            entries(self.netns_dir())
        );
        let pins = entries(self.pins_dir());
        ensure!(pins.is_empty(), "namespace pins left: {pins:?}");
        let pod_dirs = entries(self.daemon().dir().join("state").join("sandboxes"));
        ensure!(pod_dirs.is_empty(), "pod directories left: {pod_dirs:?}");
        let ips: Vec<_> = entries(self.ipam_dir())
            .into_iter()
            .filter(|f| f.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .collect();
        ensure!(ips.is_empty(), "IPs still allocated: {ips:?}");
        let state = self.daemon().dir().join("state").display().to_string();
        // The pin directories stay mount points of their own (as `ip netns`
        // leaves /run/netns); the pins in them must be gone.
        let pin_dirs = [self.netns_dir(), self.pins_dir()].map(|d| d.display().to_string());
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&state) && !pin_dirs.contains(m))
            .collect();
        ensure!(
            mounts.is_empty(),
            "mounts left under the state dir: {mounts:?}"
        );
        let containers = self.containerd.container_list(&[]).await?;
        ensure!(
            containers.is_empty(),
            "containerd containers left: {containers:?}"
        );
        for p in &pods {
            // A shim whose task create was cut short by a killed daemon is
            // shut down by containerd asynchronously: give it a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !crius_testkit::pids_with_arg(&p.id).is_empty()
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ensure!(
                crius_testkit::pids_with_arg(&p.id).is_empty(),
                "a shim of {} is still running",
                p.id
            );
            let snap = self.containerd.snapshot_stat("overlayfs", &p.id).await?;
            ensure!(snap.is_none(), "snapshot {} left", p.id);
        }
        Ok(())
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        drop(self.daemon.take());
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

pub(crate) fn config(name: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/tmp/crius-test-logs/{name}"),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        annotations: HashMap::from([("note".to_string(), "hello".to_string())]),
        linux: Some(v1::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

pub(crate) async fn run(
    cri: &mut Cri,
    config: v1::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    cri.runtime
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

pub(crate) async fn status(
    cri: &mut Cri,
    id: &str,
) -> anyhow::Result<(v1::PodSandboxStatus, serde_json::Value)> {
    let resp = cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info = resp.info.get("info").context("no verbose info")?;
    Ok((
        resp.status.context("no status")?,
        serde_json::from_str(info)?,
    ))
}

pub(crate) async fn list_pods_pub(cri: &mut Cri) -> anyhow::Result<Vec<v1::PodSandbox>> {
    list_pods(cri).await
}

async fn list_pods(cri: &mut Cri) -> anyhow::Result<Vec<v1::PodSandbox>> {
    Ok(cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items)
}

pub(crate) fn ready(s: &v1::PodSandboxStatus) -> bool {
    s.state == v1::PodSandboxState::SandboxReady as i32
}

/// Runs `args` inside the namespaces of `pid` (nsenter flags like `-n`, `-u`).
pub(crate) fn nsenter(pid: u64, flags: &[&str], args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(flags)
        .args(args)
        .output()
        .context("nsenter (util-linux)")?;
    ensure!(
        out.status.success(),
        "nsenter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn in_subnet(ip: &str, subnet: &str) -> bool {
    let prefix = subnet.trim_end_matches("0/24");
    ip.starts_with(prefix)
}

async fn run_status_stop_remove(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let id = run(&mut p.cri, config("web")).await?;
    let (s, info) = status(&mut p.cri, &id).await?;
    ensure!(ready(&s), "{s:?}");
    let ip = s.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
    ensure!(in_subnet(&ip, &p.subnet), "pod IP {ip} not in {}", p.subnet);
    let netns = info["netnsPath"]
        .as_str()
        .context("netns path")?
        .to_string();
    ensure!(std::path::Path::new(&netns).exists(), "{netns}");
    ensure!(info["pid"].as_u64().is_some(), "{info}");
    // The host reaches the pod.
    let ping = Command::new("busybox")
        .args(["ping", "-c1", "-W2", &ip])
        .output()?;
    ensure!(
        ping.status.success(),
        "ping {ip}: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    for _ in 0..2 {
        p.cri
            .runtime
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
    }
    let (s, _) = status(&mut p.cri, &id).await?;
    ensure!(!ready(&s), "still ready after stop");
    let ping = Command::new("busybox")
        .args(["ping", "-c1", "-W1", &ip])
        .output()?;
    ensure!(!ping.status.success(), "the pod still answers after stop");
    for _ in 0..2 {
        p.cri
            .runtime
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
    }
    ensure!(
        !std::path::Path::new(&netns).exists(),
        "netns left: {netns}"
    );
    let err = p
        .cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("removed");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    // Stop and Remove of what is gone succeed (CRI: both are idempotent;
    // the validation suite stops unknown ids and expects no error).
    for unknown in [id.clone(), "0".repeat(64)] {
        p.cri
            .runtime
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: unknown.clone(),
            })
            .await?;
        p.cri
            .runtime
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: unknown,
            })
            .await?;
    }
    p.remove_all_and_check().await
}

async fn hostname_dns_and_hosts_files(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut c = config("dns");
    c.hostname = "my-host".into();
    c.dns_config = Some(v1::DnsConfig {
        servers: vec!["10.0.0.10".into()],
        searches: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    });
    let id = run(&mut p.cri, c).await?;
    let (s, info) = status(&mut p.cri, &id).await?;
    let pid = info["pid"].as_u64().context("pid")?;
    let hostname = nsenter(pid, &["-u"], &["hostname"])?;
    ensure!(hostname.trim() == "my-host", "{hostname}");
    let dir = p.daemon().dir().join("state").join("sandboxes").join(&id);
    let resolv = std::fs::read_to_string(dir.join("resolv.conf"))?;
    ensure!(resolv.contains("nameserver 10.0.0.10"), "{resolv}");
    ensure!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local"),
        "{resolv}"
    );
    ensure!(resolv.contains("options ndots:5"), "{resolv}");
    let hosts = std::fs::read_to_string(dir.join("hosts"))?;
    let ip = s.network.map(|n| n.ip).unwrap_or_default();
    ensure!(hosts.contains(&ip) && hosts.contains("my-host"), "{hosts}");
    ensure!(std::fs::read_to_string(dir.join("hostname"))? == "my-host\n");
    p.remove_all_and_check().await
}

async fn sysctls_are_applied(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut c = config("sysctl");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        sysctls: HashMap::from([
            ("net.core.somaxconn".to_string(), "1234".to_string()),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]),
        ..Default::default()
    });
    let id = run(&mut p.cri, c).await?;
    let (_, info) = status(&mut p.cri, &id).await?;
    let pid = info["pid"].as_u64().context("pid")?;
    let v = nsenter(pid, &["-n"], &["cat", "/proc/sys/net/core/somaxconn"])?;
    ensure!(v.trim() == "1234", "somaxconn {v}");
    let host = std::fs::read_to_string("/proc/sys/net/core/somaxconn")?;
    ensure!(host.trim() != "1234", "the host's value changed");
    let v = nsenter(pid, &["-i"], &["cat", "/proc/sys/kernel/shm_rmid_forced"])?;
    ensure!(v.trim() == "1", "shm_rmid_forced {v}");
    p.remove_all_and_check().await
}

async fn bad_sysctls_are_refused_and_nothing_is_left(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern")?;
    for (k, v) in [
        ("kernel.core_pattern", "|/tmp/evil"),
        ("vm.swappiness", "10"),
        ("kernel.hostname", "x"),
        ("kernel.shm_rmid_forced", "1\0"),
        ("../../etc/passwd", "1"),
    ] {
        let mut c = config("badsysctl");
        c.linux = Some(v1::LinuxPodSandboxConfig {
            sysctls: HashMap::from([(k.to_string(), v.to_string())]),
            ..Default::default()
        });
        let err = run(&mut p.cri, c).await.expect_err(k);
        ensure!(
            err.code() == tonic::Code::InvalidArgument,
            "{k}={v:?}: {err:?}"
        );
        ensure!(err.message().contains("sysctl"), "{k}: {err:?}");
    }
    // Values are not crius' to judge (containerd passes them on): each is
    // written to its own /proc/sys file, so the CVE-2022-0811 smuggling has
    // nothing to split. The kernel refuses what it cannot parse ('+' is not
    // a number) or reads its number and ignores the rest; either way no
    // second sysctl is set (the host's core_pattern is checked below).
    let mut c = config("smuggle-plus");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        sysctls: HashMap::from([(
            "kernel.shm_rmid_forced".to_string(),
            "1+kernel.core_pattern=|/tmp/evil".to_string(),
        )]),
        ..Default::default()
    });
    run(&mut p.cri, c).await.expect_err("'+' is not a number");
    let mut c = config("smuggle-newline");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        sysctls: HashMap::from([(
            "net.core.somaxconn".to_string(),
            "1\nkernel.core_pattern=x".to_string(),
        )]),
        ..Default::default()
    });
    let _ = run(&mut p.cri, c).await;
    // A host-network pod may not set net.* sysctls.
    let mut c = config("badsysctl");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        sysctls: HashMap::from([("net.core.somaxconn".to_string(), "1".to_string())]),
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                network: v1::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = run(&mut p.cri, c)
        .await
        .expect_err("net sysctl with host network");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    ensure!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern")? == core_pattern,
        "host touched"
    );
    p.remove_all_and_check().await
}

/// Breaks one part of a config.
type Mutate = fn(&mut v1::PodSandboxConfig);

async fn missing_metadata_is_invalid(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut c = config("meta");
    c.metadata = None;
    let err = run(&mut p.cri, c).await.expect_err("no metadata");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    ensure!(err.message().contains("metadata"), "{err:?}");
    let err = p
        .cri
        .runtime
        .run_pod_sandbox(v1::RunPodSandboxRequest::default())
        .await
        .expect_err("no config");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    // Empty metadata fields are taken, as containerd takes them.
    let cases: [(&str, Mutate); 3] = [
        ("name", |c| {
            if let Some(m) = c.metadata.as_mut() {
                m.name.clear()
            }
        }),
        ("uid", |c| {
            if let Some(m) = c.metadata.as_mut() {
                m.uid.clear()
            }
        }),
        ("namespace", |c| {
            if let Some(m) = c.metadata.as_mut() {
                m.namespace.clear()
            }
        }),
    ];
    for (field, mutate) in cases {
        let mut c = config("meta");
        mutate(&mut c);
        run(&mut p.cri, c)
            .await
            .with_context(|| format!("empty {field}"))?;
    }
    p.remove_all_and_check().await
}

async fn list_filters(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let a = run(&mut p.cri, config("list-a")).await?;
    let b = run(&mut p.cri, config("list-b")).await?;
    p.cri
        .runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: b.clone(),
        })
        .await?;
    let list = |filter: v1::PodSandboxFilter| {
        let mut cri = p.cri.clone();
        async move {
            Ok::<_, anyhow::Error>(
                cri.runtime
                    .list_pod_sandbox(v1::ListPodSandboxRequest {
                        filter: Some(filter),
                    })
                    .await?
                    .into_inner()
                    .items
                    .into_iter()
                    .map(|i| i.id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    ensure!(list(v1::PodSandboxFilter::default()).await?.len() == 2);
    ensure!(
        list(v1::PodSandboxFilter {
            id: a.clone(),
            ..Default::default()
        })
        .await?
            == vec![a.clone()]
    );
    ensure!(
        list(v1::PodSandboxFilter {
            id: a[..12].to_string(),
            ..Default::default()
        })
        .await?
            == vec![a.clone()]
    );
    let ready = v1::PodSandboxFilter {
        state: Some(v1::PodSandboxStateValue {
            state: v1::PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    };
    ensure!(list(ready).await? == vec![a.clone()]);
    let not_ready = v1::PodSandboxFilter {
        state: Some(v1::PodSandboxStateValue {
            state: v1::PodSandboxState::SandboxNotready as i32,
        }),
        ..Default::default()
    };
    ensure!(list(not_ready).await? == vec![b.clone()]);
    let by_label = v1::PodSandboxFilter {
        label_selector: HashMap::from([("app".to_string(), "list-b".to_string())]),
        ..Default::default()
    };
    ensure!(list(by_label).await? == vec![b.clone()]);
    p.remove_all_and_check().await
}

async fn twenty_pods_in_parallel(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut cri = p.cri.clone();
        tasks.push(tokio::spawn(async move {
            run(&mut cri, config(&format!("par-{i}"))).await
        }));
    }
    let mut ips = std::collections::BTreeSet::new();
    for t in tasks {
        let id = t.await??;
        let (s, _) = status(&mut p.cri, &id).await?;
        ensure!(ready(&s), "{s:?}");
        ips.insert(s.network.map(|n| n.ip).unwrap_or_default());
    }
    ensure!(ips.len() == 20, "IPs not distinct: {ips:?}");
    eprintln!("20 pods ready in {:?}", started.elapsed());
    p.remove_all_and_check().await
}

async fn host_network_pod_sees_host_interfaces(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut c = config("hostnet");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                network: v1::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run(&mut p.cri, c).await?;
    let (s, info) = status(&mut p.cri, &id).await?;
    ensure!(ready(&s), "{s:?}");
    ensure!(
        s.network.map(|n| n.ip).unwrap_or_default().is_empty(),
        "a host-network pod has no pod IP"
    );
    let pid = info["pid"].as_u64().context("pid")?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"))?;
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    ensure!(theirs == ours, "{theirs:?} != {ours:?}");
    let links = nsenter(pid, &["-n"], &["ip", "-o", "link"])?;
    ensure!(
        links.contains("eth0") || links.lines().count() > 1,
        "{links}"
    );
    p.remove_all_and_check().await
}

async fn host_port_reaches_the_pod(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // A pinned pod (kubelet's default shape); the mapping is CNI's either way.
    let mut c = crate::pinned::pinned_config("hostport");
    c.port_mappings = vec![v1::PortMapping {
        protocol: v1::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let id = run(&mut p.cri, c).await?;
    let (_, info) = status(&mut p.cri, &id).await?;
    let netns = info["netnsPath"].as_str().context("netns")?.to_string();
    // A listener inside the pod's network namespace.
    let mut server = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args([
            "busybox",
            "nc",
            "-l",
            "-p",
            "8080",
            "-e",
            "echo",
            "hello-from-pod",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let mut answer = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", host_port)) {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let _ = s.read_to_string(&mut answer);
            if !answer.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    ensure!(
        answer.contains("hello-from-pod"),
        "host port {host_port} did not reach the pod: {answer:?}"
    );
    p.remove_all_and_check().await?;
    let rules = Command::new("iptables-save").output()?;
    ensure!(
        !String::from_utf8_lossy(&rules.stdout).contains(&id),
        "iptables rules of the pod left"
    );
    Ok(())
}

async fn labels_and_annotations_in_containerd(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let id = run(&mut p.cri, config("records")).await?;
    let record = p
        .containerd
        .container_get(&id)
        .await?
        .context("no containerd record")?;
    for (k, v) in [
        ("io.kubernetes.pod.name", "records"),
        ("io.kubernetes.pod.namespace", "default"),
        ("io.kubernetes.pod.uid", "uid-records"),
        ("io.crius.kind", "sandbox"),
        ("app", "records"),
    ] {
        ensure!(
            record.labels.get(k).map(String::as_str) == Some(v),
            "label {k}: {:?}",
            record.labels
        );
    }
    let ann = record.spec.annotations().clone().unwrap_or_default();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri.sandbox-id", id.as_str()),
        ("io.kubernetes.cri.sandbox-name", "records"),
        ("io.kubernetes.cri.sandbox-namespace", "default"),
        ("io.kubernetes.cri.sandbox-uid", "uid-records"),
        (
            "io.kubernetes.cri.sandbox-log-directory",
            "/tmp/crius-test-logs/records",
        ),
    ] {
        ensure!(
            ann.get(k).map(String::as_str) == Some(v),
            "annotation {k}: {ann:?}"
        );
    }
    ensure!(
        record.runtime.name == "io.containerd.runc.v2",
        "{:?}",
        record.runtime
    );
    ensure!(
        record
            .spec
            .root()
            .as_ref()
            .is_some_and(|r| r.readonly() == Some(true)),
        "root must be read-only"
    );
    let snap = p
        .containerd
        .snapshot_stat("overlayfs", &id)
        .await?
        .context("no snapshot")?;
    ensure!(
        snap.kind == crius_containerd::SnapshotKind::View,
        "sandbox rootfs must be a view: {snap:?}"
    );
    p.remove_all_and_check().await
}

async fn identical_retry_gets_the_same_id(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let (a, b) = tokio::join!(
        {
            let mut cri = p.cri.clone();
            async move { run(&mut cri, config("retry")).await }
        },
        {
            let mut cri = p.cri.clone();
            async move { run(&mut cri, config("retry")).await }
        },
    );
    let (a, b) = (a?, b?);
    ensure!(a == b, "two ids for one pod: {a} {b}");
    // The same name with a different request is refused while it exists.
    let mut other = config("retry");
    other.hostname = "different".into();
    let err = run(&mut p.cri, other).await.expect_err("name taken");
    ensure!(err.code() == tonic::Code::AlreadyExists, "{err:?}");
    p.remove_all_and_check().await?;
    // After removal the name is free again.
    let id = run(&mut p.cri, config("retry")).await?;
    ensure!(id != a);
    p.remove_all_and_check().await
}

async fn daemon_restart_keeps_pods_running(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let a = run(&mut p.cri, config("survivor-a")).await?;
    let b = run(&mut p.cri, config("survivor-b")).await?;
    p.cri
        .runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: b.clone(),
        })
        .await?;
    let c = run(&mut p.cri, config("survivor-c")).await?;
    let (_, info_c) = status(&mut p.cri, &c).await?;
    let pid_c = info_c["pid"].as_u64().context("pid of c")?;
    let (sa, info) = status(&mut p.cri, &a).await?;
    let pid = info["pid"].as_u64().context("pid")?;
    let mut before = list_pods(&mut p.cri).await?;

    let daemon = p.daemon.as_mut().context("no daemon")?;
    daemon.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    // The pod keeps running without the daemon.
    ensure!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pause died with the daemon"
    );
    // c's pause dies while no daemon watches.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid_c as i32), Signal::SIGKILL)?;
    for _ in 0..100 {
        // Gone (reaped, even between two looks) or a zombie.
        let gone = std::fs::read_to_string(format!("/proc/{pid_c}/status"))
            .map_or(true, |s| s.contains("State:\tZ"));
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.restart(Signal::SIGKILL)?;
    daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
    p.cri = client::connect(p.daemon().socket()).await?;
    let mut after = list_pods(&mut p.cri).await?;
    let c_after = after.iter().position(|x| x.id == c).context("c vanished")?;
    let c_after = after.remove(c_after);
    ensure!(
        c_after.state == v1::PodSandboxState::SandboxNotready as i32,
        "c should be NOTREADY: {c_after:?}"
    );
    before.retain(|x| x.id != c);
    let key = |v: &Vec<v1::PodSandbox>| {
        let mut k: Vec<_> = v
            .iter()
            .map(|p| (p.id.clone(), p.state, p.created_at))
            .collect();
        k.sort();
        k
    };
    ensure!(
        key(&before) == key(&after),
        "before {before:?}\nafter {after:?}"
    );
    let (sa2, _) = status(&mut p.cri, &a).await?;
    ensure!(ready(&sa2), "{sa2:?}");
    ensure!(
        sa2.network == sa.network,
        "IPs changed: {:?} {:?}",
        sa.network,
        sa2.network
    );
    ensure!(
        !ready(&status(&mut p.cri, &b).await?.0),
        "the stopped pod came back ready"
    );
    p.remove_all_and_check().await?;
    ensure!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pause still running after remove"
    );
    Ok(())
}

async fn killed_mid_run_leaves_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    // Kill the daemon at different points of a burst of runs: some finish,
    // some have a containerd record but no task, some only a netns; of the
    // pinned ones (every other), some only pins, or pins but no network.
    for (round, delay_ms) in [30u64, 100, 500, 1000].into_iter().enumerate() {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let mut cri = p.cri.clone();
            let name = format!("doomed-{round}-{i}");
            let c = match i % 2 {
                0 => config(&name),
                _ => crate::pinned::pinned_config(&name),
            };
            tasks.push(tokio::spawn(async move { run(&mut cri, c).await }));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let daemon = p.daemon.as_mut().context("no daemon")?;
        daemon.restart(Signal::SIGKILL)?;
        let finished = count_ok(tasks).await;
        daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
        p.cri = client::connect(p.daemon().socket()).await?;
        let pods = list_pods(&mut p.cri).await?;
        let not_ready = pods
            .iter()
            .filter(|p| p.state != v1::PodSandboxState::SandboxReady as i32)
            .count();
        eprintln!(
            "killed after {delay_ms} ms: {finished} runs had finished; after restart {} pods, {not_ready} not ready",
            pods.len()
        );
        ensure!(pods.len() >= finished, "a finished pod vanished: {pods:?}");
        for pod in &pods {
            let (s, _) = status(&mut p.cri, &pod.id).await?;
            ensure!(s.state == pod.state, "{s:?}");
        }
        // Every pod left is removable, and nothing else remains.
        p.remove_all_and_check().await?;
        let leases = p.containerd.lease_list_prefix("crius-").await?;
        ensure!(leases.is_empty(), "leases left: {leases:?}");
    }
    Ok(())
}

/// How many of the runs succeeded (the others died with the daemon).
async fn count_ok(tasks: Vec<tokio::task::JoinHandle<Result<String, tonic::Status>>>) -> usize {
    let mut ok = 0;
    for t in tasks {
        if let Ok(Ok(_)) = t.await {
            ok += 1;
        }
    }
    ok
}

fn crius(socket: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(crate::CRIUS)
        .arg("--endpoint")
        .arg(socket)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "crius {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn cli_pod_commands(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let socket = p.daemon().socket().to_path_buf();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("pod.json");
    std::fs::write(
        &file,
        r#"{"metadata": {"name": "cli-pod", "uid": "cli-uid", "namespace": "tools"},
            "hostname": "cli-pod", "labels": {"tier": "cli"}}"#,
    )?;
    let id = crius(&socket, &["pod", "run", &file.display().to_string()])?
        .trim()
        .to_string();
    ensure!(id.len() == 64, "{id}");
    let listed: serde_json::Value = serde_json::from_str(&crius(
        &socket,
        &["pods", "-o", "json", "--label", "tier=cli"],
    )?)?;
    ensure!(
        listed[0]["id"] == id.as_str() && listed[0]["state"] == "Ready",
        "{listed}"
    );
    let table = crius(&socket, &["pods"])?;
    ensure!(
        table.contains("cli-pod") && table.contains("tools") && table.contains(&id[..13]),
        "{table}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&crius(&socket, &["pod", "inspect", &id[..12]])?)?;
    ensure!(inspect["status"]["name"] == "cli-pod", "{inspect}");
    ensure!(inspect["info"]["pid"].as_u64().is_some(), "{inspect}");
    // Ready: refused without -f, as crictl rmp refuses it.
    ensure!(
        crius(&socket, &["pod", "rm", &id]).is_err(),
        "a ready pod was removed"
    );
    crius(&socket, &["pod", "stop", &id])?;
    let listed: serde_json::Value =
        serde_json::from_str(&crius(&socket, &["pods", "-o", "json"])?)?;
    ensure!(listed[0]["state"] == "NotReady", "{listed}");
    crius(&socket, &["pod", "rm", &id])?;
    ensure!(crius(&socket, &["pods", "-q"])?.trim().is_empty());
    p.remove_all_and_check().await
}

async fn failed_cni_add_leaves_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    // One address in the whole range: the second pod's ADD fails in IPAM.
    let mut p = PodEnv::start_with_range(&env, Some((10, 10))).await?;
    let first = run(&mut p.cri, config("only-one")).await?;
    let err = run(&mut p.cri, config("one-too-many"))
        .await
        .expect_err("no address left");
    ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");
    ensure!(
        err.message().contains("no IP addresses available") || err.message().contains("host-local"),
        "{err:?}"
    );
    let pods = list_pods(&mut p.cri).await?;
    ensure!(pods.len() == 1 && pods[0].id == first, "{pods:?}");
    let netns: Vec<_> = std::fs::read_dir(p.netns_dir())?
        .filter_map(|e| e.ok())
        .collect();
    ensure!(
        netns.len() == 1,
        "a netns of the failed pod was left: {netns:?}"
    );
    let dirs: Vec<_> = std::fs::read_dir(p.daemon().dir().join("state").join("sandboxes"))?
        .filter_map(|e| e.ok())
        .collect();
    ensure!(
        dirs.len() == 1,
        "a pod directory of the failed pod was left: {dirs:?}"
    );
    // The name of the failed pod is free again, and works once there is room.
    p.cri
        .runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: first,
        })
        .await?;
    run(&mut p.cri, config("one-too-many")).await?;
    p.remove_all_and_check().await
}

async fn sandbox_image_is_unpacked_lazily(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let pause = format!("localhost/crius/pause:{}", env!("CARGO_PKG_VERSION"));
    let resp = p
        .cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: pause.clone(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(resp.info.get("info").context("verbose")?)?;
    let chain_id = info["chainID"].as_str().context("chain id")?.to_string();
    // The image's snapshot goes away (as after a snapshotter clean-up)...
    ensure!(
        p.containerd
            .snapshot_stat("overlayfs", &chain_id)
            .await?
            .is_some()
    );
    p.containerd.snapshot_remove("overlayfs", &chain_id).await?;
    ensure!(
        p.containerd
            .snapshot_stat("overlayfs", &chain_id)
            .await?
            .is_none()
    );
    // ...and the next sandbox unpacks it again before it starts.
    let id = run(&mut p.cri, config("lazy")).await?;
    let (s, _) = status(&mut p.cri, &id).await?;
    ensure!(ready(&s), "{s:?}");
    ensure!(
        p.containerd
            .snapshot_stat("overlayfs", &chain_id)
            .await?
            .is_some(),
        "not unpacked again"
    );
    p.remove_all_and_check().await
}

async fn host_pid_and_ipc_and_cgroup_parent(env: Arc<Env>) -> anyhow::Result<()> {
    // The pause process' namespaces: a handler that always has one (a
    // host-PID pod is otherwise pinned; pinned.rs tests those).
    let mut p = PodEnv::start_with(&env, None, "", PAUSE_HANDLER).await?;
    let ns = |pid: u64, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}"));
    let me = std::process::id() as u64;

    // Pod PID and IPC namespaces by default, a /dev/shm of the pod's own.
    let mut c = config("own-ns");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        cgroup_parent: "/crius-test-parent".into(),
        ..Default::default()
    });
    let own = run(&mut p.cri, c).await?;
    let (_, info) = status(&mut p.cri, &own).await?;
    let pid = info["pid"].as_u64().context("pid")?;
    ensure!(ns(pid, "pid")? != ns(me, "pid")? && ns(pid, "ipc")? != ns(me, "ipc")?);
    let shm = p
        .daemon()
        .dir()
        .join("state/sandboxes")
        .join(&own)
        .join("shm");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&shm.display().to_string()));
    ensure!(
        mounted,
        "no tmpfs /dev/shm for the pod at {}",
        shm.display()
    );
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    ensure!(
        cgroup.contains(&format!("/crius-test-parent/{own}")),
        "{cgroup}"
    );

    // Host PID and IPC namespaces.
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
    let host = run(&mut p.cri, c).await?;
    let (s, info) = status(&mut p.cri, &host).await?;
    let pid = info["pid"].as_u64().context("pid")?;
    ensure!(ns(pid, "pid")? == ns(me, "pid")? && ns(pid, "ipc")? == ns(me, "ipc")?);
    ensure!(
        ns(pid, "net")? != ns(me, "net")?,
        "the network stays the pod's"
    );
    let modes = s
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .context("namespaces")?;
    ensure!(
        modes.pid == v1::NamespaceMode::Node as i32 && modes.ipc == v1::NamespaceMode::Node as i32
    );
    ensure!(
        !p.daemon()
            .dir()
            .join("state/sandboxes")
            .join(&host)
            .join("shm")
            .exists()
            || !std::fs::read_to_string("/proc/self/mountinfo")?.contains(&format!("{host}/shm"))
    );
    p.remove_all_and_check().await?;
    for controller in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        let _ = std::fs::remove_dir(controller.path().join("crius-test-parent"));
    }
    Ok(())
}

/// containerd 1.6 loses a shim whose start its client cancelled half-way
/// (a daemon killed mid-run): removing the pod kills such a shim, found by
/// its `-namespace`, `-id` and `-address`. A stand-in "shim" (bash renamed
/// by `exec -a`, with the arguments containerd gives shims) plays the lost one.
async fn lost_shims_go_with_their_pod(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let id = run(&mut p.cri, config("lost-shim")).await?;
    let script = format!(
        "exec -a containerd-shim-runc-v2 bash -c 'while :; do sleep 1; done' shim -namespace {} -id {id} -address {}",
        p.containerd.namespace(),
        p.containerd.address().display()
    );
    let mut lost = Command::new("bash").args(["-c", &script]).spawn()?;
    // An unrelated process with the same id but another containerd stays.
    let bystander_script = format!(
        "exec -a containerd-shim-runc-v2 bash -c 'while :; do sleep 1; done' shim -namespace {} -id {id} -address /elsewhere.sock",
        p.containerd.namespace()
    );
    let mut bystander = Command::new("bash")
        .args(["-c", &bystander_script])
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.cri
        .runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
    let mut gone = false;
    for _ in 0..50 {
        if lost.try_wait()?.is_some() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bystander_alive = bystander.try_wait()?.is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    if !gone {
        let _ = lost.kill();
        let _ = lost.wait();
    }
    ensure!(gone, "the lost shim of {id} survived the pod's removal");
    ensure!(bystander_alive, "a shim of another containerd was killed");
    p.remove_all_and_check().await
}

/// PodSandboxStatus answers from memory (kubelet asks every second for every
/// pod): a pause process that dies still turns the pod NOTREADY at once, in
/// status and list, and the pod takes no new containers.
async fn pause_death_shows_at_once(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let id = run(&mut p.cri, config("mortal")).await?;
    let (_, info) = status(&mut p.cri, &id).await?;
    let pid = info["pid"].as_i64().context("no pid")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = p
            .cri
            .runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?;
        let listed = list_pods(&mut p.cri).await?;
        let in_list = listed.iter().find(|x| x.id == id).context("not listed")?;
        if s.state == v1::PodSandboxState::SandboxNotready as i32 {
            ensure!(
                in_list.state == v1::PodSandboxState::SandboxNotready as i32,
                "status and list disagree: {in_list:?}"
            );
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "still READY 5 s after the pause process died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    let err = p
        .cri
        .runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(v1::ContainerConfig {
                metadata: Some(v1::ContainerMetadata {
                    name: "late".into(),
                    attempt: 0,
                }),
                image: Some(v1::ImageSpec {
                    image,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .expect_err("a dead pod takes no containers");
    ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");
    p.remove_all_and_check().await
}
