//! Images crius makes itself, from files it carries: the sandbox (pause)
//! image. Built locally, never pulled, pinned so kubelet never removes it.

use std::collections::HashMap;

use bytes::Bytes;
use crius_containerd::Containerd;
use crius_core::Result;
use crius_core::config::ImagesConfig;
use crius_core::image::CriImage;
use crius_registry::{Blob, Platform};
use oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;
use crate::pull::{Parts, UNCOMPRESSED, commit_image};
use crate::store::{Images, Query};

/// A built-in image's lease outlives a crashed daemon by at most this long.
const BUILTIN_LEASE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(600);

/// A file of a built-in image; `None` data makes a directory.
pub struct File<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: Option<&'a [u8]>,
}

fn digest_of(data: &[u8]) -> Result<oci_spec::image::Digest, ImageError> {
    let s = format!("sha256:{:x}", Sha256::digest(data));
    s.parse()
        .map_err(|e| ImageError::Internal(format!("digest {s}: {e}")))
}

fn blob(media_type: MediaType, data: Vec<u8>) -> Result<Blob, ImageError> {
    Ok(Blob {
        descriptor: Descriptor::new(media_type, data.len() as u64, digest_of(&data)?),
        bytes: Bytes::from(data),
    })
}

/// A deterministic uncompressed tar of `files` (fixed owner and times).
fn layer_tar(files: &[File<'_>]) -> Result<Vec<u8>, ImageError> {
    let building = |source| ImageError::ArchiveIo {
        context: "building a layer".into(),
        source,
    };
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let mut header = tar::Header::new_ustar();
        let data = f.data.unwrap_or_default();
        header.set_entry_type(if f.data.is_some() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Directory
        });
        header.set_size(data.len() as u64);
        header.set_mode(f.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, f.path.trim_start_matches('/'), data)
            .map_err(building)?;
    }
    tar.into_inner().map_err(building)
}

/// A built-in image, built in memory: one layer, its config, its manifest.
struct Built {
    layer: Blob,
    diff_id: String,
    config: Blob,
    manifest: Blob,
}

impl Built {
    /// The image of `files` with `entrypoint`, for the host's platform.
    /// The same input always gives the same digests.
    fn new(files: &[File<'_>], entrypoint: &[&str]) -> Result<Built, ImageError> {
        let layer = blob(MediaType::ImageLayer, layer_tar(files)?)?;
        // The layer is uncompressed: its digest is its diff id.
        let diff_id = layer.descriptor.digest().to_string();
        let platform = Platform::host();
        let image_config = serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {
                "Entrypoint": entrypoint,
                "WorkingDir": "/",
                "Labels": { "io.crius.builtin": "true" },
            },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        });
        let config = blob(MediaType::ImageConfig, to_json(&image_config)?)?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config.descriptor.clone())
            .layers(vec![layer.descriptor.clone()])
            .build()
            .map_err(|e| ImageError::Internal(format!("building a manifest: {e}")))?;
        let manifest = blob(MediaType::ImageManifest, to_json(&manifest)?)?;
        Ok(Built {
            layer,
            diff_id,
            config,
            manifest,
        })
    }

    /// The image id: its config's digest.
    fn id(&self) -> String {
        self.config.descriptor.digest().to_string()
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Internal(e.to_string()))
}

impl Images {
    /// Makes sure the image `name` (a full reference) holds exactly `files`
    /// with `entrypoint`, building, storing and unpacking it when it does
    /// not; returns it. Idempotent and cheap when the image is in place.
    pub async fn ensure_builtin(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        name: &str,
        files: &[File<'_>],
        entrypoint: &[&str],
    ) -> Result<CriImage> {
        let built = Built::new(files, entrypoint)?;
        if let Some(existing) = self.builtin_in_place(&built, snapshotter, name).await? {
            return Ok(existing);
        }
        let built = &built;
        self.leased(
            "crius-pull-builtin-",
            BUILTIN_LEASE_EXPIRY,
            "built-in image",
            |c| async move { store_builtin(&c, config, snapshotter, name, built).await },
        )
        .await?;
        tracing::info!(image = name, id = %built.id(), "built-in image in place");
        Ok(self.stored(&Query::Id(built.id()), name).await?)
    }

    /// The image when it is stored under `name` and unpacked already.
    async fn builtin_in_place(
        &self,
        built: &Built,
        snapshotter: &str,
        name: &str,
    ) -> Result<Option<CriImage>, ImageError> {
        let reading = ImageError::lookup("looking for the built-in image");
        let Some(existing) = self.find(&Query::Id(built.id())).await.map_err(reading)? else {
            return Ok(None);
        };
        if !existing.repo_tags.iter().any(|t| t == name) {
            return Ok(None);
        }
        let unpacked = self
            .containerd
            .snapshot_stat(snapshotter, &existing.chain_id)
            .await
            .map_err(ImageError::containerd(
                "looking for the built-in image's snapshot",
            ))?
            .is_some();
        Ok(unpacked.then_some(existing))
    }
}

/// Stores the layer and commits the built image, unpacked and pinned.
async fn store_builtin(
    c: &Containerd,
    config: &ImagesConfig,
    snapshotter: &str,
    name: &str,
    built: &Built,
) -> Result<(), ImageError> {
    let diff_id = &built.diff_id;
    c.content_write_bytes(
        &format!("crius-{diff_id}"),
        diff_id,
        HashMap::from([(UNCOMPRESSED.to_string(), diff_id.clone())]),
        built.layer.bytes.clone(),
    )
    .await
    .map_err(ImageError::containerd("storing the built-in layer"))?;
    // The sandbox image must always be unpacked.
    let config = ImagesConfig {
        unpack_on_pull: true,
        ..config.clone()
    };
    let parts = Parts {
        name,
        top: &built.manifest,
        manifest: &built.manifest,
        config: &built.config,
        layers: std::slice::from_ref(&built.layer.descriptor),
        diff_ids: std::slice::from_ref(diff_id),
        pinned: true,
    };
    commit_image(c, &config, snapshotter, &parts, vec![name.to_string()]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_image_names_its_layer_as_diff_id_and_its_entrypoint() {
        let files = [File {
            path: "/pause",
            mode: 0o755,
            data: Some(b"binary"),
        }];
        let a = Built::new(&files, &["/pause"]).expect("built");
        let b = Built::new(&files, &["/pause"]).expect("built");
        assert_eq!(a.id(), b.id(), "same files, same image id");
        assert_eq!(a.diff_id, a.layer.descriptor.digest().to_string());
        let config: serde_json::Value = serde_json::from_slice(&a.config.bytes).expect("JSON");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/pause"])
        );
        assert_eq!(config["rootfs"]["diff_ids"][0], a.diff_id.as_str());
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&a.manifest.bytes).expect("manifest");
        assert_eq!(manifest.config(), &a.config.descriptor);
        assert_eq!(manifest.layers(), std::slice::from_ref(&a.layer.descriptor));
        let other = Built::new(&files, &["/pause", "-v"]).expect("built");
        assert_ne!(other.id(), a.id());
    }

    #[test]
    fn layer_is_deterministic() {
        let files = [
            File {
                path: "/dev",
                mode: 0o755,
                data: None,
            },
            File {
                path: "/pause",
                mode: 0o755,
                data: Some(b"binary"),
            },
        ];
        let a = layer_tar(&files).expect("tar");
        let b = layer_tar(&files).expect("tar");
        assert_eq!(a, b);
        let mut archive = tar::Archive::new(&a[..]);
        let entries: Vec<(String, bool, u32)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                let header = e.header();
                (
                    path,
                    header.entry_type().is_dir(),
                    header.mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("dev".to_string(), true, 0o755),
                ("pause".to_string(), false, 0o755)
            ]
        );
    }
}
