//! Idmapped bind mounts: a clone of a mount whose files appear owned
//! through a user namespace's mappings (kernel 5.12+, per file system). A
//! volume of a user-namespaced pod mounted this way is owned by the pod's
//! root inside the pod, as kubelet expects; runc 1.1 cannot make one itself,
//! but it bind-mounts one crius made like any other directory.
//!
//! `open_tree` and `move_mount` come from rustix; `mount_setattr`, which
//! rustix leaves out, is the one raw system call here.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

/// `MOUNT_ATTR_IDMAP` of `<linux/mount.h>`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `<linux/mount.h>` (its first version, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Mounts at `target` (an existing directory, or file for a file) a clone
/// of the mount at `source` and its submounts (as a recursive bind would),
/// whose ids are shifted by the mappings of the user namespace `userns`
/// (e.g. `/proc/PID/ns/user`). `EINVAL` when the file system of `source`,
/// or of one of its submounts, cannot be idmapped (overlayfs cannot);
/// nothing is mounted then.
pub fn bind(source: &Path, userns: &Path, target: &Path) -> io::Result<()> {
    let tree = rustix::mount::open_tree(
        CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    let ns = File::open(userns)?;
    set_idmap(&tree, &ns)?;
    rustix::mount::move_mount(
        &tree,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, {MOUNT_ATTR_IDMAP, ns})`.
fn set_idmap(tree: &OwnedFd, ns: &File) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    let tree: BorrowedFd<'_> = std::os::fd::AsFd::as_fd(tree);
    #[allow(unsafe_code)]
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes from
    // `&attr`, a live, properly aligned `repr(C)` value of that size laid
    // out as the kernel's `struct mount_attr` (version 0); the path is a
    // NUL-terminated static string; both fds are open for the whole call
    // (`tree` and `ns` are borrowed). The kernel writes nothing back.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A child in a new user namespace mapping 0 to `host` (65536 ids;
    /// root in the parent namespace writes the maps), and the namespace's
    /// path. The caller kills the child.
    fn userns_of(host: u32) -> io::Result<(std::process::Child, String)> {
        let child = std::process::Command::new("unshare")
            .args(["--user", "sleep", "30"])
            .spawn()?;
        let pid = child.id();
        let ours = std::fs::read_link("/proc/self/ns/user")?;
        for _ in 0..200 {
            // The child's own namespace once unshare has made it (and
            // exec'ed sleep).
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))?;
            if cmd.starts_with("sleep")
                && std::fs::read_link(format!("/proc/{pid}/ns/user"))? != ours
            {
                let map = format!("0 {host} 65536\n");
                std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
                std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
                return Ok((child, format!("/proc/{pid}/ns/user")));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(io::Error::other("unshare made no user namespace"))
    }

    #[test]
    fn a_tmpfs_seen_through_a_pods_mappings() -> io::Result<()> {
        // An idmapped mount needs CAP_SYS_ADMIN; CI runs as root.
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let tmp = tempfile::tempdir()?;
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(&src)?;
        std::fs::create_dir_all(&dst)?;
        nix::mount::mount(
            Some("tmpfs"),
            &src,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )?;
        std::fs::write(src.join("f"), b"x")?;
        std::os::unix::fs::chown(src.join("f"), Some(0), Some(0))?;
        let (mut holder, ns) = userns_of(200_000)?;
        let mounted = bind(&src, Path::new(&ns), &dst);
        let owner = std::fs::metadata(dst.join("f")).map(|m| (m.uid(), m.gid()));
        let _ = nix::mount::umount2(&dst, nix::mount::MntFlags::MNT_DETACH);
        let _ = nix::mount::umount2(&src, nix::mount::MntFlags::MNT_DETACH);
        let _ = holder.kill();
        let _ = holder.wait();
        mounted?;
        // Root's file, seen by the host through the mapping: 0 -> 200000.
        assert_eq!(owner?, (200_000, 200_000));
        Ok(())
    }

    #[test]
    fn an_overlay_cannot_be_idmapped_and_nothing_is_mounted() -> io::Result<()> {
        // Mounting an overlay needs root, as crius has; CI runs as root.
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let tmp = tempfile::tempdir()?;
        let d = |n: &str| -> io::Result<std::path::PathBuf> {
            let p = tmp.path().join(n);
            std::fs::create_dir_all(&p)?;
            Ok(p)
        };
        let (lower, upper, work, merged, dst) = (d("l")?, d("u")?, d("w")?, d("m")?, d("dst")?);
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )?;
        let (mut holder, ns) = userns_of(300_000)?;
        let r = bind(&merged, Path::new(&ns), &dst);
        let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EINVAL)));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        assert!(!mounts.contains(&dst.display().to_string()));
        Ok(())
    }
}
