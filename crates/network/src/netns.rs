//! Pinned network namespaces for pods.
//!
//! A pod's network namespace must outlive every process in it (the pause
//! process may die, CNI DEL must still find the namespace), so it is pinned by
//! bind-mounting its nsfs inode onto an empty file, `dir/name`, as `ip netns
//! add` and containerd do.
//!
//! Nothing here ever switches the calling thread into another namespace:
//! [`create`] does its `unshare(CLONE_NEWNET)` on a dedicated, short-lived OS
//! thread, so the threads of the async runtime stay in the host namespace.
//!
//! # Mount propagation of `dir`
//!
//! [`create`] makes `dir` a mount point of its own with *shared* propagation
//! (bind-mounting it onto itself once when it is not a mount point yet, then
//! `MS_SHARED|MS_REC`), exactly what iproute2's `ip netns add` does to
//! `/var/run/netns` and what the CNI project's test helpers do. (containerd's
//! own `pkg/netns` only creates the directory and inherits whatever the parent
//! mount is; the "needs to be a shared mountpoint" comment it carries is a
//! leftover of the code it was copied from.) Reasons:
//!
//! - The pins then reach any mount namespace holding a slave or shared copy of
//!   the directory (a CNI daemon or node agent pod mounting `/var/run/netns`
//!   with `HostToContainer` propagation sees namespaces created after it
//!   started), and an unmount in [`remove`] propagates to those copies too, so
//!   they do not keep dead namespaces alive. This holds even on hosts whose
//!   root mount is private (no systemd, like the test machines), where
//!   inheriting the parent's propagation would make every pin private.
//! - It is the state `ip netns add` would put `/var/run/netns` in anyway, so
//!   the two tools agree when they share the directory.
//! - Private copies made before a pin existed do not matter, and private
//!   copies of a pin made by an `rbind` of `/run` into another mount namespace
//!   are detached by the kernel when [`remove`] unlinks the file (Linux >= 3.18
//!   lazily detaches mounts in other namespaces on unlink).
//!
//! The self bind mount of `dir` stays for the life of the mount namespace (as
//! with iproute2); a caller that wants to delete `dir` itself must unmount it
//! first.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crius_core::{Error, Result};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, statfs};

/// Serializes the check-and-bind of [`make_shared_mount`] so that concurrent
/// [`create`]s in one process do not stack several self bind mounts.
static DIR_SETUP: Mutex<()> = Mutex::new(());

/// Creates a new network namespace pinned at `dir/name` and returns that path.
///
/// `dir` is created if needed and made a shared mount point (see the module
/// docs). Fails with `AlreadyExists` if `dir/name` exists. Blocking (a thread
/// spawn, `unshare` and two mounts: about a millisecond, more on a busy
/// kernel); async callers should use `spawn_blocking`.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf> {
    check_name("netns name", name)?;
    make_pin_dir(dir)?;
    let path = dir.join(name);
    make_pin_file(&path, "network namespace")?;

    let target = path.clone();
    let pinned = std::thread::Builder::new()
        .name("crius-netns".into())
        .spawn(move || pin_new_netns(&target))
        .map_err(|e| Error::io("spawn netns creation thread", e))
        .and_then(|handle| {
            handle
                .join()
                .map_err(|_| Error::Internal("netns creation thread panicked".into()))
        });
    match pinned {
        Ok(Ok(())) => {
            tracing::debug!(netns = %path.display(), "created network namespace");
            Ok(path)
        }
        Ok(Err(e)) | Err(e) => {
            if let Err(rm) = std::fs::remove_file(&path) {
                tracing::warn!(netns = %path.display(), error = %rm, "cannot remove netns mount point after a failed create");
            }
            Err(e)
        }
    }
}

/// Pins the network namespace of process `pid` at `dir/name` and returns
/// that path: a pod's namespace its pause made inside the pod's user
/// namespace. Fails with `AlreadyExists` if `dir/name` exists. Blocking.
pub fn pin_pid(dir: &Path, name: &str, pid: u32) -> Result<PathBuf> {
    check_name("netns name", name)?;
    make_pin_dir(dir)?;
    let path = dir.join(name);
    make_pin_file(&path, "network namespace")?;
    let source = format!("/proc/{pid}/ns/net");
    let bound = nix::mount::mount(
        Some(source.as_str()),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    if let Err(e) = bound {
        let _ = std::fs::remove_file(&path);
        return Err(Error::io(
            format!("bind-mount {source} onto {}", path.display()),
            io::Error::from(e),
        ));
    }
    Ok(path)
}

/// Creates `dir` (mode 0755) if needed and makes it a shared mount point
/// (see the module docs).
pub(crate) fn make_pin_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(format!("create namespace directory {}", dir.display()), e))?;
    make_shared_mount(dir)
}

/// Creates the empty mount point (mode 0444) of a pin of a `what`; fails
/// with `AlreadyExists` if `path` exists.
pub(crate) fn make_pin_file(path: &Path, what: &str) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map(drop)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                what: format!("{what} {}", path.display()),
            },
            _ => Error::io(format!("create {what} mount point {}", path.display()), e),
        })
}

/// Refuses a `name` that is not a plain file name (`field` names it in the
/// error): pins are `dir/name`, and nothing may climb out of `dir`.
pub(crate) fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not a file name"),
        ));
    }
    Ok(())
}

/// Body of the dedicated thread: moves this thread (only) into a new network
/// namespace and pins it on `target`. The thread exits right after, so no
/// thread of the process stays in the new namespace.
fn pin_new_netns(target: &Path) -> Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::io(
            "unshare(CLONE_NEWNET) for a new pod network namespace",
            io::Error::from(e),
        )
    })?;
    // /proc/thread-self is this thread's own entry: /proc/self/ns/net would be
    // the main thread's namespace, i.e. the host's.
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!(
                "bind-mount the new network namespace onto {}",
                target.display()
            ),
            io::Error::from(e),
        )
    })
}

/// Makes `dir` a mount point with shared propagation, bind-mounting it onto
/// itself first when it is not a mount point (what `ip netns add` does).
pub(crate) fn make_shared_mount(dir: &Path) -> Result<()> {
    let _guard = DIR_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let make_shared = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => return Ok(()),
        // EINVAL: `dir` is not the root of a mount.
        Err(Errno::EINVAL) => {}
        Err(e) => {
            return Err(Error::io(
                format!("make {} a shared mount", dir.display()),
                io::Error::from(e),
            ));
        }
    }
    // MS_REC carries over pins already in the directory.
    nix::mount::mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!("bind-mount {} onto itself", dir.display()),
            io::Error::from(e),
        )
    })?;
    make_shared().map_err(|e| {
        Error::io(
            format!("make {} a shared mount", dir.display()),
            io::Error::from(e),
        )
    })?;
    tracing::debug!(dir = %dir.display(), "made the netns directory a shared mount point");
    Ok(())
}

/// Unpins and deletes a namespace created by [`create`] (or an IPC or UTS
/// pin made by [`crate::pins::pin`]): lazily unmounts
/// (`MNT_DETACH`) every mount on `path`, then unlinks it. Idempotent: a
/// missing path, or a file that is no longer a mount point, is fine. The
/// namespace itself disappears once no process and no other pin uses it.
pub fn remove(path: &Path) -> Result<()> {
    // A path can carry stacked mounts (e.g. pinned twice); remove them all.
    for _ in 0..16 {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // EINVAL: not a mount point (any more); ENOENT: gone.
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => {
                return Err(Error::io(
                    format!("unmount network namespace {}", path.display()),
                    io::Error::from(e),
                ));
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(netns = %path.display(), "removed network namespace");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("remove network namespace file {}", path.display()),
            e,
        )),
    }
}

/// Whether `path` refers to a namespace (an nsfs inode): a live pin made by
/// [`create`], or a `/proc/<pid>/ns/net` link of a running process. False for
/// a missing path or a plain file whose pin was unmounted.
pub fn is_pinned(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_rejected_before_touching_anything() {
        let d = tempfile::tempdir().expect("tempdir");
        for name in ["", ".", "..", "a/b"] {
            let err = create(&d.path().join("ns"), name).expect_err(name);
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{name:?}: {err}"
            );
        }
        assert!(!d.path().join("ns").exists());
    }

    #[test]
    fn plain_and_missing_files_are_not_pinned() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        std::fs::write(&f, "").expect("write");
        assert!(!is_pinned(&f));
        assert!(!is_pinned(&d.path().join("missing")));
        assert!(is_pinned(Path::new("/proc/self/ns/net")));
    }

    #[test]
    fn remove_of_missing_or_plain_file_is_ok() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        remove(&f).expect("missing");
        std::fs::write(&f, "").expect("write");
        remove(&f).expect("plain file");
        assert!(!f.exists());
        remove(&f).expect("again");
    }
}
