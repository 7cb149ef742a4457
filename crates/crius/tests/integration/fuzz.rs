//! Issue 18: the seeded CRI fuzzer (`crius_testkit::fuzz`) in CI: a bounded
//! run against a daemon of its own (own containerd namespace, own CNI
//! bridge), 4 workers, about a third of the calls malformed. It passes only
//! with no finding at all (no INTERNAL or UNKNOWN, no valid input refused,
//! no call without an answer, the daemon answering after every call, no
//! panic in its log) and nothing left after everything is removed.
//!
//! `CRIUS_FUZZ_SEED` and `CRIUS_FUZZ_SECS` (and `CRIUS_FUZZ_WORKERS`) change
//! the seed and the length; a finding names its seed, worker and call.
//! `crius-bench fuzz` is the long run (see crates/bench/src/fuzz.rs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use crius_testkit::fuzz;
use crius_testkit::images as ti;

use crate::Env;
use crate::pods::PodEnv;

crate::tests![bounded_run_finds_nothing_and_leaves_nothing];

const SEED: u64 = 18;
const SECS: u64 = 75;
const WORKERS: u64 = 4;

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?}: not a number")),
        Err(_) => Ok(default),
    }
}

async fn bounded_run_finds_nothing_and_leaves_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(ti::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let scratch = tempfile::Builder::new()
        .prefix("crius-fuzz-")
        .tempdir_in("/tmp")?;
    let mut s = fuzz::Settings::new(env_number("CRIUS_FUZZ_SEED", SEED)?, image, scratch.path());
    s.duration = Duration::from_secs(env_number("CRIUS_FUZZ_SECS", SECS)?);
    s.workers = env_number("CRIUS_FUZZ_WORKERS", WORKERS)? as usize;
    s.spare_images = vec![
        env.images.reference(ti::BUSYBOX_1_0),
        env.images.reference(ti::DISTINCT_A),
    ];
    let mut report = fuzz::run(p.daemon().socket(), &s).await;
    report.check_log(&p.daemon().log());
    eprintln!("{}", report.summary());
    ensure!(report.calls > 0, "no call was made");
    // Whatever the fuzzer left, this finds (and removes).
    p.remove_all_and_check().await?;
    ensure!(report.findings.is_empty(), "{}", report.findings_text());
    Ok(())
}
