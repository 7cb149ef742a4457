//! Gives old grpc-go clients a `:authority` that h2 accepts.
//!
//! grpc-go clients that dial a unix socket through a custom dialer without an
//! explicit authority (crictl and kubelet up to about 1.29) send the socket
//! *path*, e.g. `/run/crius/crius.sock`, as the HTTP/2 `:authority`. h2, under
//! tonic, finds no URI authority there and resets the stream with
//! PROTOCOL_ERROR (h2 issue #487). [`AuthorityFix`] sits between the socket
//! and tonic and rewrites such an `:authority` to `localhost` on the way in.
//!
//! Writes (server to client) pass untouched. Reads are parsed as HTTP/2: the
//! client preface, then frames. Every frame but HEADERS and CONTINUATION
//! passes byte for byte, its payload streamed rather than buffered. A header
//! block (HEADERS, then CONTINUATION up to END_HEADERS) is collected and its
//! HPACK representations (RFC 7541 §6) are re-emitted one by one, each of the
//! same kind and with the same indices; only the value of an `:authority`
//! that is no URI authority becomes a plain (not Huffman-coded) `localhost`.
//! The block goes on as one HEADERS frame, without padding, with the PRIORITY
//! fields if it had them, followed by CONTINUATION frames past 16384 bytes
//! (the smallest SETTINGS_MAX_FRAME_SIZE a server may advertise).
//!
//! The client's encoder and the server's decoder share a dynamic table. An
//! entry inserted with a rewritten value is smaller on the server than the
//! client believes, so the server may evict later than the client. Evictions
//! go oldest first and no server entry is larger than the client's, so the
//! server always keeps at least the entries the client keeps, at the same
//! indices (counted from the newest): every index the client sends resolves to
//! the same entry, and a later reference to the rewritten entry decodes to
//! `localhost`. To resolve names given by index, this module tracks the table
//! as a decoder of the *original* stream would (RFC 7541 §4).
//!
//! Input it cannot parse closes the connection with an error: passing bytes
//! on unparsed from that point would desynchronize the tables.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use loona_hpack::huffman::HuffmanDecoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// The largest header block (all its HEADERS and CONTINUATION payloads)
/// accepted by [`AuthorityFix::new`]; a larger one closes the connection.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 1 << 20;

/// What a non-URI `:authority` becomes.
const REPLACEMENT: &[u8] = b"localhost";

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
/// Payload size of the frames this module writes: the default (and smallest
/// allowed) SETTINGS_MAX_FRAME_SIZE.
const OUT_FRAME_MAX: usize = 16_384;
/// How much is read from the socket at once when a frame is being parsed.
const READ_CHUNK: usize = 16_384;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// SETTINGS_HEADER_TABLE_SIZE before any change (RFC 7540 §6.5.2).
const INITIAL_TABLE_SIZE: usize = 4096;
/// Bound on dynamic table size updates; the server allows far less.
const TABLE_SIZE_LIMIT: usize = 1 << 24;
/// Per-entry overhead in the table size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;
/// Index of `:authority` (with an empty value) in the static table.
const STATIC_AUTHORITY: usize = 1;
/// Names of the static table (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// The connections of `listener`, each wrapped in [`AuthorityFix`]: what to
/// hand to tonic's `serve_with_incoming_shutdown`.
pub fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = io::Result<AuthorityFix<UnixStream>>> {
    UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new))
}

/// A server-side connection whose incoming HTTP/2 requests get `localhost`
/// for an `:authority` that is no URI authority (see the module docs).
pub struct AuthorityFix<S> {
    inner: S,
    reader: Reader,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self::with_max_header_block(inner, DEFAULT_MAX_HEADER_BLOCK)
    }

    /// Like [`AuthorityFix::new`], closing the connection on a header block
    /// (or a HEADERS/CONTINUATION frame) larger than `max` bytes.
    pub fn with_max_header_block(inner: S, max: usize) -> Self {
        Self {
            inner,
            reader: Reader::new(max),
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> std::fmt::Debug for AuthorityFix<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityFix").finish_non_exhaustive()
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        loop {
            if buf.remaining() == 0 || this.reader.flush(buf) {
                return Poll::Ready(Ok(()));
            }
            if let Some(limit) = this.reader.pass_limit() {
                if this.reader.pass_buffered(buf, limit) {
                    continue;
                }
                if buf.filled().len() > start {
                    return Poll::Ready(Ok(()));
                }
                // Nothing buffered: read the passed bytes straight into the
                // caller's buffer.
                let want = limit.min(buf.remaining());
                let n = {
                    let mut direct = ReadBuf::new(buf.initialize_unfilled_to(want));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut direct))?;
                    direct.filled().len()
                };
                buf.advance(n);
                this.reader.passed(n);
                return Poll::Ready(Ok(()));
            }
            if this.reader.step()? {
                continue;
            }
            // The next step needs more input.
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
            if ready!(this.reader.fill(&mut this.inner, cx))? == 0 {
                // End of input; a frame cut short is dropped, and h2 sees
                // the connection end between frames.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of the client preface seen.
    Preface(usize),
    /// No HTTP/2 preface: everything passes untouched (the server rejects it).
    Transparent,
    /// At a frame boundary.
    FrameHeader,
    /// This many payload bytes of a passed-through frame still to go (> 0).
    Pass(usize),
    /// Collecting the payload of a HEADERS or CONTINUATION frame.
    Collect {
        kind: u8,
        flags: u8,
        stream: [u8; 4],
        len: usize,
    },
    /// Input was rejected; reads keep failing.
    Failed,
}

/// A header block being collected.
struct Block {
    /// Stream identifier as sent, reserved bit included.
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The client-to-server half: parsing, rewriting and buffers. It does no I/O
/// but [`Reader::fill`].
struct Reader {
    state: State,
    /// Bytes read and not yet processed: `input[input_pos..]`.
    input: Vec<u8>,
    input_pos: usize,
    /// Bytes processed and not yet handed out: `output[output_pos..]`.
    output: Vec<u8>,
    output_pos: usize,
    block: Option<Block>,
    hpack: Hpack,
    max_block: usize,
}

impl Reader {
    fn new(max_block: usize) -> Self {
        Self {
            state: State::Preface(0),
            input: Vec::new(),
            input_pos: 0,
            output: Vec::new(),
            output_pos: 0,
            block: None,
            hpack: Hpack::new(),
            max_block,
        }
    }

    fn buffered(&self) -> &[u8] {
        self.input.get(self.input_pos..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.input_pos += n;
        if self.input_pos >= self.input.len() {
            self.input.clear();
            self.input_pos = 0;
        }
    }

    /// Copies pending output to `buf`; true if that filled `buf`.
    fn flush(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let pending = self.output.get(self.output_pos..).unwrap_or_default();
        if pending.is_empty() {
            return false;
        }
        let n = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..n]);
        self.output_pos += n;
        if self.output_pos >= self.output.len() {
            self.output.clear();
            self.output_pos = 0;
        }
        buf.remaining() == 0
    }

    /// How many bytes may pass untouched from here, if the reader is in the
    /// middle of such bytes.
    fn pass_limit(&self) -> Option<usize> {
        match self.state {
            State::Transparent => Some(usize::MAX),
            State::Pass(n) => Some(n),
            _ => None,
        }
    }

    /// Hands buffered input that passes untouched to `buf`; false if there
    /// was none.
    fn pass_buffered(&mut self, buf: &mut ReadBuf<'_>, limit: usize) -> bool {
        let avail = self.buffered();
        if avail.is_empty() {
            return false;
        }
        let n = avail.len().min(limit).min(buf.remaining());
        buf.put_slice(&avail[..n]);
        self.consume(n);
        self.passed(n);
        true
    }

    /// Records that `n` bytes passed untouched.
    fn passed(&mut self, n: usize) {
        if let State::Pass(left) = self.state {
            let left = left.saturating_sub(n);
            self.state = if left == 0 {
                State::FrameHeader
            } else {
                State::Pass(left)
            };
        }
    }

    /// Reads more input; `Ok(0)` at its end.
    fn fill<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.input_pos > 0 {
            self.input.drain(..self.input_pos);
            self.input_pos = 0;
        }
        let old = self.input.len();
        self.input.resize(old + READ_CHUNK, 0);
        let mut chunk = ReadBuf::new(&mut self.input[old..]);
        let result = Pin::new(inner).poll_read(cx, &mut chunk);
        let n = chunk.filled().len();
        self.input.truncate(old + n);
        match result {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Processes buffered input as far as one step goes; false if it needs
    /// more input (or the state passes bytes, which the caller does). After
    /// an error, every later step fails too.
    fn step(&mut self) -> io::Result<bool> {
        let result = self.step_inner();
        if result.is_err() {
            self.state = State::Failed;
            self.block = None;
        }
        result
    }

    fn step_inner(&mut self) -> io::Result<bool> {
        match self.state {
            State::Failed => Err(invalid("connection already rejected")),
            State::Transparent | State::Pass(_) => Ok(false),
            State::Preface(seen) => {
                let avail = self.input.get(self.input_pos..).unwrap_or_default();
                if avail.is_empty() {
                    return Ok(false);
                }
                let n = avail.len().min(PREFACE.len() - seen);
                if avail[..n] == PREFACE[seen..seen + n] {
                    self.output.extend_from_slice(&avail[..n]);
                    self.consume(n);
                    self.state = if seen + n == PREFACE.len() {
                        State::FrameHeader
                    } else {
                        State::Preface(seen + n)
                    };
                } else {
                    // Not HTTP/2 with prior knowledge: nothing to fix.
                    self.state = State::Transparent;
                }
                Ok(true)
            }
            State::FrameHeader => {
                let mut head = [0u8; FRAME_HEADER_LEN];
                match self.buffered().get(..FRAME_HEADER_LEN) {
                    Some(bytes) => head.copy_from_slice(bytes),
                    None => return Ok(false),
                }
                self.consume(FRAME_HEADER_LEN);
                self.frame_header(head)?;
                Ok(true)
            }
            State::Collect {
                kind,
                flags,
                stream,
                len,
            } => {
                if self.buffered().len() < len {
                    return Ok(false);
                }
                self.collect(kind, flags, stream, len)?;
                self.state = State::FrameHeader;
                Ok(true)
            }
        }
    }

    fn frame_header(&mut self, head: [u8; FRAME_HEADER_LEN]) -> io::Result<()> {
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let kind = head[3];
        let flags = head[4];
        let stream = [head[5], head[6], head[7], head[8]];
        if let Some(block) = &self.block
            && (kind != TYPE_CONTINUATION || block.stream != stream)
        {
            return Err(invalid("a header block continues with no CONTINUATION"));
        }
        match kind {
            TYPE_HEADERS | TYPE_CONTINUATION => {
                if kind == TYPE_CONTINUATION && self.block.is_none() {
                    return Err(invalid("CONTINUATION outside a header block"));
                }
                if len > self.max_block {
                    return Err(invalid("header frame too large"));
                }
                self.state = State::Collect {
                    kind,
                    flags,
                    stream,
                    len,
                };
            }
            TYPE_PUSH_PROMISE => return Err(invalid("PUSH_PROMISE from a client")),
            _ => {
                self.output.extend_from_slice(&head);
                self.state = if len == 0 {
                    State::FrameHeader
                } else {
                    State::Pass(len)
                };
            }
        }
        Ok(())
    }

    /// Takes the `len`-byte payload of a HEADERS or CONTINUATION frame from
    /// the input; at the end of the block, writes the rewritten block out.
    fn collect(&mut self, kind: u8, flags: u8, stream: [u8; 4], len: usize) -> io::Result<()> {
        let start = self.input_pos;
        let payload = self.input.get(start..start + len).unwrap_or_default();
        match &mut self.block {
            Some(block) => block.fragment.extend_from_slice(payload),
            None if kind == TYPE_HEADERS => {
                let mut rest = payload;
                let mut pad = 0;
                if flags & FLAG_PADDED != 0 {
                    let Some((&n, tail)) = rest.split_first() else {
                        return Err(invalid("HEADERS too short for its padding"));
                    };
                    pad = usize::from(n);
                    rest = tail;
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    let Some(fields) = rest.get(..5) else {
                        return Err(invalid("HEADERS too short for its priority"));
                    };
                    let mut p = [0u8; 5];
                    p.copy_from_slice(fields);
                    priority = Some(p);
                    rest = &rest[5..];
                }
                let Some(fragment) = rest.get(..rest.len().wrapping_sub(pad)) else {
                    return Err(invalid("HEADERS padding exceeds the payload"));
                };
                self.block = Some(Block {
                    stream,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                });
            }
            None => return Err(invalid("CONTINUATION outside a header block")),
        }
        self.consume(len);
        let too_large = self
            .block
            .as_ref()
            .is_some_and(|b| b.fragment.len() > self.max_block);
        if too_large {
            return Err(invalid("header block too large"));
        }
        if flags & FLAG_END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            let rewritten = self.hpack.rewrite(&block.fragment)?;
            write_block(&mut self.output, &block, &rewritten);
        }
        Ok(())
    }
}

/// Writes a header block as HEADERS (+ CONTINUATION) frames.
fn write_block(out: &mut Vec<u8>, block: &Block, hpack: &[u8]) {
    let priority: &[u8] = match &block.priority {
        Some(p) => p,
        None => &[],
    };
    let (first, mut rest) = hpack.split_at(hpack.len().min(OUT_FRAME_MAX - priority.len()));
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if !priority.is_empty() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    let len = priority.len() + first.len();
    write_frame_header(out, len, TYPE_HEADERS, flags, block.stream);
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(OUT_FRAME_MAX));
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(out, chunk.len(), TYPE_CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
    }
}

fn write_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream);
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from client: {what}"),
    )
}

/// An entry of the dynamic table, as far as rewriting needs it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    name_len: usize,
    /// Size as the client counts it: name + original value + 32.
    size: usize,
    authority: bool,
}

/// Literal representations (RFC 7541 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    IncrementalIndexing,
    WithoutIndexing,
    NeverIndexed,
}

/// The HPACK side of the rewriter: the client's view of the dynamic table.
struct Hpack {
    /// Newest first: `entries[0]` has index 62.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    huffman: Option<HuffmanDecoder>,
    logged: bool,
}

impl Hpack {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: INITIAL_TABLE_SIZE,
            huffman: None,
            logged: false,
        }
    }

    /// Re-encodes one header block, replacing non-URI `:authority` values.
    fn rewrite(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() + REPLACEMENT.len());
        let mut pos = 0;
        while let Some(&first) = block.get(pos) {
            let start = pos;
            if first & 0x80 != 0 {
                // Indexed header field (§6.1).
                let index = read_int(block, &mut pos, 7)?;
                self.name(index)?;
                if index == STATIC_AUTHORITY {
                    // `:authority` with the static table's empty value is no
                    // authority either; a literal without indexing leaves
                    // the table as it is.
                    self.note_rewrite(b"");
                    out.push(STATIC_AUTHORITY as u8);
                    write_plain_string(&mut out, REPLACEMENT);
                } else {
                    out.extend_from_slice(&block[start..pos]);
                }
                continue;
            }
            if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                let size = read_int(block, &mut pos, 5)?;
                if size > TABLE_SIZE_LIMIT {
                    return Err(invalid("HPACK table size update too large"));
                }
                self.set_max_size(size);
                out.extend_from_slice(&block[start..pos]);
                continue;
            }
            let (kind, prefix) = if first & 0x40 != 0 {
                (Literal::IncrementalIndexing, 6)
            } else if first & 0x10 != 0 {
                (Literal::NeverIndexed, 4)
            } else {
                (Literal::WithoutIndexing, 4)
            };
            let index = read_int(block, &mut pos, prefix)?;
            let (name_len, authority) = if index == 0 {
                let (huffman, raw) = read_string(block, &mut pos)?;
                let name = self.decode(huffman, raw)?;
                (name.len(), *name == *b":authority")
            } else {
                self.name(index)?
            };
            let value_start = pos;
            let (huffman, raw) = read_string(block, &mut pos)?;
            let mut replace = false;
            if authority || kind == Literal::IncrementalIndexing {
                let value = self.decode(huffman, raw)?;
                if authority && http::uri::Authority::try_from(&*value).is_err() {
                    replace = true;
                    self.note_rewrite(&value);
                }
                if kind == Literal::IncrementalIndexing {
                    self.insert(Entry {
                        name_len,
                        size: name_len + value.len() + ENTRY_OVERHEAD,
                        authority,
                    });
                }
            }
            if replace {
                out.extend_from_slice(&block[start..value_start]);
                write_plain_string(&mut out, REPLACEMENT);
            } else {
                out.extend_from_slice(&block[start..pos]);
            }
        }
        Ok(out)
    }

    /// Name length of the entry at `index` and whether it is `:authority`.
    fn name(&self, index: usize) -> io::Result<(usize, bool)> {
        if let Some(name) = index.checked_sub(1).and_then(|i| STATIC_NAMES.get(i)) {
            return Ok((name.len(), index == STATIC_AUTHORITY));
        }
        index
            .checked_sub(STATIC_NAMES.len() + 1)
            .and_then(|i| self.entries.get(i))
            .map(|e| (e.name_len, e.authority))
            .ok_or_else(|| invalid("HPACK index out of range"))
    }

    fn insert(&mut self, entry: Entry) {
        if entry.size > self.max_size {
            // §4.4: a too-large entry empties the table and is not added.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(self.max_size - entry.size);
        self.size += entry.size;
        self.entries.push_front(entry);
    }

    fn set_max_size(&mut self, max: usize) {
        self.max_size = max;
        self.evict(max);
    }

    /// Evicts the oldest entries until the table size is at most `limit`.
    fn evict(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size,
                None => self.size = 0,
            }
        }
    }

    fn decode<'a>(&mut self, huffman: bool, raw: &'a [u8]) -> io::Result<Cow<'a, [u8]>> {
        if !huffman {
            return Ok(Cow::Borrowed(raw));
        }
        self.huffman
            .get_or_insert_with(HuffmanDecoder::new)
            .decode(raw)
            .map(Cow::Owned)
            .map_err(|e| invalid(&format!("HPACK Huffman string: {e}")))
    }

    fn note_rewrite(&mut self, value: &[u8]) {
        if !self.logged {
            self.logged = true;
            tracing::debug!(
                authority = %String::from_utf8_lossy(value),
                "client sent an :authority that is no URI authority (old grpc-go?); serving it as localhost"
            );
        }
    }
}

/// Reads an HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1).
fn read_int(block: &[u8], pos: &mut usize, prefix: u8) -> io::Result<usize> {
    let truncated = || invalid("HPACK integer cut short");
    let mask = (1u8 << prefix) - 1;
    let first = *block.get(*pos).ok_or_else(truncated)?;
    *pos += 1;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok(value as usize);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*pos).ok_or_else(truncated)?;
        *pos += 1;
        if shift > 28 {
            return Err(invalid("HPACK integer too large"));
        }
        value += u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    usize::try_from(value).map_err(|_| invalid("HPACK integer too large"))
}

/// Reads a string literal (RFC 7541 §5.2): whether it is Huffman-coded, and
/// its bytes as sent.
fn read_string<'a>(block: &'a [u8], pos: &mut usize) -> io::Result<(bool, &'a [u8])> {
    let huffman = block.get(*pos).is_some_and(|b| b & 0x80 != 0);
    let len = read_int(block, pos, 7)?;
    let raw = pos
        .checked_add(len)
        .and_then(|end| block.get(*pos..end))
        .ok_or_else(|| invalid("HPACK string cut short"))?;
    *pos += len;
    Ok((huffman, raw))
}

/// Writes a short string literal without Huffman coding.
fn write_plain_string(out: &mut Vec<u8>, s: &[u8]) {
    debug_assert!(s.len() < 0x7f);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    use httlib_hpack::Encoder;
    use tokio::io::AsyncReadExt;

    const SOCKET: &[u8] = b"/run/crius/crius.sock";
    /// How grpc-go's encoder writes new fields: indexed when in the table,
    /// else a literal with incremental indexing, Huffman-coded.
    const GRPC_GO: u8 = Encoder::BEST_FORMAT
        | Encoder::WITH_INDEXING
        | Encoder::HUFFMAN_NAME
        | Encoder::HUFFMAN_VALUE;

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;

    fn headers(list: &[(&str, &[u8])]) -> Headers {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    fn request(authority: &[u8]) -> Headers {
        headers(&[
            (":method", b"POST"),
            (":scheme", b"http"),
            (":path", b"/runtime.v1.RuntimeService/Version"),
            (":authority", authority),
            ("content-type", b"application/grpc"),
            ("user-agent", b"grpc-go/1.58.3"),
            ("te", b"trailers"),
        ])
    }

    fn encode(encoder: &mut Encoder<'_>, headers: &Headers, flags: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let r = encoder.encode((name.clone(), value.clone(), flags), &mut out);
            assert!(r.is_ok(), "encoding {name:?}: {r:?}");
        }
        out
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(&mut out, payload.len(), kind, flags, stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings() -> Vec<u8> {
        // SETTINGS_ENABLE_PUSH = 0, SETTINGS_INITIAL_WINDOW_SIZE = 4 MiB.
        frame(4, 0, 0, &[0, 2, 0, 0, 0, 0, 0, 4, 0, 0x40, 0, 0])
    }

    fn data(stream: u32, payload: &[u8]) -> Vec<u8> {
        frame(0, FLAG_END_STREAM, stream, payload)
    }

    fn headers_frame(stream: u32, block: &[u8]) -> Vec<u8> {
        frame(TYPE_HEADERS, FLAG_END_HEADERS, stream, block)
    }

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    /// Hands out its input in the given pieces, one piece (or what fits) per
    /// read, answering every other read with `Pending` first.
    struct Pieces {
        pieces: VecDeque<Vec<u8>>,
        stall: bool,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.stall = !this.stall;
            if this.stall {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(piece) = this.pieces.front_mut() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                piece.drain(..n);
                if piece.is_empty() {
                    this.pieces.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Runs `input`, cut in `piece`-byte pieces, through the fix, reading
    /// `read`-byte buffers at a time.
    async fn run_with(
        input: &[u8],
        piece: usize,
        read: usize,
        max_block: usize,
    ) -> io::Result<Vec<u8>> {
        let pieces = input.chunks(piece).map(<[u8]>::to_vec).collect();
        let mut fix = AuthorityFix::with_max_header_block(
            Pieces {
                pieces,
                stall: false,
            },
            max_block,
        );
        let mut out = Vec::new();
        let mut buf = vec![0u8; read];
        loop {
            let n = fix.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    async fn run(input: &[u8]) -> Vec<u8> {
        match run_with(input, usize::MAX, 8192, DEFAULT_MAX_HEADER_BLOCK).await {
            Ok(out) => out,
            Err(e) => panic!("rewriting failed: {e}"),
        }
    }

    async fn run_err(input: &[u8], max_block: usize) -> io::Error {
        match run_with(input, 7, 8192, max_block).await {
            Ok(out) => panic!("expected an error, got {} bytes", out.len()),
            Err(e) => e,
        }
    }

    struct Frame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        assert_eq!(bytes.get(..PREFACE.len()), Some(PREFACE), "preface");
        let mut rest = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            assert!(rest.len() >= FRAME_HEADER_LEN, "cut frame header");
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            assert!(len <= OUT_FRAME_MAX, "frame of {len} bytes");
            let end = FRAME_HEADER_LEN + len;
            assert!(rest.len() >= end, "cut frame");
            out.push(Frame {
                kind: rest[3],
                flags: rest[4],
                stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
                payload: rest[FRAME_HEADER_LEN..end].to_vec(),
            });
            rest = &rest[end..];
        }
        out
    }

    /// Decodes the header blocks of `bytes` (in order) with one fresh
    /// decoder, checking the framing this module promises.
    fn decode_blocks(bytes: &[u8]) -> Vec<(u32, Headers)> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut out = Vec::new();
        let mut open: Option<(u32, Vec<u8>)> = None;
        for f in frames(bytes) {
            match f.kind {
                TYPE_HEADERS => {
                    assert!(open.is_none(), "HEADERS inside a block");
                    assert_eq!(f.flags & FLAG_PADDED, 0, "padding left");
                    let skip = if f.flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
                    open = Some((f.stream, f.payload[skip..].to_vec()));
                }
                TYPE_CONTINUATION => match &mut open {
                    Some((stream, block)) => {
                        assert_eq!(*stream, f.stream);
                        block.extend_from_slice(&f.payload);
                    }
                    None => panic!("CONTINUATION outside a block"),
                },
                _ => assert!(open.is_none(), "frame inside a block"),
            }
            if matches!(f.kind, TYPE_HEADERS | TYPE_CONTINUATION)
                && f.flags & FLAG_END_HEADERS != 0
                && let Some((stream, block)) = open.take()
            {
                match decoder.decode(&block) {
                    Ok(list) => out.push((stream, list)),
                    Err(e) => panic!("decoding the rewritten block: {e:?}"),
                }
            }
        }
        assert!(open.is_none(), "unterminated block");
        out
    }

    /// `headers` as the server should see them.
    fn fixed(mut headers: Headers) -> Headers {
        for (name, value) in &mut headers {
            if name == b":authority" && http::uri::Authority::try_from(&value[..]).is_err() {
                *value = REPLACEMENT.to_vec();
            }
        }
        headers
    }

    /// Two grpc-go style requests, the second one all indexed; returns the
    /// connection bytes and the encoded blocks.
    fn two_requests(authority: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut encoder = Encoder::default();
        let first = encode(&mut encoder, &request(authority), GRPC_GO);
        let second = encode(&mut encoder, &request(authority), GRPC_GO);
        let input = connection(&[
            settings(),
            headers_frame(1, &first),
            data(1, b"\0\0\0\0\x04\x0a\x02v1"),
            frame(4, 1, 0, &[]),
            headers_frame(3, &second),
            data(3, b"\0\0\0\0\x04\x0a\x02v1"),
        ]);
        (input, first, second)
    }

    #[test]
    fn static_names_match_rfc_7541() {
        let table = httlib_hpack::table::Table::with_dynamic_size(4096);
        for (i, name) in STATIC_NAMES.iter().enumerate() {
            let entry = table.get(i as u32 + 1).map(|(n, _)| n.to_vec());
            assert_eq!(entry.as_deref(), Some(name.as_bytes()), "index {}", i + 1);
        }
        assert!(table.get(62).is_none());
    }

    #[tokio::test]
    async fn socket_path_authority_becomes_localhost_and_stays_indexed() {
        let (input, first, second) = two_requests(SOCKET);
        // The client sent what grpc-go sends: `:authority` as a Huffman-coded
        // literal with incremental indexing of static name 1, then by index.
        let at = encode(
            &mut Encoder::default(),
            &request(SOCKET)[..3].to_vec(),
            GRPC_GO,
        )
        .len();
        assert_eq!(first[at], 0x41, "{first:x?}");
        assert_ne!(first[at + 1] & 0x80, 0, "Huffman-coded: {first:x?}");
        assert_eq!(second.len(), 7, "all indexed: {second:x?}");
        assert!(second.iter().all(|&b| b & 0x80 != 0));
        assert!(second[3] >= 0x80 | 62, "authority by dynamic index");
        // h2's view of the original: the socket path.
        let original = decode_blocks(&input);
        assert_eq!(original[1].1, request(SOCKET));

        let output = run(&input).await;
        let blocks = decode_blocks(&output);
        assert_eq!(
            blocks,
            vec![(1, request(b"localhost")), (3, request(b"localhost"))]
        );
        // Everything else passed byte for byte.
        let (before, after) = (frames(&input), frames(&output));
        assert_eq!(before.len(), after.len());
        for (a, b) in before.iter().zip(&after) {
            assert_eq!((a.kind, a.stream), (b.kind, b.stream));
            if a.kind != TYPE_HEADERS {
                assert_eq!((a.flags, &a.payload), (b.flags, &b.payload));
            }
        }
        // The second block is copied: it still references the entry.
        assert_eq!(after[4].payload, second);
    }

    #[tokio::test]
    async fn valid_authorities_pass_unchanged() {
        for authority in [
            &b"localhost"[..],
            b"localhost:1234",
            b"crius.sock",
            b"10.0.0.1:10010",
            b"[::1]:80",
        ] {
            let (input, _, _) = two_requests(authority);
            assert_eq!(run(&input).await, input, "{authority:?}");
        }
    }

    #[tokio::test]
    async fn odd_authorities_are_replaced() {
        for authority in [
            &b"unix:///run/crius/crius.sock"[..],
            b"/",
            b"",
            b"a b",
            b"\xff",
        ] {
            let (input, _, _) = two_requests(authority);
            let blocks = decode_blocks(&run(&input).await);
            assert_eq!(blocks[1].1, request(b"localhost"), "{authority:?}");
        }
        // The static entry (`:authority`, empty) sent by index.
        let mut block = vec![0x83, 0x86, 0x81];
        block.extend_from_slice(&[0x44, 1, b'/']);
        let input = connection(&[headers_frame(1, &block)]);
        let blocks = decode_blocks(&run(&input).await);
        assert_eq!(
            blocks[0].1,
            headers(&[
                (":method", b"POST"),
                (":scheme", b"http"),
                (":authority", b"localhost"),
                (":path", b"/")
            ])
        );
    }

    #[tokio::test]
    async fn reads_split_anywhere() {
        let (input, _, _) = two_requests(SOCKET);
        let whole = run(&input).await;
        for piece in [1, 2, 3, 5, 9, 10, 24, 25, 33, 100] {
            for read in [1, 3, 9, 64, 8192] {
                let out = run_with(&input, piece, read, DEFAULT_MAX_HEADER_BLOCK).await;
                assert_eq!(out.ok().as_ref(), Some(&whole), "piece {piece} read {read}");
            }
        }
    }

    #[tokio::test]
    async fn continuation_frames_in_and_out() {
        let mut encoder = Encoder::default();
        let first = encode(&mut encoder, &request(SOCKET), GRPC_GO);
        // A large header, not indexed, makes the rewritten block need
        // CONTINUATION frames too.
        let big = headers(&[("x-big", &[b'x'; 40_000][..])]);
        let mut second = encode(&mut encoder, &request(SOCKET), GRPC_GO);
        second.extend(encode(&mut encoder, &big, 0));
        let pieces: Vec<&[u8]> = first.chunks(first.len() / 3 + 1).collect();
        assert_eq!(pieces.len(), 3);
        let mut frames_in = vec![
            settings(),
            frame(TYPE_HEADERS, 0, 1, pieces[0]),
            frame(TYPE_CONTINUATION, 0, 1, pieces[1]),
            frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, pieces[2]),
            data(1, b"\0\0\0\0\0"),
        ];
        let (a, b) = second.split_at(10);
        frames_in.push(frame(TYPE_HEADERS, FLAG_END_STREAM, 3, a));
        frames_in.push(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, b));
        let output = run(&connection(&frames_in)).await;
        let mut expected = request(b"localhost");
        expected.extend(big);
        assert_eq!(
            decode_blocks(&output),
            vec![(1, request(b"localhost")), (3, expected)]
        );
        let out = frames(&output);
        let kinds: Vec<(u8, u8, u32)> = out.iter().map(|f| (f.kind, f.flags, f.stream)).collect();
        assert_eq!(
            kinds,
            vec![
                (4, 0, 0),
                (TYPE_HEADERS, FLAG_END_HEADERS, 1),
                (0, FLAG_END_STREAM, 1),
                (TYPE_HEADERS, FLAG_END_STREAM, 3),
                (TYPE_CONTINUATION, 0, 3),
                (TYPE_CONTINUATION, FLAG_END_HEADERS, 3),
            ]
        );
        assert_eq!(out[3].payload.len(), OUT_FRAME_MAX);
    }

    #[tokio::test]
    async fn padding_is_dropped_and_priority_kept() {
        let mut encoder = Encoder::default();
        let block = encode(&mut encoder, &request(SOCKET), GRPC_GO);
        let priority = [0x80, 0, 0, 0, 0x10];
        let mut payload = vec![7];
        payload.extend_from_slice(&priority);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0; 7]);
        let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
        let padded_only = {
            let mut p = vec![3];
            p.extend_from_slice(&block[..5]);
            p.extend_from_slice(&[0; 3]);
            p
        };
        let input = connection(&[
            frame(TYPE_HEADERS, flags, 1, &payload),
            frame(TYPE_HEADERS, FLAG_PADDED, 3, &padded_only),
            frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &block[5..]),
        ]);
        let output = run(&input).await;
        let out = frames(&output);
        assert_eq!(
            out[0].flags,
            FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM
        );
        assert_eq!(out[0].payload[..5], priority);
        assert_eq!(out[1].flags, FLAG_END_HEADERS);
        // The second block re-sends the literals: its `:authority` is a
        // literal with indexing again, rewritten again.
        assert_eq!(
            decode_blocks(&output),
            vec![(1, request(b"localhost")), (3, request(b"localhost"))]
        );
    }

    #[tokio::test]
    async fn every_literal_kind_and_name_form() {
        let mut encoder = Encoder::default();
        let mut block = Vec::new();
        for flags in [
            Encoder::WITH_INDEXING,
            Encoder::WITH_INDEXING | Encoder::HUFFMAN_VALUE,
            0,
            Encoder::HUFFMAN_VALUE,
            Encoder::NEVER_INDEXED,
            Encoder::NEVER_INDEXED | Encoder::HUFFMAN_VALUE | Encoder::HUFFMAN_NAME,
        ] {
            // Name by static index, then as a literal.
            let r = encoder.encode((1u32, SOCKET.to_vec(), flags), &mut block);
            assert!(r.is_ok());
            let r = encoder.encode((b":authority".to_vec(), SOCKET.to_vec(), flags), &mut block);
            assert!(r.is_ok());
        }
        // Name by dynamic index (the `:authority` literal inserted above),
        // then the entries themselves.
        let r = encoder.encode((62u32, b"/x".to_vec(), Encoder::WITH_INDEXING), &mut block);
        assert!(r.is_ok());
        for index in [62u32, 63, 64, 65] {
            let r = encoder.encode(index, &mut block);
            assert!(r.is_ok());
        }
        let input = connection(&[headers_frame(1, &block)]);
        let blocks = decode_blocks(&run(&input).await);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].1.len(), 17);
        for (name, value) in &blocks[0].1 {
            assert_eq!((&name[..], &value[..]), (&b":authority"[..], REPLACEMENT));
        }
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    /// Random blocks with small tables (many evictions) and size updates:
    /// what the server decodes is what the client sent, authorities fixed.
    #[tokio::test]
    async fn tables_stay_in_sync_under_evictions() {
        let names: [&[u8]; 6] = [
            b":authority",
            b":path",
            b"content-type",
            b"x-custom",
            b"grpc-timeout",
            b":authority",
        ];
        let values: [&[u8]; 8] = [
            SOCKET,
            b"/var/run/containerd/containerd.sock",
            b"localhost",
            b"example.com:8080",
            b"/",
            b"application/grpc",
            b"a-rather-long-value-that-fills-the-table-quickly-0123456789",
            b"",
        ];
        let mut rng = Rng(0x5eed_1234_abcd_0042);
        for round in 0..40 {
            let mut encoder = Encoder::default();
            let mut frames_in = Vec::new();
            let mut expected = Vec::new();
            for i in 0..12u32 {
                let stream = 2 * i + 1;
                let mut block = Vec::new();
                if rng.below(4) == 0 {
                    let size = [0usize, 40, 64, 100, 150, 256, 4096][rng.below(7)];
                    let r = encoder.update_max_dynamic_size(size as u32, &mut block);
                    assert!(r.is_ok());
                }
                let mut list = Vec::new();
                for _ in 0..1 + rng.below(8) {
                    let name = names[rng.below(names.len())].to_vec();
                    let value = values[rng.below(values.len())].to_vec();
                    let flags = [
                        GRPC_GO,
                        Encoder::BEST_FORMAT | Encoder::WITH_INDEXING,
                        Encoder::WITH_INDEXING | Encoder::HUFFMAN_NAME,
                        Encoder::HUFFMAN_VALUE,
                        Encoder::NEVER_INDEXED,
                        Encoder::BEST_FORMAT | Encoder::HUFFMAN_VALUE,
                    ][rng.below(6)];
                    let r = encoder.encode((name.clone(), value.clone(), flags), &mut block);
                    assert!(r.is_ok(), "{r:?}");
                    list.push((name, value));
                }
                expected.push((stream, fixed(list)));
                frames_in.push(headers_frame(stream, &block));
            }
            let input = connection(&frames_in);
            let piece = 1 + rng.below(40);
            let output = match run_with(&input, piece, 64, DEFAULT_MAX_HEADER_BLOCK).await {
                Ok(out) => out,
                Err(e) => panic!("round {round}: {e}"),
            };
            assert_eq!(decode_blocks(&output), expected, "round {round}");
        }
    }

    #[tokio::test]
    async fn non_http2_passes_through() {
        let input = b"GET / HTTP/1.1\r\nHost: /run/crius/crius.sock\r\n\r\n".to_vec();
        assert_eq!(run(&input).await, input);
        let short = PREFACE[..10].to_vec();
        assert_eq!(run(&short).await, short);
    }

    #[tokio::test]
    async fn malformed_input_closes_the_connection() {
        let mut encoder = Encoder::default();
        let block = encode(&mut encoder, &request(SOCKET), GRPC_GO);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("cut integer", headers_frame(1, &[0x3f])),
            ("cut string", headers_frame(1, &[0x41, 0x05, b'a'])),
            ("index 0", headers_frame(1, &[0x80])),
            ("dynamic index out of range", headers_frame(1, &[0x80 | 62])),
            ("name index out of range", headers_frame(1, &[0x40 | 63, 0])),
            ("bad huffman", headers_frame(1, &[0x41, 0x81, 0x00])),
            (
                "huge integer",
                headers_frame(1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            ),
            (
                "huge table",
                headers_frame(1, &[0x3f, 0xff, 0xff, 0xff, 0x7f]),
            ),
            (
                "continuation without headers",
                frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &block),
            ),
            (
                "push promise",
                frame(TYPE_PUSH_PROMISE, FLAG_END_HEADERS, 1, &[0, 0, 0, 2]),
            ),
            (
                "padding too long",
                frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[5, 0x82]),
            ),
            (
                "priority cut",
                frame(TYPE_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1, &[0, 0]),
            ),
        ];
        for (what, bad) in cases {
            let e = run_err(&connection(&[settings(), bad]), DEFAULT_MAX_HEADER_BLOCK).await;
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        }
        // Another frame where a CONTINUATION must come.
        for interloper in [
            data(1, b""),
            frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &block),
        ] {
            let input = connection(&[frame(TYPE_HEADERS, 0, 1, &block[..4]), interloper]);
            let e = run_err(&input, DEFAULT_MAX_HEADER_BLOCK).await;
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        // Too large: one frame, then a block of several.
        let input = connection(&[headers_frame(1, &block)]);
        let e = run_err(&input, block.len() - 1).await;
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let (a, b) = block.split_at(block.len() / 2);
        let input = connection(&[
            frame(TYPE_HEADERS, 0, 1, a),
            frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b),
        ]);
        let e = run_err(&input, block.len() - 1).await;
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(run_with(&input, 7, 8192, block.len()).await.is_ok());

        // Once rejected, the connection stays rejected.
        let input = connection(&[headers_frame(1, &[0x80]), headers_frame(3, &block)]);
        let mut fix = AuthorityFix::new(Pieces {
            pieces: VecDeque::from([input]),
            stall: false,
        });
        let mut buf = [0u8; 4096];
        loop {
            match fix.read(&mut buf).await {
                Ok(0) => panic!("EOF instead of an error"),
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    break;
                }
            }
        }
        let again = fix.read(&mut buf).await;
        assert!(again.is_err(), "{again:?}");
    }
}
