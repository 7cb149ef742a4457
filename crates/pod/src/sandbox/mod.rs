//! Pod sandboxes: RunPodSandbox ([`run`]), StopPodSandbox ([`stop`]),
//! RemovePodSandbox ([`remove`]), PodSandboxStatus and ListPodSandbox
//! ([`status`]), UpdatePodSandboxResources ([`update`]), served by [`Sandboxes`] over the shared [`Ctx`].
//!
//! A run goes: validate → reserve the name → pod directory and intent record
//! → network namespace → CNI ADD → `/etc` files and `/dev/shm` → OCI spec →
//! a read-only view of the sandbox image → containerd container → pause
//! task. It runs in a task of its own, so a client that gives up does not
//! cut it short; a failure undoes every step done, in reverse.

mod remove;
mod run;
mod status;
mod stop;
mod update;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crius_core::Result;
use crius_core::config::Config;
use crius_core::runtime::{PodTraits, Selection};
use crius_core::sandbox::{self, ImageProcess, NamespaceMode, PodSandboxRequest, SandboxState};
use crius_network::exec::{Attachment, PortMapping, RuntimeConfig};
use sha2::{Digest as _, Sha256};

use crate::container::Containers;
use crate::ctx::Ctx;
use crate::meta::SandboxMeta;
use crate::now_ns;

/// The pod sandboxes: their lifecycle over containerd, CNI and the pods'
/// files. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sandboxes {
    pub(crate) ctx: Arc<Ctx>,
    /// A pod's stop and removal take its containers along.
    pub(crate) container_ops: Containers,
}

/// The operations read the shared ports, directories and indexes as if
/// they were the service's own.
impl std::ops::Deref for Sandboxes {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

/// Filters of `ListPodSandbox`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub id: String,
    pub state: Option<SandboxState>,
    pub label_selector: BTreeMap<String, String>,
}

/// What `PodSandboxStatus` reports.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub meta: SandboxMeta,
    pub state: SandboxState,
    pub pid: Option<u32>,
    /// The OCI spec containerd holds (verbose status).
    pub spec: Option<serde_json::Value>,
    /// The pod's size as UpdatePodSandboxResources last recorded it.
    pub resources: Option<crate::meta::PodResources>,
}

impl SandboxStatus {
    /// `sandbox` as it is now in memory, with `spec` (verbose status).
    pub(crate) fn of(sandbox: &crate::store::Sandbox, spec: Option<serde_json::Value>) -> Self {
        SandboxStatus {
            meta: sandbox.meta.clone(),
            state: sandbox.state(),
            pid: sandbox.pid(),
            spec,
            resources: sandbox.resources(),
        }
    }
}

pub(crate) fn random_id() -> String {
    let mut seed = [0u8; 32];
    // The kernel's randomness; the time and a counter would do, but need not.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .is_err()
    {
        let t = now_ns().to_le_bytes();
        seed[..8].copy_from_slice(&t);
    }
    sandbox::id::new_id(seed)
}

/// Identifies a request, so an identical retry is recognized.
fn fingerprint(req: &PodSandboxRequest) -> String {
    fingerprint_of(&format!("{req:?}"))
}

pub(crate) fn fingerprint_of(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// The runtime a pod runs on (see [`crius_core::runtime::select`]).
pub(crate) fn select_runtime(config: &Config, req: &PodSandboxRequest) -> Result<Selection> {
    let ns = req.linux.namespaces;
    let privileged = req.linux.privileged
        || ns.network == NamespaceMode::Node
        || ns.pid == NamespaceMode::Node
        || ns.ipc == NamespaceMode::Node;
    let untrusted = req
        .annotations
        .get(crius_core::runtime::UNTRUSTED_WORKLOAD)
        .is_some_and(|v| v == "true");
    crius_core::runtime::select(
        config,
        PodTraits {
            requested: &req.runtime_handler,
            privileged,
            untrusted,
        },
    )
}

/// The process the pause image runs, from its config.
fn image_process(config: &serde_json::Value) -> ImageProcess {
    let c = crate::container::image_config(config);
    ImageProcess {
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        env: c.env,
        working_dir: c.working_dir,
        user: c.user,
    }
}

fn port_mappings(req: &PodSandboxRequest) -> Vec<PortMapping> {
    req.port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| PortMapping {
            host_port: p.host_port as u16,
            container_port: p.container_port as u16,
            protocol: p.protocol.to_string().to_lowercase(),
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

pub(crate) fn attachment(meta: &SandboxMeta, netns: &Path) -> Attachment {
    Attachment {
        container_id: meta.id.clone(),
        netns: netns.to_path_buf(),
        ifname: "eth0".to_string(),
        args: Attachment::kubernetes_args(&meta.namespace, &meta.name, &meta.uid, &meta.id),
        capabilities: RuntimeConfig {
            port_mappings: meta
                .port_mappings
                .iter()
                .map(|p| PortMapping {
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
        },
    }
}
