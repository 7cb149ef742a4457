//! Containers in a pod: what a CRI `CreateContainer` request asks for,
//! whether it is acceptable, and the OCI runtime spec crius gives runc for
//! it.
//!
//! The types here do not depend on protobuf: the gRPC layer translates the
//! CRI `ContainerConfig` into a [`ContainerRequest`] (unknown enum values
//! become errors there). The order of use is:
//! 1. [`validate`] the request;
//! 2. [`image_process`]: the process (args, env, cwd) from the request and
//!    the image config;
//! 3. [`resolve_user`]: uid, gid and groups, from the request, the image's
//!    `USER` and the image's `/etc/passwd` and `/etc/group`;
//! 4. [`container_spec`]: the OCI spec;
//! 5. [`container_labels`]: the labels of the containerd container record.
//!
//! Nothing here does I/O. What needs it is an input, gathered by the caller:
//! the image's `/etc/passwd` and `/etc/group` (see [`resolve_user`] for the
//! contract on reading them), the host facts measured at start-up
//! ([`HostFacts`]: the daemon's oom_score_adj and capabilities, the cgroup
//! controllers, AppArmor), the device nodes behind CRI devices, the targets
//! of symlinked host paths and the propagation of the mounts holding them,
//! and the contents of a localhost seccomp profile.

use std::collections::{BTreeMap, BTreeSet};

pub use crate::sandbox::{NamespaceMode, SecurityProfile};

mod caps;
mod in_force;
pub mod labels;
mod mounts;
mod process;
mod resize;
pub mod seccomp;
pub mod signal;
mod spec;
pub mod state;
mod user;
pub(crate) mod validate;

#[cfg(test)]
mod golden;

pub use caps::{
    ALL_CAPABILITIES, capabilities_from_mask, capability_name, parse_capability,
    unknown_capabilities,
};
pub use in_force::{resources_in_force, user_in_force};
pub use labels::{container_labels, container_name_key};
pub use mounts::image_volume_paths;
pub use process::{ContainerProcess, DEFAULT_PATH_ENV, image_process};
pub use resize::{resized, task_resources};
pub use spec::{
    ContainerSpecInput, HostDevice, HostDeviceKind, HostFacts, HostPath, HostPropagation, PodFiles,
    PodNamespaces, container_spec, linux_resources, log_file_path,
};
pub use state::{ContainerEvent, ContainerState, ContainerStatus};
pub use user::{MAX_ETC_FILE_SIZE, User, resolve_user};
pub use validate::{
    MAX_ID, MAX_PATH_LEN, check_handler_features, log_path_beneath, normalized, validate,
    validate_exec_cmd,
};

/// A container as requested by `CreateContainer` (CRI `ContainerConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRequest {
    /// `metadata.name`: the container's name in the pod.
    pub name: String,
    /// `metadata.attempt`: kubelet bumps it each time it recreates the
    /// container.
    pub attempt: u32,
    /// `image.image`: the image as the client named it.
    pub image: String,
    /// Replaces the image's `Entrypoint` (and then its `Cmd` is ignored).
    pub command: Vec<String>,
    /// Replaces the image's `Cmd`.
    pub args: Vec<String>,
    /// Absolute, or empty for the image's (else `/`).
    pub working_dir: String,
    /// `stop_signal`: what StopContainer sends first (`SIGUSR1`); empty:
    /// the image's `STOPSIGNAL`, else SIGTERM.
    pub stop_signal: String,
    /// `(key, value)` in the request's order; they override the image's.
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Below the sandbox's log directory (a leading `/` is joined under
    /// it, see [`log_path_beneath`]); empty for no log.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub linux: LinuxContainer,
    /// CRI `CDI_devices` (fully qualified names); refused by [`validate`]
    /// until crius resolves them.
    pub cdi_devices: Vec<String>,
}

/// CRI `Mount`: a bind mount of a host path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub propagation: Propagation,
    /// Accepted and ignored: crius does not support SELinux.
    pub selinux_relabel: bool,
    /// Read-only all the way down (`rro`), where the handler can.
    pub recursive_read_only: bool,
    /// An image to mount instead of a host path (an image volume, read-only):
    /// the pod's runtime mounts a view of it and fills `host_path` with
    /// where. Empty for none.
    pub image: String,
    /// The directory of the image to mount (image volumes; empty: its root).
    pub image_sub_path: String,
    /// The uid/gid mappings asked for (an idmapped mount; empty: none);
    /// see [`crate::userns::check_mounts`].
    pub id_mappings: crate::userns::Asked,
}

/// CRI `MountPropagation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// `rprivate`: no propagation either way.
    #[default]
    Private,
    /// `rslave`: mounts made on the host later show in the container.
    HostToContainer,
    /// `rshared`: mounts propagate both ways.
    Bidirectional,
}

/// CRI `Device`: a host device node (or a directory of them) to create in
/// the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    /// cgroup permissions: one or more of `r`, `w`, `m`.
    pub permissions: String,
}

/// CRI `LinuxContainerConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxContainer {
    pub resources: Option<ContainerResources>,
    pub security: SecurityContext,
}

/// CRI `LinuxContainerResources`; 0 (or empty) means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ContainerResources {
    pub cpu_period: i64,
    /// -1 means unlimited.
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    /// -1000..=1000.
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// `(page size, limit in bytes)`, e.g. `("2MB", 1 << 30)`.
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files and values (`memory.high`...).
    pub unified: BTreeMap<String, String>,
    /// Memory plus swap; -1 means unlimited swap.
    pub memory_swap_limit_in_bytes: i64,
}

/// CRI `LinuxContainerSecurityContext` (the parts crius supports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    pub capabilities: CapabilityChanges,
    pub privileged: bool,
    pub namespace_options: ContainerNamespaces,
    pub run_as_user: Option<i64>,
    /// Takes precedence over `run_as_user`; empty when unset.
    pub run_as_username: String,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    /// `None`: crius' defaults ([`crate::sandbox::spec::MASKED_PATHS`]).
    pub masked_paths: Option<Vec<String>>,
    /// `None`: crius' defaults ([`crate::sandbox::spec::READONLY_PATHS`]).
    pub readonly_paths: Option<Vec<String>>,
    /// `Localhost` holds the absolute path of the profile on the node.
    pub seccomp: Option<SecurityProfile>,
    /// `Localhost` holds the name of a loaded AppArmor profile.
    pub apparmor: Option<SecurityProfile>,
    /// The user namespace mode, when the request gives one: its pod's.
    pub user_namespace: Option<NamespaceMode>,
    /// The user namespace's id mappings (mode POD): its pod's.
    pub userns_ids: crate::userns::Asked,
    /// `supplemental_groups_policy = Strict`: the groups of the image's
    /// `/etc/group` are not added (see [`resolve_user`]).
    pub strict_supplemental_groups: bool,
}

/// CRI `Capability`: names with or without `CAP_`, any case; `ALL` stands
/// for every capability crius can grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityChanges {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// CRI `NamespaceOption` of a container.
///
/// Network and IPC always follow the pod (a container joins the pause
/// container's namespaces); PID may differ from the pod's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerNamespaces {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    /// The container whose PID namespace to join, with `pid == Target`.
    pub target_id: String,
}

/// What the image config says (OCI image config `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: String,
    /// `USER`: `uid`, `name`, `uid:gid` or `name:group`; empty for root.
    pub user: String,
    pub stop_signal: String,
    /// `VOLUMES`: see [`image_volume_paths`].
    pub volumes: BTreeSet<String>,
    pub labels: BTreeMap<String, String>,
}
