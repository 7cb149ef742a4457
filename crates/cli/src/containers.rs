//! Container commands: ps, inspect, logs, exec, start, stop, rm, run.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::{Context, bail};
use crius_cri_api::v1;
use serde_json::{Value, json};

use crius_stream::client::Transport;

use crate::interactive::Interactive;
use crate::{Cli, Command, client};

pub(crate) fn state_name(s: i32) -> &'static str {
    match v1::ContainerState::try_from(s) {
        Ok(v1::ContainerState::ContainerCreated) => "Created",
        Ok(v1::ContainerState::ContainerRunning) => "Running",
        Ok(v1::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

/// Which containers `crius ps` lists.
#[derive(Debug, Clone, Default)]
pub struct PsFilter {
    /// Any state (else running ones, unless `state` names one).
    pub all: bool,
    pub pod: Option<String>,
    /// created, running, exited or unknown.
    pub state: Option<String>,
    pub labels: std::collections::HashMap<String, String>,
}

impl PsFilter {
    /// The CRI filter: a state named, else running unless `all`.
    fn cri(&self) -> v1::ContainerFilter {
        let state = match self.state.as_deref() {
            Some("created") => Some(v1::ContainerState::ContainerCreated),
            Some("running") => Some(v1::ContainerState::ContainerRunning),
            Some("exited") => Some(v1::ContainerState::ContainerExited),
            Some(_) => Some(v1::ContainerState::ContainerUnknown),
            None if self.all => None,
            None => Some(v1::ContainerState::ContainerRunning),
        };
        v1::ContainerFilter {
            pod_sandbox_id: self.pod.clone().unwrap_or_default(),
            state: state.map(|s| v1::ContainerStateValue { state: s as i32 }),
            label_selector: self.labels.clone(),
            ..Default::default()
        }
    }
}

pub async fn ps(
    cli: &Cli,
    cri: &mut client::Cri,
    filter: &PsFilter,
    quiet: bool,
) -> anyhow::Result<()> {
    let list = list(cri, filter.cri()).await?;
    if cli.output.machine() {
        let out: Vec<Value> = list
            .iter()
            .map(|c| {
                json!({ "id": c.id, "podId": c.pod_sandbox_id, "name": c.metadata.as_ref().map(|m| m.name.clone()),
                        "image": c.image.as_ref().map(|i| i.image.clone()), "imageRef": c.image_ref,
                        "state": state_name(c.state), "createdAt": c.created_at, "labels": c.labels })
            })
            .collect();
        crate::print_doc(&out)?;
        return Ok(());
    }
    if quiet {
        for c in &list {
            println!("{}", c.id);
        }
        return Ok(());
    }
    println!(
        "{:<14} {:<40} {:<9} {:<20} POD ID",
        "CONTAINER", "IMAGE", "STATE", "NAME"
    );
    for c in &list {
        println!(
            "{:<14} {:<40} {:<9} {:<20} {}",
            short(&c.id),
            c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("-"),
            state_name(c.state),
            c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("-"),
            short(&c.pod_sandbox_id)
        );
    }
    Ok(())
}

/// The containers `filter` selects (ListContainers).
pub(crate) async fn list(
    cri: &mut client::Cri,
    filter: v1::ContainerFilter,
) -> anyhow::Result<Vec<v1::Container>> {
    Ok(cri
        .runtime
        .list_containers(v1::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .context("ListContainers")?
        .into_inner()
        .containers)
}

pub(crate) async fn status(
    cri: &mut client::Cri,
    id: &str,
) -> anyhow::Result<(v1::ContainerStatus, HashMap<String, String>)> {
    let r = cri
        .runtime
        .container_status(v1::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        })
        .await
        .context("ContainerStatus")?
        .into_inner();
    Ok((r.status.context("no status")?, r.info))
}

pub async fn inspect(cri: &mut client::Cri, id: &str) -> anyhow::Result<()> {
    let (s, info) = status(cri, id).await?;
    let mut out = json!({
        "id": s.id, "name": s.metadata.as_ref().map(|m| m.name.clone()), "state": state_name(s.state),
        "createdAt": s.created_at, "startedAt": s.started_at, "finishedAt": s.finished_at,
        "exitCode": s.exit_code, "reason": s.reason, "message": s.message,
        "image": s.image.as_ref().map(|i| i.image.clone()), "imageRef": s.image_ref, "imageId": s.image_id,
        "logPath": s.log_path, "labels": s.labels, "annotations": s.annotations,
        "mounts": s.mounts.iter().map(|m| json!({"containerPath": m.container_path, "hostPath": m.host_path, "readonly": m.readonly})).collect::<Vec<_>>(),
    });
    if let Some(i) = info.get("info") {
        out["info"] = serde_json::from_str(i).unwrap_or(Value::String(i.clone()));
    }
    crate::print_doc(&out)?;
    Ok(())
}

fn print_record(r: &crius_logs::Record, timestamps: bool) {
    let ts = if timestamps {
        format!("{} ", crius_logs::format_timestamp(r.timestamp))
    } else {
        String::new()
    };
    if r.partial {
        print!("{ts}{}", r.content);
    } else {
        println!("{ts}{}", r.content);
    }
}

/// How `crius logs` prints.
pub struct LogsHow {
    pub follow: bool,
    /// Only the last N lines (of those since `since`).
    pub tail: Option<usize>,
    pub timestamps: bool,
    pub since: Option<SystemTime>,
}

pub async fn logs(cri: &mut client::Cri, id: &str, how: &LogsHow) -> anyhow::Result<()> {
    let (s, _) = status(cri, id).await?;
    if s.log_path.is_empty() {
        bail!(
            "reading the logs of {id}: it has no log file; its pod sets no log directory or \
             its config no log path"
        );
    }
    let path = std::path::PathBuf::from(&s.log_path);
    // With --since every record is read, then the old ones dropped.
    let n = match how.since {
        Some(_) => usize::MAX,
        None => how.tail.unwrap_or(usize::MAX),
    };
    let shown = |records: Vec<crius_logs::Record>| {
        let kept = since_and_tail(records, how.since, how.tail);
        for r in &kept {
            print_record(r, how.timestamps);
        }
    };
    if !how.follow {
        shown(crius_logs::tail(&path, n)?);
        return Ok(());
    }
    let (records, mut follower) = crius_logs::Follower::tail(&path, n).await?;
    shown(records);
    loop {
        let r = follower.next().await?;
        print_record(&r, how.timestamps);
    }
}

/// The records at or after `since`, then the last `tail` of them.
fn since_and_tail(
    mut records: Vec<crius_logs::Record>,
    since: Option<SystemTime>,
    tail: Option<usize>,
) -> Vec<crius_logs::Record> {
    if let Some(since) = since {
        records.retain(|r| r.timestamp >= since);
    }
    if let Some(n) = tail {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    records
}

/// `--since`: an RFC 3339 time, or an age before now (`90s`, `10m`,
/// `1h30m`: numbers each followed by `h`, `m` or `s`).
pub fn parse_since(s: &str) -> Result<SystemTime, String> {
    if let Some(t) = crius_logs::parse_timestamp(s) {
        return Ok(t);
    }
    let age = parse_age(s).ok_or_else(|| {
        format!("{s:?} is neither an RFC 3339 time (2026-12-02T21:00:00Z) nor an age (10m, 1h30m)")
    })?;
    SystemTime::now()
        .checked_sub(age)
        .ok_or_else(|| format!("{s:?} reaches before 1970"))
}

fn parse_age(s: &str) -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (digits.is_empty() && !s.is_empty()).then(|| std::time::Duration::from_secs(total))
}

/// `crius exec ID -- CMD...` (ExecSync): the output at its end; the
/// command's exit code.
pub async fn exec(
    cri: &mut client::Cri,
    id: &str,
    cmd: &[String],
    timeout: i64,
) -> anyhow::Result<i32> {
    let r = cri
        .runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.to_vec(),
            timeout,
        })
        .await
        .context("ExecSync")?
        .into_inner();
    use std::io::Write;
    std::io::stdout().write_all(&r.stdout)?;
    std::io::stderr().write_all(&r.stderr)?;
    Ok(r.exit_code)
}

pub async fn start(cri: &mut client::Cri, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        cri.runtime
            .start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("starting {id}"))?;
        println!("{id}");
    }
    Ok(())
}

pub async fn stop(cri: &mut client::Cri, ids: &[String], timeout: i64) -> anyhow::Result<()> {
    for id in ids {
        cri.runtime
            .stop_container(v1::StopContainerRequest {
                container_id: id.clone(),
                timeout,
            })
            .await
            .with_context(|| format!("stopping {id}"))?;
        println!("{id}");
    }
    Ok(())
}

pub async fn rm(cri: &mut client::Cri, ids: &[String], force: bool) -> anyhow::Result<()> {
    for id in ids {
        if !force
            && let Ok((s, _)) = status(cri, id).await
            && s.state == v1::ContainerState::ContainerRunning as i32
        {
            bail!("removing {id}: it is running; stop it first (crius stop {id}) or use -f");
        }
        cri.runtime
            .remove_container(v1::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("removing {id}"))?;
        println!("{id}");
    }
    Ok(())
}

/// `crius run`: a pod and one container in one step; the container's
/// exit code (0 with `--detach`).
pub async fn run(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<i32> {
    let Command::Run {
        detach,
        interactive,
        tty,
        rm,
        env,
        volume,
        publish,
        name,
        user,
        read_only,
        privileged,
        runtime,
        image,
        cmd,
    } = &cli.command
    else {
        bail!("not a run command");
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = name
        .clone()
        .unwrap_or_else(|| format!("run-{:x}", nanos & 0xffff_ffff));
    // Everything the command line says is checked before anything is made.
    let (port_mappings, mounts) = parse_run_specs(publish, volume)?;
    // Attached (-i, -t): a tty only where ours is one.
    let attach = (!*detach && (*interactive || *tty))
        .then(|| Interactive::new(*interactive, *tty, Transport::Spdy));
    let (stdin, tty) = attach.map_or((*interactive, *tty), |a| (a.stdin, a.tty));
    let logs = std::path::PathBuf::from("/var/log/crius/pods").join(&name);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let pod_config = pod_config(&name, nanos, &logs, port_mappings, *privileged);
    let pod = match run_pod(cri, &pod_config, runtime).await {
        Ok(pod) => pod,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&logs);
            return Err(e);
        }
    };
    let security = security_context(user.as_deref(), *privileged, *read_only);
    let mut config = container_config(&name, image, cmd, env, mounts, security);
    (config.stdin, config.stdin_once, config.tty) = (stdin, stdin, tty);
    let started = async {
        ensure_image(cri, image).await?;
        create_and_start(cri, &pod, config, pod_config).await
    }
    .await;
    let id = match started {
        Ok(id) => id,
        Err(e) => {
            // Nothing of a run that failed stays behind.
            remove_pod(cri, &pod).await;
            let _ = std::fs::remove_dir_all(&logs);
            return Err(e);
        }
    };
    if *detach {
        println!("{id}");
        return Ok(0);
    }
    let log = logs.join(format!("{name}.log"));
    let exit_code = match attach {
        Some(how) => attach_until_exit(cri, &id, how, &log).await?,
        None => follow_until_exit(cri, &id, &log).await?,
    };
    if *rm {
        remove_run(cri, pod, &logs).await?;
    }
    Ok(exit_code)
}

/// `run --rm`: the pod and its log directory go.
async fn remove_run(
    cri: &mut client::Cri,
    pod: String,
    logs: &std::path::Path,
) -> anyhow::Result<()> {
    cri.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .context("RemovePodSandbox")?;
    let _ = std::fs::remove_dir_all(logs);
    Ok(())
}

/// `--publish` and `--volume` of `crius run`.
fn parse_run_specs(
    publish: &[String],
    volume: &[String],
) -> anyhow::Result<(Vec<v1::PortMapping>, Vec<v1::Mount>)> {
    let port_mappings = publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mounts = volume
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((port_mappings, mounts))
}

/// `run -i/-t`: attaches to the started container; its exit code. A
/// container that exited before the attach got there has its log
/// printed instead.
async fn attach_until_exit(
    cri: &mut client::Cri,
    id: &str,
    how: Interactive,
    log: &std::path::Path,
) -> anyhow::Result<i32> {
    let attached = crate::interactive::attach_with(cri, id, how).await;
    let s = status(cri, id).await?.0;
    let exited = s.state == v1::ContainerState::ContainerExited as i32;
    match attached {
        // The attach ends with the exit, or detached (0): the status,
        // where it has the exit, knows better.
        Ok(code) if exited && code == 0 => Ok(s.exit_code),
        Ok(code) => Ok(code),
        Err(_) if exited => follow_until_exit(cri, id, log).await,
        Err(e) => Err(e),
    }
}

/// The pod of `crius run`: named like the container, in `default`, its
/// logs under `logs`.
fn pod_config(
    name: &str,
    nanos: u128,
    logs: &std::path::Path,
    port_mappings: Vec<v1::PortMapping>,
    privileged: bool,
) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("crius-run-{nanos:x}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: logs.display().to_string(),
        port_mappings,
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs the pod; its id.
async fn run_pod(
    cri: &mut client::Cri,
    config: &v1::PodSandboxConfig,
    runtime: &str,
) -> anyhow::Result<String> {
    Ok(cri
        .runtime
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: runtime.to_string(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id)
}

/// Pulls `image` unless criusd has it.
async fn ensure_image(cri: &mut client::Cri, image: &str) -> anyhow::Result<()> {
    let spec = || v1::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let have = cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: Some(spec()),
            verbose: false,
        })
        .await
        .context("ImageStatus")?
        .into_inner()
        .image
        .is_some();
    if !have {
        cri.image
            .pull_image(v1::PullImageRequest {
                image: Some(spec()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("pulling {image}"))?;
    }
    Ok(())
}

/// `--env KEY=VALUE` (a bare `KEY` is an empty value).
fn env_var(e: &str) -> v1::KeyValue {
    let (k, v) = e.split_once('=').unwrap_or((e, ""));
    v1::KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

/// `--volume HOST:CONTAINER[:ro]`.
fn parse_volume(v: &str) -> anyhow::Result<v1::Mount> {
    let (host, container, readonly) = match v.split(':').collect::<Vec<_>>()[..] {
        [host, container] | [host, container, "rw"] => (host, container, false),
        [host, container, "ro"] => (host, container, true),
        _ => bail!("--volume takes HOST:CONTAINER[:ro|:rw], not {v:?}"),
    };
    Ok(v1::Mount {
        host_path: host.into(),
        container_path: container.into(),
        readonly,
        ..Default::default()
    })
}

/// Stops and removes a pod `crius run` made, saying so when it cannot.
async fn remove_pod(cri: &mut client::Cri, pod: &str) {
    let removed = cri
        .runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        })
        .await;
    if let Err(e) = removed {
        eprintln!(
            "crius: the pod {pod} stays: RemovePodSandbox: {}",
            e.message()
        );
    }
}

/// `--user` (a number is a uid, anything else a user name),
/// `--privileged` and `--read-only`.
fn security_context(
    user: Option<&str>,
    privileged: bool,
    read_only: bool,
) -> v1::LinuxContainerSecurityContext {
    let (run_as_user, run_as_username) = match user {
        Some(u) => match u.parse::<i64>() {
            Ok(uid) => (Some(v1::Int64Value { value: uid }), String::new()),
            Err(_) => (None, u.to_string()),
        },
        None => (None, String::new()),
    };
    v1::LinuxContainerSecurityContext {
        privileged,
        readonly_rootfs: read_only,
        run_as_user,
        run_as_username,
        ..Default::default()
    }
}

/// The container of `crius run`, logging to `<name>.log` in its pod's log
/// directory.
fn container_config(
    name: &str,
    image: &str,
    cmd: &[String],
    env: &[String],
    mounts: Vec<v1::Mount>,
    security: v1::LinuxContainerSecurityContext,
) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: cmd.to_vec(),
        envs: env.iter().map(|e| env_var(e)).collect(),
        mounts,
        log_path: format!("{name}.log"),
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(security),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates and starts the container in `pod`; its id.
async fn create_and_start(
    cri: &mut client::Cri,
    pod: &str,
    config: v1::ContainerConfig,
    pod_config: v1::PodSandboxConfig,
) -> anyhow::Result<String> {
    let id = cri
        .runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .context("StartContainer")?;
    Ok(id)
}

/// Follows the log until the container exits; its exit code.
async fn follow_until_exit(
    cri: &mut client::Cri,
    id: &str,
    log: &std::path::Path,
) -> anyhow::Result<i32> {
    let mut printed = 0usize;
    loop {
        let s = status(cri, id).await?.0;
        printed = print_new_records(log, printed);
        if s.state == v1::ContainerState::ContainerExited as i32 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            print_new_records(log, printed);
            return Ok(s.exit_code);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Prints the records of `log` after the first `printed`; how many it has
/// (none when it cannot be read).
fn print_new_records(log: &std::path::Path, printed: usize) -> usize {
    let records = crius_logs::tail(log, usize::MAX).unwrap_or_default();
    for r in records.iter().skip(printed) {
        print_record(r, false);
    }
    records.len()
}

/// `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp]`, as `docker run -p`.
fn parse_publish(spec: &str) -> anyhow::Result<v1::PortMapping> {
    let bad = || {
        anyhow::anyhow!("--publish takes [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO], not {spec:?}")
    };
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => v1::Protocol::Tcp,
        "udp" => v1::Protocol::Udp,
        "sctp" => v1::Protocol::Sctp,
        _ => return Err(bad()),
    };
    let (host, container) = ports.rsplit_once(':').ok_or_else(bad)?;
    let (host_ip, host_port) = match host.rsplit_once(':') {
        Some((ip, port)) => (ip.trim_matches(|c| c == '[' || c == ']'), port),
        None => ("", host),
    };
    if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad());
    }
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    Ok(v1::PortMapping {
        protocol: protocol as i32,
        container_port: port(container)?.into(),
        host_port: port(host_port)?.into(),
        host_ip: host_ip.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages_then_tail_counts_what_is_left() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(parse_age("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_age("90s"), Some(Duration::from_secs(90)));
        for bad in ["", "10", "m", "1d", "-5m", "1.5h"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
        let t = parse_since("2026-12-02T21:00:00Z").expect("a time");
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_796_245_200));
        let ago = parse_since("10m").expect("an age");
        let age = SystemTime::now().duration_since(ago).expect("in the past");
        assert!(age >= Duration::from_secs(600) && age < Duration::from_secs(660));
        assert!(parse_since("yesterday").is_err());
        let at = |s: u64| crius_logs::Record {
            timestamp: UNIX_EPOCH + Duration::from_secs(s),
            stream: crius_logs::Stream::Stdout,
            partial: false,
            content: s.to_string(),
        };
        let records = || (1..=5).map(at).collect::<Vec<_>>();
        let since = Some(UNIX_EPOCH + Duration::from_secs(3));
        let kept =
            |r: Vec<crius_logs::Record>| r.into_iter().map(|r| r.content).collect::<Vec<_>>();
        assert_eq!(
            kept(since_and_tail(records(), since, None)),
            ["3", "4", "5"]
        );
        assert_eq!(kept(since_and_tail(records(), since, Some(2))), ["4", "5"]);
        assert_eq!(kept(since_and_tail(records(), None, Some(1))), ["5"]);
        assert_eq!(since_and_tail(records(), None, None).len(), 5);
    }

    #[test]
    fn ps_filters_by_state_and_label() {
        let running = PsFilter::default().cri();
        assert_eq!(
            running.state.map(|s| s.state),
            Some(v1::ContainerState::ContainerRunning as i32)
        );
        let all = PsFilter {
            all: true,
            ..Default::default()
        }
        .cri();
        assert!(all.state.is_none());
        let exited = PsFilter {
            state: Some("exited".into()),
            labels: [("app".to_string(), "web".to_string())].into(),
            pod: Some("p1".into()),
            ..Default::default()
        }
        .cri();
        assert_eq!(
            exited.state.map(|s| s.state),
            Some(v1::ContainerState::ContainerExited as i32)
        );
        assert_eq!(exited.label_selector["app"], "web");
        assert_eq!(exited.pod_sandbox_id, "p1");
    }

    #[test]
    fn publish_specs() {
        let p = parse_publish("8080:80").expect("plain");
        assert_eq!(
            (
                p.host_port,
                p.container_port,
                p.protocol,
                p.host_ip.as_str()
            ),
            (8080, 80, v1::Protocol::Tcp as i32, "")
        );
        let p = parse_publish("127.0.0.1:5353:53/udp").expect("ip and proto");
        assert_eq!(
            (
                p.host_port,
                p.container_port,
                p.protocol,
                p.host_ip.as_str()
            ),
            (5353, 53, v1::Protocol::Udp as i32, "127.0.0.1")
        );
        let p = parse_publish("[::1]:8443:443").expect("ipv6");
        assert_eq!(p.host_ip, "::1");
        for bad in [
            "80",
            "a:80",
            "0:80",
            "8080:80/icmp",
            "nohost:8080:80",
            "70000:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_envs_and_users() {
        let m = parse_volume("/srv/data:/data:ro").expect("ro");
        assert_eq!(
            (m.host_path.as_str(), m.container_path.as_str(), m.readonly),
            ("/srv/data", "/data", true)
        );
        assert!(!parse_volume("/srv:/data").expect("rw").readonly);
        assert!(!parse_volume("/srv:/data:rw").expect("rw").readonly);
        for bad in ["/srv", "", "/srv:/data:xyz", "/srv:/data:ro:extra"] {
            assert!(parse_volume(bad).is_err(), "{bad:?}");
        }
        let kv = |e: &str| {
            let kv = env_var(e);
            (kv.key, kv.value)
        };
        assert_eq!(kv("A=b=c"), ("A".into(), "b=c".into()));
        assert_eq!(kv("A"), ("A".into(), Vec::new()));
        let sc = security_context(Some("1000"), true, true);
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        assert!(sc.run_as_username.is_empty() && sc.privileged && sc.readonly_rootfs);
        let sc = security_context(Some("app"), false, false);
        assert_eq!((sc.run_as_user, sc.run_as_username.as_str()), (None, "app"));
        let sc = security_context(None, false, false);
        assert_eq!((sc.run_as_user, sc.run_as_username.as_str()), (None, ""));
    }

    #[test]
    fn the_pod_and_container_of_run() {
        let logs = std::path::Path::new("/var/log/crius/pods/web");
        let pod = pod_config("web", 0xabc, logs, vec![], true);
        let meta = pod.metadata.clone().unwrap_or_default();
        assert_eq!(
            (
                meta.name.as_str(),
                meta.uid.as_str(),
                meta.namespace.as_str()
            ),
            ("web", "crius-run-abc", "default")
        );
        assert_eq!(pod.hostname, "web");
        assert_eq!(pod.log_directory, "/var/log/crius/pods/web");
        let c = container_config(
            "web",
            "busybox",
            &["sh".into()],
            &["A=1".into()],
            vec![],
            security_context(None, false, false),
        );
        assert_eq!(c.log_path, "web.log");
        assert_eq!(c.metadata.map(|m| m.name), Some("web".into()));
        assert_eq!(c.image.map(|i| i.image), Some("busybox".into()));
        assert_eq!((c.command, c.envs.len()), (vec!["sh".to_string()], 1));
    }
}
