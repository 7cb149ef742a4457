//! Integration tests: the real `criusd` against a real containerd (and, as
//! the issues grow, runc, CNI and a registry), driven over the CRI socket.
//!
//! One private containerd and one `criusd` serve the whole binary; tests that
//! need a daemon of their own (bad config, signals, containerd down) start
//! one. Needs root; fails (never skips) without it.

mod cdi;
mod checkpoint;
mod cli_stats;
mod cli_streaming;
mod compat;
mod containers;
mod cri036;
mod doctor;
mod events;
mod foundation;
mod fuzz;
mod images;
mod kubelet;
mod metrics;
mod notify;
mod pinned;
mod pod_metrics;
mod pods;
mod relaxed;
mod reliability;
mod runtimes;
mod secrets;
mod security;
mod streaming;

use std::future::Future;
use std::sync::Arc;

use crius_testkit::client::{self, Cri};
use crius_testkit::containerd::Containerd;
use crius_testkit::criusd::{Criusd, CriusdOptions};
use crius_testkit::images::TestImages;
use libtest_mimic::{Arguments, Failed, Trial};

/// The `criusd` binary under test.
pub const CRIUSD: &str = env!("CARGO_BIN_EXE_criusd");
/// The `crius` CLI under test.
pub const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

/// What every test shares.
pub struct Env {
    pub containerd: Containerd,
    pub criusd: Criusd,
    /// docker-registry on 127.0.0.1 serving the test images.
    pub images: TestImages,
    next_namespace: std::sync::atomic::AtomicUsize,
}

impl Env {
    fn setup() -> anyhow::Result<Env> {
        crius_testkit::require_root()?;
        let images = TestImages::start_default()?;
        let containerd = Containerd::start()?;
        let mut opts = CriusdOptions::new(CRIUSD, containerd.socket());
        opts.extra_config = registry_config(&images);
        let criusd = Criusd::start(&opts)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(criusd.wait_runtime_ready(std::time::Duration::from_secs(30)))?;
        Ok(Env {
            containerd,
            criusd,
            images,
            next_namespace: Default::default(),
        })
    }

    /// Options for a further daemon on the shared containerd.
    pub fn options(&self) -> CriusdOptions {
        let mut opts = CriusdOptions::new(CRIUSD, self.containerd.socket());
        opts.extra_config = registry_config(&self.images);
        opts
    }

    /// A daemon of its own, in a containerd namespace of its own, so a test
    /// can add and remove images without seeing any other test's.
    pub async fn isolated(&self) -> anyhow::Result<(Criusd, Cri)> {
        let n = self
            .next_namespace
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut opts = self.options();
        opts.namespace = format!("crius-test-{}-{n}", std::process::id());
        let daemon = Criusd::start(&opts)?;
        daemon
            .wait_runtime_ready(std::time::Duration::from_secs(30))
            .await?;
        let cri = client::connect(daemon.socket()).await?;
        Ok((daemon, cri))
    }

    /// A CRI client of the shared daemon.
    pub async fn cri(&self) -> anyhow::Result<Cri> {
        client::connect(self.criusd.socket()).await
    }
}

/// Config lines that let a daemon pull from the test registry over plain HTTP.
fn registry_config(images: &TestImages) -> String {
    format!("[images]\nplain_http_hosts = [{:?}]\n", images.addr())
}

/// A test body: gets the shared environment, runs async.
pub type TestFn =
    fn(Arc<Env>) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Declares the tests of a module: `tests![name, ...]` for `async fn name(env: Arc<Env>) -> anyhow::Result<()>`.
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        pub fn all() -> Vec<(&'static str, $crate::TestFn)> {
            vec![$((concat!(module_path!(), "::", stringify!($name)), |env| Box::pin($name(env)))),*]
        }
    };
}

fn main() {
    let args = Arguments::from_args();
    let env = match Env::setup() {
        Ok(env) => Arc::new(env),
        Err(e) => {
            eprintln!("integration test environment failed to start: {e:#}");
            std::process::exit(101);
        }
    };
    let mut trials = Vec::new();
    for (name, body) in foundation::all()
        .into_iter()
        .chain(images::all())
        .chain(pods::all())
        .chain(containers::all())
        .chain(cri036::all())
        .chain(doctor::all())
        .chain(notify::all())
        .chain(runtimes::all())
        .chain(security::all())
        .chain(compat::all())
        .chain(secrets::all())
        .chain(kubelet::all())
        .chain(metrics::all())
        .chain(events::all())
        .chain(cdi::all())
        .chain(checkpoint::all())
        .chain(pod_metrics::all())
        .chain(streaming::all())
        .chain(cli_streaming::all())
        .chain(cli_stats::all())
        .chain(relaxed::all())
        .chain(pinned::all())
        .chain(fuzz::all())
        .chain(reliability::all())
    {
        let env = env.clone();
        let name = name.trim_start_matches("integration::");
        trials.push(Trial::test(name, move || run(env, body)));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!("--- criusd log (shared daemon) ---\n{}", env.criusd.log());
    }
    drop(env);
    conclusion.exit();
}

fn run(env: Arc<Env>, body: TestFn) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("tokio: {e}")))?;
    rt.block_on(body(env))
        .map_err(|e| Failed::from(format!("{e:#}")))
}
