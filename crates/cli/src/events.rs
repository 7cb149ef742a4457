//! `crius events`: follows GetContainerEvents, one line per event (or
//! one JSON object per line with `-o json`), until interrupted.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use crius_cri_api::v1;
use serde_json::{Value, json};

use crate::client;
use crate::commands::pod_state;
use crate::containers::state_name;

/// Prints every event the runtime sends, first the state of everything
/// there now.
pub(crate) async fn events(cri: &mut client::Cri, json: bool) -> anyhow::Result<()> {
    let mut stream = cri
        .runtime
        .get_container_events(v1::GetEventsRequest {})
        .await
        .context("GetContainerEvents")?
        .into_inner();
    if !json {
        println!(
            "{:<30} {:<8} {:<9} {:<13} {:<20} POD",
            "TIME", "EVENT", "KIND", "ID", "NAME"
        );
    }
    while let Some(e) = stream.message().await.context("GetContainerEvents")? {
        if json {
            println!("{}", serde_json::to_string(&event_json(&e))?);
        } else {
            println!("{}", event_line(&e));
        }
    }
    Ok(())
}

fn kind_name(t: i32) -> &'static str {
    match v1::ContainerEventType::try_from(t) {
        Ok(v1::ContainerEventType::ContainerCreatedEvent) => "CREATED",
        Ok(v1::ContainerEventType::ContainerStartedEvent) => "STARTED",
        Ok(v1::ContainerEventType::ContainerStoppedEvent) => "STOPPED",
        Ok(v1::ContainerEventType::ContainerDeletedEvent) => "DELETED",
        Err(_) => "UNKNOWN",
    }
}

/// Whether the event is the pod sandbox's own.
fn of_sandbox(e: &v1::ContainerEventResponse) -> bool {
    e.pod_sandbox_status
        .as_ref()
        .is_some_and(|s| s.id == e.container_id)
}

fn event_line(e: &v1::ContainerEventResponse) -> String {
    let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(e.created_at).unwrap_or(0));
    let pod = e.pod_sandbox_status.as_ref();
    let (pod_name, ns) = pod
        .and_then(|p| p.metadata.as_ref())
        .map(|m| (m.name.as_str(), m.namespace.as_str()))
        .unwrap_or(("-", "-"));
    let name = if of_sandbox(e) {
        pod_name.to_string()
    } else {
        e.containers_statuses
            .iter()
            .find(|c| c.id == e.container_id)
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_else(|| "-".into())
    };
    let summary = e
        .containers_statuses
        .iter()
        .map(|c| state_name(c.state))
        .collect::<Vec<_>>()
        .join(",");
    let state = pod.map(|p| pod_state(p.state)).unwrap_or("gone");
    format!(
        "{:<30} {:<8} {:<9} {:<13} {:<20} {ns}/{pod_name} ({state}; containers: {})",
        crius_logs::format_timestamp(at),
        kind_name(e.container_event_type),
        if of_sandbox(e) {
            "sandbox"
        } else {
            "container"
        },
        &e.container_id[..e.container_id.len().min(13)],
        name,
        if summary.is_empty() { "none" } else { &summary },
    )
}

fn event_json(e: &v1::ContainerEventResponse) -> Value {
    let pod = e.pod_sandbox_status.as_ref().map(|p| {
        let m = p.metadata.clone().unwrap_or_default();
        json!({ "id": p.id, "name": m.name, "namespace": m.namespace, "uid": m.uid,
                "state": pod_state(p.state), "runtimeHandler": p.runtime_handler })
    });
    let containers: Vec<Value> = e
        .containers_statuses
        .iter()
        .map(|c| {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            json!({ "id": c.id, "name": name, "state": state_name(c.state),
                    "exitCode": c.exit_code, "reason": c.reason })
        })
        .collect();
    json!({
        "type": kind_name(e.container_event_type),
        "kind": if of_sandbox(e) { "sandbox" } else { "container" },
        "id": e.container_id,
        "createdAt": e.created_at,
        "pod": pod,
        "containers": containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, pod: &str) -> v1::ContainerEventResponse {
        v1::ContainerEventResponse {
            container_id: id.into(),
            container_event_type: v1::ContainerEventType::ContainerStoppedEvent as i32,
            created_at: 1_700_000_000_000_000_000,
            pod_sandbox_status: Some(v1::PodSandboxStatus {
                id: pod.into(),
                metadata: Some(v1::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers_statuses: vec![v1::ContainerStatus {
                id: "c1".into(),
                metadata: Some(v1::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                state: v1::ContainerState::ContainerExited as i32,
                exit_code: 137,
                reason: "OOMKilled".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn an_event_is_one_line_naming_what_and_where() {
        let line = event_line(&event("c1", "p1"));
        for part in ["STOPPED", "container", "c1", "app", "default/web", "Exited"] {
            assert!(line.contains(part), "{part} in {line}");
        }
        let line = event_line(&event("p1", "p1"));
        assert!(line.contains("sandbox") && line.contains(" web "), "{line}");
        let j = event_json(&event("c1", "p1"));
        assert_eq!(j["type"], "STOPPED");
        assert_eq!(j["kind"], "container");
        assert_eq!(j["containers"][0]["reason"], "OOMKilled");
        assert_eq!(j["pod"]["namespace"], "default");
    }
}
