//! `runtime.v1.RuntimeService`: each handler converts the request, calls
//! one service method, converts the answer; [`respond`] maps the errors.

use std::sync::Arc;

use crius_core::cgroup::CgroupDriver;
use crius_core::{Error, RUNTIME_NAME, RUNTIME_VERSION};
use crius_cri_api::CRI_API_VERSION;
use crius_cri_api::v1::{self, runtime_service_server::RuntimeService};
use crius_pod::container::ContainerFilter;
use crius_pod::{ListFilter, now_ns};
use tonic::{Request, Response, Status};

use crate::convert_status::{self, container_state_filter, sandbox_state_filter};
use crate::edge::{chunked, respond};
use crate::state::State;
use crate::{convert, convert_container, streaming};

/// The CRI version of the kubelet API crius answers `Version` with
/// (containerd's CRI plugin answers the same).
const KUBELET_API_VERSION: &str = "0.1.0";

/// The runtime service.
pub struct RuntimeSvc {
    state: Arc<State>,
}

impl RuntimeSvc {
    pub fn new(state: Arc<State>) -> Self {
        RuntimeSvc { state }
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
        let status = self.state.runtime_status(verbose).await?;
        Ok(convert_status::status_response(status))
    }
}

/// The answers of a server-streaming RPC.
use crate::edge::Answers;
type EventStream = Answers<v1::ContainerEventResponse>;

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
                crius_core::status::validate_pod_cidr(&cidr)?;
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
            // As the CRI comment asks (and kubelet's evented PLEG reads).
            let containers = backend.pods.list_containers(&ContainerFilter {
                sandbox_id: st.meta.id.clone(),
                ..Default::default()
            });
            Ok(convert_status::pod_sandbox_status_response(
                &st,
                &containers,
                req.verbose,
                now_ns(),
            ))
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
            let Some(state) = sandbox_state_filter(filter.state.as_ref()).state() else {
                return Ok(v1::ListPodSandboxResponse { items: vec![] });
            };
            let items = backend.pods.list(&ListFilter {
                id: filter.id,
                state,
                label_selector: filter.label_selector.into_iter().collect(),
            });
            Ok(v1::ListPodSandboxResponse {
                items: items
                    .into_iter()
                    .map(|(s, state)| convert_status::pod_sandbox(&s.meta, state))
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
            // containerd refuses it too: a container needs its pod.
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
            Ok(convert_status::container_status_response(
                &meta,
                &st,
                req.verbose,
            ))
        })
        .await
    }

    async fn list_containers(
        &self,
        req: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        respond("ListContainers", async {
            let Some(state) = container_state_filter(filter.state.as_ref()).state() else {
                return Ok(v1::ListContainersResponse { containers: vec![] });
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
                    .iter()
                    .map(|(m, st)| convert_status::container(m, st))
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
        let (now, rx) = respond("GetContainerEvents", async {
            Ok(self.state.backend()?.pods.subscribe_events())
        })
        .await?
        .into_inner();
        Ok(Response::new(crate::events::stream(
            now,
            rx,
            self.state.ending(),
        )))
    }

    // The list-streaming RPCs (KEP-5825, alpha in 1.36): the List answer,
    // taken at once, sent in chunks (see `crate::edge::chunked`).
    type StreamPodSandboxesStream = Answers<v1::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        req: Request<v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let filter = req.into_inner().filter;
        let items = self
            .list_pod_sandbox(Request::new(v1::ListPodSandboxRequest { filter }))
            .await?
            .into_inner()
            .items;
        Ok(chunked(items, |pod_sandboxes| {
            v1::StreamPodSandboxesResponse { pod_sandboxes }
        }))
    }

    type StreamContainersStream = Answers<v1::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        req: Request<v1::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let filter = req.into_inner().filter;
        let items = self
            .list_containers(Request::new(v1::ListContainersRequest { filter }))
            .await?
            .into_inner()
            .containers;
        Ok(chunked(items, |containers| v1::StreamContainersResponse {
            containers,
        }))
    }

    type StreamContainerStatsStream = Answers<v1::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        req: Request<v1::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let filter = req.into_inner().filter;
        let items = self
            .list_container_stats(Request::new(v1::ListContainerStatsRequest { filter }))
            .await?
            .into_inner()
            .stats;
        Ok(chunked(items, |container_stats| {
            v1::StreamContainerStatsResponse { container_stats }
        }))
    }

    type StreamPodSandboxStatsStream = Answers<v1::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let filter = req.into_inner().filter;
        let items = self
            .list_pod_sandbox_stats(Request::new(v1::ListPodSandboxStatsRequest { filter }))
            .await?
            .into_inner()
            .stats;
        Ok(chunked(items, |pod_sandbox_stats| {
            v1::StreamPodSandboxStatsResponse { pod_sandbox_stats }
        }))
    }

    type StreamPodSandboxMetricsStream = Answers<v1::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let items = self
            .list_pod_sandbox_metrics(Request::new(v1::ListPodSandboxMetricsRequest {}))
            .await?
            .into_inner()
            .pod_metrics;
        Ok(chunked(items, |pod_metrics| {
            v1::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics: pod_metrics,
            }
        }))
    }

    /// In-place resize of a pod (1.35+): kubelet goes on without it when
    /// Unimplemented.
    async fn update_pod_sandbox_resources(
        &self,
        req: Request<v1::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<v1::UpdatePodSandboxResourcesResponse>, Status> {
        let req = req.into_inner();
        respond("UpdatePodSandboxResources", async {
            let update = crate::convert::pod_resources(&req);
            self.state
                .backend()?
                .pods
                .update_sandbox_resources(&req.pod_sandbox_id, update)
                .await?;
            Ok(v1::UpdatePodSandboxResourcesResponse {})
        })
        .await
    }

    async fn exec(
        &self,
        req: Request<v1::ExecRequest>,
    ) -> Result<Response<v1::ExecResponse>, Status> {
        let req = req.into_inner();
        respond("Exec", async {
            let request = streaming::exec_request(req)?;
            self.state.require_running_container(&request)?;
            let url = self.state.stream_url(request)?;
            Ok(v1::ExecResponse { url })
        })
        .await
    }
    async fn attach(
        &self,
        req: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        let req = req.into_inner();
        respond("Attach", async {
            let request = streaming::attach_request(req)?;
            self.state.require_running_container(&request)?;
            let url = self.state.stream_url(request)?;
            Ok(v1::AttachResponse { url })
        })
        .await
    }
    async fn port_forward(
        &self,
        req: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        let req = req.into_inner();
        respond("PortForward", async {
            let request = streaming::port_forward_request(req)?;
            self.state.require_ready_sandbox(&request).await?;
            let url = self.state.stream_url(request)?;
            Ok(v1::PortForwardResponse { url })
        })
        .await
    }
    async fn container_stats(
        &self,
        req: Request<v1::ContainerStatsRequest>,
    ) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        let id = req.into_inner().container_id;
        respond("ContainerStats", async {
            let (usage, root) = self.state.container_stats(&id).await?;
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
            let stats = self
                .state
                .list_container_stats(&crius_pod::StatsFilter {
                    id: filter.id,
                    pod_sandbox_id: filter.pod_sandbox_id,
                    label_selector: filter.label_selector.into_iter().collect(),
                })
                .await?;
            Ok(v1::ListContainerStatsResponse {
                stats: stats
                    .iter()
                    .map(|(u, root)| convert_container::container_stats(u, root))
                    .collect(),
            })
        })
        .await
    }
    async fn pod_sandbox_stats(
        &self,
        req: Request<v1::PodSandboxStatsRequest>,
    ) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        respond("PodSandboxStats", async {
            let (usage, roots) = self.state.pod_sandbox_stats(&id).await?;
            Ok(v1::PodSandboxStatsResponse {
                stats: Some(convert_container::pod_sandbox_stats(&usage, &roots)),
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
            let label_selector = filter.label_selector.into_iter().collect();
            let stats = self
                .state
                .list_pod_sandbox_stats(&filter.id, &label_selector)
                .await?;
            Ok(v1::ListPodSandboxStatsResponse {
                stats: stats
                    .iter()
                    .map(|(u, roots)| convert_container::pod_sandbox_stats(u, roots))
                    .collect(),
            })
        })
        .await
    }
    async fn checkpoint_container(
        &self,
        req: Request<v1::CheckpointContainerRequest>,
    ) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        let req = req.into_inner();
        respond("CheckpointContainer", async {
            let location = crius_core::checkpoint::location(&req.location)?;
            // CRI's timeout is in seconds; 0 or less: none.
            let timeout = u64::try_from(req.timeout)
                .ok()
                .filter(|t| *t > 0)
                .map(std::time::Duration::from_secs);
            self.state
                .backend()?
                .pods
                .checkpoint_container(&self.state.config(), &req.container_id, &location, timeout)
                .await?;
            Ok(v1::CheckpointContainerResponse {})
        })
        .await
    }
    async fn list_metric_descriptors(
        &self,
        _: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        respond("ListMetricDescriptors", async {
            Ok(v1::ListMetricDescriptorsResponse {
                descriptors: crate::convert_metrics::descriptors(),
            })
        })
        .await
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        respond("ListPodSandboxMetrics", async {
            let stats = self
                .state
                .list_pod_sandbox_stats("", &Default::default())
                .await?;
            Ok(v1::ListPodSandboxMetricsResponse {
                pod_metrics: stats
                    .iter()
                    .map(|(u, _)| crate::convert_metrics::pod_metrics(u))
                    .collect(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_core::config::Config;

    /// A daemon still waiting for containerd: `Status` answers from its
    /// own state.
    fn svc(config: &str, apparmor: crius_core::apparmor::Mode) -> RuntimeSvc {
        let config = Config::parse(config).expect("valid config");
        let state = State::new(config, CgroupDriver::Cgroupfs).with_apparmor(apparmor);
        RuntimeSvc::new(Arc::new(state))
    }

    #[tokio::test]
    async fn while_starting_each_condition_says_why() -> Result<(), Error> {
        let s = svc(
            "[cni]\nconf_dir = \"/nonexistent/crius-cni\"\n",
            Default::default(),
        )
        .status(false)
        .await?;
        let conditions = s.status.map(|s| s.conditions).unwrap_or_default();
        let [runtime, network] = conditions.as_slice() else {
            panic!("two conditions: {conditions:?}");
        };
        assert_eq!(runtime.r#type, "RuntimeReady");
        assert!(!runtime.status);
        assert_eq!(runtime.reason, "CriusStarting");
        assert!(
            runtime.message.contains("waiting for containerd"),
            "{runtime:?}"
        );
        assert_eq!(network.r#type, "NetworkReady");
        assert!(!network.status);
        assert_eq!(network.reason, "NetworkPluginNotReady");
        assert!(
            network.message.contains("/nonexistent/crius-cni"),
            "{network:?}"
        );
        Ok(())
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
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
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
        assert!(config["stateDir"].as_str().is_some_and(|d| !d.is_empty()));
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
}
