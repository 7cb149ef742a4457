//! Scenario 6, the floor: `runc run -d` of the same busybox `sleep 3600`
//! from a prepared bundle (the busybox image's rootfs, runc's default spec
//! with its own network namespace, a cgroup below the benchmark's), then
//! `runc delete -f`. No containerd, no shim, no CNI, no image lookup: the
//! cost of starting one container, which every CRI runtime pays on top of.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use crius_testkit::images::{self, BUSYBOX};
use serde_json::Value;

use crate::report::{EndpointResult, Metric, ScenarioReport};
use crate::stats::{Summary, summarize};

/// A bundle and a private runc state root, removed on drop (containers
/// left in it are deleted first).
pub struct Bundle {
    dir: tempfile::TempDir,
    cgroup_parent: String,
}

impl Bundle {
    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// Unpacks the busybox image into `bundle/rootfs` and writes
    /// `config.json` from `runc spec`.
    pub fn prepare(cgroup_parent: &str) -> Result<Bundle> {
        crius_testkit::require_binary("runc", "runc")?;
        let dir = tempfile::Builder::new()
            .prefix("crius-bench-runc-")
            .tempdir_in("/tmp")
            .context("creating the bundle directory")?;
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        let built = images::build_image(BUSYBOX)?;
        let amd64 = built.info.amd64();
        for layer in &amd64.layers {
            let blob = built
                .blobs
                .iter()
                .find(|b| b.digest == *layer)
                .with_context(|| format!("layer {layer} of {BUSYBOX}"))?;
            let gz = flate2::read::GzDecoder::new(blob.data.as_slice());
            let mut archive = tar::Archive::new(gz);
            archive.set_preserve_permissions(true);
            archive
                .unpack(&rootfs)
                .with_context(|| format!("unpacking {layer}"))?;
        }
        let out = std::process::Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle)
            .output()
            .context("runc spec")?;
        if !out.status.success() {
            bail!("runc spec: {}", String::from_utf8_lossy(&out.stderr));
        }
        let path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
        spec["hostname"] = "floor".into();
        Ok(Bundle {
            dir: {
                std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
                dir
            },
            cgroup_parent: cgroup_parent.to_owned(),
        })
    }

    /// Sets the cgroup of the next container.
    fn set_cgroup(&self, id: &str) -> Result<()> {
        let path = self.bundle().join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["linux"]["cgroupsPath"] = format!("{}/{id}", self.cgroup_parent).into();
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(())
    }

    async fn runc(&self, args: &[&str]) -> Result<f64> {
        // Not a pipe: a detached container inherits runc's stdio and would
        // hold a pipe open for as long as it runs.
        let err_path = self.dir.path().join("runc.err");
        let err = std::fs::File::create(&err_path)?;
        let started = Instant::now();
        let status = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(self.state())
            .args(args)
            .current_dir(self.bundle())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .await
            .with_context(|| format!("runc {}", args.join(" ")))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if !status.success() {
            bail!(
                "runc {}: {status}: {}",
                args.join(" "),
                std::fs::read_to_string(&err_path)
                    .unwrap_or_default()
                    .trim()
            );
        }
        Ok(ms)
    }

    /// `runc run -d` (time to running) and `runc delete -f` of one container.
    async fn once(&self, id: &str) -> Result<(f64, f64)> {
        self.set_cgroup(id)?;
        let bundle = self.bundle().display().to_string();
        let run = self.runc(&["run", "-d", "--bundle", &bundle, id]).await?;
        let delete = self.runc(&["delete", "-f", id]).await?;
        Ok((run, delete))
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Containers left by an interrupted run.
        if let Ok(entries) = std::fs::read_dir(self.state()) {
            for e in entries.flatten() {
                let _ = std::process::Command::new("runc")
                    .arg("--root")
                    .arg(self.state())
                    .args(["delete", "-f"])
                    .arg(e.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        crius_testkit::unmount_under(self.dir.path());
    }
}

/// The floor: `n` containers one after the other. `pod_start` holds each
/// endpoint's `(name, label, time-to-running summary)` from the serial pod
/// start, when it ran, to show how far above the floor each runtime is.
pub async fn floor(
    n: usize,
    cgroup_root: &str,
    pod_start: &[(String, String, Option<Summary>)],
) -> ScenarioReport {
    let mut runs = Vec::new();
    let mut deletes = Vec::new();
    let mut error = None;
    match Bundle::prepare(&format!("{cgroup_root}/floor")) {
        Ok(bundle) => {
            for i in 0..n + 1 {
                match bundle.once(&format!("crius-bench-floor-{i}")).await {
                    // The first one warms the page cache.
                    Ok(_) if i == 0 => {}
                    Ok((run, delete)) => {
                        runs.push(run);
                        deletes.push(delete);
                    }
                    Err(e) => {
                        error = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
        }
        Err(e) => error = Some(format!("preparing the bundle: {e:#}")),
    }
    let run = summarize(&runs);
    let label = |s: &str| ("runc".to_owned(), s.to_owned());
    let mut metrics = vec![
        Metric::latency("runc run -d: time to running", {
            let (e, l) = label("floor");
            vec![(e, l, run)]
        }),
        Metric::latency("runc delete -f", {
            let (e, l) = label("floor");
            vec![(e, l, summarize(&deletes))]
        }),
    ];
    if let Some(floor) = run
        && !pod_start.is_empty()
    {
        metrics.push(Metric::value(
            "pod start (serial p50) above the floor (p50)",
            "ms",
            pod_start
                .iter()
                .map(|(e, l, s)| (e.clone(), l.clone(), s.map(|s| s.p50_ms - floor.p50_ms)))
                .collect(),
        ));
        metrics.push(Metric::value(
            "pod start (serial p50) / floor (p50)",
            "x",
            pod_start
                .iter()
                .map(|(e, l, s)| (e.clone(), l.clone(), s.map(|s| s.p50_ms / floor.p50_ms)))
                .collect(),
        ));
    }
    let mut report = ScenarioReport::with_metrics(
        "floor",
        "small",
        None,
        format!(
            "`runc run -d` of busybox `sleep 3600` from a prepared bundle, then `runc delete -f`, {n} times after 1 warmup"
        ),
        vec![EndpointResult {
            endpoint: "runc".into(),
            label: "floor".into(),
            samples_ms: Vec::new(),
            summary: run,
            size_bytes: None,
            mb_per_s_p50: None,
            warm_samples: 0,
            error,
            notes: Vec::new(),
        }],
        metrics,
        vec![
            "a pod start does more than this: a sandbox (pause container, network namespace, CNI), \
             a shim per task, image and snapshot lookups, log plumbing"
                .to_owned(),
        ],
    );
    report.runs = runs.len();
    report
}
