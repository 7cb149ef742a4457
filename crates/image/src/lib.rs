//! The image store: images pulled from registries into containerd's content
//! store and image service, unpacked into the snapshotter, and read back as
//! CRI images.
//!
//! containerd holds everything; see [`crius_core::image`] for the records
//! and labels crius writes.

mod builtin;
mod error;
mod import;
mod pull;
mod store;

pub use builtin::File;
pub use pull::{LayerProgress, LayerState, Phase, Progress};
pub use store::{Images, Query};
