//! ContainerStatus, ListContainers, UpdateContainerResources,
//! ReopenContainerLog.

use crius_core::filter::Selector;
use crius_core::{Error, Result};

use super::{ContainerFilter, ContainerMeta, ContainerState, ContainerStatus, Containers};

impl Containers {
    /// A container's metadata and status.
    pub fn container_status(&self, id: &str) -> Result<(ContainerMeta, ContainerStatus)> {
        let c = self.find_container(id)?;
        Ok((c.meta_now(), c.status()))
    }

    /// Containers matching `filter`, oldest first.
    pub fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Vec<(ContainerMeta, ContainerStatus)> {
        let mut out: Vec<_> = self
            .containers
            .all()
            .into_iter()
            .filter(|c| {
                Selector::new(&filter.id, &filter.label_selector)
                    .in_sandbox(&filter.sandbox_id)
                    .matches(&c.meta.id, &c.meta.sandbox_id, &c.meta.labels)
            })
            .filter(|c| filter.state.is_none_or(|s| c.status().state == s))
            .map(|c| (c.meta_now(), c.status()))
            .collect();
        out.sort_by_key(|(m, _)| m.created_at);
        out
    }

    /// Whether `id`'s task runs now.
    async fn task_running(&self, id: &str) -> bool {
        matches!(
            self.containerd.task_get(id).await,
            Ok(Some(t)) if t.status == crius_containerd::TaskStatus::Running
        )
    }

    /// In-place resize, as containerd does it: the new resources merged
    /// into the container's spec (a created container starts with them, a
    /// stopped one keeps them on record) and, while it runs, applied to its
    /// task; a task that refuses them puts the old spec back.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: &crius_core::container::ContainerResources,
    ) -> Result<()> {
        let c = self.find_container(id)?;
        let _op = c.op.lock().await;
        // Removed while this waited for the lock.
        let c = self.find_container(&c.meta.id)?;
        let record = self
            .containerd
            .container_get(&c.meta.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("container {}", c.meta.id)))?;
        let spec = crius_core::container::resized(&record.spec, resources, &self.host)?;
        self.containerd
            .container_set_spec(&c.meta.id, &spec)
            .await?;
        let running = c.status().state == ContainerState::Running;
        if let Err(e) = self.update_task(&c.meta.id, &spec, running).await {
            if let Err(undo) = self
                .containerd
                .container_set_spec(&c.meta.id, &record.spec)
                .await
            {
                tracing::warn!(container = %c.meta.id, "cannot put the old spec back: {undo}");
            }
            return Err(e);
        }
        c.set_resources(crius_core::container::resources_in_force(&spec));
        tracing::info!(container = %c.meta.id, "resources updated");
        Ok(())
    }

    /// Applies a spec's resources to the task when it runs; a task that
    /// ended on the way is fine (the spec holds them for the record).
    async fn update_task(
        &self,
        id: &str,
        spec: &oci_spec::runtime::Spec,
        running: bool,
    ) -> Result<()> {
        if !running {
            return Ok(());
        }
        let r = crius_core::container::task_resources(spec);
        match self
            .containerd
            .task_update_resources(id, &r, &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            // The update raced the container's end ("cannot update a
            // deleted process"), as containerd lets it.
            Err(_) if !self.task_running(id).await => Ok(()),
            // A running task whose runtime refused the values (runc: a
            // cpuset the kernel does not take, a memory limit below what
            // it uses): what the client sent, as containerd passes them
            // on unchecked too.
            Err(e) => Err(Error::invalid(
                "linux",
                format!("the runtime refused these resources: {e}"),
            )),
        }
    }

    /// Reopens a running container's log file (after kubelet rotated it).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let c = self.find_container(id)?;
        if c.status().state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.meta.id
            )));
        }
        match c.log() {
            Some(log) => log.reopen().await,
            // A container without a log file has nothing to reopen (as
            // containerd: its output goes nowhere).
            None => Ok(()),
        }
    }
}
