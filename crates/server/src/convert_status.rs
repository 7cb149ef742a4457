//! Domain answers → CRI messages for the status and list RPCs (runtime,
//! sandboxes, containers), and CRI state filters → domain states. Rules
//! that are not translation (which image a status names, which conditions
//! hold) come from [`crius_core::status`].

use std::collections::HashMap;

use crius_core::container::{ContainerState, ContainerStatus};
use crius_core::sandbox::SandboxState;
use crius_core::status::{Condition, RuntimeStatus};
use crius_cri_api::v1;
use crius_pod::container::ContainerMeta;
use crius_pod::{SandboxMeta, SandboxStatus};
use serde_json::json;

use crate::convert_container;

/// A state filter of a list RPC: none, a state, or a value CRI does not
/// know, which no object is in (containerd answers an empty list too).
pub(crate) enum StateFilter<S> {
    Any,
    Only(S),
    Unknown,
}

impl<S> StateFilter<S> {
    /// The domain filter, or `None` when nothing can match.
    pub(crate) fn state(self) -> Option<Option<S>> {
        match self {
            StateFilter::Any => Some(None),
            StateFilter::Only(s) => Some(Some(s)),
            StateFilter::Unknown => None,
        }
    }
}

/// `ListPodSandbox`'s state filter.
pub(crate) fn sandbox_state_filter(
    f: Option<&v1::PodSandboxStateValue>,
) -> StateFilter<SandboxState> {
    match f.map(|s| v1::PodSandboxState::try_from(s.state)) {
        None => StateFilter::Any,
        Some(Ok(v1::PodSandboxState::SandboxReady)) => StateFilter::Only(SandboxState::Ready),
        Some(Ok(v1::PodSandboxState::SandboxNotready)) => StateFilter::Only(SandboxState::NotReady),
        Some(Err(_)) => StateFilter::Unknown,
    }
}

/// `ListContainers`' state filter.
pub(crate) fn container_state_filter(
    f: Option<&v1::ContainerStateValue>,
) -> StateFilter<ContainerState> {
    match f.map(|s| v1::ContainerState::try_from(s.state)) {
        None => StateFilter::Any,
        Some(Ok(v1::ContainerState::ContainerCreated)) => {
            StateFilter::Only(ContainerState::Created)
        }
        Some(Ok(v1::ContainerState::ContainerRunning)) => {
            StateFilter::Only(ContainerState::Running)
        }
        Some(Ok(v1::ContainerState::ContainerExited)) => StateFilter::Only(ContainerState::Exited),
        Some(Ok(v1::ContainerState::ContainerUnknown)) => {
            StateFilter::Only(ContainerState::Unknown)
        }
        Some(Err(_)) => StateFilter::Unknown,
    }
}

/// The `Status` answer.
pub(crate) fn status_response(s: RuntimeStatus) -> v1::StatusResponse {
    v1::StatusResponse {
        status: Some(v1::RuntimeStatus {
            conditions: s.conditions.iter().map(condition).collect(),
        }),
        info: s.info,
        runtime_handlers: s
            .handlers
            .into_iter()
            .map(|(name, f)| v1::RuntimeHandler {
                name,
                features: Some(v1::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: f.recursive_read_only_mounts,
                    user_namespaces: f.user_namespaces,
                }),
            })
            .collect(),
        features: Some(v1::RuntimeFeatures {
            supplemental_groups_policy: s.features.supplemental_groups_policy,
            // user namespaces are not advertised at all yet
            user_namespaces_host_network: false,
        }),
    }
}

fn condition(c: &Condition) -> v1::RuntimeCondition {
    let (status, reason, message) = match &c.failure {
        None => (true, String::new(), String::new()),
        Some((reason, message)) => (false, reason.to_string(), message.clone()),
    };
    v1::RuntimeCondition {
        r#type: c.kind.into(),
        status,
        reason,
        message,
    }
}

pub(crate) fn container_state(s: ContainerState) -> i32 {
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

/// A sandbox as `ListPodSandbox` lists it.
pub(crate) fn pod_sandbox(m: &SandboxMeta, state: SandboxState) -> v1::PodSandbox {
    v1::PodSandbox {
        id: m.id.clone(),
        metadata: Some(metadata(m)),
        state: cri_state(state),
        created_at: m.created_at,
        labels: m.labels.clone().into_iter().collect(),
        annotations: m.annotations.clone().into_iter().collect(),
        runtime_handler: m.runtime_handler.clone(),
    }
}

/// The `PodSandboxStatus` answer; `verbose` adds the report.
pub(crate) fn pod_sandbox_status_response(
    st: &SandboxStatus,
    containers: &[(ContainerMeta, ContainerStatus)],
    verbose: bool,
    timestamp: i64,
) -> v1::PodSandboxStatusResponse {
    let mut info = HashMap::new();
    if verbose {
        let report = json!({
            "runtimeHandler": st.meta.runtime_handler,
            "runtimeType": st.meta.runtime_type,
            "netnsPath": st.meta.netns,
            "network": st.meta.network,
            "ips": st.meta.ips,
            "pid": st.pid,
            // A pinned pod (no pause process): its IPC and UTS pins.
            "pinned": st.meta.pinned,
            "image": st.meta.image,
            "runtimeSpec": st.spec,
            // What UpdatePodSandboxResources last recorded.
            "resources": st.resources,
        });
        info.insert("info".to_string(), report.to_string());
    }
    v1::PodSandboxStatusResponse {
        status: Some(sandbox_status(&st.meta, st.state)),
        info,
        containers_statuses: containers
            .iter()
            .map(|(m, s)| container_status(m, s))
            .collect(),
        timestamp,
    }
}

/// A container or pod event as `GetContainerEvents` sends it: the pod's
/// whole status and every container's.
pub(crate) fn event_response(e: &crius_pod::events::PodEvent) -> v1::ContainerEventResponse {
    use crius_pod::events::EventKind;
    let kind = match e.kind {
        EventKind::Created => v1::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => v1::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => v1::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => v1::ContainerEventType::ContainerDeletedEvent,
    };
    v1::ContainerEventResponse {
        container_id: e.container_id.clone(),
        container_event_type: kind as i32,
        created_at: e.at,
        pod_sandbox_status: e.sandbox.as_ref().map(|s| sandbox_status(&s.meta, s.state)),
        containers_statuses: e
            .containers
            .iter()
            .map(|(m, s)| container_status(m, s))
            .collect(),
    }
}

/// A recorded namespace mode as its CRI enum value.
fn cri_mode(m: crius_pod::ModeRecord) -> i32 {
    use crius_pod::ModeRecord;
    (match m {
        ModeRecord::Pod => v1::NamespaceMode::Pod,
        ModeRecord::Container => v1::NamespaceMode::Container,
        ModeRecord::Node => v1::NamespaceMode::Node,
        ModeRecord::Target => v1::NamespaceMode::Target,
    }) as i32
}

/// The CRI status of a sandbox.
fn sandbox_status(m: &SandboxMeta, state: SandboxState) -> v1::PodSandboxStatus {
    let crius_pod::NamespaceRecord { network, pid, ipc } = m.namespaces;
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
                    network: cri_mode(network),
                    pid: cri_mode(pid),
                    ipc: cri_mode(ipc),
                    ..Default::default()
                }),
            }),
        }),
        labels: m.labels.clone().into_iter().collect(),
        annotations: m.annotations.clone().into_iter().collect(),
        runtime_handler: m.runtime_handler.clone(),
    }
}

/// A container as `ListContainers` lists it.
pub(crate) fn container(m: &ContainerMeta, st: &ContainerStatus) -> v1::Container {
    v1::Container {
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
    }
}

/// The `ContainerStatus` answer; `verbose` adds the report.
pub(crate) fn container_status_response(
    meta: &ContainerMeta,
    st: &ContainerStatus,
    verbose: bool,
) -> v1::ContainerStatusResponse {
    let mut info = HashMap::new();
    if verbose {
        let report = json!({
            "pid": st.pid,
            "sandboxID": meta.sandbox_id,
            "imageId": meta.image_id,
            "logPath": meta.log_path,
            // What an attach can ask for (crius attach reads them).
            "stdin": meta.stdin,
            "tty": meta.tty,
        });
        info.insert("info".to_string(), report.to_string());
    }
    v1::ContainerStatusResponse {
        status: Some(container_status(meta, st)),
        info,
    }
}

/// The CRI status of a container.
fn container_status(meta: &ContainerMeta, st: &ContainerStatus) -> v1::ContainerStatus {
    let image = crius_core::status::reported_image(&meta.image_tag, &meta.image);
    v1::ContainerStatus {
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
            image: image.to_string(),
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
        mounts: meta.mounts.iter().map(convert_container::mount).collect(),
        log_path: meta.log_path.clone(),
        image_id: meta.image_id.clone(),
        stop_signal: stop_signal(&meta.stop_signal) as i32,
        user: meta.user.as_ref().map(|u| v1::ContainerUser {
            linux: Some(v1::LinuxContainerUser {
                uid: u.uid.into(),
                gid: u.gid.into(),
                supplemental_groups: u.additional_gids.iter().map(|&g| g.into()).collect(),
            }),
        }),
    }
}

/// The signal StopContainer sends first, as CRI names it: the container's
/// or its image's, else SIGTERM.
fn stop_signal(name: &str) -> v1::Signal {
    use crius_core::container::signal::{cri_signal_name, signal_number};
    signal_number(name)
        .and_then(cri_signal_name)
        .and_then(|n| v1::Signal::from_str_name(&n))
        .unwrap_or(v1::Signal::Sigterm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_filters_map_and_unknown_values_match_nothing() {
        let sandbox =
            |state| sandbox_state_filter(Some(&v1::PodSandboxStateValue { state })).state();
        assert_eq!(sandbox_state_filter(None).state(), Some(None));
        assert_eq!(sandbox(1), Some(Some(SandboxState::NotReady)));
        assert_eq!(sandbox(0), Some(Some(SandboxState::Ready)));
        assert_eq!(sandbox(7), None);
        let container =
            |state| container_state_filter(Some(&v1::ContainerStateValue { state })).state();
        assert_eq!(container_state_filter(None).state(), Some(None));
        assert_eq!(container(2), Some(Some(ContainerState::Exited)));
        assert_eq!(container(-1), None);
    }

    #[test]
    fn a_failed_condition_keeps_reason_and_message() {
        let c = condition(&crius_core::status::network_condition(Some(
            "no config".into(),
        )));
        assert_eq!(
            c,
            v1::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: "no config".into(),
            }
        );
        assert!(condition(&crius_core::status::runtime_condition(None)).status);
    }
}
