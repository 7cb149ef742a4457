//! Reading `/etc/passwd` and `/etc/group` of a container's root filesystem
//! before it runs, copying the image's content at its volume paths into
//! the volumes' host directories, and mounting image volumes: the snapshot is mounted read-only in a
//! private directory, paths are opened with `RESOLVE_IN_ROOT` (a symlink can
//! never lead out of the rootfs), files are read with a size cap, and the
//! copy never follows a symlink.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crius_containerd::Mount;
use crius_core::container::MAX_ETC_FILE_SIZE;
use crius_core::{Error, Result};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};

/// `(passwd, group)` of the rootfs the `mounts` describe (`None` for a file
/// the image does not have); and for each `(path, host dir)` of `volumes`,
/// the host directory created holding a copy of what the image has at
/// `path` (empty when nothing).
pub fn read_etc(
    mounts: &[Mount],
    scratch: &Path,
    volumes: &[(String, PathBuf)],
) -> Result<(Option<String>, Option<String>)> {
    with_scratch_mount(mounts, scratch, ("the rootfs", mount_readonly), |root| {
        let etc = (
            read_in_root(root, "etc/passwd")?,
            read_in_root(root, "etc/group")?,
        );
        for (path, host_dir) in volumes {
            copy_up(root, path, host_dir)?;
        }
        Ok(etc)
    })
}

/// How a snapshot is mounted at a scratch directory.
type MountFn = fn(&Mount, &Path) -> nix::Result<()>;

/// Mounts the first of `mounts` at `scratch` (created) with `how.1`, runs
/// `body` on it, then unmounts and removes `scratch`, whatever `body`
/// answered. `how.0` names what is mounted in errors.
fn with_scratch_mount<T>(
    mounts: &[Mount],
    scratch: &Path,
    how: (&str, MountFn),
    body: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let (what, mount_it) = how;
    let mount = mounts
        .first()
        .ok_or_else(|| Error::Internal("a snapshot without mounts".into()))?;
    std::fs::create_dir_all(scratch)
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    if let Err(e) = mount_it(mount, scratch) {
        let _ = std::fs::remove_dir(scratch);
        return Err(Error::io(
            format!("mounting {what} at {}", scratch.display()),
            e.into(),
        ));
    }
    let done = body(scratch);
    let _ = nix::mount::umount2(scratch, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(scratch);
    done
}

/// Mounts the image view `mounts` describe read-only at `dir` (an image
/// volume) and returns the host path of its directory `sub_path`
/// (resolved inside the image: no symlink leads out); nothing is left
/// mounted when it fails. A `sub_path` that is missing or no directory is
/// the client's: `InvalidArgument` for `image_sub_path`.
pub fn mount_image_volume(mounts: &[Mount], dir: &Path, sub_path: &str) -> Result<PathBuf> {
    let mount = mounts
        .first()
        .ok_or_else(|| Error::Internal("an image view without mounts".into()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    if let Err(e) = mount_readonly(mount, dir) {
        let _ = std::fs::remove_dir(dir);
        return Err(Error::io(
            format!("mounting the image at {}", dir.display()),
            e.into(),
        ));
    }
    let resolved = resolve_dir_in_root(dir, sub_path);
    if resolved.is_err() {
        let _ = nix::mount::umount2(dir, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(dir);
    }
    resolved
}

/// The host path of the directory `sub_path` inside the tree at `root`.
/// The tree is a read-only image, so the path found stays what it is.
fn resolve_dir_in_root(root: &Path, sub_path: &str) -> Result<PathBuf> {
    let root = std::fs::canonicalize(root)
        .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
    let sub = sub_path.trim_start_matches('/');
    if sub.is_empty() {
        return Ok(root);
    }
    let dir = std::fs::File::open(&root)
        .map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match nix::fcntl::openat2(&dir, sub, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => {
            return Err(Error::invalid(
                "image_sub_path",
                format!("{sub_path:?} is not in the image"),
            ));
        }
        Err(nix::errno::Errno::ENOTDIR) => {
            return Err(Error::invalid(
                "image_sub_path",
                format!(
                    "{sub_path:?} is not a directory of the image (only directories are mounted)"
                ),
            ));
        }
        Err(e) => {
            return Err(Error::io(
                format!("opening {sub_path:?} in the image"),
                e.into(),
            ));
        }
    };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| Error::io(format!("resolving {sub_path:?} in the image"), e))?;
    // RESOLVE_IN_ROOT already kept it inside; this is the belt to its braces.
    if !path.starts_with(&root) {
        return Err(Error::invalid(
            "image_sub_path",
            format!("{sub_path:?} leads out of the image"),
        ));
    }
    Ok(path)
}

/// Mounts the rootfs `mount` describes read-only at `scratch`.
fn mount_readonly(mount: &Mount, scratch: &Path) -> nix::Result<()> {
    // Read-only: the lower dirs are enough, and the upper dir stays untouched.
    let lowers: Vec<&str> = mount
        .options
        .iter()
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .collect();
    let lowers: Vec<&str> = lowers.iter().flat_map(|l| l.split(':')).collect();
    if mount.r#type == "overlay" && lowers.len() == 1 {
        // overlayfs needs two lower dirs without an upper: bind the one.
        nix::mount::mount(
            Some(lowers[0]),
            scratch,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else if mount.r#type == "overlay" && !lowers.is_empty() {
        let data = format!("lowerdir={}", lowers.join(":"));
        nix::mount::mount(
            Some("overlay"),
            scratch,
            Some("overlay"),
            MsFlags::MS_RDONLY,
            Some(data.as_str()),
        )
    } else if mount.r#type == "overlay" {
        // A single-layer image: the upper dir of an empty child, bind it.
        let upper = mount
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .unwrap_or(mount.source.as_str());
        nix::mount::mount(
            Some(upper),
            scratch,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else if mount.r#type == "bind" || mount.options.iter().any(|o| o == "bind" || o == "rbind") {
        // The native snapshotter: a bind mount, made read-only by a remount.
        nix::mount::mount(
            Some(mount.source.as_str()),
            scratch,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| {
            let ro = nix::mount::mount(
                None::<&str>,
                scratch,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&str>,
            );
            if ro.is_err() {
                let _ = nix::mount::umount2(scratch, MntFlags::MNT_DETACH);
            }
            ro
        })
    } else {
        nix::mount::mount(
            Some(mount.source.as_str()),
            scratch,
            Some(mount.r#type.as_str()),
            MsFlags::MS_RDONLY,
            Some(mount.options.join(",").as_str()),
        )
    }
}

fn read_in_root(root: &Path, path: &str) -> Result<Option<String>> {
    let dir = std::fs::File::open(root)
        .map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match nix::fcntl::openat2(&dir, path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening /{path} of the image"), e.into())),
    };
    let mut file = std::fs::File::from(fd);
    let mut text = String::new();
    file.by_ref()
        .take(MAX_ETC_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("reading /{path} of the image"), e))?;
    // Security: the image's author controls this file and criusd reads it
    // into memory; real ones are a few KiB.
    if text.len() > MAX_ETC_FILE_SIZE as usize {
        return Err(Error::FailedPrecondition(format!(
            "/{path} of the image is larger than {MAX_ETC_FILE_SIZE} bytes"
        )));
    }
    Ok(Some(text))
}

/// Creates `dest` holding a copy of the directory at `path` in the rootfs
/// (modes and owners kept; symlinks copied as links; devices, FIFOs and
/// sockets skipped). Nothing at `path`, or no directory: `dest` stays empty.
fn copy_up(root: &Path, path: &str, dest: &Path) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} for volume {path}"), e);
    std::fs::create_dir_all(dest).map_err(|e| io("creating the volume directory", e))?;
    let dir = std::fs::File::open(root)
        .map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match nix::fcntl::openat2(&dir, path.trim_start_matches('/'), how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(io("opening the image's directory", e.into())),
    };
    // The directory as resolved inside the rootfs, reached through its fd.
    let src = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    copy_tree(&src, dest).map_err(|e| io("copying the image's content", e))
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, lchown, symlink};
    let md = std::fs::metadata(src)?;
    std::fs::set_permissions(dst, md.permissions())?;
    lchown(dst, Some(md.uid()), Some(md.gid()))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
            lchown(&to, Some(md.uid()), Some(md.gid()))?;
        } else if ft.is_symlink() {
            symlink(std::fs::read_link(&from)?, &to)?;
            lchown(&to, Some(md.uid()), Some(md.gid()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_path_never_leads_out_of_the_image() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = tmp.path().join("image");
        let io = |e| Error::io("building the tree", e);
        std::fs::create_dir_all(root.join("etc/ssl")).map_err(io)?;
        std::fs::write(root.join("etc/passwd"), "x").map_err(io)?;
        std::os::unix::fs::symlink("/etc", root.join("abs")).map_err(io)?;
        std::os::unix::fs::symlink("../../../..", root.join("up")).map_err(io)?;
        let root = std::fs::canonicalize(&root).map_err(io)?;
        assert_eq!(resolve_dir_in_root(&root, "")?, root);
        assert_eq!(resolve_dir_in_root(&root, "etc/ssl")?, root.join("etc/ssl"));
        // Symlinks and `..` resolve inside the image, never to the host's.
        assert_eq!(resolve_dir_in_root(&root, "abs")?, root.join("etc"));
        assert_eq!(resolve_dir_in_root(&root, "up")?, root);
        assert_eq!(resolve_dir_in_root(&root, "../../etc")?, root.join("etc"));
        assert_eq!(resolve_dir_in_root(&root, "/etc")?, root.join("etc"));
        for (sub, why) in [
            ("missing", "not in the image"),
            ("etc/passwd", "not a directory"),
        ] {
            match resolve_dir_in_root(&root, sub) {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "image_sub_path");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{sub}: {other:?}"),
            }
        }
        Ok(())
    }
}

/// Mounts the writable snapshot `mounts` describe at `scratch`, shifts the
/// owner of each of its files into `maps`' host range (`i` becomes
/// `host_id + i`; set-id bits, which a chown clears, are put back) and
/// unmounts it. Symlinks are changed, never followed. A file owned by an
/// id the range lacks is refused: it would keep a host id outside the
/// pod's range.
pub fn remap_ids(
    mounts: &[Mount],
    scratch: &Path,
    maps: &crius_core::userns::IdMaps,
) -> Result<()> {
    let how = ("the snapshot to remap", mount_writable as MountFn);
    with_scratch_mount(mounts, scratch, how, |root| remap_tree(root, maps))
}

fn mount_writable(mount: &Mount, scratch: &Path) -> nix::Result<()> {
    let bind = mount.r#type == "bind" || mount.options.iter().any(|o| o == "bind" || o == "rbind");
    if bind {
        return nix::mount::mount(
            Some(mount.source.as_str()),
            scratch,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        );
    }
    let options: Vec<&str> = mount
        .options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "ro" && *o != "rw")
        .collect();
    nix::mount::mount(
        Some(mount.source.as_str()),
        scratch,
        Some(mount.r#type.as_str()),
        MsFlags::empty(),
        Some(options.join(",").as_str()),
    )
}

fn remap_tree(root: &Path, maps: &crius_core::userns::IdMaps) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let (uid, gid) = match (maps.uids.to_host(meta.uid()), maps.gids.to_host(meta.gid())) {
            (Some(u), Some(g)) => (u, g),
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "{} is owned by {}:{}, outside the pod's user namespace",
                    path.display(),
                    meta.uid(),
                    meta.gid()
                )));
            }
        };
        let caps = if meta.is_file() {
            file_caps(&path)?
        } else {
            None
        };
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
        let mode = meta.mode() & 0o7777;
        if meta.is_file() && mode & 0o6000 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        }
        if let Some(caps) = caps {
            restore_file_caps(&path, &caps, maps)?;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
                todo.push(entry.path());
            }
        }
    }
    Ok(())
}

/// A file's capability set (`security.capability`), which a chown clears.
fn file_caps(path: &Path) -> Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 64];
    match rustix::fs::lgetxattr(path, crius_core::userns::FILE_CAPS_XATTR, &mut buf[..]) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(Error::io(
            format!("reading the capabilities of {}", path.display()),
            e.into(),
        )),
    }
}

/// Puts `caps` back on `path`, as the pod's root's (v3, its host root
/// id), as an idmapped mount would show them; a set the mapping cannot
/// carry is dropped (fewer privileges, never more).
fn restore_file_caps(path: &Path, caps: &[u8], maps: &crius_core::userns::IdMaps) -> Result<()> {
    let Some(v3) = crius_core::userns::remap_file_caps(caps, &maps.uids) else {
        tracing::warn!(file = %path.display(), "file capabilities the pod's mapping cannot carry: dropped");
        return Ok(());
    };
    rustix::fs::lsetxattr(
        path,
        crius_core::userns::FILE_CAPS_XATTR,
        &v3,
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| {
        Error::io(
            format!("setting the capabilities of {}", path.display()),
            e.into(),
        )
    })
}

#[cfg(test)]
mod remap_tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use crius_core::userns::{IdMapping, IdMaps};

    fn maps() -> IdMaps {
        let m = IdMapping {
            container_id: 0,
            host_id: 200_000,
            length: 65536,
        };
        IdMaps { uids: m, gids: m }
    }

    #[test]
    fn owners_shift_links_are_not_followed_setid_bits_stay()
    -> Result<(), Box<dyn std::error::Error>> {
        // chown needs root, as crius does; CI runs as root.
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin"))?;
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x")?;
        std::fs::write(root.join("bin/su"), "x")?;
        std::os::unix::fs::lchown(root.join("bin/su"), Some(0), Some(5))?;
        std::fs::set_permissions(root.join("bin/su"), std::fs::Permissions::from_mode(0o4755))?;
        std::os::unix::fs::symlink(&outside, root.join("escape"))?;
        super::remap_tree(&root, &maps())?;
        let su = std::fs::metadata(root.join("bin/su"))?;
        assert_eq!((su.uid(), su.gid()), (200_000, 200_005));
        assert_eq!(su.mode() & 0o7777, 0o4755);
        let link = std::fs::symlink_metadata(root.join("escape"))?;
        assert_eq!(link.uid(), 200_000);
        // The link's target outside the tree is untouched.
        assert_eq!(std::fs::metadata(&outside)?.uid(), 0);
        assert_eq!(std::fs::metadata(&root)?.uid(), 200_000);
        // An owner outside the range is refused.
        std::os::unix::fs::lchown(&root, Some(70_000), None)?;
        assert!(super::remap_tree(&root, &maps()).is_err());
        Ok(())
    }

    #[test]
    fn file_capabilities_stay_the_pods_roots() -> Result<(), Box<dyn std::error::Error>> {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::tempdir()?;
        let ping = dir.path().join("ping");
        std::fs::write(&ping, "x")?;
        // cap_net_raw+ep, v2 (what an image's layer tar carries).
        let v2: Vec<u8> = [0x0200_0001u32, 1 << 13, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let name = crius_core::userns::FILE_CAPS_XATTR;
        rustix::fs::lsetxattr(&ping, name, &v2, rustix::fs::XattrFlags::empty())?;
        super::remap_tree(dir.path(), &maps())?;
        let mut buf = [0u8; 64];
        let n = rustix::fs::lgetxattr(&ping, name, &mut buf[..])?;
        let words: Vec<u32> = buf[..n]
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(words, [0x0300_0001, 1 << 13, 0, 0, 0, 200_000]);
        Ok(())
    }
}
