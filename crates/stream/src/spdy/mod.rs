//! SPDY/3.1 as Kubernetes streaming uses it: the frame codec and header
//! compression with the SPDY/3 dictionary.
//!
//! - [`frame`]: frame types, [`FrameEncoder`] and [`FrameDecoder`].
//! - [`headers`]: [`Headers`] and the per-direction zlib contexts.

mod dictionary;
mod error;
pub mod frame;
pub mod headers;

pub use dictionary::dictionary;
pub use error::{Error, FrameError};
pub use frame::{Frame, FrameDecoder, FrameEncoder, GoAwayStatus, RstStatus, Setting};
pub use headers::Headers;

#[cfg(test)]
mod frame_tests;
