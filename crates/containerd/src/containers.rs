//! containerd's container records: metadata only (id, labels, runtime and
//! its options, the OCI spec, the snapshot of the root file system). A
//! record runs nothing; its task (see [`crate::tasks`]) does.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::{Error, Result};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
    ListContainersRequest, UpdateContainerRequest, container,
};
use oci_spec::runtime::Spec;
use prost::Message;

use crate::{Containerd, map_status, not_found_as_none, not_found_ok, system_time};

/// The type URL under which containerd (and runc's shim) expect the OCI
/// runtime spec of a container, encoded as JSON.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The type URL of [`RuncOptions`] (containerd's `runc.v1` options proto).
pub const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// The runtime of crius' containers: containerd's runc shim v2
/// (`containerd-shim-runc-v2` on containerd's PATH).
pub const RUNC_V2: &str = "io.containerd.runc.v2";

/// The options of the runc shims (`io.containerd.runc.v2`), containerd's
/// `containerd.runc.v1.Options` (`runtime/v2/runc/options/oci.proto`);
/// the containerd-client crate does not compile that proto, so it is
/// declared here with the same field numbers.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct RuncOptions {
    /// Disable pivot_root when creating a container (`runc --no-pivot`).
    #[prost(bool, tag = "1")]
    pub no_pivot_root: bool,
    /// Do not create a new session keyring for the container.
    #[prost(bool, tag = "2")]
    pub no_new_keyring: bool,
    /// The cgroup to put the shim in.
    #[prost(string, tag = "3")]
    pub shim_cgroup: String,
    /// Owner of the stdio pipes the shim creates.
    #[prost(uint32, tag = "4")]
    pub io_uid: u32,
    /// Group of the stdio pipes the shim creates.
    #[prost(uint32, tag = "5")]
    pub io_gid: u32,
    /// The runc binary (name on PATH or path); `runc` when empty.
    #[prost(string, tag = "6")]
    pub binary_name: String,
    /// runc's state root (`runc --root`); `/run/containerd/runc` when
    /// empty. The shim adds the namespace: state goes to `<root>/<ns>/<id>`.
    #[prost(string, tag = "7")]
    pub root: String,
    /// criu binary (containerd 1.6; removed in 2.0).
    #[prost(string, tag = "8")]
    pub criu_path: String,
    /// Use the systemd cgroup driver (`runc --systemd-cgroup`).
    #[prost(bool, tag = "9")]
    pub systemd_cgroup: bool,
    #[prost(string, tag = "10")]
    pub criu_image_path: String,
    #[prost(string, tag = "11")]
    pub criu_work_path: String,
}

/// The runc shim's options as the `Any` that goes into
/// [`Runtime::options`]: `binary_name` and `root` empty for runc's
/// defaults (`runc`, `/run/containerd/runc`).
pub fn runc_options(binary_name: &str, root: &str, systemd_cgroup: bool) -> prost_types::Any {
    let options = RuncOptions {
        binary_name: binary_name.to_string(),
        root: root.to_string(),
        systemd_cgroup,
        ..Default::default()
    };
    prost_types::Any {
        type_url: RUNC_OPTIONS_TYPE_URL.to_string(),
        value: options.encode_to_vec(),
    }
}

/// The runc shim's options from an `Any` made by [`runc_options`] (or
/// anyone else); `None` when it holds another type or does not decode.
pub fn decode_runc_options(any: &prost_types::Any) -> Option<RuncOptions> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != RUNC_OPTIONS_TYPE_URL {
        return None;
    }
    RuncOptions::decode(any.value.as_slice()).ok()
}

/// The runtime (shim) that runs a container, and its options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runtime {
    /// The shim, e.g. [`RUNC_V2`]. Never an absolute path from a client:
    /// containerd executes such a name as given.
    pub name: String,
    /// e.g. [`runc_options`]; passed to the shim at task creation.
    pub options: Option<prost_types::Any>,
}

/// One container record of containerd's metadata store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub labels: HashMap<String, String>,
    /// The image's name (a reference), for information only.
    pub image: String,
    pub runtime: Runtime,
    /// The OCI runtime spec (stored as JSON under [`SPEC_TYPE_URL`]).
    /// Build it explicitly: `Spec::default()` has oci-spec's own defaults.
    pub spec: Spec,
    /// Snapshotter and key of the container's root file system snapshot
    /// (may be empty: then the task's rootfs mounts are all there is).
    pub snapshotter: String,
    pub snapshot_key: String,
    /// Arbitrary typed data (e.g. crius' own metadata of the container).
    pub extensions: HashMap<String, prost_types::Any>,
    /// Set by containerd; ignored by [`Containerd::container_create`].
    pub created_at: Option<SystemTime>,
    /// Set by containerd; ignored by [`Containerd::container_create`].
    pub updated_at: Option<SystemTime>,
}

/// `spec` as the `Any` containerd stores.
pub fn spec_to_any(spec: &Spec) -> Result<prost_types::Any> {
    let value = serde_json::to_vec(spec).map_err(|source| Error::Encode {
        what: "an OCI spec".into(),
        source,
    })?;
    Ok(prost_types::Any {
        type_url: SPEC_TYPE_URL.to_string(),
        value,
    })
}

/// The OCI spec in an `Any` (JSON, as containerd's clients store it).
pub fn spec_from_any(op: &'static str, any: &prost_types::Any) -> Result<Spec> {
    if any.type_url != SPEC_TYPE_URL {
        return Err(Error::Malformed {
            op,
            what: format!("spec of unexpected type {:?}", any.type_url),
        });
    }
    serde_json::from_slice(&any.value).map_err(|e| Error::Malformed {
        op,
        what: format!("spec does not decode: {e}"),
    })
}

impl ContainerRecord {
    fn from_container(op: &'static str, c: Container) -> Result<Self> {
        let spec = match &c.spec {
            Some(any) => spec_from_any(op, any).map_err(|e| Error::Malformed {
                op,
                what: format!("container {}: {e}", c.id),
            })?,
            None => {
                return Err(Error::Malformed {
                    op,
                    what: format!("container {} has no spec", c.id),
                });
            }
        };
        let runtime = c.runtime.unwrap_or_default();
        Ok(ContainerRecord {
            id: c.id,
            labels: c.labels,
            image: c.image,
            runtime: Runtime {
                name: runtime.name,
                options: runtime.options,
            },
            spec,
            snapshotter: c.snapshotter,
            snapshot_key: c.snapshot_key,
            extensions: c.extensions,
            created_at: system_time(c.created_at),
            updated_at: system_time(c.updated_at),
        })
    }

    fn to_container(&self) -> Result<Container> {
        Ok(Container {
            id: self.id.clone(),
            labels: self.labels.clone(),
            image: self.image.clone(),
            runtime: Some(container::Runtime {
                name: self.runtime.name.clone(),
                options: self.runtime.options.clone(),
            }),
            spec: Some(spec_to_any(&self.spec)?),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: self.snapshot_key.clone(),
            created_at: None,
            updated_at: None,
            extensions: self.extensions.clone(),
            sandbox: String::new(),
        })
    }
}

impl Containerd {
    fn containers(&self) -> ContainersClient<crate::timed::Timed> {
        ContainersClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// Creates the record and returns it as stored (with its times).
    /// `AlreadyExists` when a container of that id exists.
    pub async fn container_create(&self, record: &ContainerRecord) -> Result<ContainerRecord> {
        let container = record.to_container()?;
        let resp = self
            .containers()
            .create(self.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(map_status("container create"))?
            .into_inner();
        tracing::debug!(container = %record.id, "container record created");
        match resp.container {
            Some(c) => ContainerRecord::from_container("container create", c),
            None => Ok(record.clone()),
        }
    }

    /// The record `id`; `None` when there is none.
    pub async fn container_get(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let r = self
            .containers()
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await;
        match not_found_as_none("container get", r)?.and_then(|r| r.into_inner().container) {
            Some(c) => Ok(Some(ContainerRecord::from_container("container get", c)?)),
            None => Ok(None),
        }
    }

    /// The records that match `filters` (containerd's filter syntax, e.g.
    /// `labels."io.crius.kind"==sandbox`; several filters are OR-ed, the
    /// comma-separated terms of one filter AND-ed); all when empty.
    pub async fn container_list(&self, filters: &[String]) -> Result<Vec<ContainerRecord>> {
        let resp = self
            .containers()
            .list(self.request(ListContainersRequest {
                filters: filters.to_vec(),
            }))
            .await
            .map_err(map_status("container list"))?
            .into_inner();
        resp.containers
            .into_iter()
            .map(|c| ContainerRecord::from_container("container list", c))
            .collect()
    }

    /// Sets `labels` on container `id`, keeping its other labels.
    pub async fn container_update_labels(
        &self,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.container_update(
            "container update labels",
            Container {
                id: id.to_string(),
                labels,
                ..Default::default()
            },
            paths,
        )
        .await
    }

    /// Sets (adds or replaces) extension `name` of container `id`.
    pub async fn container_set_extension(
        &self,
        id: &str,
        name: &str,
        value: prost_types::Any,
    ) -> Result<()> {
        self.container_update(
            "container set extension",
            Container {
                id: id.to_string(),
                extensions: HashMap::from([(name.to_string(), value)]),
                ..Default::default()
            },
            vec![format!("extensions.{name}")],
        )
        .await
    }

    /// Replaces the record's OCI spec (a task created later runs with it).
    pub async fn container_set_spec(&self, id: &str, spec: &oci_spec::runtime::Spec) -> Result<()> {
        self.container_update(
            "container set spec",
            Container {
                id: id.to_string(),
                spec: Some(spec_to_any(spec)?),
                ..Default::default()
            },
            vec!["spec".to_string()],
        )
        .await
    }

    async fn container_update(
        &self,
        op: &'static str,
        container: Container,
        paths: Vec<String>,
    ) -> Result<()> {
        let id = container.id.clone();
        self.containers()
            .update(self.request(UpdateContainerRequest {
                container: Some(container),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.clone(),
                }),
            }))
            .await
            .map_err(map_status(op))?;
        tracing::debug!(container = %id, ?paths, "container record updated");
        Ok(())
    }

    /// Deletes the record `id` (not its snapshot: remove it after). Absent
    /// is fine. `FailedPrecondition` while the container has a task: delete
    /// the task first. (containerd 1.6 itself would delete the record of a
    /// running task, and its task could then no longer be deleted; like
    /// containerd's Go client, this checks first.)
    pub async fn container_delete(&self, id: &str) -> Result<()> {
        if self.task_get(id).await?.is_some() {
            return Err(Error::Precondition(format!(
                "container {id} has a task: delete the task first"
            )));
        }
        let r = self
            .containers()
            .delete(self.request(DeleteContainerRequest { id: id.to_string() }))
            .await;
        not_found_ok("container delete", r)?;
        tracing::debug!(container = id, "container record deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_round_trip() {
        let any = runc_options("runc", "/run/x", true);
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        let o = decode_runc_options(&any).unwrap_or_default();
        assert_eq!(o.binary_name, "runc");
        assert_eq!(o.root, "/run/x");
        assert!(o.systemd_cgroup);
        // Field numbers as in containerd's oci.proto: binary_name = 6
        // (tag 0x32), root = 7 (0x3a), systemd_cgroup = 9 (0x48).
        assert_eq!(
            any.value,
            [&[0x32, 4][..], b"runc", &[0x3a, 6], b"/run/x", &[0x48, 1]].concat()
        );
        let other = prost_types::Any {
            type_url: "x.y".into(),
            value: vec![],
        };
        assert!(decode_runc_options(&other).is_none());
    }

    #[test]
    fn spec_round_trips_through_any() -> Result<()> {
        let spec = Spec::default();
        let any = spec_to_any(&spec)?;
        assert_eq!(any.type_url, SPEC_TYPE_URL);
        assert_eq!(spec_from_any("t", &any)?, spec);
        let wrong = prost_types::Any {
            type_url: "x".into(),
            value: any.value,
        };
        assert!(spec_from_any("t", &wrong).is_err());
        Ok(())
    }
}
