//! crius' CRI streaming server (Exec, Attach, PortForward) and its
//! client, without containerd:
//!
//! - [`spdy`]: SPDY/3.1 frames, header compression and sessions.
//! - [`channel`]: Kubernetes' remotecommand and port-forward framing: SPDY
//!   stream types, WebSocket channel bytes, the v4+ exit status, resizes.
//! - [`ws`]: WebSocket channels over tokio-tungstenite.
//! - [`upgrade`]: which protocol and version to answer an HTTP/1.1 upgrade
//!   request with, and the response headers (or the refusal).
//! - [`backend`]: the seam to the runtime: cached requests, the client's
//!   side of a session ([`backend::Io`]) and the [`backend::Backend`] trait.
//! - [`tokens`]: the single-use, expiring tokens behind streaming URLs.
//! - [`tls`]: optional TLS of both (certificate files or self-signed).
//! - [`server`]: the HTTP/1.1 streaming server itself.
//! - [`client`]: exec and port-forward clients (crius' CLI, tests).

/// The attribute [`backend::Backend`]'s implementations take.
pub use async_trait::async_trait;

pub mod backend;
pub mod channel;
pub mod client;
pub mod server;
pub mod spdy;
pub mod tls;
pub mod tokens;
pub mod upgrade;
pub mod ws;
mod wsio;

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tls_tests;
#[cfg(test)]
mod upgrade_tests;
#[cfg(test)]
mod ws_tests;
