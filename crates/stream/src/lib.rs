//! The protocol layer of crius' CRI streaming server (Exec, Attach,
//! PortForward), without HTTP serving or containerd:
//!
//! - [`spdy`]: SPDY/3.1 frames, header compression and sessions.

pub mod spdy;
