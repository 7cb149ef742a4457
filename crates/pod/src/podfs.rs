//! A pod's directory under the state dir: its `/etc` files, its `/dev/shm`
//! and an intent record that lets start-up clean up after a daemon that died
//! half-way through `RunPodSandbox`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crius_core::{Error, Result};
use nix::mount::{MntFlags, MsFlags};

use crate::meta::SandboxMeta;
use crate::ports::HostFs;

/// The intent record's file name.
pub const INTENT: &str = "sandbox.json";
/// Size of a pod's own `/dev/shm` (containerd's and Docker's default).
const SHM_SIZE: &str = "size=65536k";

/// Creates `dir` (0711: containers' processes need not list it).
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Writes `data` to `path` atomically: a temporary file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let ctx = || format!("writing {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(ctx(), e))?;
    f.write_all(data).map_err(|e| Error::io(ctx(), e))?;
    f.sync_all().map_err(|e| Error::io(ctx(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(ctx(), e))
}

/// Records what a sandbox being created holds, for clean-up after a crash.
pub fn write_intent(fs: &dyn HostFs, dir: &Path, meta: &SandboxMeta) -> Result<()> {
    let data = serde_json::to_vec_pretty(meta).map_err(|e| Error::Internal(e.to_string()))?;
    fs.write_atomic(&dir.join(INTENT), &data, 0o600)
}

/// Reads the intent record of a pod directory, if any.
pub fn read_intent(fs: &dyn HostFs, dir: &Path) -> Option<SandboxMeta> {
    let data = fs.read(&dir.join(INTENT))?;
    serde_json::from_slice(&data).ok()
}

/// Mounts a fresh tmpfs as the pod's `/dev/shm` at `dir/shm`.
pub fn mount_shm(dir: &Path) -> Result<PathBuf> {
    let shm = dir.join("shm");
    std::fs::DirBuilder::new()
        .mode(0o1777)
        .create(&shm)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| Error::io(format!("creating {}", shm.display()), e))?;
    nix::mount::mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(|e| Error::io(format!("mounting tmpfs on {}", shm.display()), e.into()))?;
    Ok(shm)
}

/// Unmounts the pod's `/dev/shm`; absent or not mounted is fine.
pub fn unmount_shm(shm: &Path) -> Result<()> {
    match nix::mount::umount2(shm, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io(format!("unmounting {}", shm.display()), e.into())),
    }
}

/// Removes a pod directory (after its mounts are gone).
pub fn remove_dir(dir: &Path) -> Result<()> {
    unmount_shm(&dir.join("shm"))?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

/// An idmapped clone of the mount holding `source` at `target` (see
/// [`HostFs::idmapped_bind`]).
pub fn idmapped_bind(source: &Path, userns: &Path, target: &Path) -> Result<bool> {
    let Ok(meta) = std::fs::metadata(source) else {
        return Ok(false);
    };
    let ctx = || {
        format!(
            "idmapped mount of {} at {}",
            source.display(),
            target.display()
        )
    };
    if let Some(parent) = target.parent() {
        create_dir(parent)?;
    }
    if meta.is_dir() {
        std::fs::DirBuilder::new().mode(0o700).create(target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map(|_| ())
    }
    .map_err(|e| Error::io(ctx(), e))?;
    match crius_idmap::bind(source, userns, target) {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_dir(target).or_else(|_| std::fs::remove_file(target));
            // The file system cannot be idmapped (overlayfs, NFS, ...), or
            // the kernel has no idmapped mounts: a plain bind it is.
            let unsupported = [
                libc_errno::EINVAL,
                libc_errno::EPERM,
                libc_errno::ENOSYS,
                libc_errno::EOPNOTSUPP,
            ];
            if e.raw_os_error().is_some_and(|c| unsupported.contains(&c)) {
                tracing::warn!(source = %source.display(), "no idmapped mount here ({e}): a plain bind mount, its files keep their host ids");
                Ok(false)
            } else {
                Err(Error::io(ctx(), e))
            }
        }
    }
}

/// The errno values [`idmapped_bind`] tells apart.
mod libc_errno {
    pub const EPERM: i32 = nix::errno::Errno::EPERM as i32;
    pub const EINVAL: i32 = nix::errno::Errno::EINVAL as i32;
    pub const ENOSYS: i32 = nix::errno::Errno::ENOSYS as i32;
    pub const EOPNOTSUPP: i32 = nix::errno::Errno::EOPNOTSUPP as i32;
}

/// Unmounts each entry of `dir` (mount points crius made) and removes it
/// and `dir`, never recursively: an entry still mounted stays (EBUSY), and
/// nothing beneath a mount is deleted. Absent is fine.
pub fn remove_mount_points(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
            .path();
        match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("unmounting {}", path.display()),
                    e.into(),
                ));
            }
        }
        std::fs::remove_dir(&path)
            .or_else(|_| std::fs::remove_file(&path))
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    }
    std::fs::remove_dir(dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}
