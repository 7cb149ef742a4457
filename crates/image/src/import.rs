//! Import for air-gapped nodes: an OCI image layout or a `docker save`
//! archive (tar, optionally gzip-compressed) into the image store.
//!
//! The archive is read sequentially, several times, never whole into memory:
//! once for the small JSON files that describe it, then for the manifests and
//! configs they name, then to stream each layer into containerd's content
//! store, which verifies every digest at commit.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use crius_core::config::ImagesConfig;
use crius_core::image::CriImage;
use crius_core::{Error, Result};
use crius_registry::{Blob, Platform};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use crate::pull::{Parts, UNCOMPRESSED, check_layers, commit_image};
use crate::store::{Images, Query};

/// Largest JSON document (index, manifest, config) read from an archive.
const MAX_JSON: u64 = 4 << 20;
/// The annotation naming an image in an OCI layout's index.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and docker's) annotation with the full image name.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// One image found in an archive, ready to store.
struct Found {
    names: Vec<String>,
    top: Blob,
    manifest: Blob,
    config: Blob,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    /// Archive path of each layer.
    layer_paths: Vec<String>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid("path", format!("{}: {why}", path.display()))
}

/// Opens the archive for one sequential pass, gunzipping when needed.
fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read + Send>>> {
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(format!("archive {}", path.display())),
        _ => Error::io(format!("opening {}", path.display()), e),
    })?;
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(tar::Archive::new(reader))
}

/// Entry names normalized: no leading `./`.
fn entry_name(entry: &tar::Entry<'_, Box<dyn Read + Send>>) -> Option<String> {
    let p = entry.path().ok()?;
    let s = p.to_str()?.trim_start_matches("./").to_string();
    Some(s)
}

/// Reads the entries named in `wanted` (each at most `MAX_JSON` bytes).
fn read_small(path: &Path, wanted: &[String]) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    let mut archive = open(path)?;
    let entries = archive
        .entries()
        .map_err(|e| bad(path, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(path, format!("corrupt tar: {e}")))?;
        let Some(name) = entry_name(&entry) else {
            continue;
        };
        if !wanted.contains(&name) || out.contains_key(&name) {
            continue;
        }
        if entry.size() > MAX_JSON {
            return Err(bad(path, format!("{name} is larger than {MAX_JSON} bytes")));
        }
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry
            .take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(|e| bad(path, format!("reading {name}: {e}")))?;
        out.insert(name, buf);
    }
    Ok(out)
}

fn blob_path(digest: &str) -> Result<String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| Error::invalid("path", format!("bad digest {digest}")))?;
    Ok(format!("blobs/{alg}/{hex}"))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn to_digest(s: &str) -> Result<oci_spec::image::Digest> {
    s.parse::<oci_spec::image::Digest>()
        .map_err(|e| Error::Internal(format!("digest {s}: {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, name: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| bad(path, format!("{name}: {e}")))
}

/// Reads one JSON blob of an OCI layout by digest, verifying it.
fn oci_blob(path: &Path, desc: &Descriptor) -> Result<Blob> {
    let name = blob_path(desc.digest().as_ref())?;
    let mut files = read_small(path, std::slice::from_ref(&name))?;
    let bytes = files
        .remove(&name)
        .ok_or_else(|| bad(path, format!("{name} is missing")))?;
    if sha256(&bytes) != desc.digest().to_string() || bytes.len() as u64 != desc.size() {
        return Err(Error::DataLoss(format!(
            "{}: blob {} does not match its digest or size",
            path.display(),
            desc.digest()
        )));
    }
    Ok(Blob {
        descriptor: desc.clone(),
        bytes: Bytes::from(bytes),
    })
}

/// The image name an index entry carries, normalized; `None` when it has
/// none or only a bare tag.
fn oci_name(desc: &Descriptor) -> Option<String> {
    let ann = desc.annotations().as_ref()?;
    let name = ann
        .get(CONTAINERD_IMAGE_NAME)
        .or_else(|| ann.get(REF_NAME))?;
    // A bare tag ("latest") names no repository.
    if !name.contains('/') && !name.contains(':') {
        return None;
    }
    crius_registry::parse_reference(name)
        .ok()
        .map(|r| crius_registry::normalized(&r))
}

fn oci_layout(path: &Path, index: &[u8]) -> Result<Vec<Found>> {
    let index: ImageIndex = parse_json(path, "index.json", index)?;
    let platform = Platform::host();
    let mut found = Vec::new();
    for entry in index.manifests() {
        let top = oci_blob(path, entry)?;
        let manifest = match entry.media_type() {
            MediaType::ImageIndex => {
                let inner: ImageIndex = parse_json(path, "an image index", &top.bytes)?;
                let desc = crius_registry::select_manifest(&inner, &platform).ok_or_else(|| {
                    Error::not_found(format!("a manifest for {platform:?} in {}", path.display()))
                })?;
                oci_blob(path, desc)?
            }
            MediaType::ImageManifest => top.clone(),
            MediaType::Other(t) if t == "application/vnd.docker.distribution.manifest.v2+json" => {
                top.clone()
            }
            MediaType::Other(t)
                if t == "application/vnd.docker.distribution.manifest.list.v2+json" =>
            {
                let inner: ImageIndex = parse_json(path, "a manifest list", &top.bytes)?;
                let desc = crius_registry::select_manifest(&inner, &platform).ok_or_else(|| {
                    Error::not_found(format!("a manifest for {platform:?} in {}", path.display()))
                })?;
                oci_blob(path, desc)?
            }
            other => {
                return Err(bad(
                    path,
                    format!("unsupported manifest media type {other}"),
                ));
            }
        };
        let parsed: ImageManifest = parse_json(path, "a manifest", &manifest.bytes)?;
        let config = oci_blob(path, parsed.config())?;
        let diff_ids = diff_ids(path, &config.bytes)?;
        let layers = parsed.layers().clone();
        let layer_paths = layers
            .iter()
            .map(|l| blob_path(l.digest().as_ref()))
            .collect::<Result<Vec<_>>>()?;
        found.push(Found {
            names: oci_name(entry).into_iter().collect(),
            top,
            manifest,
            config,
            layers,
            diff_ids,
            layer_paths,
        });
    }
    Ok(found)
}

fn diff_ids(path: &Path, config: &[u8]) -> Result<Vec<String>> {
    let config: serde_json::Value = parse_json(path, "an image config", config)?;
    config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| bad(path, "image config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| {
            d.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(path, "a diff id is not a string"))
        })
        .collect()
}

/// Hashes the entries named in `wanted`: (digest, size) by name.
fn hash_entries(path: &Path, wanted: &[String]) -> Result<HashMap<String, (String, u64)>> {
    let mut out = HashMap::new();
    let mut archive = open(path)?;
    let entries = archive
        .entries()
        .map_err(|e| bad(path, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(path, format!("corrupt tar: {e}")))?;
        let Some(name) = entry_name(&entry) else {
            continue;
        };
        if !wanted.contains(&name) {
            continue;
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(path, format!("reading {name}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        out.insert(name, (format!("sha256:{:x}", hasher.finalize()), size));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// A legacy `docker save` archive: `manifest.json`, `<id>.json` configs and
/// uncompressed `<dir>/layer.tar` layers. An OCI manifest is made for it.
fn docker_save(path: &Path, manifest_json: &[u8]) -> Result<Vec<Found>> {
    let entries: Vec<DockerEntry> = parse_json(path, "manifest.json", manifest_json)?;
    let configs: Vec<String> = entries.iter().map(|e| e.config.clone()).collect();
    let mut config_files = read_small(path, &configs)?;
    let layer_names: Vec<String> = entries.iter().flat_map(|e| e.layers.clone()).collect();
    let hashes = hash_entries(path, &layer_names)?;
    let mut found = Vec::new();
    for e in entries {
        let config_bytes = config_files
            .remove(&e.config)
            .ok_or_else(|| bad(path, format!("{} is missing", e.config)))?;
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            to_digest(&sha256(&config_bytes))?,
        );
        let mut layers = Vec::new();
        for l in &e.layers {
            let (digest, size) = hashes
                .get(l)
                .ok_or_else(|| bad(path, format!("layer {l} is missing")))?;
            layers.push(Descriptor::new(
                MediaType::ImageLayer,
                *size,
                to_digest(digest)?,
            ));
        }
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc.clone())
            .layers(layers.clone())
            .build()
            .map_err(|e| Error::Internal(format!("building a manifest: {e}")))?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Internal(format!("manifest: {e}")))?;
        let manifest_desc = Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            to_digest(&sha256(&manifest_bytes))?,
        );
        let manifest = Blob {
            descriptor: manifest_desc,
            bytes: Bytes::from(manifest_bytes),
        };
        let names = e
            .repo_tags
            .iter()
            .filter_map(|t| crius_registry::parse_reference(t).ok())
            .map(|r| crius_registry::normalized(&r))
            .collect();
        found.push(Found {
            names,
            top: manifest.clone(),
            manifest,
            config: Blob {
                descriptor: config_desc,
                bytes: Bytes::from(config_bytes),
            },
            diff_ids: Vec::new(),
            layers,
            layer_paths: e.layers.clone(),
        });
    }
    // The config's diff ids are authoritative; layer.tar files are uncompressed,
    // so their digests are the diff ids.
    for f in &mut found {
        f.diff_ids = diff_ids(path, &f.config.bytes)?;
    }
    Ok(found)
}

/// Streams the entries `paths[i]` of the archive into the content store as
/// `layers[i]` (skipping content already there).
async fn store_layers(
    images: &Images,
    path: &Path,
    layers: Vec<(String, Descriptor, String)>,
) -> Result<()> {
    let c = &images.containerd;
    let mut todo: BTreeMap<String, (Descriptor, String)> = BTreeMap::new();
    for (archive_path, desc, diff_id) in layers {
        if c.content_info(desc.digest().as_ref()).await?.is_some() {
            c.content_update_labels(
                desc.digest().as_ref(),
                HashMap::from([(UNCOMPRESSED.to_string(), diff_id)]),
            )
            .await?;
            continue;
        }
        todo.insert(archive_path, (desc, diff_id));
    }
    if todo.is_empty() {
        return Ok(());
    }
    // One blocking reader walks the archive and hands each wanted entry's
    // bytes to the async side, one entry at a time.
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<(String, tokio::sync::mpsc::Receiver<Result<Bytes>>)>(1);
    let wanted: Vec<String> = todo.keys().cloned().collect();
    let archive_path: PathBuf = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut archive = open(&archive_path)?;
        let entries = archive
            .entries()
            .map_err(|e| bad(&archive_path, format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(&archive_path, format!("corrupt tar: {e}")))?;
            let Some(name) = entry_name(&entry) else {
                continue;
            };
            if !wanted.contains(&name) {
                continue;
            }
            let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel(4);
            if tx.blocking_send((name.clone(), chunk_rx)).is_err() {
                return Ok(());
            }
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if chunk_tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        let _ = chunk_tx
                            .blocking_send(Err(bad(&archive_path, format!("reading {name}: {e}"))));
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    });
    let mut stored = 0;
    while let Some((name, chunks)) = rx.recv().await {
        let Some((desc, diff_id)) = todo.get(&name) else {
            continue;
        };
        let digest = desc.digest().to_string();
        let stream = tokio_stream::wrappers::ReceiverStream::new(chunks);
        c.content_write(
            &format!("crius-import-{digest}"),
            &digest,
            desc.size(),
            HashMap::from([(UNCOMPRESSED.to_string(), diff_id.clone())]),
            stream,
        )
        .await?;
        stored += 1;
    }
    reader
        .await
        .map_err(|e| Error::Internal(format!("archive reader: {e}")))??;
    if stored < todo.len() {
        return Err(bad(path, "some layers named by the manifests are missing"));
    }
    Ok(())
}

impl Images {
    /// Imports every image of the archive at `path` (an OCI image layout or a
    /// `docker save` tar); returns them as stored.
    pub async fn import(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        path: &Path,
    ) -> Result<Vec<CriImage>> {
        if !path.is_absolute() {
            return Err(Error::invalid(
                "path",
                format!("{} is not absolute", path.display()),
            ));
        }
        let p = path.to_path_buf();
        let meta = tokio::task::spawn_blocking(move || {
            read_small(
                &p,
                &[
                    "oci-layout".into(),
                    "index.json".into(),
                    "manifest.json".into(),
                ],
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("archive reader: {e}")))??;
        let p = path.to_path_buf();
        let found = tokio::task::spawn_blocking(move || match (meta.get("index.json"), meta.get("manifest.json")) {
            (Some(index), _) if meta.contains_key("oci-layout") => oci_layout(&p, index),
            (_, Some(manifest)) => docker_save(&p, manifest),
            _ => Err(bad(&p, "neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)")),
        })
        .await
        .map_err(|e| Error::Internal(format!("archive reader: {e}")))??;
        if found.is_empty() {
            return Err(bad(path, "the archive holds no image"));
        }

        let lease = format!("crius-import-{}", crius_containerd::unique_suffix());
        self.containerd
            .lease_create(&lease, std::time::Duration::from_secs(3600))
            .await?;
        let leased = Images::new(self.containerd.with_lease(&lease));
        let result = async {
            let mut ids = Vec::new();
            for f in &found {
                check_layers(&path.display().to_string(), &f.layers, &f.diff_ids)?;
                let layers = f
                    .layer_paths
                    .iter()
                    .zip(&f.layers)
                    .zip(&f.diff_ids)
                    .map(|((p, d), id)| (p.clone(), d.clone(), id.clone()))
                    .collect();
                store_layers(&leased, path, layers).await?;
                let parts = Parts {
                    name: &path.display().to_string(),
                    top: &f.top,
                    manifest: &f.manifest,
                    config: &f.config,
                    layers: &f.layers,
                    diff_ids: &f.diff_ids,
                    pinned: false,
                };
                commit_image(
                    &leased.containerd,
                    config,
                    snapshotter,
                    &parts,
                    f.names.clone(),
                )
                .await?;
                ids.push(f.config.descriptor.digest().to_string());
            }
            Ok::<_, Error>(ids)
        }
        .await;
        // Records may have changed, whatever the result.
        self.index.invalidate();
        if let Err(e) = self.containerd.lease_delete(&lease).await {
            tracing::warn!(
                lease,
                "cannot delete the import lease (it expires on its own): {e}"
            );
        }
        let mut images = Vec::new();
        for id in result? {
            if let Some(image) = self.find(&Query::Id(id)).await? {
                images.push(image);
            }
        }
        Ok(images)
    }
}
