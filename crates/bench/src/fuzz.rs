//! `crius-bench fuzz`: the long run of the seeded CRI fuzzer
//! (`crius_testkit::fuzz`; the integration test `fuzz` is its bounded CI
//! run).
//!
//! Without `--endpoint` it sets up what `compare` does (a local registry
//! with busybox and a pause image, `criusd` on a private containerd, and,
//! with `--target containerd|both`, containerd's own CRI plugin on a second
//! one, each with a CNI bridge of its own), fuzzes each in turn for
//! `--secs`, and removes everything. With `--endpoint` it fuzzes a runtime
//! that already runs (a dedicated one: the fuzzer removes the pods it made,
//! and only those, but what it does to the node's images is not undone).
//!
//! stdout: each target's summary (calls, calls per RPC and answer, findings
//! grouped, each with its seed, worker and call). Exit status: 0 no finding
//! on the runtime under test (crius, or the endpoint), 2 findings, 1 the
//! run could not be made. containerd's findings, as target B, are reported
//! for comparison and do not change the status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use crius_cri_api::v1;
use crius_testkit::fuzz::{self, Report, Settings};

use crate::{images, setup};

/// Which local runtimes to fuzz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FuzzTarget {
    /// crius (A) only.
    Crius,
    /// containerd's CRI plugin (B) only.
    Containerd,
    /// crius, then containerd's CRI plugin.
    Both,
}

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// The seed of every random choice (a finding names it).
    #[arg(long, default_value_t = 18)]
    seed: u64,
    /// Seconds of calls per target (the cleanup comes after).
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Fuzz this running CRI endpoint (unix:///path.sock or /path.sock)
    /// instead of starting crius here; needs --image.
    #[arg(long)]
    endpoint: Option<String>,
    /// With --endpoint: the containers' image (pulled first).
    #[arg(long)]
    image: Option<String>,
    /// With --endpoint: images calls may pull and remove (repeat).
    #[arg(long = "spare-image")]
    spare_images: Vec<String>,
    /// Without --endpoint: which runtimes to fuzz.
    #[arg(long, value_enum, default_value_t = FuzzTarget::Crius)]
    target: FuzzTarget,
    /// The criusd binary [default: criusd next to this executable].
    #[arg(long)]
    criusd: Option<PathBuf>,
    /// criusd's log level.
    #[arg(long, default_value = "info")]
    criusd_log_level: String,
    /// Where the registry storage is kept [default: as for compare].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Copy the daemons' logs into this directory at the end.
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

/// Runs the fuzz command; its exit status.
pub async fn main(a: FuzzArgs) -> ExitCode {
    let result = tokio::select! {
        r = run(a) => r,
        r = crate::interrupted() => r.map(|_| false),
    };
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(2),
        Err(e) => {
            eprintln!("crius-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Whether the runtime under test had findings.
async fn run(a: FuzzArgs) -> Result<bool> {
    if a.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let scratch = tempfile::Builder::new()
        .prefix("crius-bench-fuzz-")
        .tempdir_in("/tmp")
        .context("creating the fuzzer's directory")?;
    match &a.endpoint {
        Some(endpoint) => endpoint_run(&a, endpoint, scratch.path()).await,
        None => local_run(&a, scratch.path()).await,
    }
}

fn settings(a: &FuzzArgs, image: &str, scratch: &Path) -> Settings {
    let mut s = Settings::new(a.seed, image, scratch);
    s.duration = Duration::from_secs(a.secs);
    s.workers = a.workers;
    s
}

async fn endpoint_run(a: &FuzzArgs, endpoint: &str, scratch: &Path) -> Result<bool> {
    let image = a.image.as_deref().context("--endpoint needs --image")?;
    let socket = Path::new(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
    pull(socket, image).await?;
    let mut s = settings(a, image, scratch);
    s.spare_images = a.spare_images.clone();
    eprintln!(
        "crius-bench: fuzzing {endpoint} for {} s (seed {})",
        a.secs, a.seed
    );
    let report = fuzz::run(socket, &s).await;
    print!("{}", report.summary());
    Ok(!report.findings.is_empty())
}

/// Pulls `image` through the CRI endpoint at `socket`.
async fn pull(socket: &Path, image: &str) -> Result<()> {
    let mut cri = crius_testkit::client::connect(socket).await?;
    cri.image
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("pulling {image}: {:?}: {}", s.code(), s.message()))?;
    Ok(())
}

/// What both local targets share: the registry and its images, the
/// networks and the host's cgroup tree.
struct Local {
    registry_addr: String,
    busybox: String,
    pause: String,
    networks: Vec<setup::Network>,
    host: setup::HostGuard,
}

async fn local_run(a: &FuzzArgs, scratch: &Path) -> Result<bool> {
    crius_testkit::require_root()?;
    let criusd_bin = crate::criusd_binary(a.criusd.as_deref())?;
    let cache_dir = absolute(a.cache_dir.clone().unwrap_or_else(crate::default_cache_dir))?;
    let log_dir = a.log_dir.clone().map(absolute).transpose()?;
    // A relative path a runtime accepts lands here, not in our directory.
    std::env::set_current_dir(scratch).context("entering the fuzzer's directory")?;
    let _lock = setup::lock_cache(&cache_dir)?;
    let storage = cache_dir.join("registry-storage");
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let registry = crius_testkit::registry::Registry::start_with_storage(&storage)?;
    let addr = registry.addr();
    let networks = setup::Network::for_endpoints(2);
    let local = Local {
        busybox: images::ensure_small(&registry)?.reference(&addr),
        pause: images::ensure_pause(&registry)?.reference(&addr),
        registry_addr: addr,
        host: setup::HostGuard::new(&networks),
        networks,
    };
    let mut findings = false;
    if a.target != FuzzTarget::Containerd {
        let report = crius(a, &local, &criusd_bin, scratch, log_dir.as_deref()).await?;
        findings |= !report.findings.is_empty();
    }
    if a.target != FuzzTarget::Crius {
        let report = containerd(a, &local, scratch, log_dir.as_deref()).await?;
        // Only when it is the runtime under test.
        if a.target == FuzzTarget::Containerd {
            findings |= !report.findings.is_empty();
        }
    }
    Ok(findings)
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&p).with_context(|| format!("{}", p.display()))
}

/// Fuzzes crius (A) on a containerd of its own.
async fn crius(
    a: &FuzzArgs,
    l: &Local,
    bin: &Path,
    scratch: &Path,
    log_dir: Option<&Path>,
) -> Result<Report> {
    let ctd = setup::BenchContainerd::start(setup::Flavor::Plain, "info")?;
    let criusd = setup::CriusdProc::start(
        bin,
        ctd.socket(),
        &l.registry_addr,
        &l.networks[0],
        &a.criusd_log_level,
    )?;
    criusd.wait_ready().await?;
    pull(criusd.socket(), &l.busybox).await?;
    let mut s = settings(a, &l.busybox, &scratch.join("a"));
    s.spare_images = vec![l.pause.clone()];
    s.cgroup_parent = format!("{}/a", l.host.cgroup_root);
    eprintln!(
        "crius-bench: fuzzing crius ({}, {}) for {} s (seed {}, {} workers)",
        bin.display(),
        crate::build_profile(bin),
        a.secs,
        a.seed,
        a.workers
    );
    let mut report = fuzz::run(criusd.socket(), &s).await;
    report.check_log(&criusd.log());
    println!("== A: crius ==\n{}", report.summary());
    save_logs(
        log_dir,
        &[
            ("criusd.log", criusd.log()),
            ("containerd-a.log", ctd.log()),
        ],
    )?;
    Ok(report)
}

/// Fuzzes containerd's own CRI plugin (B), for comparison.
async fn containerd(
    a: &FuzzArgs,
    l: &Local,
    scratch: &Path,
    log_dir: Option<&Path>,
) -> Result<Report> {
    let ctd = setup::BenchContainerd::start(
        setup::Flavor::Cri {
            registry_addr: &l.registry_addr,
            sandbox_image: &l.pause,
            network: &l.networks[1],
        },
        "info",
    )?;
    ctd.wait_cri().await?;
    pull(ctd.socket(), &l.busybox).await?;
    pull(ctd.socket(), &l.pause).await?;
    let mut s = settings(a, &l.busybox, &scratch.join("b"));
    s.spare_images = vec![l.pause.clone()];
    s.cgroup_parent = format!("{}/b", l.host.cgroup_root);
    // containerd 1.6 panics on CreateContainer without a sandbox_config (a
    // nil pointer in makeContainerName) and is gone within seconds.
    s.skip = vec!["sandbox_config".into()];
    eprintln!(
        "crius-bench: fuzzing containerd's CRI for {} s (seed {})",
        a.secs, a.seed
    );
    let mut report = fuzz::run(ctd.socket(), &s).await;
    report.check_log(&ctd.log());
    println!(
        "== B: containerd's CRI (for comparison) ==\n{}",
        report.summary()
    );
    save_logs(log_dir, &[("containerd-b-cri.log", ctd.log())])?;
    Ok(report)
}

fn save_logs(dir: Option<&Path>, logs: &[(&str, String)]) -> Result<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in logs {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(())
}
