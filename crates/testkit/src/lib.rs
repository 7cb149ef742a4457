//! Fixtures for crius integration tests.
//!
//! Everything here runs real programs: a private containerd per test binary,
//! `criusd` on its own socket, `docker-registry` on 127.0.0.1 and test images
//! built from `busybox-static`. A missing dependency fails loudly: a test that
//! cannot run must never pass.

pub mod client;
pub mod containerd;
pub mod criusd;
pub mod fuzz;
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

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> anyhow::Result<bool> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (got_major, got_minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok((got_major, got_minor) >= (major, minor))
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

/// Removes `dir` and the directories below it, deepest first (cgroupfs
/// directories go with rmdir only, and only when empty); whether it is gone.
pub fn rmdir_tree(dir: &std::path::Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
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

/// Unmounts (lazily, deepest first) every mount at or below `dir`: what a
/// killed daemon or a failed test left (pod `/dev/shm`, pinned network
/// namespaces, the netns directory's own bind mount), so the directory can go.
pub fn unmount_under(dir: &std::path::Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}
