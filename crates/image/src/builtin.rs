//! Images crius makes itself, from files it carries: the sandbox (pause)
//! image. Built locally, never pulled, pinned so kubelet never removes it.

use std::collections::HashMap;

use bytes::Bytes;
use crius_core::config::ImagesConfig;
use crius_core::image::CriImage;
use crius_core::{Error, Result};
use crius_registry::{Blob, Platform};
use oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};

use crate::pull::{Parts, UNCOMPRESSED, commit_image};
use crate::store::{Images, Query};

/// A file of a built-in image; `None` data makes a directory.
pub struct File<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: Option<&'a [u8]>,
}

fn digest_of(data: &[u8]) -> Result<oci_spec::image::Digest> {
    let s = format!("sha256:{:x}", Sha256::digest(data));
    s.parse()
        .map_err(|e| Error::Internal(format!("digest {s}: {e}")))
}

fn blob(media_type: MediaType, data: Vec<u8>) -> Result<Blob> {
    Ok(Blob {
        descriptor: Descriptor::new(media_type, data.len() as u64, digest_of(&data)?),
        bytes: Bytes::from(data),
    })
}

/// A deterministic uncompressed tar of `files` (fixed owner and times).
fn layer_tar(files: &[File<'_>]) -> Result<Vec<u8>> {
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
            .map_err(|e| Error::io("building a layer", e))?;
    }
    tar.into_inner()
        .map_err(|e| Error::io("building a layer", e))
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
        let layer = blob(MediaType::ImageLayer, layer_tar(files)?)?;
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
        let config_blob = blob(
            MediaType::ImageConfig,
            serde_json::to_vec(&image_config).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_blob.descriptor.clone())
            .layers(vec![layer.descriptor.clone()])
            .build()
            .map_err(|e| Error::Internal(format!("building a manifest: {e}")))?;
        let manifest = blob(
            MediaType::ImageManifest,
            serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        let id = config_blob.descriptor.digest().to_string();
        if let Some(existing) = self.find(&Query::Id(id.clone())).await?
            && existing.repo_tags.iter().any(|t| t == name)
            && self
                .containerd
                .snapshot_stat(snapshotter, &existing.chain_id)
                .await?
                .is_some()
        {
            return Ok(existing);
        }

        let lease = format!("crius-pull-builtin-{}", crius_containerd::unique_suffix());
        self.containerd
            .lease_create(&lease, std::time::Duration::from_secs(600))
            .await?;
        let c = self.containerd.with_lease(&lease);
        let result = async {
            c.content_write_bytes(
                &format!("crius-{diff_id}"),
                &diff_id,
                HashMap::from([(UNCOMPRESSED.to_string(), diff_id.clone())]),
                layer.bytes.clone(),
            )
            .await?;
            // The sandbox image must always be unpacked.
            let config = ImagesConfig {
                unpack_on_pull: true,
                ..config.clone()
            };
            let parts = Parts {
                name,
                top: &manifest,
                manifest: &manifest,
                config: &config_blob,
                layers: std::slice::from_ref(&layer.descriptor),
                diff_ids: std::slice::from_ref(&diff_id),
                pinned: true,
            };
            commit_image(&c, &config, snapshotter, &parts, vec![name.to_string()]).await
        }
        .await;
        // Records may have changed, whatever the result.
        self.index.invalidate();
        if let Err(e) = self.containerd.lease_delete(&lease).await {
            tracing::warn!(
                lease,
                "cannot delete the lease (it expires on its own): {e}"
            );
        }
        result?;
        tracing::info!(image = name, id = %id, "built-in image in place");
        self.find(&Query::Id(id.clone()))
            .await?
            .ok_or_else(|| Error::Internal(format!("{name} was stored but cannot be found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
