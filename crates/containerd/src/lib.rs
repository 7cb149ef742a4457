//! crius' adapter to containerd: a namespaced connection and the calls the
//! rest of crius needs, returning its own [`Error`] (see [`error`] for how
//! it becomes crius' [`crius_core::Error`]).
//!
//! Every request carries the `containerd-namespace` header of crius'
//! namespace, so crius can share a containerd with other users. A clone made
//! by [`Containerd::with_lease`] also carries a `containerd-lease` header, so
//! everything it creates (content, snapshots, images) belongs to that lease
//! and is safe from containerd's garbage collector until the lease is deleted.
//!
//! The calls are grouped by containerd service: [`leases`], [`content`],
//! [`images`], [`snapshots`], [`diff`], plus the [`unpack`] helper built on
//! snapshots and diff; [`containers`] (records), [`tasks`] (what runs) and
//! [`events`]; [`checkpoint`] (pause, resume, CRIU checkpoint, a snapshot's
//! changes as a tar).

pub mod checkpoint;
pub mod containers;
pub mod content;
pub mod diff;
mod error;
pub mod events;
pub mod images;
pub mod leases;
pub mod snapshots;
pub mod tasks;
mod time;
mod timed;
pub mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::{
    PluginsRequest, introspection_client::IntrospectionClient, version_client::VersionClient,
};
pub use error::{Error, Kind, Result};
use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::Serialize;

pub use containerd_client::types::Mount;
pub use containers::{
    ContainerRecord, RUNC_V2, RuncOptions, Runtime, decode_runc_options, runc_options,
};
pub use content::ContentInfo;
pub use events::{Event, EventKind, Followed};
pub use images::ImageRecord;
pub use leases::Held;
pub use snapshots::{SnapshotInfo, SnapshotKind};
pub use tasks::{ProcessInfo, Stdio, TaskExit, TaskInfo, TaskMetric, TaskStatus};
pub use unpack::{chain_id, chain_ids};

/// How long establishing the connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The gRPC metadata header that selects the containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The gRPC metadata header that puts what a request creates into a lease.
const LEASE_HEADER: &str = "containerd-lease";

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

/// A connection to containerd, bound to one namespace (and, for a clone made
/// by [`Containerd::with_lease`], one lease). Cheap to clone.
#[derive(Clone)]
pub struct Containerd {
    channel: timed::Timed,
    namespace: String,
    lease: Option<String>,
    address: PathBuf,
    /// Shared by the clones of one connection: one extraction of a layer at
    /// a time (see [`Containerd::unpack`]).
    unpack_locks: Arc<unpack::KeyedLocks>,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Keeps the status containerd returned for `op` (see [`Error::status`]).
fn map_status(op: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    Error::status(op)
}

/// `Ok(None)` for NotFound, the mapped error for any other failure.
fn not_found_as_none<T>(op: &'static str, r: Result<T, tonic::Status>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(Error::Status { op, status: s }),
    }
}

/// `Ok(())` for success and for NotFound (idempotent removals).
fn not_found_ok<T>(op: &'static str, r: Result<T, tonic::Status>) -> Result<()> {
    not_found_as_none(op, r).map(|_| ())
}

/// A protobuf timestamp as a [`SystemTime`] (None when absent or out of range).
fn system_time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    ts.and_then(|t| SystemTime::try_from(t).ok())
}

/// An OCI descriptor as containerd's.
fn to_containerd_descriptor(d: &Descriptor) -> containerd_client::types::Descriptor {
    containerd_client::types::Descriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: i64::try_from(d.size()).unwrap_or(i64::MAX),
        annotations: d.annotations().clone().unwrap_or_default(),
    }
}

/// containerd's descriptor as an OCI one; `op` names the call that returned it.
fn from_containerd_descriptor(
    op: &'static str,
    d: containerd_client::types::Descriptor,
) -> Result<Descriptor> {
    let digest = Digest::try_from(d.digest.clone()).map_err(|e| Error::Malformed {
        op,
        what: format!("invalid digest {:?} in a descriptor: {e}", d.digest),
    })?;
    let mut desc = Descriptor::new(
        MediaType::from(d.media_type.as_str()),
        u64::try_from(d.size).unwrap_or(0),
        digest,
    );
    if !d.annotations.is_empty() {
        desc.set_annotations(Some(d.annotations));
    }
    Ok(desc)
}

impl Containerd {
    /// Connects to containerd's socket at `address` and checks that it
    /// answers. Fails with [`Error::Unreachable`] saying why when it does not.
    pub async fn connect(address: &Path, namespace: &str) -> Result<Self> {
        let unavailable = |why: String| Error::Unreachable {
            address: address.to_path_buf(),
            why,
        };
        if !address.exists() {
            return Err(unavailable("socket does not exist".into()));
        }
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, containerd_client::connect(address))
            .await
            .map_err(|_| unavailable("connection timed out".into()))?
            .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
        let client = Containerd {
            channel: timed::Timed(channel),
            namespace: namespace.to_string(),
            lease: None,
            address: address.to_path_buf(),
            unpack_locks: Arc::default(),
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

    /// Where containerd looks for shim binaries: the directories of its own
    /// `PATH` (read from the process behind the socket), then the directory
    /// of its executable. Empty when that process cannot be inspected.
    pub async fn shim_dirs(&self) -> Vec<PathBuf> {
        let pid = match tokio::net::UnixStream::connect(&self.address).await {
            Ok(s) => s.peer_cred().ok().and_then(|c| c.pid()),
            Err(_) => None,
        };
        let Some(pid) = pid else {
            return vec![];
        };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let mut dirs: Vec<PathBuf> = environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(b"PATH="))
            .map(|path| {
                String::from_utf8_lossy(path)
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
            && let Some(dir) = exe.parent()
        {
            dirs.push(dir.to_path_buf());
        }
        dirs
    }

    /// Kills the shim processes of this containerd and namespace that serve
    /// one of the containers `ids` (their `-namespace`, `-id` and `-address`
    /// arguments; a grouped shim is named after the first container it
    /// started, the pause task or a pinned pod's first container):
    /// for after the container's task and record are gone, when containerd
    /// lost a shim it was starting as its client went away (containerd 1.6
    /// keeps no handle on a shim whose start was cancelled half-way).
    /// Returns how many were killed. Blocking: reads `/proc`.
    pub fn kill_lost_shims(&self, ids: &[String]) -> usize {
        let address = self.address.display().to_string();
        let wanted = [
            ("-namespace", self.namespace.as_str()),
            ("-address", address.as_str()),
        ];
        let serves = |args: &[&[u8]]| {
            args.windows(2)
                .find(|w| w[0] == b"-id")
                .and_then(|w| ids.iter().find(|id| w[1] == id.as_bytes()))
                .cloned()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let mut killed = 0;
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args.first().is_some_and(|a| {
                String::from_utf8_lossy(a)
                    .rsplit('/')
                    .next()
                    .is_some_and(|name| name.starts_with("containerd-shim"))
            });
            let matches = wanted.iter().all(|(flag, value)| {
                args.windows(2)
                    .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes())
            });
            let Some(id) = serves(&args).filter(|_| is_shim && matches) else {
                continue;
            };
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                tracing::warn!(container = %id, pid, "killed a shim containerd had lost");
                killed += 1;
            }
        }
        killed
    }

    /// The shim binary containerd would run for `runtime_type` (or the
    /// configured `runtime_path`), if it exists and is executable.
    pub async fn shim_binary(&self, runtime_type: &str, runtime_path: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if !runtime_path.is_empty() {
            let p = PathBuf::from(runtime_path);
            return executable(&p).then_some(p);
        }
        let name = crius_core::names::ShimName::parse(runtime_type)
            .ok()?
            .binary_name();
        self.shim_dirs()
            .await
            .into_iter()
            .map(|d| d.join(&name))
            .find(|p| executable(p))
    }

    /// The containerd namespace of all requests.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The lease every request of this clone carries, if any.
    pub fn lease(&self) -> Option<&str> {
        self.lease.as_deref()
    }

    /// A clone whose every request also carries the `containerd-lease`
    /// header of lease `id` (created with [`Containerd::lease_create`]).
    pub fn with_lease(&self, id: &str) -> Containerd {
        Containerd {
            lease: Some(id.to_string()),
            ..self.clone()
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        // A namespace is validated at config load; the header value is ASCII.
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert(NAMESPACE_HEADER, v);
        }
        if let Some(lease) = &self.lease {
            match lease.parse() {
                Ok(v) => {
                    req.metadata_mut().insert(LEASE_HEADER, v);
                }
                Err(_) => tracing::warn!(lease, "lease id is not a valid header value"),
            }
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
            .ok_or_else(|| Error::Missing {
                what: format!("containerd plugin {plugin_type}.{id}"),
            })?;
        if let Some(err) = plugin.init_err {
            return Err(Error::Precondition(format!(
                "containerd plugin {plugin_type}.{id} failed to initialize: {}",
                err.message
            )));
        }
        Ok(plugin.exports)
    }

    /// The directory where `snapshotter` keeps its data: the root it
    /// exports, else (the native snapshotter exports none) its directory in
    /// containerd's root, found next to the content store's, where
    /// containerd's CRI looks too.
    pub async fn snapshotter_root(&self, snapshotter: &str) -> Result<PathBuf> {
        let exports = self
            .plugin_exports("io.containerd.snapshotter.v1", snapshotter)
            .await?;
        if let Some(root) = exports.get("root") {
            return Ok(PathBuf::from(root));
        }
        let content = self
            .plugin_exports("io.containerd.content.v1", "content")
            .await?;
        content
            .get("root")
            .and_then(|r| Path::new(r).parent())
            .map(|dir| dir.join(format!("io.containerd.snapshotter.v1.{snapshotter}")))
            .filter(|dir| dir.is_dir())
            .ok_or_else(|| {
                Error::Precondition(format!(
                    "snapshotter {snapshotter} exports no root directory"
                ))
            })
    }
}

/// A string unique on this host (process id, time, counter), for temporary
/// names: ingest refs, extraction keys, lease ids.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time check: the futures of the calls a server spawns are Send.
    #[allow(dead_code)]
    fn futures_are_send(c: &Containerd, layers: &[Descriptor], diff_ids: &[String]) {
        fn send<T: Send>(_: T) {}
        send(c.content_write(
            "r",
            "sha256:00",
            0,
            HashMap::new(),
            futures::stream::empty(),
        ));
        send(c.content_write_bytes("r", "sha256:00", HashMap::new(), bytes::Bytes::new()));
        send(c.content_read("sha256:00", 0));
        send(c.unpack("overlayfs", layers, diff_ids));
        send(c.image_put(ImageRecord::default()));
        send(c.image_list(&[]));
        send(c.lease_create("l", Duration::from_secs(1)));
        send(c.snapshot_prepare("overlayfs", "k", None, HashMap::new()));
        send(c.diff_apply(&ImageRecord::default().target, vec![]));
    }

    #[test]
    fn descriptors_convert_both_ways() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let digest = format!("sha256:{}", "a".repeat(64));
        let mut d = Descriptor::new(
            MediaType::ImageLayerGzip,
            42,
            Digest::try_from(digest.clone())?,
        );
        d.set_annotations(Some(HashMap::from([("k".into(), "v".into())])));
        let c = to_containerd_descriptor(&d);
        assert_eq!(c.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(c.digest, digest);
        assert_eq!(c.size, 42);
        assert_eq!(from_containerd_descriptor("t", c)?, d);
        let bad = containerd_client::types::Descriptor {
            digest: "nope".into(),
            ..Default::default()
        };
        assert!(from_containerd_descriptor("t", bad).is_err());
        Ok(())
    }
}
