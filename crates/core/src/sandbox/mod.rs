//! Pod sandboxes: what a CRI `RunPodSandbox` request asks for, whether it is
//! acceptable, and what crius has to create for it (the pause container's
//! OCI spec, its containerd labels, the files of `/etc`).
//!
//! The types here do not depend on protobuf: the gRPC layer translates the
//! CRI `PodSandboxConfig` into a [`PodSandboxRequest`] (unknown enum values
//! become errors there), then calls [`validate`] and the builders below.
//!
//! Nothing here does I/O: randomness, the daemon's own `oom_score_adj`, the
//! node's hostname and the paths of the network namespace and `/dev/shm` are
//! inputs.

use std::collections::BTreeMap;

pub mod annotations;
pub mod files;
pub mod id;
pub mod labels;
pub mod mode;
pub mod spec;
pub mod state;
mod sysctl;
pub(crate) mod validate;

#[cfg(test)]
pub(crate) mod golden;

pub use spec::{ImageProcess, SandboxSpecInput, sandbox_spec};
pub use state::{SandboxEvent, SandboxState};
pub use sysctl::{Owner as SysctlNamespace, owner as sysctl_namespace};
pub use validate::{normalized, validate};

/// A pod sandbox as requested by `RunPodSandbox` (CRI `PodSandboxConfig`
/// plus the runtime handler).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxRequest {
    /// `metadata.name`: the pod's name.
    pub name: String,
    /// `metadata.uid`: the pod's UID.
    pub uid: String,
    /// `metadata.namespace`: the pod's Kubernetes namespace.
    pub namespace: String,
    /// `metadata.attempt`: kubelet bumps it each time it recreates the sandbox.
    pub attempt: u32,
    /// The pod's hostname; ignored with host networking (the pod then sees
    /// the node's UTS namespace), as kubelet never sends one in that case.
    pub hostname: String,
    /// Absolute directory for the logs of the pod's containers; may be empty.
    pub log_directory: String,
    /// DNS settings; `None` means "copy the node's resolv.conf".
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The runtime handler (RuntimeClass); empty for the default runtime.
    pub runtime_handler: String,
    pub linux: LinuxSandbox,
}

/// CRI `DNSConfig`: written to the sandbox's resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// CRI `PortMapping`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: i32,
    /// 0 means "no host port".
    pub host_port: i32,
    /// Empty means every address of the node.
    pub host_ip: String,
}

/// CRI `Protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// CRI `LinuxPodSandboxConfig` with the parts of its security context that
/// matter to crius.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxSandbox {
    /// The pod's cgroup (kubelet's `/kubepods/...` or `kubepods-...slice`).
    pub cgroup_parent: String,
    /// Sysctls for the pod, dot- or slash-separated names.
    pub sysctls: BTreeMap<String, String>,
    pub namespaces: NamespaceOptions,
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// Accepted and ignored: the sandbox's root filesystem is always read-only.
    pub readonly_rootfs: bool,
    pub seccomp: Option<SecurityProfile>,
    /// CRI `overhead`: the sandbox's own cost, for VM runtimes; not used by
    /// crius yet (carried so that the translation loses nothing).
    pub overhead: Option<Resources>,
    /// CRI `resources`: the sum of the pod's container resources.
    pub resources: Option<Resources>,
    /// The user namespace mode, when the request gives one.
    pub user_namespace: Option<NamespaceMode>,
    /// The user namespace's id mappings (mode POD).
    pub userns_ids: crate::userns::Asked,
    /// `supplemental_groups_policy = Strict`: the pod's processes get the
    /// request's groups only. The pause process never gets its image's
    /// `/etc/group` memberships, so for the sandbox it changes nothing.
    pub strict_supplemental_groups: bool,
}

impl LinuxSandbox {
    /// The pod's user namespace mappings (mode POD), once validated.
    pub fn userns_maps(&self) -> Option<crate::userns::IdMaps> {
        crate::userns::pod_maps("", self.user_namespace, &self.userns_ids)
            .ok()
            .flatten()
    }
}

/// CRI `NamespaceOption` (the pod-level part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceOptions {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
}

/// CRI `NamespaceMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// The pod's own namespace, shared by its containers.
    #[default]
    Pod,
    /// A namespace per container (meaningful for PID only; for a pod's
    /// network and IPC, and a container's, it means the pod's, as in
    /// containerd).
    Container,
    /// The node's namespace.
    Node,
    /// Another container's namespace (a container's PID only; anywhere
    /// else it means the pod's own, as in containerd).
    Target,
}

/// CRI `SecurityProfile` (seccomp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityProfile {
    Unconfined,
    RuntimeDefault,
    /// A profile file on the node, by path.
    Localhost(String),
}

/// The parts of CRI `LinuxContainerResources` a sandbox uses; 0 means unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    /// -1 also means unlimited.
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
}

impl Resources {
    /// As a container's resources (the rest unset), for a task update.
    pub fn as_container(&self) -> crate::container::ContainerResources {
        crate::container::ContainerResources {
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_shares: self.cpu_shares,
            memory_limit_in_bytes: self.memory_limit_in_bytes,
            ..Default::default()
        }
    }
}
