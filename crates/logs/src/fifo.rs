//! The FIFOs the shim writes a container's output into.
//!
//! crius creates them, hands their paths to containerd as the task's stdio,
//! and opens their read ends (non-blocking: see [`crate::start`]) before
//! the task is created; the runc shim opens the write ends.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crius_core::{Error, Result};
use nix::sys::stat::Mode;

/// A container's output FIFOs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fifos {
    /// The directory holding them.
    pub dir: PathBuf,
    /// `<dir>/<id>-stdout`: standard output, or all output with a tty.
    pub stdout: PathBuf,
    /// `<dir>/<id>-stderr`; `None` with a tty (the tty merges the streams).
    pub stderr: Option<PathBuf>,
}

impl Fifos {
    /// The paths [`create_fifos`] uses, without creating anything (to
    /// re-attach to a running container's FIFOs after a daemon restart).
    pub fn paths(dir: &Path, id: &str, tty: bool) -> Result<Fifos> {
        check_id(id)?;
        Ok(Fifos {
            dir: dir.to_path_buf(),
            stdout: dir.join(format!("{id}-stdout")),
            stderr: (!tty).then(|| dir.join(format!("{id}-stderr"))),
        })
    }

    /// The FIFO paths, stdout first.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.stdout.as_path()).chain(self.stderr.as_deref())
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) {
        return Err(Error::invalid(
            "id",
            format!("{id:?} cannot name a FIFO: empty, '.', '..' or contains '/' or NUL"),
        ));
    }
    Ok(())
}

/// Creates `<dir>/<id>-stdout` and, without a tty, `<dir>/<id>-stderr` as
/// FIFOs with mode 0600, creating `dir` (0700) if it is missing. A FIFO
/// that exists already is reused (as containerd's `fifo.OpenFifo` with
/// `O_CREAT` does); any other file there is an error.
pub fn create_fifos(dir: &Path, id: &str, tty: bool) -> Result<Fifos> {
    let fifos = Fifos::paths(dir, id, tty)?;
    make_dir(dir)?;
    for path in fifos.iter() {
        make_fifo(path)?;
    }
    Ok(fifos)
}

/// Creates `<dir>/<id>-stdin` (0600) as [`create_fifos`] creates the
/// others: the stdin FIFO of a process whose input crius writes.
pub fn create_stdin_fifo(dir: &Path, id: &str) -> Result<PathBuf> {
    let path = stdin_fifo_path(dir, id)?;
    make_dir(dir)?;
    make_fifo(&path)?;
    Ok(path)
}

/// The path [`create_stdin_fifo`] uses.
pub fn stdin_fifo_path(dir: &Path, id: &str) -> Result<PathBuf> {
    check_id(id)?;
    Ok(dir.join(format!("{id}-stdin")))
}

fn make_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating FIFO directory {}", dir.display()), e))
}

/// A FIFO at `path`; one there already is reused, any other file refused.
fn make_fifo(path: &Path) -> Result<()> {
    match nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => {
            let meta = std::fs::symlink_metadata(path)
                .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
            if !meta.file_type().is_fifo() {
                return Err(Error::AlreadyExists {
                    what: format!("{} (not a FIFO)", path.display()),
                });
            }
            Ok(())
        }
        Err(errno) => Err(Error::io(
            format!("creating FIFO {}", path.display()),
            io::Error::from(errno),
        )),
    }
}

/// Removes the FIFOs (those already gone are fine). The directory is left:
/// it may hold other containers' FIFOs.
pub fn remove_fifos(fifos: &Fifos) -> Result<()> {
    for path in fifos.iter() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing FIFO {}", path.display()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_reuses_and_removes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("io");
        let f = create_fifos(&dir, "c1", false).expect("create");
        assert_eq!(f.stdout, dir.join("c1-stdout"));
        assert_eq!(f.stderr.as_deref(), Some(dir.join("c1-stderr").as_path()));
        for p in f.iter() {
            let m = std::fs::symlink_metadata(p).expect("stat");
            assert!(m.file_type().is_fifo());
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        // Again: reused.
        assert_eq!(create_fifos(&dir, "c1", false).expect("again"), f);
        remove_fifos(&f).expect("remove");
        remove_fifos(&f).expect("remove twice");
        assert!(!f.stdout.exists());
        assert!(dir.is_dir());
    }

    #[test]
    fn tty_has_no_stderr() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = create_fifos(tmp.path(), "c2", true).expect("create");
        assert_eq!(f.stderr, None);
        assert_eq!(f.iter().count(), 1);
        assert!(!tmp.path().join("c2-stderr").exists());
    }

    #[test]
    fn refuses_bad_ids_and_non_fifos() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for id in ["", ".", "..", "a/b", "a\0b"] {
            assert!(matches!(
                create_fifos(tmp.path(), id, false),
                Err(Error::InvalidArgument { .. })
            ));
        }
        std::fs::write(tmp.path().join("c3-stdout"), b"").expect("write");
        assert!(matches!(
            create_fifos(tmp.path(), "c3", false),
            Err(Error::AlreadyExists { .. })
        ));
    }
}
