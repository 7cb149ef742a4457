//! ContainerStatus, ListContainers, UpdateContainerResources,
//! ReopenContainerLog.

use crate::ports::Found;
use crius_core::filter::Selector;
use crius_core::{Error, Result};

use super::{ContainerFilter, ContainerMeta, ContainerState, ContainerStatus, Containers};

impl Containers {
    /// A container's metadata and status.
    pub fn container_status(&self, id: &str) -> Result<(ContainerMeta, ContainerStatus)> {
        let c = self.find_container(id)?;
        Ok((c.meta.clone(), c.status()))
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
            .map(|c| (c.meta.clone(), c.status()))
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

    /// Applies new resources to a running container, through its runtime.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: &crius_core::container::ContainerResources,
    ) -> Result<()> {
        let c = self.find_container(id)?;
        let r = crius_core::container::linux_resources(resources, &self.host)?;
        let not_running =
            || Error::FailedPrecondition(format!("container {} is not running", c.meta.id));
        match self.containerd.task_update_resources(&c.meta.id, &r).await {
            Ok(Found::Here(())) => Ok(()),
            Ok(Found::Gone) => Err(not_running()),
            // The update raced the container's end ("cannot update a
            // deleted process"): the client's precondition.
            Err(_) if !self.task_running(&c.meta.id).await => Err(not_running()),
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
