//! Pinned network namespaces (needs root).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{mounts, nsenter, unmount_dir};
use crius_core::Error;
use crius_network::netns;

fn ino(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path).expect("stat").ino()
}

/// Removes the pins and the directory's own mount when dropped.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        Dir(tempfile::tempdir().expect("tempdir"))
    }
    fn ns(&self) -> std::path::PathBuf {
        self.0.path().join("netns")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.ns()) {
            for e in entries.flatten() {
                let _ = netns::remove(&e.path());
            }
        }
        unmount_dir(&self.ns());
    }
}

#[test]
fn create_pins_a_new_namespace_and_leaves_the_caller_alone() {
    let d = Dir::new();
    let host_thread = ino("/proc/thread-self/ns/net");
    let host_process = ino("/proc/self/ns/net");

    let path = netns::create(&d.ns(), "pod-a").expect("create");
    assert_eq!(path, d.ns().join("pod-a"));
    assert!(netns::is_pinned(&path));
    assert_ne!(ino(&path), host_thread, "the pin is a new namespace");
    assert_eq!(ino("/proc/thread-self/ns/net"), host_thread, "caller moved");
    assert_eq!(ino("/proc/self/ns/net"), host_process, "main thread moved");

    // A fresh namespace: only a loopback device, down.
    let (ok, links) = nsenter(&path, &["ip", "-o", "link"]);
    assert!(ok, "{links}");
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(
        links.contains("lo:") && links.contains("state DOWN"),
        "{links}"
    );

    // It persists with no process in it: state made by one process is seen by
    // the next.
    let (ok, out) = nsenter(
        &path,
        &["ip", "link", "add", "crta", "type", "veth", "peer", "crtb"],
    );
    assert!(ok, "{out}");
    let (_, links) = nsenter(&path, &["ip", "-o", "link"]);
    assert!(links.contains("crta@crtb"), "{links}");
    let (_, host_links) = common::run("ip", &["-o", "link"]);
    assert!(!host_links.contains("crta"), "leaked to the host");

    // The directory is a shared mount point of its own; the pin is a mount.
    let all = mounts();
    let dir_mounts: Vec<_> = all.iter().filter(|(p, _)| *p == d.ns()).collect();
    assert_eq!(dir_mounts.len(), 1, "{dir_mounts:?}");
    assert!(dir_mounts[0].1.contains("shared:"), "{dir_mounts:?}");
    assert!(all.iter().any(|(p, _)| *p == path));

    // Names are unique.
    let err = netns::create(&d.ns(), "pod-a").expect_err("exists");
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert!(
        netns::is_pinned(&path),
        "a failed create must not touch the pin"
    );

    netns::remove(&path).expect("remove");
    assert!(!path.exists());
    assert!(!netns::is_pinned(&path));
    assert!(!mounts().iter().any(|(p, _)| *p == path));
    netns::remove(&path).expect("remove is idempotent");
}

#[test]
fn concurrent_creates_get_distinct_namespaces_and_one_dir_mount() {
    let d = Dir::new();
    let dir = d.ns();
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.clone();
                s.spawn(move || netns::create(&dir, &format!("ns{i}")).expect("create"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut inodes: Vec<u64> = paths.iter().map(ino).collect();
    inodes.sort();
    inodes.dedup();
    assert_eq!(inodes.len(), 8);
    assert!(!inodes.contains(&ino("/proc/self/ns/net")));
    let dir_mounts = mounts().iter().filter(|(p, _)| *p == dir).count();
    assert_eq!(
        dir_mounts, 1,
        "the directory was bind-mounted more than once"
    );
    for p in &paths {
        netns::remove(p).expect("remove");
    }
    assert_eq!(std::fs::read_dir(&dir).expect("readdir").count(), 0);
}

#[test]
fn a_plain_file_left_behind_is_not_pinned_and_is_removed() {
    let d = Dir::new();
    let path = netns::create(&d.ns(), "x").expect("create");
    // Someone unmounted the pin but left the file.
    nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH).expect("umount");
    assert!(path.exists());
    assert!(!netns::is_pinned(&path));
    netns::remove(&path).expect("remove");
    assert!(!path.exists());
}
