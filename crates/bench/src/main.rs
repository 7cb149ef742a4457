//! crius-bench: drives CRI endpoints and compares them in one run.
//!
//! * `crius-bench pull --endpoint A=unix:///a.sock --endpoint B=unix:///b.sock --image REF`
//!   drives endpoints that already run.
//! * `crius-bench fuzz --seed N --secs N --workers N [--endpoint SOCKET]`
//!   runs the seeded CRI fuzzer (see `fuzz.rs`).
//! * `crius-bench compare` sets everything up on this machine: a local
//!   registry with a ~100 MB image, busybox and a pause image, `criusd` on a
//!   private containerd (endpoint A) and containerd's own CRI plugin on a
//!   second private containerd (endpoint B), each with a CNI bridge network
//!   of its own; runs the scenarios (pod start, churn, scale, pull,
//!   footprint, floor); everything is stopped and removed afterwards, also
//!   on errors and on Ctrl-C.
//!
//! The report goes to stdout (a table, or JSON with `-o json`); progress and
//! errors go to stderr. Exit status: 0 all measured, 2 a report with endpoint
//! errors, 1 no report (setup failed).

mod bench;
mod events;
mod floor;
mod footprint;
mod fuzz;
mod images;
mod machine;
mod pods;
mod probe;
mod report;
mod setup;
mod stats;
mod streaming;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
    /// Run the seeded CRI fuzzer against crius started here (and containerd's
    /// CRI plugin, --target both), or a running --endpoint. Needs root.
    Fuzz(fuzz::FuzzArgs),
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

/// The scenarios of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Pod start, serial x N and N at concurrency C.
    PodStart,
    /// Pod cycles for --churn-secs at concurrency C; leaks.
    Churn,
    /// M running pods; list/status latency, memory.
    Scale,
    /// Cold pulls (big and small image), ImageStatus, ListImages.
    Pull,
    /// RSS and CPU: idle, at M pods (with scale), after churn (with churn).
    Footprint,
    /// `runc run` of the same container from a bundle.
    Floor,
    /// Exec round trips (SPDY, WebSocket) and port-forward throughput.
    Streaming,
    /// crius alone: the cost of one GetContainerEvents subscriber during
    /// --churn-secs of pod churn (half without, half with).
    Events,
    /// Every scenario.
    All,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    scenarios: Vec<Scenario>,
    /// Pods per endpoint in the pod start scenarios (and runc runs of the floor).
    #[arg(short = 'n', long = "pods", default_value_t = 100)]
    n: usize,
    /// Concurrency: parallel pod start, churn workers, scale set-up and teardown.
    #[arg(short = 'c', long = "concurrency", default_value_t = 10)]
    c: usize,
    /// Running pods per endpoint in the scale scenario.
    #[arg(short = 'm', long = "scale-pods", default_value_t = 100)]
    m: usize,
    /// Seconds of churn per endpoint.
    #[arg(long, default_value_t = 30)]
    churn_secs: u64,
    /// Seconds over which idle CPU is measured (footprint).
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// criusd's log level (info: what containerd logs at by default; debug
    /// adds a line per containerd call, to see where a pod start's time goes).
    #[arg(long, default_value = "info")]
    criusd_log_level: String,
    /// Both containerds' log level.
    #[arg(long, default_value = "info")]
    containerd_log_level: String,
    /// Copy criusd's and both containerds' logs into this directory at the end.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The criusd binary [default: criusd next to this executable].
    #[arg(long)]
    criusd: Option<PathBuf>,
    /// Where the generated image's registry storage is kept between runs
    /// [default: $CRIUS_BENCH_CACHE, else <cargo target dir>/crius-bench-cache,
    /// else /var/tmp/crius-bench-cache].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Pull scenario: only the small (busybox) image, skip the ~100 MB one.
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
    let command = match cli.command {
        Cmd::Fuzz(a) => return rt.block_on(fuzz::main(a)),
        other => other,
    };
    let output = match &command {
        Cmd::Pull(a) => a.common.output,
        Cmd::Compare(a) => a.common.output,
        Cmd::Fuzz(_) => Output::Table,
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(command) => r,
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
        Cmd::Fuzz(_) => bail!("the fuzz command runs on its own"),
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
            local: None,
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

impl CompareArgs {
    fn wants(&self, s: Scenario) -> bool {
        self.scenarios.contains(&Scenario::All) || self.scenarios.contains(&s)
    }
}

/// The criusd binary: `given`, else `criusd` next to this executable.
pub(crate) fn criusd_binary(given: Option<&std::path::Path>) -> Result<PathBuf> {
    let bin = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .parent()
            .context("this executable has no directory")?
            .join("criusd"),
    };
    bin.canonicalize().with_context(|| {
        format!(
            "criusd binary {} (build it, or pass --criusd)",
            bin.display()
        )
    })
}

async fn compare(a: CompareArgs) -> Result<Report> {
    let s = a.common.settings();
    check_settings(s)?;
    if a.c == 0 {
        bail!("-c/--concurrency must be at least 1");
    }
    crius_testkit::require_root()?;
    let criusd_bin = criusd_binary(a.criusd.as_deref())?;
    let cache_dir = a.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let pod_scenarios = a.wants(Scenario::PodStart)
        || a.wants(Scenario::Churn)
        || a.wants(Scenario::Scale)
        || a.wants(Scenario::Streaming)
        || a.wants(Scenario::Events);

    // Locals drop in reverse order: logs, criusd, its containerd, the CRI
    // containerd, bridges and cgroups, the registry, the lock.
    let _lock = setup::lock_cache(&cache_dir)?;
    let storage = cache_dir.join("registry-storage");
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let registry = crius_testkit::registry::Registry::start_with_storage(&storage)?;
    let mut pushed = Vec::new();
    if a.wants(Scenario::Pull) && !a.small_only {
        pushed.push(images::ensure_big(&registry, &cache_dir)?);
    }
    let small = images::ensure_small(&registry)?;
    pushed.push(small.clone());
    let pause = images::ensure_pause(&registry)?;
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
    let busybox = small.reference(&addr);
    let pause_ref = pause.reference(&addr);

    let networks = setup::Network::for_endpoints(2);
    let host = setup::HostGuard::new(&networks);
    let ctd_b = setup::BenchContainerd::start(
        setup::Flavor::Cri {
            registry_addr: &addr,
            sandbox_image: &pause_ref,
            network: &networks[1],
        },
        &a.containerd_log_level,
    )?;
    ctd_b.wait_cri().await?;
    let ctd_a = setup::BenchContainerd::start(setup::Flavor::Plain, &a.containerd_log_level)?;
    let criusd = setup::CriusdProc::start(
        &criusd_bin,
        ctd_a.socket(),
        &addr,
        &networks[0],
        &a.criusd_log_level,
    )?;
    criusd.wait_ready().await?;
    let logs = tempfile::Builder::new()
        .prefix("crius-bench-logs-")
        .tempdir_in("/tmp")
        .context("creating the pod log directory")?;

    let pid = |p: Option<i32>, what: &str| p.with_context(|| format!("{what} is not running"));
    let targets = vec![
        Target {
            name: "A".into(),
            label: "crius".into(),
            address: format!("unix://{}", criusd.socket().display()),
            cri: bench::connect(&criusd.socket().display().to_string()).await?,
            containerd_root: Some(ctd_a.root()),
            local: Some(probe::Local {
                daemon_pid: Some(pid(criusd.pid(), "criusd")?),
                containerd_pid: pid(ctd_a.pid(), "containerd (A)")?,
                containerd_socket: ctd_a.socket().to_owned(),
                dirs: vec![criusd.dir().to_owned(), ctd_a.dir().to_owned()],
                cgroup: format!("{}/a", host.cgroup_root),
            }),
        },
        Target {
            name: "B".into(),
            label: "containerd-cri".into(),
            address: format!("unix://{}", ctd_b.socket().display()),
            cri: bench::connect(&ctd_b.socket().display().to_string()).await?,
            containerd_root: Some(ctd_b.root()),
            local: Some(probe::Local {
                daemon_pid: None,
                containerd_pid: pid(ctd_b.pid(), "containerd (B)")?,
                containerd_socket: ctd_b.socket().to_owned(),
                dirs: vec![ctd_b.dir().to_owned()],
                cgroup: format!("{}/b", host.cgroup_root),
            }),
        },
    ];
    let mut endpoints = Vec::new();
    for t in &targets {
        endpoints.push(t.info().await);
    }
    let machine = Machine::probe();
    let started = std::time::Instant::now();

    // The pods' images: busybox on both, the pause image on B (crius
    // builds its own at start-up).
    if pod_scenarios {
        for t in &targets {
            bench::ensure_pulled(t, &busybox).await?;
        }
        bench::ensure_pulled(&targets[1], &pause_ref).await?;
    }
    let w = pods::Workload {
        image: busybox.clone(),
        log_root: logs.path().to_owned(),
        cgroup_root: host.cgroup_root.clone(),
    };
    let ps = pods::PodSettings {
        n: a.n,
        c: a.c,
        m: a.m,
        churn: Duration::from_secs(a.churn_secs),
        warmup: s.warmup,
        calls: s.calls,
    };

    let mut out = Vec::new();
    let idle = if a.wants(Scenario::Footprint) {
        eprintln!("crius-bench: footprint: idle for {} s", a.idle_secs.max(1));
        Some(footprint::idle(&targets, Duration::from_secs(a.idle_secs.max(1))).await)
    } else {
        None
    };
    let mut serial_start = Vec::new();
    if a.wants(Scenario::PodStart) && a.n > 0 {
        let serial = pods::pod_start_serial(&targets, &w, ps).await;
        serial_start = serial
            .results
            .iter()
            .map(|r| (r.endpoint.clone(), r.label.clone(), r.summary))
            .collect();
        out.push(serial);
        out.push(pods::pod_start_parallel(&targets, &w, ps).await);
    }
    if a.wants(Scenario::Streaming) && a.n > 0 {
        out.push(streaming::streaming(&targets, &w, a.n, ps.warmup).await);
    }
    if a.wants(Scenario::Floor) {
        eprintln!("crius-bench: floor: runc run x {}", a.n.max(1));
        out.push(floor::floor(a.n.max(1), &host.cgroup_root, &serial_start).await);
    }
    let mut scale = None;
    if a.wants(Scenario::Scale) && a.m > 0 {
        let (report, outcomes) = pods::scale(&targets, &w, ps).await;
        out.push(report);
        scale = Some(outcomes);
    }
    let mut churn = None;
    if a.wants(Scenario::Churn) && a.churn_secs > 0 {
        let (report, outcomes) = pods::churn(&targets, &w, ps).await;
        out.push(report);
        churn = Some(outcomes);
    }
    if a.wants(Scenario::Events) && a.churn_secs > 0 {
        eprintln!("crius-bench: events: churn without, then with a subscriber");
        out.push(events::subscriber_cost(&targets[0], &w, ps).await);
    }
    if let Some(idle) = &idle {
        out.push(footprint::report(
            &targets,
            idle,
            scale.as_deref().map(|o| (a.m, o)),
            churn.as_deref(),
        ));
    }
    if a.wants(Scenario::Pull) {
        out.extend(scenarios(&targets, &images, s).await);
    }
    let mut notes = Vec::new();
    if pod_scenarios {
        for t in &targets {
            if let Err(e) = pods::remove_all(&t.cri, a.c).await {
                notes.push(format!("{}: removing what was left: {e}", t.name));
            }
        }
    }
    eprintln!(
        "crius-bench: scenarios took {:.0} s",
        started.elapsed().as_secs_f64()
    );

    notes.extend([
        format!(
            "A: {} ({}), log level {}, cgroup driver cgroupfs, on a private containerd without CRI plugin, namespace crius",
            criusd_bin.display(),
            build_profile(&criusd_bin),
            a.criusd_log_level
        ),
        format!(
            "B: containerd's CRI plugin on a second private containerd (same binary), namespace k8s.io, \
             sandbox_image {pause_ref} (crius' pause program), restrict_oom_score_adj, cgroupfs, \
             registry via certs.d/<host>/hosts.toml (plain HTTP)"
        ),
        "state directories (criusd's state_dir, both containerds' state) on a tmpfs each, as /run \
         is on a node; roots (images, snapshots, metadata) on the disk under /tmp"
            .to_owned(),
        format!(
            "networks: A bridge {} {}, B bridge {} {}; CNI bridge (isGateway, no ipMasq) + portmap + loopback from /usr/lib/cni, host-local IPAM",
            networks[0].bridge, networks[0].subnet, networks[1].bridge, networks[1].subnet
        ),
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
    ]);
    if a.wants(Scenario::Pull) {
        notes.push(
            "cold pulls: before each pull the image is removed and the benchmark waits until its \
             layer blobs are gone from that containerd's content store"
                .to_owned(),
        );
    }
    if let Some(dir) = &a.log_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, log) in [
            ("criusd.log", criusd.log()),
            ("containerd-a.log", ctd_a.log()),
            ("containerd-b-cri.log", ctd_b.log()),
        ] {
            std::fs::write(dir.join(name), log)
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
        eprintln!("crius-bench: logs copied to {}", dir.display());
    }
    let report = Report::new("compare", machine.finish(), endpoints, out, notes);
    if !report.errors.is_empty() {
        for (what, log) in [("criusd", criusd.log()), ("containerd (B)", ctd_b.log())] {
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "crius-bench: {what} log tail:\n{}",
                lines[lines.len().saturating_sub(15)..].join("\n")
            );
        }
    }
    Ok(report)
}
