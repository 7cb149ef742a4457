//! The client's bytes as HTTP/2: the preface, frames passed on, header blocks
//! collected for [`Rewriter`] and written out again. No I/O: the caller fills
//! `input`, calls [`Reader::process`] and drains `output`.

use bytes::{Buf, BufMut, BytesMut};

use super::Malformed;
use super::hpack::Rewriter;

pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(super) const FRAME_HEADER_LEN: usize = 9;
/// Payload size of the frames this module writes: the default (and smallest
/// allowed) SETTINGS_MAX_FRAME_SIZE.
pub(super) const OUT_FRAME_MAX: usize = 16_384;

pub(super) const TYPE_HEADERS: u8 = 0x1;
pub(super) const TYPE_PUSH_PROMISE: u8 = 0x5;
pub(super) const TYPE_CONTINUATION: u8 = 0x9;
pub(super) const FLAG_END_STREAM: u8 = 0x1;
pub(super) const FLAG_END_HEADERS: u8 = 0x4;
pub(super) const FLAG_PADDED: u8 = 0x8;
pub(super) const FLAG_PRIORITY: u8 = 0x20;

/// A frame header (RFC 7540 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    /// Stream identifier as sent, reserved bit included.
    stream: [u8; 4],
}

impl Head {
    fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: [b[5], b[6], b[7], b[8]],
        }
    }

    /// The stream identifier without the reserved bit, which a receiver
    /// ignores (RFC 7540 §4.1), as h2 does.
    fn stream_id(&self) -> u32 {
        stream_id(self.stream)
    }

    /// Whether this HEADERS frame, with `payload`, names its own stream as
    /// the one it depends on. h2 resets such a stream (RFC 7540 §5.3.1)
    /// before it decodes the block, so the server's table never sees it;
    /// the fix must not decode it either, nor refuse it for bad HPACK.
    fn depends_on_itself(&self, payload: &[u8]) -> bool {
        let pad = usize::from(self.flags & FLAG_PADDED != 0);
        let dependency = payload.get(pad..).and_then(<[u8]>::first_chunk::<5>);
        match dependency {
            // The dependency's first bit is the exclusive flag.
            Some(&[a, b, c, d, _]) if self.flags & FLAG_PRIORITY != 0 => {
                stream_id([a, b, c, d]) == self.stream_id()
            }
            _ => false,
        }
    }
}

/// A stream identifier without the bit before it.
fn stream_id(bytes: [u8; 4]) -> u32 {
    u32::from_be_bytes(bytes) & 0x7fff_ffff
}

/// Writes a frame: its header, then the pieces of its payload.
fn write_frame(out: &mut impl BufMut, kind: u8, flags: u8, stream: [u8; 4], payload: &[&[u8]]) {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_slice(&[kind, flags]);
    out.put_slice(&stream);
    payload.iter().for_each(|p| out.put_slice(p));
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// This many bytes of the client preface seen.
    Preface(usize),
    /// No HTTP/2 preface: everything passes untouched (the server rejects it).
    Transparent,
    /// At a frame boundary.
    FrameHeader,
    /// This many payload bytes of a passed-through frame still to go (> 0).
    Pass(usize),
    /// Waiting for the whole of a HEADERS or CONTINUATION frame.
    HeaderFrame(Head),
    /// Input was rejected for this; reads keep failing.
    Failed(Malformed),
}

/// A header block being collected.
struct Block {
    /// Its HEADERS frame's header: stream, flags.
    head: Head,
    priority: Option<[u8; 5]>,
    /// The HPACK bytes: the payloads without padding and priority fields.
    fragment: Vec<u8>,
    /// The frames as received, to pass on if nothing is rewritten.
    raw: Vec<u8>,
}

impl Block {
    /// Starts a block with the `payload` of its HEADERS frame.
    fn open(head: Head, payload: &[u8]) -> Result<Self, Malformed> {
        let short = Malformed::Framing("HEADERS too short for its padding or priority");
        let mut rest = payload;
        let mut pad = 0;
        if head.flags & FLAG_PADDED != 0 {
            let (&n, tail) = rest.split_first().ok_or(short)?;
            (pad, rest) = (usize::from(n), tail);
        }
        let mut priority = None;
        if head.flags & FLAG_PRIORITY != 0 {
            let (fields, tail) = rest.split_first_chunk::<5>().ok_or(short)?;
            (priority, rest) = (Some(*fields), tail);
        }
        let fragment = rest.get(..rest.len().wrapping_sub(pad)).ok_or(short)?;
        Ok(Self {
            head,
            priority,
            fragment: fragment.to_vec(),
            raw: Vec::new(),
        })
    }

    /// Writes the block with `hpack` for its fragment: one HEADERS frame,
    /// then CONTINUATION frames as needed, no padding.
    fn write(&self, hpack: &[u8], out: &mut impl BufMut) {
        let priority = self.priority.as_ref().map_or(&[][..], |p| &p[..]);
        let (first, rest) = hpack.split_at(hpack.len().min(OUT_FRAME_MAX - priority.len()));
        let mut flags = self.head.flags & FLAG_END_STREAM;
        if self.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        let end = |last: bool| if last { FLAG_END_HEADERS } else { 0 };
        flags |= end(rest.is_empty());
        let stream = self.head.stream;
        write_frame(out, TYPE_HEADERS, flags, stream, &[priority, first]);
        let mut chunks = rest.chunks(OUT_FRAME_MAX).peekable();
        while let Some(chunk) = chunks.next() {
            let flags = end(chunks.peek().is_none());
            write_frame(out, TYPE_CONTINUATION, flags, stream, &[chunk]);
        }
    }
}

/// The client-to-server half of a connection.
pub(super) struct Reader {
    state: State,
    /// Bytes read and not yet processed.
    pub(super) input: BytesMut,
    /// Bytes processed and not yet handed out.
    pub(super) output: BytesMut,
    block: Option<Block>,
    hpack: Rewriter,
    max_block: usize,
}

impl Reader {
    pub(super) fn new(max_block: usize) -> Self {
        Self {
            state: State::Preface(0),
            input: BytesMut::new(),
            output: BytesMut::new(),
            block: None,
            hpack: Rewriter::new(),
            max_block,
        }
    }

    /// Processes the input until it needs more. After an error the output
    /// made before it is still there to hand out, and every later call
    /// fails the same.
    pub(super) fn process(&mut self) -> Result<(), Malformed> {
        loop {
            match self.step() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) if self.state == State::Failed(e) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "closing a client connection");
                    self.state = State::Failed(e);
                    self.block = None;
                    self.input.clear();
                    return Err(e);
                }
            }
        }
    }

    /// One step; false if it needs more input.
    fn step(&mut self) -> Result<bool, Malformed> {
        match self.state {
            State::Failed(e) => Err(e),
            State::Preface(seen) => Ok(self.preface(seen)),
            State::Transparent => Ok(self.pass(usize::MAX) > 0),
            State::Pass(left) => {
                let n = self.pass(left);
                self.state = match left - n {
                    0 => State::FrameHeader,
                    left => State::Pass(left),
                };
                Ok(n > 0)
            }
            State::FrameHeader => self.frame_header(),
            State::HeaderFrame(head) => self.header_frame(head),
        }
    }

    /// Moves up to `limit` bytes from input to output; how many it moved.
    fn pass(&mut self, limit: usize) -> usize {
        let n = self.input.len().min(limit);
        self.output.extend_from_slice(&self.input[..n]);
        self.input.advance(n);
        n
    }

    fn preface(&mut self, seen: usize) -> bool {
        let want = PREFACE.get(seen..).unwrap_or_default();
        let n = self.input.len().min(want.len());
        if n == 0 {
            return false;
        }
        self.state = if self.input[..n] != want[..n] {
            // Not HTTP/2 with prior knowledge: nothing to fix.
            State::Transparent
        } else if self.pass(n) == want.len() {
            State::FrameHeader
        } else {
            State::Preface(seen + n)
        };
        true
    }

    fn frame_header(&mut self) -> Result<bool, Malformed> {
        let Some(bytes) = self.input.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(false);
        };
        let head = Head::parse(bytes);
        let continues =
            |b: &Block| head.kind == TYPE_CONTINUATION && head.stream_id() == b.head.stream_id();
        match head.kind {
            _ if self.block.as_ref().is_some_and(|b| !continues(b)) => {
                return Err(Malformed::Framing(
                    "a header block continues with no CONTINUATION",
                ));
            }
            TYPE_CONTINUATION if self.block.is_none() => {
                return Err(Malformed::Framing("CONTINUATION outside a header block"));
            }
            // No client may send one (RFC 7540 §8.2). h2 decodes its block
            // (then ignores it on a stream it has reset): passed unread, it
            // would put the tables out of step.
            TYPE_PUSH_PROMISE => return Err(Malformed::Framing("PUSH_PROMISE")),
            TYPE_HEADERS | TYPE_CONTINUATION if head.len > self.max_block => {
                return Err(Malformed::TooLarge(self.max_block));
            }
            TYPE_HEADERS | TYPE_CONTINUATION => self.state = State::HeaderFrame(head),
            _ => {
                self.pass(FRAME_HEADER_LEN);
                self.state = match head.len {
                    0 => State::FrameHeader,
                    len => State::Pass(len),
                };
            }
        }
        Ok(true)
    }

    /// Takes a whole HEADERS or CONTINUATION frame into the block; at the end
    /// of the block, writes it out, rewritten if need be.
    fn header_frame(&mut self, head: Head) -> Result<bool, Malformed> {
        let Some(frame) = self.input.get(..FRAME_HEADER_LEN + head.len) else {
            return Ok(false);
        };
        let payload = &frame[FRAME_HEADER_LEN..];
        let mut block = match self.block.take() {
            Some(mut block) => {
                block.fragment.extend_from_slice(payload);
                block
            }
            None if head.depends_on_itself(payload) => {
                // No block opens: a CONTINUATION after it is refused, as
                // h2 refuses it.
                self.pass(FRAME_HEADER_LEN + head.len);
                self.state = State::FrameHeader;
                return Ok(true);
            }
            None => Block::open(head, payload)?,
        };
        block.raw.extend_from_slice(frame);
        self.input.advance(FRAME_HEADER_LEN + head.len);
        // Padding and empty CONTINUATION frames add to the raw frames alone.
        if block.fragment.len() > self.max_block || block.raw.len() > 2 * self.max_block {
            return Err(Malformed::TooLarge(self.max_block));
        }
        self.state = State::FrameHeader;
        if head.flags & FLAG_END_HEADERS == 0 {
            self.block = Some(block);
        } else if let Some(hpack) = self.hpack.rewrite(&block.fragment)? {
            block.write(&hpack, &mut self.output);
        } else {
            self.output.extend_from_slice(&block.raw);
        }
        Ok(true)
    }
}
