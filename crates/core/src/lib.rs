//! The core of crius: domain types and rules with no I/O.
//!
//! Adapters (containerd, CNI, files) and the gRPC layer depend on this crate,
//! never the other way round.

pub mod apparmor;
pub mod cdi;
pub mod cgroup;
pub mod checkpoint;
pub mod config;
pub mod config_files;
pub mod container;
pub mod error;
pub mod filter;
pub mod image;
pub mod names;
pub mod readiness;
pub mod runtime;
pub mod sandbox;
pub mod stats;
pub mod status;
pub mod streaming;
pub mod time;
pub mod userns;

pub use error::{Error, Result};

/// The runtime name reported by `Version`.
pub const RUNTIME_NAME: &str = "crius";
/// crius' own version, reported by `Version`.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
