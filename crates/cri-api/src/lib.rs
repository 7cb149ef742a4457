//! CRI v1 (`runtime.v1`) bindings generated in-tree from `proto/api.proto`.
//!
//! The proto is the Kubernetes cri-api definition (Apache-2.0, see `LICENSE`
//! beside it), pinned here so the wire contract changes only on purpose.

#![allow(clippy::all, clippy::unwrap_used)]

/// Generated `runtime.v1` messages, `RuntimeService` and `ImageService`.
pub mod v1 {
    tonic::include_proto!("runtime.v1");
    include!(concat!(env!("OUT_DIR"), "/runtime.v1.debug.rs"));
}

/// crius' own admin API (`crius.v1.Admin`), served beside CRI for the CLI.
pub mod admin {
    tonic::include_proto!("crius.v1");
    include!(concat!(env!("OUT_DIR"), "/crius.v1.debug.rs"));
}

/// What `Debug` shows instead of a secret.
const REDACTED: &str = "<redacted>";

/// A secret field (upstream marks it `debug_redact`) as the generated
/// `Debug` shows it: whether it is set, never its value.
struct Secret<'a>(&'a str);

impl std::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_empty() { "" } else { REDACTED };
        std::fmt::Debug::fmt(shown, f)
    }
}

/// The encoded `FileDescriptorSet` of `proto/api.proto` and
/// `proto/crius.proto`: for reflection (building a message from its JSON form).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cri_descriptor_set");

/// The CRI API version this crate speaks, as reported by `Version`.
pub const CRI_API_VERSION: &str = "v1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_credentials_shows_no_secret() {
        let auth = v1::AuthConfig {
            username: "alice".into(),
            password: "pw-secret".into(),
            auth: "YWxpY2U6cHctc2VjcmV0".into(),
            server_address: "registry.example.com".into(),
            identity_token: "id-secret".into(),
            registry_token: String::new(),
        };
        let pull = v1::PullImageRequest {
            auth: Some(auth),
            ..Default::default()
        };
        let admin = admin::PullImageRequest {
            image: "busybox".into(),
            username: "alice".into(),
            password: "pw-secret".into(),
        };
        for text in [
            format!("{pull:?}"),
            format!("{pull:#?}"),
            format!("{admin:?}"),
        ] {
            for secret in ["pw-secret", "YWxpY2U6cHctc2VjcmV0", "id-secret"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("alice") && text.contains(REDACTED), "{text}");
        }
        assert!(format!("{pull:?}").contains("registry_token: \"\""));
    }
}
