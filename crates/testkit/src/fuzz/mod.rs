//! A seeded CRI fuzzer, in the spirit of containerd's `FuzzCRIServer`.
//!
//! Several workers (default 4) send random, reproducible sequences of CRI
//! calls (RuntimeService and ImageService, 30 RPCs) to a live runtime. Each
//! worker keeps track of the pods and containers it made and acts mostly on
//! them, sometimes on another worker's or on ids nobody has; a few pod names
//! are used by every worker at once (concurrent duplicates). About a third
//! of the calls have one field made malformed (empty, huge, unicode, control
//! characters, NUL, traversal in paths, absurd resources, bad enums, …).
//!
//! Findings (see [`verdict`]): INTERNAL for any input (valid input: a fault
//! of the runtime or its dependencies; malformed input: never), UNKNOWN,
//! INVALID_ARGUMENT for valid input, a call without an answer, a daemon
//! that does not answer Version after a call, a panic in its log
//! ([`Report::check_log`]), and anything left after the fuzzer removed what
//! it made. Each finding names the seed, the worker and the call's index;
//! the call is a function of those and of the worker's state, which depends
//! on the answers before it (with one worker, a run is repeated exactly as
//! far as the daemon answers alike).
//!
//! Objects stay small (busybox containers running `sleep 1000`, `true`,
//! `echo`; at most `max_pods` pods per worker and `max_containers` per pod)
//! so that a two-core machine copes.

#![deny(clippy::unwrap_used)]

pub mod bad;
pub mod call;
pub mod cleanup;
pub mod exec;
pub mod generate;
pub mod report;
pub mod rng;
pub mod state;
pub mod traffic;
pub mod verdict;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use report::Report;
pub use verdict::{Finding, Kind};

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The seed of every random choice.
    pub seed: u64,
    /// How long calls are made (the cleanup comes after).
    pub duration: Duration,
    /// Concurrent workers.
    pub workers: usize,
    /// At most this many calls per worker (`None`: until `duration`).
    pub max_calls: Option<u64>,
    /// The containers' image (`registry/repo:tag`; pulled before the run
    /// by the caller; every pulled reference names its registry).
    pub image: String,
    /// Further images that calls pull and remove at will.
    pub spare_images: Vec<String>,
    /// A directory of the fuzzer's own: pod log directories, mount sources.
    pub scratch: PathBuf,
    /// The pods' cgroup parent (each pod a directory below it); empty: the
    /// runtime's default.
    pub cgroup_parent: String,
    /// The runtime handler of valid RunPodSandbox calls.
    pub runtime_handler: String,
    /// The share of calls with malformed input.
    pub malformed: f64,
    /// Fields never made malformed (a mutator's field name, e.g.
    /// `sandbox_config`): what is known to kill a runtime, to fuzz the rest.
    pub skip: Vec<String>,
    /// Live pods per worker.
    pub max_pods: usize,
    /// Containers per pod.
    pub max_containers: usize,
    /// A call without an answer after this long is a hang.
    pub call_timeout: Duration,
    /// How long the Version probe after each call may take.
    pub liveness_timeout: Duration,
}

impl Settings {
    /// Defaults: 60 s, 4 workers, 35 % malformed, 4 pods of up to 3
    /// containers per worker, hangs after 60 s, Version within 5 s.
    pub fn new(seed: u64, image: impl Into<String>, scratch: impl Into<PathBuf>) -> Settings {
        Settings {
            seed,
            duration: Duration::from_secs(60),
            workers: 4,
            max_calls: None,
            image: image.into(),
            spare_images: Vec::new(),
            scratch: scratch.into(),
            cgroup_parent: String::new(),
            runtime_handler: String::new(),
            malformed: 0.35,
            skip: Vec::new(),
            max_pods: 4,
            max_containers: 3,
            call_timeout: Duration::from_secs(60),
            liveness_timeout: Duration::from_secs(5),
        }
    }
}

/// Fuzzes the CRI runtime at `socket`, then removes what the fuzzer made
/// (pods carrying [`cleanup::MARK`], their containers) and checks that
/// nothing of it is left. The daemon's log is the caller's to check
/// ([`Report::check_log`]).
pub async fn run(socket: &Path, settings: &Settings) -> Report {
    let started = Instant::now();
    let shared = Arc::new(worker::Shared {
        settings: settings.clone(),
        socket: socket.to_owned(),
        board: Default::default(),
        traffic: Default::default(),
        stop: AtomicBool::new(false),
        until: started + settings.duration,
    });
    let handles: Vec<_> = (0..settings.workers.max(1))
        .map(|w| tokio::spawn(worker::work(w, shared.clone())))
        .collect();
    let mut report = Report {
        seed: settings.seed,
        workers: settings.workers.max(1),
        ..Default::default()
    };
    for h in handles {
        match h.await {
            Ok(r) => report.merge(r),
            Err(e) => report.find(Finding::of_run(
                Kind::Panic,
                settings.seed,
                &format!("a fuzzer worker: {e}"),
            )),
        }
    }
    report.elapsed = started.elapsed();
    finish(socket, &mut report).await;
    report
}

async fn finish(socket: &Path, report: &mut Report) {
    let mut cri = match crate::client::connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            report.find(Finding::of_run(
                Kind::Unresponsive,
                report.seed,
                &format!("cleanup: {e:#}"),
            ));
            return;
        }
    };
    let c = cleanup::remove_all(&mut cri, report.seed).await;
    report.removed = (c.pods, c.containers);
    for f in c.findings {
        report.find(f);
    }
}
