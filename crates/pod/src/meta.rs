//! What crius keeps about a sandbox in containerd (an extension of its
//! container record) and in the pod's directory (for crash clean-up).

use std::collections::BTreeMap;

use crius_core::sandbox::NamespaceMode;
use crius_core::sandbox::mode::PinPaths;
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
    /// The pod's namespace modes (version 1 records: `namespace_modes`,
    /// CRI enum values).
    #[serde(
        alias = "namespace_modes",
        deserialize_with = "namespaces_of_any_record"
    )]
    pub namespaces: NamespaceRecord,
    pub image: String,
    /// Port mappings as given, for CNI DEL (version 1 records: tuples).
    #[serde(deserialize_with = "ports_of_any_record")]
    pub port_mappings: Vec<PortRecord>,
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
    /// A pinned pod (no pause task): the pins of its IPC and UTS
    /// namespaces. `None`: a pause task holds the pod's namespaces.
    #[serde(default)]
    pub pinned: Option<PinPaths>,
    /// The pod's user namespace (mode POD): its pause holds it, its
    /// containers join it, their rootfs are remapped copies.
    #[serde(default)]
    pub userns: Option<crius_core::userns::IdMaps>,
}

/// The extension a pinned pod's record gets when StopPodSandbox begins (a
/// pause pod's state is its task's): READY until then, NOTREADY after,
/// also across restarts.
pub const STOPPED_EXTENSION: &str = "io.crius.sandbox.stopped";
/// Its type URL (the value is `true`).
pub const STOPPED_TYPE_URL: &str = "io.crius/SandboxStopped";

/// The extension UpdatePodSandboxResources records on a sandbox's record.
pub const RESOURCES_EXTENSION: &str = "io.crius.sandbox.resources";
/// Its type URL (JSON of [`PodResources`]).
pub const RESOURCES_TYPE_URL: &str = "io.crius/SandboxResources";

/// A pod's size as kubelet last set it (UpdatePodSandboxResources): the
/// sum of its containers' resources and the sandbox's own overhead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    pub overhead: Option<crius_core::sandbox::Resources>,
    pub resources: Option<crius_core::sandbox::Resources>,
}

/// A namespace mode as a sandbox record names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeRecord {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

impl ModeRecord {
    /// A CRI enum value, as version 1 records hold them (unknown: POD).
    fn of_cri(v: i32) -> Self {
        match v {
            1 => ModeRecord::Container,
            2 => ModeRecord::Node,
            3 => ModeRecord::Target,
            _ => ModeRecord::Pod,
        }
    }
}

impl From<NamespaceMode> for ModeRecord {
    fn from(m: NamespaceMode) -> Self {
        match m {
            NamespaceMode::Pod => ModeRecord::Pod,
            NamespaceMode::Container => ModeRecord::Container,
            NamespaceMode::Node => ModeRecord::Node,
            NamespaceMode::Target => ModeRecord::Target,
        }
    }
}

impl From<ModeRecord> for NamespaceMode {
    fn from(m: ModeRecord) -> Self {
        match m {
            ModeRecord::Pod => NamespaceMode::Pod,
            ModeRecord::Container => NamespaceMode::Container,
            ModeRecord::Node => NamespaceMode::Node,
            ModeRecord::Target => NamespaceMode::Target,
        }
    }
}

/// The pod's namespace modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub network: ModeRecord,
    pub pid: ModeRecord,
    pub ipc: ModeRecord,
}

/// One port mapping with a host port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    /// `tcp`, `udp` or `sctp`, lower case.
    pub protocol: String,
    pub host_port: u16,
    pub container_port: u16,
    pub host_ip: String,
}

fn namespaces_of_any_record<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<NamespaceRecord, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Named(NamespaceRecord),
        Cri([i32; 3]),
    }
    Ok(match Wire::deserialize(d)? {
        Wire::Named(n) => n,
        Wire::Cri([network, pid, ipc]) => NamespaceRecord {
            network: ModeRecord::of_cri(network),
            pid: ModeRecord::of_cri(pid),
            ipc: ModeRecord::of_cri(ipc),
        },
    })
}

fn ports_of_any_record<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<PortRecord>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Named(PortRecord),
        Tuple(String, u16, u16, String),
    }
    let wire: Vec<Wire> = Deserialize::deserialize(d)?;
    Ok(wire
        .into_iter()
        .map(|w| match w {
            Wire::Named(p) => p,
            Wire::Tuple(protocol, host_port, container_port, host_ip) => PortRecord {
                protocol,
                host_port,
                container_port,
                host_ip,
            },
        })
        .collect())
}

impl SandboxMeta {
    /// 3: pinned pods (`pinned`; a version 2 criusd would read them as
    /// pause pods with a dead task, and leave their pins: drain a node
    /// before going back). 2: named namespace modes and port mappings (1:
    /// CRI enum values and tuples, still read).
    pub const VERSION: u32 = 3;

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
        use crius_core::sandbox::{LinuxSandbox, NamespaceOptions, PodSandboxRequest};
        let NamespaceRecord { network, pid, ipc } = self.namespaces;
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
                    network: network.into(),
                    pid: pid.into(),
                    ipc: ipc.into(),
                },
                privileged: self.privileged,
                user_namespace: self.userns.map(|_| crius_core::sandbox::NamespaceMode::Pod),
                userns_ids: self
                    .userns
                    .map(|m| crius_core::userns::Asked {
                        uids: vec![m.uids],
                        gids: vec![m.gids],
                    })
                    .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as a version 1 criusd wrote it (CRI enum values, tuples).
    const V1: &str = r#"{"version":1,"id":"abc","name":"web","uid":"u1","namespace":"default",
        "attempt":0,"labels":{"app":"web"},"annotations":{},"runtime_handler":"",
        "runtime_type":"io.containerd.runc.v2","created_at":1,"netns":"/run/crius/netns/abc",
        "network":"crius","ips":["10.85.0.2"],"hostname":"web","log_directory":"/var/log/pods/x",
        "namespace_modes":[0,2,1],"image":"localhost/crius/pause:0.1.0",
        "port_mappings":[["tcp",8080,80,""],["udp",5353,53,"127.0.0.1"]],"shm":null}"#;

    #[test]
    fn a_version_1_record_reads_into_named_fields_and_writes_back_as_version_2()
    -> serde_json::Result<()> {
        let old: SandboxMeta = serde_json::from_str(V1)?;
        assert_eq!(
            old.namespaces,
            NamespaceRecord {
                network: ModeRecord::Pod,
                pid: ModeRecord::Node,
                ipc: ModeRecord::Container,
            }
        );
        assert_eq!(
            old.port_mappings[1],
            PortRecord {
                protocol: "udp".into(),
                host_port: 5353,
                container_port: 53,
                host_ip: "127.0.0.1".into(),
            }
        );
        let pod = old.request();
        assert_eq!(pod.linux.namespaces.pid, NamespaceMode::Node);
        assert_eq!(pod.linux.namespaces.ipc, NamespaceMode::Container);

        let written = serde_json::to_value(&old)?;
        assert_eq!(written["namespaces"]["pid"], "node");
        assert_eq!(written["port_mappings"][0]["host_port"], 8080);
        assert!(written.get("namespace_modes").is_none());
        let again: SandboxMeta = serde_json::from_value(written)?;
        assert_eq!(again, old);
        Ok(())
    }
}
