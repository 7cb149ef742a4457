//! Issue 17: `crius doctor` on a healthy node, then with a missing shim
//! and a missing CNI plugin (each a FAIL line with its fix); a stopped
//! containerd is in `foundation::containerd_down_at_start_then_recovers`.

use std::process::Command;
use std::sync::Arc;

use anyhow::ensure;

use crate::Env;
use crate::pods::PodEnv;

crate::tests![doctor_says_what_is_wrong_and_what_to_do];

/// `crius doctor` against `socket`: its exit code and lines.
pub(crate) fn doctor(socket: &std::path::Path, json: bool) -> anyhow::Result<(i32, String)> {
    let mut c = Command::new(crate::CRIUS);
    c.arg("--endpoint").arg(socket).arg("doctor");
    if json {
        c.args(["-o", "json"]);
    }
    let out = c.output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
    ))
}

fn fails(report: &str) -> Vec<&str> {
    report.lines().filter(|l| l.starts_with("FAIL")).collect()
}

async fn doctor_says_what_is_wrong_and_what_to_do(env: Arc<Env>) -> anyhow::Result<()> {
    let missing = "[runtimes.missing]\nruntime_type = \"io.containerd.nosuch.v1\"\n";
    let p = PodEnv::start_with(&env, None, "", missing).await?;
    let socket = p.daemon().socket().to_path_buf();
    let (code, report) = doctor(&socket, false)?;
    for ok in [
        "ok    socket",
        "ok    containerd",
        "ok    cni config",
        "ok    runtime runc",
        "ok    seccomp",
        "ok    cgroup driver",
        "ok    registry hosts",
    ] {
        ensure!(report.contains(ok), "no {ok:?} in\n{report}");
    }
    // The one failure: the handler whose shim does not exist.
    let failed = fails(&report);
    ensure!(code == 1 && failed.len() == 1, "{code}\n{report}");
    ensure!(
        failed[0].starts_with("FAIL  runtime missing") && failed[0].contains("runtime_path"),
        "{report}"
    );
    // A CNI config that comes first and names a plugin nobody installed.
    let conf = p.daemon().cni_conf_dir().join("00-broken.conflist");
    let broken = serde_json::json!({
        "cniVersion": "1.0.0", "name": "broken",
        "plugins": [{ "type": "nosuch-plugin" }, { "type": "loopback" }]
    });
    std::fs::write(&conf, broken.to_string())?;
    let (code, report) = doctor(&socket, false)?;
    let cni = fails(&report)
        .into_iter()
        .find(|l| l.starts_with("FAIL  cni config"))
        .unwrap_or_default()
        .to_string();
    ensure!(
        code == 1 && cni.contains("nosuch-plugin") && cni.contains("bin_dirs"),
        "{report}"
    );
    std::fs::remove_file(&conf)?;
    // For scripts: one object per check.
    let (_, json) = doctor(&socket, true)?;
    let checks: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    ensure!(
        checks
            .iter()
            .any(|c| c["check"] == "runtime missing" && c["level"] == "fail"),
        "{json}"
    );
    Ok(())
}
