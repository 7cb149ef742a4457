//! Everything crius needs from an OCI distribution registry, up to (and
//! excluding) containerd: image references, registry hosts in containerd's
//! `hosts.toml` layout (mirrors, plain HTTP, CAs, headers), authentication
//! (Basic, Bearer tokens, OAuth2 refresh tokens), resolving an image for a
//! platform and streaming its blobs with verification.
//!
//! ```no_run
//! # async fn f() -> crius_core::Result<()> {
//! use crius_registry::{Fetcher, Platform, RegistryConfig, parse_reference};
//! let reference = parse_reference("busybox")?; // docker.io/library/busybox:latest
//! let fetcher = Fetcher::new(&RegistryConfig::default(), &reference, None)?;
//! let image = fetcher.resolve(&Platform::host()).await?;
//! for layer in &image.layers {
//!     let _stream = fetcher.blob(layer).await?; // Stream<Item = Result<Bytes>>
//! }
//! # Ok(()) }
//! ```
//!
//! HTTP is `reqwest` with rustls and the ring provider (installed as the
//! process default on first use). `oci-client` was not used: crius needs
//! per-host mirrors with `?ns=`, `override_path`, per-host CAs, headers and
//! `skip_verify`, OAuth2 refresh tokens, size caps on manifests, incremental
//! digest checks with a stall timeout, and errors classified by cause; that
//! is most of what a client does, and the rest (the distribution API's GETs)
//! is small.

mod auth;
mod fetch;
mod hosts;
pub mod media;
mod platform;
mod reference;

pub use auth::{CLIENT_ID, Challenge, Credentials, parse_challenges};
pub use fetch::{Blob, BlobStream, Fetcher, Resolved};
pub use hosts::{
    Capabilities, DEFAULT_PROGRESS_TIMEOUT, RegistryConfig, RegistryHost, parse_hosts_toml,
    registry_hosts,
};
pub use oci_spec::image::Descriptor;
pub use platform::{Platform, oci_arch, select_manifest};
pub use reference::{
    IMAGE_FIELD, Reference, normalized, parse_reference, repo_digest, repo_tag, repository_name,
};
