//! Snapshots: the layered file systems of images (committed snapshots named
//! by chain id) and containers (active snapshots on top of them).

use std::collections::HashMap;

use crate::Result;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UsageRequest, ViewSnapshotRequest,
};
use containerd_client::types::Mount;
use futures::StreamExt;

use crate::{Containerd, Usage, map_status, not_found_as_none, not_found_ok};

/// What kind of snapshot a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotKind {
    /// Read-only, the parent of others (an image layer).
    Committed,
    /// Writable (a container's root file system, an extraction in progress).
    Active,
    /// Read-only view of a committed snapshot.
    View,
    /// A kind this crate does not know.
    Unknown,
}

impl From<i32> for SnapshotKind {
    fn from(k: i32) -> Self {
        match Kind::try_from(k) {
            Ok(Kind::Committed) => SnapshotKind::Committed,
            Ok(Kind::Active) => SnapshotKind::Active,
            Ok(Kind::View) => SnapshotKind::View,
            _ => SnapshotKind::Unknown,
        }
    }
}

/// What a snapshotter knows about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The key (active, view) or name (committed).
    pub name: String,
    /// The committed snapshot it is on top of.
    pub parent: Option<String>,
    pub kind: SnapshotKind,
    pub labels: HashMap<String, String>,
}

impl From<Info> for SnapshotInfo {
    fn from(i: Info) -> Self {
        SnapshotInfo {
            name: i.name,
            parent: (!i.parent.is_empty()).then_some(i.parent),
            kind: SnapshotKind::from(i.kind),
            labels: i.labels,
        }
    }
}

impl Containerd {
    fn snapshots(&self) -> SnapshotsClient<crate::timed::Timed> {
        SnapshotsClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// Creates the active (writable) snapshot `key` on top of the committed
    /// snapshot `parent` (or empty) and returns how to mount it.
    /// `AlreadyExists` when `key` exists.
    pub async fn snapshot_prepare(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let resp = self
            .snapshots()
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
                parent: parent.unwrap_or_default().to_string(),
                labels,
            }))
            .await
            .map_err(map_status("snapshot prepare"))?
            .into_inner();
        Ok(resp.mounts)
    }

    /// Creates the read-only view `key` of the committed snapshot `parent`
    /// and returns how to mount it. `AlreadyExists` when `key` exists.
    pub async fn snapshot_view(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let resp = self
            .snapshots()
            .view(self.request(ViewSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
                parent: parent.unwrap_or_default().to_string(),
                labels,
            }))
            .await
            .map_err(map_status("snapshot view"))?
            .into_inner();
        Ok(resp.mounts)
    }

    /// How to mount the active snapshot or view `key`.
    pub async fn snapshot_mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
        let resp = self
            .snapshots()
            .mounts(self.request(MountsRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await
            .map_err(map_status("snapshot mounts"))?
            .into_inner();
        Ok(resp.mounts)
    }

    /// Commits the active snapshot `key` as the read-only snapshot `name`
    /// (`key` is gone afterwards). `AlreadyExists` when `name` exists.
    pub async fn snapshot_commit(
        &self,
        snapshotter: &str,
        name: &str,
        key: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        self.snapshots()
            .commit(self.request(CommitSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                name: name.to_string(),
                key: key.to_string(),
                labels,
            }))
            .await
            .map_err(map_status("snapshot commit"))?;
        Ok(())
    }

    /// Removes snapshot `key`; absent is fine. A committed snapshot with
    /// children cannot be removed (`FailedPrecondition`).
    pub async fn snapshot_remove(&self, snapshotter: &str, key: &str) -> Result<()> {
        let r = self
            .snapshots()
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await;
        not_found_ok("snapshot remove", r)
    }

    /// Snapshot `key`; `None` when it does not exist.
    pub async fn snapshot_stat(
        &self,
        snapshotter: &str,
        key: &str,
    ) -> Result<Option<SnapshotInfo>> {
        let r = self
            .snapshots()
            .stat(self.request(StatSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await;
        Ok(not_found_as_none("snapshot stat", r)?
            .and_then(|r| r.into_inner().info)
            .map(SnapshotInfo::from))
    }

    /// Every snapshot of this namespace in `snapshotter`.
    pub async fn snapshot_list(&self, snapshotter: &str) -> Result<Vec<SnapshotInfo>> {
        let mut stream = self
            .snapshots()
            .list(self.request(ListSnapshotsRequest {
                snapshotter: snapshotter.to_string(),
                filters: vec![],
            }))
            .await
            .map_err(map_status("snapshot list"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(map_status("snapshot list"))?;
            out.extend(batch.info.into_iter().map(SnapshotInfo::from));
        }
        Ok(out)
    }

    /// Usage of snapshot `key` (for an active snapshot: its writable layer);
    /// `None` when it does not exist.
    pub async fn snapshot_usage(&self, snapshotter: &str, key: &str) -> Result<Option<Usage>> {
        let r = self
            .snapshots()
            .usage(self.request(UsageRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            }))
            .await;
        Ok(not_found_as_none("snapshot usage", r)?.map(|u| {
            let u = u.into_inner();
            Usage {
                bytes: u.size.max(0) as u64,
                inodes: u.inodes.max(0) as u64,
            }
        }))
    }

    /// Total usage of all snapshots of this namespace in `snapshotter`.
    pub async fn snapshots_usage(&self, snapshotter: &str) -> Result<Usage> {
        let keys: Vec<String> = self
            .snapshot_list(snapshotter)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        let mut snapshots = self.snapshots();
        let mut total = Usage::default();
        for key in keys {
            let usage = snapshots
                .usage(self.request(UsageRequest {
                    snapshotter: snapshotter.to_string(),
                    key,
                }))
                .await;
            match usage {
                Ok(u) => {
                    let u = u.into_inner();
                    total.bytes += u.size.max(0) as u64;
                    total.inodes += u.inodes.max(0) as u64;
                }
                // Removed between list and usage: it uses nothing any more.
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(map_status("snapshot usage")(s)),
            }
        }
        Ok(total)
    }
}
