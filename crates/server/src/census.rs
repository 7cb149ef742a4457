//! The pods and containers as `crius_pods` and `crius_containers` count
//! them (`crius_metrics::Census`), read from the pod store at each scrape.

use std::collections::HashMap;
use std::sync::Arc;

use crius_core::container::ContainerState;
use crius_core::sandbox::SandboxState;
use crius_metrics::Count;
use crius_pod::ListFilter;
use crius_pod::container::ContainerFilter;

use crate::State;

/// The pods of the daemon's state (none until start-up recovered them).
pub struct PodCensus(pub Arc<State>);

fn pod_state(s: SandboxState) -> &'static str {
    match s {
        SandboxState::Ready => "ready",
        SandboxState::NotReady => "notready",
        SandboxState::Unknown => "unknown",
    }
}

fn container_state(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// `items` counted by (state, handler).
fn tally(items: impl Iterator<Item = (&'static str, String)>) -> Vec<Count> {
    let mut counts: HashMap<(&'static str, String), u64> = HashMap::new();
    for key in items {
        *counts.entry(key).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((state, runtime_handler), count)| Count {
            state,
            runtime_handler,
            count,
        })
        .collect()
}

impl crius_metrics::Census for PodCensus {
    fn pod_states(&self) -> &'static [&'static str] {
        &["ready", "notready", "unknown"]
    }

    fn container_states(&self) -> &'static [&'static str] {
        &["created", "running", "exited", "unknown"]
    }

    fn handlers(&self) -> Vec<String> {
        self.0.config().runtimes.keys().cloned().collect()
    }

    fn pods(&self) -> Vec<Count> {
        let Ok(backend) = self.0.backend() else {
            return vec![];
        };
        let pods = backend.pods.list(&ListFilter::default());
        tally(
            pods.into_iter()
                .map(|(s, state)| (pod_state(state), s.meta.runtime_handler.clone())),
        )
    }

    fn containers(&self) -> Vec<Count> {
        let Ok(backend) = self.0.backend() else {
            return vec![];
        };
        let handler: HashMap<String, String> = backend
            .pods
            .list(&ListFilter::default())
            .into_iter()
            .map(|(s, _)| (s.meta.id.clone(), s.meta.runtime_handler.clone()))
            .collect();
        let containers = backend.pods.list_containers(&ContainerFilter::default());
        tally(containers.into_iter().map(|(meta, status)| {
            let h = handler.get(&meta.sandbox_id).cloned().unwrap_or_default();
            (container_state(status.state), h)
        }))
    }
}
