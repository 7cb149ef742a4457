//! Issue 15: GetContainerEvents (kubelet's evented PLEG) from the real
//! daemon: every transition of a pod with two containers, an OOM kill
//! among them, a criusd restart in between (the new subscription first
//! says what is there now), and a subscriber that never reads.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use crius_cri_api::v1;
use crius_cri_api::v1::ContainerEventType as Kind;
use tonic::Streaming;

use crate::Env;
use crate::containers::{container, create, start};
use crate::pods::{PodEnv, config, run};

crate::tests![
    events_follow_a_pod_through_an_oom_kill_and_a_restart,
    a_subscriber_that_never_reads_is_cut_off_and_costs_no_memory,
];

async fn subscribe(p: &mut PodEnv) -> anyhow::Result<Streaming<v1::ContainerEventResponse>> {
    let r = p.cri.runtime.get_container_events(v1::GetEventsRequest {});
    Ok(r.await?.into_inner())
}

/// Reads events until one of `id` of `kind` (answered), 30 s at most.
async fn until(
    s: &mut Streaming<v1::ContainerEventResponse>,
    id: &str,
    kind: Kind,
    seen: &mut Vec<(String, Kind)>,
) -> anyhow::Result<v1::ContainerEventResponse> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, s.message())
            .await
            .with_context(|| format!("no {kind:?} of {id} in 30 s; seen {seen:?}"))??
            .context("the stream ended")?;
        let k = Kind::try_from(next.container_event_type).context("event type")?;
        seen.push((next.container_id.clone(), k));
        if next.container_id == id && k == kind {
            return Ok(next);
        }
    }
}

fn status_of<'a>(e: &'a v1::ContainerEventResponse, id: &str) -> Option<&'a v1::ContainerStatus> {
    e.containers_statuses.iter().find(|c| c.id == id)
}

async fn events_follow_a_pod_through_an_oom_kill_and_a_restart(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let mut events = subscribe(&mut p).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let pod = run(&mut p.cri, config("events")).await?;
    let mut seen = Vec::new();
    let e = until(&mut events, &pod, Kind::ContainerStartedEvent, &mut seen).await?;
    let sandbox = e.pod_sandbox_status.as_ref().context("the pod's status")?;
    ensure!(sandbox.id == pod && sandbox.state == v1::PodSandboxState::SandboxReady as i32);
    ensure!(
        seen.first() == Some(&(pod.clone(), Kind::ContainerCreatedEvent)),
        "{seen:?}"
    );

    let app = create(
        &mut p.cri,
        &pod,
        container("app", &image, &["sleep", "1000"]),
    )
    .await?;
    let mut hog = container("hog", &image, &["tail", "/dev/zero"]);
    hog.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = create(&mut p.cri, &pod, hog).await?;
    until(&mut events, &hog, Kind::ContainerCreatedEvent, &mut seen).await?;
    start(&mut p.cri, &app).await?;
    until(&mut events, &app, Kind::ContainerStartedEvent, &mut seen).await?;
    start(&mut p.cri, &hog).await?;
    let oom = until(&mut events, &hog, Kind::ContainerStoppedEvent, &mut seen).await?;
    let st = status_of(&oom, &hog).context("the hog's status in its own event")?;
    ensure!(st.reason == "OOMKilled" && st.exit_code == 137, "{st:?}");
    let other = status_of(&oom, &app).context("the app's status too")?;
    ensure!(
        other.state == v1::ContainerState::ContainerRunning as i32,
        "{other:?}"
    );
    ensure!(oom.pod_sandbox_status.is_some(), "the pod's status");

    // criusd goes away; meanwhile the app dies. A new subscription first
    // says what is there now: the app is stopped.
    drop(events);
    let pid = i32::try_from(crate::containers::status_verbose_pid(&mut p.cri, &app).await?)?;
    p.daemon
        .as_mut()
        .context("daemon")?
        .signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    p.restart_daemon().await?;
    let mut events = subscribe(&mut p).await?;
    let mut first = Vec::new();
    until(&mut events, &app, Kind::ContainerStoppedEvent, &mut first).await?;
    let expected = [
        (pod.clone(), Kind::ContainerStartedEvent),
        (app.clone(), Kind::ContainerStoppedEvent),
    ];
    ensure!(
        first.len() <= 3 && expected.iter().all(|x| first.contains(x)),
        "the first events after a restart: {first:?}"
    );

    let cli = cli_events(&p)?;
    p.cri
        .runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    until(&mut events, &pod, Kind::ContainerStoppedEvent, &mut seen).await?;
    let lines = cli.until_stopped(&pod)?;
    // Its first line says what is there when it subscribed: the pod,
    // ready or (had the stop come first) already stopped.
    ensure!(
        lines
            .first()
            .is_some_and(|l| l["kind"] == "sandbox" && l["id"] == pod && l["pod"]["id"] == pod),
        "crius events first says what is there: {lines:?}"
    );
    p.cri
        .runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    let mut removal = Vec::new();
    let gone = until(&mut events, &pod, Kind::ContainerDeletedEvent, &mut removal).await?;
    for c in [&app, &hog] {
        let deleted = (c.clone(), Kind::ContainerDeletedEvent);
        ensure!(
            removal.contains(&deleted),
            "{c} deleted before its pod: {removal:?}"
        );
    }
    let last = gone
        .pod_sandbox_status
        .as_ref()
        .context("the pod's last status")?;
    ensure!(last.id == pod && last.metadata.is_some(), "{last:?}");
    p.remove_all_and_check().await
}

/// `crius events -o json`, running, and its lines as they come.
struct CliEvents {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl CliEvents {
    /// Its JSON lines until one says `pod` stopped (at most 30 s).
    fn until_stopped(mut self, pod: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                break Err(anyhow::anyhow!(
                    "crius events: no STOPPED of {pod}: {got:?}"
                ));
            };
            let v: serde_json::Value = serde_json::from_str(&line)?;
            let done = v["type"] == "STOPPED" && v["kind"] == "sandbox" && v["id"] == pod;
            got.push(v);
            if done {
                break Ok(got);
            }
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        result
    }
}

fn cli_events(p: &PodEnv) -> anyhow::Result<CliEvents> {
    use std::io::BufRead;
    let socket = p.daemon.as_ref().context("daemon")?.socket().to_path_buf();
    let mut child = std::process::Command::new(crate::CRIUS)
        .arg("--endpoint")
        .arg(&socket)
        .args(["events", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(CliEvents { child, lines })
}

/// criusd's resident memory, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("a number")?
        .parse()?)
}

async fn a_subscriber_that_never_reads_is_cut_off_and_costs_no_memory(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let pod = run(&mut p.cri, config("events-slow")).await?;
    // Each event carries the whole pod: with these, a flood is more than
    // the client's connection window (hyper's 2 MiB) takes unread.
    for i in 0..24 {
        let c = container(&format!("idle-{i}"), &image, &["true"]);
        create(&mut p.cri, &pod, c).await?;
    }
    let mut idle = subscribe(&mut p).await?;
    let pid = p
        .daemon
        .as_ref()
        .and_then(|d| d.pid())
        .context("criusd's pid")?;
    // Two floods, each more than the ring holds (1024 events): memory
    // after the second is what it was after the first.
    let mut rss = Vec::new();
    for round in 0..2 {
        for i in 0..530 {
            let c = container(&format!("c{round}-{i}"), &image, &["true"]);
            let id = create(&mut p.cri, &pod, c).await?;
            p.cri
                .runtime
                .remove_container(v1::RemoveContainerRequest { container_id: id })
                .await?;
        }
        rss.push(rss_kib(pid)?);
    }
    ensure!(
        rss[1] < rss[0] + 8 * 1024,
        "criusd grew from {} to {} KiB while a subscriber read nothing",
        rss[0],
        rss[1]
    );
    // What the connection had buffered, then the end, with an error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    let status = loop {
        let next = tokio::time::timeout_at(deadline, idle.message()).await;
        let next = next.map_err(|_| anyhow::anyhow!("no end after {read} events in 30 s"))?;
        match next {
            Ok(Some(_)) => read += 1,
            Ok(None) => bail!("the stream ended without an error after {read} events"),
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                bail!("no end after {read} events: {status:?}")
            }
            Err(status) => break status,
        }
    };
    ensure!(
        status.code() == tonic::Code::ResourceExhausted && read < 1024,
        "{status:?} after {read} events"
    );
    // A new subscription works.
    let mut again = subscribe(&mut p).await?;
    let first = tokio::time::timeout(Duration::from_secs(10), again.message())
        .await??
        .context("a first event")?;
    ensure!(first.container_id == pod, "{first:?}");
    p.remove_all_and_check().await
}
