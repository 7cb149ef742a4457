//! Issue 2: the daemon answers, reports its conditions, starts before
//! containerd, refuses bad config and stops cleanly.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use crius_cri_api::v1;
use crius_testkit::client::{self, Cri};
use crius_testkit::containerd::Containerd;
use crius_testkit::criusd::Criusd;
use nix::sys::signal::Signal;

use crate::{CRIUS, CRIUSD, Env};

crate::tests![
    version,
    status_reports_both_conditions,
    status_verbose_info,
    network_ready_follows_cni_config,
    runtime_config_reports_cgroupfs,
    update_runtime_config_stores_pod_cidr,
    image_fs_info_reports_the_snapshotter,
    bare_requests_name_the_missing_field,
    socket_and_state_dirs_have_tight_modes,
    containerd_down_at_start_then_recovers,
    unknown_config_key_stops_startup,
    bad_config_value_stops_startup,
    sigterm_exits_cleanly_and_removes_the_socket,
    busy_socket_is_not_taken_over,
    default_config_is_valid,
    cli_version_and_info,
];

async fn status(cri: &mut Cri, verbose: bool) -> anyhow::Result<v1::StatusResponse> {
    Ok(cri
        .runtime
        .status(v1::StatusRequest { verbose })
        .await?
        .into_inner())
}

fn condition<'a>(
    s: &'a v1::StatusResponse,
    kind: &str,
) -> anyhow::Result<&'a v1::RuntimeCondition> {
    s.status
        .as_ref()
        .context("no status")?
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .with_context(|| format!("no {kind} condition in {s:?}"))
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(false) => bail!("{what}: not within {timeout:?}"),
            Err(e) => return Err(e.context(format!("{what}: not within {timeout:?}"))),
        }
    }
}

async fn version(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let v = cri
        .runtime
        .version(v1::VersionRequest {
            version: "v1".into(),
        })
        .await?
        .into_inner();
    ensure!(v.runtime_name == "crius", "{v:?}");
    ensure!(v.runtime_api_version == "v1", "{v:?}");
    ensure!(v.runtime_version == env!("CARGO_PKG_VERSION"), "{v:?}");
    ensure!(!v.version.is_empty(), "{v:?}");
    Ok(())
}

async fn status_reports_both_conditions(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let s = status(&mut cri, false).await?;
    let runtime = condition(&s, "RuntimeReady")?;
    ensure!(runtime.status, "runtime not ready: {runtime:?}");
    // The shared daemon's CNI directory stays empty.
    let network = condition(&s, "NetworkReady")?;
    ensure!(!network.status, "{network:?}");
    ensure!(network.reason == "NetworkPluginNotReady", "{network:?}");
    ensure!(
        network
            .message
            .contains(&env.criusd.cni_conf_dir().display().to_string()),
        "the message should name the CNI directory: {network:?}"
    );
    ensure!(s.info.is_empty(), "info without verbose: {:?}", s.info);
    ensure!(
        s.runtime_handlers.iter().any(|h| h.name == "runc"),
        "{:?}",
        s.runtime_handlers
    );
    Ok(())
}

async fn status_verbose_info(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let s = status(&mut cri, true).await?;
    let json = |key: &str| -> anyhow::Result<serde_json::Value> {
        let raw = s
            .info
            .get(key)
            .with_context(|| format!("no {key} in {:?}", s.info.keys()))?;
        serde_json::from_str(raw).with_context(|| format!("{key} is not JSON: {raw}"))
    };
    let config = json("config")?;
    ensure!(config["containerd"]["namespace"] == "crius", "{config}");
    ensure!(config["default_runtime"] == "runc", "{config}");
    let containerd = json("containerd")?;
    let version = containerd["version"]
        .as_str()
        .context("containerd version")?;
    ensure!(version.starts_with("1."), "containerd version {version}");
    ensure!(
        containerd["address"] == env.containerd.socket().display().to_string(),
        "{containerd}"
    );
    let handlers = json("runtimeHandlers")?;
    ensure!(handlers["default"] == "runc", "{handlers}");
    ensure!(
        handlers["handlers"][0]["runtime_type"] == "io.containerd.runc.v2",
        "{handlers}"
    );
    // AppArmor as this machine has it (the tests run where it is off).
    let apparmor = json("apparmor")?;
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|p| p.starts_with('Y'));
    ensure!(apparmor["enabled"] == enabled, "{apparmor}");
    if !enabled {
        ensure!(apparmor["defaultProfile"].is_null(), "{apparmor}");
    }
    Ok(())
}

async fn network_ready_follows_cni_config(env: Arc<Env>) -> anyhow::Result<()> {
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        ensure!(
            std::path::Path::new("/usr/lib/cni").join(plugin).is_file(),
            "CNI plugin {plugin} missing from /usr/lib/cni: install containernetworking-plugins"
        );
    }
    let mut daemon = Criusd::start(&env.options())?;
    let mut cri = client::connect(daemon.socket()).await?;
    let s = status(&mut cri, false).await?;
    ensure!(
        !condition(&s, "NetworkReady")?.status,
        "ready without a config"
    );

    // A config naming a plugin that does not exist is not ready either.
    let conf = daemon.cni_conf_dir().join("10-test.conflist");
    std::fs::write(
        &conf,
        r#"{"cniVersion":"1.0.0","name":"crius-test","plugins":[{"type":"no-such-plugin"}]}"#,
    )?;
    let s = status(&mut cri, false).await?;
    let network = condition(&s, "NetworkReady")?;
    ensure!(
        !network.status && network.message.contains("no-such-plugin"),
        "{network:?}"
    );

    std::fs::write(
        &conf,
        r#"{"cniVersion":"1.0.0","name":"crius-test","plugins":[
            {"type":"bridge","bridge":"crius-test0","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}},
            {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
    )?;
    let s = status(&mut cri, false).await?;
    let network = condition(&s, "NetworkReady")?;
    ensure!(network.status, "valid config but not ready: {network:?}");

    std::fs::remove_file(&conf)?;
    let s = status(&mut cri, false).await?;
    ensure!(
        !condition(&s, "NetworkReady")?.status,
        "still ready after the config went away"
    );
    daemon.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    Ok(())
}

async fn runtime_config_reports_cgroupfs(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let c = cri
        .runtime
        .runtime_config(v1::RuntimeConfigRequest {})
        .await?
        .into_inner();
    let driver = c.linux.context("no linux config")?.cgroup_driver;
    let expected = if std::path::Path::new("/run/systemd/system").is_dir() {
        v1::CgroupDriver::Systemd
    } else {
        v1::CgroupDriver::Cgroupfs
    };
    ensure!(
        driver == expected as i32,
        "driver {driver}, expected {expected:?}"
    );
    Ok(())
}

async fn update_runtime_config_stores_pod_cidr(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let update = |cidr: &str| v1::UpdateRuntimeConfigRequest {
        runtime_config: Some(v1::RuntimeConfig {
            network_config: Some(v1::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    cri.runtime
        .update_runtime_config(update("10.244.1.0/24,fd00:1::/64"))
        .await?;
    let s = status(&mut cri, true).await?;
    ensure!(
        s.info.get("podCIDR").map(String::as_str) == Some("10.244.1.0/24,fd00:1::/64"),
        "{:?}",
        s.info.get("podCIDR")
    );
    let err = cri
        .runtime
        .update_runtime_config(update("10.244.1.0/40"))
        .await
        .expect_err("a bad CIDR must be refused");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    ensure!(err.message().contains("pod_cidr"), "{err:?}");
    Ok(())
}

async fn image_fs_info_reports_the_snapshotter(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let info = cri
        .image
        .image_fs_info(v1::ImageFsInfoRequest {})
        .await?
        .into_inner();
    let fs = info
        .image_filesystems
        .first()
        .context("no image filesystem")?;
    let mountpoint = &fs.fs_id.as_ref().context("no fs id")?.mountpoint;
    let expected = env
        .containerd
        .root()
        .join("io.containerd.snapshotter.v1.overlayfs");
    ensure!(
        *mountpoint == expected.display().to_string(),
        "{mountpoint} != {expected:?}"
    );
    ensure!(
        std::path::Path::new(mountpoint).is_dir(),
        "{mountpoint} is not a directory"
    );
    ensure!(
        fs.used_bytes.is_some() && fs.inodes_used.is_some(),
        "{fs:?}"
    );
    ensure!(fs.timestamp > 0, "{fs:?}");
    Ok(())
}

async fn bare_requests_name_the_missing_field(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let err = cri
        .runtime
        .exec(v1::ExecRequest::default())
        .await
        .expect_err("an Exec of no container");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    ensure!(err.message().contains("container_id"), "{err:?}");
    let err = cri
        .runtime
        .checkpoint_container(v1::CheckpointContainerRequest::default())
        .await
        .expect_err("a CheckpointContainer to nowhere");
    ensure!(
        err.code() == tonic::Code::InvalidArgument && err.message().contains("location"),
        "{err:?}"
    );
    Ok(())
}

async fn socket_and_state_dirs_have_tight_modes(env: Arc<Env>) -> anyhow::Result<()> {
    let mode = |p: &std::path::Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(p)
            .with_context(|| p.display().to_string())?
            .permissions()
            .mode()
            & 0o7777)
    };
    let socket = mode(env.criusd.socket())?;
    ensure!(socket == 0o660, "socket mode {socket:o}");
    let root = mode(&env.criusd.dir().join("root"))?;
    ensure!(root == 0o700, "root_dir mode {root:o}");
    let state = mode(&env.criusd.dir().join("state"))?;
    ensure!(state == 0o711, "state_dir mode {state:o}");
    Ok(())
}

async fn containerd_down_at_start_then_recovers(env: Arc<Env>) -> anyhow::Result<()> {
    let mut containerd = Containerd::configure()?;
    let mut opts = env.options();
    opts.containerd_socket = containerd.socket().to_path_buf();
    let mut daemon = Criusd::start(&opts)?;
    let mut cri = client::connect(daemon.socket()).await?;

    // Serving, but saying what it waits for.
    cri.runtime.version(v1::VersionRequest::default()).await?;
    let s = status(&mut cri, false).await?;
    let runtime = condition(&s, "RuntimeReady")?;
    ensure!(!runtime.status, "ready without containerd: {runtime:?}");
    ensure!(
        runtime
            .message
            .contains(&containerd.socket().display().to_string()),
        "the message should name containerd's socket: {runtime:?}"
    );
    let err = cri
        .image
        .image_fs_info(v1::ImageFsInfoRequest {})
        .await
        .expect_err("no containerd yet");
    ensure!(err.code() == tonic::Code::Unavailable, "{err:?}");
    ensure!(err.message().contains("containerd"), "{err:?}");
    ensure!(
        daemon.log().contains("waiting for containerd"),
        "log: {}",
        daemon.log()
    );

    containerd.spawn()?;
    eventually(
        Duration::from_secs(20),
        "RuntimeReady after containerd came up",
        || {
            let mut cri = cri.clone();
            async move { Ok(condition(&status(&mut cri, false).await?, "RuntimeReady")?.status) }
        },
    )
    .await?;
    cri.image.image_fs_info(v1::ImageFsInfoRequest {}).await?;

    // containerd going away later shows in Status too.
    containerd.stop();
    let s = status(&mut cri, false).await?;
    let runtime = condition(&s, "RuntimeReady")?;
    ensure!(
        !runtime.status && runtime.reason == "ContainerdUnavailable",
        "{runtime:?}"
    );
    // crius doctor names it, with the fix.
    let (code, report) = crate::doctor::doctor(daemon.socket(), false)?;
    ensure!(
        code == 1
            && report
                .lines()
                .any(|l| l.starts_with("FAIL  containerd") && l.contains("start containerd")),
        "{report}"
    );
    daemon.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    Ok(())
}

async fn unknown_config_key_stops_startup(env: Arc<Env>) -> anyhow::Result<()> {
    let mut opts = env.options();
    opts.extra_config = "frobnicate = true".into();
    let mut daemon = Criusd::spawn(&opts)?;
    let status = wait_exit(&mut daemon)?;
    ensure!(!status.success(), "criusd accepted an unknown key");
    ensure!(
        daemon.log().contains("frobnicate"),
        "the error should name the key: {}",
        daemon.log()
    );
    ensure!(
        !daemon.socket().exists(),
        "a refused config must not leave a socket"
    );
    Ok(())
}

async fn bad_config_value_stops_startup(env: Arc<Env>) -> anyhow::Result<()> {
    let mut opts = env.options();
    opts.extra_config = "shutdown_timeout_secs = 0\ndefault_runtime = \"/usr/bin/runc\"".into();
    let mut daemon = Criusd::spawn(&opts)?;
    let status = wait_exit(&mut daemon)?;
    ensure!(!status.success(), "criusd accepted bad values");
    let log = daemon.log();
    ensure!(
        log.contains("shutdown_timeout_secs") && log.contains("default_runtime"),
        "{log}"
    );
    Ok(())
}

fn wait_exit(daemon: &mut Criusd) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = daemon.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("criusd did not exit: {}", daemon.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn sigterm_exits_cleanly_and_removes_the_socket(env: Arc<Env>) -> anyhow::Result<()> {
    let mut daemon = Criusd::start(&env.options())?;
    // An open client connection must not hold the shutdown up.
    let mut cri = client::connect(daemon.socket()).await?;
    status(&mut cri, false).await?;
    let started = Instant::now();
    let exit = daemon.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?;
    ensure!(exit.success(), "exit status {exit}: {}", daemon.log());
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    ensure!(!daemon.socket().exists(), "socket left behind");
    ensure!(daemon.log().contains("SIGTERM"), "{}", daemon.log());
    Ok(())
}

async fn busy_socket_is_not_taken_over(env: Arc<Env>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A config file named explicitly must exist.
    let out = Command::new(CRIUSD)
        .arg("--config")
        .arg(dir.path().join("none.toml"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("none.toml"),
        "{stderr}"
    );

    let cfg = dir.path().join("empty.toml");
    std::fs::write(&cfg, "")?;
    let out = Command::new(CRIUSD)
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(env.criusd.socket())
        .arg("--containerd-address")
        .arg(env.containerd.socket())
        .arg("--root-dir")
        .arg(dir.path().join("root"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "second daemon started on a busy socket"
    );
    ensure!(stderr.contains("in use"), "{stderr}");
    // The first daemon still serves.
    let mut cri = env.cri().await?;
    status(&mut cri, false).await?;
    Ok(())
}

async fn default_config_is_valid(_env: Arc<Env>) -> anyhow::Result<()> {
    let out = Command::new(CRIUSD).args(["config", "default"]).output()?;
    ensure!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    ensure!(
        text.contains("[containerd]") && text.contains("# "),
        "{text}"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text)?;
    let out = Command::new(CRIUSD)
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn cli_version_and_info(env: Arc<Env>) -> anyhow::Result<()> {
    let endpoint = format!("unix://{}", env.criusd.socket().display());
    let out = Command::new(CRIUS)
        .args(["--endpoint", &endpoint, "info"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.contains("RuntimeReady") && text.contains("NetworkReady"),
        "{text}"
    );
    ensure!(text.contains("io.containerd.runc.v2"), "{text}");

    let out = Command::new(CRIUS)
        .args(["info", "-o", "json"])
        .env("CRIUS_ENDPOINT", env.criusd.socket())
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        info["conditions"].as_array().map(Vec::len) == Some(2),
        "{info}"
    );
    ensure!(info["conditions"][0]["status"] == true, "{info}");
    ensure!(info["containerd"]["version"].as_str().is_some(), "{info}");

    let out = Command::new(CRIUS)
        .args(["--endpoint", &endpoint, "version", "-o", "json"])
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        v["runtimeName"] == "crius" && v["runtimeApiVersion"] == "v1",
        "{v}"
    );

    let out = Command::new(CRIUS)
        .args(["--endpoint", "/nonexistent/crius.sock", "info"])
        .output()?;
    ensure!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("/nonexistent/crius.sock") && err.contains("criusd running"),
        "{err}"
    );
    Ok(())
}
