//! Integration tests: the real `criusd` against a real containerd (and, as
//! the issues grow, runc, CNI and a registry), driven over the CRI socket.
//!
//! One private containerd and one `criusd` serve the whole binary; tests that
//! need a daemon of their own (bad config, signals, containerd down) start
//! one. Needs root; fails (never skips) without it.

mod foundation;

use std::future::Future;
use std::sync::Arc;

use crius_testkit::client::{self, Cri};
use crius_testkit::containerd::Containerd;
use crius_testkit::criusd::{Criusd, CriusdOptions};
use libtest_mimic::{Arguments, Failed, Trial};

/// The `criusd` binary under test.
pub const CRIUSD: &str = env!("CARGO_BIN_EXE_criusd");
/// The `crius` CLI under test.
pub const CRIUS: &str = env!("CARGO_BIN_EXE_crius");

/// What every test shares.
pub struct Env {
    pub containerd: Containerd,
    pub criusd: Criusd,
}

impl Env {
    fn setup() -> anyhow::Result<Env> {
        crius_testkit::require_root()?;
        let containerd = Containerd::start()?;
        let criusd = Criusd::start(&CriusdOptions::new(CRIUSD, containerd.socket()))?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(criusd.wait_runtime_ready(std::time::Duration::from_secs(30)))?;
        Ok(Env { containerd, criusd })
    }

    /// Options for a further daemon on the shared containerd.
    pub fn options(&self) -> CriusdOptions {
        CriusdOptions::new(CRIUSD, self.containerd.socket())
    }

    /// A CRI client of the shared daemon.
    pub async fn cri(&self) -> anyhow::Result<Cri> {
        client::connect(self.criusd.socket()).await
    }
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
    for (name, body) in foundation::all() {
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
