//! Limits and choices of a SPDY session.

/// Which side of the connection a session is: the client opens odd stream
/// ids and pings, the server even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that sent the HTTP upgrade request (kubectl, the crius CLI).
    Client,
    /// The side that answered it (the runtime's streaming server).
    Server,
}

impl Role {
    /// Whether `id` is a stream or ping id this side originates.
    pub(crate) fn owns(self, id: u32) -> bool {
        match self {
            Role::Client => id % 2 == 1,
            Role::Server => id.is_multiple_of(2),
        }
    }

    pub(crate) fn first_id(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }
}

/// When the session holds its writes to the peer's flow-control window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendWindow {
    /// Once the peer shows it does flow control: it sent
    /// SETTINGS_INITIAL_WINDOW_SIZE or a WINDOW_UPDATE. Go's spdystream
    /// (kubectl, client-go, the API server) never sends either and never
    /// reads a window, so a session that waited for its updates would stop
    /// after 64 KiB; against it only TCP's own backpressure applies.
    Auto,
    /// Always, from the draft's initial 64 KiB windows on.
    Always,
}

/// Limits of one session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest frame accepted from the peer (payload bytes).
    pub max_frame: usize,
    /// Largest header block accepted, once inflated.
    pub max_header_block: usize,
    /// Streams the peer may have open at once; more are refused with
    /// RST_STREAM REFUSED_STREAM.
    pub max_streams: usize,
    /// This side's receive window per stream, announced in SETTINGS; data
    /// is credited back with WINDOW_UPDATE as the application reads it. A
    /// stream buffers at most this much (plus one frame) before the session
    /// stops reading the connection.
    pub initial_window: u32,
    /// This side's session-level receive window (SPDY/3.1: every stream's
    /// data together), raised from the draft's 64 KiB by a WINDOW_UPDATE
    /// at the start and credited back as the application reads.
    pub session_window: u32,
    /// Longest DATA frame this side sends.
    pub max_data_frame: usize,
    /// Bytes of DATA frames queued for the connection before writers wait.
    pub write_queue: usize,
    /// Whether writes wait for the peer's window.
    pub send_window: SendWindow,
}

/// The draft's default window (64 KiB), which both sides start from.
pub const DEFAULT_WINDOW: u32 = 64 * 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame: 1 << 20,
            max_header_block: 64 * 1024,
            max_streams: 64,
            // More than the draft's 64 KiB: a window is a round trip of
            // WINDOW_UPDATE, and a port-forward stream through a 64 KiB
            // window ran at 2/3 of containerd's (Go's spdystream does no
            // flow control). Bounded: at most this much per stream waits.
            initial_window: 512 * 1024,
            session_window: 2 * 1024 * 1024,
            max_data_frame: 64 * 1024,
            write_queue: 256 * 1024,
            send_window: SendWindow::Auto,
        }
    }
}
