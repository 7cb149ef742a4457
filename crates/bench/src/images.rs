//! The images the `compare` benchmark pulls, pushed to a local registry.
//!
//! * `big`: ~100 MB (compressed) in 5 gzip layers of pseudo-random data
//!   (7 bits of entropy per byte, so gzip does real Huffman work but gains
//!   only ~12%), a few large and many small files per layer. Built from a
//!   fixed seed: every build gives the same digests. The registry storage it
//!   is pushed to lives in a cache directory, so a rerun finds it there and
//!   skips building it.
//! * `small`: the testkit busybox image (~1 MB): the image of every pod
//!   scenario's container.
//! * `pause`: the sandbox image of containerd's CRI plugin (endpoint B),
//!   holding crius' own pause program (`crius_pause::PAUSE`), laid out like
//!   the built-in sandbox image crius makes for itself (`/pause` as
//!   entrypoint, `/dev`, `/etc`, `/proc`, `/sys`): both endpoints run the
//!   same pause binary.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use crius_testkit::images::{self, BUSYBOX, media_type};
use crius_testkit::registry::{Registry, sha256_digest};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Bump when anything that changes the big image changes.
const BIG_BUILDER_VERSION: u32 = 1;
pub const BIG_REPO: &str = "crius-bench/big";
pub const BIG_TAG: &str = "v1";
const BIG_LAYERS: usize = 5;
const LARGE_FILES_PER_LAYER: usize = 4;
const LARGE_FILE_BYTES: usize = 4 << 20;
const SMALL_FILES_PER_LAYER: usize = 400;
const SMALL_FILE_BYTES: usize = 16 << 10;
const SEED: u64 = 0x6372_6975_735f_6265; // "crius_be"
/// mtime of every tar entry (2024-01-01T00:00:00Z).
const FIXED_MTIME: u64 = 1_704_067_200;
const INFO_FILE: &str = "big-image.json";

/// An image to pull, as pushed to the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushedImage {
    /// `big` or `small`.
    pub label: String,
    pub repo: String,
    pub tag: String,
    pub manifest_digest: String,
    /// Manifest + config + layers, compressed: what a pull downloads.
    pub size_bytes: u64,
    pub uncompressed_bytes: u64,
    /// Layer digests (compressed), to check that a removal freed them.
    pub layers: Vec<String>,
}

impl PushedImage {
    /// `127.0.0.1:PORT/repo:tag`.
    pub fn reference(&self, registry_addr: &str) -> String {
        format!("{registry_addr}/{}:{}", self.repo, self.tag)
    }
}

#[derive(Serialize, Deserialize)]
struct CachedBig {
    stamp: String,
    image: PushedImage,
}

fn big_stamp() -> String {
    format!(
        "crius-bench big image\nbuilder: {BIG_BUILDER_VERSION}\narch: {}\nlayers: {BIG_LAYERS}x({LARGE_FILES_PER_LAYER}x{LARGE_FILE_BYTES}+{SMALL_FILES_PER_LAYER}x{SMALL_FILE_BYTES})\nseed: {SEED:#x}\n",
        oci_arch()
    )
}

/// The OCI architecture of this machine.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Pushes the big image unless `cache_dir/big-image.json` says the registry
/// storage (`registry`, serving the cache's storage) has it already.
pub fn ensure_big(registry: &Registry, cache_dir: &Path) -> Result<PushedImage> {
    let info_path = cache_dir.join(INFO_FILE);
    let stamp = big_stamp();
    if let Ok(json) = std::fs::read(&info_path)
        && let Ok(cached) = serde_json::from_slice::<CachedBig>(&json)
        && cached.stamp == stamp
        && registry
            .get_manifest(BIG_REPO, BIG_TAG)
            .is_ok_and(|r| r.header("Docker-Content-Digest") == Some(&cached.image.manifest_digest))
        && cached
            .image
            .layers
            .iter()
            .all(|l| registry.has_blob(BIG_REPO, l).unwrap_or(false))
    {
        return Ok(cached.image);
    }
    eprintln!(
        "crius-bench: building the ~100 MB benchmark image (once; cached in {})",
        cache_dir.display()
    );
    let started = std::time::Instant::now();
    let image = build_and_push_big(registry)?;
    eprintln!(
        "crius-bench: built and pushed {} ({} bytes) in {:.1} s",
        image.manifest_digest,
        image.size_bytes,
        started.elapsed().as_secs_f64()
    );
    let cached = CachedBig { stamp, image };
    std::fs::write(&info_path, serde_json::to_vec_pretty(&cached)?)
        .with_context(|| format!("writing {}", info_path.display()))?;
    Ok(cached.image)
}

/// splitmix64: tiny, fast and deterministic.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `len` bytes of 7-bit pseudo-random data.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&(self.next() & 0x7f7f_7f7f_7f7f_7f7f).to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn tar_header(path: &str, size: usize, dir: bool) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .with_context(|| format!("tar path {path}"))?;
    h.set_size(size as u64);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_cksum();
    Ok(h)
}

/// One layer: (uncompressed tar, gzip of it).
fn build_layer(index: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut rng = SplitMix64(SEED ^ (index as u64).wrapping_mul(0x1000_0000_01b3));
    let mut tar = tar::Builder::new(Vec::new());
    let top = format!("bench/layer-{index}");
    for dir in [
        "bench/".to_owned(),
        format!("{top}/"),
        format!("{top}/small/"),
    ] {
        tar.append(&tar_header(&dir, 0, true)?, std::io::empty())?;
    }
    for f in 0..LARGE_FILES_PER_LAYER {
        let data = rng.bytes(LARGE_FILE_BYTES);
        let path = format!("{top}/large-{f}.bin");
        tar.append(&tar_header(&path, data.len(), false)?, data.as_slice())?;
    }
    for f in 0..SMALL_FILES_PER_LAYER {
        let data = rng.bytes(SMALL_FILE_BYTES);
        let path = format!("{top}/small/file-{f:04}.bin");
        tar.append(&tar_header(&path, data.len(), false)?, data.as_slice())?;
    }
    let tar = tar.into_inner()?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    Ok((tar, gz))
}

fn build_and_push_big(registry: &Registry) -> Result<PushedImage> {
    let layers: Vec<(Vec<u8>, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..BIG_LAYERS)
            .map(|i| s.spawn(move || build_layer(i)))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(_) => bail!("a layer builder panicked"),
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let diff_ids: Vec<String> = layers.iter().map(|(tar, _)| sha256_digest(tar)).collect();
    let uncompressed_bytes = layers.iter().map(|(tar, _)| tar.len() as u64).sum();
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": [images::PATH_ENV],
            "Cmd": ["/bin/sh"],
            "Labels": { "io.crius.bench.image": BIG_REPO },
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": (0..BIG_LAYERS)
            .map(|i| json!({ "created": "2024-01-01T00:00:00Z", "created_by": format!("crius-bench layer {i}") }))
            .collect::<Vec<_>>(),
    }))?;
    let mut layer_descs = Vec::new();
    let mut layer_digests = Vec::new();
    let mut size_bytes = config.len() as u64;
    for (_, gz) in &layers {
        let digest = registry.push_blob(BIG_REPO, gz)?;
        size_bytes += gz.len() as u64;
        layer_descs.push(json!({
            "mediaType": media_type::OCI_LAYER_GZIP,
            "digest": digest,
            "size": gz.len(),
        }));
        layer_digests.push(digest);
    }
    let config_digest = registry.push_blob(BIG_REPO, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": media_type::OCI_CONFIG,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descs,
    }))?;
    size_bytes += manifest.len() as u64;
    let manifest_digest =
        registry.put_manifest(BIG_REPO, BIG_TAG, media_type::OCI_MANIFEST, &manifest)?;
    if manifest_digest != sha256_digest(&manifest) {
        bail!(
            "the registry stored the manifest as {manifest_digest}, expected {}",
            sha256_digest(&manifest)
        );
    }
    Ok(PushedImage {
        label: "big".into(),
        repo: BIG_REPO.into(),
        tag: BIG_TAG.into(),
        manifest_digest,
        size_bytes,
        uncompressed_bytes,
        layers: layer_digests,
    })
}

/// Pushes the testkit busybox image (cheap: ~1 MB, already-present blobs are skipped).
pub fn ensure_small(registry: &Registry) -> Result<PushedImage> {
    let built = images::build_image(BUSYBOX)?;
    images::push_image(registry, &built)?;
    let (repo, tag) = BUSYBOX.split_once(':').context("BUSYBOX is repo:tag")?;
    let size_bytes = built
        .all_blobs()
        .values()
        .map(|b| b.data.len() as u64)
        .sum();
    let amd64 = built.info.amd64();
    let uncompressed_bytes = built
        .blobs
        .iter()
        .filter(|b| amd64.layers.contains(&b.digest))
        .map(|b| uncompressed_len(&b.data))
        .sum();
    Ok(PushedImage {
        label: "small".into(),
        repo: repo.into(),
        tag: tag.into(),
        manifest_digest: built.info.manifest_digest.clone(),
        size_bytes,
        uncompressed_bytes,
        layers: amd64.layers.clone(),
    })
}

pub const PAUSE_REPO: &str = "crius-bench/pause";

/// Pushes the pause image (a few KB; already-present blobs are skipped).
pub fn ensure_pause(registry: &Registry) -> Result<PushedImage> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["dev/", "etc/", "proc/", "sys/"] {
        tar.append(&tar_header(dir, 0, true)?, std::io::empty())?;
    }
    let mut h = tar_header("pause", crius_pause::PAUSE.len(), false)?;
    h.set_mode(0o755);
    h.set_cksum();
    tar.append(&h, crius_pause::PAUSE)?;
    let tar = tar.into_inner()?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/pause"],
            "WorkingDir": "/",
            "Labels": { "io.crius.bench.image": PAUSE_REPO },
        },
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&tar)] },
    }))?;
    let layer = registry.push_blob(PAUSE_REPO, &gz)?;
    let config_digest = registry.push_blob(PAUSE_REPO, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": media_type::OCI_CONFIG,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media_type::OCI_LAYER_GZIP,
            "digest": layer,
            "size": gz.len(),
        }],
    }))?;
    let tag = env!("CARGO_PKG_VERSION");
    let manifest_digest =
        registry.put_manifest(PAUSE_REPO, tag, media_type::OCI_MANIFEST, &manifest)?;
    Ok(PushedImage {
        label: "pause".into(),
        repo: PAUSE_REPO.into(),
        tag: tag.into(),
        manifest_digest,
        size_bytes: (gz.len() + config.len() + manifest.len()) as u64,
        uncompressed_bytes: tar.len() as u64,
        layers: vec![layer],
    })
}

fn uncompressed_len(gz: &[u8]) -> u64 {
    let mut d = flate2::read::GzDecoder::new(gz);
    std::io::copy(&mut d, &mut std::io::sink()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_seeded_and_seven_bit() {
        let a = SplitMix64(1).bytes(1000);
        assert_eq!(a, SplitMix64(1).bytes(1000));
        assert_ne!(a, SplitMix64(2).bytes(1000));
        assert!(a.iter().all(|b| *b < 0x80));
        assert_eq!(a.len(), 1000);
    }
}
