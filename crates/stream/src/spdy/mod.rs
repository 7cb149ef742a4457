//! SPDY/3.1 as Kubernetes streaming uses it: the frame codec, header
//! compression with the SPDY/3 dictionary, and a session that multiplexes
//! flow-controlled streams over one connection, as client or server.
//!
//! - [`frame`]: frame types, [`FrameEncoder`] and [`FrameDecoder`].
//! - [`headers`]: [`Headers`] and the per-direction zlib contexts.
//! - [`Session`]: accept/open streams, ping, GOAWAY; [`Stream`] halves are
//!   tokio `AsyncRead`/`AsyncWrite`.

mod config;
mod dictionary;
mod error;
pub mod frame;
pub mod headers;
mod session;
mod state;
mod stream;

pub use config::{Config, DEFAULT_WINDOW, Role, SendWindow};
pub use dictionary::dictionary;
pub use error::{Error, FrameError};
pub use frame::{Frame, FrameDecoder, FrameEncoder, GoAwayStatus, RstStatus, Setting};
pub use headers::Headers;
pub use session::Session;
pub use stream::{RecvHalf, SendHalf, Stream};

#[cfg(test)]
mod frame_tests;

#[cfg(test)]
mod session_tests;
