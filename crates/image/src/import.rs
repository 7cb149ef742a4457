//! Import for air-gapped nodes: an OCI image layout or a `docker save`
//! archive (tar, optionally gzip-compressed) into the image store.
//!
//! The archive is read sequentially, several times, never whole into memory:
//! once for the small JSON files that describe it, then for the manifests and
//! configs they name, then to stream each layer into containerd's content
//! store, which verifies every digest at commit.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use crius_containerd::{Containerd, Held};
use crius_core::config::ImagesConfig;
use crius_core::image::CriImage;
use crius_core::{Error, Result};
use crius_registry::{Blob, Platform};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::error::ImageError;
use crate::pull::{Parts, UNCOMPRESSED, check_layers, commit_image};
use crate::store::{Images, Query};

/// Largest JSON document (index, manifest, config) read from an archive.
const MAX_JSON: u64 = 4 << 20;
/// The annotation naming an image in an OCI layout's index.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and docker's) annotation with the full image name.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// An import's lease outlives a crashed daemon by at most this long.
const IMPORT_LEASE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);

/// One image found in an archive, ready to store.
#[derive(Debug)]
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

type Archive = tar::Archive<Box<dyn Read + Send>>;
type Entry<'a> = tar::Entry<'a, Box<dyn Read + Send>>;

/// Opens the archive for one sequential pass, gunzipping when needed.
fn open(path: &Path) -> Result<Archive, ImageError> {
    let opening = |source| ImageError::ArchiveIo {
        context: format!("opening {}", path.display()),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::NoArchive {
            path: path.to_path_buf(),
        },
        _ => opening(e),
    })?;
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(path).map_err(opening)?;
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(tar::Archive::new(reader))
}

/// Entry names normalized: no leading `./`.
fn entry_name(entry: &Entry<'_>) -> Option<String> {
    let p = entry.path().ok()?;
    let s = p.to_str()?.trim_start_matches("./").to_string();
    Some(s)
}

/// Walks the archive once, handing `visit` each entry named in `wanted`
/// (with its normalized name); `visit` answers whether to go on.
fn walk(
    path: &Path,
    wanted: &[String],
    mut visit: impl FnMut(String, &mut Entry<'_>) -> Result<bool, ImageError>,
) -> Result<(), ImageError> {
    let mut archive = open(path)?;
    let entries = archive
        .entries()
        .map_err(|e| ImageError::archive(path, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ImageError::archive(path, format!("corrupt tar: {e}")))?;
        let Some(name) = entry_name(&entry) else {
            continue;
        };
        if wanted.contains(&name) && !visit(name, &mut entry)? {
            break;
        }
    }
    Ok(())
}

/// Reads the entries named in `wanted` (each at most `MAX_JSON` bytes).
fn read_small(path: &Path, wanted: &[String]) -> Result<HashMap<String, Vec<u8>>, ImageError> {
    let mut out = HashMap::new();
    walk(path, wanted, |name, entry| {
        if out.contains_key(&name) {
            return Ok(true);
        }
        if entry.size() > MAX_JSON {
            let why = format!("{name} is larger than {MAX_JSON} bytes");
            return Err(ImageError::archive(path, why));
        }
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry
            .take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(|e| ImageError::archive(path, format!("reading {name}: {e}")))?;
        out.insert(name, buf);
        Ok(true)
    })?;
    Ok(out)
}

/// Hashes the entries named in `wanted`: (digest, size) by name.
fn hash_entries(
    path: &Path,
    wanted: &[String],
) -> Result<HashMap<String, (String, u64)>, ImageError> {
    let mut out = HashMap::new();
    walk(path, wanted, |name, entry| {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| ImageError::archive(path, format!("reading {name}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        out.insert(name, (format!("sha256:{:x}", hasher.finalize()), size));
        Ok(true)
    })?;
    Ok(out)
}

/// Where an OCI layout keeps the blob of `digest`.
fn blob_path(path: &Path, digest: &str) -> Result<String, ImageError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| ImageError::archive(path, format!("bad digest {digest}")))?;
    Ok(format!("blobs/{alg}/{hex}"))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn to_digest(s: &str) -> Result<oci_spec::image::Digest, ImageError> {
    s.parse::<oci_spec::image::Digest>()
        .map_err(|e| ImageError::Internal(format!("digest {s}: {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    name: &str,
    data: &[u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|e| ImageError::archive(path, format!("{name}: {e}")))
}

/// Reads one JSON blob of an OCI layout by digest, verifying it.
fn oci_blob(path: &Path, desc: &Descriptor) -> Result<Blob, ImageError> {
    let name = blob_path(path, desc.digest().as_ref())?;
    let mut files = read_small(path, std::slice::from_ref(&name))?;
    let bytes = files
        .remove(&name)
        .ok_or_else(|| ImageError::archive(path, format!("{name} is missing")))?;
    if sha256(&bytes) != desc.digest().to_string() || bytes.len() as u64 != desc.size() {
        return Err(ImageError::Corrupt {
            path: path.to_path_buf(),
            digest: desc.digest().to_string(),
        });
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

/// The manifest an OCI layout's index entry stands for: itself, or the
/// host platform's of the index (or docker manifest list) it is.
fn oci_manifest(path: &Path, top: &Blob, platform: &Platform) -> Result<Blob, ImageError> {
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let what = match top.descriptor.media_type() {
        MediaType::ImageManifest => return Ok(top.clone()),
        MediaType::Other(t) if t == DOCKER_MANIFEST => return Ok(top.clone()),
        MediaType::ImageIndex => "an image index",
        MediaType::Other(t) if t == DOCKER_LIST => "a manifest list",
        other => {
            let why = format!("unsupported manifest media type {other}");
            return Err(ImageError::archive(path, why));
        }
    };
    let inner: ImageIndex = parse_json(path, what, &top.bytes)?;
    let desc = crius_registry::select_manifest(&inner, platform).ok_or_else(|| {
        ImageError::NoPlatform {
            platform: format!("{platform:?}"),
            path: path.to_path_buf(),
        }
    })?;
    oci_blob(path, desc)
}

fn oci_layout(path: &Path, index: &[u8]) -> Result<Vec<Found>, ImageError> {
    let index: ImageIndex = parse_json(path, "index.json", index)?;
    let platform = Platform::host();
    let mut found = Vec::new();
    for entry in index.manifests() {
        let top = oci_blob(path, entry)?;
        let manifest = oci_manifest(path, &top, &platform)?;
        let parsed: ImageManifest = parse_json(path, "a manifest", &manifest.bytes)?;
        let config = oci_blob(path, parsed.config())?;
        let diff_ids = diff_ids(path, &config.bytes)?;
        let layers = parsed.layers().clone();
        let layer_paths = layers
            .iter()
            .map(|l| blob_path(path, l.digest().as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
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

fn diff_ids(path: &Path, config: &[u8]) -> Result<Vec<String>, ImageError> {
    let config: serde_json::Value = parse_json(path, "an image config", config)?;
    config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| ImageError::archive(path, "image config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| {
            d.as_str()
                .map(str::to_string)
                .ok_or_else(|| ImageError::archive(path, "a diff id is not a string"))
        })
        .collect()
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
fn docker_save(path: &Path, manifest_json: &[u8]) -> Result<Vec<Found>, ImageError> {
    let entries: Vec<DockerEntry> = parse_json(path, "manifest.json", manifest_json)?;
    let configs: Vec<String> = entries.iter().map(|e| e.config.clone()).collect();
    let mut config_files = read_small(path, &configs)?;
    let layer_names: Vec<String> = entries.iter().flat_map(|e| e.layers.clone()).collect();
    let hashes = hash_entries(path, &layer_names)?;
    entries
        .into_iter()
        .map(|e| {
            let config = config_files
                .remove(&e.config)
                .ok_or_else(|| ImageError::archive(path, format!("{} is missing", e.config)))?;
            docker_image(path, e, config, &hashes)
        })
        .collect()
}

/// One image of a `docker save` archive, with the OCI manifest made for it.
fn docker_image(
    path: &Path,
    e: DockerEntry,
    config_bytes: Vec<u8>,
    hashes: &HashMap<String, (String, u64)>,
) -> Result<Found, ImageError> {
    let config = Blob {
        descriptor: Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            to_digest(&sha256(&config_bytes))?,
        ),
        bytes: Bytes::from(config_bytes),
    };
    let layers = e
        .layers
        .iter()
        .map(|l| {
            let (digest, size) = hashes
                .get(l)
                .ok_or_else(|| ImageError::archive(path, format!("layer {l} is missing")))?;
            Ok(Descriptor::new(
                MediaType::ImageLayer,
                *size,
                to_digest(digest)?,
            ))
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    let manifest = docker_manifest(&config.descriptor, &layers)?;
    let names = e
        .repo_tags
        .iter()
        .filter_map(|t| crius_registry::parse_reference(t).ok())
        .map(|r| crius_registry::normalized(&r))
        .collect();
    // The config's diff ids are authoritative; layer.tar files are
    // uncompressed, so their digests are the diff ids.
    let diff_ids = diff_ids(path, &config.bytes)?;
    Ok(Found {
        names,
        top: manifest.clone(),
        manifest,
        config,
        diff_ids,
        layers,
        layer_paths: e.layers,
    })
}

/// The OCI manifest of a config and its layers.
fn docker_manifest(config: &Descriptor, layers: &[Descriptor]) -> Result<Blob, ImageError> {
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.clone())
        .layers(layers.to_vec())
        .build()
        .map_err(|e| ImageError::Internal(format!("building a manifest: {e}")))?;
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| ImageError::Internal(format!("manifest: {e}")))?;
    Ok(Blob {
        descriptor: Descriptor::new(
            MediaType::ImageManifest,
            bytes.len() as u64,
            to_digest(&sha256(&bytes))?,
        ),
        bytes: Bytes::from(bytes),
    })
}

/// What the archive at `path` holds: an OCI image layout, or a `docker
/// save` archive.
fn describe(path: &Path) -> Result<Vec<Found>, ImageError> {
    let wanted = ["oci-layout", "index.json", "manifest.json"].map(String::from);
    let meta = read_small(path, &wanted)?;
    match (meta.get("index.json"), meta.get("manifest.json")) {
        (Some(index), _) if meta.contains_key("oci-layout") => oci_layout(path, index),
        (_, Some(manifest)) => docker_save(path, manifest),
        _ => Err(ImageError::archive(
            path,
            "neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)",
        )),
    }
}

/// A layer to store: its archive path, descriptor and diff id.
type Layer = (String, Descriptor, String);
/// A layer entry's bytes as the archive reader hands them over.
type Chunks = mpsc::Receiver<crius_containerd::Result<Bytes>>;

/// Streams the entries `paths[i]` of the archive into the content store as
/// `layers[i]` (skipping content already there).
async fn store_layers(c: &Containerd, path: &Path, layers: Vec<Layer>) -> Result<(), ImageError> {
    let todo = layers_missing(c, layers).await?;
    if todo.is_empty() {
        return Ok(());
    }
    // One blocking reader walks the archive and hands each wanted entry's
    // bytes to the async side, one entry at a time.
    let (tx, rx) = mpsc::channel(1);
    let wanted: Vec<String> = todo.keys().cloned().collect();
    let archive = path.to_path_buf();
    let reader = crius_rt::blocking("archive reader", move || {
        Ok(send_entries(&archive, &wanted, tx))
    });
    let (read, stored) = tokio::join!(reader, write_layers(c, rx, &todo));
    // The reader's failure first: a write it broke off failed because of it.
    read.map_err(ImageError::Lost)??;
    let stored = stored?;
    if stored < todo.len() {
        let why = "some layers named by the manifests are missing";
        return Err(ImageError::archive(path, why));
    }
    Ok(())
}

/// The layers not in the content store yet, by archive path; those there
/// get the label of their diff id.
async fn layers_missing(
    c: &Containerd,
    layers: Vec<Layer>,
) -> Result<BTreeMap<String, (Descriptor, String)>, ImageError> {
    let mut todo = BTreeMap::new();
    for (archive_path, desc, diff_id) in layers {
        let digest = desc.digest().to_string();
        let looking = ImageError::containerd("looking for a layer");
        // Held first: the removal of another image sharing it must not
        // take it between this look and the image record.
        c.lease_hold(Held::Content(&digest))
            .await
            .map_err(ImageError::containerd("holding a layer"))?;
        if c.content_info(&digest).await.map_err(looking)?.is_some() {
            let labels = HashMap::from([(UNCOMPRESSED.to_string(), diff_id)]);
            c.content_update_labels(&digest, labels)
                .await
                .map_err(ImageError::containerd("labelling a layer"))?;
            continue;
        }
        todo.insert(archive_path, (desc, diff_id));
    }
    Ok(todo)
}

/// The archive reader's side: each entry of `wanted`, as a channel of its
/// bytes. Stops when the async side hangs up (an entry whose bytes it
/// stops taking is skipped, not the rest); a read error breaks that
/// entry's stream off (containerd then aborts its ingest) and is the
/// reader's answer.
fn send_entries(
    path: &Path,
    wanted: &[String],
    tx: mpsc::Sender<(String, Chunks)>,
) -> Result<(), ImageError> {
    walk(path, wanted, |name, entry| {
        let (chunk_tx, chunk_rx) = mpsc::channel(4);
        if tx.blocking_send((name.clone(), chunk_rx)).is_err() {
            return Ok(false);
        }
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let chunk = match entry.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => Bytes::copy_from_slice(&buf[..n]),
                Err(e) => {
                    let why = format!("reading {name} from the archive: {e}");
                    let _ = chunk_tx.blocking_send(Err(crius_containerd::Error::Broken(why)));
                    return Err(ImageError::archive(path, format!("reading {name}: {e}")));
                }
            };
            // The writer needs no more of this entry (the blob turned up in
            // the store meanwhile, e.g. shared from another namespace, and
            // was committed without reading it): on to the next one. Only a
            // closed `tx` ends the walk.
            if chunk_tx.blocking_send(Ok(chunk)).is_err() {
                return Ok(!tx.is_closed());
            }
        }
    })
}

/// The async side: writes each entry the reader hands over into the
/// content store; answers how many were stored.
async fn write_layers(
    c: &Containerd,
    mut rx: mpsc::Receiver<(String, Chunks)>,
    todo: &BTreeMap<String, (Descriptor, String)>,
) -> Result<usize, ImageError> {
    let mut stored = 0;
    while let Some((name, chunks)) = rx.recv().await {
        let Some((desc, diff_id)) = todo.get(&name) else {
            continue;
        };
        let digest = desc.digest().to_string();
        c.content_write(
            &format!("crius-import-{digest}"),
            &digest,
            desc.size(),
            HashMap::from([(UNCOMPRESSED.to_string(), diff_id.clone())]),
            tokio_stream::wrappers::ReceiverStream::new(chunks),
        )
        .await
        .map_err(ImageError::containerd("storing a layer"))?;
        stored += 1;
    }
    Ok(stored)
}

/// Stores one image of the archive: its layers, then what describes it;
/// answers its id.
async fn store_found(
    c: &Containerd,
    config: &ImagesConfig,
    snapshotter: &str,
    path: &Path,
    f: &Found,
) -> Result<String, ImageError> {
    let name = path.display().to_string();
    check_layers(&name, &f.layers, &f.diff_ids)?;
    let layers = f
        .layer_paths
        .iter()
        .zip(&f.layers)
        .zip(&f.diff_ids)
        .map(|((p, d), id)| (p.clone(), d.clone(), id.clone()))
        .collect();
    store_layers(c, path, layers).await?;
    let parts = Parts {
        name: &name,
        top: &f.top,
        manifest: &f.manifest,
        config: &f.config,
        layers: &f.layers,
        diff_ids: &f.diff_ids,
        pinned: false,
    };
    commit_image(c, config, snapshotter, &parts, f.names.clone()).await?;
    Ok(f.config.descriptor.digest().to_string())
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
        let archive = path.to_path_buf();
        let found = crius_rt::blocking("archive reader", move || Ok(describe(&archive)))
            .await
            .map_err(ImageError::Lost)??;
        if found.is_empty() {
            return Err(ImageError::archive(path, "the archive holds no image").into());
        }
        let found = &found;
        let ids = self
            .leased(
                "crius-import-",
                IMPORT_LEASE_EXPIRY,
                "import",
                |c| async move {
                    let mut ids = Vec::with_capacity(found.len());
                    for f in found {
                        ids.push(store_found(&c, config, snapshotter, path, f).await?);
                    }
                    Ok(ids)
                },
            )
            .await?;
        let mut images = Vec::new();
        for id in ids {
            if let Some(image) = self.find(&Query::Id(id)).await? {
                images.push(image);
            }
        }
        Ok(images)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A tar at `dir/name` holding `entries`, gzipped when `gz`.
    fn archive(dir: &Path, name: &str, entries: &[(&str, &[u8])], gz: bool) -> PathBuf {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).expect("append");
        }
        let mut bytes = tar.into_inner().expect("tar");
        if gz {
            use std::io::Write as _;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&bytes).expect("gzip");
            bytes = enc.finish().expect("gzip");
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn config_json(diff_id: &str) -> Vec<u8> {
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#)
            .into_bytes()
    }

    fn code(e: ImageError) -> Error {
        Error::from(e)
    }

    #[tokio::test]
    async fn an_entry_the_writer_stops_taking_does_not_end_the_walk() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Larger than one read, so the writer's hang-up is seen mid-entry.
        let big = vec![7u8; 3 << 20];
        let path = archive(dir.path(), "a.tar", &[("a", &big), ("b", b"bee")], false);
        let (tx, mut rx) = mpsc::channel(1);
        let wanted = vec!["a".to_string(), "b".to_string()];
        let reader = std::thread::spawn(move || send_entries(&path, &wanted, tx));
        // `a` turned up in the store meanwhile: its bytes are not read.
        let (name, a) = rx.recv().await.expect("entry a");
        assert_eq!(name, "a");
        drop(a);
        let (name, mut b) = rx.recv().await.expect("entry b after a skipped one");
        assert_eq!(name, "b");
        let mut got = Vec::new();
        while let Some(chunk) = b.recv().await {
            got.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(got, b"bee");
        assert!(rx.recv().await.is_none());
        assert!(matches!(reader.join(), Ok(Ok(()))));
    }

    #[test]
    fn a_docker_save_archive_gets_an_oci_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = b"layer bytes".as_slice();
        let config = config_json(&sha256(layer));
        let manifest =
            br#"[{"Config":"abc.json","RepoTags":["busybox:1"],"Layers":["l1/layer.tar"]}]"#;
        for gz in [false, true] {
            let entries = [
                ("manifest.json", manifest.as_slice()),
                ("./abc.json", config.as_slice()),
                ("l1/layer.tar", layer),
            ];
            let path = archive(dir.path(), &format!("save-{gz}.tar"), &entries, gz);
            let found = describe(&path).expect("describes");
            let [f] = found.as_slice() else {
                panic!("one image: {found:?}");
            };
            assert_eq!(f.names, ["docker.io/library/busybox:1"]);
            assert_eq!(f.layer_paths, ["l1/layer.tar"]);
            assert_eq!(f.diff_ids, [sha256(layer)]);
            assert_eq!(f.layers[0].digest().to_string(), sha256(layer));
            assert_eq!(f.layers[0].size(), layer.len() as u64);
            assert_eq!(f.config.descriptor.digest().to_string(), sha256(&config));
            assert_eq!(f.top.descriptor, f.manifest.descriptor);
            let m: ImageManifest = serde_json::from_slice(&f.manifest.bytes).expect("manifest");
            assert_eq!(m.config(), &f.config.descriptor);
            assert_eq!(
                sha256(&f.manifest.bytes),
                f.manifest.descriptor.digest().to_string()
            );
        }
    }

    fn descriptor(media_type: &str, data: &[u8]) -> String {
        format!(
            r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
            sha256(data),
            data.len()
        )
    }

    fn blob_name(data: &[u8]) -> String {
        format!("blobs/sha256/{}", &sha256(data)["sha256:".len()..])
    }

    /// An OCI layout of one image named `example.com/app:v1`; `lie` makes
    /// the index give the manifest a wrong size.
    fn oci_archive(dir: &Path, lie: bool) -> (PathBuf, Vec<u8>) {
        let layer = b"oci layer".as_slice();
        let config = config_json(&sha256(layer));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
            descriptor("application/vnd.oci.image.config.v1+json", &config),
            descriptor("application/vnd.oci.image.layer.v1.tar", layer),
        )
        .into_bytes();
        let size = manifest.len() + usize::from(lie);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{size},"annotations":{{"{REF_NAME}":"example.com/app:v1"}}}}]}}"#,
            sha256(&manifest),
        );
        let names = [blob_name(&manifest), blob_name(&config), blob_name(layer)];
        let entries = [
            (
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice(),
            ),
            ("index.json", index.as_bytes()),
            (names[0].as_str(), manifest.as_slice()),
            (names[1].as_str(), config.as_slice()),
            (names[2].as_str(), layer),
        ];
        (archive(dir, "oci.tar", &entries, false), layer.to_vec())
    }

    #[test]
    fn an_oci_layout_is_read_and_verified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, layer) = oci_archive(dir.path(), false);
        let found = describe(&path).expect("describes");
        let [f] = found.as_slice() else {
            panic!("one image: {found:?}");
        };
        assert_eq!(f.names, ["example.com/app:v1"]);
        assert_eq!(f.diff_ids, [sha256(&layer)]);
        assert_eq!(f.layer_paths, [blob_name(&layer)]);
        let (path, _) = oci_archive(dir.path(), true);
        let err = describe(&path).expect_err("the manifest's size is wrong");
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err:?}");
        assert!(matches!(code(err), Error::DataLoss(_)));
    }

    #[test]
    fn what_is_no_image_archive_is_the_clients_mistake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("gone.tar");
        assert!(matches!(
            code(describe(&gone).expect_err("missing")),
            Error::NotFound { .. }
        ));
        let other = archive(dir.path(), "other.tar", &[("readme", b"hi")], false);
        match code(describe(&other).expect_err("no image")) {
            Error::InvalidArgument { field, reason } => {
                assert_eq!(field, "path");
                assert!(reason.contains("neither an OCI image layout"), "{reason}");
            }
            e => panic!("{e:?}"),
        }
        let junk = dir.path().join("junk.tar");
        std::fs::write(&junk, vec![0xffu8; 1024]).expect("write");
        assert!(matches!(
            code(describe(&junk).expect_err("junk")),
            Error::InvalidArgument { .. }
        ));
    }

    #[test]
    fn index_names_need_a_repository() {
        let named = |name: &str| {
            let json = format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":1,"annotations":{{"{REF_NAME}":"{name}"}}}}"#,
                "a".repeat(64)
            );
            let desc: Descriptor = serde_json::from_str(&json).expect("descriptor");
            oci_name(&desc)
        };
        assert_eq!(named("latest"), None);
        assert_eq!(
            named("busybox:1").as_deref(),
            Some("docker.io/library/busybox:1")
        );
        assert_eq!(
            named("example.com/app:v1").as_deref(),
            Some("example.com/app:v1")
        );
    }
}
