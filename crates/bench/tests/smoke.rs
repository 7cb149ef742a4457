//! Runs `crius-bench compare` end to end with tiny sizes, every scenario: a
//! registry, criusd on a private containerd, containerd's CRI plugin on
//! another, each with a CNI network; pod start (2 pods serial, 2 at
//! concurrency 2), floor, scale (2 pods), churn (2 s), footprint, one cold
//! pull of busybox and the image queries. Needs root, containerd, runc,
//! docker-registry and a `criusd` next to the benchmark binary (`cargo test
//! --workspace` builds it) or at `$CRIUS_BENCH_CRIUSD`.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

#[test]
fn compare_every_scenario_with_tiny_sizes() -> Result<()> {
    let started = std::time::Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crius-bench"));
    cmd.args([
        "compare",
        "--scenarios",
        "all",
        "-n",
        "2",
        "-c",
        "2",
        "-m",
        "2",
        "--churn-secs",
        "2",
        "--idle-secs",
        "1",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--calls",
        "10",
        "--small-only",
        "-o",
        "json",
    ]);
    if let Some(criusd) = std::env::var_os("CRIUS_BENCH_CRIUSD").filter(|v| !v.is_empty()) {
        cmd.arg("--criusd").arg(criusd);
    }
    let out = cmd.output().context("running crius-bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "crius-bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("parsing the JSON report:\n{stdout}\nstderr:\n{stderr}"))?;

    let endpoints: Vec<&str> = report["endpoints"]
        .as_array()
        .context("endpoints")?
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    ensure!(endpoints == ["A", "B"], "endpoints: {endpoints:?}");
    ensure!(
        report["errors"].as_array().is_some_and(|e| e.is_empty()),
        "errors: {}",
        report["errors"]
    );
    ensure!(
        report["machine"]["cores"].as_u64().unwrap_or(0) > 0,
        "machine: {}",
        report["machine"]
    );

    let scenarios = report["scenarios"].as_array().context("scenarios")?;
    let pull = scenarios
        .iter()
        .find(|s| s["scenario"] == "pull" && s["image"] == "small")
        .context("no pull small scenario")?;
    ensure!(
        !scenarios.iter().any(|s| s["image"] == "big"),
        "--small-only pulled the big image"
    );
    let results = pull["results"].as_array().context("results")?;
    ensure!(results.len() == 2, "results: {results:?}");
    for (r, name) in results.iter().zip(["A", "B"]) {
        ensure!(r["endpoint"] == name, "result order: {r}");
        let p50 = r["summary"]["p50_ms"].as_f64().unwrap_or(0.0);
        ensure!(p50 > 0.0, "{name}: no p50: {r}");
        ensure!(
            r["mb_per_s_p50"].as_f64().unwrap_or(0.0) > 0.0,
            "{name}: no MB/s: {r}"
        );
        ensure!(r["warm_samples"] == 0, "{name}: warm pull: {r}");
    }
    let ratio = &pull["ratio"];
    ensure!(
        ratio["numerator"] == "A" && ratio["denominator"] == "B",
        "ratio: {ratio}"
    );
    ensure!(ratio["p50"].as_f64().unwrap_or(0.0) > 0.0, "ratio: {ratio}");
    for name in ["image_status", "list_images"] {
        let s = scenarios
            .iter()
            .find(|s| s["scenario"] == name)
            .with_context(|| format!("no {name} scenario"))?;
        ensure!(
            s["ratio"]["p50"].as_f64().unwrap_or(0.0) > 0.0,
            "{name}: {s}"
        );
    }

    let scenario = |name: &str| {
        scenarios
            .iter()
            .find(|s| s["scenario"] == name)
            .with_context(|| format!("no {name} scenario"))
    };
    let metric = |s: &Value, prefix: &str| -> Result<Value> {
        s["metrics"]
            .as_array()
            .and_then(|m| {
                m.iter()
                    .find(|m| m["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            })
            .cloned()
            .with_context(|| format!("{}: no metric {prefix:?}: {s}", s["scenario"]))
    };
    // Both endpoints measured: a p50 (latencies) or a value, and a ratio.
    let both = |m: &Value| -> Result<()> {
        let values = m["values"].as_array().context("values")?;
        ensure!(values.len() == 2, "{m}");
        for v in values {
            let x = v["summary"]["p50_ms"]
                .as_f64()
                .or_else(|| v["value"].as_f64());
            ensure!(x.is_some_and(|x| x > 0.0), "{}: {m}", v["endpoint"]);
        }
        ensure!(m["ratio"].as_f64().unwrap_or(0.0) > 0.0, "ratio: {m}");
        Ok(())
    };
    for name in ["pod_start_serial", "pod_start_parallel", "churn", "scale"] {
        let s = scenario(name)?;
        ensure!(
            s["ratio"]["p50"].as_f64().unwrap_or(0.0) > 0.0,
            "{name}: no time-to-running ratio: {s}"
        );
        both(&metric(s, "time to running")?)?;
    }
    let serial = scenario("pod_start_serial")?;
    for rpc in [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    ] {
        both(&metric(serial, rpc)?)?;
    }
    both(&metric(
        scenario("pod_start_parallel")?,
        "start throughput",
    )?)?;
    let churn = scenario("churn")?;
    both(&metric(churn, "throughput")?)?;
    for leak in ["leak: runtime processes", "leak: mounts", "leak: netns"] {
        let m = metric(churn, leak)?;
        ensure!(
            m["values"]
                .as_array()
                .is_some_and(|v| v.len() == 2 && v.iter().all(|v| v["value"].is_number())),
            "{m}"
        );
    }
    let scale = scenario("scale")?;
    for q in [
        "ListPodSandbox",
        "ListContainers",
        "PodSandboxStatus",
        "ContainerStatus",
    ] {
        both(&metric(scale, q)?)?;
    }
    let footprint = scenario("footprint")?;
    both(&metric(footprint, "RSS idle: CRI daemon + containerd")?)?;
    both(&metric(
        footprint,
        "RSS at 2 pods: CRI daemon + containerd",
    )?)?;
    both(&metric(
        footprint,
        "RSS after churn: CRI daemon + containerd",
    )?)?;
    let streaming = scenario("streaming")?;
    for m in [
        "exec round trip, SPDY",
        "exec round trip, WebSocket",
        "port-forward, one stream",
    ] {
        both(&metric(streaming, m)?)?;
    }
    let floor = scenario("floor")?;
    let run = metric(floor, "runc run")?;
    ensure!(
        run["values"][0]["summary"]["p50_ms"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "floor: {run}"
    );
    both(&metric(floor, "pod start (serial p50) / floor")?)?;
    // crius without, then with, an event subscriber.
    let events = scenario("events")?;
    both(&metric(events, "criusd CPU per pod cycle")?)?;
    let received = metric(events, "events received")?;
    ensure!(
        received["values"][1]["value"].as_f64().unwrap_or(0.0) > 0.0,
        "the subscriber saw no event: {received}"
    );
    eprintln!(
        "smoke: compare with every scenario took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
