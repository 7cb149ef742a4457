//! Issue 5 (first steps): containers in pods: create, start, exit codes and
//! logs, stop, remove, the security context, restarts of the daemon.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::client::Cri;
use crius_testkit::images as ti;
use nix::sys::signal::Signal;

use crate::Env;
use crate::pods::{PodEnv, config, run};

crate::tests![
    exit_code_and_logs,
    stop_kills_after_the_timeout,
    readonly_rootfs_and_run_as_user,
    bad_requests,
    pod_stop_and_remove_take_the_containers,
    daemon_restart_keeps_containers,
    exec_sync_output_exit_code_timeout_and_cap,
    reopen_log_and_update_resources,
    cli_run_ps_exec_logs_stop_rm,
    image_unpacked_lazily_at_create,
    oom_kill_is_reported,
    failing_start_reports_and_cleans_up,
    container_from_an_imported_archive,
    cli_create_from_a_config_file,
    killed_shim_means_exited_137,
    image_volumes_are_writable_copies,
    resources_are_seen_in_the_cgroup,
    tty_output_is_logged_as_stdout,
    a_container_of_a_stopped_pod_does_not_start,
    stats_of_running_containers,
    stats_of_a_pod,
    stats_under_the_systemd_driver,
];

pub(crate) struct Pod {
    pub(crate) env: PodEnv,
    pub(crate) id: String,
    pub(crate) image: String,
    pub(crate) logs: tempfile::TempDir,
}

pub(crate) async fn pod(env: &Env, name: &str) -> anyhow::Result<Pod> {
    let mut p = PodEnv::start(env).await?;
    let logs = tempfile::tempdir()?;
    let mut c = config(name);
    c.log_directory = logs.path().display().to_string();
    let id = run(&mut p.cri, c).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    Ok(Pod {
        env: p,
        id,
        image,
        logs,
    })
}

pub(crate) fn container(name: &str, image: &str, cmd: &[&str]) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(v1::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

pub(crate) async fn create(
    cri: &mut Cri,
    pod: &str,
    c: v1::ContainerConfig,
) -> Result<String, tonic::Status> {
    cri.runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(c),
            sandbox_config: Some(config("unused")),
        })
        .await
        .map(|r| r.into_inner().container_id)
}

pub(crate) async fn start(cri: &mut Cri, id: &str) -> anyhow::Result<()> {
    cri.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.into(),
        })
        .await?;
    Ok(())
}

pub(crate) async fn status(cri: &mut Cri, id: &str) -> anyhow::Result<v1::ContainerStatus> {
    cri.runtime
        .container_status(v1::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status")
}

pub(crate) async fn wait_exited(cri: &mut Cri, id: &str) -> anyhow::Result<v1::ContainerStatus> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(cri, id).await?;
        if s.state == v1::ContainerState::ContainerExited as i32 {
            return Ok(s);
        }
        ensure!(Instant::now() < deadline, "{id} did not exit: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_log(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

async fn exit_code_and_logs(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "logs").await?;
    let cri = &mut p.env.cri;
    let id = create(
        cri,
        &p.id,
        container(
            "echo",
            &p.image,
            &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
        ),
    )
    .await?;
    let s = status(cri, &id).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerCreated as i32,
        "{s:?}"
    );
    start(cri, &id).await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 3 && s.reason == "Error", "{s:?}");
    ensure!(s.started_at > 0 && s.finished_at >= s.started_at, "{s:?}");
    ensure!(s.image_ref.contains("sha256:"), "{s:?}");
    // EXITED is reported once the whole output is in the log: no waiting.
    let log = read_log(p.logs.path(), "echo");
    let lines: Vec<&str> = log.lines().collect();
    ensure!(
        lines.iter().any(|l| l.ends_with(" stdout F hello")),
        "{log}"
    );
    ensure!(lines.iter().any(|l| l.ends_with(" stderr F oops")), "{log}");
    let ok = create(cri, &p.id, container("ok", &p.image, &["true"])).await?;
    start(cri, &ok).await?;
    let s = wait_exited(cri, &ok).await?;
    ensure!(s.exit_code == 0 && s.reason == "Completed", "{s:?}");
    let list = cri
        .runtime
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                pod_sandbox_id: p.id.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    ensure!(list.len() == 2, "{list:?}");
    for c in [&id, &ok] {
        for _ in 0..2 {
            cri.runtime
                .remove_container(v1::RemoveContainerRequest {
                    container_id: c.to_string(),
                })
                .await?;
        }
    }
    p.env.remove_all_and_check().await
}

async fn stop_kills_after_the_timeout(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stop").await?;
    let cri = &mut p.env.cri;
    let id = create(
        cri,
        &p.id,
        container("sleeper", &p.image, &["sleep", "1000"]),
    )
    .await?;
    start(cri, &id).await?;
    let s = status(cri, &id).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let started = Instant::now();
    cri.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        })
        .await?;
    ensure!(
        started.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        started.elapsed()
    );
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 137 || s.exit_code == 143, "{s:?}");
    // Stopping again is fine.
    cri.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    p.env.remove_all_and_check().await
}

async fn readonly_rootfs_and_run_as_user(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "secctx").await?;
    let cri = &mut p.env.cri;
    let mut c = container(
        "ro",
        &p.image,
        &[
            "sh",
            "-c",
            "id -u; id -g; touch /x && echo wrote || echo refused",
        ],
    );
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            run_as_user: Some(v1::Int64Value { value: 1234 }),
            run_as_group: Some(v1::Int64Value { value: 50 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    wait_exited(cri, &id).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = read_log(p.logs.path(), "ro");
    ensure!(
        log.contains("stdout F 1234") && log.contains("stdout F 50"),
        "{log}"
    );
    ensure!(
        log.contains("stdout F refused") && !log.contains("stdout F wrote"),
        "{log}"
    );
    // A named user from the image's /etc/passwd.
    let mut c = container("named", &p.image, &["id", "-u"]);
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            run_as_username: "alice".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    wait_exited(cri, &id).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = read_log(p.logs.path(), "named");
    ensure!(log.contains("stdout F 1234"), "{log}");
    p.env.remove_all_and_check().await
}

async fn bad_requests(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "bad").await?;
    let cri = &mut p.env.cri;
    let err = create(cri, "0000000000000000", container("x", &p.image, &["true"]))
        .await
        .expect_err("no pod");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    let err = create(
        cri,
        &p.id,
        container("x", &env.images.reference("crius-test/absent:1"), &["true"]),
    )
    .await
    .expect_err("no image");
    ensure!(
        err.code() == tonic::Code::NotFound && err.message().contains("absent"),
        "{err:?}"
    );
    let mut c = container("x", &p.image, &["true"]);
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            run_as_group: Some(v1::Int64Value { value: 5 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = create(cri, &p.id, c).await.expect_err("group without user");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    let mut c = container("x", &p.image, &["true"]);
    c.log_path = "../escape.log".into();
    let err = create(cri, &p.id, c).await.expect_err("log path escapes");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    // Each refused with InvalidArgument naming its field, nothing created.
    let with_user = |uid: i64| {
        let mut c = container("x", &p.image, &["true"]);
        c.linux = Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value { value: uid }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let mut climbing_log = container("x", &p.image, &["true"]);
    climbing_log.log_path = "/a/../../elsewhere.log".into();
    let mut env_key = container("x", &p.image, &["true"]);
    env_key.envs = vec![v1::KeyValue {
        key: "A\0B".into(),
        value: "1".into(),
    }];
    let mut env_eq = container("x", &p.image, &["true"]);
    env_eq.envs = vec![v1::KeyValue {
        key: "A=B".into(),
        value: "1".into(),
    }];
    let mut username = container("x", &p.image, &["true"]);
    username.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            run_as_username: "alice\nroot".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    for (what, c, field) in [
        ("negative uid", with_user(-1), "run_as_user"),
        ("uid over 2^31-1", with_user(1 << 31), "run_as_user"),
        ("log path climbing out", climbing_log, "log_path"),
        ("NUL in an env key", env_key, "envs"),
        ("'=' in an env key", env_eq, "envs"),
        ("newline in a user name", username, "run_as_username"),
    ] {
        let err = create(cri, &p.id, c).await.expect_err(what);
        ensure!(
            err.code() == tonic::Code::InvalidArgument && err.message().contains(field),
            "{what}: {err:?}"
        );
    }
    let records = p.env.containerd.container_list(&[]).await?;
    ensure!(
        records.len() == 1,
        "refused creates left containerd records: {records:?}"
    );
    // An identical retry while the first is in flight gets the same id.
    let (a, b) = tokio::join!(
        {
            let mut cri = cri.clone();
            let c = container("dup", &p.image, &["true"]);
            let pod = p.id.clone();
            async move { create(&mut cri, &pod, c).await }
        },
        {
            let mut cri = cri.clone();
            let c = container("dup", &p.image, &["true"]);
            let pod = p.id.clone();
            async move { create(&mut cri, &pod, c).await }
        },
    );
    ensure!(a? == b?, "an identical retry must get the same id");
    let err = create(cri, &p.id, container("dup", &p.image, &["sleep", "1"]))
        .await
        .expect_err("duplicate name");
    ensure!(err.code() == tonic::Code::AlreadyExists, "{err:?}");
    p.env.remove_all_and_check().await
}

async fn pod_stop_and_remove_take_the_containers(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cascade").await?;
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("long", &p.image, &["sleep", "1000"])).await?;
    start(cri, &id).await?;
    cri.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 137, "{s:?}");
    cri.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await?;
    let err = status(cri, &id).await.expect_err("removed with its pod");
    ensure!(format!("{err:#}").contains("not found"), "{err:#}");
    p.env.remove_all_and_check().await
}

async fn daemon_restart_keeps_containers(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "restart").await?;
    let ticker = create(
        &mut p.env.cri,
        &p.id,
        container(
            "ticker",
            &p.image,
            &[
                "sh",
                "-c",
                "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
            ],
        ),
    )
    .await?;
    start(&mut p.env.cri, &ticker).await?;
    let done = create(
        &mut p.env.cri,
        &p.id,
        container("done", &p.image, &["sh", "-c", "exit 7"]),
    )
    .await?;
    start(&mut p.env.cri, &done).await?;
    wait_exited(&mut p.env.cri, &done).await?;
    let quick = create(
        &mut p.env.cri,
        &p.id,
        container("quick", &p.image, &["sh", "-c", "sleep 1; exit 9"]),
    )
    .await?;
    start(&mut p.env.cri, &quick).await?;

    let daemon = p.env.daemon.as_mut().context("daemon")?;
    daemon.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))?;
    // quick exits while no daemon runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = read_log(p.logs.path(), "ticker").lines().count();
    daemon.restart(Signal::SIGKILL)?;
    daemon.wait_runtime_ready(Duration::from_secs(30)).await?;
    p.env.cri = crius_testkit::client::connect(p.env.daemon().socket()).await?;
    let cri = &mut p.env.cri;
    let s = status(cri, &ticker).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let s = status(cri, &done).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerExited as i32 && s.exit_code == 7,
        "{s:?}"
    );
    let s = wait_exited(cri, &quick).await?;
    ensure!(s.exit_code == 9, "an exit while the daemon was down: {s:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = read_log(p.logs.path(), "ticker").lines().count();
    ensure!(
        after > before + 2,
        "logs stopped flowing: {before} -> {after} lines"
    );
    p.env.remove_all_and_check().await
}

pub(crate) async fn exec(
    cri: &mut Cri,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<v1::ExecSyncResponse, tonic::Status> {
    cri.runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

async fn exec_sync_output_exit_code_timeout_and_cap(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "exec").await?;
    let daemon_pid = p.env.daemon().pid().context("daemon pid")?;
    let cri = &mut p.env.cri;
    let id = create(
        cri,
        &p.id,
        container("target", &p.image, &["sleep", "1000"]),
    )
    .await?;
    let err = exec(cri, &id, &["true"], 0)
        .await
        .expect_err("not running yet");
    ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");
    start(cri, &id).await?;
    let r = exec(
        cri,
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 4"],
        10,
    )
    .await?;
    ensure!(
        r.stdout == b"out\n" && r.stderr == b"err\n" && r.exit_code == 4,
        "{r:?}"
    );
    let started = Instant::now();
    let err = exec(cri, &id, &["sleep", "30"], 1)
        .await
        .expect_err("timeout");
    ensure!(err.code() == tonic::Code::DeadlineExceeded, "{err:?}");
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // 200 MB of output: capped at 16 MiB less 1 KiB in all (the answer fits
    // the 16 MiB message kubelet reads), and the daemon only ever holds
    // the capped part (its peak RSS grows by far less than 200 MB).
    let peak_before = peak_rss_kib(daemon_pid)?;
    let r = exec(
        cri,
        &id,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero bs=1048576 count=200 2>/dev/null",
        ],
        60,
    )
    .await?;
    ensure!(
        r.stdout.len() == (16 << 20) - 1024 && r.exit_code == 0,
        "{} bytes, exit {}",
        r.stdout.len(),
        r.exit_code
    );
    let grown_mib = (peak_rss_kib(daemon_pid)? - peak_before) / 1024;
    ensure!(
        grown_mib < 80,
        "criusd's peak RSS grew by {grown_mib} MiB for 200 MB of output"
    );
    // A process left in the background keeps the pipes open: the output
    // of the command still comes back, soon after it exits.
    let started = Instant::now();
    let r = exec(cri, &id, &["sh", "-c", "sleep 300 & echo detached"], 30).await?;
    ensure!(
        String::from_utf8_lossy(&r.stdout) == "detached\n" && r.exit_code == 0,
        "{r:?}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "ExecSync waited {:?} for a background process",
        started.elapsed()
    );
    // A plain command is quick.
    let started = Instant::now();
    exec(cri, &id, &["true"], 10).await?;
    ensure!(
        started.elapsed() < Duration::from_millis(1500),
        "ExecSync of true took {:?}",
        started.elapsed()
    );
    let err = exec(cri, "nope", &["true"], 0).await.expect_err("unknown");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    p.env.remove_all_and_check().await
}

async fn reopen_log_and_update_resources(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "rotate").await?;
    let cri = &mut p.env.cri;
    let id = create(
        cri,
        &p.id,
        container(
            "talker",
            &p.image,
            &[
                "sh",
                "-c",
                "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done",
            ],
        ),
    )
    .await?;
    start(cri, &id).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.logs.path().join("talker.log");
    let rotated = p.logs.path().join("talker.log.1");
    std::fs::rename(&log, &rotated)?;
    cri.runtime
        .reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = std::fs::read_to_string(&log)?;
    let old = std::fs::read_to_string(&rotated)?;
    ensure!(
        !old.is_empty() && new.lines().count() >= 2,
        "old {} lines, new {} lines",
        old.lines().count(),
        new.lines().count()
    );
    // A memory limit reaches the running container's cgroup.
    cri.runtime
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let r = exec(
        cri,
        &id,
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        10,
    )
    .await?;
    let limit = String::from_utf8_lossy(&r.stdout).trim().to_string();
    ensure!(
        limit == (64u64 << 20).to_string(),
        "limit inside: {limit:?} {r:?}"
    );
    // Values the runtime refuses are the client's: INVALID_ARGUMENT with
    // runc's reason (INTERNAL before), and the container keeps running.
    let refused = cri
        .runtime
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(v1::LinuxContainerResources {
                cpu_shares: 1_000_000_000_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("cpu shares of 10^18");
    ensure!(
        refused.code() == tonic::Code::InvalidArgument && refused.message().contains("linux"),
        "{refused:?}"
    );
    ensure!(
        status(cri, &id).await?.state == v1::ContainerState::ContainerRunning as i32,
        "still running"
    );
    cri.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    wait_exited(cri, &id).await?;
    let err = cri
        .runtime
        .reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("not running");
    ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");
    p.env.remove_all_and_check().await
}

async fn cli_run_ps_exec_logs_stop_rm(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let socket = p.daemon().socket().to_path_buf();
    let image = env.images.reference(ti::BUSYBOX);
    let crius = |args: &[&str]| {
        std::process::Command::new(crate::CRIUS)
            .arg("--endpoint")
            .arg(&socket)
            .args(args)
            .output()
    };
    let tag = std::process::id();
    let name = format!("cli-once-{tag}");
    let out = crius(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-e",
        "GREETING=hello-env",
        &image,
        "sh",
        "-c",
        "echo $GREETING; exit 3",
    ])?;
    ensure!(
        out.status.code() == Some(3),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("hello-env"),
        "{:?}",
        out.stdout
    );
    ensure!(
        crate::pods::list_pods_pub(&mut p.cri).await?.is_empty(),
        "--rm left the pod"
    );
    // A run that fails after its pod was made (the image cannot be pulled)
    // takes its pod away again; a bad --volume fails before anything.
    for bad in [
        vec![
            "run",
            "--name",
            "cli-nopull",
            "127.0.0.1:9/no-such:1",
            "true",
        ],
        vec!["run", "-v", "/srv:/srv:xyz", &image, "true"],
    ] {
        let out = crius(&bad)?;
        ensure!(!out.status.success(), "{bad:?} succeeded");
        ensure!(
            crate::pods::list_pods_pub(&mut p.cri).await?.is_empty(),
            "{bad:?} left its pod: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let name = format!("cli-bg-{tag}");
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let publish = format!("127.0.0.1:{host_port}:8080");
    let out = crius(&[
        "run",
        "-d",
        "-p",
        &publish,
        "--name",
        &name,
        &image,
        "sh",
        "-c",
        "echo started; nc -l -p 8080 -e echo hello-published; sleep 1000",
    ])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout)?.trim().to_string();
    let ps = String::from_utf8(crius(&["ps"])?.stdout)?;
    ensure!(ps.contains(&id[..13]) && ps.contains("Running"), "{ps}");
    let out = crius(&["exec", &id, "--", "sh", "-c", "echo inside; exit 5"])?;
    ensure!(
        out.status.code() == Some(5) && String::from_utf8_lossy(&out.stdout) == "inside\n",
        "{out:?}"
    );
    let mut logs = String::new();
    for _ in 0..20 {
        logs = String::from_utf8(crius(&["logs", &id])?.stdout)?;
        if logs.contains("started") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(logs.trim() == "started", "{logs:?}");
    // --since: an age keeps the line, a time after it drops it.
    let recent = String::from_utf8(crius(&["logs", "--since", "1h", &id])?.stdout)?;
    ensure!(recent.trim() == "started", "{recent:?}");
    let none = crius(&["logs", "--since", "2999-01-01T00:00:00Z", &id])?;
    ensure!(none.status.success() && none.stdout.is_empty(), "{none:?}");
    let digests = String::from_utf8(crius(&["images", "--digests"])?.stdout)?;
    ensure!(
        digests.contains("DIGEST") && digests.contains("sha256:"),
        "{digests}"
    );
    // -p: the host port reaches the container.
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
    ensure!(
        answer.contains("hello-published"),
        "-p {publish} did not reach the container: {answer:?}"
    );
    let inspect: serde_json::Value = serde_json::from_slice(&crius(&["inspect", &id])?.stdout)?;
    ensure!(inspect["state"] == "Running", "{inspect}");
    let yaml = String::from_utf8(crius(&["-o", "yaml", "inspect", &id])?.stdout)?;
    ensure!(yaml.lines().any(|l| l == "state: Running"), "{yaml}");
    ensure!(crius(&["stop", "-t", "0", &id])?.status.success());
    let ps = String::from_utf8(crius(&["ps", "-a"])?.stdout)?;
    ensure!(ps.contains("Exited"), "{ps}");
    // --state and --label filter (a state implies -a).
    let ids = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["ps", "-q"];
        all.extend_from_slice(args);
        Ok(String::from_utf8(crius(&all)?.stdout)?.trim().to_string())
    };
    ensure!(ids(&["--state", "exited"])? == id, "--state exited");
    ensure!(ids(&["--state", "running"])?.is_empty(), "--state running");
    ensure!(
        ids(&["-a", "--label", "no-such=label"])?.is_empty(),
        "--label"
    );
    ensure!(
        !crius(&["ps", "--state", "sleeping"])?.status.success(),
        "a bad state"
    );
    ensure!(crius(&["rm", &id])?.status.success());
    ensure!(
        String::from_utf8(crius(&["ps", "-a", "-q"])?.stdout)?
            .trim()
            .is_empty()
    );
    let _ = std::fs::remove_dir_all(format!("/var/log/crius/pods/{name}"));
    p.remove_all_and_check().await
}

async fn image_unpacked_lazily_at_create(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "lazy").await?;
    let cri = &mut p.env.cri;
    let resp = cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: p.image.clone(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(resp.info.get("info").context("verbose")?)?;
    let chain_id = info["chainID"].as_str().context("chain id")?.to_string();
    // The image's snapshot goes away...
    p.env
        .containerd
        .snapshot_remove("overlayfs", &chain_id)
        .await?;
    ensure!(
        p.env
            .containerd
            .snapshot_stat("overlayfs", &chain_id)
            .await?
            .is_none()
    );
    // ...and creating a container from it unpacks it again.
    let id = create(
        cri,
        &p.id,
        container("lazy", &p.image, &["sh", "-c", "exit 0"]),
    )
    .await?;
    ensure!(
        p.env
            .containerd
            .snapshot_stat("overlayfs", &chain_id)
            .await?
            .is_some(),
        "not unpacked"
    );
    start(cri, &id).await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 0, "{s:?}");
    p.env.remove_all_and_check().await
}

async fn oom_kill_is_reported(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "oom").await?;
    let cri = &mut p.env.cri;
    // `tail` of an endless file with no newline keeps growing its buffer.
    let mut c = container("hog", &p.image, &["tail", "/dev/zero"]);
    c.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 137 && s.reason == "OOMKilled", "{s:?}");
    p.env.remove_all_and_check().await
}

async fn failing_start_reports_and_cleans_up(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "badstart").await?;
    let cri = &mut p.env.cri;
    let id = create(
        cri,
        &p.id,
        container("nocmd", &p.image, &["/no/such/command"]),
    )
    .await?;
    let err = cri
        .runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("the command does not exist");
    ensure!(
        err.message().contains("/no/such/command"),
        "the runtime's error should name it: {err:?}"
    );
    ensure!(
        err.code() == tonic::Code::FailedPrecondition,
        "the client's command, not crius' fault: {err:?}"
    );
    let s = status(cri, &id).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerExited as i32 && s.reason == "StartError",
        "{s:?}"
    );
    ensure!(s.message.contains("/no/such/command"), "{s:?}");
    cri.runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    p.env.remove_all_and_check().await
}

async fn container_from_an_imported_archive(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "imported").await?;
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("a.tar");
    let name = "registry.invalid/air-gapped/distinct-a:1";
    env.images
        .write_oci_layout_tar(ti::DISTINCT_A, &archive, name)?;
    let out = std::process::Command::new(crate::CRIUS)
        .arg("--endpoint")
        .arg(p.env.daemon().socket())
        .args(["image", "import"])
        .arg(&archive)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cri = &mut p.env.cri;
    let id = create(
        cri,
        &p.id,
        container("from-archive", name, &["cat", "/marker"]),
    )
    .await?;
    start(cri, &id).await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 0, "{s:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = read_log(p.logs.path(), "from-archive");
    ensure!(log.contains("stdout F a"), "{log}");
    p.env.remove_all_and_check().await
}

/// `crius create POD FILE` takes a ContainerConfig as crictl does (YAML
/// here); `crius start`, `logs` and `rm` then work on the id it prints.
async fn cli_create_from_a_config_file(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cli-create").await?;
    let socket = p.env.daemon().socket().to_path_buf();
    let crius = |args: &[&str]| {
        std::process::Command::new(crate::CRIUS)
            .arg("--endpoint")
            .arg(&socket)
            .args(args)
            .output()
    };
    let file = p.logs.path().join("app.yaml");
    std::fs::write(
        &file,
        format!(
            "metadata:\n  name: app\nimage:\n  image: {}\ncommand: [sh, -c, 'echo from-yaml $GREETING; sleep 60']\n\
             envs:\n  - key: GREETING\n    value: hi\nlog_path: app.log\n\
             linux:\n  security_context:\n    run_as_user: 1234\n",
            p.image
        ),
    )?;
    let out = crius(&["create", &p.id[..12], &file.display().to_string()])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout)?.trim().to_string();
    ensure!(id.len() == 64, "not an id: {id:?}");
    let s = status(&mut p.env.cri, &id).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerCreated as i32,
        "{s:?}"
    );
    let out = crius(&["start", &id])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = exec(&mut p.env.cri, &id, &["id", "-u"], 10).await?;
    ensure!(String::from_utf8_lossy(&r.stdout).trim() == "1234", "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = crius(&["logs", &id])?;
        if String::from_utf8_lossy(&out.stdout).contains("from-yaml hi") {
            break;
        }
        ensure!(Instant::now() < deadline, "no log line: {:?}", out);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A typo in the file is refused by the CLI, naming the field.
    std::fs::write(&file, "metadata:\n  name: typo\ncomand: [true]\n")?;
    let out = crius(&["create", &p.id, &file.display().to_string()])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("comand"),
        "{out:?}"
    );
    // Running: refused without -f, as docker refuses it.
    let out = crius(&["rm", &id])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("-f"),
        "{out:?}"
    );
    let out = crius(&["rm", "-f", &id])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.env.remove_all_and_check().await
}

/// SIGKILL to the shim of a running pod: containerd reports the tasks dead
/// (128 + SIGKILL), the container shows EXITED(137), the pod NOTREADY, and
/// removing them leaves nothing: no process, mount or record.
async fn killed_shim_means_exited_137(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "shim-kill").await?;
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("victim", &p.image, &["sleep", "600"])).await?;
    start(cri, &id).await?;
    let pid = status_verbose_pid(cri, &id).await?;
    let shims: Vec<i32> = crius_testkit::pids_with_arg(&p.id)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("containerd-shim"))
        })
        .collect();
    ensure!(shims.len() == 1, "shims of the pod: {shims:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shims[0]), Signal::SIGKILL)?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 137, "{s:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = cri
            .runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: p.id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("pod status")?;
        if st.state == v1::PodSandboxState::SandboxNotready as i32 {
            break;
        }
        ensure!(Instant::now() < deadline, "pod still ready: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The container's process went with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        ensure!(
            Instant::now() < deadline,
            "container process {pid} survived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cri.runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    ensure!(
        p.env.containerd.container_get(&id).await?.is_none(),
        "record left"
    );
    ensure!(
        p.env
            .containerd
            .snapshot_stat("overlayfs", &id)
            .await?
            .is_none(),
        "snapshot left"
    );
    p.env.remove_all_and_check().await
}

/// The pid of a running container, from its verbose status.
pub(crate) async fn status_verbose_pid(cri: &mut Cri, id: &str) -> anyhow::Result<i64> {
    let r = cri
        .runtime
        .container_status(v1::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(r.info.get("info").context("no info")?)?;
    info["pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .with_context(|| format!("no pid in {info}"))
}

/// A process' peak resident set (VmHWM), KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmHWM for {pid}"))
}

/// An image's `VOLUME`s get host directories of their own holding a copy
/// of the image's content there (modes, owners and links kept), writable
/// even with a read-only rootfs; a request mount at the same path wins;
/// removal takes them away.
async fn image_volumes_are_writable_copies(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "volumes").await?;
    let image = env.images.reference(ti::VOLUME);
    crate::images::pull(&mut p.env.cri, &image).await?;
    let daemon_dir = p.env.daemon().dir().to_path_buf();
    let cri = &mut p.env.cri;
    let mut c = container("vol", &image, &["sleep", "600"]);
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    let sh = |cmd: &str| vec!["sh".to_string(), "-c".to_string(), cmd.to_string()];
    for (cmd, want) in [
        ("cat /data/seed", ti::VOLUME_SEED.to_string()),
        (
            "stat -c '%u:%g %a' /data /data/seed",
            "1234:1234 750\n1234:1234 640\n".into(),
        ),
        ("readlink /data/link", "seed\n".into()),
        (
            "echo new > /data/new && cat /data/new && echo s > /scratch/s && cat /scratch/s",
            "new\ns\n".into(),
        ),
    ] {
        let args: Vec<String> = sh(cmd);
        let r = exec(
            cri,
            &id,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            10,
        )
        .await?;
        ensure!(
            r.exit_code == 0 && String::from_utf8_lossy(&r.stdout) == want,
            "{cmd}: {r:?}"
        );
    }
    let r = exec(cri, &id, &["sh", "-c", "echo x > /elsewhere"], 10).await?;
    ensure!(r.exit_code != 0, "the rootfs is writable: {r:?}");
    let volumes = daemon_dir.join("root/containers").join(&id).join("volumes");
    let mut entries: Vec<String> = std::fs::read_dir(&volumes)
        .with_context(|| format!("reading {}", volumes.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    entries.sort();
    ensure!(entries == ["0", "1"], "{entries:?}");

    // A request mount at /data replaces the image's volume there.
    let host = tempfile::tempdir()?;
    std::fs::write(host.path().join("mine"), "mine\n")?;
    let mut c = container("mounted", &image, &["sleep", "600"]);
    c.mounts = vec![v1::Mount {
        container_path: "/data".into(),
        host_path: host.path().display().to_string(),
        ..Default::default()
    }];
    let other = create(cri, &p.id, c).await?;
    start(cri, &other).await?;
    let r = exec(cri, &other, &["ls", "/data"], 10).await?;
    ensure!(String::from_utf8_lossy(&r.stdout) == "mine\n", "{r:?}");

    cri.runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    ensure!(
        !volumes.exists(),
        "the volumes of a removed container stayed"
    );
    p.env.remove_all_and_check().await
}

/// The resources of CreateContainer, read back from the container's own
/// cgroup files and /proc (and the cgroup sits under the pod's parent).
async fn resources_are_seen_in_the_cgroup(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "resources").await?;
    let cri = &mut p.env.cri;
    let mut c = container("limited", &p.image, &["sleep", "600"]);
    c.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 25_000,
            cpu_shares: 256,
            memory_limit_in_bytes: 48 << 20,
            oom_score_adj: 700,
            cpuset_cpus: "0".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    for (file, want) in [
        ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000"),
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "25000"),
        ("/sys/fs/cgroup/cpu/cpu.shares", "256"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "50331648"),
        ("/sys/fs/cgroup/cpuset/cpuset.cpus", "0"),
    ] {
        let r = exec(cri, &id, &["cat", file], 10).await?;
        let got = String::from_utf8_lossy(&r.stdout).trim().to_string();
        ensure!(got == want, "{file}: {got:?} (want {want}) {r:?}");
    }
    // On the host: the process' oom_score_adj, and its cgroup.
    let pid = status_verbose_pid(cri, &id).await?;
    let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))?;
    ensure!(adj.trim() == "700", "oom_score_adj {adj:?}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let memory = cgroup
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .context("no memory cgroup")?;
    ensure!(memory.ends_with(&id), "container cgroup {memory:?}");
    p.env.remove_all_and_check().await
}

/// A container with a terminal: stdout and stderr share it, and the log
/// has them as `stdout` records.
async fn tty_output_is_logged_as_stdout(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "tty").await?;
    let cri = &mut p.env.cri;
    let mut c = container(
        "term",
        &p.image,
        &[
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; [ -t 1 ] && echo is-a-tty",
        ],
    );
    c.tty = true;
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 0, "{s:?}");
    let log = read_log(p.logs.path(), "term");
    for want in ["to-out", "to-err", "is-a-tty"] {
        ensure!(
            log.lines()
                .any(|l| l.contains(" stdout F ") && l.trim_end_matches('\r').ends_with(want)),
            "{want} missing: {log:?}"
        );
    }
    ensure!(!log.contains(" stderr "), "{log:?}");
    p.env.remove_all_and_check().await
}

/// ContainerStats / ListContainerStats (kubelet's CRI stats provider): CPU
/// time and rate, memory, the writable layer, for running containers only.
async fn stats_of_running_containers(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stats").await?;
    let cri = &mut p.env.cri;
    let mut c = container(
        "busy",
        &p.image,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/blob bs=1048576 count=8 2>/dev/null; while :; do :; done",
        ],
    );
    c.labels = HashMap::from([("app".to_string(), "busy".to_string())]);
    let busy = create(cri, &p.id, c).await?;
    start(cri, &busy).await?;
    let done = create(cri, &p.id, container("done", &p.image, &["true"])).await?;
    start(cri, &done).await?;
    wait_exited(cri, &done).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = |cri: &mut Cri| {
        let mut cri = cri.clone();
        let id = busy.clone();
        async move {
            anyhow::Ok(
                cri.runtime
                    .container_stats(v1::ContainerStatsRequest { container_id: id })
                    .await?
                    .into_inner()
                    .stats
                    .context("no stats")?,
            )
        }
    };
    let first = stats(cri).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = stats(cri).await?;
    let cpu = |s: &v1::ContainerStats| {
        s.cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map(|v| v.value)
            .unwrap_or(0)
    };
    ensure!(
        cpu(&second) > cpu(&first) && cpu(&first) > 0,
        "CPU time did not grow: {first:?} -> {second:?}"
    );
    let rate = second
        .cpu
        .as_ref()
        .and_then(|c| c.usage_nano_cores.as_ref())
        .map(|v| v.value)
        .context("no CPU rate on the second sample")?;
    ensure!(
        rate > 50_000_000,
        "a busy loop used {rate} nano-cores (under 5% of a core)"
    );
    let memory = second.memory.as_ref().context("no memory")?;
    ensure!(
        memory
            .working_set_bytes
            .as_ref()
            .is_some_and(|v| v.value > 0)
            && memory.usage_bytes.as_ref().is_some_and(|v| v.value > 0),
        "{memory:?}"
    );
    let layer = second
        .writable_layer
        .as_ref()
        .context("no writable layer")?;
    ensure!(
        layer
            .used_bytes
            .as_ref()
            .is_some_and(|v| v.value >= 8 << 20)
            && layer
                .fs_id
                .as_ref()
                .is_some_and(|f| !f.mountpoint.is_empty()),
        "{layer:?}"
    );
    ensure!(
        second.attributes.as_ref().map(|a| a.id.as_str()) == Some(busy.as_str()),
        "{second:?}"
    );
    // The list: every container (an exited one with its writable layer
    // only, as containerd lists it), by pod and by label.
    for (filter, want) in [
        (
            v1::ContainerStatsFilter {
                pod_sandbox_id: p.id.clone(),
                ..Default::default()
            },
            vec![busy.clone(), done.clone()],
        ),
        (
            v1::ContainerStatsFilter {
                label_selector: HashMap::from([("app".to_string(), "busy".to_string())]),
                ..Default::default()
            },
            vec![busy.clone()],
        ),
    ] {
        let listed = cri
            .runtime
            .list_container_stats(v1::ListContainerStatsRequest {
                filter: Some(filter),
            })
            .await?
            .into_inner()
            .stats;
        let ids: Vec<_> = listed
            .iter()
            .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
            .collect();
        ensure!(ids == want, "{ids:?}");
        if let Some(exited) = listed
            .iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == done))
        {
            ensure!(
                exited.cpu.is_none() && exited.writable_layer.is_some(),
                "{exited:?}"
            );
        }
    }
    let err = cri
        .runtime
        .container_stats(v1::ContainerStatsRequest {
            container_id: "0123456789abcdef".into(),
        })
        .await
        .expect_err("unknown container");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    p.env.remove_all_and_check().await
}

/// PodSandboxStats / ListPodSandboxStats: the pod's cgroup (its cgroup
/// parent), processes, network interfaces and its running containers.
async fn stats_of_a_pod(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let parent = format!("/crius-test-stats-{}", std::process::id());
    let mut c = config("pod-stats");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        cgroup_parent: parent.clone(),
        ..Default::default()
    });
    let id = run(&mut p.cri, c).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let mut cc = container("spin", &image, &["sh", "-c", "while :; do :; done"]);
    cc.log_path = String::new();
    let cid = create(&mut p.cri, &id, cc).await?;
    start(&mut p.cri, &cid).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = pod_stats(&mut p.cri, &id).await?;
    let linux = stats.linux.as_ref().context("no linux stats")?;
    ensure!(
        linux
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .is_some_and(|v| v.value > 0),
        "{linux:?}"
    );
    ensure!(
        linux
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .is_some_and(|v| v.value > 0),
        "{linux:?}"
    );
    ensure!(
        linux
            .process
            .as_ref()
            .and_then(|p| p.process_count.as_ref())
            .is_some_and(|v| v.value >= 2),
        "pause and the container: {linux:?}"
    );
    let network = linux.network.as_ref().context("no network")?;
    ensure!(
        network
            .default_interface
            .as_ref()
            .is_some_and(|i| i.name == "eth0"),
        "{network:?}"
    );
    let ids: Vec<_> = linux
        .containers
        .iter()
        .filter_map(|c| c.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    ensure!(ids == [cid.clone()], "{ids:?}");
    let listed = p
        .cri
        .runtime
        .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest {
            filter: Some(v1::PodSandboxStatsFilter {
                id: id[..12].to_string(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .stats;
    ensure!(
        listed.len() == 1
            && listed[0].attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()),
        "{listed:?}"
    );
    let result = p.remove_all_and_check().await;
    for controller in [
        "cpu", "cpuacct", "systemd", "unified", "cpuset", "memory", "pids", "devices", "freezer",
        "blkio",
    ] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{controller}{parent}"));
    }
    result
}

/// A stand-in for runc's systemd cgroup driver on a host without systemd:
/// it rewrites the bundle's `slice:prefix:name` cgroupsPath into the
/// cgroupfs path systemd gives that scope (the slice expanded,
/// `a-b.slice` = `/a.slice/a-b.slice`, then `prefix-name.scope`), then
/// runs runc with its cgroupfs driver.
const SYSTEMD_LAYOUT_RUNC: &str = r#"#!/bin/sh
bundle=""; prev=""
for a in "$@"; do
    [ "$prev" = "--bundle" ] && bundle="$a"
    prev="$a"
done
spec="$bundle/config.json"
if [ -n "$bundle" ] && [ -f "$spec" ]; then
    cg=$(sed -n 's/.*"cgroupsPath":"\([^"]*\)".*/\1/p' "$spec")
    case "$cg" in
    /*|"") ;;
    *:*:*)
        slice=${cg%%:*}; rest=${cg#*:}; prefix=${rest%%:*}; name=${rest#*:}
        path=""; acc=""
        for c in $(echo "${slice%.slice}" | tr '-' ' '); do
            acc="$acc$c"; path="$path/$acc.slice"; acc="$acc-"
        done
        sed -i "s|\"cgroupsPath\":\"$cg\"|\"cgroupsPath\":\"$path/$prefix-$name.scope\"|" "$spec"
        ;;
    esac
fi
exec runc "$@"
"#;

/// Container and pod stats under `cgroup_driver = "systemd"`: the spec
/// says `<pod slice>:crius:<id>` and stats find the scope and the pod's
/// slice where systemd lays them out. This machine has no systemd, so
/// runc's systemd driver cannot run here: [`SYSTEMD_LAYOUT_RUNC`] places
/// the cgroups as it would.
async fn stats_under_the_systemd_driver(env: Arc<Env>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("crius-systemd-runc-")
        .tempdir_in("/tmp")?;
    let wrapper = dir.path().join("runc");
    std::fs::write(&wrapper, SYSTEMD_LAYOUT_RUNC)?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let tables = format!(
        "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
         [runtimes.runc.options]\nbinary_name = {:?}\n",
        wrapper.display().to_string()
    );
    let mut p = PodEnv::start_with(&env, None, "cgroup_driver = \"systemd\"", &tables).await?;
    let top = format!("crius{}", std::process::id());
    let slice = format!("/{top}.slice/{top}-stats.slice");
    let result = systemd_stats(&env, &mut p, &slice).await;
    let removed = p.remove_all_and_check().await;
    for controller in [
        "cpu", "cpuacct", "systemd", "unified", "cpuset", "memory", "pids", "devices", "freezer",
        "blkio",
    ] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{controller}{slice}"));
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{controller}/{top}.slice"));
    }
    result.and(removed)
}

async fn systemd_stats(env: &Env, p: &mut PodEnv, slice: &str) -> anyhow::Result<()> {
    let mut c = config("systemd-stats");
    c.linux = Some(v1::LinuxPodSandboxConfig {
        cgroup_parent: slice.to_string(),
        ..Default::default()
    });
    let id = run(&mut p.cri, c).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let mut cc = container("spin", &image, &["sh", "-c", "while :; do :; done"]);
    cc.log_path = String::new();
    let cid = create(&mut p.cri, &id, cc).await?;
    start(&mut p.cri, &cid).await?;
    let scope = format!("/sys/fs/cgroup/memory{slice}/crius-{cid}.scope");
    ensure!(std::path::Path::new(&scope).is_dir(), "no scope at {scope}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = p
        .cri
        .runtime
        .container_stats(v1::ContainerStatsRequest {
            container_id: cid.clone(),
        })
        .await?
        .into_inner()
        .stats
        .context("no container stats")?;
    ensure!(
        stats
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .is_some_and(|v| v.value > 0)
            && stats
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .is_some_and(|v| v.value > 0),
        "{stats:?}"
    );
    let pod = pod_stats(&mut p.cri, &id).await?;
    let linux = pod.linux.as_ref().context("no linux stats")?;
    ensure!(
        linux
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .is_some_and(|v| v.value > 0)
            && linux
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .is_some_and(|v| v.value > 0)
            && linux
                .process
                .as_ref()
                .and_then(|p| p.process_count.as_ref())
                .is_some_and(|v| v.value >= 2),
        "the pod's slice holds pause and the container: {linux:?}"
    );
    Ok(())
}

/// PodSandboxStats of pod `id`.
async fn pod_stats(cri: &mut Cri, id: &str) -> anyhow::Result<v1::PodSandboxStats> {
    cri.runtime
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await?
        .into_inner()
        .stats
        .context("no pod stats")
}

/// StartContainer in a stopped pod: FAILED_PRECONDITION, not the runtime's
/// failure to join namespaces that are gone (INTERNAL before); the
/// container stays CREATED, as in containerd.
async fn a_container_of_a_stopped_pod_does_not_start(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stopped-pod").await?;
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("late", &p.image, &["true"])).await?;
    cri.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await?;
    let err = cri
        .runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("a start in a stopped pod");
    ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");
    let s = status(cri, &id).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerCreated as i32,
        "{s:?}"
    );
    p.env.remove_all_and_check().await
}
