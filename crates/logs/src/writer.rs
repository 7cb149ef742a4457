//! Copying a container's output from its FIFOs into its log file.
//!
//! One reader task per stream reads the FIFO, cuts what it read into
//! records (as containerd does, see `split.rs`) and queues them; one writer task owns the log
//! file, stamps what it takes off the queue and appends it, so records of
//! the two streams never interleave inside a record, and a reopen (after
//! kubelet rotated the file) happens between two writes.
//!
//! Backpressure: the queue is bounded (`QUEUE_BATCHES` reads' worth of
//! output, both streams together). While the log file is slower than the
//! container, the readers keep reading into the queue; when it is full, a
//! reader waits for room (holding no lock, its read finished), so the pipe
//! fills and the container's writes eventually block. This is containerd's
//! behaviour: no output is dropped because the disk is slow. Output is
//! dropped only when writing fails (disk full, I/O error): like containerd,
//! the writer then goes on draining the pipes so the container never blocks
//! on a broken log, and [`LogHandle::wait`] reports the loss. A write that
//! failed half-way may leave a torn record; the next write after a failure
//! starts with a `\n`, so the torn bytes stay a line of their own, which
//! kubelet (and [`crate::tail`]) skip as not a record.
//!
//! Live output ([`LogHandle::subscribe`], for attached clients): each read
//! is also offered, as read, to a bounded broadcast (`FANOUT_CHUNKS`
//! reads). Sending never waits: a subscriber that falls that far behind
//! loses the oldest chunks (and learns how many), so an attached client can
//! never hold back the log or the container. With no subscriber nothing is
//! copied.
//!
//! Timestamps are taken by the writer when it takes records off the queue
//! (one per write), so they never decrease along the file (unless the
//! system clock is stepped back); with an empty queue that is when the
//! bytes were read.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crius_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::fifo::Fifos;
use crate::path::LogTarget;
use crate::record::{Stream, encode};
use crate::split::{Piece, split};
use crate::timestamp::{TIMESTAMP_LEN, write_timestamp};

/// The default longest record content, as containerd's
/// `max_container_log_line_size` (16 KiB); longer lines are split into
/// `P` records.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// How much one read of a FIFO may take.
const READ_CHUNK: usize = 64 * 1024;
/// Reads queued for the writer, both streams together: with full reads,
/// about 1 MiB of output per container.
const QUEUE_BATCHES: usize = 16;
/// The writer joins queued reads into one write up to this size.
const WRITE_COALESCE: usize = 1 << 20;

/// Reads of the FIFOs kept for subscribers that lag behind (at most
/// `FANOUT_CHUNKS` × 64 KiB per container, only while someone subscribes).
const FANOUT_CHUNKS: usize = 64;

/// One read of a container's output, as subscribers get it.
pub type Chunk = (Stream, Arc<[u8]>);

/// Records cut from one read of a stream.
struct Batch {
    stream: Stream,
    data: Vec<u8>,
    pieces: Vec<Piece>,
}

type ReopenReply = oneshot::Sender<Result<()>>;

/// Where and how a container's output is logged; [`LogWriter::start`]
/// starts copying. [`start`] is the short way.
#[derive(Clone, Debug)]
pub struct LogWriter {
    target: LogTarget,
    max_line: usize,
    /// Tests: how long each write of the log file takes at least.
    #[cfg(test)]
    write_delay: std::time::Duration,
}

impl LogWriter {
    /// Logs to `log_path`. Its directory is trusted (created if missing); the
    /// file is created if missing and refused if it is a symbolic link or
    /// not a regular file.
    pub fn new(log_path: &Path) -> Result<Self> {
        Ok(LogWriter {
            target: LogTarget::file(log_path)?,
            max_line: DEFAULT_MAX_LINE,
            #[cfg(test)]
            write_delay: std::time::Duration::ZERO,
        })
    }

    /// Logs nowhere: the output is read (so the container never blocks on
    /// a full pipe) and dropped.
    pub fn discard() -> Self {
        LogWriter {
            target: LogTarget::discard(),
            max_line: DEFAULT_MAX_LINE,
            #[cfg(test)]
            write_delay: std::time::Duration::ZERO,
        }
    }

    /// Logs to `log_path` below the sandbox's `log_dir`, as CRI gives them:
    /// checked as [`crate::resolve_log_path`] does, and opened so that no
    /// symbolic link below `log_dir` is followed (see [`crate::path`]).
    pub fn beneath(log_dir: &Path, log_path: &str) -> Result<Self> {
        Ok(LogWriter {
            target: LogTarget::beneath(log_dir, log_path)?,
            max_line: DEFAULT_MAX_LINE,
            #[cfg(test)]
            write_delay: std::time::Duration::ZERO,
        })
    }

    /// Splits lines longer than `max_line` bytes into `P` records (default
    /// [`DEFAULT_MAX_LINE`]). It must be positive: an unbounded line would
    /// let a container make the daemon buffer without limit.
    pub fn max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// The log file's path.
    pub fn log_path(&self) -> PathBuf {
        self.target.path()
    }

    /// Opens the log file and the read ends of `fifos` (non-blocking, so
    /// this returns at once and the shim's open of the write ends will not
    /// block: create the task after this), and starts copying. Must be
    /// called inside a tokio runtime. Also re-attaches to the FIFOs of a
    /// running container (after a daemon restart): the file is appended to.
    pub fn start(&self, fifos: &Fifos) -> Result<LogHandle> {
        self.check()?;
        let file = self.target.open()?;
        let open = |path: &Path| {
            pipe::OpenOptions::new()
                .open_receiver(path)
                .map_err(|e| Error::io(format!("opening FIFO {}", path.display()), e))
        };
        let stdout = open(&fifos.stdout)?;
        let stderr = fifos.stderr.as_deref().map(open).transpose()?;
        Ok(self.spawn(file, stdout, stderr))
    }

    /// Like [`LogWriter::start`], copying from any readers (an exec's or
    /// attach's pipes, tests): EOF on both ends the copy.
    pub fn start_from<R>(&self, stdout: R, stderr: Option<R>) -> Result<LogHandle>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        self.check()?;
        let file = self.target.open()?;
        Ok(self.spawn(file, stdout, stderr))
    }

    fn check(&self) -> Result<()> {
        if self.max_line == 0 {
            return Err(Error::invalid("max_line", "must be positive"));
        }
        tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Internal("crius-logs started outside a tokio runtime".into()))?;
        Ok(())
    }

    fn spawn<R>(&self, file: File, stdout: R, stderr: Option<R>) -> LogHandle
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let path = self.target.path();
        let (data_tx, data_rx) = mpsc::channel(QUEUE_BATCHES);
        let (ctl_tx, ctl_rx) = mpsc::channel(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let open_streams = Arc::new(AtomicUsize::new(1 + usize::from(stderr.is_some())));
        // Held by the readers only: it closes when both have ended.
        let (fanout, _) = broadcast::channel(FANOUT_CHUNKS);
        let readers =
            std::iter::once((Stream::Stdout, stdout)).chain(stderr.map(|r| (Stream::Stderr, r)));
        for (stream, r) in readers {
            tokio::spawn(read_stream(
                stream,
                r,
                self.max_line,
                Outlets {
                    queue: data_tx.clone(),
                    fanout: fanout.clone(),
                },
                stop_rx.clone(),
                open_streams.clone(),
            ));
        }
        drop(data_tx);
        let live = fanout.downgrade();
        drop(fanout);
        #[cfg(test)]
        let delay = self.write_delay;
        #[cfg(not(test))]
        let delay = std::time::Duration::ZERO;
        let (finished_tx, finished) = watch::channel(false);
        let target = self.target.clone();
        let log_path = path.clone();
        let writer = tokio::spawn(async move {
            let r = write_loop(file, target, log_path, data_rx, ctl_rx, delay).await;
            finished_tx.send_replace(true);
            r
        });
        LogHandle {
            path,
            live,
            ctl: ctl_tx,
            stop: stop_tx,
            open_streams,
            writer,
            finished,
        }
    }
}

/// Starts copying the output in `fifos` into `log_path`, splitting lines
/// longer than `max_line` ([`DEFAULT_MAX_LINE`] as containerd): see
/// [`LogWriter::start`].
pub fn start(fifos: &Fifos, log_path: &Path, max_line: usize) -> Result<LogHandle> {
    LogWriter::new(log_path)?.max_line(max_line).start(fifos)
}

/// A running copy of a container's output into its log file. Dropping it
/// does not stop the copy (it ends at EOF); it only gives up
/// [`LogHandle::reopen`] and [`LogHandle::wait`].
#[derive(Debug)]
pub struct LogHandle {
    path: PathBuf,
    /// The live output's broadcast, while a reader runs.
    live: broadcast::WeakSender<Chunk>,
    ctl: mpsc::Sender<ReopenReply>,
    stop: watch::Sender<bool>,
    open_streams: Arc<AtomicUsize>,
    writer: JoinHandle<Result<()>>,
    /// Turns true when the writer has finished.
    finished: watch::Receiver<bool>,
}

impl LogHandle {
    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.path
    }

    /// Whether a stream is still open, i.e. the container may still write.
    pub fn is_running(&self) -> bool {
        self.open_streams.load(Ordering::SeqCst) > 0
    }

    /// ReopenContainerLog: closes the log file and opens its path again
    /// (kubelet renamed it to rotate it). Every record goes whole either to
    /// the old file or to the new one, none is lost. If the new file cannot
    /// be opened the old one stays in use and the error is returned.
    /// [`Error::FailedPrecondition`] once the container's streams are
    /// closed (it is not running).
    pub async fn reopen(&self) -> Result<()> {
        let not_running = || {
            Error::FailedPrecondition(format!(
                "container is not running: cannot reopen its log {}",
                self.path.display()
            ))
        };
        if !self.is_running() {
            return Err(not_running());
        }
        let (tx, rx) = oneshot::channel();
        self.ctl.send(tx).await.map_err(|_| not_running())?;
        rx.await.map_err(|_| not_running())?
    }

    /// The container's output from now on, as it is read (see the
    /// [module docs](self)): ends when the copy does.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.live.upgrade().map(|tx| tx.subscribe()),
            lost: 0,
        }
    }

    /// Stops reading the FIFOs (for a container whose task was never
    /// created, so they will never see EOF): what was read is still
    /// written, bytes of an unfinished line as a `P` record.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves when the copy has finished as [`LogHandle::wait`] says,
    /// without giving up the handle (its result is only in `wait`).
    pub async fn done(&self) {
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|f| *f).await;
    }

    /// Resolves when both streams hit EOF (the container exited and the
    /// shim closed the FIFOs) or [`LogHandle::stop`] was called, and all
    /// their output is in the log file. An error if some of it could not be
    /// written.
    pub async fn wait(self) -> Result<()> {
        let LogHandle { writer, .. } = self;
        writer
            .await
            .map_err(|e| Error::Internal(format!("log writer task failed: {e}")))?
    }
}

/// A subscription to a container's live output ([`LogHandle::subscribe`]).
#[derive(Debug)]
pub struct Subscription {
    rx: Option<broadcast::Receiver<Chunk>>,
    lost: u64,
}

impl Subscription {
    /// The next chunk; `None` once the output has ended (the container's
    /// streams closed). Chunks this subscriber fell too far behind for are
    /// skipped and counted ([`Subscription::lost`]).
    pub async fn next(&mut self) -> Option<Chunk> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok(chunk) => return Some(chunk),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lost += n,
                Err(broadcast::error::RecvError::Closed) => {
                    self.rx = None;
                    return None;
                }
            }
        }
    }

    /// How many chunks were skipped because this subscriber lagged.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// Where a reader puts what it read: the writer's queue, the subscribers.
struct Outlets {
    queue: mpsc::Sender<Batch>,
    fanout: broadcast::Sender<Chunk>,
}

async fn read_stream<R>(
    stream: Stream,
    mut r: R,
    max_line: usize,
    out: Outlets,
    mut stop: watch::Receiver<bool>,
    open_streams: Arc<AtomicUsize>,
) where
    R: AsyncRead + Unpin,
{
    // Grows to READ_CHUNK + max_line at most (split leaves <= max_line).
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK + max_line.min(READ_CHUNK));
    // Bytes at the start of `buf` known to hold no '\n'.
    let mut clean = 0;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        let before = buf.len();
        let read = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            // Cancel safe: nothing is lost if the stop wins.
            read = r.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {
                if out.fanout.receiver_count() > 0 {
                    // Never waits: a lagging subscriber loses the oldest.
                    let _ = out.fanout.send((stream, Arc::from(&buf[before..])));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "reading container output failed; treated as EOF");
                break;
            }
        }
        let mut pieces = Vec::new();
        let rest = split(&buf, max_line, clean, &mut pieces);
        if pieces.is_empty() {
            clean = buf.len();
            continue;
        }
        let data = buf[..rest].to_vec();
        buf.drain(..rest);
        clean = buf.len();
        if out
            .queue
            .send(Batch {
                stream,
                data,
                pieces,
            })
            .await
            .is_err()
        {
            // The writer is gone; cannot happen while a sender lives.
            break;
        }
    }
    if !buf.is_empty() {
        let pieces = vec![Piece {
            partial: true,
            range: 0..buf.len(),
        }];
        let _ = out
            .queue
            .send(Batch {
                stream,
                data: buf,
                pieces,
            })
            .await;
    }
    open_streams.fetch_sub(1, Ordering::SeqCst);
}

/// Resolves once [`LogHandle::stop`] is called; never if the handle is
/// dropped without it.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Appends `batch`'s records to `out`; returns how many.
fn encode_batch(out: &mut Vec<u8>, ts: &[u8], batch: &Batch) -> u64 {
    for p in &batch.pieces {
        encode(
            out,
            ts,
            batch.stream,
            p.partial,
            &batch.data[p.range.clone()],
        );
    }
    batch.pieces.len() as u64
}

async fn write_loop(
    file: File,
    target: LogTarget,
    path: PathBuf,
    mut data: mpsc::Receiver<Batch>,
    mut ctl: mpsc::Receiver<ReopenReply>,
    delay: std::time::Duration,
) -> Result<()> {
    let mut file = Arc::new(file);
    let mut out: Vec<u8> = Vec::new();
    let mut ts: Vec<u8> = Vec::with_capacity(TIMESTAMP_LEN);
    // The first write error, and the records lost since.
    let mut failed: Option<io::Error> = None;
    let mut lost: u64 = 0;
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            Some(reply) = ctl.recv() => {
                let t = target.clone();
                let opened = tokio::task::spawn_blocking(move || t.open())
                    .await
                    .unwrap_or_else(|e| Err(Error::Internal(format!("reopening log: {e}"))));
                let answer = opened.map(|f| {
                    file = Arc::new(f);
                    failing = false;
                    tracing::debug!(path = %path.display(), "reopened container log");
                });
                let _ = reply.send(answer);
            }
            batch = data.recv() => {
                let Some(batch) = batch else { break };
                out.clear();
                if failing {
                    // End whatever the failed write left of a record.
                    out.push(b'\n');
                }
                ts.clear();
                write_timestamp(SystemTime::now(), &mut ts);
                let mut records = encode_batch(&mut out, &ts, &batch);
                while out.len() < WRITE_COALESCE {
                    let Ok(batch) = data.try_recv() else { break };
                    records += encode_batch(&mut out, &ts, &batch);
                }
                let f = file.clone();
                let buf = std::mem::take(&mut out);
                let (written, buf) = tokio::task::spawn_blocking(move || {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let r = (&*f).write_all(&buf);
                    (r, buf)
                })
                .await
                .map_err(|e| Error::Internal(format!("writing log {}: {e}", path.display())))?;
                out = buf;
                match written {
                    Ok(()) => failing = false,
                    Err(e) => {
                        // Keep draining the pipes so the container does not
                        // block on a broken log.
                        lost += records;
                        if !failing {
                            tracing::warn!(path = %path.display(), error = %e,
                                "writing container log failed; dropping output until it works again");
                            failing = true;
                        }
                        failed.get_or_insert(e);
                    }
                }
            }
        }
    }
    match failed {
        None => Ok(()),
        Some(e) => Err(Error::io(
            format!("writing log {}: {lost} records lost", path.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::fifo::create_fifos;
    use crate::record::parse_line_bytes;

    /// A log file far slower than the container: the queue stays bounded,
    /// the container is held back (its writes block), and nothing is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_log_file_holds_the_container_back_without_loss() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fifos = create_fifos(tmp.path(), "slow", true).expect("fifos");
        let mut w = LogWriter::new(&tmp.path().join("0.log")).expect("writer");
        w.write_delay = Duration::from_millis(40);
        let handle = w.start(&fifos).expect("start");
        let lines = 200_000usize;
        let path = fifos.stdout.clone();
        let producer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open fifo");
            let started = Instant::now();
            let mut data = Vec::new();
            for i in 0..lines {
                writeln!(data, "line {i:08} {}", "z".repeat(i % 64)).expect("format");
            }
            for chunk in data.chunks(1 << 16) {
                f.write_all(chunk).expect("write");
            }
            (data.len(), started.elapsed())
        });
        handle.wait().await.expect("wait");
        let (bytes, took) = producer.join().expect("producer");
        // ~9 MB through a queue of ~1 MiB at one write per 40 ms: the
        // producer must have waited for several writes.
        assert!(
            took >= Duration::from_millis(200),
            "producer never blocked: {took:?}"
        );
        let log = std::fs::read(tmp.path().join("0.log")).expect("read");
        let mut n = 0;
        let mut content = 0;
        for l in log.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let r = parse_line_bytes(l).expect("record");
            assert!(!r.partial);
            assert_eq!(
                r.content,
                format!("line {n:08} {}", "z".repeat(n % 64)).as_bytes()
            );
            content += r.content.len() + 1;
            n += 1;
        }
        assert_eq!((n, content), (lines, bytes));
    }

    /// Subscribers get the output as read; one that never reads loses the
    /// oldest chunks but holds back neither the log nor the container, and
    /// every subscription ends with the output.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribers_get_live_output_and_a_stalled_one_never_blocks_the_log() {
        use tokio::io::AsyncWriteExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut out_w, out_r) = tokio::io::duplex(1 << 16);
        let w = LogWriter::new(&tmp.path().join("0.log")).expect("writer");
        let handle = w.start_from(out_r, None).expect("start");
        let mut live = handle.subscribe();
        let mut stalled = handle.subscribe();
        out_w.write_all(b"hello\n").await.expect("write");
        let (stream, data) = live.next().await.expect("a chunk");
        assert_eq!((stream, &data[..]), (Stream::Stdout, &b"hello\n"[..]));
        // Far more reads than the broadcast keeps, nobody reading `stalled`.
        let line = format!("{}\n", "x".repeat(1000));
        let lines = 2000;
        let writer = tokio::spawn(async move {
            for _ in 0..lines {
                out_w.write_all(line.as_bytes()).await.expect("write");
                out_w.flush().await.expect("flush");
                tokio::task::yield_now().await;
            }
        });
        let mut got = 0usize;
        while let Some((_, data)) = live.next().await {
            got += data.len();
            if got >= 1000 {
                break;
            }
        }
        tokio::time::timeout(Duration::from_secs(20), writer)
            .await
            .expect("the producer never blocked on a stalled subscriber")
            .expect("join");
        tokio::time::timeout(Duration::from_secs(20), handle.done())
            .await
            .expect("the copy ends");
        let mut seen = 0usize;
        while let Some((_, data)) = stalled.next().await {
            seen += data.len();
        }
        assert!(stalled.lost() > 0, "the stalled subscriber lost chunks");
        assert!(seen < lines * 1001, "{seen}");
        assert!(handle.subscribe().next().await.is_none(), "ended");
        let log = std::fs::read(tmp.path().join("0.log")).expect("read");
        let records = log.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(records, lines + 1, "the log got everything");
    }

    /// Writes failing (disk full): the writer keeps draining the queue, so
    /// the readers (and the container) never block, and reports the loss.
    #[tokio::test]
    async fn failing_writes_drain_and_report() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let target = LogTarget::file(Path::new("/dev/full")).expect("target");
        let (tx, rx) = mpsc::channel(1);
        let (_ctl_tx, ctl_rx) = mpsc::channel(1);
        let writer = tokio::spawn(write_loop(
            full,
            target,
            PathBuf::from("/dev/full"),
            rx,
            ctl_rx,
            Duration::ZERO,
        ));
        for _ in 0..100 {
            let batch = Batch {
                stream: Stream::Stdout,
                data: b"ab".to_vec(),
                pieces: vec![
                    Piece {
                        partial: false,
                        range: 0..1,
                    },
                    Piece {
                        partial: true,
                        range: 1..2,
                    },
                ],
            };
            tokio::time::timeout(Duration::from_secs(5), tx.send(batch))
                .await
                .expect("the writer drains")
                .expect("send");
        }
        drop(tx);
        match writer.await.expect("join") {
            Err(Error::Io { context, source }) => {
                assert!(context.contains("200 records lost"), "{context}");
                assert_eq!(source.raw_os_error(), Some(nix::libc::ENOSPC));
            }
            other => panic!("{other:?}"),
        }
    }
}
