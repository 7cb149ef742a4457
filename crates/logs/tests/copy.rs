//! The copy from real FIFOs into a log file, as the shim would feed it
//! (no containerd needed: test threads write the FIFOs).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crius_core::Error;
use crius_logs::{
    Fifos, LogHandle, LogWriter, RawRecord, Record, Stream, create_fifos, parse_line,
    parse_line_bytes, remove_fifos, start,
};

struct Setup {
    _tmp: tempfile::TempDir,
    fifos: Fifos,
    log_dir: PathBuf,
    log: PathBuf,
}

fn setup(tty: bool) -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fifos = create_fifos(&tmp.path().join("io"), "c1", tty).expect("fifos");
    let log_dir = tmp.path().join("pod");
    std::fs::create_dir_all(log_dir.join("app")).expect("log dir");
    let log = log_dir.join("app/0.log");
    Setup {
        _tmp: tmp,
        fifos,
        log_dir,
        log,
    }
}

/// Opens the FIFO's write end as the shim does (blocking until a reader is
/// there: `start` opened it) and writes `data` from a thread.
fn feed(path: &Path, data: Vec<u8>) -> JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open fifo");
        f.write_all(&data).expect("write fifo");
    })
}

fn records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).expect("read log");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "log ends mid-record"
    );
    text.split_terminator('\n')
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not a record: {l:?}")))
        .collect()
}

fn summary(records: &[Record]) -> Vec<(Stream, bool, String)> {
    records
        .iter()
        .map(|r| (r.stream, r.partial, r.content.clone()))
        .collect()
}

fn rec(stream: Stream, partial: bool, content: &str) -> (Stream, bool, String) {
    (stream, partial, content.to_string())
}

async fn copy(tty: bool, max_line: usize, stdout: &[u8], stderr: &[u8]) -> Vec<Record> {
    let s = setup(tty);
    let handle = start(&s.fifos, &s.log, max_line).expect("start");
    let out = feed(&s.fifos.stdout, stdout.to_vec());
    let err = s.fifos.stderr.as_deref().map(|p| feed(p, stderr.to_vec()));
    handle.wait().await.expect("wait");
    out.join().expect("stdout writer");
    if let Some(t) = err {
        t.join().expect("stderr writer");
    }
    remove_fifos(&s.fifos).expect("remove");
    records(&s.log)
}

#[tokio::test]
async fn full_lines_per_stream() {
    let recs = copy(false, 16 * 1024, b"hello\nworld\n", b"oops\n").await;
    let out: Vec<_> = summary(&recs)
        .into_iter()
        .filter(|r| r.0 == Stream::Stdout)
        .collect();
    let err: Vec<_> = summary(&recs)
        .into_iter()
        .filter(|r| r.0 == Stream::Stderr)
        .collect();
    assert_eq!(
        out,
        vec![
            rec(Stream::Stdout, false, "hello"),
            rec(Stream::Stdout, false, "world")
        ]
    );
    assert_eq!(err, vec![rec(Stream::Stderr, false, "oops")]);
}

#[tokio::test]
async fn long_line_splits_into_partial_records() {
    let recs = copy(false, 8, b"0123456789abcdefXYZ\n01234567\nshort\n", b"").await;
    assert_eq!(
        summary(&recs),
        vec![
            rec(Stream::Stdout, true, "01234567"),
            rec(Stream::Stdout, true, "89abcdef"),
            rec(Stream::Stdout, false, "XYZ"),
            rec(Stream::Stdout, false, "01234567"),
            rec(Stream::Stdout, false, "short"),
        ]
    );
}

#[tokio::test]
async fn last_bytes_without_newline_are_partial() {
    let recs = copy(false, 16 * 1024, b"done\nno newline", b"err tail").await;
    let mut got = summary(&recs);
    got.sort_by_key(|r| r.0 == Stream::Stderr);
    assert_eq!(
        got,
        vec![
            rec(Stream::Stdout, false, "done"),
            rec(Stream::Stdout, true, "no newline"),
            rec(Stream::Stderr, true, "err tail"),
        ]
    );
}

#[tokio::test]
async fn crlf_and_empty_lines_are_kept() {
    let recs = copy(true, 16 * 1024, b"a\r\n\n\r\n \nb\r", b"").await;
    assert_eq!(
        summary(&recs),
        vec![
            rec(Stream::Stdout, false, "a\r"),
            rec(Stream::Stdout, false, ""),
            rec(Stream::Stdout, false, "\r"),
            rec(Stream::Stdout, false, " "),
            rec(Stream::Stdout, true, "b\r"),
        ]
    );
    // The exact bytes kubelet reads.
    let line = recs[1].to_line();
    assert!(line.ends_with(" stdout F \n"), "{line:?}");
}

#[tokio::test]
async fn tty_has_only_stdout() {
    let s = setup(true);
    assert!(s.fifos.stderr.is_none());
    let handle = start(&s.fifos, &s.log, 1024).expect("start");
    feed(&s.fifos.stdout, b"tty\n".to_vec())
        .join()
        .expect("writer");
    handle.wait().await.expect("wait");
    assert_eq!(
        summary(&records(&s.log)),
        vec![rec(Stream::Stdout, false, "tty")]
    );
}

/// The shim opens the write end some time after `start`: the reader must
/// not take "no writer yet" for EOF.
#[tokio::test]
async fn waits_for_the_writer_to_connect() {
    let s = setup(false);
    let handle = start(&s.fifos, &s.log, 1024).expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(handle.is_running());
    let a = feed(&s.fifos.stdout, b"late\n".to_vec());
    let b = feed(s.fifos.stderr.as_deref().expect("stderr"), Vec::new());
    handle.wait().await.expect("wait");
    a.join().expect("a");
    b.join().expect("b");
    assert_eq!(
        summary(&records(&s.log)),
        vec![rec(Stream::Stdout, false, "late")]
    );
}

/// Line `i` of a stream: its number, then filler; every 97th is longer than
/// `max_line` (and some exactly a multiple of it).
fn line(stream: u8, i: usize, max_line: usize) -> Vec<u8> {
    let mut l = format!("{stream}:{i}:").into_bytes();
    let len = match i % 97 {
        0 => max_line * 3 + i % 5,
        1 => max_line * 2 - l.len(),
        _ => (i * 7919) % 200,
    };
    l.resize(l.len().max(len), b'a' + (i % 26) as u8);
    l.push(b'\n');
    l
}

/// The stream's bytes back from its records.
fn reassemble(recs: &[RawRecord<'_>], stream: Stream) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs.iter().filter(|r| r.stream == stream) {
        out.extend_from_slice(r.content);
        if !r.partial {
            out.push(b'\n');
        }
    }
    out
}

fn parse_all(data: &[u8]) -> Vec<RawRecord<'_>> {
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "log ends mid-record"
    );
    data.split(|&c| c == b'\n')
        .take_while(|l| !l.is_empty())
        .map(|l| {
            parse_line_bytes(l)
                .unwrap_or_else(|| panic!("broken record: {:?}", String::from_utf8_lossy(l)))
        })
        .collect()
}

fn assert_monotonic(recs: &[RawRecord<'_>]) {
    let ts: Vec<SystemTime> = recs.iter().map(|r| r.timestamp).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "timestamps decrease");
}

/// Both streams written at once by two threads, while the log is rotated
/// again and again: every record parses, nothing is lost or reordered,
/// no record is split across files, timestamps never decrease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_streams_and_rotations() {
    let s = setup(false);
    let max_line = 256;
    let writer = LogWriter::beneath(&s.log_dir, "app/0.log")
        .expect("writer")
        .max_line(max_line);
    let handle = writer.start(&s.fifos).expect("start");
    let data = |stream: u8| -> Vec<u8> {
        (0..20_000)
            .flat_map(|i| line(stream, i, max_line))
            .collect()
    };
    let (out_data, err_data) = (data(1), data(2));
    let paced = |path: PathBuf, data: Vec<u8>| {
        std::thread::spawn(move || {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open fifo");
            for (n, chunk) in data.chunks(3001).enumerate() {
                f.write_all(chunk).expect("write");
                if n % 5 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let a = paced(s.fifos.stdout.clone(), out_data.clone());
    let b = paced(s.fifos.stderr.clone().expect("stderr"), err_data.clone());
    let mut rotated = Vec::new();
    let mut live = true;
    for n in 0..20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let old = s.log_dir.join(format!("app/0.log.{n}"));
        std::fs::rename(&s.log, &old).expect("rename");
        rotated.push(old);
        if let Err(e) = handle.reopen().await {
            // Only possible if both writers already finished.
            assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
            live = false;
            break;
        }
    }
    a.join().expect("a");
    b.join().expect("b");
    handle.wait().await.expect("wait");
    if live {
        rotated.push(s.log.clone());
    }
    let mut all = Vec::new();
    let mut nonempty = 0;
    for p in &rotated {
        let d = std::fs::read(p).expect("read");
        parse_all(&d); // each file holds whole records only
        nonempty += usize::from(!d.is_empty());
        all.extend_from_slice(&d);
    }
    assert!(nonempty > 1, "rotation moved no records to a new file");
    let recs = parse_all(&all);
    assert!(recs.iter().all(|r| r.content.len() <= max_line));
    assert!(recs.iter().any(|r| r.partial));
    assert_monotonic(&recs);
    assert!(
        reassemble(&recs, Stream::Stdout) == out_data,
        "stdout differs"
    );
    assert!(
        reassemble(&recs, Stream::Stderr) == err_data,
        "stderr differs"
    );
}

#[tokio::test]
async fn reopen_after_rename_sends_new_records_to_the_new_file() {
    let s = setup(true);
    let handle = start(&s.fifos, &s.log, 1024).expect("start");
    let mut fifo = tokio::net::unix::pipe::OpenOptions::new()
        .open_sender(&s.fifos.stdout)
        .expect("open writer");
    use tokio::io::AsyncWriteExt;
    fifo.write_all(b"before\n").await.expect("write");
    // Let it land, then rotate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&s.log).expect("stat").len() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first record never written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let old = s.log.with_extension("log.20240101");
    std::fs::rename(&s.log, &old).expect("rename");
    handle.reopen().await.expect("reopen");
    assert!(s.log.exists(), "reopen creates the file");
    fifo.write_all(b"after\n").await.expect("write");
    drop(fifo);
    handle.wait().await.expect("wait");
    assert_eq!(
        summary(&records(&old)),
        vec![rec(Stream::Stdout, false, "before")]
    );
    assert_eq!(
        summary(&records(&s.log)),
        vec![rec(Stream::Stdout, false, "after")]
    );
}

#[tokio::test]
async fn reopen_fails_once_the_container_exited() {
    let s = setup(false);
    let handle = start(&s.fifos, &s.log, 1024).expect("start");
    handle.reopen().await.expect("reopen while running");
    feed(&s.fifos.stdout, b"x\n".to_vec()).join().expect("a");
    feed(s.fifos.stderr.as_deref().expect("stderr"), Vec::new())
        .join()
        .expect("b");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while handle.is_running() {
        assert!(tokio::time::Instant::now() < deadline, "EOF never seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match handle.reopen().await {
        Err(Error::FailedPrecondition(msg)) => assert!(msg.contains("not running"), "{msg}"),
        other => panic!("reopen after exit: {other:?}"),
    }
    handle.wait().await.expect("wait");
}

#[tokio::test]
async fn reopen_keeps_the_old_file_when_the_new_one_cannot_be_opened() {
    let s = setup(true);
    let handle = start(&s.fifos, &s.log, 1024).expect("start");
    std::fs::remove_file(&s.log).expect("rm");
    std::os::unix::fs::symlink("/etc/passwd", &s.log).expect("symlink");
    assert!(matches!(
        handle.reopen().await,
        Err(Error::InvalidArgument { .. })
    ));
    handle.stop();
    handle.wait().await.expect("wait");
}

#[tokio::test]
async fn stop_ends_a_copy_whose_writer_never_came() {
    let s = setup(false);
    let handle = start(&s.fifos, &s.log, 1024).expect("start");
    handle.stop();
    tokio::time::timeout(Duration::from_secs(5), handle.wait())
        .await
        .expect("wait resolves after stop")
        .expect("wait");
    assert!(records(&s.log).is_empty());
}

#[tokio::test]
async fn refuses_symlinked_log_paths() {
    let s = setup(false);
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"keep").expect("write");
    std::os::unix::fs::symlink(&victim, &s.log).expect("symlink");
    let check = |r: Result<LogHandle, Error>| match r {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "log_path"),
        other => panic!("not refused: {other:?}"),
    };
    check(start(&s.fifos, &s.log, 1024));
    check(LogWriter::beneath(&s.log_dir, "app/0.log").and_then(|w| w.start(&s.fifos)));
    std::os::unix::fs::symlink(outside.path(), s.log_dir.join("evil")).expect("symlink");
    check(LogWriter::beneath(&s.log_dir, "evil/0.log").and_then(|w| w.start(&s.fifos)));
    check(LogWriter::beneath(&s.log_dir, "../0.log").and_then(|w| w.start(&s.fifos)));
    check(LogWriter::beneath(&s.log_dir, "/../0.log").and_then(|w| w.start(&s.fifos)));
    // An absolute log path is joined below the log directory, as
    // containerd's filepath.Join does.
    let joined = LogWriter::beneath(&s.log_dir, "/tmp/0.log").expect("joined");
    assert_eq!(joined.log_path(), s.log_dir.join("tmp/0.log"));
    check(LogWriter::beneath(&s.log_dir, "").and_then(|w| w.start(&s.fifos)));
    assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
    assert!(!outside.path().join("0.log").exists());
    assert!(matches!(
        start(&s.fifos, &s.log_dir.join("app/ok.log"), 0),
        Err(Error::InvalidArgument { .. })
    ));
}

/// 200 MB written as fast as the pipe takes it: the log is slower (it
/// formats and writes more than it reads), so the copy runs under
/// backpressure the whole time; not a byte may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_without_loss() {
    const TOTAL: usize = 200 * 1024 * 1024;
    let s = setup(true);
    let max_line = 16 * 1024;
    let handle = start(&s.fifos, &s.log, max_line).expect("start");
    let path = s.fifos.stdout.clone();
    let producer = std::thread::spawn(move || {
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open fifo");
        let mut w = BufWriter::with_capacity(1 << 16, f);
        let (mut written, mut lines) = (0usize, 0usize);
        while written < TOTAL {
            let l = line(0, lines, max_line);
            w.write_all(&l).expect("write");
            written += l.len();
            lines += 1;
        }
        w.flush().expect("flush");
        (written, lines)
    });
    handle.wait().await.expect("wait");
    let (written, lines) = producer.join().expect("producer");
    let data = std::fs::read(&s.log).expect("read log");
    let recs = parse_all(&data);
    assert_monotonic(&recs);
    let full = recs.iter().filter(|r| !r.partial).count();
    assert_eq!(full, lines, "full records");
    let content: usize = recs
        .iter()
        .map(|r| r.content.len() + usize::from(!r.partial))
        .sum();
    assert_eq!(content, written, "content bytes");
    // And the content itself, line by line.
    let mut i = 0;
    let mut cur = Vec::new();
    for r in &recs {
        cur.extend_from_slice(r.content);
        if !r.partial {
            cur.push(b'\n');
            assert!(cur == line(0, i, max_line), "line {i} differs");
            cur.clear();
            i += 1;
        }
    }
    assert_eq!(i, lines);
}
