//! The files of a checkpoint on the host: copies into its directory, and
//! the directory as one tar archive where the client asked for it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crius_core::{Error, Result};

/// Copies `from` into a new file `to` (0600); `Ok(false)` when `from` is
/// absent.
pub(crate) fn copy_file(from: &Path, to: &Path) -> Result<bool> {
    let mut src = match File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading {}", from.display()), e)),
    };
    let ctx = || format!("copying {} to {}", from.display(), to.display());
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| Error::io(ctx(), e))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| Error::io(ctx(), e))?;
    Ok(true)
}

/// Writes the tree `dir` as an uncompressed tar to `dest`, entries named
/// relative to `dir` (`checkpoint/…`, `config.dump`, as containerd and
/// CRI-O name them); all or nothing. Returns the archive's size.
pub(crate) fn write_archive(dir: &Path, dest: &Path) -> Result<u64> {
    let ctx = || format!("writing the archive {}", dest.display());
    if let Some(parent) = dest.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(ctx(), e))?;
    }
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.{}.crius-tmp", crate::sandbox::random_id()));
    let written = write_tar(dir, &tmp).and_then(|size| {
        std::fs::rename(&tmp, dest).map_err(|e| Error::io(ctx(), e))?;
        Ok(size)
    });
    if written.is_err() {
        // What is left of a failed write is nobody's.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_tar(dir: &Path, tmp: &Path) -> Result<u64> {
    let ctx = || format!("writing {}", tmp.display());
    // A new file of crius' own: never one planted there (nor a link).
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| Error::io(ctx(), e))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all("", dir)
        .map_err(|e| Error::io(ctx(), e))?;
    let mut out = tar.into_inner().map_err(|e| Error::io(ctx(), e))?;
    out.flush().map_err(|e| Error::io(ctx(), e))?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io(ctx(), e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(ctx(), e))?;
    let size = file.metadata().map_err(|e| Error::io(ctx(), e))?.len();
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_names_its_entries_relative_to_the_directory()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("cp");
        std::fs::create_dir_all(dir.join("checkpoint"))?;
        std::fs::write(dir.join("checkpoint/inventory.img"), b"criu")?;
        std::fs::write(dir.join("config.dump"), b"{}")?;
        let dest = tmp.path().join("out/sub/archive.tar");
        let size = write_archive(&dir, &dest)?;
        assert_eq!(size, std::fs::metadata(&dest)?.len());
        let mut names = vec![];
        for entry in tar::Archive::new(File::open(&dest)?).entries()? {
            names.push(entry?.path()?.display().to_string());
        }
        names.sort();
        assert_eq!(
            names,
            ["checkpoint", "checkpoint/inventory.img", "config.dump"]
        );
        // No temporary file is left beside it.
        let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap_or(tmp.path()))?.collect();
        assert_eq!(left.len(), 1);
        Ok(())
    }

    #[test]
    fn a_failed_archive_leaves_nothing() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dest = tmp.path().join("archive.tar");
        assert!(write_archive(&tmp.path().join("missing"), &dest).is_err());
        assert_eq!(std::fs::read_dir(tmp.path())?.count(), 0);
        Ok(())
    }

    #[test]
    fn a_missing_source_is_not_copied() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let to = tmp.path().join("to");
        assert!(!copy_file(&tmp.path().join("absent"), &to)?);
        std::fs::write(tmp.path().join("from"), b"log")?;
        assert!(copy_file(&tmp.path().join("from"), &to)?);
        assert_eq!(std::fs::read(&to)?, b"log");
        Ok(())
    }
}
