//! Media types crius accepts, and the checks on them.
//!
//! Refusals are [`Error::FailedPrecondition`]: the request is well formed but
//! the image is not one crius can run (schema 1, an artifact that is not a
//! container image, foreign layers, encrypted layers…).

use crius_core::{Error, Result};
use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// The `Accept` header of manifest requests: all four manifest and index
/// types (a registry may answer 404 for an OCI manifest it is not told the
/// client accepts).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or image config crius reads.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// What a manifest-ish document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// An OCI image manifest or a Docker schema 2 manifest.
    Manifest,
}

/// Classifies a manifest media type; schema 1 and unknown types are refused.
pub fn manifest_kind(media_type: &str) -> Result<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Manifest),
        DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => Err(Error::FailedPrecondition(
            "Docker image manifest schema 1 is not supported (deprecated; push the image again \
             with a current client)"
                .into(),
        )),
        other => Err(Error::FailedPrecondition(format!(
            "unsupported manifest media type {other:?}"
        ))),
    }
}

/// Checks an image config media type.
pub fn check_config_media_type(media_type: &str) -> Result<()> {
    match media_type {
        OCI_CONFIG | DOCKER_CONFIG => Ok(()),
        other => Err(Error::FailedPrecondition(format!(
            "not a container image: config media type {other:?}"
        ))),
    }
}

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Classifies a layer media type; foreign (non-distributable), encrypted
/// and unknown layers are refused.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Ok(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD | DOCKER_LAYER_ZSTD => Ok(Compression::Zstd),
        other if other.contains("nondistributable") || other.contains("foreign") => {
            Err(Error::FailedPrecondition(format!(
                "foreign (non-distributable) layers are not supported: {other:?}"
            )))
        }
        other if other.contains("+encrypted") => Err(Error::FailedPrecondition(format!(
            "encrypted layers are not supported: {other:?}"
        ))),
        other => Err(Error::FailedPrecondition(format!(
            "unsupported layer media type {other:?}"
        ))),
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    hex_digest(Sha256::digest(data).as_slice())
}

/// `sha256:` and the lowercase hex of a finished hash.
pub(crate) fn hex_digest(hash: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(7 + 2 * hash.len());
    s.push_str("sha256:");
    for b in hash {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// Checks that `data` is `expected_size` bytes (when given) whose sha256 is
/// `expected_digest`; [`Error::DataLoss`] naming the digest otherwise.
pub fn verify(data: &[u8], expected_digest: &str, expected_size: Option<u64>) -> Result<()> {
    if let Some(size) = expected_size
        && data.len() as u64 != size
    {
        return Err(Error::DataLoss(format!(
            "{expected_digest}: expected {size} bytes, got {}",
            data.len()
        )));
    }
    let actual = sha256_digest(data);
    if actual != expected_digest {
        return Err(Error::DataLoss(format!(
            "{expected_digest}: content has digest {actual}"
        )));
    }
    Ok(())
}

/// Works out a manifest's media type: its `mediaType` field, else the
/// `Content-Type` the registry sent when that is a manifest type, else from
/// its shape. Schema 1 is recognised by `schemaVersion: 1`.
pub(crate) fn detect_manifest_media_type(
    body: &serde_json::Value,
    content_type: Option<&str>,
) -> String {
    if body.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return DOCKER_MANIFEST_V1.to_owned();
    }
    if let Some(mt) = body.get("mediaType").and_then(|v| v.as_str()) {
        return mt.to_owned();
    }
    let content_type = content_type
        .map(|ct| ct.split(';').next().unwrap_or(ct).trim())
        .unwrap_or("");
    if manifest_kind(content_type).is_ok()
        || content_type == DOCKER_MANIFEST_V1
        || content_type == DOCKER_MANIFEST_V1_SIGNED
    {
        return content_type.to_owned();
    }
    if body.get("manifests").is_some() {
        OCI_INDEX.to_owned()
    } else if body.get("config").is_some() && body.get("layers").is_some() {
        OCI_MANIFEST.to_owned()
    } else if content_type.is_empty() {
        "(none)".to_owned()
    } else {
        content_type.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifest_kinds() {
        assert_eq!(manifest_kind(OCI_INDEX).ok(), Some(ManifestKind::Index));
        assert_eq!(
            manifest_kind(DOCKER_MANIFEST_LIST).ok(),
            Some(ManifestKind::Index)
        );
        assert_eq!(
            manifest_kind(OCI_MANIFEST).ok(),
            Some(ManifestKind::Manifest)
        );
        assert_eq!(
            manifest_kind(DOCKER_MANIFEST).ok(),
            Some(ManifestKind::Manifest)
        );
        for bad in [
            DOCKER_MANIFEST_V1,
            DOCKER_MANIFEST_V1_SIGNED,
            "application/json",
            "",
        ] {
            assert!(
                matches!(manifest_kind(bad), Err(Error::FailedPrecondition(_))),
                "{bad}"
            );
        }
        let Err(Error::FailedPrecondition(msg)) = manifest_kind(DOCKER_MANIFEST_V1_SIGNED) else {
            panic!("schema 1 accepted")
        };
        assert!(msg.contains("schema 1"), "{msg}");
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(
            layer_compression(OCI_LAYER_TAR).ok(),
            Some(Compression::None)
        );
        assert_eq!(
            layer_compression(DOCKER_LAYER_TAR).ok(),
            Some(Compression::None)
        );
        assert_eq!(
            layer_compression(OCI_LAYER_GZIP).ok(),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP).ok(),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression(OCI_LAYER_ZSTD).ok(),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression(DOCKER_LAYER_ZSTD).ok(),
            Some(Compression::Zstd)
        );
        for bad in [
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            OCI_CONFIG,
        ] {
            assert!(
                matches!(layer_compression(bad), Err(Error::FailedPrecondition(_))),
                "{bad}"
            );
        }
        assert!(check_config_media_type(OCI_CONFIG).is_ok());
        assert!(check_config_media_type(DOCKER_CONFIG).is_ok());
        assert!(check_config_media_type("application/vnd.cncf.helm.config.v1+json").is_err());
    }

    #[test]
    fn digest_verification() {
        let data = b"hello";
        let d = sha256_digest(data);
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(verify(data, &d, Some(5)).is_ok());
        assert!(verify(data, &d, None).is_ok());
        match verify(b"hellO", &d, Some(5)) {
            Err(Error::DataLoss(msg)) => assert!(msg.contains(&d), "{msg}"),
            other => panic!("{other:?}"),
        }
        match verify(data, &d, Some(6)) {
            Err(Error::DataLoss(msg)) => assert!(msg.contains("expected 6 bytes"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn media_type_detection() {
        let m =
            json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {}, "layers": []});
        assert_eq!(
            detect_manifest_media_type(&m, Some(OCI_MANIFEST)),
            DOCKER_MANIFEST
        );
        let m = json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert_eq!(
            detect_manifest_media_type(
                &m,
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            ),
            OCI_MANIFEST
        );
        assert_eq!(
            detect_manifest_media_type(&m, Some("application/json")),
            OCI_MANIFEST
        );
        let i = json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(detect_manifest_media_type(&i, None), OCI_INDEX);
        let v1 = json!({"schemaVersion": 1, "fsLayers": []});
        assert_eq!(
            detect_manifest_media_type(&v1, Some("application/json")),
            DOCKER_MANIFEST_V1
        );
        let odd = json!({"schemaVersion": 2});
        assert_eq!(
            detect_manifest_media_type(&odd, Some("text/plain")),
            "text/plain"
        );
    }
}
