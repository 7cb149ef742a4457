//! Pulling: resolve in the registry, store blobs in containerd's content
//! store with the labels its garbage collector follows, unpack, record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crius_containerd::{Containerd, ImageRecord as StoredImage};
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
        let name = crius_registry::normalized(&reference);
        let lock = {
            let mut pulls = self
                .pulls
                .lock()
                .map_err(|_| Error::Internal("pull table poisoned".into()))?;
            pulls.entry(name.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let registry = registry_config(config);
        let fetcher = Fetcher::new(&registry, &reference, credentials)?;
        let resolved = fetcher.resolve(&Platform::host()).await?;
        if let Some(tx) = progress {
            tx.send_replace(Progress {
                name: name.clone(),
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
            });
        }
        tracing::info!(image = %name, digest = %resolved.top.descriptor.digest(), layers = resolved.layers.len(), "resolved");

        let lease = format!("crius-pull-{}", unique_suffix());
        self.containerd
            .lease_create(&lease, PULL_LEASE_EXPIRY)
            .await?;
        let leased = self.containerd.with_lease(&lease);
        let result = store(
            &leased,
            config,
            snapshotter,
            progress,
            &fetcher,
            &resolved,
            &reference,
        )
        .await;
        // Records may have changed, whatever the result.
        self.index.invalidate();
        if let Err(e) = self.containerd.lease_delete(&lease).await {
            tracing::warn!(
                lease,
                "cannot delete the pull lease (it expires on its own): {e}"
            );
        }
        drop(_guard);
        self.forget_lock(&name, &lock);
        result?;
        self.find(&Query::Name {
            name: record_names(&reference, &resolved).0,
            is_tag: false,
        })
        .await?
        .ok_or_else(|| Error::Internal(format!("{name} was stored but cannot be found")))
    }

    /// Drops the per-reference lock once nobody waits on it.
    fn forget_lock(&self, name: &str, lock: &Arc<tokio::sync::Mutex<()>>) {
        if let Ok(mut pulls) = self.pulls.lock()
            && Arc::strong_count(lock) <= 2
        {
            pulls.remove(name);
        }
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

/// The names of an image's records: (repo digest, repo tag if any, id).
fn record_names(
    reference: &oci_spec::distribution::Reference,
    resolved: &Resolved,
) -> (String, Option<String>, String) {
    let digest = resolved.top.descriptor.digest().to_string();
    let repo = format!(
        "{}/{}",
        reference.resolve_registry(),
        reference.repository()
    );
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

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", std::process::id())
}

async fn store(
    c: &Containerd,
    config: &ImagesConfig,
    snapshotter: &str,
    progress: Option<&watch::Sender<Progress>>,
    fetcher: &Fetcher,
    resolved: &Resolved,
    reference: &oci_spec::distribution::Reference,
) -> Result<()> {
    check_layers(&resolved.name, &resolved.layers, &resolved.diff_ids)?;
    // Layers first, in parallel, each verified as it streams in.
    let jobs: Vec<(usize, Descriptor, String)> = resolved
        .layers
        .iter()
        .cloned()
        .zip(resolved.diff_ids.iter().cloned())
        .enumerate()
        .map(|(i, (l, d))| (i, l, d))
        .collect();
    futures::stream::iter(jobs)
        .map(|(i, layer, diff_id)| async move {
            let labels = HashMap::from([(UNCOMPRESSED.to_string(), diff_id)]);
            put_blob(c, fetcher, &layer, labels, progress.map(|tx| (tx, i))).await
        })
        .buffer_unordered(config.max_concurrent_downloads.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    if let Some(tx) = progress {
        tx.send_modify(|p| p.phase = Phase::Unpacking);
    }
    let (repo_digest, tag, _) = record_names(reference, resolved);
    let parts = Parts {
        name: &resolved.name,
        top: &resolved.top,
        manifest: &resolved.manifest,
        config: &resolved.config,
        layers: &resolved.layers,
        diff_ids: &resolved.diff_ids,
        pinned: false,
    };
    commit_image(
        c,
        config,
        snapshotter,
        &parts,
        [Some(repo_digest), tag].into_iter().flatten().collect(),
    )
    .await
}

pub(crate) fn check_layers(name: &str, layers: &[Descriptor], diff_ids: &[String]) -> Result<()> {
    if layers.len() != diff_ids.len() {
        return Err(Error::FailedPrecondition(format!(
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
) -> Result<()> {
    let chain_id = crius_containerd::chain_id(parts.diff_ids);
    let config_digest = parts.config.descriptor.digest().to_string();
    put_small(
        c,
        parts.config,
        HashMap::from([(format!("{GC_REF_SNAPSHOT}.{snapshotter}"), chain_id.clone())]),
    )
    .await?;
    let mut manifest_labels =
        HashMap::from([(format!("{GC_REF_CONTENT}.config"), config_digest.clone())]);
    for (i, layer) in parts.layers.iter().enumerate() {
        manifest_labels.insert(
            format!("{GC_REF_CONTENT}.l.{i}"),
            layer.digest().to_string(),
        );
    }
    put_small(c, parts.manifest, manifest_labels).await?;
    if parts.top.descriptor.digest() != parts.manifest.descriptor.digest() {
        put_small(
            c,
            parts.top,
            HashMap::from([(
                format!("{GC_REF_CONTENT}.m.0"),
                parts.manifest.descriptor.digest().to_string(),
            )]),
        )
        .await?;
    }

    if config.unpack_on_pull {
        c.unpack(snapshotter, parts.layers, parts.diff_ids).await?;
    }

    let image_config: serde_json::Value =
        serde_json::from_slice(&parts.config.bytes).map_err(|e| {
            Error::FailedPrecondition(format!("image config of {} is not JSON: {e}", parts.name))
        })?;
    let user = image_config["config"]["User"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let size: u64 =
        parts.config.descriptor.size() + parts.layers.iter().map(|l| l.size()).sum::<u64>();
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_ID.to_string(), config_digest.clone()),
        (
            LABEL_MANIFEST.to_string(),
            parts.manifest.descriptor.digest().to_string(),
        ),
        (LABEL_SIZE.to_string(), size.to_string()),
        (LABEL_USER.to_string(), user),
        (LABEL_CHAIN_ID.to_string(), chain_id),
    ]);
    let mut labels = labels;
    if parts.pinned {
        labels.insert(LABEL_PINNED.to_string(), "true".to_string());
    }
    for name in names.into_iter().chain([config_digest]) {
        c.image_put(StoredImage {
            name,
            target: parts.top.descriptor.clone(),
            labels: labels.clone(),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// Streams one blob into the content store unless it is there already,
/// reporting as layer `i` on the progress channel.
async fn put_blob(
    c: &Containerd,
    fetcher: &Fetcher,
    desc: &Descriptor,
    labels: HashMap<String, String>,
    progress: Option<(&watch::Sender<Progress>, usize)>,
) -> Result<()> {
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
    if c.content_info(&digest).await?.is_some() {
        set(LayerState::Exists, Some(desc.size()));
        return c.content_update_labels(&digest, labels).await;
    }
    set(LayerState::Downloading, None);
    let progress = progress.map(|(tx, i)| (tx.clone(), i));
    let stream = fetcher.blob(desc).await?.inspect_ok(move |chunk| {
        if let Some((tx, i)) = &progress {
            let n = chunk.len() as u64;
            tx.send_if_modified(|p| {
                if let Some(l) = p.layers.get_mut(*i) {
                    l.done += n;
                }
                // Wake watchers at most every 256 KiB.
                p.layers
                    .get(*i)
                    .is_some_and(|l| l.done % (256 << 10) < n || l.done == l.size)
            });
        }
    });
    c.content_write(
        &format!("crius-{digest}"),
        &digest,
        desc.size(),
        labels,
        stream,
    )
    .await?;
    set(LayerState::Done, Some(desc.size()));
    Ok(())
}

/// Stores a manifest, index or config already in memory.
pub(crate) async fn put_small(
    c: &Containerd,
    blob: &Blob,
    labels: HashMap<String, String>,
) -> Result<()> {
    let digest = blob.descriptor.digest().to_string();
    if c.content_info(&digest).await?.is_some() {
        return c.content_update_labels(&digest, labels).await;
    }
    c.content_write_bytes(
        &format!("crius-{digest}"),
        &digest,
        labels,
        blob.bytes.clone(),
    )
    .await
}
