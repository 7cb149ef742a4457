//! Runs `crius-bench compare --small-only` end to end: a registry, criusd on
//! a private containerd, containerd's CRI plugin on another, one cold pull of
//! busybox on each. Needs root, containerd, docker-registry and a `criusd`
//! next to the benchmark binary (`cargo test --workspace` builds it) or at
//! `$CRIUS_BENCH_CRIUSD`.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

#[test]
fn compare_small_only_measures_both_endpoints() -> Result<()> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crius-bench"));
    cmd.args([
        "compare",
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
    Ok(())
}
