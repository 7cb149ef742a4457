//! `runtime.v1.RuntimeService`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::{Error, RUNTIME_NAME, RUNTIME_VERSION};
use crius_cri_api::CRI_API_VERSION;
use crius_cri_api::v1::{self, runtime_service_server::RuntimeService};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::edge::{not_yet, respond};
use crate::state::State;
use crius_core::sandbox::SandboxState;
use crius_pod::container::{ContainerFilter, ContainerState};
use crius_pod::{ListFilter, SandboxMeta, now_ns};

use crate::convert_container;

/// The CRI version of the kubelet API crius answers `Version` with
/// (containerd's CRI plugin answers the same).
const KUBELET_API_VERSION: &str = "0.1.0";
/// How long `Status` waits for containerd before calling it not ready.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The runtime service.
pub struct RuntimeSvc {
    state: Arc<State>,
}

impl RuntimeSvc {
    pub fn new(state: Arc<State>) -> Self {
        RuntimeSvc { state }
    }

    /// CRI stats of a pod, with its containers' writable-layer filesystems.
    async fn pod_stats(
        &self,
        roots: &mut HashMap<String, String>,
        u: &crius_pod::PodUsage,
    ) -> Result<v1::PodSandboxStats, Error> {
        let mut container_roots = Vec::with_capacity(u.containers.len());
        for c in &u.containers {
            container_roots.push(self.snapshotter_root(roots, c).await?);
        }
        Ok(convert_container::pod_sandbox_stats(u, &container_roots))
    }

    /// The root directory of a container's snapshotter (the writable
    /// layer's filesystem), asked once per snapshotter and request.
    async fn snapshotter_root(
        &self,
        roots: &mut HashMap<String, String>,
        u: &crius_pod::ContainerUsage,
    ) -> Result<String, Error> {
        let config = self.state.config();
        let snapshotter = if u.container.meta.snapshotter.is_empty() {
            config.containerd.snapshotter.clone()
        } else {
            u.container.meta.snapshotter.clone()
        };
        if let Some(r) = roots.get(&snapshotter) {
            return Ok(r.clone());
        }
        let root = self
            .state
            .backend()?
            .containerd
            .snapshotter_root(&snapshotter)
            .await?
            .display()
            .to_string();
        roots.insert(snapshotter, root.clone());
        Ok(root)
    }

    fn version(&self) -> v1::VersionResponse {
        v1::VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }
    }

    async fn status(&self, verbose: bool) -> Result<v1::StatusResponse, Error> {
        let config = self.state.config();
        let (runtime, containerd_version) = self.runtime_condition().await;
        let network = match crius_network::cni::load(&config.cni.conf_dir, &config.cni.bin_dirs) {
            Ok(_) => condition("NetworkReady", None),
            Err(e) => condition(
                "NetworkReady",
                Some(("NetworkPluginNotReady", e.to_string())),
            ),
        };
        let info = if verbose {
            self.verbose_info(&config, containerd_version).await?
        } else {
            HashMap::new()
        };
        let features = crius_core::runtime::RUNTIME_FEATURES;
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            runtime_handlers: runtime_handlers(&config),
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: features.supplemental_groups_policy,
            }),
        })
    }

    /// `RuntimeReady`: start-up finished and containerd answers now (then
    /// its version).
    async fn runtime_condition(
        &self,
    ) -> (
        v1::RuntimeCondition,
        Option<crius_containerd::ContainerdVersion>,
    ) {
        let c = match self.state.containerd() {
            Ok(c) => c,
            Err(e) => {
                let failed = condition("RuntimeReady", Some(("CriusStarting", e.to_string())));
                return (failed, None);
            }
        };
        let failure = match tokio::time::timeout(HEALTH_TIMEOUT, c.version()).await {
            Ok(Ok(v)) => return (condition("RuntimeReady", None), Some(v)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "containerd at {} did not answer within {HEALTH_TIMEOUT:?}",
                c.address().display()
            ),
        };
        let failed = condition("RuntimeReady", Some(("ContainerdUnavailable", failure)));
        (failed, None)
    }

    /// `Status` verbose info: JSON documents by key. Secrets in the config
    /// serialize as `<redacted>`.
    async fn verbose_info(
        &self,
        config: &Config,
        containerd_version: Option<crius_containerd::ContainerdVersion>,
    ) -> Result<HashMap<String, String>, Error> {
        let mut info = HashMap::new();
        let config_json =
            serde_json::to_string(config).map_err(|e| Error::Internal(e.to_string()))?;
        info.insert("config".to_string(), config_json);
        let containerd = json!({
            "address": config.containerd.address,
            "namespace": config.containerd.namespace,
            "version": containerd_version.as_ref().map(|v| &v.version),
            "revision": containerd_version.as_ref().map(|v| &v.revision),
        });
        info.insert("containerd".to_string(), containerd.to_string());
        let handlers = self.handlers_info(config).await;
        info.insert("runtimeHandlers".to_string(), handlers.to_string());
        let version = json!({
            "runtimeName": RUNTIME_NAME,
            "runtimeVersion": RUNTIME_VERSION,
            "runtimeApiVersion": CRI_API_VERSION,
        });
        info.insert("version".to_string(), version.to_string());
        info.insert("podCIDR".to_string(), self.state.pod_cidr());
        info.insert(
            "apparmor".to_string(),
            apparmor_info(self.state.apparmor()).to_string(),
        );
        Ok(info)
    }

    /// The configured handlers, with whether containerd finds their shims.
    async fn handlers_info(&self, config: &Config) -> serde_json::Value {
        let mut handlers = Vec::new();
        for (name, h) in &config.runtimes {
            let shim = match self.state.containerd() {
                Ok(c) => c.shim_binary(&h.runtime_type, &h.runtime_path).await,
                Err(_) => None,
            };
            handlers.push(json!({
                "name": name,
                "runtime_type": h.runtime_type,
                "runtime_path": h.runtime_path,
                "options": h.options,
                "privileged": h.privileged,
                "privileged_without_host_devices": h.privileged_without_host_devices,
                "snapshotter": h.snapshotter,
                "sandbox_image": h.sandbox_image,
                "default": *name == config.default_runtime,
                "trusted": *name == config.trusted_runtime,
                "shim_found": shim.is_some(),
                "shim_binary": shim.map(|p| p.display().to_string()),
            }));
        }
        json!({
            "default": config.default_runtime,
            "trusted": config.trusted_runtime,
            "shimPassthrough": config.shim_passthrough,
            "handlers": handlers,
        })
    }
}

/// `Status.runtime_handlers`: the default handler first, under the empty
/// name as kubelet looks it up, then every configured handler; each with
/// what crius supports on it.
fn runtime_handlers(config: &Config) -> Vec<v1::RuntimeHandler> {
    let handler = |name: &str, h: Option<&crius_core::config::RuntimeHandler>| {
        let f = crius_core::runtime::handler_features(h);
        v1::RuntimeHandler {
            name: name.to_string(),
            features: Some(v1::RuntimeHandlerFeatures {
                recursive_read_only_mounts: f.recursive_read_only_mounts,
                user_namespaces: f.user_namespaces,
            }),
        }
    };
    let default = config.runtimes.get(&config.default_runtime);
    std::iter::once(handler("", default))
        .chain(
            config
                .runtimes
                .iter()
                .map(|(name, h)| handler(name, Some(h))),
        )
        .collect()
}

/// What start-up found of AppArmor: on or not, the profile `RuntimeDefault`
/// stands for, and why containers run unconfined if they do.
fn apparmor_info(mode: &crius_core::apparmor::Mode) -> serde_json::Value {
    json!({
        "enabled": mode.enabled(),
        "defaultProfile": mode.default_profile(),
        "unconfinedReason": mode.unconfined_reason(),
    })
}

/// A condition that holds, or not with a (reason, message).
fn condition(kind: &str, failure: Option<(&str, String)>) -> v1::RuntimeCondition {
    match failure {
        None => v1::RuntimeCondition {
            r#type: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Some((reason, message)) => v1::RuntimeCondition {
            r#type: kind.into(),
            status: false,
            reason: reason.into(),
            message,
        },
    }
}

type EventStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeSvc {
    async fn version(
        &self,
        _req: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        respond("Version", async { Ok(RuntimeSvc::version(self)) }).await
    }

    async fn status(
        &self,
        req: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let verbose = req.into_inner().verbose;
        respond("Status", RuntimeSvc::status(self, verbose)).await
    }

    async fn runtime_config(
        &self,
        _req: Request<v1::RuntimeConfigRequest>,
    ) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        respond("RuntimeConfig", async {
            let driver = match self.state.cgroup_driver() {
                CgroupDriver::Cgroupfs => v1::CgroupDriver::Cgroupfs,
                CgroupDriver::Systemd => v1::CgroupDriver::Systemd,
            };
            Ok(v1::RuntimeConfigResponse {
                linux: Some(v1::LinuxRuntimeConfiguration {
                    cgroup_driver: driver as i32,
                }),
            })
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        req: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        let req = req.into_inner();
        respond("UpdateRuntimeConfig", async {
            let cidr = req
                .runtime_config
                .and_then(|c| c.network_config)
                .map(|n| n.pod_cidr)
                .unwrap_or_default();
            if !cidr.is_empty() {
                for part in cidr.split(',') {
                    validate_cidr(part.trim())?;
                }
                tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
                self.state.set_pod_cidr(cidr);
            }
            Ok(v1::UpdateRuntimeConfigResponse {})
        })
        .await
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<v1::RunPodSandboxRequest>,
    ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        respond("RunPodSandbox", async {
            let request = convert::pod_sandbox_request(req.config, req.runtime_handler)?;
            let backend = self.state.backend()?;
            let id = backend
                .pods
                .run(self.state.config(), self.state.cgroup_driver(), request)
                .await?;
            Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id })
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<v1::StopPodSandboxRequest>,
    ) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        respond("StopPodSandbox", async {
            let backend = self.state.backend()?;
            backend.pods.stop(&self.state.config(), &id).await?;
            Ok(v1::StopPodSandboxResponse {})
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<v1::RemovePodSandboxRequest>,
    ) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        respond("RemovePodSandbox", async {
            let backend = self.state.backend()?;
            backend.pods.remove(&self.state.config(), &id).await?;
            Ok(v1::RemovePodSandboxResponse {})
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<v1::PodSandboxStatusRequest>,
    ) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        respond("PodSandboxStatus", async {
            let backend = self.state.backend()?;
            let st = backend
                .pods
                .status(&req.pod_sandbox_id, req.verbose)
                .await?;
            let mut info = HashMap::new();
            if req.verbose {
                let verbose = json!({
                    "runtimeHandler": st.meta.runtime_handler,
                    "runtimeType": st.meta.runtime_type,
                    "netnsPath": st.meta.netns,
                    "network": st.meta.network,
                    "ips": st.meta.ips,
                    "pid": st.pid,
                    "image": st.meta.image,
                    "runtimeSpec": st.spec,
                });
                info.insert("info".to_string(), verbose.to_string());
            }
            Ok(v1::PodSandboxStatusResponse {
                status: Some(sandbox_status(&st.meta, st.state)),
                info,
                containers_statuses: vec![],
                timestamp: now_ns(),
            })
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<v1::ListPodSandboxRequest>,
    ) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        respond("ListPodSandbox", async {
            let backend = self.state.backend()?;
            let state = match filter.state.map(|s| v1::PodSandboxState::try_from(s.state)) {
                None => None,
                Some(Ok(v1::PodSandboxState::SandboxReady)) => Some(SandboxState::Ready),
                Some(Ok(v1::PodSandboxState::SandboxNotready)) => Some(SandboxState::NotReady),
                // No sandbox is in a state CRI does not know (containerd
                // answers an empty list too).
                Some(Err(_)) => return Ok(v1::ListPodSandboxResponse { items: vec![] }),
            };
            let items = backend.pods.list(&ListFilter {
                id: filter.id,
                state,
                label_selector: filter.label_selector.into_iter().collect(),
            });
            Ok(v1::ListPodSandboxResponse {
                items: items
                    .into_iter()
                    .map(|(s, state)| {
                        let m = &s.meta;
                        v1::PodSandbox {
                            id: m.id.clone(),
                            metadata: Some(metadata(m)),
                            state: cri_state(state),
                            created_at: m.created_at,
                            labels: m.labels.clone().into_iter().collect(),
                            annotations: m.annotations.clone().into_iter().collect(),
                            runtime_handler: m.runtime_handler.clone(),
                        }
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn create_container(
        &self,
        req: Request<v1::CreateContainerRequest>,
    ) -> Result<Response<v1::CreateContainerResponse>, Status> {
        let req = req.into_inner();
        respond("CreateContainer", async {
            let request = convert_container::container_request(req.config)?;
            if req.pod_sandbox_id.is_empty() {
                return Err(Error::invalid("pod_sandbox_id", "must not be empty"));
            }
            let backend = self.state.backend()?;
            let id = backend
                .pods
                .create_container(
                    self.state.config(),
                    self.state.cgroup_driver(),
                    &req.pod_sandbox_id,
                    request,
                )
                .await?;
            Ok(v1::CreateContainerResponse { container_id: id })
        })
        .await
    }

    async fn start_container(
        &self,
        req: Request<v1::StartContainerRequest>,
    ) -> Result<Response<v1::StartContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        respond("StartContainer", async {
            self.state.backend()?.pods.start_container(&id).await?;
            Ok(v1::StartContainerResponse {})
        })
        .await
    }

    async fn stop_container(
        &self,
        req: Request<v1::StopContainerRequest>,
    ) -> Result<Response<v1::StopContainerResponse>, Status> {
        let req = req.into_inner();
        respond("StopContainer", async {
            self.state
                .backend()?
                .pods
                .stop_container(&req.container_id, req.timeout)
                .await?;
            Ok(v1::StopContainerResponse {})
        })
        .await
    }

    async fn remove_container(
        &self,
        req: Request<v1::RemoveContainerRequest>,
    ) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        respond("RemoveContainer", async {
            self.state
                .backend()?
                .pods
                .remove_container(&self.state.config(), &id)
                .await?;
            Ok(v1::RemoveContainerResponse {})
        })
        .await
    }

    async fn container_status(
        &self,
        req: Request<v1::ContainerStatusRequest>,
    ) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        respond("ContainerStatus", async {
            let (meta, st) = self
                .state
                .backend()?
                .pods
                .container_status(&req.container_id)?;
            let mut info = HashMap::new();
            if req.verbose {
                let verbose = json!({
                    "pid": st.pid,
                    "sandboxID": meta.sandbox_id,
                    "imageId": meta.image_id,
                    "logPath": meta.log_path,
                });
                info.insert("info".to_string(), verbose.to_string());
            }
            Ok(v1::ContainerStatusResponse {
                status: Some(v1::ContainerStatus {
                    id: meta.id.clone(),
                    metadata: Some(v1::ContainerMetadata {
                        name: meta.name.clone(),
                        attempt: meta.attempt,
                    }),
                    state: container_state(st.state),
                    created_at: meta.created_at,
                    started_at: st.started_at,
                    finished_at: st.finished_at,
                    exit_code: st.exit_code,
                    image: Some(v1::ImageSpec {
                        image: if meta.image_tag.is_empty() {
                            meta.image.clone()
                        } else {
                            meta.image_tag.clone()
                        },
                        ..Default::default()
                    }),
                    image_ref: meta.image_ref.clone(),
                    resources: meta.resources.as_ref().map(|r| v1::ContainerResources {
                        linux: Some(convert_container::cri_resources(r)),
                        ..Default::default()
                    }),
                    reason: st.reason.clone(),
                    message: st.message.clone(),
                    labels: meta.labels.clone().into_iter().collect(),
                    annotations: meta.annotations.clone().into_iter().collect(),
                    mounts: meta
                        .mounts
                        .iter()
                        .map(crate::convert_container::mount)
                        .collect(),
                    log_path: meta.log_path.clone(),
                    image_id: meta.image_id.clone(),
                    ..Default::default()
                }),
                info,
            })
        })
        .await
    }

    async fn list_containers(
        &self,
        req: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        respond("ListContainers", async {
            let state = match filter.state.map(|s| v1::ContainerState::try_from(s.state)) {
                None => None,
                Some(Ok(v1::ContainerState::ContainerCreated)) => Some(ContainerState::Created),
                Some(Ok(v1::ContainerState::ContainerRunning)) => Some(ContainerState::Running),
                Some(Ok(v1::ContainerState::ContainerExited)) => Some(ContainerState::Exited),
                Some(Ok(v1::ContainerState::ContainerUnknown)) => Some(ContainerState::Unknown),
                // No container is in a state CRI does not know (containerd
                // answers an empty list too).
                Some(Err(_)) => return Ok(v1::ListContainersResponse { containers: vec![] }),
            };
            let items = self
                .state
                .backend()?
                .pods
                .list_containers(&ContainerFilter {
                    id: filter.id,
                    sandbox_id: filter.pod_sandbox_id,
                    state,
                    label_selector: filter.label_selector.into_iter().collect(),
                });
            Ok(v1::ListContainersResponse {
                containers: items
                    .into_iter()
                    .map(|(m, st)| v1::Container {
                        id: m.id.clone(),
                        pod_sandbox_id: m.sandbox_id.clone(),
                        metadata: Some(v1::ContainerMetadata {
                            name: m.name.clone(),
                            attempt: m.attempt,
                        }),
                        image: Some(v1::ImageSpec {
                            image: m.image.clone(),
                            ..Default::default()
                        }),
                        image_ref: m.image_ref.clone(),
                        state: container_state(st.state),
                        created_at: m.created_at,
                        labels: m.labels.clone().into_iter().collect(),
                        annotations: m.annotations.clone().into_iter().collect(),
                        image_id: m.image_id.clone(),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn exec_sync(
        &self,
        req: Request<v1::ExecSyncRequest>,
    ) -> Result<Response<v1::ExecSyncResponse>, Status> {
        let req = req.into_inner();
        respond("ExecSync", async {
            let out = self
                .state
                .backend()?
                .pods
                .exec_sync(&req.container_id, req.cmd, req.timeout)
                .await?;
            Ok(v1::ExecSyncResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.exit_code,
            })
        })
        .await
    }

    async fn update_container_resources(
        &self,
        req: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        let req = req.into_inner();
        respond("UpdateContainerResources", async {
            let linux = req
                .linux
                .ok_or_else(|| Error::invalid("linux", "is required"))?;
            self.state
                .backend()?
                .pods
                .update_container_resources(
                    &req.container_id,
                    &convert_container::resources(&linux),
                )
                .await?;
            Ok(v1::UpdateContainerResourcesResponse {})
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        req: Request<v1::ReopenContainerLogRequest>,
    ) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        let id = req.into_inner().container_id;
        respond("ReopenContainerLog", async {
            self.state.backend()?.pods.reopen_container_log(&id).await?;
            Ok(v1::ReopenContainerLogResponse {})
        })
        .await
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _req: Request<v1::GetEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        not_yet("GetContainerEvents").await
    }

    async fn exec(
        &self,
        _: Request<v1::ExecRequest>,
    ) -> Result<Response<v1::ExecResponse>, Status> {
        not_yet("Exec").await
    }
    async fn attach(
        &self,
        _: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        not_yet("Attach").await
    }
    async fn port_forward(
        &self,
        _: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        not_yet("PortForward").await
    }
    async fn container_stats(
        &self,
        req: Request<v1::ContainerStatsRequest>,
    ) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        let id = req.into_inner().container_id;
        respond("ContainerStats", async {
            let backend = self.state.backend()?;
            let usage = backend.pods.container_stats(&id).await?;
            let mut roots = HashMap::new();
            let root = self.snapshotter_root(&mut roots, &usage).await?;
            Ok(v1::ContainerStatsResponse {
                stats: Some(convert_container::container_stats(&usage, &root)),
            })
        })
        .await
    }
    async fn list_container_stats(
        &self,
        req: Request<v1::ListContainerStatsRequest>,
    ) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        respond("ListContainerStats", async {
            let backend = self.state.backend()?;
            let usages = backend
                .pods
                .list_container_stats(&crius_pod::StatsFilter {
                    id: filter.id,
                    pod_sandbox_id: filter.pod_sandbox_id,
                    label_selector: filter.label_selector.into_iter().collect(),
                })
                .await?;
            let mut roots = HashMap::new();
            let mut stats = Vec::with_capacity(usages.len());
            for u in &usages {
                let root = self.snapshotter_root(&mut roots, u).await?;
                stats.push(convert_container::container_stats(u, &root));
            }
            Ok(v1::ListContainerStatsResponse { stats })
        })
        .await
    }
    async fn pod_sandbox_stats(
        &self,
        req: Request<v1::PodSandboxStatsRequest>,
    ) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        respond("PodSandboxStats", async {
            let driver = self.state.cgroup_driver();
            let usage = self
                .state
                .backend()?
                .pods
                .pod_sandbox_stats(&id, driver)
                .await?;
            let mut roots = HashMap::new();
            Ok(v1::PodSandboxStatsResponse {
                stats: Some(self.pod_stats(&mut roots, &usage).await?),
            })
        })
        .await
    }
    async fn list_pod_sandbox_stats(
        &self,
        req: Request<v1::ListPodSandboxStatsRequest>,
    ) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        respond("ListPodSandboxStats", async {
            let usages = self
                .state
                .backend()?
                .pods
                .list_pod_sandbox_stats(
                    &filter.id,
                    &filter.label_selector.into_iter().collect(),
                    self.state.cgroup_driver(),
                )
                .await?;
            let mut roots = HashMap::new();
            let mut stats = Vec::with_capacity(usages.len());
            for u in &usages {
                stats.push(self.pod_stats(&mut roots, u).await?);
            }
            Ok(v1::ListPodSandboxStatsResponse { stats })
        })
        .await
    }
    async fn checkpoint_container(
        &self,
        _: Request<v1::CheckpointContainerRequest>,
    ) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        not_yet("CheckpointContainer").await
    }
    async fn list_metric_descriptors(
        &self,
        _: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        not_yet("ListMetricDescriptors").await
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        not_yet("ListPodSandboxMetrics").await
    }
}

fn container_state(s: ContainerState) -> i32 {
    (match s {
        ContainerState::Created => v1::ContainerState::ContainerCreated,
        ContainerState::Running => v1::ContainerState::ContainerRunning,
        ContainerState::Exited => v1::ContainerState::ContainerExited,
        ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
    }) as i32
}

fn cri_state(s: SandboxState) -> i32 {
    (if s == SandboxState::Ready {
        v1::PodSandboxState::SandboxReady
    } else {
        v1::PodSandboxState::SandboxNotready
    }) as i32
}

fn metadata(m: &SandboxMeta) -> v1::PodSandboxMetadata {
    v1::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

/// The CRI status of a sandbox.
fn sandbox_status(m: &SandboxMeta, state: SandboxState) -> v1::PodSandboxStatus {
    let [network, pid, ipc] = m.namespace_modes;
    v1::PodSandboxStatus {
        id: m.id.clone(),
        metadata: Some(metadata(m)),
        state: cri_state(state),
        created_at: m.created_at,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: m.ips.first().cloned().unwrap_or_default(),
            additional_ips: m
                .ips
                .iter()
                .skip(1)
                .map(|ip| v1::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(v1::NamespaceOption {
                    network,
                    pid,
                    ipc,
                    ..Default::default()
                }),
            }),
        }),
        labels: m.labels.clone().into_iter().collect(),
        annotations: m.annotations.clone().into_iter().collect(),
        runtime_handler: m.runtime_handler.clone(),
    }
}

/// Checks one `address/prefix` of a pod CIDR.
fn validate_cidr(cidr: &str) -> Result<(), Error> {
    let bad = || {
        Error::invalid(
            "runtime_config.network_config.pod_cidr",
            format!("{cidr:?} is not an address/prefix"),
        )
    };
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon still waiting for containerd: `Status` answers from its
    /// own state.
    fn svc(config: &str, apparmor: crius_core::apparmor::Mode) -> RuntimeSvc {
        let config = Config::parse(config).expect("valid config");
        let state = State::new(config, CgroupDriver::Cgroupfs).with_apparmor(apparmor);
        RuntimeSvc::new(Arc::new(state))
    }

    #[tokio::test]
    async fn status_reports_features_per_handler() -> Result<(), Error> {
        let s = svc(
            "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
            Default::default(),
        )
        .status(false)
        .await?;
        let names: Vec<&str> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["", "kata", "runc"]);
        for h in &s.runtime_handlers {
            assert_eq!(
                h.features,
                Some(v1::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
                "{}",
                h.name
            );
        }
        assert_eq!(
            s.features,
            Some(v1::RuntimeFeatures {
                supplemental_groups_policy: false
            })
        );
        assert!(s.info.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn verbose_status_redacts_secrets_and_tells_about_apparmor() -> Result<(), Error> {
        let apparmor = crius_core::apparmor::after_load(Err("parser said no".into()));
        let s = svc(
            "[images.auths.\"registry.example.com\"]\nusername = \"alice\"\n\
             password = \"pw-secret\"\nregistry_token = \"bearer-secret\"\n",
            apparmor,
        )
        .status(true)
        .await?;
        for (key, value) in &s.info {
            assert!(!value.contains("secret"), "{key}: {value}");
        }
        let config: serde_json::Value =
            serde_json::from_str(&s.info["config"]).map_err(|e| Error::Internal(e.to_string()))?;
        let auth = &config["images"]["auths"]["registry.example.com"];
        assert_eq!(auth["username"], "alice");
        assert_eq!(auth["password"], "<redacted>");
        let apparmor: serde_json::Value = serde_json::from_str(&s.info["apparmor"])
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(apparmor["enabled"], true);
        assert_eq!(apparmor["defaultProfile"], serde_json::Value::Null);
        let reason = apparmor["unconfinedReason"].as_str().unwrap_or_default();
        assert!(reason.contains("parser said no"), "{reason}");
        Ok(())
    }

    #[test]
    fn cidrs() {
        for ok in ["10.88.0.0/16", "fd00::/64", "0.0.0.0/0"] {
            assert!(validate_cidr(ok).is_ok(), "{ok}");
        }
        for bad in ["10.88.0.0", "10.88.0.0/33", "x/8", "10.88.0.0/-1", ""] {
            assert!(validate_cidr(bad).is_err(), "{bad}");
        }
    }
}
