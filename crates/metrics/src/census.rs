//! The pod and container gauges, counted at each scrape from whoever holds
//! the pods (no gauge to keep in step with every transition).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// How many pods or containers are in one state under one runtime handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// `ready`/`notready` for pods, `created`/`running`/`exited`/`unknown`
    /// for containers.
    pub state: &'static str,
    pub runtime_handler: String,
    pub count: u64,
}

/// Counts pods and containers now.
pub trait Census: Send + Sync + 'static {
    /// The states a pod can be in, all reported (0 when none).
    fn pod_states(&self) -> &'static [&'static str];
    /// The states a container can be in, all reported (0 when none).
    fn container_states(&self) -> &'static [&'static str];
    /// The runtime handlers always reported (the configured ones), beside
    /// those that have pods.
    fn handlers(&self) -> Vec<String>;
    fn pods(&self) -> Vec<Count>;
    fn containers(&self) -> Vec<Count>;
}

/// The registry's view of the census.
pub(crate) struct Collector(pub(crate) Arc<OnceLock<Box<dyn Census>>>);

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("set", &self.0.get().is_some())
            .finish()
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(census) = self.0.get() else {
            return Ok(());
        };
        let families = [
            (
                "crius_pods",
                "Pod sandboxes, by state and runtime handler",
                census.pod_states(),
                census.pods(),
            ),
            (
                "crius_containers",
                "Containers, by state and their pod's runtime handler",
                census.container_states(),
                census.containers(),
            ),
        ];
        let handlers = census.handlers();
        for (name, help, states, counts) in families {
            let rows = zero_filled(states, &handlers, &counts);
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (state, handler, n) in &rows {
                let labels = [("state", *state), ("runtime_handler", *handler)];
                let n = i64::try_from(*n).unwrap_or(i64::MAX);
                ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Every state for every handler (`always` and those counted), counts
/// summed.
pub(crate) fn zero_filled<'a>(
    states: &[&'static str],
    always: &'a [String],
    counts: &'a [Count],
) -> Vec<(&'static str, &'a str, u64)> {
    let handlers: BTreeSet<&str> = counts
        .iter()
        .map(|c| c.runtime_handler.as_str())
        .chain(always.iter().map(String::as_str))
        .collect();
    let mut rows = Vec::new();
    for handler in handlers {
        for state in states {
            let n = counts
                .iter()
                .filter(|c| c.state == *state && c.runtime_handler == handler)
                .map(|c| c.count)
                .sum();
            rows.push((*state, handler, n));
        }
    }
    rows
}
