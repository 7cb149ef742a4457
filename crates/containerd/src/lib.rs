//! crius' adapter to containerd: a namespaced connection and the calls the
//! rest of crius needs, returning [`crius_core::Error`].
//!
//! Every request carries the `containerd-namespace` header of crius'
//! namespace, so crius can share a containerd with other users.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{ListSnapshotsRequest, UsageRequest};
use containerd_client::services::v1::{
    PluginsRequest, introspection_client::IntrospectionClient, version_client::VersionClient,
};
use crius_core::{Error, Result};
use futures::StreamExt;
use serde::Serialize;
use tonic::transport::Channel;

/// How long establishing the connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// containerd's own version, as its Version service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerdVersion {
    pub version: String,
    pub revision: String,
}

/// Bytes and inodes used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// A connection to containerd, bound to one namespace. Cheap to clone.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    address: PathBuf,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Maps a status containerd returned for `op` to a crius error.
fn map_status(op: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |s| {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::NotFound => Error::NotFound {
                what: format!("{op}: {message}"),
            },
            tonic::Code::AlreadyExists => Error::AlreadyExists {
                what: format!("{op}: {message}"),
            },
            tonic::Code::FailedPrecondition => {
                Error::FailedPrecondition(format!("containerd {op}: {message}"))
            }
            tonic::Code::Unavailable => {
                Error::Unavailable(format!("containerd is not answering ({op}): {message}"))
            }
            tonic::Code::DeadlineExceeded => {
                Error::DeadlineExceeded(format!("containerd {op}: {message}"))
            }
            _ => Error::Containerd { op, message },
        }
    }
}

impl Containerd {
    /// Connects to containerd's socket at `address` and checks that it
    /// answers. Fails with [`Error::Unavailable`] saying why when it does not.
    pub async fn connect(address: &Path, namespace: &str) -> Result<Self> {
        let unavailable =
            |why: String| Error::Unavailable(format!("containerd at {}: {why}", address.display()));
        if !address.exists() {
            return Err(unavailable("socket does not exist".into()));
        }
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, containerd_client::connect(address))
            .await
            .map_err(|_| unavailable("connection timed out".into()))?
            .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
        let client = Containerd {
            channel,
            namespace: namespace.to_string(),
            address: address.to_path_buf(),
        };
        client
            .version()
            .await
            .map_err(|e| unavailable(format!("not answering: {e}")))?;
        Ok(client)
    }

    /// The socket this connection uses.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The containerd namespace of all requests.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        // A namespace is validated at config load; the header value is ASCII.
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        req
    }

    /// containerd's version.
    pub async fn version(&self) -> Result<ContainerdVersion> {
        let resp = VersionClient::new(self.channel.clone())
            .version(self.request(()))
            .await
            .map_err(map_status("version"))?
            .into_inner();
        Ok(ContainerdVersion {
            version: resp.version,
            revision: resp.revision,
        })
    }

    /// The `exports` of the plugin `type`/`id` (e.g. a snapshotter's `root`).
    pub async fn plugin_exports(
        &self,
        plugin_type: &str,
        id: &str,
    ) -> Result<HashMap<String, String>> {
        let resp = IntrospectionClient::new(self.channel.clone())
            .plugins(self.request(PluginsRequest {
                filters: vec![format!("type=={plugin_type},id=={id}")],
            }))
            .await
            .map_err(map_status("introspection plugins"))?
            .into_inner();
        let plugin = resp
            .plugins
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found(format!("containerd plugin {plugin_type}.{id}")))?;
        if let Some(err) = plugin.init_err {
            return Err(Error::FailedPrecondition(format!(
                "containerd plugin {plugin_type}.{id} failed to initialize: {}",
                err.message
            )));
        }
        Ok(plugin.exports)
    }

    /// The directory where `snapshotter` keeps its data.
    pub async fn snapshotter_root(&self, snapshotter: &str) -> Result<PathBuf> {
        let exports = self
            .plugin_exports("io.containerd.snapshotter.v1", snapshotter)
            .await?;
        exports.get("root").map(PathBuf::from).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "snapshotter {snapshotter} exports no root directory"
            ))
        })
    }

    /// Total usage of all snapshots of this namespace in `snapshotter`.
    pub async fn snapshots_usage(&self, snapshotter: &str) -> Result<Usage> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mut stream = snapshots
            .list(self.request(ListSnapshotsRequest {
                snapshotter: snapshotter.to_string(),
                filters: vec![],
            }))
            .await
            .map_err(map_status("snapshots list"))?
            .into_inner();
        let mut keys = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(map_status("snapshots list"))?;
            keys.extend(batch.info.into_iter().map(|i| i.name));
        }
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
