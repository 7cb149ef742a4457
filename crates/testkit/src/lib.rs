//! Fixtures for crius integration tests.
//!
//! Everything here runs real programs: a private containerd per test binary,
//! `criusd` on its own socket, `docker-registry` on 127.0.0.1 and test images
//! built from `busybox-static`. A missing dependency fails loudly: a test that
//! cannot run must never pass.

pub mod client;
pub mod containerd;
pub mod criusd;
pub mod images;
pub mod registry;

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::Signal;

pub use registry::require_binary;

/// Fails unless running as root: these fixtures mount, create namespaces and run containerd.
pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "the integration tests run containerd and need root; run them as root (hack/test.sh does)"
        );
    }
    Ok(())
}

/// Sends `signal`, waits up to 10 s, then SIGKILLs and reaps.
pub(crate) fn kill_and_reap(mut child: Child, signal: Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Pids of processes with `arg` as one of their command-line arguments.
pub fn pids_with_arg(arg: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}
