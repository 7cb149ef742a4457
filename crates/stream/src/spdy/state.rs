//! A session's shared state and what each received frame does to it.
//!
//! One std mutex guards everything; it is held for a few instructions and
//! never across an await. Stream halves park their wakers here, the reader
//! task applies frames, the writer task takes queued frames.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::Notify;

use super::config::{Config, DEFAULT_WINDOW, Role, SendWindow};
use super::error::Error;
use super::frame::{Frame, GoAwayStatus, RstStatus, Setting, setting};
use super::headers::Headers;

/// The largest window SPDY allows (31 bits).
const MAX_WINDOW: i64 = 0x7fff_ffff;

/// One stream's state.
pub(crate) struct StreamState {
    pub recv: VecDeque<Bytes>,
    pub recv_len: usize,
    pub remote_fin: bool,
    pub local_fin: bool,
    pub reset: Option<RstStatus>,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    /// What this side may still send before the peer's next WINDOW_UPDATE.
    pub send_window: i64,
    /// Bytes read by the application and not yet credited to the peer.
    pub recv_unacked: u32,
    /// For streams this side opened: the peer's SYN_REPLY headers.
    pub reply: Option<Headers>,
    pub reader_alive: bool,
    pub writer_alive: bool,
    pub peer_opened: bool,
}

impl StreamState {
    fn new(send_window: i64, peer_opened: bool) -> Self {
        Self {
            recv: VecDeque::new(),
            recv_len: 0,
            remote_fin: false,
            local_fin: false,
            reset: None,
            read_waker: None,
            write_waker: None,
            send_window,
            recv_unacked: 0,
            reply: None,
            reader_alive: true,
            writer_alive: true,
            peer_opened,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// Everything a session shares between its handles and tasks.
pub(crate) struct Inner {
    pub role: Role,
    pub config: Config,
    pub streams: HashMap<u32, StreamState>,
    pub next_local_id: u32,
    pub last_peer_id: u32,
    pub peer_open: usize,
    pub incoming: VecDeque<(u32, Headers)>,
    pub session_send_window: i64,
    pub session_recv_unacked: u32,
    pub peer_initial_window: i64,
    pub peer_flow_control: bool,
    pub out_ctrl: VecDeque<Frame>,
    pub out_data: VecDeque<Frame>,
    pub out_data_bytes: usize,
    pub writer_waker: Option<Waker>,
    pub queue_waiters: Vec<Waker>,
    pub reader_waker: Option<Waker>,
    pub next_ping: u32,
    pub pings: HashMap<u32, bool>,
    pub goaway_sent: bool,
    pub goaway_received: bool,
    /// Set once the session is over; the reason every later call gets.
    pub closed: Option<Error>,
}

/// The shared state and the notifier for session-level events (incoming
/// streams, replies, pongs, the end).
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub changed: Notify,
}

impl Shared {
    pub fn new(role: Role, config: Config) -> Arc<Self> {
        let inner = Inner {
            role,
            next_local_id: role.first_id(),
            next_ping: role.first_id(),
            config,
            streams: HashMap::new(),
            last_peer_id: 0,
            peer_open: 0,
            incoming: VecDeque::new(),
            session_send_window: i64::from(DEFAULT_WINDOW),
            session_recv_unacked: 0,
            peer_initial_window: i64::from(DEFAULT_WINDOW),
            peer_flow_control: false,
            out_ctrl: VecDeque::new(),
            out_data: VecDeque::new(),
            out_data_bytes: 0,
            writer_waker: None,
            queue_waiters: Vec::new(),
            reader_waker: None,
            pings: HashMap::new(),
            goaway_sent: false,
            goaway_received: false,
            closed: None,
        };
        Arc::new(Self {
            inner: Mutex::new(inner),
            changed: Notify::new(),
        })
    }

    /// The state; a panic elsewhere while it was held does not make it
    /// unusable (every change is a few plain assignments).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Queues a control frame and wakes the writer.
    pub fn send_ctrl(&mut self, frame: Frame) {
        self.out_ctrl.push_back(frame);
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    /// Whether writes wait for the peer's window.
    pub fn enforce_window(&self) -> bool {
        self.config.send_window == SendWindow::Always || self.peer_flow_control
    }

    /// Ends the session: every waiter wakes and gets `reason`.
    pub fn close(&mut self, reason: Error) {
        if self.closed.is_none() {
            tracing::debug!(%reason, "SPDY session closed");
            self.closed = Some(reason);
        }
        for stream in self.streams.values_mut() {
            stream.wake();
        }
        self.wake_io();
    }

    pub fn wake_io(&mut self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
        for w in self.queue_waiters.drain(..) {
            w.wake();
        }
    }

    /// Ends the session for a protocol error of the peer's: GOAWAY
    /// PROTOCOL_ERROR, then close.
    pub fn fail(&mut self, error: Error) {
        tracing::warn!(%error, "SPDY peer broke the protocol");
        self.send_ctrl(Frame::GoAway {
            last_good_stream_id: self.last_peer_id,
            status: GoAwayStatus::PROTOCOL_ERROR,
        });
        self.goaway_sent = true;
        self.close(error);
    }

    /// Resets a stream: RST_STREAM to the peer, the error to both halves.
    pub fn reset_stream(&mut self, id: u32, status: RstStatus) {
        self.send_ctrl(Frame::RstStream {
            stream_id: id,
            status,
        });
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.reset = Some(status);
            stream.wake();
        }
    }

    /// Forgets a stream both of whose halves are gone.
    pub fn release(&mut self, id: u32) {
        let gone = self
            .streams
            .get(&id)
            .is_some_and(|s| !s.reader_alive && !s.writer_alive);
        if gone && let Some(stream) = self.streams.remove(&id) {
            if stream.peer_opened {
                self.peer_open = self.peer_open.saturating_sub(1);
            }
            // A reader that was never drained still owes the peer credit.
            self.session_recv_unacked = self
                .session_recv_unacked
                .saturating_add(u32::try_from(stream.recv_len).unwrap_or(u32::MAX));
            self.credit_session();
        }
    }

    /// Opens a local stream's state and returns its id.
    pub fn new_local_stream(&mut self) -> Result<u32, Error> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        if self.goaway_received || self.goaway_sent {
            return Err(Error::GoneAway("GOAWAY was exchanged".into()));
        }
        let id = self.next_local_id;
        if id > MAX_WINDOW as u32 {
            return Err(Error::GoneAway("stream ids are used up".into()));
        }
        self.next_local_id += 2;
        let window = self.peer_initial_window;
        self.streams.insert(id, StreamState::new(window, false));
        Ok(id)
    }

    /// Applies one frame from the peer.
    pub fn receive(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                headers,
                ..
            } => self.on_syn_stream(stream_id, fin, unidirectional, headers),
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => self.on_reply(stream_id, fin, headers),
            Frame::Headers { stream_id, fin, .. } => self.on_fin(stream_id, fin),
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data),
            Frame::RstStream { stream_id, status } => {
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    stream.reset = Some(status);
                    stream.wake();
                }
            }
            Frame::Settings { entries, .. } => self.on_settings(&entries),
            Frame::Ping { id } => self.on_ping(id),
            Frame::GoAway { status, .. } => {
                tracing::debug!(status = status.0, "SPDY peer sent GOAWAY");
                self.goaway_received = true;
            }
            Frame::WindowUpdate { stream_id, delta } => self.on_window_update(stream_id, delta),
        }
    }

    fn on_syn_stream(&mut self, id: u32, fin: bool, unidirectional: bool, headers: Headers) {
        if self.role.owns(id) || id <= self.last_peer_id {
            let error = Error::Protocol(format!(
                "SYN_STREAM {id} after {}: peer stream ids must be new, increasing and {}",
                self.last_peer_id,
                if self.role == Role::Server {
                    "odd"
                } else {
                    "even"
                }
            ));
            return self.fail(error);
        }
        self.last_peer_id = id;
        if self.goaway_sent || self.closed.is_some() {
            return self.send_ctrl(Frame::RstStream {
                stream_id: id,
                status: RstStatus::REFUSED_STREAM,
            });
        }
        if self.peer_open >= self.config.max_streams {
            tracing::warn!(
                stream = id,
                max = self.config.max_streams,
                "SPDY peer opened too many streams; refused"
            );
            return self.send_ctrl(Frame::RstStream {
                stream_id: id,
                status: RstStatus::REFUSED_STREAM,
            });
        }
        let mut stream = StreamState::new(self.peer_initial_window, true);
        stream.remote_fin = fin;
        stream.local_fin = unidirectional;
        self.streams.insert(id, stream);
        self.peer_open += 1;
        self.incoming.push_back((id, headers));
    }

    fn on_reply(&mut self, id: u32, fin: bool, headers: Headers) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.peer_opened || stream.reply.is_some() {
            return self.reset_stream(id, RstStatus::STREAM_IN_USE);
        }
        stream.reply = Some(headers);
        stream.remote_fin |= fin;
        stream.wake();
    }

    fn on_fin(&mut self, id: u32, fin: bool) {
        if let Some(stream) = self.streams.get_mut(&id)
            && fin
        {
            stream.remote_fin = true;
            stream.wake();
        }
    }

    fn on_data(&mut self, id: u32, fin: bool, data: Bytes) {
        let Some(stream) = self.streams.get_mut(&id) else {
            // A stream already forgotten (both halves dropped) or never
            // opened: nothing will read it. Credit the session window.
            self.session_recv_unacked = self
                .session_recv_unacked
                .saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
            self.credit_session();
            return;
        };
        if stream.remote_fin {
            return self.reset_stream(id, RstStatus::STREAM_ALREADY_CLOSED);
        }
        let len = data.len();
        let discard = !stream.reader_alive;
        if !discard {
            stream.recv_len += len;
            stream.recv.push_back(data);
        }
        stream.remote_fin = fin;
        stream.wake();
        if discard {
            // Nobody will read it: credit it back at once.
            self.credit_stream(id, len);
        }
    }

    fn on_settings(&mut self, entries: &[Setting]) {
        for entry in entries {
            if entry.id == setting::INITIAL_WINDOW_SIZE {
                let new = i64::from(entry.value).min(MAX_WINDOW);
                let delta = new - self.peer_initial_window;
                self.peer_initial_window = new;
                self.peer_flow_control = true;
                for stream in self.streams.values_mut() {
                    stream.send_window += delta;
                    stream.wake();
                }
            }
        }
    }

    fn on_ping(&mut self, id: u32) {
        if self.role.owns(id) {
            if let Some(done) = self.pings.get_mut(&id) {
                *done = true;
            }
        } else {
            self.send_ctrl(Frame::Ping { id });
        }
    }

    fn on_window_update(&mut self, id: u32, delta: u32) {
        self.peer_flow_control = true;
        let delta = i64::from(delta);
        if id == 0 {
            self.session_send_window = (self.session_send_window + delta).min(MAX_WINDOW);
            for stream in self.streams.values_mut() {
                stream.wake();
            }
        } else if let Some(stream) = self.streams.get_mut(&id) {
            stream.send_window = (stream.send_window + delta).min(MAX_WINDOW);
            stream.wake();
        }
    }

    /// Sends the session-level WINDOW_UPDATE once half the window is owed.
    pub fn credit_session(&mut self) {
        if self.session_recv_unacked >= self.config.session_window.max(DEFAULT_WINDOW) / 2 {
            let delta = std::mem::take(&mut self.session_recv_unacked);
            self.send_ctrl(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    /// Credits `n` bytes the application read from stream `id`.
    pub fn credit_stream(&mut self, id: u32, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.session_recv_unacked = self.session_recv_unacked.saturating_add(n);
        let half = self.config.initial_window / 2;
        let mut update = None;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.recv_unacked = stream.recv_unacked.saturating_add(n);
            if stream.recv_unacked >= half && !stream.remote_fin {
                update = Some(std::mem::take(&mut stream.recv_unacked));
            }
        }
        if let Some(delta) = update {
            self.send_ctrl(Frame::WindowUpdate {
                stream_id: id,
                delta,
            });
        }
        self.credit_session();
        // The reader task may be waiting for this stream to drain.
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
    }
}
