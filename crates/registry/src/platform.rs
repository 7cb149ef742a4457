//! Platforms (`linux/amd64`) and choosing a manifest from an index.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::media::{self, ManifestKind};

/// An OCI platform: `os`, `architecture` (GOARCH names) and an optional
/// CPU `variant` (`v8` for arm64, `v7` for arm).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform crius runs on: `linux` and [`std::env::consts::ARCH`]
    /// mapped to its OCI name.
    pub fn host() -> Platform {
        let (architecture, variant) = oci_arch(std::env::consts::ARCH);
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry's platform fits this one: same OS and
    /// architecture, and the same variant once defaults are filled in
    /// (`arm64` means `arm64/v8`, `arm` means `arm/v7`, `amd64` means
    /// `amd64/v1`).
    pub fn matches(&self, other: &oci_spec::image::Platform) -> bool {
        let os = other.os().to_string();
        let arch = other.architecture().to_string();
        os == self.os
            && arch == self.architecture
            && default_variant(&arch, other.variant().as_deref())
                == default_variant(&self.architecture, self.variant.as_deref())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Rust's `ARCH` to the OCI (GOARCH) architecture and variant.
pub fn oci_arch(rust_arch: &str) -> (&str, Option<&str>) {
    match rust_arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "loongarch64" => ("loong64", None),
        "mips64" => ("mips64le", None),
        other => (other, None),
    }
}

fn default_variant<'a>(arch: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (arch, variant) {
        (_, Some(v)) if !v.is_empty() => Some(v),
        ("arm64", _) => Some("v8"),
        ("arm", _) => Some("v7"),
        ("amd64", _) => Some("v1"),
        _ => None,
    }
}

/// The first manifest of `index` for `platform` (index order), skipping
/// entries without a platform and entries that are not image manifests.
pub fn select_manifest<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    index.manifests().iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| platform.matches(p))
            && matches!(
                media::manifest_kind(d.media_type().as_ref()),
                Ok(ManifestKind::Manifest)
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>, &str)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant, media_type))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": media_type,
                    "size": 100 + i,
                    "digest": format!("sha256:{:064x}", i + 1),
                    "platform": platform,
                })
            })
            .collect();
        let v = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        });
        serde_json::from_value(v).expect("index")
    }

    fn pick(i: &ImageIndex, p: &Platform) -> Option<u64> {
        select_manifest(i, p).map(|d| d.size() - 100)
    }

    #[test]
    fn host_platform() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host.to_string(), "linux/amd64");
        assert_eq!(oci_arch("aarch64"), ("arm64", Some("v8")));
        assert_eq!(
            Platform::new("linux", "arm64", Some("v8")).to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn selection() {
        let m = media::OCI_MANIFEST;
        let i = index(&[
            ("unknown", "unknown", None, m),
            ("linux", "arm", Some("v6"), m),
            ("linux", "arm", Some("v7"), m),
            ("linux", "arm64", Some("v8"), m),
            ("linux", "amd64", None, m),
            ("windows", "amd64", None, m),
            ("linux", "amd64", None, m),
        ]);
        let amd64 = Platform::new("linux", "amd64", None);
        assert_eq!(pick(&i, &amd64), Some(4));
        assert_eq!(pick(&i, &Platform::new("linux", "arm64", None)), Some(3));
        assert_eq!(
            pick(&i, &Platform::new("linux", "arm64", Some("v8"))),
            Some(3)
        );
        assert_eq!(pick(&i, &Platform::new("linux", "arm", None)), Some(2));
        assert_eq!(
            pick(&i, &Platform::new("linux", "arm", Some("v6"))),
            Some(1)
        );
        assert_eq!(pick(&i, &Platform::new("windows", "amd64", None)), Some(5));
        assert_eq!(pick(&i, &Platform::new("linux", "s390x", None)), None);
        assert_eq!(pick(&i, &Platform::new("linux", "amd64", Some("v3"))), None);
    }

    #[test]
    fn entries_that_are_not_manifests_are_skipped() {
        let i = index(&[
            ("linux", "amd64", None, media::OCI_INDEX),
            ("linux", "amd64", None, "application/vnd.in-toto+json"),
            ("linux", "amd64", None, media::DOCKER_MANIFEST),
        ]);
        assert_eq!(pick(&i, &Platform::new("linux", "amd64", None)), Some(2));
        let none = index(&[("linux", "arm64", None, media::OCI_MANIFEST)]);
        assert_eq!(
            pick(&none, &Platform::host().clone()).is_some(),
            cfg!(target_arch = "aarch64")
        );
    }
}
