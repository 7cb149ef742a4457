//! What crius keeps about a sandbox in containerd (an extension of its
//! container record) and in the pod's directory (for crash clean-up).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The extension name on a sandbox's containerd record.
pub const EXTENSION: &str = "io.crius.sandbox";
/// The type URL of that extension (JSON).
pub const TYPE_URL: &str = "io.crius/SandboxMeta";

/// A sandbox as crius needs it to answer CRI, persisted as versioned JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMeta {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
    pub runtime_type: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// The pinned network namespace; `None` with host network.
    pub netns: Option<String>,
    /// The CNI network the pod is attached to.
    pub network: Option<String>,
    /// Pod IPs, IPv4 first.
    pub ips: Vec<String>,
    pub hostname: String,
    pub log_directory: String,
    /// CRI namespace modes (network, pid, ipc) as CRI enum values.
    pub namespace_modes: [i32; 3],
    pub image: String,
    /// Port mappings as given, for CNI DEL.
    pub port_mappings: Vec<(String, u16, u16, String)>,
    /// The pod's `/dev/shm` mount, when it has its own.
    pub shm: Option<String>,
    /// The pod's cgroup parent, as kubelet gave it.
    #[serde(default)]
    pub cgroup_parent: String,
    /// The pod's security context says privileged.
    #[serde(default)]
    pub privileged: bool,
    /// The snapshotter of the pod's snapshots ("" = the configured default,
    /// for records written before handlers could choose one).
    #[serde(default)]
    pub snapshotter: String,
    /// The shim binary's absolute path, when the pod's handler names one.
    #[serde(default)]
    pub runtime_path: String,
    /// The pod's handler keeps host devices out of privileged containers.
    #[serde(default)]
    pub privileged_without_host_devices: bool,
}

impl SandboxMeta {
    pub const VERSION: u32 = 1;

    /// The pod's snapshotter, or `default` for records that name none.
    pub fn snapshotter_or<'a>(&'a self, default: &'a str) -> &'a str {
        if self.snapshotter.is_empty() {
            default
        } else {
            &self.snapshotter
        }
    }

    /// What its containers need of the pod's request (name, uid, namespace,
    /// namespace modes, cgroup parent, privilege).
    pub fn request(&self) -> crius_core::sandbox::PodSandboxRequest {
        use crius_core::sandbox::{
            LinuxSandbox, NamespaceMode, NamespaceOptions, PodSandboxRequest,
        };
        let mode = |m: i32| match m {
            1 => NamespaceMode::Container,
            2 => NamespaceMode::Node,
            3 => NamespaceMode::Target,
            _ => NamespaceMode::Pod,
        };
        let [network, pid, ipc] = self.namespace_modes;
        PodSandboxRequest {
            name: self.name.clone(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            attempt: self.attempt,
            hostname: self.hostname.clone(),
            log_directory: self.log_directory.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
            linux: LinuxSandbox {
                cgroup_parent: self.cgroup_parent.clone(),
                namespaces: NamespaceOptions {
                    network: mode(network),
                    pid: mode(pid),
                    ipc: mode(ipc),
                },
                privileged: self.privileged,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn to_any(&self) -> crius_core::Result<prost_types::Any> {
        to_any(TYPE_URL, self)
    }

    pub fn from_any(any: &prost_types::Any) -> crius_core::Result<Self> {
        from_any(any)
    }
}

/// `v` as JSON in an `Any` of `type_url`: how crius encodes its extensions
/// on containerd records.
pub(crate) fn to_any<T: Serialize>(type_url: &str, v: &T) -> crius_core::Result<prost_types::Any> {
    Ok(prost_types::Any {
        type_url: type_url.into(),
        value: serde_json::to_vec(v)
            .map_err(|e| crius_core::Error::Internal(format!("encoding {type_url}: {e}")))?,
    })
}

/// The JSON value of an extension written by [`to_any`].
pub(crate) fn from_any<T: DeserializeOwned>(a: &prost_types::Any) -> crius_core::Result<T> {
    serde_json::from_slice(&a.value)
        .map_err(|e| crius_core::Error::Internal(format!("decoding {}: {e}", a.type_url)))
}
