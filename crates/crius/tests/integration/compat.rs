//! Issue 11: what kubelet and the CRI validation suite send, accepted as
//! containerd's CRI accepts it; what crius cannot do refused, naming the
//! field, with nothing left behind.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::images as ti;

use crate::Env;
use crate::containers::{container, create, start, status, wait_exited};
use crate::pods::{PodEnv, config, run};
use crate::security::pause_pid;

crate::tests![
    long_names_and_no_hostname,
    sandbox_seccomp_profiles,
    kubelets_hugepage_limits_run,
    stop_and_remove_of_unknown_ids_succeed,
    status_gives_the_mounts_back,
    missing_log_directories_are_created,
    features_crius_lacks_are_refused,
    a_pull_past_its_deadline_is_deadline_exceeded,
    unknown_states_list_nothing_and_logless_reopen,
];

fn node_hostname() -> anyhow::Result<String> {
    Ok(nix::unistd::gethostname()?.to_string_lossy().into_owned())
}

/// `Seccomp:` of `/proc/<pid>/status`: 0 none, 2 a filter.
fn seccomp_mode(pid: u64) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().to_string())
        .context("no Seccomp line")
}

/// The number of containerd records of the daemon (sandboxes and containers).
async fn records(p: &PodEnv) -> anyhow::Result<usize> {
    Ok(p.containerd.container_list(&[]).await?.len())
}

/// A pod named longer than a DNS label, with no hostname (the validation
/// suite's pods): it runs, its UTS namespace keeps the node's name and its
/// /etc/hostname says so, as containerd does; a container named longer than
/// 63 characters runs in it.
async fn long_names_and_no_hostname(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let logs = tempfile::tempdir()?;
    let name = format!("pod-{}", "n".repeat(96));
    let mut c = config(&name);
    c.hostname.clear();
    c.log_directory = logs.path().display().to_string();
    let id = run(&mut p.cri, c).await?;
    let pid = pause_pid(&mut p.cri, &id).await?;
    let uts = crate::pods::nsenter(pid, &["-u"], &["hostname"])?;
    let node = node_hostname()?;
    ensure!(uts.trim() == node, "pod hostname {uts:?}, node {node:?}");
    let cname = format!("c-{}", "x".repeat(120));
    let cid = create(
        &mut p.cri,
        &id,
        container(&cname, &image, &["sh", "-c", "cat /etc/hostname; hostname"]),
    )
    .await?;
    start(&mut p.cri, &cid).await?;
    let s = wait_exited(&mut p.cri, &cid).await?;
    ensure!(s.exit_code == 0, "{s:?}");
    ensure!(
        s.metadata.as_ref().map(|m| m.name.as_str()) == Some(cname.as_str()),
        "{s:?}"
    );
    let log = std::fs::read_to_string(logs.path().join(format!("{cname}.log")))?;
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    ensure!(lines == [node.as_str(), node.as_str()], "{log}");
    p.remove_all_and_check().await
}

/// The pause process gets the sandbox's seccomp profile: kubelet's `{}`
/// (RuntimeDefault) and a Localhost file filter it; Unconfined does not; a
/// missing file is refused, leaving nothing.
async fn sandbox_seccomp_profiles(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let dir = tempfile::tempdir()?;
    let profile = dir.path().join("log.json");
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_LOG"}"#)?;
    let cases = [
        ("default", Some(v1::SecurityProfile::default()), "2"),
        (
            "unconfined",
            Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::Unconfined as i32,
                ..Default::default()
            }),
            "0",
        ),
        (
            "localhost",
            Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::Localhost as i32,
                localhost_ref: profile.display().to_string(),
            }),
            "2",
        ),
        ("none", None, "0"),
    ];
    for (name, seccomp, want) in cases {
        let mut c = config(&format!("seccomp-{name}"));
        c.linux = Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                seccomp,
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = run(&mut p.cri, c).await.with_context(|| name.to_string())?;
        let pid = pause_pid(&mut p.cri, &id).await?;
        let mode = seccomp_mode(pid)?;
        ensure!(mode == want, "{name}: Seccomp {mode}, want {want}");
    }
    let before = records(&p).await?;
    let mut c = config("seccomp-missing");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            seccomp: Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::Localhost as i32,
                localhost_ref: dir.path().join("absent.json").display().to_string(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = run(&mut p.cri, c).await.expect_err("missing profile");
    ensure!(
        err.code() == tonic::Code::InvalidArgument && err.message().contains("localhost_ref"),
        "{err:?}"
    );
    ensure!(records(&p).await? == before, "a refused pod left a record");
    p.remove_all_and_check().await
}

/// kubelet's resources for every container: hugepage limits of 0 for each
/// page size, oom_score_adj 1000, cpu_shares 2. On a node whose hugetlb
/// controller is not mounted (this machine) they are dropped, as containerd
/// does, and the container runs.
async fn kubelets_hugepage_limits_run(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let id = run(&mut p.cri, config("hugepages")).await?;
    let mut c = container("huge", &image, &["sleep", "60"]);
    c.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_shares: 2,
            oom_score_adj: 1000,
            hugepage_limits: vec![
                v1::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                },
                v1::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    });
    let cid = create(&mut p.cri, &id, c).await?;
    start(&mut p.cri, &cid).await?;
    let s = status(&mut p.cri, &cid).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    p.remove_all_and_check().await
}

/// Stop and Remove are idempotent, also for ids that never existed.
async fn stop_and_remove_of_unknown_ids_succeed(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let unknown = "f".repeat(64);
    cri.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: unknown.clone(),
            timeout: 0,
        })
        .await?;
    cri.runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: unknown.clone(),
        })
        .await?;
    cri.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await?;
    cri.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await?;
    // Status of an unknown id stays NotFound (kubelet relies on it).
    let err = status(&mut cri, &unknown).await.expect_err("unknown");
    let err = err
        .downcast_ref::<tonic::Status>()
        .context("not a gRPC status")?;
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    Ok(())
}

/// ContainerStatus gives back every mount field as requested.
async fn status_gives_the_mounts_back(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let id = run(&mut p.cri, config("mounts")).await?;
    let host = crate::security::HostDir::new()?;
    let data = host.join("data");
    std::fs::create_dir(&data)?;
    let shared = host.tmpfs("shared", "--make-shared")?;
    let mounts = vec![
        v1::Mount {
            container_path: "/data".into(),
            host_path: data.display().to_string(),
            readonly: true,
            selinux_relabel: true,
            ..Default::default()
        },
        v1::Mount {
            container_path: "/shared".into(),
            host_path: shared,
            readonly: true,
            propagation: v1::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        },
    ];
    let mut c = container("mounts", &image, &["sleep", "60"]);
    c.mounts = mounts.clone();
    let cid = create(&mut p.cri, &id, c).await?;
    let s = status(&mut p.cri, &cid).await?;
    ensure!(s.mounts == mounts, "{:#?}", s.mounts);
    p.remove_all_and_check().await
}

/// A pod log directory that does not exist, and a log path with
/// directories of its own: StartContainer creates them (0755) and the file
/// (0640), as containerd does.
async fn missing_log_directories_are_created(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let top = tempfile::tempdir()?;
    let dir = top.path().join("pods/ns_name_uid");
    let mut c = config("logdir");
    c.log_directory = dir.display().to_string();
    let id = run(&mut p.cri, c).await?;
    let mut c = container("logged", &image, &["echo", "hello"]);
    c.log_path = "logged/a/0.log".into();
    let cid = create(&mut p.cri, &id, c).await?;
    start(&mut p.cri, &cid).await?;
    wait_exited(&mut p.cri, &cid).await?;
    let file = dir.join("logged/a/0.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains("hello")
    {
        ensure!(Instant::now() < deadline, "no log line in {file:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = |p: &std::path::Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    for d in [dir.clone(), dir.join("logged"), dir.join("logged/a")] {
        ensure!(mode(&d)? == 0o755, "{d:?}: {:o}", mode(&d)?);
    }
    ensure!(mode(&file)? == 0o640, "{file:?}: {:o}", mode(&file)?);
    p.remove_all_and_check().await
}

/// Requests for what crius does not do are refused, naming the field, and
/// leave nothing; what asks for nothing (kubelet's `userns_options` with
/// mode NODE, an empty CDI list) is fine.
async fn features_crius_lacks_are_refused(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let userns = |mode: v1::NamespaceMode| {
        Some(v1::NamespaceOption {
            userns_options: Some(v1::UserNamespace {
                mode: mode as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    // Pods.
    let before = records(&p).await?;
    // POD without id mappings.
    let pod_cases = [(
        "userns_options.uids",
        v1::LinuxSandboxSecurityContext {
            namespace_options: userns(v1::NamespaceMode::Pod),
            ..Default::default()
        },
    )];
    for (field, sc) in pod_cases {
        let mut c = config("lacking");
        c.linux = Some(v1::LinuxPodSandboxConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        let err = run(&mut p.cri, c).await.expect_err(field);
        ensure!(
            err.code() == tonic::Code::InvalidArgument && err.message().contains(field),
            "{field}: {err:?}"
        );
    }
    ensure!(records(&p).await? == before, "a refused pod left a record");
    // A pod as kubelet sends it, then containers.
    let mut c = config("lacking");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: userns(v1::NamespaceMode::Node),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run(&mut p.cri, c).await?;
    let before = records(&p).await?;
    let host = tempfile::tempdir()?;
    let bind = |edit: fn(&mut v1::Mount)| {
        let mut m = v1::Mount {
            container_path: "/data".into(),
            host_path: host.path().display().to_string(),
            ..Default::default()
        };
        edit(&mut m);
        vec![m]
    };
    type Edit<'a> = Box<dyn Fn(&mut v1::ContainerConfig) + Send + Sync + 'a>;
    let cases: Vec<(&str, Edit<'_>)> = vec![
        (
            "CDI_devices",
            Box::new(|c| {
                c.cdi_devices = vec![v1::CdiDevice {
                    name: "vendor.com/gpu=0".into(),
                }]
            }),
        ),
        (
            "uidMappings",
            Box::new(move |c| {
                c.mounts = bind(|m| {
                    m.uid_mappings = vec![v1::IdMapping {
                        host_id: 1000,
                        container_id: 0,
                        length: 1,
                    }]
                })
            }),
        ),
        (
            "userns_options.uids",
            Box::new(move |c| {
                c.linux = Some(v1::LinuxContainerConfig {
                    security_context: Some(v1::LinuxContainerSecurityContext {
                        namespace_options: userns(v1::NamespaceMode::Pod),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
        ),
    ];
    for (field, edit) in &cases {
        let mut c = container("lacking", &image, &["true"]);
        edit(&mut c);
        let err = create(&mut p.cri, &id, c).await.expect_err(field);
        ensure!(
            err.code() == tonic::Code::InvalidArgument && err.message().contains(field),
            "{field}: {err:?}"
        );
    }
    ensure!(
        records(&p).await? == before,
        "a refused container left a record"
    );
    // What asks for nothing is fine.
    let mut c = container("asks-nothing", &image, &["true"]);
    c.mounts = vec![v1::Mount {
        container_path: "/data".into(),
        host_path: host.path().display().to_string(),
        recursive_read_only: false,
        ..Default::default()
    }];
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: userns(v1::NamespaceMode::Node),
            ..Default::default()
        }),
        ..Default::default()
    });
    let cid = create(&mut p.cri, &id, c).await?;
    start(&mut p.cri, &cid).await?;
    p.remove_all_and_check().await
}

/// A PullImage whose client deadline runs out answers DEADLINE_EXCEEDED
/// (the validation suite's "should timeout if requested"), not CANCELLED.
/// Sent by hand: a tonic client would also time out on its own side and
/// answer CANCELLED itself, racing the server's answer.
async fn a_pull_past_its_deadline_is_deadline_exceeded(env: Arc<Env>) -> anyhow::Result<()> {
    // A registry that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().take(4) {
            conns.push(c);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let req = v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: format!("{addr}/stalls/forever:1"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let (status, message) = raw_call(
        env.criusd.socket(),
        "/runtime.v1.ImageService/PullImage",
        &req,
        "800m",
    )
    .await?;
    ensure!(
        status == tonic::Code::DeadlineExceeded as i32,
        "grpc-status {status}: {message}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    Ok(())
}

/// One unary gRPC call over the socket with `grpc-timeout: timeout`, with
/// no deadline of the client's own: the grpc-status and message the
/// server answered.
async fn raw_call(
    socket: &std::path::Path,
    path: &str,
    msg: &impl prost::Message,
    timeout: &str,
) -> anyhow::Result<(i32, String)> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let payload = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend(u32::try_from(payload.len())?.to_be_bytes());
    frame.extend(payload);
    let req = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))?;
    let resp = send.send_request(req).await?;
    let mut fields = resp.headers().clone();
    if !fields.contains_key("grpc-status") {
        let body = resp.into_body().collect().await?;
        fields = body.trailers().cloned().unwrap_or_default();
    }
    let text = |k: &str| fields.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    Ok((
        text("grpc-status").parse()?,
        text("grpc-message").to_string(),
    ))
}

/// A List filter on a state CRI does not know lists nothing (containerd
/// too); ReopenContainerLog of a container without a log file is a no-op.
async fn unknown_states_list_nothing_and_logless_reopen(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let mut c = config("nolog");
    c.log_directory.clear();
    let id = run(&mut p.cri, c).await?;
    let mut c = container("nolog", &image, &["sleep", "60"]);
    c.log_path.clear();
    let cid = create(&mut p.cri, &id, c).await?;
    start(&mut p.cri, &cid).await?;
    p.cri
        .runtime
        .reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: cid.clone(),
        })
        .await?;
    let pods = p
        .cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                state: Some(v1::PodSandboxStateValue { state: 7 }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .items;
    ensure!(pods.is_empty(), "{pods:?}");
    let all = p
        .cri
        .runtime
        .list_containers(v1::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    ensure!(all.len() == 1, "{all:?}");
    let odd = p
        .cri
        .runtime
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                state: Some(v1::ContainerStateValue { state: 9 }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    ensure!(odd.is_empty(), "{odd:?}");
    p.remove_all_and_check().await
}
