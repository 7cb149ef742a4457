//! Scenario: streaming. Exec round trips (the Exec RPC, a session on its
//! URL, `true`, the exit status) over SPDY and WebSocket, and port-forward
//! throughput through one stream into a pod, on every endpoint with crius'
//! own client (`crius-stream`): containerd's CRI serves the same URLs.

use std::time::{Duration, Instant};

use crius_cri_api::v1::{ExecRequest, PortForwardRequest};
use crius_stream::channel::ExitStatus;
use crius_stream::client::{self, ExecOptions, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{Target, status_text};
use crate::pods::{Pod, Workload, start_pod, teardown};
use crate::report::{EndpointResult, Metric, ScenarioReport};
use crate::stats::summarize;

/// Bytes sent through the forwarded port per throughput run.
const FORWARD_BYTES: usize = 64 << 20;
/// Throughput runs per endpoint.
const FORWARD_RUNS: usize = 3;
/// One exec or transfer longer than this is a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one endpoint measured.
#[derive(Default)]
struct Measured {
    spdy_ms: Vec<f64>,
    ws_ms: Vec<f64>,
    forward_mb_s: Vec<f64>,
    error: Option<String>,
}

/// `n` exec round trips per transport (after `warmup`) and the forward
/// runs, one endpoint after the other, each in a pod of its own.
pub async fn streaming(
    targets: &[Target],
    w: &Workload,
    n: usize,
    warmup: usize,
) -> ScenarioReport {
    let mut all = Vec::new();
    for t in targets {
        eprintln!("crius-bench: streaming: {} ({})", t.name, t.label);
        all.push(measure(t, w, n, warmup).await);
    }
    let latency = |f: fn(&Measured) -> &Vec<f64>| {
        targets
            .iter()
            .zip(&all)
            .map(|(t, m)| (t.name.clone(), t.label.clone(), summarize(f(m))))
            .collect()
    };
    let throughput = targets
        .iter()
        .zip(&all)
        .map(|(t, m)| (t.name.clone(), t.label.clone(), median(&m.forward_mb_s)))
        .collect();
    let metrics = vec![
        Metric::latency("exec round trip, SPDY", latency(|m| &m.spdy_ms)),
        Metric::latency("exec round trip, WebSocket", latency(|m| &m.ws_ms)),
        Metric::value("port-forward, one stream", "MB/s", throughput),
    ];
    let results = targets
        .iter()
        .zip(all)
        .map(|(t, m)| EndpointResult {
            endpoint: t.name.clone(),
            label: t.label.clone(),
            samples_ms: Vec::new(),
            summary: summarize(&m.spdy_ms),
            size_bytes: None,
            mb_per_s_p50: None,
            warm_samples: 0,
            error: m.error,
            notes: Vec::new(),
        })
        .collect();
    let detail = format!(
        "{n} execs of `true` per transport after {warmup} warmup (Exec RPC + session + exit status); \
         {FORWARD_RUNS} x {} MiB through one port-forward stream into `nc -l` in the pod",
        FORWARD_BYTES >> 20
    );
    ScenarioReport::with_metrics(
        "streaming",
        "small",
        Some(w.image.clone()),
        detail,
        results,
        metrics,
        Vec::new(),
    )
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

async fn measure(t: &Target, w: &Workload, n: usize, warmup: usize) -> Measured {
    let mut m = Measured::default();
    let pod = match start_pod(&t.cri, w, &t.name, "stream").await {
        Ok((pod, _)) => pod,
        Err(e) => {
            m.error = Some(e);
            return m;
        }
    };
    if let Err(e) = run_all(t, &pod, n, warmup, &mut m).await {
        m.error = Some(e);
    }
    if let Err(e) = teardown(&t.cri, &pod).await {
        m.error.get_or_insert(e);
    }
    m
}

async fn run_all(
    t: &Target,
    pod: &Pod,
    n: usize,
    warmup: usize,
    m: &mut Measured,
) -> Result<(), String> {
    for (transport, out) in [
        (Transport::Spdy, &mut m.spdy_ms),
        (Transport::WebSocket, &mut m.ws_ms),
    ] {
        for i in 0..warmup + n {
            let ms = exec_round_trip(t, &pod.container, &["true"], transport).await?;
            if i >= warmup {
                out.push(ms);
            }
        }
    }
    for _ in 0..FORWARD_RUNS {
        m.forward_mb_s.push(forward(t, pod).await?);
    }
    Ok(())
}

async fn exec_url(t: &Target, container: &str, cmd: &[&str]) -> Result<String, String> {
    let mut cri = t.cri.clone();
    let request = ExecRequest {
        container_id: container.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        stdout: true,
        ..Default::default()
    };
    let r = tokio::time::timeout(STEP_TIMEOUT, cri.runtime.exec(request))
        .await
        .map_err(|_| "Exec: no answer".to_owned())?;
    Ok(r.map_err(|s| status_text("Exec", &s))?.into_inner().url)
}

/// One exec of `cmd` to its exit status, in ms.
async fn exec_round_trip(
    t: &Target,
    container: &str,
    cmd: &[&str],
    transport: Transport,
) -> Result<f64, String> {
    let started = Instant::now();
    let url = exec_url(t, container, cmd).await?;
    let status = tokio::time::timeout(STEP_TIMEOUT, run_session(&url, transport))
        .await
        .map_err(|_| format!("exec over {transport:?}: no exit within {STEP_TIMEOUT:?}"))??;
    if status != ExitStatus::Success {
        return Err(format!("exec over {transport:?}: {status:?}"));
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

async fn run_session(url: &str, transport: Transport) -> Result<ExitStatus, String> {
    let options = ExecOptions {
        stdout: true,
        ..Default::default()
    };
    let mut s = client::exec(url, options, transport)
        .await
        .map_err(|e| format!("exec session over {transport:?}: {e}"))?;
    if let Some(mut out) = s.stdout.take() {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink).await;
    }
    s.wait()
        .await
        .map_err(|e| format!("exec status over {transport:?}: {e}"))
}

/// MB/s (10^6 bytes) of one transfer into `nc -l` in the pod (run by a
/// streaming exec, which ends when nc has read everything and exited: the
/// proof that the bytes arrived).
async fn forward(t: &Target, pod: &Pod) -> Result<f64, String> {
    let sink_url = exec_url(t, &pod.container, &["sh", "-c", "nc -l -p 8080 >/dev/null"]).await?;
    let sink = tokio::spawn(run_session_owned(sink_url));
    // nc listens within milliseconds of its start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cri = t.cri.clone();
    let request = PortForwardRequest {
        pod_sandbox_id: pod.id.clone(),
        port: vec![8080],
    };
    let url = cri
        .runtime
        .port_forward(request)
        .await
        .map_err(|s| status_text("PortForward", &s))?
        .into_inner()
        .url;
    let forwarder = client::PortForwarder::open(&url)
        .await
        .map_err(|e| format!("port-forward session: {e}"))?;
    let elapsed = tokio::time::timeout(STEP_TIMEOUT, transfer(&forwarder))
        .await
        .map_err(|_| {
            format!(
                "port-forward: {} MiB not through within {STEP_TIMEOUT:?}",
                FORWARD_BYTES >> 20
            )
        })??;
    match tokio::time::timeout(Duration::from_secs(10), sink).await {
        Ok(Ok(Ok(ExitStatus::Success))) => Ok(FORWARD_BYTES as f64 / elapsed.as_secs_f64() / 1e6),
        other => Err(format!(
            "port-forward: the pod's nc did not end after the transfer: {other:?}"
        )),
    }
}

async fn run_session_owned(url: String) -> Result<ExitStatus, String> {
    run_session(&url, Transport::Spdy).await
}

/// Sends `FORWARD_BYTES`, ends the stream and waits for the pod's side to
/// close it; the time that took.
async fn transfer(forwarder: &client::PortForwarder) -> Result<Duration, String> {
    let chunk = vec![0u8; 1 << 20];
    let mut conn = forwarder
        .connect(8080)
        .await
        .map_err(|e| format!("port-forward stream: {e}"))?;
    let started = Instant::now();
    for _ in 0..FORWARD_BYTES / chunk.len() {
        conn.write_all(&chunk)
            .await
            .map_err(|e| format!("port-forward write: {e}"))?;
    }
    conn.shutdown()
        .await
        .map_err(|e| format!("port-forward shutdown: {e}"))?;
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest).await;
    Ok(started.elapsed())
}
