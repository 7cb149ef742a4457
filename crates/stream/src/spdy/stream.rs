//! One SPDY stream and its two halves.
//!
//! [`RecvHalf`] reads what the peer sent (tokio `AsyncRead`, or whole
//! chunks) and credits it back with WINDOW_UPDATE as it is read;
//! [`SendHalf`] writes DATA frames (tokio `AsyncWrite`) within the peer's
//! window and the session's write queue, `shutdown`/[`SendHalf::finish`]
//! sends FIN, [`SendHalf::reset`] RST_STREAM. Dropping a send half that
//! did not finish sends FIN; dropping a receive half discards (and
//! credits) whatever the peer sends later.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::Error;
use super::frame::{Frame, RstStatus};
use super::headers::Headers;
use super::state::Shared;

/// A stream: its id, the headers that opened it (for a stream the peer
/// opened) or answered it (for one this side opened), and its halves.
pub struct Stream {
    id: u32,
    headers: Headers,
    /// What the peer sends.
    pub recv: RecvHalf,
    /// What this side sends.
    pub send: SendHalf,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32, headers: Headers) -> Self {
        Self {
            id,
            headers,
            recv: RecvHalf {
                shared: shared.clone(),
                id,
                pending: Bytes::new(),
            },
            send: SendHalf { shared, id },
        }
    }

    pub(crate) fn set_headers(&mut self, headers: Headers) {
        self.headers = headers;
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The peer's headers for this stream.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The two halves, to use from different tasks.
    pub fn split(self) -> (RecvHalf, SendHalf) {
        (self.recv, self.send)
    }
}

/// The receiving half of a stream.
pub struct RecvHalf {
    shared: Arc<Shared>,
    id: u32,
    pending: Bytes,
}

impl RecvHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next chunk the peer sent, `None` after its FIN. A reset stream
    /// or a session that ended before the FIN gives an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Everything up to the peer's FIN, at most `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(Error::Protocol(format!(
                    "more than {limit} bytes on the stream"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        let mut inner = self.shared.lock();
        let closed = inner.closed.clone();
        let Some(stream) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(Error::Closed("the stream is gone".into())));
        };
        // What arrived before a reset is still read: Go's spdystream ends
        // a session by resetting (CANCEL) streams it has written to but
        // not closed, e.g. the error stream right after the exit status.
        if let Some(chunk) = stream.recv.pop_front() {
            stream.recv_len -= chunk.len();
            inner.credit_stream(self.id, chunk.len());
            return Poll::Ready(Ok(Some(chunk)));
        }
        if let Some(status) = stream.reset {
            return Poll::Ready(Err(Error::Reset(status)));
        }
        if stream.remote_fin {
            return Poll::Ready(Ok(None));
        }
        if let Some(reason) = closed {
            return Poll::Ready(Err(reason));
        }
        stream.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.poll_chunk(cx) {
                Poll::Ready(Ok(Some(chunk))) => self.pending = chunk,
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        let unread = match inner.streams.get_mut(&self.id) {
            Some(stream) => {
                stream.reader_alive = false;
                stream.recv.clear();
                std::mem::take(&mut stream.recv_len)
            }
            None => return,
        };
        inner.credit_stream(self.id, unread + self.pending.len());
        inner.release(self.id);
    }
}

/// The sending half of a stream.
pub struct SendHalf {
    shared: Arc<Shared>,
    id: u32,
}

impl SendHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Writes all of `data`, waiting for window and queue room.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_send(cx, data)).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Sends FIN: the peer reads the end of the stream.
    pub fn finish(&mut self) -> Result<(), Error> {
        let mut inner = self.shared.lock();
        if let Some(reason) = &inner.closed {
            return Err(reason.clone());
        }
        let Some(stream) = inner.streams.get_mut(&self.id) else {
            return Err(Error::Closed("the stream is gone".into()));
        };
        if let Some(status) = stream.reset {
            return Err(Error::Reset(status));
        }
        if stream.local_fin {
            return Ok(());
        }
        stream.local_fin = true;
        // After the data already queued for it.
        inner.out_data.push_back(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        });
        inner.wake_io();
        Ok(())
    }

    /// Aborts the stream with RST_STREAM.
    pub fn reset(&mut self, status: RstStatus) {
        let mut inner = self.shared.lock();
        if inner
            .streams
            .get(&self.id)
            .is_some_and(|s| s.reset.is_none())
        {
            inner.reset_stream(self.id, status);
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize, Error>> {
        let mut inner = self.shared.lock();
        if let Some(reason) = &inner.closed {
            return Poll::Ready(Err(reason.clone()));
        }
        if inner.out_data_bytes >= inner.config.write_queue {
            inner.queue_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let enforce = inner.enforce_window();
        let mut allowed = data.len().min(inner.config.max_data_frame);
        if enforce {
            let session = usize::try_from(inner.session_send_window.max(0)).unwrap_or(0);
            allowed = allowed.min(session);
        }
        let Some(stream) = inner.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(Error::Closed("the stream is gone".into())));
        };
        if let Some(status) = stream.reset {
            return Poll::Ready(Err(Error::Reset(status)));
        }
        if stream.local_fin {
            return Poll::Ready(Err(Error::AlreadyFinished));
        }
        if enforce {
            allowed = allowed.min(usize::try_from(stream.send_window.max(0)).unwrap_or(0));
        }
        if allowed == 0 {
            stream.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let sent = i64::try_from(allowed).unwrap_or(i64::MAX);
        stream.send_window -= sent;
        inner.session_send_window -= sent;
        inner.out_data_bytes += allowed;
        inner.out_data.push_back(Frame::Data {
            stream_id: self.id,
            fin: false,
            data: Bytes::copy_from_slice(&data[..allowed]),
        });
        inner.wake_io();
        Poll::Ready(Ok(allowed))
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.poll_send(cx, buf).map_err(io::Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued frames go out as soon as the writer task gets to them.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.finish().map_err(io::Error::from))
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        let unfinished = {
            let inner = self.shared.lock();
            inner
                .streams
                .get(&self.id)
                .is_some_and(|s| !s.local_fin && s.reset.is_none())
                && inner.closed.is_none()
        };
        if unfinished {
            let _ = self.finish();
        }
        let mut inner = self.shared.lock();
        if let Some(stream) = inner.streams.get_mut(&self.id) {
            stream.writer_alive = false;
        }
        inner.release(self.id);
    }
}
