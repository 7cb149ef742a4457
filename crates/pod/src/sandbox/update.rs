//! UpdatePodSandboxResources: the pod's new size (the sum of its
//! containers' resources and its overhead, after an in-place resize),
//! recorded on the sandbox's record and, for a VM runtime, handed to its
//! shim. Container limits are UpdateContainerResources' work, so a runc
//! pod has nothing else to change (containerd 2 too only records them).

use std::collections::HashMap;

use crius_core::config::is_runc_family;
use crius_core::sandbox::SandboxState;
use crius_core::{Error, Result};

use super::Sandboxes;
use crate::meta::{self, PodResources};
use crate::store::Sandbox;

impl Sandboxes {
    /// Records the pod's new size; a VM runtime's sandbox task gets it
    /// too, with the `sandbox-cpu-*`/`sandbox-memory` annotations it
    /// sized the VM by at RunPodSandbox.
    pub async fn update_resources(&self, id: &str, update: PodResources) -> Result<()> {
        let sandbox = self
            .store
            .find(id)?
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id}")))?;
        let _op = sandbox.op.lock().await;
        if self.sizes_its_vm(&sandbox) {
            self.update_sandbox_task(&sandbox, &update).await?;
        }
        let any = crate::meta::to_any(meta::RESOURCES_TYPE_URL, &update)?;
        self.containerd
            .container_set_extension(id, meta::RESOURCES_EXTENSION, any)
            .await?;
        sandbox.set_resources(update);
        tracing::info!(sandbox = id, ?update, "pod resources updated");
        Ok(())
    }

    /// A ready pod on a VM runtime (not the runc family) has a sandbox
    /// task whose shim sizes the VM.
    fn sizes_its_vm(&self, sandbox: &Sandbox) -> bool {
        !is_runc_family(&sandbox.meta.runtime_type)
            && sandbox.meta.pinned.is_none()
            && sandbox.state() == SandboxState::Ready
    }

    async fn update_sandbox_task(&self, sandbox: &Sandbox, update: &PodResources) -> Result<()> {
        let Some(r) = update.resources else {
            return Ok(());
        };
        let linux = crius_core::container::linux_resources(&r.as_container(), &self.host)?;
        let annotations: HashMap<String, String> =
            crius_core::sandbox::annotations::resource_annotations(&r)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        // A task gone on the way is the pod's end: nothing to size.
        self.containerd
            .task_update_resources(&sandbox.meta.id, &linux, &annotations)
            .await
            .map(drop)
    }
}
