//! Leases: what a request made under a lease (content, snapshots, images)
//! is kept from containerd's garbage collector until the lease is deleted or
//! expires.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{CreateRequest, DeleteRequest, ListRequest};
use crius_core::Result;

use crate::{Containerd, map_status, not_found_ok};

/// The label after which containerd's garbage collector drops a lease.
pub const LABEL_GC_EXPIRE: &str = "containerd.io/gc.expire";

impl Containerd {
    fn leases(&self) -> LeasesClient<tonic::transport::Channel> {
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
