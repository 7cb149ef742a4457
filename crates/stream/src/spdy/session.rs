//! A SPDY/3.1 session over any tokio byte stream, as client or server.
//!
//! [`Session::spawn`] starts two tasks: the reader cuts frames out of the
//! connection and applies them (pausing while a stream's buffer is full, so
//! memory stays bounded even against a peer that ignores windows), the
//! writer sends queued frames (control frames first) through the one
//! outgoing compression context. Each side announces its window and stream
//! limit in SETTINGS at the start.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::config::{Config, DEFAULT_WINDOW, Role};
use super::error::Error;
use super::frame::setting;
use super::frame::{Decoded, Frame, FrameDecoder, FrameEncoder, GoAwayStatus, RstStatus, Setting};
use super::headers::Headers;
use super::state::{Inner, Shared};
use super::stream::Stream;

/// A handle on a running session; clones share it.
#[derive(Clone)]
pub struct Session {
    pub(crate) shared: Arc<Shared>,
}

impl Session {
    /// Runs a session over `io` (an upgraded HTTP/1.1 connection). Needs a
    /// tokio runtime; the session's two tasks end with the connection.
    pub fn spawn<T>(io: T, role: Role, config: Config) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let shared = Shared::new(role, config.clone());
        let (read, write) = tokio::io::split(io);
        shared.lock().send_ctrl(Frame::Settings {
            clear: false,
            entries: vec![
                Setting {
                    flags: 0,
                    id: setting::MAX_CONCURRENT_STREAMS,
                    value: u32::try_from(config.max_streams).unwrap_or(u32::MAX),
                },
                Setting {
                    flags: 0,
                    id: setting::INITIAL_WINDOW_SIZE,
                    value: config.initial_window,
                },
            ],
        });
        if let Some(delta) = config
            .session_window
            .checked_sub(DEFAULT_WINDOW)
            .filter(|d| *d > 0)
        {
            shared.lock().send_ctrl(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
        tokio::spawn(read_loop(shared.clone(), read, config));
        tokio::spawn(write_loop(shared.clone(), write));
        Session { shared }
    }

    /// The next stream the peer opens, answered with an empty SYN_REPLY;
    /// `None` once the session is over or the peer sent GOAWAY and every
    /// stream it opened before was taken.
    pub async fn accept(&self) -> Option<Stream> {
        loop {
            let changed = self.shared.changed.notified();
            {
                let mut inner = self.shared.lock();
                if let Some((id, headers)) = inner.incoming.pop_front() {
                    let fin = inner.streams.get(&id).is_some_and(|s| s.local_fin);
                    inner.send_ctrl(Frame::SynReply {
                        stream_id: id,
                        fin,
                        headers: Headers::new(),
                    });
                    return Some(Stream::new(self.shared.clone(), id, headers));
                }
                if inner.closed.is_some() || inner.goaway_received {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// Opens a stream with `headers` (FIN at once if `fin`: this side will
    /// send nothing) and waits for the peer's SYN_REPLY.
    pub async fn open(&self, headers: Headers, fin: bool) -> Result<Stream, Error> {
        let id = {
            let mut inner = self.shared.lock();
            let id = inner.new_local_stream()?;
            if let Some(stream) = inner.streams.get_mut(&id) {
                stream.local_fin = fin;
            }
            inner.send_ctrl(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin,
                unidirectional: false,
                headers,
            });
            id
        };
        // The handle exists from here on, so the stream is released
        // whatever happens while waiting.
        let mut stream = Stream::new(self.shared.clone(), id, Headers::new());
        let reply = poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let closed = inner.closed.clone();
            let Some(state) = inner.streams.get_mut(&id) else {
                return Poll::Ready(Err(Error::Closed("the stream is gone".into())));
            };
            if let Some(status) = state.reset {
                return Poll::Ready(Err(Error::Reset(status)));
            }
            if let Some(headers) = state.reply.take() {
                return Poll::Ready(Ok(headers));
            }
            if let Some(reason) = closed {
                return Poll::Ready(Err(reason));
            }
            state.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        stream.set_headers(reply);
        Ok(stream)
    }

    /// Sends a PING and waits for its echo: the round trip.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = Instant::now();
        let id = {
            let mut inner = self.shared.lock();
            if let Some(reason) = &inner.closed {
                return Err(reason.clone());
            }
            let id = inner.next_ping;
            inner.next_ping = inner.next_ping.wrapping_add(2);
            inner.pings.insert(id, false);
            inner.send_ctrl(Frame::Ping { id });
            id
        };
        loop {
            let changed = self.shared.changed.notified();
            {
                let mut inner = self.shared.lock();
                if inner.pings.get(&id) == Some(&true) {
                    inner.pings.remove(&id);
                    return Ok(start.elapsed());
                }
                if let Some(reason) = &inner.closed {
                    return Err(reason.clone());
                }
            }
            changed.await;
        }
    }

    /// Sends GOAWAY: the peer may open no more streams; open ones go on.
    pub fn goaway(&self, status: GoAwayStatus) {
        let mut inner = self.shared.lock();
        if !inner.goaway_sent {
            inner.goaway_sent = true;
            let last = inner.last_peer_id;
            inner.send_ctrl(Frame::GoAway {
                last_good_stream_id: last,
                status,
            });
        }
    }

    /// Ends the session: GOAWAY, what is queued goes out, then the
    /// connection is shut.
    pub fn close(&self) {
        self.goaway(GoAwayStatus::OK);
        let mut inner = self.shared.lock();
        inner.close(Error::Closed("closed by this side".into()));
        drop(inner);
        self.shared.changed.notify_waiters();
    }

    /// Waits for the session's end and says why it ended.
    pub async fn closed(&self) -> Error {
        loop {
            let changed = self.shared.changed.notified();
            if let Some(reason) = self.shared.lock().closed.clone() {
                return reason;
            }
            changed.await;
        }
    }

    /// Resets stream `id` (for a stream whose handle is elsewhere).
    pub fn reset(&self, id: u32, status: RstStatus) {
        self.shared.lock().reset_stream(id, status);
    }
}

async fn read_loop<T: AsyncRead>(shared: Arc<Shared>, mut read: ReadHalf<T>, config: Config) {
    let mut decoder = FrameDecoder::new(config.max_frame, config.max_header_block);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let end = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(decoded)) => {
                apply(&shared, decoded);
                wait_for_room(&shared).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => break Err(Error::Frame(e)),
        }
        if shared.lock().closed.is_some() {
            break Ok(());
        }
        buf.reserve(16 * 1024);
        match read.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => {
                break Err(Error::Closed("the peer closed the connection".into()));
            }
            Ok(0) => {
                break Err(Error::Closed(format!(
                    "the connection ended inside a frame ({} bytes)",
                    buf.len()
                )));
            }
            Ok(_) => {}
            Err(e) => break Err(Error::Io(e.to_string())),
        }
    };
    let mut inner = shared.lock();
    match end {
        Err(e @ Error::Frame(_)) => inner.fail(e),
        Err(e) => inner.close(e),
        Ok(()) => {}
    }
    drop(inner);
    shared.changed.notify_waiters();
}

fn apply(shared: &Shared, decoded: Decoded) {
    let mut inner = shared.lock();
    match decoded {
        Decoded::Frame(frame) => {
            tracing::trace!(kind = frame.kind(), "SPDY frame in");
            inner.receive(frame);
        }
        Decoded::Skipped(kind) => {
            tracing::debug!(kind, "SPDY control frame of unknown type skipped")
        }
        Decoded::BadHeaders { stream_id, error } => {
            tracing::warn!(stream = stream_id, %error, "SPDY stream refused");
            refuse_bad_headers(&mut inner, stream_id);
        }
    }
    drop(inner);
    shared.changed.notify_waiters();
}

/// A stream whose header block did not parse is reset; a new one still
/// takes its id, so it cannot be reused.
fn refuse_bad_headers(inner: &mut Inner, id: u32) {
    if !inner.role.owns(id) && id > inner.last_peer_id {
        inner.last_peer_id = id;
    }
    inner.reset_stream(id, RstStatus::PROTOCOL_ERROR);
}

/// Waits while a stream holds more unread data than its window: the peer
/// (flow-controlled or not) is then held back by the transport.
async fn wait_for_room(shared: &Shared) {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        let limit = inner.config.initial_window as usize;
        let full = inner
            .streams
            .values()
            .any(|s| s.reader_alive && s.reset.is_none() && s.recv_len > limit);
        if full && inner.closed.is_none() {
            inner.reader_waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

async fn write_loop<T: AsyncWrite>(shared: Arc<Shared>, mut write: WriteHalf<T>) {
    let mut encoder = match FrameEncoder::new() {
        Ok(encoder) => encoder,
        Err(e) => return shared.lock().close(Error::Frame(e)),
    };
    let mut out = BytesMut::new();
    while let Some(frames) = next_frames(&shared).await {
        for frame in &frames {
            tracing::trace!(kind = frame.kind(), "SPDY frame out");
            if let Err(e) = encoder.encode(frame, &mut out) {
                shared.lock().close(Error::Frame(e));
                return;
            }
        }
        let written = async {
            write.write_all(&out).await?;
            write.flush().await
        };
        if let Err(e) = written.await {
            shared.lock().close(Error::Io(e.to_string()));
            shared.changed.notify_waiters();
            return;
        }
        out.clear();
    }
    let _ = write.shutdown().await;
}

/// The frames to write next (control frames first), or `None` once the
/// session is closed and nothing is left.
async fn next_frames(shared: &Shared) -> Option<Vec<Frame>> {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        let mut frames: Vec<Frame> = inner.out_ctrl.drain(..).collect();
        let mut bytes = 0;
        while bytes < 64 * 1024 {
            let Some(frame) = inner.out_data.pop_front() else {
                break;
            };
            if let Frame::Data { data, .. } = &frame {
                bytes += data.len();
            }
            frames.push(frame);
        }
        inner.out_data_bytes = inner.out_data_bytes.saturating_sub(bytes);
        for w in inner.queue_waiters.drain(..) {
            w.wake();
        }
        if !frames.is_empty() {
            return Poll::Ready(Some(frames));
        }
        if inner.closed.is_some() {
            return Poll::Ready(None);
        }
        inner.writer_waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}
