//! The protocol layer of crius' CRI streaming server (Exec, Attach,
//! PortForward), without HTTP serving or containerd:
//!
//! - [`spdy`]: SPDY/3.1 frames, header compression and sessions.
//! - [`channel`]: Kubernetes' remotecommand and port-forward framing: SPDY
//!   stream types, WebSocket channel bytes, the v4+ exit status, resizes.

pub mod channel;
pub mod spdy;
