//! `crius stats` and `crius pod stats` against the real daemon: a busy
//! container shows its CPU and memory, the tables have their rows, a
//! stream ends quietly when its reader goes or at Ctrl-C, an unknown id
//! is an error.

use std::io::BufRead;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use serde_json::Value;

use crate::Env;
use crate::containers::{container, create, pod, start, wait_exited};

crate::tests![stats_of_a_busy_container_and_its_pod];

/// `crius --endpoint SOCKET ARGS...`, not yet run.
fn crius(socket: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::CRIUS);
    cmd.arg("--endpoint").arg(socket).args(args);
    cmd
}

/// Its output, which must be a success.
fn ok(mut cmd: Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    ensure!(out.status.success(), "{cmd:?}: {}", said(&out));
    Ok(String::from_utf8(out.stdout)?)
}

fn said(out: &Output) -> String {
    format!(
        "{:?}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one JSON line of a `--no-stream -o json` run.
fn one_sample(cmd: Command) -> anyhow::Result<Value> {
    let out = ok(cmd)?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 1, "one sample, one line: {out}");
    Ok(serde_json::from_str(lines[0])?)
}

fn row<'a>(sample: &'a Value, list: &str, id: &str) -> Option<&'a Value> {
    sample[list].as_array()?.iter().find(|r| r["id"] == id)
}

async fn stats_of_a_busy_container_and_its_pod(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cli-stats").await?;
    let socket = p.env.daemon().socket().to_path_buf();
    let cri = &mut p.env.cri;
    let mut busy = container("busy", &p.image, &["sh", "-c", "while :; do :; done"]);
    busy.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let busy = create(cri, &p.id, busy).await?;
    start(cri, &busy).await?;
    let idle = create(cri, &p.id, container("idle", &p.image, &["sleep", "1000"])).await?;
    start(cri, &idle).await?;
    let done = create(cri, &p.id, container("done", &p.image, &["true"])).await?;
    start(cri, &done).await?;
    wait_exited(cri, &done).await?;

    let started = Instant::now();
    let sample = one_sample(crius(&socket, &["stats", "--no-stream", "-o", "json"]))?;
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "--no-stream waits for a second sample"
    );
    let b = row(&sample, "containers", &busy).with_context(|| format!("no busy in {sample}"))?;
    let cpu = b["cpuPercent"].as_f64().context("a CPU %")?;
    ensure!(cpu > 20.0, "a busy loop at {cpu}% of a core: {b}");
    ensure!(b["memoryWorkingSetBytes"].as_u64() > Some(0), "{b}");
    ensure!(b["memoryLimitBytes"] == 64 << 20, "{b}");
    ensure!(
        b["podName"] == "cli-stats" && b["podId"] == p.id.as_str(),
        "{b}"
    );
    let i = row(&sample, "containers", &idle).context("no idle")?;
    ensure!(i["cpuPercent"].as_f64() < Some(5.0), "idle: {i}");
    ensure!(
        row(&sample, "containers", &done).is_none(),
        "-a not given: {sample}"
    );
    let all = one_sample(crius(
        &socket,
        &["stats", "--no-stream", "-a", "-o", "json"],
    ))?;
    let d = row(&all, "containers", &done).context("-a lists the exited one")?;
    ensure!(d["state"] == "Exited" && d["cpuPercent"].is_null(), "{d}");

    // The table; by prefix, only that container.
    let table = ok(crius(&socket, &["stats", "--no-stream"]))?;
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "CONTAINER",
        "NAME",
        "POD",
        "CPU %",
        "MEM",
        "MEM LIMIT",
        "WRITABLE",
    ] {
        ensure!(header.contains(col), "{col} in {table}");
    }
    let line = table
        .lines()
        .find(|l| l.starts_with(&busy[..13]))
        .with_context(|| format!("no row of busy in\n{table}"))?;
    ensure!(
        line.contains(" busy ") && line.contains("cli-stats") && line.contains("64.0MiB"),
        "{line}"
    );
    let only = ok(crius(&socket, &["stats", "--no-stream", &busy[..12]]))?;
    ensure!(
        only.lines().count() == 2 && only.contains(&busy[..13]),
        "{only}"
    );

    // Pods: the two running containers.
    let pods = one_sample(crius(
        &socket,
        &["pod", "stats", "--no-stream", "-o", "json"],
    ))?;
    let r = row(&pods, "pods", &p.id).with_context(|| format!("no pod in {pods}"))?;
    ensure!(r["containers"] == 2 && r["name"] == "cli-stats", "{r}");
    ensure!(r["cpuPercent"].as_f64() > Some(20.0), "{r}");
    ensure!(r["networkInterface"] == "eth0", "{r}");
    let table = ok(crius(
        &socket,
        &["pod", "stats", "--no-stream", &p.id[..12]],
    ))?;
    let line = table.lines().nth(1).with_context(|| table.clone())?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    ensure!(
        cols.len() == 9 && cols[0] == &p.id[..13] && cols[1] == "cli-stats" && cols[5] == "2",
        "{table}"
    );

    for args in [
        &["stats", "--no-stream", "0123456789abcdef"][..],
        &["pod", "stats", "--no-stream", "0123456789abcdef"],
    ] {
        let out = crius(&socket, args).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && out.stdout.is_empty() && err.contains("0123456789abcdef"),
            "{args:?}: {}",
            said(&out)
        );
    }

    streams_end_quietly(&socket)?;
    p.env.remove_all_and_check().await
}

/// A stream ends with exit 0 when its reader goes away after two
/// samples, and at SIGINT.
fn streams_end_quietly(socket: &std::path::Path) -> anyhow::Result<()> {
    let spawn = |args: &[&str]| -> anyhow::Result<Child> {
        let mut cmd = crius(socket, args);
        Ok(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?)
    };
    let mut reader = spawn(&["stats", "-o", "json", "--interval", "0.2"])?;
    let out = reader.stdout.take().context("stdout")?;
    let lines: Vec<String> = std::io::BufReader::new(out)
        .lines()
        .take(2)
        .collect::<Result<_, _>>()?;
    ensure!(lines.len() == 2, "{lines:?}");
    // The pipe is closed now: the next write ends it.
    let out = wait(reader)?;
    ensure!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        said(&out)
    );

    let pods = spawn(&["pod", "stats", "--interval", "0.2"])?;
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pods.id())?),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let out = wait(pods)?;
    ensure!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.matches("NAMESPACE").count() >= 2, "tables: {text}");
    Ok(())
}

/// Waits 10 s at most for `child` to exit.
fn wait(mut child: Child) -> anyhow::Result<Output> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}
