//! Pulling: resolve in the registry, store blobs in containerd's content
//! store with the labels its garbage collector follows, unpack, record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::{Containerd, Held, ImageRecord as StoredImage};
use crius_core::config::ImagesConfig;
use crius_core::image::{
    CriImage, LABEL_CHAIN_ID, LABEL_ID, LABEL_MANAGED, LABEL_MANIFEST, LABEL_PINNED, LABEL_SIZE,
    LABEL_USER,
};
use crius_core::{Error, Result};
use crius_registry::{Blob, Credentials, Fetcher, Platform, RegistryConfig, Resolved};
use futures::{StreamExt, TryStreamExt};
use oci_spec::image::Descriptor;
use tokio::sync::watch;

use crate::error::{ImageError, SourceFailure};
use crate::store::{Images, Query};

/// Where a pull is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Resolving,
    Downloading,
    Unpacking,
}

/// What a layer of a pull is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    Waiting,
    Downloading,
    /// In the content store already: nothing to download.
    Exists,
    Done,
}

/// One layer's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    pub size: u64,
    pub done: u64,
    pub state: LayerState,
}

/// A pull's progress, published while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The normalized reference.
    pub name: String,
    pub phase: Phase,
    pub layers: Vec<LayerProgress>,
}

/// A pull's lease outlives a crashed daemon by at most this long.
const PULL_LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// containerd's garbage-collection labels.
const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
pub(crate) const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";
pub(crate) const UNCOMPRESSED: &str = "containerd.io/uncompressed";

impl Images {
    /// Pulls `image` (any reference form) and returns the stored image.
    /// Concurrent pulls of one reference do the work once.
    pub async fn pull(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        image: &str,
        credentials: Option<Credentials>,
    ) -> Result<CriImage> {
        self.pull_with_progress(config, snapshotter, image, credentials, None)
            .await
    }

    /// [`Images::pull`], publishing its progress (per layer) on `progress`.
    pub async fn pull_with_progress(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        image: &str,
        credentials: Option<Credentials>,
        progress: Option<&watch::Sender<Progress>>,
    ) -> Result<CriImage> {
        let reference = crius_registry::parse_reference(image)?;
        let started = std::time::Instant::now();
        let result = self
            .pull_reference(config, snapshotter, &reference, credentials, progress)
            .await;
        crius_metrics::global().image_pull(result.is_ok(), started.elapsed());
        result
    }

    /// [`Images::pull_with_progress`] of a parsed reference, untimed.
    async fn pull_reference(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        reference: &crius_registry::Reference,
        credentials: Option<Credentials>,
        progress: Option<&watch::Sender<Progress>>,
    ) -> Result<CriImage> {
        let name = crius_registry::normalized(reference);
        let lock = self.pull_lock(&name)?;
        let guard = lock.lock().await;
        let pull = Pull {
            config,
            snapshotter,
            reference,
            name: &name,
            progress,
        };
        let result = self.pull_locked(&pull, credentials).await;
        drop(guard);
        self.forget_lock(&name, &lock);
        Ok(result?)
    }

    /// The lock of one normalized reference.
    fn pull_lock(&self, name: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let mut pulls = self
            .pulls
            .lock()
            .map_err(|_| Error::Internal("pull table poisoned".into()))?;
        Ok(pulls.entry(name.to_string()).or_default().clone())
    }

    /// Resolves, stores under a lease and reads back one image; the caller
    /// holds the reference's lock.
    async fn pull_locked(
        &self,
        pull: &Pull<'_>,
        credentials: Option<Credentials>,
    ) -> Result<CriImage, ImageError> {
        let registry = registry_config(pull.config);
        let fetcher =
            Fetcher::new(&registry, pull.reference, credentials).map_err(ImageError::Registry)?;
        let resolved = fetcher
            .resolve(&Platform::host())
            .await
            .map_err(ImageError::Registry)?;
        if let Some(tx) = pull.progress {
            tx.send_replace(downloading(pull.name, &resolved));
        }
        tracing::info!(image = %pull.name, digest = %resolved.top.descriptor.digest(), layers = resolved.layers.len(), "resolved");
        let (fetcher, resolved) = (&fetcher, &resolved);
        self.leased("crius-pull-", PULL_LEASE_EXPIRY, "pull", |c| async move {
            store(&c, pull, fetcher, resolved).await
        })
        .await?;
        let by_digest = Query::Name {
            name: record_names(pull.reference, resolved).0,
            is_tag: false,
        };
        self.stored(&by_digest, pull.name).await
    }

    /// Drops the per-reference lock once nobody waits on it.
    fn forget_lock(&self, name: &str, lock: &Arc<tokio::sync::Mutex<()>>) {
        if let Ok(mut pulls) = self.pulls.lock()
            && Arc::strong_count(lock) <= 2
        {
            pulls.remove(name);
        }
    }

    /// Runs `work` on a connection whose writes go under a fresh lease
    /// (`prefix` + a unique suffix, so start-up finds what a dead daemon
    /// left), then drops the image list cache and the lease whatever the
    /// result; a lease that cannot be deleted expires on its own.
    pub(crate) async fn leased<T, F, Fut>(
        &self,
        prefix: &str,
        expiry: Duration,
        what: &str,
        work: F,
    ) -> Result<T, ImageError>
    where
        F: FnOnce(Containerd) -> Fut,
        Fut: std::future::Future<Output = Result<T, ImageError>>,
    {
        let lease = format!("{prefix}{}", crius_containerd::unique_suffix());
        self.containerd
            .lease_create(&lease, expiry)
            .await
            .map_err(ImageError::containerd("creating a lease"))?;
        let result = work(self.containerd.with_lease(&lease)).await;
        // Records may have changed, whatever the result.
        self.index.invalidate();
        if let Err(e) = self.containerd.lease_delete(&lease).await {
            tracing::warn!(
                lease,
                "cannot delete the {what} lease (it expires on its own): {e}"
            );
        }
        result
    }

    /// The image just stored under a name or id; `name` is for the message.
    pub(crate) async fn stored(&self, query: &Query, name: &str) -> Result<CriImage, ImageError> {
        self.find(query)
            .await
            .map_err(ImageError::lookup("reading the stored image"))?
            // Removed by a RemoveImage that raced this pull: the client's
            // race, not crius' fault.
            .ok_or_else(|| {
                ImageError::Raced(format!(
                    "{name} was removed while it was being pulled; pull it again"
                ))
            })
    }
}

/// What one pull is of, and where it reports.
struct Pull<'a> {
    config: &'a ImagesConfig,
    snapshotter: &'a str,
    reference: &'a crius_registry::Reference,
    /// The normalized reference.
    name: &'a str,
    progress: Option<&'a watch::Sender<Progress>>,
}

/// The progress of a resolved image before any layer is fetched.
fn downloading(name: &str, resolved: &Resolved) -> Progress {
    Progress {
        name: name.to_string(),
        phase: Phase::Downloading,
        layers: resolved
            .layers
            .iter()
            .map(|l| LayerProgress {
                digest: l.digest().to_string(),
                size: l.size(),
                done: 0,
                state: LayerState::Waiting,
            })
            .collect(),
    }
}

fn registry_config(c: &ImagesConfig) -> RegistryConfig {
    let mut auths = HashMap::new();
    for (host, a) in &c.auths {
        // Validated at config load: the only failure is a bad base64 `auth`,
        // which the config does not have.
        if let Ok(creds) = Credentials::from_parts(
            &a.username,
            a.password.expose(),
            "",
            a.identity_token.expose(),
            a.registry_token.expose(),
        ) {
            auths.insert(host.clone(), creds);
        }
    }
    RegistryConfig {
        hosts_dir: (!c.registry_config_dir.as_os_str().is_empty())
            .then(|| c.registry_config_dir.clone()),
        plain_http_hosts: c.plain_http_hosts.clone(),
        auths,
        progress_timeout: Duration::from_secs(c.progress_timeout_secs),
    }
}

/// The names of an image's records: (repo digest, repo tag if any, id),
/// under the normalized registry (`docker.io`, which lookups by reference
/// use, not `index.docker.io`).
fn record_names(
    reference: &crius_registry::Reference,
    resolved: &Resolved,
) -> (String, Option<String>, String) {
    let digest = resolved.top.descriptor.digest().to_string();
    let repo = crius_registry::repository_name(reference);
    let repo_digest = format!("{repo}@{digest}");
    let tag = match (reference.tag(), reference.digest()) {
        (Some(tag), None) => Some(format!("{repo}:{tag}")),
        _ => None,
    };
    (
        repo_digest,
        tag,
        resolved.config.descriptor.digest().to_string(),
    )
}

/// Stores the layers (in parallel, each verified as it streams in), then
/// config, manifest, index and records.
async fn store(
    c: &Containerd,
    pull: &Pull<'_>,
    fetcher: &Fetcher,
    resolved: &Resolved,
) -> Result<(), ImageError> {
    check_layers(&resolved.name, &resolved.layers, &resolved.diff_ids)?;
    let jobs: Vec<(usize, Descriptor, String)> = resolved
        .layers
        .iter()
        .cloned()
        .zip(resolved.diff_ids.iter().cloned())
        .enumerate()
        .map(|(i, (l, d))| (i, l, d))
        .collect();
    let progress = pull.progress;
    futures::stream::iter(jobs)
        .map(|(i, layer, diff_id)| async move {
            let labels = HashMap::from([(UNCOMPRESSED.to_string(), diff_id)]);
            put_blob(c, fetcher, &layer, labels, progress.map(|tx| (tx, i))).await
        })
        .buffer_unordered(pull.config.max_concurrent_downloads.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    if let Some(tx) = progress {
        tx.send_modify(|p| p.phase = Phase::Unpacking);
    }
    let (repo_digest, tag, _) = record_names(pull.reference, resolved);
    let parts = Parts {
        name: &resolved.name,
        top: &resolved.top,
        manifest: &resolved.manifest,
        config: &resolved.config,
        layers: &resolved.layers,
        diff_ids: &resolved.diff_ids,
        pinned: false,
    };
    let names = [Some(repo_digest), tag].into_iter().flatten().collect();
    commit_image(c, pull.config, pull.snapshotter, &parts, names).await
}

pub(crate) fn check_layers(
    name: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<(), ImageError> {
    if layers.len() != diff_ids.len() {
        return Err(ImageError::Inconsistent(format!(
            "image {name} has {} layers but {} diff ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    Ok(())
}

/// An image whose layers are in the content store already.
pub(crate) struct Parts<'a> {
    /// For messages.
    pub name: &'a str,
    /// What the names point at: the index, or the manifest.
    pub top: &'a Blob,
    pub manifest: &'a Blob,
    pub config: &'a Blob,
    pub layers: &'a [Descriptor],
    pub diff_ids: &'a [String],
    /// Never to be garbage collected by kubelet (the sandbox image).
    pub pinned: bool,
}

/// Stores config, manifest and index with the labels containerd's garbage
/// collector follows, unpacks when configured, and writes the image records
/// `names` plus the id record.
pub(crate) async fn commit_image(
    c: &Containerd,
    config: &ImagesConfig,
    snapshotter: &str,
    parts: &Parts<'_>,
    names: Vec<String>,
) -> Result<(), ImageError> {
    let chain_id = crius_containerd::chain_id(parts.diff_ids);
    put_descriptions(c, snapshotter, parts, &chain_id).await?;
    if config.unpack_on_pull {
        c.unpack(snapshotter, parts.layers, parts.diff_ids)
            .await
            .map_err(ImageError::containerd("unpacking"))?;
    }
    let labels = record_labels(parts, chain_id)?;
    let config_digest = parts.config.descriptor.digest().to_string();
    for name in names.into_iter().chain([config_digest]) {
        c.image_put(StoredImage {
            name,
            target: parts.top.descriptor.clone(),
            labels: labels.clone(),
            ..Default::default()
        })
        .await
        .map_err(ImageError::containerd("writing an image record"))?;
    }
    Ok(())
}

/// Config, manifest and (when there is one) index, each labelled with what
/// it holds on to: the config its snapshots, the manifest its config and
/// layers, the index its manifest.
async fn put_descriptions(
    c: &Containerd,
    snapshotter: &str,
    parts: &Parts<'_>,
    chain_id: &str,
) -> Result<(), ImageError> {
    let config_labels = HashMap::from([(
        format!("{GC_REF_SNAPSHOT}.{snapshotter}"),
        chain_id.to_string(),
    )]);
    put_small(c, parts.config, config_labels).await?;
    put_small(c, parts.manifest, manifest_labels(parts)).await?;
    if parts.top.descriptor.digest() != parts.manifest.descriptor.digest() {
        let index_labels = HashMap::from([(
            format!("{GC_REF_CONTENT}.m.0"),
            parts.manifest.descriptor.digest().to_string(),
        )]);
        put_small(c, parts.top, index_labels).await?;
    }
    Ok(())
}

/// The garbage-collection labels of a manifest: its config and layers.
fn manifest_labels(parts: &Parts<'_>) -> HashMap<String, String> {
    let config = parts.config.descriptor.digest().to_string();
    let mut labels = HashMap::from([(format!("{GC_REF_CONTENT}.config"), config)]);
    for (i, layer) in parts.layers.iter().enumerate() {
        labels.insert(
            format!("{GC_REF_CONTENT}.l.{i}"),
            layer.digest().to_string(),
        );
    }
    labels
}

/// The labels of every record of an image: what CRI reports of it, so
/// listing reads no content.
fn record_labels(
    parts: &Parts<'_>,
    chain_id: String,
) -> Result<HashMap<String, String>, ImageError> {
    let image_config: serde_json::Value =
        serde_json::from_slice(&parts.config.bytes).map_err(|e| {
            ImageError::Inconsistent(format!("image config of {} is not JSON: {e}", parts.name))
        })?;
    let user = image_config["config"]["User"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let size: u64 =
        parts.config.descriptor.size() + parts.layers.iter().map(|l| l.size()).sum::<u64>();
    let mut labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (
            LABEL_ID.to_string(),
            parts.config.descriptor.digest().to_string(),
        ),
        (
            LABEL_MANIFEST.to_string(),
            parts.manifest.descriptor.digest().to_string(),
        ),
        (LABEL_SIZE.to_string(), size.to_string()),
        (LABEL_USER.to_string(), user),
        (LABEL_CHAIN_ID.to_string(), chain_id),
    ]);
    if parts.pinned {
        labels.insert(LABEL_PINNED.to_string(), "true".to_string());
    }
    Ok(labels)
}

/// Streams one blob into the content store unless it is there already,
/// reporting as layer `i` on the progress channel.
async fn put_blob(
    c: &Containerd,
    fetcher: &Fetcher,
    desc: &Descriptor,
    labels: HashMap<String, String>,
    progress: Option<(&watch::Sender<Progress>, usize)>,
) -> Result<(), ImageError> {
    let digest = desc.digest().to_string();
    let set = |state: LayerState, done: Option<u64>| {
        if let Some((tx, i)) = progress {
            tx.send_modify(|p| {
                if let Some(l) = p.layers.get_mut(i) {
                    l.state = state;
                    if let Some(done) = done {
                        l.done = done;
                    }
                }
            });
        }
    };
    let stored = ImageError::containerd("storing a layer");
    // Held first: the removal of another image sharing the layer must not
    // take it between this look and the image record.
    c.lease_hold(Held::Content(&digest))
        .await
        .map_err(ImageError::containerd("holding a layer"))?;
    if c.content_info(&digest).await.map_err(stored)?.is_some() {
        set(LayerState::Exists, Some(desc.size()));
        return c
            .content_update_labels(&digest, labels)
            .await
            .map_err(ImageError::containerd("labelling a layer"));
    }
    set(LayerState::Downloading, None);
    let progress = progress.map(|(tx, i)| (tx.clone(), i));
    let stream = fetcher
        .blob(desc)
        .await
        .map_err(|source| ImageError::Blob {
            digest: digest.clone(),
            source,
        })?
        .inspect_ok(move |chunk| {
            crius_metrics::global().pulled_bytes(chunk.len() as u64);
            if let Some((tx, i)) = &progress {
                count_bytes(tx, *i, chunk.len() as u64);
            }
        });
    let (stream, source) = SourceFailure::split(stream);
    let written = c
        .content_write(
            &format!("crius-{digest}"),
            &digest,
            desc.size(),
            labels,
            stream,
        )
        .await;
    if let Some(source) = source.take() {
        return Err(ImageError::Blob { digest, source });
    }
    written.map_err(ImageError::containerd("storing a layer"))?;
    set(LayerState::Done, Some(desc.size()));
    Ok(())
}

/// Adds `n` bytes to layer `i`'s progress.
fn count_bytes(tx: &watch::Sender<Progress>, i: usize, n: u64) {
    tx.send_if_modified(|p| {
        if let Some(l) = p.layers.get_mut(i) {
            l.done += n;
        }
        // Wake watchers at most every 256 KiB.
        p.layers
            .get(i)
            .is_some_and(|l| l.done % (256 << 10) < n || l.done == l.size)
    });
}

/// Stores a manifest, index or config already in memory.
pub(crate) async fn put_small(
    c: &Containerd,
    blob: &Blob,
    labels: HashMap<String, String>,
) -> Result<(), ImageError> {
    let digest = blob.descriptor.digest().to_string();
    let stored = ImageError::containerd("storing an image description");
    c.lease_hold(Held::Content(&digest))
        .await
        .map_err(ImageError::containerd("holding an image description"))?;
    if c.content_info(&digest).await.map_err(stored)?.is_some() {
        return c
            .content_update_labels(&digest, labels)
            .await
            .map_err(ImageError::containerd("labelling an image description"));
    }
    c.content_write_bytes(
        &format!("crius-{digest}"),
        &digest,
        labels,
        blob.bytes.clone(),
    )
    .await
    .map_err(ImageError::containerd("storing an image description"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(media_type: oci_spec::image::MediaType, data: &[u8]) -> Blob {
        use sha2::Digest as _;
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(data));
        Blob {
            descriptor: Descriptor::new(
                media_type,
                data.len() as u64,
                digest.parse::<oci_spec::image::Digest>().expect("digest"),
            ),
            bytes: bytes::Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn records_carry_what_cri_reports_and_manifests_what_they_hold() {
        use oci_spec::image::MediaType;
        let config = blob(
            MediaType::ImageConfig,
            br#"{"config":{"User":"1000:1000"}}"#,
        );
        let manifest = blob(MediaType::ImageManifest, b"{}");
        let layers = [
            blob(MediaType::ImageLayer, b"one").descriptor,
            blob(MediaType::ImageLayer, b"two!").descriptor,
        ];
        let diff_ids = ["sha256:a".to_string(), "sha256:b".to_string()];
        let parts = Parts {
            name: "x",
            top: &manifest,
            manifest: &manifest,
            config: &config,
            layers: &layers,
            diff_ids: &diff_ids,
            pinned: true,
        };
        let labels = record_labels(&parts, "sha256:chain".into()).expect("labels");
        assert_eq!(labels[LABEL_USER], "1000:1000");
        assert_eq!(labels[LABEL_SIZE], (config.bytes.len() + 3 + 4).to_string());
        assert_eq!(labels[LABEL_CHAIN_ID], "sha256:chain");
        assert_eq!(labels[LABEL_PINNED], "true");
        assert_eq!(labels[LABEL_ID], config.descriptor.digest().to_string());
        let gc = manifest_labels(&parts);
        assert_eq!(
            gc[&format!("{GC_REF_CONTENT}.config")],
            config.descriptor.digest().to_string()
        );
        assert_eq!(
            gc[&format!("{GC_REF_CONTENT}.l.1")],
            layers[1].digest().to_string()
        );
        assert_eq!(gc.len(), 3);
        let not_json = blob(MediaType::ImageConfig, b"nope");
        let parts = Parts {
            config: &not_json,
            ..parts
        };
        assert!(matches!(
            record_labels(&parts, String::new()),
            Err(ImageError::Inconsistent(_))
        ));
        assert!(matches!(
            check_layers("x", &layers, &diff_ids[..1]),
            Err(ImageError::Inconsistent(_))
        ));
    }

    #[test]
    fn records_are_named_as_lookups_by_reference_name_them() -> crius_core::Result<()> {
        use oci_spec::image::MediaType;
        let config = blob(MediaType::ImageConfig, b"{}");
        let manifest = blob(MediaType::ImageManifest, b"{}");
        let resolved = Resolved {
            name: "docker.io/library/busybox:latest".into(),
            top: manifest.clone(),
            manifest: manifest.clone(),
            config: config.clone(),
            layers: vec![],
            diff_ids: vec![],
        };
        let top = manifest.descriptor.digest().to_string();
        let id = config.descriptor.digest().to_string();
        let reference = crius_registry::parse_reference("busybox")?;
        let (repo_digest, tag, image_id) = record_names(&reference, &resolved);
        assert_eq!(repo_digest, format!("docker.io/library/busybox@{top}"));
        assert_eq!(tag.as_deref(), Some("docker.io/library/busybox:latest"));
        assert_eq!(image_id, id);
        assert_eq!(repo_digest, resolved.repo_digest());
        let by_tag = crate::store::Query::parse("busybox")?;
        assert_eq!(
            by_tag,
            crate::store::Query::Name {
                name: "docker.io/library/busybox:latest".into(),
                is_tag: true
            }
        );
        let reference = crius_registry::parse_reference(&format!("quay.io/a/b:v1@{top}"))?;
        let (repo_digest, tag, _) = record_names(&reference, &resolved);
        assert_eq!(repo_digest, format!("quay.io/a/b@{top}"));
        assert_eq!(tag, None);
        Ok(())
    }
}
