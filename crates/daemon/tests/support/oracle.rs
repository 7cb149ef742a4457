//! Runs a client's bytes through `AuthorityFix` and through h2's server (the
//! one under tonic), in memory and synchronously: futures are polled with a
//! no-op waker until they are ready or stay pending, which, with all input
//! in memory, means h2 waits for input that will not come.
//!
//! [`check`] is the fuzz oracle, shared by tests/authority_fuzz.rs and the
//! cargo-fuzz target (fuzz/fuzz_targets/authority.rs), which reads its
//! inputs as a [`Case`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crius_daemon::authority::AuthorityFix;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often a pending future is polled again before it counts as waiting.
const IDLE_POLLS: usize = 8;

/// How many bytes a [`Client`] may hand out.
pub type Allowed = Rc<Cell<usize>>;

/// A client: hands out its bytes one piece per read, up to a limit that
/// the caller may raise, and drops what the server writes.
pub struct Client {
    pieces: VecDeque<Vec<u8>>,
    /// Bytes handed out so far, and how many may be.
    sent: usize,
    pub allowed: Allowed,
    /// Answer every other read with `Pending` (waking at once).
    stall: bool,
    stalled: bool,
    /// At the end, `Pending` for ever instead of end of input.
    hang: bool,
}

impl Client {
    /// `input` cut into pieces of `sizes` bytes (cycled; empty: one piece).
    pub fn new(input: &[u8], sizes: &[usize], stall: bool, hang: bool) -> Self {
        let mut pieces = VecDeque::new();
        let mut rest = input;
        while !rest.is_empty() {
            let size = sizes.get(pieces.len() % sizes.len().max(1)).copied();
            let (piece, tail) = rest.split_at(size.unwrap_or(usize::MAX).clamp(1, rest.len()));
            pieces.push_back(piece.to_vec());
            rest = tail;
        }
        Self {
            pieces,
            sent: 0,
            allowed: Rc::new(Cell::new(usize::MAX)),
            stall,
            stalled: false,
            hang,
        }
    }
}

impl AsyncRead for Client {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stall {
            this.stalled = !this.stalled;
            if this.stalled {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let room = this.allowed.get() - this.sent;
        match this.pieces.front_mut() {
            Some(_) if room == 0 => Poll::Pending,
            None if this.hang => Poll::Pending,
            None => Poll::Ready(Ok(())),
            Some(piece) => {
                let n = piece.len().min(buf.remaining()).min(room);
                buf.put_slice(&piece[..n]);
                piece.drain(..n);
                if piece.is_empty() {
                    this.pieces.pop_front();
                }
                this.sent += n;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Polls `f` until it is ready; `None` if it stays pending.
fn settle<F: Future + ?Sized>(mut f: Pin<&mut F>) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    (0..IDLE_POLLS).find_map(|_| match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    })
}

/// What the server reads through the fix from `client`, `read` bytes at a
/// time, or the fix's error (after the bytes it let through).
pub fn rewrite(client: Client, read: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut fix = AuthorityFix::new(client);
    let mut cx = Context::from_waker(Waker::noop());
    let (mut out, mut buf) = (Vec::new(), vec![0; read.max(1)]);
    loop {
        let mut chunk = ReadBuf::new(&mut buf);
        match Pin::new(&mut fix).poll_read(&mut cx, &mut chunk) {
            Poll::Ready(Ok(())) if chunk.filled().is_empty() => return (out, None),
            Poll::Ready(Ok(())) => out.extend_from_slice(chunk.filled()),
            Poll::Ready(Err(e)) => return (out, Some(e)),
            // The client stalls every other read.
            Poll::Pending => {}
        }
    }
}

/// A request as h2's server hands it to tonic.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub stream: u32,
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
}

impl Request {
    fn new(request: http::Request<h2::RecvStream>, stream: h2::StreamId) -> Self {
        let (parts, _) = request.into_parts();
        Self {
            stream: stream.into(),
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        }
    }
}

/// What h2's server made of a connection, given its input up to one end
/// after the other (steps): what it served and where it stopped.
#[derive(Debug, Default)]
pub struct Served {
    /// The requests, with the step that brought each.
    pub requests: Vec<(usize, Request)>,
    /// The error that ended the connection, and its step.
    pub error: Option<(usize, h2::Error)>,
    /// The step at which it ended without an error.
    pub closed: Option<usize>,
}

impl Served {
    /// Where it stopped reading, if it did.
    fn stopped(&self) -> Option<usize> {
        self.error.as_ref().map(|(step, _)| *step).or(self.closed)
    }
}

/// Serves `io` with h2's server, its client allowed `ends[0]` bytes, then
/// `ends[1]`, and so on; at each step until h2 waits for more or the
/// connection ends.
pub fn serve<T: AsyncRead + AsyncWrite + Unpin>(io: T, allowed: Allowed, ends: &[usize]) -> Served {
    let mut served = Served::default();
    let mut handshake = Box::pin(h2::server::handshake(io));
    let mut conn = None;
    for (step, &end) in ends.iter().enumerate() {
        allowed.set(end);
        let conn = match &mut conn {
            Some(conn) => conn,
            None => match settle(handshake.as_mut()) {
                Some(Ok(c)) => conn.insert(c),
                Some(Err(e)) => {
                    return Served {
                        error: Some((step, e)),
                        ..served
                    };
                }
                None => continue,
            },
        };
        loop {
            match settle(pin!(conn.accept())) {
                Some(Some(Ok((request, respond)))) => {
                    let request = Request::new(request, respond.stream_id());
                    served.requests.push((step, request));
                }
                Some(Some(Err(e))) => {
                    return Served {
                        error: Some((step, e)),
                        ..served
                    };
                }
                Some(None) => {
                    return Served {
                        closed: Some(step),
                        ..served
                    };
                }
                None => break,
            }
        }
    }
    served
}

/// The requests h2's server makes of `io`'s input, all of it allowed, and
/// whether it took it all without an error.
pub fn serve_all<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> (Vec<Request>, bool) {
    let served = serve(io, Allowed::default(), &[usize::MAX]);
    let ok = served.stopped().is_none();
    (served.requests.into_iter().map(|(_, r)| r).collect(), ok)
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where the preface and each whole frame of `input` end; only its end if
/// it does not start with the preface.
fn frame_ends(input: &[u8]) -> Vec<usize> {
    if !input.starts_with(PREFACE) {
        return vec![input.len()];
    }
    let mut ends = vec![PREFACE.len()];
    let mut end = PREFACE.len();
    while let Some(head) = input.get(end..end + 9) {
        end += 9 + u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        if end > input.len() {
            break;
        }
        ends.push(end);
    }
    ends
}

/// The step of the first PUSH_PROMISE among the whole frames that `ends`
/// finds in `input`.
///
/// A server must treat one as a connection error (RFC 7540 §8.2), and the
/// fix does, at once. h2 does so on an open stream once the block is
/// whole, but ignores one on a stream it has reset, after decoding its
/// block; the fix could pass it on only if it decoded and rewrote such
/// blocks too, for a frame no client may send. So here h2 stops there.
fn push_promise(input: &[u8], ends: &[usize]) -> Option<usize> {
    let starts = ends.iter().take(ends.len().saturating_sub(1));
    let kinds = starts.map(|&start| input.get(start + 3).copied());
    kinds
        .enumerate()
        .find_map(|(i, kind)| (kind == Some(0x5)).then_some(i + 1))
}

/// What [`check`] saw.
#[derive(Debug, Default)]
pub struct Checked {
    /// h2 alone took all of the input without an error (and there was no
    /// PUSH_PROMISE).
    pub valid: bool,
    /// Requests h2 served through the fix, and alone.
    pub fixed: usize,
    pub raw: usize,
}

/// Runs `input` (cut into pieces of `sizes`, read `read` bytes at a time)
/// through the fix, then its whole frames, one after the other, through
/// h2's server alone and through the fix; panics unless, as far as h2
/// alone takes them (no error, still open, no PUSH_PROMISE: see
/// [`push_promise`]):
///
/// - the fix rejects none of them;
/// - h2 through the fix finds no error in HPACK (COMPRESSION_ERROR) or in
///   framing (FRAME_SIZE_ERROR). Others may come of a request that h2
///   alone refuses becoming valid: frames that follow it on its stream
///   meet another stream state;
/// - every request h2 serves alone, it serves the same through the fix,
///   at the same step, unless the connection through the fix ended first.
pub fn check(input: &[u8], sizes: &[usize], read: usize) -> Checked {
    rewrite(Client::new(input, sizes, true, false), read);
    let ends = frame_ends(input);
    let input = &input[..ends.last().copied().unwrap_or_default()];
    let (rewritten, rejected) = rewrite(Client::new(input, sizes, true, false), read);
    let client = Client::new(input, &[], false, true);
    let allowed = client.allowed.clone();
    let raw = serve(client, allowed, &ends);
    let client = Client::new(input, sizes, false, true);
    let allowed = client.allowed.clone();
    let fixed = serve(AuthorityFix::new(client), allowed, &ends);
    let why = || {
        if let Some(path) = std::env::var_os("AUTHORITY_FUZZ_DUMP") {
            let _ = std::fs::write(path, input);
        }
        format!("fix: {rejected:?}; alone: {raw:?}; through the fix: {fixed:?}")
    };
    // The step up to which h2 alone took the input.
    let taken = [raw.stopped(), push_promise(input, &ends)];
    let taken = taken.into_iter().flatten().min().unwrap_or(ends.len());
    let valid = taken == ends.len();
    if let Some((step, e)) = &fixed.error
        && *step < taken
    {
        let reason = e.reason();
        assert!(!e.is_io(), "the fix rejected what h2 takes; {}", why());
        assert_ne!(reason, Some(h2::Reason::COMPRESSION_ERROR), "{}", why());
        assert_ne!(reason, Some(h2::Reason::FRAME_SIZE_ERROR), "{}", why());
    }
    let fixed_end = fixed.stopped().unwrap_or(ends.len());
    for (step, request) in raw.requests.iter().filter(|(step, _)| *step < fixed_end) {
        let same = fixed
            .requests
            .iter()
            .find(|(_, r)| r.stream == request.stream);
        let same = same.map(|(step, r)| (*step, r));
        assert_eq!(
            same,
            Some((*step, request)),
            "a request h2 serves alone; {}",
            why()
        );
    }
    if valid {
        assert!(
            rejected.is_none(),
            "the fix rejected valid input; {}",
            why()
        );
        // What the server reads is what the fix makes, however it is cut.
        let whole = rewrite(Client::new(input, &[], false, false), 1 << 16);
        assert_eq!(whole.0, rewritten, "output depends on how input is cut");
    }
    Checked {
        valid,
        fixed: fixed.requests.len(),
        raw: raw.requests.len(),
    }
}

/// Read sizes a [`Case`] may choose.
const READS: [usize; 4] = [1, 5, 64, 8192];
/// The control byte of a [`Case`]: the client preface comes first.
const WITH_PREFACE: u8 = 0x80;

/// A fuzz input as the cargo-fuzz target reads it, and as the bounded test
/// writes its seeds: a control byte (bit 7: the client preface is put
/// first, which the fuzzer would otherwise have to find; bits 3 and 4: the
/// read size, of [`READS`]; bits 0 to 2: how many piece sizes follow), the
/// piece sizes, a byte each (`b` up to 199 means `b + 1` bytes, a larger
/// one `b - 199` KiB), then the client's bytes.
#[derive(Debug)]
pub struct Case {
    pub input: Vec<u8>,
    pub sizes: Vec<usize>,
    pub read: usize,
}

impl Case {
    pub fn parse(data: &[u8]) -> Self {
        let (&control, rest) = data.split_first().unwrap_or((&0, &[][..]));
        let count = usize::from(control & 0x7).min(rest.len());
        let (sizes, bytes) = rest.split_at(count);
        let sizes = sizes.iter().map(|&b| match b {
            0..200 => usize::from(b) + 1,
            _ => usize::from(b - 199) << 10,
        });
        let mut input = Vec::new();
        if control & WITH_PREFACE != 0 {
            input.extend_from_slice(PREFACE);
        }
        input.extend_from_slice(bytes);
        Self {
            input,
            sizes: sizes.collect(),
            read: READS[usize::from(control >> 3 & 0x3)],
        }
    }

    /// The bytes [`Case::parse`] reads as this case, or as one like it: at
    /// most 7 piece sizes, each rounded up to one a byte can say, the read
    /// size to one of [`READS`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let sizes = &self.sizes[..self.sizes.len().min(7)];
        let read = READS.iter().position(|&r| r >= self.read).unwrap_or(3);
        let mut control = sizes.len() as u8 | (read as u8) << 3;
        let mut input = &self.input[..];
        if let Some(rest) = input.strip_prefix(PREFACE) {
            control |= WITH_PREFACE;
            input = rest;
        }
        let mut out = vec![control];
        out.extend(sizes.iter().map(|&size| match size {
            0..=200 => size.saturating_sub(1) as u8,
            _ => (199 + size.div_ceil(1024)).min(255) as u8,
        }));
        out.extend_from_slice(input);
        out
    }
}
