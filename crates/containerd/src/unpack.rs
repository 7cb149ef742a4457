//! Unpacking an image: each layer applied on top of the previous ones and
//! committed as a snapshot named by its chain id, the way containerd's own
//! unpacker does it, so both share snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::{Error, Kind, Result};
use oci_spec::image::Descriptor;
use sha2::{Digest as _, Sha256};

use crate::snapshots::SnapshotKind;
use crate::{Containerd, Held, unique_suffix};

/// The label containerd's unpacker puts on an extraction snapshot: the name
/// it will be committed as (remote snapshotters and containerd's metadata
/// store use it to find an existing snapshot).
pub const LABEL_SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// The chain ids of a stack of layers given their diff ids:
/// `chain(L0) = diff(L0)`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                format!("sha256:{}", hex(&hash))
            }
        };
        out.push(next);
    }
    out
}

/// The chain id of the top layer (the image's snapshot); empty for no layers.
pub fn chain_id(diff_ids: &[String]) -> String {
    chain_ids(diff_ids).pop().unwrap_or_default()
}

/// Async locks by name, dropped when nobody holds or waits for them.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(lock) = map.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Containerd {
    /// Unpacks `layers` (in the content store; `diff_ids[i]` is the digest
    /// of layer i uncompressed) into `snapshotter` and returns the chain id
    /// of the top layer, the name of the image's committed snapshot (empty
    /// for no layers).
    ///
    /// Layers whose snapshot exists are skipped, so a second unpack costs
    /// one stat per layer. A layer is extracted into an active snapshot
    /// under a temporary key (`extract-<unique>-<chain id>`), checked
    /// against its diff id (`DataLoss` when it differs) and committed under
    /// its chain id. Unpacks may run at once: through clones of one
    /// connection, a layer is extracted by one of them while the others
    /// wait; across connections (or processes), the loser of the commit
    /// drops its copy and goes on with the winner's. On any error the
    /// temporary snapshot is removed.
    ///
    /// Run this on a [`Containerd::with_lease`] clone: between the commit
    /// and the image record that references it, only a lease keeps a
    /// snapshot from the garbage collector.
    pub async fn unpack(
        &self,
        snapshotter: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<String> {
        if layers.len() != diff_ids.len() {
            return Err(Error::Invalid {
                field: "diff_ids".into(),
                reason: format!("{} layers but {} diff ids", layers.len(), diff_ids.len()),
            });
        }
        if let Some(bad) = diff_ids.iter().find(|d| !is_sha256(d)) {
            return Err(Error::Invalid {
                field: "diff_ids".into(),
                reason: format!("{bad:?} is not a sha256 digest"),
            });
        }
        let chains = chain_ids(diff_ids);
        let started = std::time::Instant::now();
        let mut parent: Option<&str> = None;
        for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(&chains) {
            self.unpack_layer(snapshotter, layer, diff_id, parent, chain)
                .await?;
            parent = Some(chain);
        }
        let top = chains.last().cloned().unwrap_or_default();
        tracing::debug!(snapshotter, chain_id = %top, layers = layers.len(), elapsed = ?started.elapsed(), "unpacked");
        Ok(top)
    }

    async fn unpack_layer(
        &self,
        snapshotter: &str,
        layer: &Descriptor,
        diff_id: &str,
        parent: Option<&str>,
        chain: &str,
    ) -> Result<()> {
        // Unpacks through one connection extract a layer once: the others
        // wait, then find it committed. (Other connections or processes
        // race in containerd; see below.)
        let lock = self.unpack_locks.get(&format!("{snapshotter}/{chain}"));
        let _guard = lock.lock().await;
        // A layer found unpacked is held by this unpack's lease before it
        // is looked at, so removing another image that shares it cannot
        // take it from under the next layer or the image record.
        self.lease_hold(Held::Snapshot {
            snapshotter,
            key: chain,
        })
        .await?;
        if self.committed(snapshotter, chain).await? {
            return Ok(());
        }
        let key = format!("extract-{}-{chain}", unique_suffix());
        let labels = HashMap::from([(LABEL_SNAPSHOT_REF.to_string(), chain.to_string())]);
        let mounts = match self
            .snapshot_prepare(snapshotter, &key, parent, labels.clone())
            .await
        {
            Ok(m) => m,
            // With the snapshot.ref label, containerd says AlreadyExists
            // when the target snapshot exists (made meanwhile by someone
            // else); nothing was created under our key.
            Err(e) if e.kind() == Kind::AlreadyExists => {
                return self.require_committed(snapshotter, chain).await;
            }
            Err(e) => return Err(e),
        };
        let applied = async {
            let applied = self.diff_apply(layer, mounts).await?;
            if applied.digest().as_ref() != diff_id {
                return Err(Error::Corrupt(format!(
                    "layer {} unpacks to {}, not to its diff id {diff_id}",
                    layer.digest(),
                    applied.digest()
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = applied {
            self.remove_quietly(snapshotter, &key).await;
            return Err(e);
        }
        match self.snapshot_commit(snapshotter, chain, &key, labels).await {
            Ok(()) => {
                tracing::debug!(layer = %layer.digest(), chain_id = chain, "layer unpacked");
                Ok(())
            }
            Err(e) if e.kind() == Kind::AlreadyExists => {
                tracing::debug!(
                    chain_id = chain,
                    "layer unpacked concurrently by someone else"
                );
                self.remove_quietly(snapshotter, &key).await;
                self.require_committed(snapshotter, chain).await
            }
            Err(e) => {
                self.remove_quietly(snapshotter, &key).await;
                Err(e)
            }
        }
    }

    /// Whether `name` is a committed snapshot; an error when it is another kind.
    async fn committed(&self, snapshotter: &str, name: &str) -> Result<bool> {
        match self.snapshot_stat(snapshotter, name).await? {
            None => Ok(false),
            Some(i) if i.kind == SnapshotKind::Committed => Ok(true),
            Some(i) => Err(Error::Precondition(format!(
                "snapshot {name} in {snapshotter} is {:?}, not committed",
                i.kind
            ))),
        }
    }

    async fn require_committed(&self, snapshotter: &str, name: &str) -> Result<()> {
        if self.committed(snapshotter, name).await? {
            Ok(())
        } else {
            Err(Error::Precondition(format!(
                "snapshot {name} in {snapshotter} was reported to exist but does not"
            )))
        }
    }

    async fn remove_quietly(&self, snapshotter: &str, key: &str) {
        if let Err(e) = self.snapshot_remove(snapshotter, key).await {
            tracing::warn!(
                snapshotter,
                key,
                "cannot remove the extraction snapshot: {e}"
            );
        }
    }
}

fn is_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn no_layers() {
        assert!(chain_ids(&[]).is_empty());
        assert_eq!(chain_id(&[]), "");
    }

    #[test]
    fn first_chain_id_is_the_diff_id() {
        assert_eq!(chain_ids(&[d('a')]), vec![d('a')]);
        assert_eq!(chain_id(&[d('a')]), d('a'));
    }

    #[test]
    fn chain_ids_hash_parent_space_diff_id() {
        let ids = vec![d('a'), d('b'), d('c')];
        let chains = chain_ids(&ids);
        let c1 = format!(
            "sha256:{}",
            hex(&Sha256::digest(format!("{} {}", d('a'), d('b')).as_bytes()))
        );
        let c2 = format!(
            "sha256:{}",
            hex(&Sha256::digest(format!("{c1} {}", d('c')).as_bytes()))
        );
        assert_eq!(chains, vec![d('a'), c1, c2.clone()]);
        assert_eq!(chain_id(&ids), c2);
    }

    #[test]
    fn known_chain_id() {
        // Computed independently: `printf 'sha256:aaaa… sha256:bbbb…' | sha256sum`.
        let chain = chain_id(&[d('a'), d('b')]);
        assert_eq!(
            chain,
            "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
        );
    }

    #[test]
    fn keyed_locks_are_shared_then_dropped() {
        let locks = KeyedLocks::default();
        let a = locks.get("x");
        assert!(Arc::ptr_eq(&a, &locks.get("x")));
        assert!(!Arc::ptr_eq(&a, &locks.get("y")));
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(weak.upgrade().is_none());
        let _b = locks.get("z");
        assert_eq!(locks.0.lock().map(|m| m.len()).unwrap_or(99), 1);
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn sha256_digests() {
        assert!(is_sha256(&d('a')));
        assert!(!is_sha256("sha256:abc"));
        assert!(!is_sha256(&format!("sha512:{}", "a".repeat(64))));
        assert!(!is_sha256(&format!("sha256:{}", "A".repeat(64))));
    }
}
