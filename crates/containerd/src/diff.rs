//! The diff service: applies a layer from the content store to mounts.

use crate::{Error, Result};
use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::types::Mount;
use oci_spec::image::Descriptor;

use crate::{Containerd, from_containerd_descriptor, map_status, to_containerd_descriptor};

impl Containerd {
    /// Applies `layer` (a blob of the content store, compressed or not) to
    /// the file system `mounts` describe (an active snapshot) and returns the
    /// descriptor of what was applied: the uncompressed tar, whose digest is
    /// the layer's diff id.
    pub async fn diff_apply(&self, layer: &Descriptor, mounts: Vec<Mount>) -> Result<Descriptor> {
        let resp = DiffClient::new(self.channel.clone())
            .apply(self.request(ApplyRequest {
                diff: Some(to_containerd_descriptor(layer)),
                mounts,
                ..Default::default()
            }))
            .await
            .map_err(map_status("diff apply"))?
            .into_inner();
        let applied = resp.applied.ok_or_else(|| Error::Malformed {
            op: "diff apply",
            what: format!("no applied descriptor for layer {}", layer.digest()),
        })?;
        from_containerd_descriptor("diff apply", applied)
    }
}
