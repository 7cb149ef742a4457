//! The real adapters behind [`crate::ports`]: containerd, CNI, the image
//! store and the host's file system. Each method is the adapter call it
//! names, nothing more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crius_containerd::{ContainerRecord, Event, Mount, Stdio, TaskExit, TaskInfo, Usage};
use crius_core::config::ImagesConfig;
use crius_core::container::Device;
use crius_core::image::CriImage;
use crius_core::{Error, Result};
use crius_image::{Images, Query};
use crius_network::cni::{NetworkConfig, NotReady};
use crius_network::exec::{Attachment, Cni};
use crius_network::pins::{PinPlan, Pins};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::ports::{self, Found, HostLookup, Made};

/// containerd, over one namespaced connection.
#[derive(Clone)]
pub struct Containerd(pub crius_containerd::Containerd);

#[async_trait]
impl ports::Containers for Containerd {
    async fn container_create(&self, record: &ContainerRecord) -> Result<()> {
        self.0
            .container_create(record)
            .await
            .map(drop)
            .map_err(Error::from)
    }
    async fn container_get(&self, id: &str) -> Result<Option<ContainerRecord>> {
        self.0.container_get(id).await.map_err(Error::from)
    }
    async fn container_list(&self, filters: &[String]) -> Result<Vec<ContainerRecord>> {
        self.0.container_list(filters).await.map_err(Error::from)
    }
    async fn container_set_extension(
        &self,
        id: &str,
        name: &str,
        value: prost_types::Any,
    ) -> Result<()> {
        self.0
            .container_set_extension(id, name, value)
            .await
            .map_err(Error::from)
    }
    async fn container_set_spec(&self, id: &str, spec: &oci_spec::runtime::Spec) -> Result<()> {
        self.0
            .container_set_spec(id, spec)
            .await
            .map_err(Error::from)
    }
    async fn container_delete(&self, id: &str) -> Result<()> {
        self.0.container_delete(id).await.map_err(Error::from)
    }
}

#[async_trait]
impl ports::Tasks for Containerd {
    async fn task_create(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        stdio: &Stdio,
        runtime_path: &str,
    ) -> Result<u32> {
        self.0
            .task_create_with(id, rootfs, stdio, runtime_path)
            .await
            .map_err(Error::from)
    }
    async fn task_start(&self, id: &str) -> Result<u32> {
        self.0.task_start(id).await.map_err(Error::from)
    }
    async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<Found<()>> {
        found(self.0.task_kill(id, signal, all).await)
    }
    async fn task_delete(&self, id: &str) -> Result<Option<TaskExit>> {
        self.0.task_delete(id).await.map_err(Error::from)
    }
    async fn task_get(&self, id: &str) -> Result<Option<TaskInfo>> {
        self.0.task_get(id).await.map_err(Error::from)
    }
    async fn task_wait(&self, id: &str) -> Result<Found<TaskExit>> {
        found(self.0.task_wait(id).await)
    }
    async fn task_update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
        annotations: &HashMap<String, String>,
    ) -> Result<Found<()>> {
        found(self.0.task_update(id, resources, annotations).await)
    }
    async fn exec_create(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &Stdio,
    ) -> Result<()> {
        self.0
            .exec_create(id, exec_id, process, stdio)
            .await
            .map_err(Error::from)
    }
    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32> {
        self.0.exec_start(id, exec_id).await.map_err(Error::from)
    }
    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<TaskExit> {
        self.0
            .task_wait_exec(id, exec_id)
            .await
            .map_err(Error::from)
    }
    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        self.0
            .exec_kill(id, exec_id, signal)
            .await
            .map_err(Error::from)
    }
    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<Option<TaskExit>> {
        self.0.exec_delete(id, exec_id).await.map_err(Error::from)
    }
    async fn exec_resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        self.0
            .task_resize_pty(id, exec_id, width, height)
            .await
            .map_err(Error::from)
    }
    async fn exec_close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        self.0
            .task_close_stdin(id, exec_id)
            .await
            .map_err(Error::from)
    }
}

/// A task's NotFound is [`Found::Gone`]; every other failure is crius'
/// error for it.
fn found<T>(answer: crius_containerd::Result<T>) -> Result<Found<T>> {
    match answer {
        Ok(v) => Ok(Found::Here(v)),
        Err(e) if e.is_not_found() => Ok(Found::Gone),
        Err(e) => Err(e.into()),
    }
}

/// containerd answers NotFound for a new key only when its parent is
/// missing ("parent snapshot … does not exist"): then the image is to be
/// unpacked; every other answer is what it is.
fn made_on(parent: Option<&str>, made: crius_containerd::Result<Vec<Mount>>) -> Result<Made> {
    match made {
        Ok(mounts) => Ok(Made::Mounts(mounts)),
        Err(e) if e.is_not_found() && parent.is_some() => Ok(Made::ParentMissing),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl ports::Snapshots for Containerd {
    async fn snapshot_prepare(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Made> {
        let made = self
            .0
            .snapshot_prepare(snapshotter, key, parent, HashMap::new())
            .await;
        made_on(parent, made)
    }
    async fn snapshot_view(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Made> {
        let made = self
            .0
            .snapshot_view(snapshotter, key, parent, HashMap::new())
            .await;
        made_on(parent, made)
    }
    async fn snapshot_mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
        self.0
            .snapshot_mounts(snapshotter, key)
            .await
            .map_err(Error::from)
    }
    async fn snapshot_remove(&self, snapshotter: &str, key: &str) -> Result<()> {
        self.0
            .snapshot_remove(snapshotter, key)
            .await
            .map_err(Error::from)
    }
    async fn snapshot_commit(&self, snapshotter: &str, name: &str, key: &str) -> Result<bool> {
        match self
            .0
            .snapshot_commit(snapshotter, name, key, HashMap::new())
            .await
            .map_err(Error::from)
        {
            Ok(()) => Ok(true),
            Err(Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    async fn snapshot_exists(&self, snapshotter: &str, key: &str) -> Result<bool> {
        Ok(self
            .0
            .snapshot_stat(snapshotter, key)
            .await
            .map_err(Error::from)?
            .is_some())
    }
    async fn snapshot_usage(&self, snapshotter: &str, key: &str) -> Result<Option<Usage>> {
        self.0
            .snapshot_usage(snapshotter, key)
            .await
            .map_err(Error::from)
    }
}

#[async_trait]
impl ports::Checkpoints for Containerd {
    async fn task_pause(&self, id: &str) -> Result<()> {
        self.0.task_pause(id).await.map_err(Error::from)
    }
    async fn task_resume(&self, id: &str) -> Result<()> {
        self.0.task_resume(id).await.map_err(Error::from)
    }
    async fn task_checkpoint(&self, id: &str, image_dir: &Path, work_dir: &Path) -> Result<()> {
        self.0
            .task_checkpoint(id, image_dir, work_dir)
            .await
            .map_err(Error::from)
    }
    async fn snapshot_parent(&self, snapshotter: &str, key: &str) -> Result<Option<String>> {
        let info = self.0.snapshot_stat(snapshotter, key).await;
        Ok(info.map_err(Error::from)?.and_then(|i| i.parent))
    }
    async fn diff_to_file(&self, lower: Vec<Mount>, upper: Vec<Mount>, dest: &Path) -> Result<u64> {
        self.0
            .diff_to_file(lower, upper, dest)
            .await
            .map_err(Error::from)
    }
}

#[async_trait]
impl ports::Leases for Containerd {
    async fn lease_create(&self, id: &str, expire: Duration) -> Result<()> {
        self.0.lease_create(id, expire).await.map_err(Error::from)
    }
    async fn lease_delete(&self, id: &str) -> Result<()> {
        self.0.lease_delete(id).await.map_err(Error::from)
    }
    async fn lease_list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        self.0.lease_list_prefix(prefix).await.map_err(Error::from)
    }
}

#[async_trait]
impl ports::Containerd for Containerd {
    fn with_lease(&self, id: &str) -> Arc<dyn ports::Containerd> {
        Arc::new(Containerd(self.0.with_lease(id)))
    }
    async fn subscribe(&self, filters: Vec<String>) -> Result<BoxStream<'static, Result<Event>>> {
        let events = self.0.events_subscribe(filters).await?;
        Ok(events.map(|e| e.map_err(Error::from)).boxed())
    }
    fn kill_lost_shims(&self, ids: &[String]) -> usize {
        self.0.kill_lost_shims(ids)
    }
}

/// CNI plugins and `crius_network::netns`.
pub struct Network(pub Cni);

#[async_trait]
impl ports::Network for Network {
    fn load(
        &self,
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
    ) -> std::result::Result<NetworkConfig, NotReady> {
        crius_network::cni::load(conf_dir, bin_dirs)
    }
    async fn add(&self, net: &NetworkConfig, att: &Attachment) -> Result<Vec<IpAddr>> {
        Ok(self.0.add(net, att).await?.pod_ips())
    }
    async fn del(&self, net: &NetworkConfig, att: &Attachment) -> Result<()> {
        Ok(self.0.del(net, att).await?)
    }
    async fn netns_create(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let (dir, name) = (dir.to_path_buf(), name.to_string());
        crius_rt::blocking("netns task", move || {
            crius_network::netns::create(&dir, &name)
        })
        .await
    }
    async fn netns_remove(&self, path: &Path) -> Result<()> {
        let path = path.to_path_buf();
        crius_rt::blocking("netns task", move || crius_network::netns::remove(&path)).await
    }
    async fn netns_pin_pid(&self, dir: &Path, name: &str, pid: u32) -> Result<PathBuf> {
        let (dir, name) = (dir.to_path_buf(), name.to_string());
        crius_rt::blocking("netns task", move || {
            crius_network::netns::pin_pid(&dir, &name, pid)
        })
        .await
    }
    fn netns_is_pinned(&self, path: &Path) -> bool {
        crius_network::netns::is_pinned(path)
    }
    async fn pin_namespaces(&self, dir: &Path, name: &str, plan: &PinPlan) -> Result<Pins> {
        let (dir, name, plan) = (dir.to_path_buf(), name.to_string(), plan.clone());
        crius_rt::blocking("namespace pinning task", move || {
            crius_network::pins::pin(&dir, &name, &plan)
        })
        .await
    }
    async fn net_sysctls(&self, netns: &Path, sysctls: &[(String, String)]) -> Result<()> {
        if sysctls.is_empty() {
            return Ok(());
        }
        let (netns, sysctls) = (netns.to_path_buf(), sysctls.to_vec());
        crius_rt::blocking("sysctl task", move || {
            crius_network::pins::net_sysctls(&netns, &sysctls)
        })
        .await
    }
    fn kill_lost_plugins(&self, ids: &[String]) -> usize {
        crius_network::exec::kill_lost_plugins(ids)
    }
    async fn net_dev(&self, netns: &Path) -> Result<Option<String>> {
        let netns = netns.to_path_buf();
        crius_rt::blocking("stats task", move || {
            crius_network::pins::read_in_netns(&netns, Path::new("/proc/thread-self/net/dev"))
        })
        .await
    }
}

/// The image store of `crius_image`.
pub struct ImageStore(pub Arc<Images>);

#[async_trait]
impl ports::ImageStore for ImageStore {
    async fn find(&self, query: &Query) -> Result<Option<CriImage>> {
        self.0.find(query).await
    }
    async fn config(&self, image: &CriImage) -> Result<serde_json::Value> {
        self.0.config(image).await
    }
    async fn ensure_unpacked(&self, image: &CriImage, snapshotter: &str) -> Result<()> {
        self.0.ensure_unpacked(image, snapshotter).await.map(drop)
    }
    async fn pull(&self, config: &ImagesConfig, snapshotter: &str, name: &str) -> Result<CriImage> {
        self.0.pull(config, snapshotter, name, None).await
    }
    async fn ensure_builtin(
        &self,
        config: &ImagesConfig,
        snapshotter: &str,
        name: &str,
        files: &[crius_image::File<'_>],
        entrypoint: &[&str],
    ) -> Result<CriImage> {
        self.0
            .ensure_builtin(config, snapshotter, name, files, entrypoint)
            .await
    }
}

/// The host's own file system.
pub struct HostFs;

impl ports::HostFs for HostFs {
    fn create_dir(&self, dir: &Path) -> Result<()> {
        crate::podfs::create_dir(dir)
    }
    fn write_atomic(&self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        crate::podfs::write_atomic(path, data, mode)
    }
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }
    fn read_text(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn dir_names(&self, dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn mount_shm(&self, dir: &Path) -> Result<PathBuf> {
        crate::podfs::mount_shm(dir)
    }
    fn remove_pod_dir(&self, dir: &Path) -> Result<()> {
        crate::podfs::remove_dir(dir)
    }
    fn copy_file(&self, from: &Path, to: &Path) -> Result<bool> {
        crate::archive::copy_file(from, to)
    }
    fn write_archive(&self, dir: &Path, dest: &Path) -> Result<u64> {
        crate::archive::write_archive(dir, dest)
    }
    fn remove_tree(&self, path: &Path, unmount: bool) -> Result<()> {
        if unmount {
            // Everything mounted at or below it (image volumes), deepest
            // first; nothing mounted is the usual case. mountinfo names
            // mounts by their real paths.
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let path = real.as_path();
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let points = crate::host::mounts_under(&info, &path.display().to_string());
            for point in points {
                let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
            // Never delete through a mount (a volume's files would go).
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            if let Some(left) =
                crate::host::mounts_under(&info, &path.display().to_string()).first()
            {
                return Err(Error::FailedPrecondition(format!(
                    "{left} is still mounted: {} is not removed",
                    path.display()
                )));
            }
        }
        match std::fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
    fn node_hostname(&self) -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string())
    }
    fn read_rootfs(
        &self,
        mounts: &[Mount],
        scratch: &Path,
        volumes: &[(String, PathBuf)],
    ) -> Result<(Option<String>, Option<String>)> {
        crate::rootfs::read_etc(mounts, scratch, volumes)
    }
    fn mounted(&self, path: &Path) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let path = path.display().to_string();
        crate::host::mounts_under(&info, &path).contains(&path)
    }
    fn remap_ids(
        &self,
        mounts: &[Mount],
        scratch: &Path,
        maps: &crius_core::userns::IdMaps,
    ) -> Result<()> {
        crate::rootfs::remap_ids(mounts, scratch, maps)
    }
    fn idmapped_bind(&self, source: &Path, userns: &Path, target: &Path) -> Result<bool> {
        crate::podfs::idmapped_bind(source, userns, target)
    }
    fn remove_mount_points(&self, dir: &Path) -> Result<()> {
        crate::podfs::remove_mount_points(dir)
    }
    fn mount_image_volume(&self, mounts: &[Mount], dir: &Path, sub_path: &str) -> Result<PathBuf> {
        crate::rootfs::mount_image_volume(mounts, dir, sub_path)
    }
    fn cdi_specs(&self, dirs: &[PathBuf]) -> Vec<(usize, PathBuf, String)> {
        crate::host::cdi_specs(dirs)
    }
    fn device_at(&self, path: &Path) -> Option<crius_core::container::HostDevice> {
        let real = std::fs::canonicalize(path).ok()?;
        crate::host::device_at(&real)
    }
    fn host_lookup(
        &self,
        devices: &[Device],
        paths: &[String],
        all_devices: bool,
    ) -> Result<HostLookup> {
        // Devices before mount paths: a refused device must not leave
        // created host directories behind.
        let device_nodes = crate::host::device_nodes(devices)?;
        let host_paths = crate::host::host_paths(paths)?;
        let host_devices = if all_devices {
            crate::host::host_devices()
        } else {
            vec![]
        };
        Ok(HostLookup {
            device_nodes,
            host_paths,
            host_devices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_containerd::Error as Containerd;

    fn missing<T>() -> crius_containerd::Result<T> {
        Err(Containerd::Missing {
            what: "parent snapshot sha256:ab".into(),
        })
    }

    #[test]
    fn only_a_not_found_on_a_parent_means_the_image_is_to_be_unpacked() {
        assert!(matches!(
            made_on(Some("sha256:ab"), missing()),
            Ok(Made::ParentMissing)
        ));
        assert!(matches!(
            made_on(None, missing()),
            Err(Error::NotFound { .. })
        ));
        let refused = Err(Containerd::Precondition("snapshot busy".into()));
        assert!(matches!(
            made_on(Some("sha256:ab"), refused),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            made_on(Some("sha256:ab"), Ok(vec![])),
            Ok(Made::Mounts(m)) if m.is_empty()
        ));
    }

    #[test]
    fn only_a_not_found_means_the_task_is_gone() {
        assert!(matches!(found::<()>(missing()), Ok(Found::Gone)));
        assert!(matches!(found(Ok(7)), Ok(Found::Here(7))));
        let down = Err::<(), _>(Containerd::StreamEnded("shim connection closed".into()));
        assert!(matches!(found(down), Err(Error::Unavailable(_))));
    }
}
