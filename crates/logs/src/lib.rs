//! Container logs in the CRI log format.
//!
//! The containerd runc shim writes a container's stdout and stderr into
//! FIFOs crius creates ([`create_fifos`]; with a tty only stdout). crius
//! copies them into the container's log file ([`start`] / [`LogWriter`])
//! in the format kubelet reads (`kubelet/kuberuntime/logs`), one record a
//! line:
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F a full line
//! 2016-10-06T00:17:09.669794202Z stderr P a piece of a longer line
//! ```
//!
//! [`parse_line`], [`tail`] and [`Follower`] read it back (`crius logs`).
//!
//! Decisions, with the reasons in each module:
//! - timestamps: UTC, always nine fractional digits ([`timestamp`]);
//! - backpressure: a bounded queue, then the container blocks, as with
//!   containerd; output is dropped only when writing fails ([`writer`]);
//! - paths: no escape from the log directory, no symbolic link followed
//!   (`openat2(RESOLVE_BENEATH)`, [`path`]).

mod fifo;
pub mod path;
mod read;
mod record;
mod split;
pub mod timestamp;
pub mod writer;

pub use fifo::{Fifos, create_fifos, create_stdin_fifo, remove_fifos, stdin_fifo_path};
pub use path::{LOG_FILE_MODE, resolve_log_path};
pub use read::{Follower, tail};
pub use record::{RawRecord, Record, Stream, parse_line, parse_line_bytes};
pub use timestamp::{format_timestamp, parse_timestamp};
pub use writer::{Chunk, DEFAULT_MAX_LINE, LogHandle, LogWriter, Subscription, start};
