//! systemd readiness (`Type=notify`): criusd sends `READY=1` only once
//! start-up recovery is done, `STATUS=` lines while it waits, and
//! `STOPPING=1` at SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use crius_cri_api::v1;
use crius_testkit::client::{self, Cri};
use crius_testkit::containerd::Containerd;
use crius_testkit::criusd::Criusd;
use nix::sys::signal::Signal;
use tokio::net::UnixDatagram;

use crate::Env;

crate::tests![ready_only_after_recovery_then_stopping];

async fn ready_only_after_recovery_then_stopping(env: Arc<Env>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&path)?;
    // containerd is not there yet: start-up cannot finish.
    let mut containerd = Containerd::configure()?;
    let mut opts = env.options();
    opts.containerd_socket = containerd.socket().to_path_buf();
    opts.env
        .push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    let mut daemon = Criusd::start(&opts)?;
    let mut cri = client::connect(daemon.socket()).await?;

    let early = receive_for(&notify, Duration::from_secs(2)).await?;
    ensure!(
        early.iter().any(|m| m
            .lines()
            .any(|l| l.starts_with("STATUS=waiting for containerd"))),
        "no STATUS= line naming what start-up waits for: {early:?}"
    );
    ensure!(
        !early.iter().any(|m| has_line(m, "READY=1")),
        "READY=1 without containerd: {early:?}"
    );
    ensure!(!runtime_ready(&mut cri).await?, "ready without containerd");

    containerd.spawn()?;
    let ready = receive_until(&notify, Duration::from_secs(30), |m| has_line(m, "READY=1"))
        .await
        .with_context(|| daemon.log())?;
    // Readiness is recorded before READY=1 goes out.
    ensure!(
        runtime_ready(&mut cri).await?,
        "READY=1 ({ready:?}) while Status says not ready"
    );
    ensure!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");

    ensure!(
        daemon
            .signal_and_wait(Signal::SIGTERM, Duration::from_secs(15))?
            .success()
    );
    let late = receive_for(&notify, Duration::from_millis(500)).await?;
    ensure!(
        late.iter().any(|m| has_line(m, "STOPPING=1")),
        "no STOPPING=1 at SIGTERM: {late:?}"
    );
    ensure!(
        !late.iter().any(|m| has_line(m, "READY=1")),
        "a second READY=1: {late:?}"
    );
    Ok(())
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

async fn runtime_ready(cri: &mut Cri) -> anyhow::Result<bool> {
    let status = cri
        .runtime
        .status(v1::StatusRequest { verbose: false })
        .await?
        .into_inner();
    Ok(status
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.r#type == "RuntimeReady" && c.status))
}

/// Every datagram that arrives within `window`.
async fn receive_for(socket: &UnixDatagram, window: Duration) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + window;
    let mut messages = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, receive(socket)).await {
            Ok(m) => messages.push(m?),
            Err(_) => break,
        }
    }
    Ok(messages)
}

/// The first datagram within `timeout` that `wanted` accepts.
async fn receive_until(
    socket: &UnixDatagram,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(m) = tokio::time::timeout(left, receive(socket)).await else {
            break;
        };
        let m = m?;
        if wanted(&m) {
            return Ok(m);
        }
        seen.push(m);
    }
    bail!("not within {timeout:?}; received {seen:?}")
}

async fn receive(socket: &UnixDatagram) -> anyhow::Result<String> {
    let mut buf = vec![0; 4096];
    let n = socket.recv(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
