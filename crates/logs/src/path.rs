//! Where a container's log file is and how it is opened safely.
//!
//! CRI gives a sandbox's `log_directory` (kubelet's
//! `/var/log/pods/<ns>_<name>_<uid>`, created by kubelet) and a container's
//! `log_path` relative to it (`<container>/<restart>.log`; kubelet creates
//! `<container>/` too; a leading `/` is joined under the directory, as
//! containerd's `filepath.Join` does). Missing directories are created, as
//! containerd does.
//!
//! A log path must not escape the log directory: [`resolve_log_path`]
//! refuses a `..` that climbs out, and the file is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to the log
//! directory, so a symbolic link anywhere below the directory (the file
//! itself or a directory on the way) is refused, not followed, with no race
//! between a check and the open. Where `openat2` is missing (Linux < 5.6,
//! or a seccomp filter refusing it) the path is walked one component at a
//! time with `openat(O_NOFOLLOW)` from the directory's descriptor, which is
//! just as race-free. The log directory itself is trusted (it comes from
//! kubelet, not from the pod). The file must be a regular file (a FIFO or
//! device planted at the path is refused, without blocking).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crius_core::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

/// The log file's mode (before the umask), as containerd creates it.
pub const LOG_FILE_MODE: u32 = 0o640;
/// The mode of log directories crius creates (before the umask), as
/// containerd creates them.
pub const LOG_DIR_MODE: u32 = 0o755;

/// `log_dir/log_path` once `log_path` is shown to stay inside `log_dir`:
/// joined as containerd joins them (Go's `filepath.Join`: a leading `/` is
/// joined under `log_dir`, `.` dropped, `..` resolved), not empty, not
/// climbing out, naming a file.
pub fn resolve_log_path(log_dir: &Path, log_path: &str) -> Result<PathBuf> {
    Ok(log_dir.join(relative(log_path)?))
}

/// `log_path` as normal components only, by core's rule
/// ([`crius_core::container::log_path_beneath`]): refused when it holds NUL
/// (impossible), names a directory (impossible: the open would fail with
/// EISDIR) or climbs out of the log directory with `..` (security: criusd
/// would write as root wherever the client points).
fn relative(log_path: &str) -> Result<PathBuf> {
    // impossible: an empty log path names no file (callers treat it as
    // "no log" before getting here).
    if log_path.is_empty() {
        return Err(Error::invalid("log_path", "\"\" is empty"));
    }
    match crius_core::container::log_path_beneath(log_path) {
        Ok(rel) => Ok(PathBuf::from(rel)),
        Err(reason) => Err(Error::invalid("log_path", reason)),
    }
}

/// A log file to open: `rel` (normal components only) below `dir`.
#[derive(Clone, Debug)]
pub(crate) struct LogTarget {
    dir: PathBuf,
    rel: PathBuf,
    /// Output is read and dropped (`/dev/null`).
    discard: bool,
}

impl LogTarget {
    /// `log_path` below `log_dir`, checked by [`resolve_log_path`]'s rules.
    pub(crate) fn beneath(log_dir: &Path, log_path: &str) -> Result<Self> {
        Ok(LogTarget {
            dir: log_dir.to_path_buf(),
            rel: relative(log_path)?,
            discard: false,
        })
    }

    /// No file: what is written is dropped.
    pub(crate) fn discard() -> Self {
        LogTarget {
            dir: PathBuf::from("/dev"),
            rel: PathBuf::from("null"),
            discard: true,
        }
    }

    /// The file at `path`, its directory trusted: only the last component
    /// is checked (not a symbolic link).
    pub(crate) fn file(path: &Path) -> Result<Self> {
        let invalid = |reason: &str| {
            Err(Error::invalid(
                "log_path",
                format!("{} {reason}", path.display()),
            ))
        };
        let Some(name) = path.file_name() else {
            return invalid("names no file");
        };
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return invalid("names a directory");
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(LogTarget {
            dir,
            rel: PathBuf::from(name),
            discard: false,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.rel)
    }

    /// Opens (creating it if missing) the file for appending.
    pub(crate) fn open(&self) -> Result<File> {
        if self.discard {
            return File::options()
                .write(true)
                .open("/dev/null")
                .map_err(|e| Error::io("opening /dev/null", e));
        }
        let dirfd = self.open_dir()?;
        if let Some(parent) = self.rel.parent() {
            make_dirs_beneath(&dirfd, parent).map_err(|e| self.open_error(e))?;
        }
        let fd = match open_beneath(&dirfd, &self.rel) {
            Err(Errno::ENOSYS | Errno::EPERM) => walk_beneath(&dirfd, &self.rel),
            r => r,
        }
        .map_err(|e| self.open_error(e))?;
        check_regular(&fd).map_err(|e| self.open_error(e))?;
        // O_NONBLOCK only guarded the open against a planted FIFO.
        let flags =
            fcntl::fcntl(&fd, fcntl::F_GETFL).map_err(|e| self.io_error("reading flags of", e))?;
        let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
        fcntl::fcntl(&fd, fcntl::F_SETFL(flags))
            .map_err(|e| self.io_error("setting flags of", e))?;
        Ok(File::from(fd))
    }

    /// The log directory, created (0755) when missing, as containerd does:
    /// kubelet creates it first, other clients rely on the runtime.
    fn open_dir(&self) -> Result<OwnedFd> {
        let open = || {
            fcntl::open(
                &self.dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        };
        match open() {
            Err(Errno::ENOENT) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(LOG_DIR_MODE)
                    .create(&self.dir)
                    .map_err(|e| {
                        Error::io(
                            format!("creating the log directory {}", self.dir.display()),
                            e,
                        )
                    })?;
                open()
            }
            r => r,
        }
        .map_err(|e| self.io_error("opening the log directory of", e))
    }

    fn io_error(&self, what: &str, errno: Errno) -> Error {
        Error::io(
            format!("{what} log file {}", self.path().display()),
            io::Error::from(errno),
        )
    }

    /// security: a symbolic link anywhere below the log directory (the
    /// classic log-symlink attack through a hostPath on /var/log; containerd
    /// follows it and is exposed), a path escaping it, and anything but a
    /// regular file (a planted FIFO would block the copy, a device would
    /// take the output) are refused; ENOTDIR is impossible to write to.
    fn open_error(&self, errno: Errno) -> Error {
        let reason = match errno {
            Errno::ELOOP => "is or goes through a symbolic link",
            Errno::EXDEV => "escapes the log directory",
            Errno::ENOTDIR => "goes through something that is not a directory",
            Errno::ENXIO | Errno::EISDIR | Errno::EINVAL => "is not a regular file",
            _ => return self.io_error("opening", errno),
        };
        Error::invalid("log_path", format!("{} {reason}", self.path().display()))
    }
}

const FILE_FLAGS: OFlag = OFlag::O_WRONLY
    .union(OFlag::O_APPEND)
    .union(OFlag::O_CREAT)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

fn file_mode() -> Mode {
    Mode::from_bits_truncate(LOG_FILE_MODE)
}

fn open_beneath(dirfd: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new().flags(FILE_FLAGS).mode(file_mode()).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let mut tries = 0;
    loop {
        match fcntl::openat2(dirfd, rel, how) {
            // A concurrent rename may make the kernel unsure; retry.
            Err(Errno::EAGAIN) if tries < 8 => tries += 1,
            r => return r,
        }
    }
}

/// The fallback of [`open_beneath`]: each directory opened with
/// `O_NOFOLLOW` relative to the previous one, so no symbolic link is ever
/// followed (`rel` holds normal components only, so it cannot climb out).
pub(crate) fn walk_beneath(dirfd: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let parts: Vec<&OsStr> = rel.iter().collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Errno::EINVAL);
    };
    let mut cur: Option<OwnedFd> = None;
    for part in dirs {
        let next = fcntl::openat(
            cur.as_ref().unwrap_or(dirfd),
            *part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        cur = Some(next);
    }
    fcntl::openat(
        cur.as_ref().unwrap_or(dirfd),
        *last,
        FILE_FLAGS,
        file_mode(),
    )
}

/// Creates the directories of `rel` (normal components only) below
/// `dirfd` that are missing, 0755, never following a symbolic link: each
/// is opened with `O_NOFOLLOW` relative to the previous one.
fn make_dirs_beneath(dirfd: &OwnedFd, rel: &Path) -> nix::Result<()> {
    let mut cur: Option<OwnedFd> = None;
    for part in rel.iter() {
        let at = cur.as_ref().unwrap_or(dirfd);
        match nix::sys::stat::mkdirat(at, part, Mode::from_bits_truncate(LOG_DIR_MODE)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let next = fcntl::openat(
            at,
            part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        cur = Some(next);
    }
    Ok(())
}

fn check_regular(fd: &OwnedFd) -> nix::Result<()> {
    let st = nix::sys::stat::fstat(fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    #[test]
    fn resolves_relative_paths() {
        let dir = Path::new("/var/log/pods/ns_pod_uid");
        assert_eq!(
            resolve_log_path(dir, "app/0.log").expect("ok"),
            dir.join("app/0.log")
        );
        assert_eq!(
            resolve_log_path(dir, "./app/./0.log").expect("ok"),
            dir.join("app/0.log")
        );
        assert_eq!(
            resolve_log_path(dir, "0.log").expect("ok"),
            dir.join("0.log")
        );
        // containerd's filepath.Join: an absolute log path lands below.
        for (path, rel) in [
            ("/abs.log", "abs.log"),
            ("/app/0.log", "app/0.log"),
            ("app/../0.log", "0.log"),
        ] {
            assert_eq!(
                resolve_log_path(dir, path).expect("ok"),
                dir.join(rel),
                "{path}"
            );
        }
    }

    #[test]
    fn refuses_escapes() {
        let dir = Path::new("/var/log/pods/ns_pod_uid");
        for bad in [
            "",
            ".",
            "./",
            "/",
            "/../etc/passwd",
            "../x.log",
            "app/../../x.log",
            "app/",
            "app/..",
            "a\0b",
        ] {
            match resolve_log_path(dir, bad) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "log_path"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn opens_and_creates_the_file_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("app")).expect("mkdir");
        let t = LogTarget::beneath(tmp.path(), "app/0.log").expect("target");
        t.open().expect("open");
        let meta = std::fs::metadata(tmp.path().join("app/0.log")).expect("stat");
        assert!(meta.is_file());
        assert_eq!(
            meta.permissions().mode() & 0o777 & !0o022,
            LOG_FILE_MODE & !0o022
        );
        // Missing directories are created, the log directory itself too
        // (as containerd does).
        let dir = tmp.path().join("pods/ns_pod_uid");
        let t = LogTarget::beneath(&dir, "other/a/0.log").expect("target");
        t.open().expect("open");
        assert!(dir.join("other/a/0.log").is_file());
        // An absolute log path is joined below the directory.
        let t = LogTarget::beneath(&dir, "/abs/1.log").expect("target");
        assert_eq!(t.path(), dir.join("abs/1.log"));
        t.open().expect("open");
        assert!(dir.join("abs/1.log").is_file());
        for d in [dir.clone(), dir.join("other"), dir.join("other/a")] {
            let mode = std::fs::metadata(&d).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777 & !0o022, LOG_DIR_MODE & !0o022, "{d:?}");
        }
    }

    fn assert_refused(r: Result<File>) {
        match r {
            Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "log_path"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn refuses_symlinks_anywhere() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        std::fs::create_dir(tmp.path().join("app")).expect("mkdir");
        // The file itself is a link.
        symlink(&victim, tmp.path().join("app/0.log")).expect("symlink");
        assert_refused(
            LogTarget::beneath(tmp.path(), "app/0.log")
                .expect("t")
                .open(),
        );
        assert_refused(
            LogTarget::file(&tmp.path().join("app/0.log"))
                .expect("t")
                .open(),
        );
        // A directory on the way is a link (to outside, or even inside).
        symlink(outside.path(), tmp.path().join("out")).expect("symlink");
        symlink(tmp.path().join("app"), tmp.path().join("app2")).expect("symlink");
        assert_refused(
            LogTarget::beneath(tmp.path(), "out/new.log")
                .expect("t")
                .open(),
        );
        assert_refused(
            LogTarget::beneath(tmp.path(), "app2/new.log")
                .expect("t")
                .open(),
        );
        // Creating missing directories never goes through a link either.
        assert_refused(
            LogTarget::beneath(tmp.path(), "out/sub/new.log")
                .expect("t")
                .open(),
        );
        assert!(!outside.path().join("sub").exists());
        // The same through the fallback walk.
        let dirfd = fcntl::open(
            tmp.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("dir");
        // O_NOFOLLOW gives ELOOP for the file, ENOTDIR (with O_DIRECTORY)
        // for a directory on the way.
        for (rel, errno) in [
            ("app/0.log", Errno::ELOOP),
            ("out/new.log", Errno::ENOTDIR),
            ("app2/new.log", Errno::ENOTDIR),
        ] {
            assert_eq!(
                walk_beneath(&dirfd, Path::new(rel)).err(),
                Some(errno),
                "{rel}"
            );
        }
        assert!(walk_beneath(&dirfd, Path::new("app/1.log")).is_ok());
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert!(!outside.path().join("new.log").exists());
    }

    #[test]
    fn refuses_fifos_and_directories_without_blocking() {
        let tmp = tempfile::tempdir().expect("tempdir");
        nix::unistd::mkfifo(&tmp.path().join("f.log"), Mode::S_IRUSR | Mode::S_IWUSR)
            .expect("mkfifo");
        assert_refused(LogTarget::beneath(tmp.path(), "f.log").expect("t").open());
        std::fs::create_dir(tmp.path().join("d.log")).expect("mkdir");
        assert_refused(LogTarget::beneath(tmp.path(), "d.log").expect("t").open());
    }
}
