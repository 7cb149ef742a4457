//! Gives old grpc-go clients a `:authority` that h2 accepts.
//!
//! grpc-go clients that dial a unix socket through a custom dialer without an
//! explicit authority (crictl and kubelet up to about 1.29) send the socket
//! *path*, e.g. `/run/crius/crius.sock`, as the HTTP/2 `:authority`. h2, under
//! tonic, finds no URI authority there and resets the stream with
//! PROTOCOL_ERROR (h2 issue #487). [`AuthorityFix`] sits between the socket
//! and tonic and rewrites such an `:authority` to `localhost` on the way in.
//!
//! Writes (server to client) pass untouched. Reads are parsed as HTTP/2
//! (`frames`): the client preface, then frames. Every frame but HEADERS and
//! CONTINUATION passes byte for byte, its payload streamed rather than
//! buffered; SETTINGS too, unread (see below). A header block (HEADERS, then
//! CONTINUATION up to END_HEADERS) is collected and decoded (`hpack`) with
//! loona-hpack's decoder, one per connection (but for a HEADERS frame that
//! depends on its own stream, which passes undecoded: h2 resets that stream
//! without decoding it, so its table never sees it). A block without an
//! `:authority` to fix passes as it came, frames, padding and all. A block
//! with one goes on re-encoded: its representations as they were but for
//! the fixed fields (see below), as one HEADERS frame without padding, with
//! the PRIORITY fields if it had them, followed by CONTINUATION frames past
//! 16384 bytes (the smallest SETTINGS_MAX_FRAME_SIZE a server may
//! advertise).
//!
//! # The dynamic tables
//!
//! The client's encoder and the server's decoder each keep a dynamic table
//! (RFC 7541 §2.3.2) and must agree on it, though a fixed value differs.
//! Call C the client's table and S the server's. The invariant, after every
//! header block: S holds C's entries, newest first, with the same names and
//! values except that an `:authority` that is no URI authority has its
//! replacement, and no entry of S is larger than its counterpart in C; after
//! them S may hold entries that C has evicted. So every index the client
//! sends means to the server the field it means to the client. It holds
//! because:
//!
//! - every representation that inserts into C reaches S as one that inserts
//!   the same entry: a fixed literal with incremental indexing stays one;
//! - the table's size limit starts at 4096 on both sides (RFC 7540 §6.5.2)
//!   and changes only by the dynamic table size updates the client encodes,
//!   which pass as sent. The SETTINGS_HEADER_TABLE_SIZE in the client's
//!   SETTINGS is about the other direction (the server's encoder); the
//!   server's reaches the client's encoder, which announces any change with
//!   a size update (RFC 7541 §4.2). So no SETTINGS needs reading;
//! - an inserted `:authority` is replaced by a value no longer than its own:
//!   `localhost` for one of 9 bytes or more, as many bytes of `localhost` for
//!   a shorter one (`/` becomes `l`). An empty one has no such replacement
//!   and passes as it is: h2 resets that one request, and later references
//!   to the entry are fixed like the static `:authority` below;
//! - both tables evict oldest first when an insertion or a size update needs
//!   room, and S, never larger entry for entry, never needs to evict one of
//!   the entries that C still holds.
//!
//! Fields are fixed so: a literal (any kind) gets the same representation,
//! name as sent, with the replacement value; an indexed field that refers
//! to an entry whose replacement in S is `localhost` passes as it is; one
//! that refers to another (the static `:authority`, whose value is empty, or
//! a short or empty inserted one) becomes a literal without indexing,
//! `:authority: localhost`, which leaves the tables alone.
//!
//! Input it cannot parse closes the connection with an error, once the
//! frames before it have reached the server (so h2 answers what it already
//! has): passing bytes on unparsed from that point would desynchronize the
//! tables.

mod frames;
mod hpack;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

use frames::Reader;

/// The largest header block (all its HEADERS and CONTINUATION payloads)
/// accepted by [`AuthorityFix::new`]; a larger one closes the connection.
pub const DEFAULT_MAX_HEADER_BLOCK: usize = 1 << 20;

/// The least room a read from the socket gets.
const READ_CHUNK: usize = 16_384;

/// Why a client's bytes were refused (the connection closes).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
enum Malformed {
    #[error("HTTP/2 from client: {0}")]
    Framing(&'static str),
    #[error("HTTP/2 from client: header block larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP/2 from client: HPACK: {0}")]
    Hpack(#[from] loona_hpack::decoder::DecoderError),
}

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
        loop {
            let output = &mut this.reader.output;
            if !output.is_empty() || buf.remaining() == 0 {
                let n = output.len().min(buf.remaining());
                buf.put_slice(&output[..n]);
                output.advance(n);
                return Poll::Ready(Ok(()));
            }
            let processed = this.reader.process();
            if !this.reader.output.is_empty() {
                // Frames before an error go to the server first.
                continue;
            }
            if let Err(e) = processed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            // Everything read is processed: read more. At the end of input a
            // frame cut short is dropped, and h2 sees the connection end
            // between frames.
            if ready!(fill(&mut this.inner, &mut this.reader.input, cx))? == 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Reads more bytes into `input`, with room for at least [`READ_CHUNK`];
/// `Ok(0)` at its end.
fn fill<S: AsyncRead + Unpin>(
    inner: &mut S,
    input: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    // Into spare capacity, unzeroed: zeroing the chunk first cost every
    // read of a client that trickles its bytes 16 KiB of writes.
    input.reserve(READ_CHUNK);
    tokio_util::io::poll_read_buf(Pin::new(inner), cx, input)
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
