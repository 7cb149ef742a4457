//! Reading and removing images: containerd's image records, grouped by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crius_containerd::{Containerd, Followed};
use crius_core::image::{self, CriImage, ImageRecord, LABEL_MANAGED};
use crius_core::{Error, Result};

use crate::error::ImageError;

/// Largest image config crius reads back.
pub(crate) const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// The image store of one containerd namespace.
pub struct Images {
    pub(crate) containerd: Containerd,
    /// One lock per normalized reference: concurrent pulls of one image
    /// queue behind the first and then find everything in place.
    pub(crate) pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The image list, kept while containerd's image events say nothing
    /// changed.
    pub(crate) index: Arc<Index>,
    /// Image configs by image id (a config digest: what it names never
    /// changes), so CreateContainer and RunPodSandbox do not read them from
    /// containerd every time.
    configs: Mutex<HashMap<String, Arc<serde_json::Value>>>,
}

/// How many image configs are kept in memory.
const CONFIG_CACHE: usize = 256;

/// A cache of the grouped image list. containerd stays the source of truth:
/// nothing is cached unless a subscription to its `/images/` events is
/// live, every event and every change crius makes drops the cache, and a
/// list read while something changed is not kept.
#[derive(Default)]
pub(crate) struct Index {
    generation: AtomicU64,
    live: AtomicBool,
    following: AtomicBool,
    cached: Mutex<Option<(u64, Arc<Vec<CriImage>>)>>,
}

impl Index {
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = self.cached.lock() {
            *c = None;
        }
    }

    /// Drops the cache when the returned guard goes: hold it across a
    /// change to containerd's image records.
    pub(crate) fn changing(self: &Arc<Self>) -> Invalidate {
        Invalidate(self.clone())
    }

    fn get(&self) -> Option<Arc<Vec<CriImage>>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let now = self.generation.load(Ordering::SeqCst);
        match &*self.cached.lock().ok()? {
            Some((g, v)) if *g == now => Some(v.clone()),
            _ => None,
        }
    }

    fn put(&self, read_at: u64, images: Arc<Vec<CriImage>>) {
        if !self.live.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut c) = self.cached.lock()
            && self.generation.load(Ordering::SeqCst) == read_at
        {
            *c = Some((read_at, images));
        }
    }

    /// Follows containerd's image events while the index lives; caching
    /// is on only while the subscription is.
    pub(crate) fn follow(index: &Arc<Index>, containerd: Containerd) {
        if index.following.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Index> = Arc::downgrade(index);
        let filters = vec!["topic~=\"^/images/\"".to_string()];
        containerd.follow_events(filters, move |followed| {
            let Some(index) = weak.upgrade() else {
                return false;
            };
            // Whatever happened, what is cached may be stale; cache only
            // while the subscription is live.
            index.invalidate();
            match followed {
                Followed::Live => index.live.store(true, Ordering::SeqCst),
                Followed::Lost => index.live.store(false, Ordering::SeqCst),
                Followed::Event(_) => {}
            }
            true
        });
    }
}

/// See [`Index::changing`].
pub(crate) struct Invalidate(Arc<Index>);

impl Drop for Invalidate {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}

/// How a request names an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// By id: `sha256:<hex>` or the bare hex.
    Id(String),
    /// By reference, normalized (`docker.io/library/busybox:latest`, `…@sha256:…`).
    Name { name: String, is_tag: bool },
}

impl Query {
    /// Parses what a CRI `ImageSpec.image` holds.
    pub fn parse(s: &str) -> Result<Query> {
        let s = s.trim();
        if image::is_digest(s) {
            return Ok(Query::Id(s.to_string()));
        }
        let hex = format!("sha256:{s}");
        if image::is_digest(&hex) {
            return Ok(Query::Id(hex));
        }
        let reference = crius_registry::parse_reference(s)?;
        let name = crius_registry::normalized(&reference);
        let is_tag = image::name_kind(&name) == image::NameKind::Tag;
        Ok(Query::Name { name, is_tag })
    }

    fn matches(&self, image: &CriImage) -> bool {
        match self {
            Query::Id(id) => image.id == *id,
            Query::Name { name, .. } => image.record_names.iter().any(|n| n == name),
        }
    }
}

impl Images {
    pub fn new(containerd: Containerd) -> Self {
        Images {
            containerd,
            pulls: Mutex::new(HashMap::new()),
            index: Arc::default(),
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// Every image, one entry per id.
    pub async fn list(&self) -> Result<Vec<CriImage>> {
        if let Some(cached) = self.index.get() {
            return Ok((*cached).clone());
        }
        let read_at = self.index.generation.load(Ordering::SeqCst);
        let images = Arc::new(self.list_from_containerd().await?);
        self.index.put(read_at, images.clone());
        Ok((*images).clone())
    }

    async fn list_from_containerd(&self) -> Result<Vec<CriImage>> {
        let records = self
            .containerd
            .image_list(&[format!("labels.\"{LABEL_MANAGED}\"==true")])
            .await?
            .into_iter()
            .map(|r| ImageRecord {
                name: r.name,
                labels: r.labels,
            })
            .collect::<Vec<_>>();
        Ok(image::group(&records))
    }

    /// The image a query names, if present.
    pub async fn find(&self, query: &Query) -> Result<Option<CriImage>> {
        Ok(self.list().await?.into_iter().find(|i| query.matches(i)))
    }

    /// The image config (JSON) of an image, for verbose status.
    pub async fn config(&self, image: &CriImage) -> Result<serde_json::Value> {
        if let Ok(configs) = self.configs.lock()
            && let Some(c) = configs.get(&image.id)
        {
            return Ok((**c).clone());
        }
        let bytes = self
            .containerd
            .content_read(&image.id, MAX_CONFIG_SIZE)
            .await
            .map_err(ImageError::containerd("reading the image's config"))?;
        let config: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("image config {} is not JSON: {e}", image.id)))?;
        if let Ok(mut configs) = self.configs.lock() {
            if configs.len() >= CONFIG_CACHE {
                configs.clear();
            }
            configs.insert(image.id.clone(), Arc::new(config.clone()));
        }
        Ok(config)
    }

    /// Removes what a query names: a tag alone when the image keeps other
    /// tags, else every record of the image (its content and snapshots then
    /// go to containerd's garbage collector, unless a container still uses
    /// them). Absent images are fine: removal is idempotent.
    pub async fn remove(&self, query: &Query) -> Result<()> {
        let _changing = self.index.changing();
        let Some(image) = self.find(query).await? else {
            return Ok(());
        };
        if let Query::Name { name, is_tag: true } = query
            && image.repo_tags.len() > 1
        {
            tracing::info!(image = %image.id, tag = %name, "removing one tag");
            return Ok(self.containerd.image_delete(name, false).await?);
        }
        tracing::info!(image = %image.id, records = ?image.record_names, "removing image");
        let last = image.record_names.len().saturating_sub(1);
        for (i, name) in image.record_names.iter().enumerate() {
            // The last deletion waits for garbage collection.
            self.containerd.image_delete(name, i == last).await?;
        }
        Ok(())
    }
}

impl Images {
    /// Start-up clean-up after a daemon that died mid-pull or mid-import:
    /// its leases (which would pin partial content until they expire) and
    /// its unfinished ingests go, so the next pull starts clean.
    pub async fn recover(&self) -> Result<()> {
        Index::follow(&self.index, self.containerd.clone());
        let mut leases = 0;
        for prefix in ["crius-pull-", "crius-import-"] {
            for lease in self.containerd.lease_list_prefix(prefix).await? {
                self.containerd.lease_delete(&lease).await?;
                leases += 1;
            }
        }
        let mut ingests = 0;
        for reference in self.containerd.content_list_statuses().await? {
            if reference.starts_with("crius-") {
                self.containerd.content_abort(&reference).await?;
                ingests += 1;
            }
        }
        if leases + ingests > 0 {
            tracing::info!(
                leases,
                ingests,
                "removed what an interrupted pull left behind"
            );
        }
        Ok(())
    }
}

/// An unpack's lease outlives a crashed daemon by at most this long.
const UNPACK_LEASE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Images {
    /// Makes sure the image's layers are unpacked in `snapshotter`: the lazy
    /// path, taken only when the top snapshot is missing (never unpacked, or
    /// removed). Returns the top chain id.
    pub async fn ensure_unpacked(&self, image: &CriImage, snapshotter: &str) -> Result<String> {
        let looking = ImageError::containerd("looking for the image's snapshot");
        if !image.chain_id.is_empty()
            && self
                .containerd
                .snapshot_stat(snapshotter, &image.chain_id)
                .await
                .map_err(looking)?
                .is_some()
        {
            return Ok(image.chain_id.clone());
        }
        let (layers, diff_ids) = self.layers_of(image).await?;
        let (layers, diff_ids) = (&layers, &diff_ids);
        let chain_id = self
            .leased(
                "crius-pull-unpack-",
                UNPACK_LEASE_EXPIRY,
                "unpack",
                |c| async move {
                    let chain_id = c
                        .unpack(snapshotter, layers, diff_ids)
                        .await
                        .map_err(ImageError::containerd("unpacking"))?;
                    hold_snapshots(&c, image, snapshotter, &chain_id).await?;
                    Ok(chain_id)
                },
            )
            .await?;
        tracing::info!(image = %image.id, chain_id, "unpacked on first use");
        Ok(chain_id)
    }

    /// An image's layers and their diff ids, from its manifest and config.
    async fn layers_of(
        &self,
        image: &CriImage,
    ) -> Result<(Vec<oci_spec::image::Descriptor>, Vec<String>), ImageError> {
        let manifest = self
            .containerd
            .content_read(&image.manifest, MAX_CONFIG_SIZE)
            .await
            .map_err(ImageError::containerd("reading the image's manifest"))?;
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&manifest).map_err(|e| {
                ImageError::Internal(format!("manifest {} of {}: {e}", image.manifest, image.id))
            })?;
        let config = self
            .config(image)
            .await
            .map_err(ImageError::lookup("reading the image's config"))?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok((manifest.layers().clone(), diff_ids))
    }
}

/// Labels the image's config so it holds the snapshots in this snapshotter
/// too, as a pull's unpack does; done before the lease goes, else
/// containerd's garbage collector may take them before the caller's
/// snapshot stands on them.
async fn hold_snapshots(
    c: &Containerd,
    image: &CriImage,
    snapshotter: &str,
    chain_id: &str,
) -> Result<(), ImageError> {
    let label = format!("{}.{snapshotter}", crate::pull::GC_REF_SNAPSHOT);
    c.content_update_labels(&image.id, HashMap::from([(label, chain_id.to_string())]))
        .await
        .map_err(ImageError::containerd("labelling the image's config"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let hex = "a".repeat(64);
        assert_eq!(
            Query::parse(&format!("sha256:{hex}")).ok(),
            Some(Query::Id(format!("sha256:{hex}")))
        );
        assert_eq!(
            Query::parse(&hex).ok(),
            Some(Query::Id(format!("sha256:{hex}")))
        );
        assert_eq!(
            Query::parse("busybox").ok(),
            Some(Query::Name {
                name: "docker.io/library/busybox:latest".into(),
                is_tag: true
            })
        );
        let by_digest = format!("127.0.0.1:5000/x/y@sha256:{hex}");
        assert_eq!(
            Query::parse(&by_digest).ok(),
            Some(Query::Name {
                name: by_digest.clone(),
                is_tag: false
            })
        );
        assert!(matches!(
            Query::parse("UPPER:x"),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
