//! crius-bench: drives CRI endpoints and compares them in one run.
//!
//! * `crius-bench pull --endpoint A=unix:///a.sock --endpoint B=unix:///b.sock --image REF`
//!   drives endpoints that already run.
//! * `crius-bench compare` sets everything up on this machine: a local
//!   registry with a ~100 MB image and busybox, `criusd` on a private
//!   containerd (endpoint A) and containerd's own CRI plugin on a second
//!   private containerd (endpoint B); everything is stopped and removed
//!   afterwards, also on errors and on Ctrl-C.
//!
//! The report goes to stdout (a table, or JSON with `-o json`); progress and
//! errors go to stderr. Exit status: 0 all measured, 2 a report with endpoint
//! errors, 1 no report (setup failed).

mod bench;
mod images;
mod machine;
mod report;
mod setup;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bench::{BenchImage, Query, Settings, Target};
use crate::machine::Machine;
use crate::report::{Report, ScenarioReport};

#[derive(Debug, Parser)]
#[command(
    name = "crius-bench",
    version,
    about = "Benchmarks CRI endpoints against each other"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Pull images through CRI endpoints that already run, alternating between them.
    Pull(PullArgs),
    /// Start crius (A) and containerd's CRI plugin (B) on this machine, with a
    /// local registry, and compare them. Needs root.
    Compare(CompareArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct Common {
    /// Measured runs per endpoint and image.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Unmeasured runs per endpoint and image before the measured ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// ImageStatus and ListImages calls per endpoint.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Report format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl Common {
    fn settings(&self) -> Settings {
        Settings {
            runs: self.runs,
            warmup: self.warmup,
            calls: self.calls,
        }
    }
}

#[derive(Debug, Args)]
struct PullArgs {
    /// NAME=unix:///path.sock (repeat; the ratio is first / second).
    #[arg(long = "endpoint", required = true)]
    endpoints: Vec<String>,
    /// Image reference to pull (repeat). ImageStatus is timed on the last.
    #[arg(long = "image", required = true)]
    images: Vec<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The criusd binary [default: criusd next to this executable].
    #[arg(long)]
    criusd: Option<PathBuf>,
    /// Where the generated image's registry storage is kept between runs
    /// [default: $CRIUS_BENCH_CACHE, else <cargo target dir>/crius-bench-cache,
    /// else /var/tmp/crius-bench-cache].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Only the small (busybox) image: skip the ~100 MB one.
    #[arg(long)]
    small_only: bool,
    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crius-bench: starting the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let output = match &cli.command {
        Cmd::Pull(a) => a.common.output,
        Cmd::Compare(a) => a.common.output,
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(cli.command) => r,
            r = interrupted() => r,
        }
    });
    // Whatever `run` started was dropped (stopped) by now.
    match result {
        Ok(report) => {
            match output {
                Output::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("crius-bench: {e}");
                        return ExitCode::from(1);
                    }
                },
                Output::Table => print!("{}", report.table()),
            }
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                for e in &report.errors {
                    eprintln!("crius-bench: error: {e}");
                }
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("crius-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM, so that the benchmark future is dropped
/// and its guards stop what it started.
async fn interrupted() -> Result<Report> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => bail!("terminated (SIGTERM); cleaned up"),
        _ = int.recv() => bail!("interrupted (SIGINT); cleaned up"),
    }
}

async fn run(cmd: Cmd) -> Result<Report> {
    match cmd {
        Cmd::Pull(a) => pull(a).await,
        Cmd::Compare(a) => compare(a).await,
    }
}

/// The scenarios common to both modes: pulls of every image, then
/// ImageStatus (on the last image) and ListImages.
async fn scenarios(targets: &[Target], images: &[BenchImage], s: Settings) -> Vec<ScenarioReport> {
    let mut out = Vec::new();
    for image in images {
        out.push(bench::pull_scenario(targets, image, s).await);
    }
    if s.calls > 0
        && let Some(last) = images.last()
    {
        out.push(bench::query_scenario(targets, last, Query::ImageStatus, s).await);
        out.push(bench::query_scenario(targets, last, Query::ListImages, s).await);
    }
    out
}

fn check_settings(s: Settings) -> Result<()> {
    if s.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(())
}

async fn pull(a: PullArgs) -> Result<Report> {
    let s = a.common.settings();
    check_settings(s)?;
    let machine = Machine::probe();
    let mut targets = Vec::new();
    for (i, e) in a.endpoints.iter().enumerate() {
        let (name, address) = match e.split_once('=') {
            Some((n, addr)) if !n.is_empty() && !n.contains('/') => (n.to_owned(), addr.to_owned()),
            _ => (((b'A' + (i % 26) as u8) as char).to_string(), e.clone()),
        };
        let cri = bench::connect(&address).await?;
        let mut target = Target {
            label: String::new(),
            name,
            address,
            cri,
            containerd_root: None,
        };
        // Label it with what it says it is (e.g. `containerd`, `crius`).
        let info = target.info().await;
        target.label = if info.runtime_name.is_empty() {
            "?".to_owned()
        } else {
            info.runtime_name
        };
        targets.push(target);
    }
    let images: Vec<BenchImage> = a
        .images
        .iter()
        .map(|r| BenchImage {
            label: r.clone(),
            reference: r.clone(),
            size_bytes: None,
            uncompressed_bytes: None,
            layers: Vec::new(),
        })
        .collect();
    let mut endpoints = Vec::new();
    for t in &targets {
        endpoints.push(t.info().await);
    }
    let scenarios = scenarios(&targets, &images, s).await;
    let notes = vec![
        "pull mode: cold pulls are not verified (RemoveImage is called before each pull; \
         whether the endpoint's containerd garbage-collected the blobs is unknown); \
         MB/s uses the size each endpoint's ImageStatus reports"
            .to_owned(),
    ];
    Ok(Report::new(
        "pull",
        machine.finish(),
        endpoints,
        scenarios,
        notes,
    ))
}

/// `$CRIUS_BENCH_CACHE`, else `<target>/crius-bench-cache` when this
/// executable sits in a cargo target directory, else /var/tmp/crius-bench-cache.
fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRIUS_BENCH_CACHE").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(Path::parent)
        && target.join("CACHEDIR.TAG").is_file()
    {
        return target.join("crius-bench-cache");
    }
    PathBuf::from("/var/tmp/crius-bench-cache")
}

fn build_profile(binary: &Path) -> &'static str {
    match binary
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("release") => "release build",
        Some("debug") => "DEBUG build: not representative",
        _ => "build profile unknown",
    }
}

async fn compare(a: CompareArgs) -> Result<Report> {
    let s = a.common.settings();
    check_settings(s)?;
    crius_testkit::require_root()?;
    let criusd_bin = match a.criusd {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locating this executable")?
            .parent()
            .context("this executable has no directory")?
            .join("criusd"),
    };
    let criusd_bin = criusd_bin.canonicalize().with_context(|| {
        format!(
            "criusd binary {} (build it, or pass --criusd)",
            criusd_bin.display()
        )
    })?;
    let cache_dir = a.cache_dir.unwrap_or_else(default_cache_dir);

    // Locals drop in reverse order: criusd, its containerd, the CRI
    // containerd, the registry, the lock.
    let _lock = setup::lock_cache(&cache_dir)?;
    let storage = cache_dir.join("registry-storage");
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let registry = crius_testkit::registry::Registry::start_with_storage(&storage)?;
    let mut pushed = Vec::new();
    if !a.small_only {
        pushed.push(images::ensure_big(&registry, &cache_dir)?);
    }
    pushed.push(images::ensure_small(&registry)?);
    let addr = registry.addr();
    let images: Vec<BenchImage> = pushed
        .iter()
        .map(|p| BenchImage {
            label: p.label.clone(),
            reference: p.reference(&addr),
            size_bytes: Some(p.size_bytes),
            uncompressed_bytes: Some(p.uncompressed_bytes),
            layers: p.layers.clone(),
        })
        .collect();

    let ctd_b = setup::CriContainerd::start(&addr)?;
    ctd_b.wait_cri().await?;
    let ctd_a = crius_testkit::containerd::Containerd::start()?;
    let criusd = setup::CriusdProc::start(&criusd_bin, ctd_a.socket(), &addr)?;
    criusd.wait_ready().await?;

    let targets = vec![
        Target {
            name: "A".into(),
            label: "crius".into(),
            address: format!("unix://{}", criusd.socket().display()),
            cri: bench::connect(&criusd.socket().display().to_string()).await?,
            containerd_root: Some(ctd_a.root()),
        },
        Target {
            name: "B".into(),
            label: "containerd-cri".into(),
            address: format!("unix://{}", ctd_b.socket().display()),
            cri: bench::connect(&ctd_b.socket().display().to_string()).await?,
            containerd_root: Some(ctd_b.root()),
        },
    ];
    let mut endpoints = Vec::new();
    for t in &targets {
        endpoints.push(t.info().await);
    }
    let machine = Machine::probe();
    let scenarios = scenarios(&targets, &images, s).await;
    let notes = vec![
        format!(
            "A: {} ({}), log level info, on a private containerd without CRI plugin, namespace crius",
            criusd_bin.display(),
            build_profile(&criusd_bin)
        ),
        "B: containerd's CRI plugin on a second private containerd (same binary), namespace k8s.io, \
         registry via certs.d/<host>/hosts.toml (plain HTTP)"
            .to_owned(),
        format!(
            "registry: docker-registry at {addr} serving {}; images: {}",
            storage.display(),
            images
                .iter()
                .map(|i| format!(
                    "{} = {} ({} bytes compressed, {} uncompressed, {} layers)",
                    i.label,
                    i.reference,
                    i.size_bytes.unwrap_or(0),
                    i.uncompressed_bytes.unwrap_or(0),
                    i.layers.len()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        "cold pulls: before each pull the image is removed and the benchmark waits until its \
         layer blobs are gone from that containerd's content store"
            .to_owned(),
    ];
    let report = Report::new("compare", machine.finish(), endpoints, scenarios, notes);
    if !report.errors.is_empty() {
        let log = criusd.log();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "crius-bench: criusd log tail:\n{}",
            lines[lines.len().saturating_sub(15)..].join("\n")
        );
    }
    Ok(report)
}
