//! CRI v1 (`runtime.v1`) bindings generated in-tree from `proto/api.proto`.
//!
//! The proto is the Kubernetes cri-api definition (Apache-2.0, see `LICENSE`
//! beside it), pinned here so the wire contract changes only on purpose.

#![allow(clippy::all, clippy::unwrap_used)]

/// Generated `runtime.v1` messages, `RuntimeService` and `ImageService`.
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

/// crius' own admin API (`crius.v1.Admin`), served beside CRI for the CLI.
pub mod admin {
    tonic::include_proto!("crius.v1");
}

/// The encoded `FileDescriptorSet` of `proto/api.proto` and
/// `proto/crius.proto`: for reflection (building a message from its JSON form).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cri_descriptor_set");

/// The CRI API version this crate speaks, as reported by `Version`.
pub const CRI_API_VERSION: &str = "v1";
