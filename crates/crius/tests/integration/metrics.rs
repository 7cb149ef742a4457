//! Issue 17: the Prometheus endpoint (`[metrics] address`), scraped while
//! a pod lives, for the series and the values its life should leave.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use crius_cri_api::v1;
use crius_stream::channel::ExitStatus;
use crius_stream::client::{self, ExecOptions, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Env;
use crate::containers::{container, create, start};
use crate::pods::{PodEnv, config, run};

crate::tests![metrics_follow_a_pod_through_its_life];

/// `GET path` on `addr`: the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .context("the endpoint did not answer")??;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let (status, body) = get(addr, "/metrics").await?;
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}: {body}");
    ensure!(
        body.ends_with("# EOF\n"),
        "an incomplete exposition: {body}"
    );
    Ok(body)
}

/// The value of `series` (its name and labels as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// A series, a test of its value, and what the test wants (for the message).
type Check<'a> = (&'a str, fn(f64) -> bool, &'a str);

/// Checks each of `checks` against `text`.
fn expect(text: &str, checks: &[Check<'_>]) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for (series, ok, what) in checks {
        match value(text, series) {
            Some(v) if ok(v) => {}
            other => wrong.push(format!("{series}: {other:?}, expected {what}")),
        }
    }
    if !wrong.is_empty() {
        bail!("{}\n--- scraped:\n{text}", wrong.join("\n"));
    }
    Ok(())
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

const READY_PODS: &str = "crius_pods{state=\"ready\",runtime_handler=\"runc\"}";
const RUNNING: &str = "crius_containers{state=\"running\",runtime_handler=\"runc\"}";

async fn metrics_follow_a_pod_through_its_life(env: Arc<Env>) -> anyhow::Result<()> {
    let addr = free_port()?;
    let table = format!("[metrics]\naddress = \"{addr}\"\n");
    let mut p = PodEnv::start_with(&env, None, "", &table).await?;
    let text = scrape(addr).await?;
    expect(
        &text,
        &[
            ("crius_build_info{version=\"0.1.0\"}", |v| v == 1.0, "1"),
            ("crius_recovery_duration_seconds", |v| v > 0.0, "> 0"),
            (READY_PODS, |v| v == 0.0, "0 before any pod"),
            (RUNNING, |v| v == 0.0, "0 before any container"),
        ],
    )?;
    let (status, _) = get(addr, "/").await?;
    ensure!(status.starts_with("HTTP/1.1 404"), "{status}");

    let pod = run(&mut p.cri, config("metrics")).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let sleeper = container("app", &image, &["sh", "-c", "sleep 1000"]);
    let id = create(&mut p.cri, &pod, sleeper).await?;
    start(&mut p.cri, &id).await?;
    let unknown = v1::ContainerStatusRequest {
        container_id: "f".repeat(64),
        verbose: false,
    };
    ensure!(p.cri.runtime.container_status(unknown).await.is_err());
    exec_once(&mut p, &id).await?;
    let text = scrape(addr).await?;
    expect(
        &text,
        &[
            (READY_PODS, |v| v == 1.0, "1"),
            (RUNNING, |v| v == 1.0, "1"),
            (
                "crius_grpc_requests_total{method=\"RunPodSandbox\",code=\"OK\"}",
                |v| v == 1.0,
                "1",
            ),
            (
                "crius_grpc_requests_total{method=\"ContainerStatus\",code=\"NotFound\"}",
                |v| v == 1.0,
                "1",
            ),
            (
                "crius_grpc_request_duration_seconds_count{method=\"StartContainer\"}",
                |v| v == 1.0,
                "1",
            ),
            (
                "crius_containerd_request_duration_seconds_count{method=\"Tasks/Start\"}",
                |v| v >= 2.0,
                ">= 2 (the container's and the exec's)",
            ),
            (
                "crius_cni_operations_total{op=\"add\",result=\"ok\"}",
                |v| v == 1.0,
                "1",
            ),
            (
                "crius_cni_operation_duration_seconds_count{op=\"add\"}",
                |v| v == 1.0,
                "1",
            ),
            ("crius_image_pulls_total{result=\"ok\"}", |v| v == 1.0, "1"),
            (
                "crius_image_pull_bytes_total",
                |v| v > 10_000.0,
                "busybox's layer (tens of KiB compressed)",
            ),
            (
                "crius_streaming_sessions_total{kind=\"exec\"}",
                |v| v == 1.0,
                "1",
            ),
        ],
    )?;
    // The server's session ends just after the status went out.
    let open = "crius_streaming_sessions_open{kind=\"exec\"}";
    let mut last = None;
    for _ in 0..100 {
        last = value(&scrape(addr).await?, open);
        if last == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(last == Some(0.0), "{open}: {last:?} 5 s after the exec");

    p.cri
        .runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    let text = scrape(addr).await?;
    expect(
        &text,
        &[
            (READY_PODS, |v| v == 0.0, "0 once stopped"),
            (
                "crius_pods{state=\"notready\",runtime_handler=\"runc\"}",
                |v| v == 1.0,
                "1",
            ),
            (RUNNING, |v| v == 0.0, "0 once stopped"),
            (
                "crius_containers{state=\"exited\",runtime_handler=\"runc\"}",
                |v| v == 1.0,
                "1",
            ),
            (
                "crius_cni_operations_total{op=\"del\",result=\"ok\"}",
                |v| v >= 1.0,
                ">= 1",
            ),
        ],
    )?;
    p.remove_all_and_check().await?;
    let text = scrape(addr).await?;
    expect(
        &text,
        &[(
            "crius_pods{state=\"notready\",runtime_handler=\"runc\"}",
            |v| v == 0.0,
            "0 once removed",
        )],
    )
}

/// One exec over the streaming server, to its exit.
async fn exec_once(p: &mut PodEnv, id: &str) -> anyhow::Result<()> {
    let request = v1::ExecRequest {
        container_id: id.into(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    };
    let url = p.cri.runtime.exec(request).await?.into_inner().url;
    let options = ExecOptions {
        stdout: true,
        ..Default::default()
    };
    let s = client::exec(&url, options, Transport::WebSocket).await?;
    let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
    ensure!(status == ExitStatus::Success, "{status:?}");
    Ok(())
}
