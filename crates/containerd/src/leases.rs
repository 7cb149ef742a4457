//! Leases: what a request made under a lease (content, snapshots, images)
//! is kept from containerd's garbage collector until the lease is deleted or
//! expires.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::Result;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    AddResourceRequest, CreateRequest, DeleteRequest, ListRequest, Resource,
};

use crate::{Containerd, map_status, not_found_ok};

/// The label after which containerd's garbage collector drops a lease.
pub const LABEL_GC_EXPIRE: &str = "containerd.io/gc.expire";

/// Something a lease can hold that exists already (what a request creates
/// under a lease is held by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held<'a> {
    /// A blob of the content store, by digest.
    Content(&'a str),
    /// A snapshot of `snapshotter`, by key (a committed layer: its chain id).
    Snapshot { snapshotter: &'a str, key: &'a str },
}

impl Held<'_> {
    /// containerd's names: `content`, `snapshots/<snapshotter>`.
    fn resource(&self) -> Resource {
        match self {
            Held::Content(digest) => Resource {
                id: (*digest).to_string(),
                r#type: "content".to_string(),
            },
            Held::Snapshot { snapshotter, key } => Resource {
                id: (*key).to_string(),
                r#type: format!("snapshots/{snapshotter}"),
            },
        }
    }
}

impl Containerd {
    fn leases(&self) -> LeasesClient<crate::timed::Timed> {
        LeasesClient::new(self.channel.clone())
    }

    /// Creates lease `id`, which containerd drops by itself `expire` from now
    /// (label `containerd.io/gc.expire`), so a crashed daemon's lease does not
    /// pin its resources for ever. Fails with `AlreadyExists` when it exists.
    pub async fn lease_create(&self, id: &str, expire: Duration) -> Result<()> {
        let expires_at = crate::time::rfc3339(SystemTime::now() + expire);
        self.leases()
            .create(self.request(CreateRequest {
                id: id.to_string(),
                labels: HashMap::from([(LABEL_GC_EXPIRE.to_string(), expires_at)]),
            }))
            .await
            .map_err(map_status("lease create"))?;
        tracing::debug!(lease = id, ?expire, "lease created");
        Ok(())
    }

    /// Deletes lease `id` without waiting for garbage collection. A lease
    /// that does not exist is fine.
    pub async fn lease_delete(&self, id: &str) -> Result<()> {
        let r = self
            .leases()
            .delete(self.request(DeleteRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await;
        not_found_ok("lease delete", r)?;
        tracing::debug!(lease = id, "lease deleted");
        Ok(())
    }

    /// Puts `what`, which exists already (or may appear meanwhile), into
    /// this clone's lease, so that the garbage collector keeps it while the
    /// request uses it: a pull that finds a layer in place must not lose it
    /// to the removal of another image sharing it. Call it before looking
    /// whether `what` exists; without a lease it does nothing.
    pub async fn lease_hold(&self, what: Held<'_>) -> Result<()> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        self.leases()
            .add_resource(self.request(AddResourceRequest {
                id: lease.clone(),
                resource: Some(what.resource()),
            }))
            .await
            .map_err(map_status("lease add resource"))?;
        Ok(())
    }

    /// The ids of the leases of this namespace that start with `prefix`
    /// (e.g. to delete those of a crashed daemon at start-up).
    pub async fn lease_list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let resp = self
            .leases()
            .list(self.request(ListRequest { filters: vec![] }))
            .await
            .map_err(map_status("lease list"))?
            .into_inner();
        let mut ids: Vec<String> = resp
            .leases
            .into_iter()
            .map(|l| l.id)
            .filter(|id| id.starts_with(prefix))
            .collect();
        ids.sort();
        Ok(ids)
    }
}
