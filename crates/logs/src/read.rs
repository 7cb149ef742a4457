//! Reading a CRI log file: its last records ([`tail`]) and new ones as
//! they are written ([`Follower`], for `crius logs -f`).
//!
//! Only complete lines count: crius writes each record with one `write`,
//! so bytes after the last `\n` are a record being written. Lines that are
//! not records are skipped.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::record::{Record, parse_line_bytes};

const BLOCK: u64 = 64 * 1024;

/// The last `n` records of the log file at `path`, oldest first.
pub fn tail(path: &Path, n: usize) -> Result<Vec<Record>> {
    let mut f = File::open(path).map_err(|e| read_error(path, e))?;
    Ok(tail_file(&mut f, n).map_err(|e| read_error(path, e))?.0)
}

fn read_error(path: &Path, e: io::Error) -> Error {
    Error::io(format!("reading log {}", path.display()), e)
}

/// The last `n` records of `f` and the offset just past the last complete
/// line.
fn tail_file(f: &mut File, n: usize) -> io::Result<(Vec<Record>, u64)> {
    let len = f.metadata()?.len();
    // Blocks read backwards from the end, last first.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut pos = len;
    let mut newlines = 0usize;
    let mut end: Option<u64> = None;
    // n complete lines need n+1 newlines (the one before the first), or the
    // start of the file.
    while pos > 0 && newlines <= n {
        let size = BLOCK.min(pos);
        pos -= size;
        let mut block = vec![0; usize::try_from(size).unwrap_or(0)];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut block)?;
        if end.is_none() {
            end = memchr::memrchr(b'\n', &block).map(|i| pos + i as u64 + 1);
        }
        newlines += memchr::memchr_iter(b'\n', &block).count();
        blocks.push(block);
    }
    let Some(end) = end else {
        return Ok((Vec::new(), 0));
    };
    let mut data = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
    for block in blocks.iter().rev() {
        data.extend_from_slice(block);
    }
    let complete = &data[..usize::try_from(end - pos).unwrap_or(data.len())];
    let mut lines: Vec<&[u8]> = complete
        .strip_suffix(b"\n")
        .unwrap_or(complete)
        .split(|&c| c == b'\n')
        .collect();
    // The first line may have been cut by the block boundary.
    if pos > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    let records = lines[skip..]
        .iter()
        .filter_map(|l| parse_line_bytes(l).map(|r| r.to_record()))
        .collect();
    Ok((records, end))
}

/// Follows a log file as it grows, across kubelet's rotations (the path
/// renamed and a new file opened there): the old file is read to its end,
/// then the new one from its start. Polls: there is no change notification.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: tokio::fs::File,
    id: (u64, u64),
    pos: u64,
    pending: Vec<u8>,
    poll: Duration,
}

impl Follower {
    /// Follows `path` from its current end.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(Self::tail(path, 0).await?.1)
    }

    /// The last `n` records of `path` and a follower that goes on from
    /// there, with nothing missed or repeated in between.
    pub async fn tail(path: &Path, n: usize) -> Result<(Vec<Record>, Self)> {
        let p = path.to_path_buf();
        let (records, file, id, pos) = tokio::task::spawn_blocking(move || {
            let mut f = File::open(&p)?;
            let meta = f.metadata()?;
            let (records, end) = tail_file(&mut f, n)?;
            f.seek(SeekFrom::Start(end))?;
            Ok::<_, io::Error>((records, f, (meta.dev(), meta.ino()), end))
        })
        .await
        .map_err(|e| Error::Internal(format!("tail task: {e}")))?
        .map_err(|e| read_error(path, e))?;
        let follower = Follower {
            path: path.to_path_buf(),
            file: tokio::fs::File::from_std(file),
            id,
            pos,
            pending: Vec::new(),
            poll: Duration::from_millis(100),
        };
        Ok((records, follower))
    }

    /// Checks for new output every `poll` (default 100 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The next record; waits for one to be written. Never ends by itself:
    /// stop calling it when the container has exited and [`Follower::next`]
    /// waits (or race it with a timeout).
    pub async fn next(&mut self) -> Result<Record> {
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.pending) {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                if let Some(r) = parse_line_bytes(&line) {
                    return Ok(r.to_record());
                }
            }
            self.pending.reserve(64 * 1024);
            let n = self
                .file
                .read_buf(&mut self.pending)
                .await
                .map_err(|e| read_error(&self.path, e))?;
            if n > 0 {
                self.pos += n as u64;
                continue;
            }
            // At the end: rotated or truncated?
            match tokio::fs::metadata(&self.path).await {
                Ok(meta) if (meta.dev(), meta.ino()) != self.id => {
                    // Renamed away and replaced; the old file is read to its
                    // end, and an unfinished line there stays unfinished.
                    if let Ok(f) = tokio::fs::File::open(&self.path).await {
                        self.file = f;
                        self.id = (meta.dev(), meta.ino());
                        self.pos = 0;
                        self.pending.clear();
                        continue;
                    }
                }
                Ok(meta) if meta.len() < self.pos => {
                    // Truncated in place (copytruncate): start over.
                    self.file
                        .seek(SeekFrom::Start(0))
                        .await
                        .map_err(|e| read_error(&self.path, e))?;
                    self.pos = 0;
                    self.pending.clear();
                    continue;
                }
                _ => {}
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::record::Stream;

    fn record(i: usize, partial: bool) -> Record {
        Record {
            timestamp: UNIX_EPOCH + Duration::new(1_700_000_000 + i as u64, 0),
            stream: if i % 2 == 1 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            partial,
            content: format!("line {i} {}", "x".repeat(i % 300)),
        }
    }

    #[test]
    fn tail_takes_the_last_complete_records() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("0.log");
        let mut f = File::create(&path).expect("create");
        let all: Vec<Record> = (0..5000).map(|i| record(i, i % 7 == 0)).collect();
        for r in &all {
            f.write_all(r.to_line().as_bytes()).expect("write");
        }
        // A record being written and a line that is not a record.
        f.write_all(b"garbage\n2023-11-14T22:13:20Z stdout F unfinis")
            .expect("write");
        drop(f);
        assert_eq!(tail(&path, 0).expect("tail"), vec![]);
        // "garbage" is the last complete line, skipped.
        assert_eq!(tail(&path, 4).expect("tail"), all[4997..].to_vec());
        for n in [1, 10, 999, 1000, 1001, 4999] {
            assert_eq!(
                tail(&path, n + 1).expect("tail"),
                all[5000 - n..].to_vec(),
                "{n}"
            );
        }
        assert_eq!(tail(&path, 100_000).expect("tail"), all);
        let empty = tmp.path().join("empty.log");
        File::create(&empty).expect("create");
        assert_eq!(tail(&empty, 3).expect("tail"), vec![]);
        assert!(matches!(
            tail(&tmp.path().join("none"), 3),
            Err(Error::Io { .. })
        ));
    }

    #[tokio::test]
    async fn follower_follows_appends_and_rotation() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("0.log");
        let mut f = File::create(&path).expect("create");
        let r = |i| record(i, false);
        for i in 0..3 {
            f.write_all(r(i).to_line().as_bytes()).expect("write");
        }
        // A half-written record at the end is picked up when finished.
        let line3 = r(3).to_line();
        f.write_all(&line3.as_bytes()[..10]).expect("write");
        let (last, mut fol) = Follower::tail(&path, 2).await.expect("tail");
        let mut fol_end = Follower::open(&path).await.expect("open");
        fol = fol.poll_interval(Duration::from_millis(5));
        fol_end = fol_end.poll_interval(Duration::from_millis(5));
        assert_eq!(last, vec![r(1), r(2)]);
        f.write_all(&line3.as_bytes()[10..]).expect("write");
        assert_eq!(fol.next().await.expect("next"), r(3));
        assert_eq!(fol_end.next().await.expect("next"), r(3));
        // Rotation: rename, more to the old file, then a new file.
        std::fs::rename(&path, tmp.path().join("0.log.1")).expect("rename");
        f.write_all(r(4).to_line().as_bytes()).expect("write");
        let mut g = File::create(&path).expect("create");
        g.write_all(r(5).to_line().as_bytes()).expect("write");
        assert_eq!(fol.next().await.expect("next"), r(4));
        assert_eq!(fol.next().await.expect("next"), r(5));
        let timeout = tokio::time::timeout(Duration::from_millis(50), fol.next()).await;
        assert!(timeout.is_err(), "nothing more");
    }
}
