//! The boundaries `pod` works across, as narrow traits: containerd
//! (containers, tasks, snapshots, leases, events), the pod network (CNI and
//! network namespaces), the image store, the host's file system and the
//! OCI runtimes installed on it.
//!
//! [`Pods::new`](crate::Pods::new) builds the real adapters
//! ([`crate::real`]); tests build [`Pods`](crate::Pods) over recording fakes
//! ([`crate::fake`]) with [`Pods::with_ports`](crate::Pods::with_ports).
//! Which one is used is decided by construction, never by `cfg!(test)`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crius_containerd::{ContainerRecord, Event, Mount, Stdio, TaskExit, TaskInfo, Usage};
use crius_core::Result;
use crius_core::config::ImagesConfig;
use crius_core::container::{Device, HostDevice, HostPath};
use crius_core::image::CriImage;
use crius_image::Query;
use crius_network::cni::{NetworkConfig, NotReady};
use crius_network::exec::Attachment;
use crius_network::pins::{PinPlan, Pins};
use futures::stream::BoxStream;

/// containerd's container records.
#[async_trait]
pub trait Containers: Send + Sync {
    async fn container_create(&self, record: &ContainerRecord) -> Result<()>;
    async fn container_get(&self, id: &str) -> Result<Option<ContainerRecord>>;
    async fn container_list(&self, filters: &[String]) -> Result<Vec<ContainerRecord>>;
    async fn container_set_extension(
        &self,
        id: &str,
        name: &str,
        value: prost_types::Any,
    ) -> Result<()>;
    /// Replaces the record's OCI spec.
    async fn container_set_spec(&self, id: &str, spec: &oci_spec::runtime::Spec) -> Result<()>;
    async fn container_delete(&self, id: &str) -> Result<()>;
}

/// containerd's tasks and execs.
#[async_trait]
pub trait Tasks: Send + Sync {
    async fn task_create(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        stdio: &Stdio,
        runtime_path: &str,
    ) -> Result<u32>;
    async fn task_start(&self, id: &str) -> Result<u32>;
    async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<Found<()>>;
    async fn task_delete(&self, id: &str) -> Result<Option<TaskExit>>;
    async fn task_get(&self, id: &str) -> Result<Option<TaskInfo>>;
    async fn task_wait(&self, id: &str) -> Result<Found<TaskExit>>;
    /// Changes a task's resources; `annotations` go to the shim with them.
    async fn task_update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
        annotations: &std::collections::HashMap<String, String>,
    ) -> Result<Found<()>>;
    async fn exec_create(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &Stdio,
    ) -> Result<()>;
    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32>;
    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<TaskExit>;
    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<()>;
    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<Option<TaskExit>>;
    /// Resizes the terminal of exec `exec_id` of task `id`, or of the
    /// task's own process when `exec_id` is `""` (containerd's ResizePty).
    async fn exec_resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()>;
    /// Closes the shim's side of the stdin of exec `exec_id` (`""`: of the
    /// task's own process), containerd's CloseIO: the process reads EOF.
    async fn exec_close_stdin(&self, id: &str, exec_id: &str) -> Result<()>;
}

/// What a call on a task found: the task, or no task (containerd answered
/// NotFound: it exited and was deleted, its shim died, or it was never
/// made). Only the adapter reads containerd's codes; the caller decides
/// what a gone task means to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<T> {
    Here(T),
    Gone,
}

/// A snapshot made on a parent: its mounts, or the parent is missing (an
/// image whose layers are not, or no longer, unpacked). The adapter decides
/// which of containerd's answers means that, so nothing above it reads
/// containerd's error codes.
#[derive(Debug)]
pub enum Made {
    Mounts(Vec<Mount>),
    ParentMissing,
}

/// containerd's snapshots.
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// A writable snapshot `key` on `parent`.
    async fn snapshot_prepare(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Made>;
    /// A read-only view `key` of `parent`.
    async fn snapshot_view(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Made>;
    async fn snapshot_mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>>;
    async fn snapshot_remove(&self, snapshotter: &str, key: &str) -> Result<()>;
    async fn snapshot_usage(&self, snapshotter: &str, key: &str) -> Result<Option<Usage>>;
    /// Commits the active snapshot `key` as `name`; `Ok(false)` when
    /// `name` exists already (`key` is left as it was then).
    async fn snapshot_commit(&self, snapshotter: &str, name: &str, key: &str) -> Result<bool>;
    /// Whether the snapshot `key` exists.
    async fn snapshot_exists(&self, snapshotter: &str, key: &str) -> Result<bool>;
}

/// What a checkpoint of a running container needs of containerd.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// Freezes the task's processes.
    async fn task_pause(&self, id: &str) -> Result<()>;
    /// Thaws them.
    async fn task_resume(&self, id: &str) -> Result<()>;
    /// CRIU's images of the running task into `image_dir`, its log and
    /// statistics into `work_dir`; the task keeps running.
    async fn task_checkpoint(&self, id: &str, image_dir: &Path, work_dir: &Path) -> Result<()>;
    /// The parent of snapshot `key` (`None`: it has none, or is missing).
    async fn snapshot_parent(&self, snapshotter: &str, key: &str) -> Result<Option<String>>;
    /// What `upper` changed over `lower` as an uncompressed tar in `dest`;
    /// its size. Call it on a leased clone ([`Containerd::with_lease`]):
    /// containerd's content store holds the tar on the way.
    async fn diff_to_file(&self, lower: Vec<Mount>, upper: Vec<Mount>, dest: &Path) -> Result<u64>;
}

/// containerd's leases.
#[async_trait]
pub trait Leases: Send + Sync {
    async fn lease_create(&self, id: &str, expire: Duration) -> Result<()>;
    async fn lease_delete(&self, id: &str) -> Result<()>;
    async fn lease_list_prefix(&self, prefix: &str) -> Result<Vec<String>>;
}

/// One containerd namespace: everything `pod` asks of containerd.
#[async_trait]
pub trait Containerd: Containers + Tasks + Snapshots + Leases + Checkpoints {
    /// The same connection, with every request carrying lease `id`.
    fn with_lease(&self, id: &str) -> Arc<dyn Containerd>;
    /// Subscribes to the events `filters` select; the stream ends (after
    /// an error) when the subscription breaks.
    async fn subscribe(&self, filters: Vec<String>) -> Result<BoxStream<'static, Result<Event>>>;
    /// Kills shims containerd lost for one of the containers `ids`
    /// (blocking: reads `/proc`).
    fn kill_lost_shims(&self, ids: &[String]) -> usize;
}

/// The pod network: CNI and pinned network namespaces.
#[async_trait]
pub trait Network: Send + Sync {
    /// The pod network configured now.
    fn load(
        &self,
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
    ) -> std::result::Result<NetworkConfig, NotReady>;
    /// CNI ADD; returns the pod's IPs.
    async fn add(&self, net: &NetworkConfig, att: &Attachment) -> Result<Vec<IpAddr>>;
    /// CNI DEL.
    async fn del(&self, net: &NetworkConfig, att: &Attachment) -> Result<()>;
    /// Creates and pins the network namespace `dir/name`.
    async fn netns_create(&self, dir: &Path, name: &str) -> Result<PathBuf>;
    /// Unpins and removes a pinned namespace (network, IPC or UTS);
    /// absent is fine.
    async fn netns_remove(&self, path: &Path) -> Result<()>;
    /// Pins the network namespace of process `pid` at `dir/name` (a pod's
    /// whose pause made it in its user namespace).
    async fn netns_pin_pid(&self, dir: &Path, name: &str, pid: u32) -> Result<PathBuf>;
    /// Whether `path` is a pinned namespace.
    fn netns_is_pinned(&self, path: &Path) -> bool;
    /// Creates the IPC and UTS namespaces `plan` asks for, with its
    /// hostname and sysctls set inside, pinned at `dir/<name>.{ipc,uts}`;
    /// nothing is left when it fails.
    async fn pin_namespaces(&self, dir: &Path, name: &str, plan: &PinPlan) -> Result<Pins>;
    /// Writes `net.*` sysctls inside the network namespace at `netns`.
    async fn net_sysctls(&self, netns: &Path, sysctls: &[(String, String)]) -> Result<()>;
    /// `/proc/net/dev` as seen in the network namespace at `netns`.
    async fn net_dev(&self, netns: &Path) -> Result<Option<String>>;
    /// Kills the CNI plugins a previous daemon left running for the pods
    /// `ids` (blocking: reads `/proc`); returns how many.
    fn kill_lost_plugins(&self, ids: &[String]) -> usize;
}

/// The image store.
#[async_trait]
pub trait ImageStore: Send + Sync {
    async fn find(&self, query: &Query) -> Result<Option<CriImage>>;
    /// The image's config, as JSON.
    async fn config(&self, image: &CriImage) -> Result<serde_json::Value>;
    /// Unpacks the image's layers into `snapshotter` unless they are there.
    async fn ensure_unpacked(&self, image: &CriImage, snapshotter: &str) -> Result<()>;
    async fn pull(&self, config: &ImagesConfig, snapshotter: &str, name: &str) -> Result<CriImage>;
    /// Builds the built-in image `name` of `files` unless it exists.
    async fn ensure_builtin(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        name: &str,
        files: &[crius_image::File<'_>],
        entrypoint: &[&str],
    ) -> Result<CriImage>;
}

/// What a container's spec needs of the host's file system, read off the
/// async workers.
#[derive(Debug, Clone, Default)]
pub struct HostLookup {
    pub device_nodes: BTreeMap<String, Vec<HostDevice>>,
    pub host_paths: BTreeMap<String, HostPath>,
    /// Every device of the host (privileged containers only).
    pub host_devices: Vec<HostDevice>,
}

/// The host's file system as `pod` changes it: pod directories, their
/// files and `/dev/shm` mounts, container directories, the rootfs reader,
/// host paths and devices. Blocking: call from [`crius_rt::blocking`] where
/// the work may be slow.
pub trait HostFs: Send + Sync {
    /// Creates a directory (0711) and its parents.
    fn create_dir(&self, dir: &Path) -> Result<()>;
    /// Writes a file atomically (temporary file, fsync, rename).
    fn write_atomic(&self, path: &Path, data: &[u8], mode: u32) -> Result<()>;
    /// A file's contents; `None` when it cannot be read.
    fn read(&self, path: &Path) -> Option<Vec<u8>>;
    /// A small host file's text (a localhost seccomp profile, the loaded
    /// AppArmor profiles, a cgroup file), with why it cannot be read.
    fn read_text(&self, path: &Path) -> std::io::Result<String>;
    /// The names in a directory (none when it cannot be read).
    fn dir_names(&self, dir: &Path) -> Vec<String>;
    /// Mounts a fresh tmpfs at `dir/shm`; returns its path.
    fn mount_shm(&self, dir: &Path) -> Result<PathBuf>;
    /// Removes a pod directory, its `/dev/shm` unmounted first.
    fn remove_pod_dir(&self, dir: &Path) -> Result<()>;
    /// Removes a tree (with `unmount`, everything mounted at or below it is
    /// unmounted first); absent is fine.
    fn remove_tree(&self, path: &Path, unmount: bool) -> Result<()>;
    /// The node's host name.
    fn node_hostname(&self) -> String;
    /// Copies the file `from` to a new file `to` (0600); `Ok(false)` when
    /// `from` does not exist.
    fn copy_file(&self, from: &Path, to: &Path) -> Result<bool>;
    /// Writes the tree `dir` as an uncompressed tar to `dest` (0600, its
    /// missing parents made): all of it or nothing (a temporary file,
    /// fsynced, renamed over `dest`). Returns the archive's size.
    fn write_archive(&self, dir: &Path, dest: &Path) -> Result<u64>;
    /// `/etc/passwd` and `/etc/group` of the rootfs `mounts` describe, with
    /// each image volume's content copied to its host directory.
    fn read_rootfs(
        &self,
        mounts: &[Mount],
        scratch: &Path,
        volumes: &[(String, PathBuf)],
    ) -> Result<(Option<String>, Option<String>)>;
    /// Whether something is mounted at `path`.
    fn mounted(&self, path: &Path) -> bool;
    /// Mounts an image view (`mounts`) read-only at `dir`; the host path of
    /// its directory `sub_path` (`InvalidArgument` for `image_sub_path`
    /// when the image has none there).
    fn mount_image_volume(&self, mounts: &[Mount], dir: &Path, sub_path: &str) -> Result<PathBuf>;
    /// Mounts at `target` (made here: a directory, or a file for a file) an
    /// idmapped clone of the mount holding `source`, through the mappings
    /// of the user namespace `userns`; `Ok(false)`, with nothing made, when
    /// `source` is missing or its file system cannot be idmapped.
    fn idmapped_bind(&self, source: &Path, userns: &Path, target: &Path) -> Result<bool>;
    /// Unmounts and removes each entry of `dir`, then `dir`; never deletes
    /// recursively (what is still mounted stays, with an error).
    fn remove_mount_points(&self, dir: &Path) -> Result<()>;
    /// Shifts the owner of every file of the writable snapshot `mounts`
    /// describe (mounted at `scratch` meanwhile) into `maps`' host range.
    fn remap_ids(
        &self,
        mounts: &[Mount],
        scratch: &Path,
        maps: &crius_core::userns::IdMaps,
    ) -> Result<()>;
    /// The CDI spec files (`*.json`, `*.yaml`, `*.yml`) of `dirs`, each
    /// with the index of its directory, by name within one; unreadable
    /// ones are skipped.
    fn cdi_specs(&self, dirs: &[PathBuf]) -> Vec<(usize, PathBuf, String)>;
    /// The character or block device at `path` (symlinks resolved).
    fn device_at(&self, path: &Path) -> Option<HostDevice>;
    /// The device nodes, resolved host paths (created when missing) and,
    /// with `all_devices`, every host device a container's spec needs.
    fn host_lookup(
        &self,
        devices: &[Device],
        paths: &[String],
        all_devices: bool,
    ) -> Result<HostLookup>;
}

/// The OCI runtimes the shims run (runc and its kin), as they describe
/// themselves.
#[async_trait]
pub trait OciRuntimes: Send + Sync {
    /// What `binary` says it supports (`<binary> features`), asked once
    /// and remembered; `None` when it cannot say (absent, too old, no
    /// answer), asked again next time.
    async fn features(&self, binary: &str) -> Option<crius_core::runtime::OciFeatures>;
    /// The version of the CRIU on the `PATH` (runc checkpoints with it), as
    /// `major * 10000 + minor * 100 + patch`; `None` when there is none.
    async fn criu_version(&self) -> Option<u32>;
}
