//! `ListMetricDescriptors` and `ListPodSandboxMetrics`: the stats of the
//! pods and containers (the same cgroup readers as the stats RPCs) under
//! cadvisor's metric names, which kubelet's CRI-only stats
//! (`PodAndContainerStatsFromCRI`) expose as `/metrics/cadvisor`. Every
//! metric's labels are its descriptor's keys, in order: `id`, `name`,
//! `image` (as CRI-O has them), then the metric's own. CRI values are
//! integers: CPU seconds are whole seconds, as in CRI-O. Pressure stall
//! times (PSI) where the kernel has them (cgroup v2, or a v1 host's unified
//! hierarchy), as cadvisor's `container_pressure_*_seconds_total`: waiting
//! is PSI's `some`, stalled its `full`, whole seconds too.

use crius_cri_api::v1;
use crius_pod::{ContainerUsage, PodUsage};

/// The labels every metric starts with.
const BASE: [&str; 3] = ["id", "name", "image"];

/// `(name, help, own label keys, type)` of every metric crius reports.
const METRICS: &[(&str, &str, &[&str], v1::MetricType)] = &[
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
        v1::MetricType::Counter,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        &[],
        v1::MetricType::Gauge,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        &[],
        v1::MetricType::Gauge,
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes.",
        &[],
        v1::MetricType::Gauge,
    ),
    (
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
        v1::MetricType::Counter,
    ),
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        &["device"],
        v1::MetricType::Gauge,
    ),
    (
        "container_fs_inodes_used",
        "Number of inodes used by the container on this filesystem.",
        &["device"],
        v1::MetricType::Gauge,
    ),
    (
        "container_processes",
        "Number of processes running inside the container.",
        &[],
        v1::MetricType::Gauge,
    ),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        &["interface"],
        v1::MetricType::Counter,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        &["interface"],
        v1::MetricType::Counter,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        &["interface"],
        v1::MetricType::Counter,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        &["interface"],
        v1::MetricType::Counter,
    ),
    (
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
        &[],
        v1::MetricType::Counter,
    ),
    (
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
        &[],
        v1::MetricType::Counter,
    ),
    (
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
        &[],
        v1::MetricType::Counter,
    ),
    (
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory congestion.",
        &[],
        v1::MetricType::Counter,
    ),
    (
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
        &[],
        v1::MetricType::Counter,
    ),
    (
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
        &[],
        v1::MetricType::Counter,
    ),
];

/// The descriptors of every metric crius reports.
pub(crate) fn descriptors() -> Vec<v1::MetricDescriptor> {
    METRICS
        .iter()
        .map(|(name, help, own, _)| v1::MetricDescriptor {
            name: (*name).into(),
            help: (*help).into(),
            label_keys: BASE
                .iter()
                .chain(own.iter())
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// Collects one object's metrics, its base labels fixed.
struct Out {
    base: [String; 3],
    metrics: Vec<v1::Metric>,
}

impl Out {
    fn new(id: &str, name: &str, image: &str) -> Self {
        Out {
            base: [id.into(), name.into(), image.into()],
            metrics: vec![],
        }
    }

    fn push(&mut self, name: &str, own: &[&str], value: u64) {
        let Some((_, _, keys, kind)) = METRICS.iter().find(|m| m.0 == name) else {
            return;
        };
        debug_assert_eq!(keys.len(), own.len(), "{name}");
        let label_values = self
            .base
            .iter()
            .cloned()
            .chain(own.iter().map(|v| v.to_string()))
            .collect();
        self.metrics.push(v1::Metric {
            name: name.into(),
            timestamp: 0,
            metric_type: *kind as i32,
            label_values,
            value: Some(v1::UInt64Value { value }),
        });
    }

    fn cpu_and_memory(&mut self, cpu_ns: Option<u64>, memory: Option<&crius_core::stats::Memory>) {
        if let Some(ns) = cpu_ns {
            self.push(
                "container_cpu_usage_seconds_total",
                &["total"],
                ns / 1_000_000_000,
            );
        }
        if let Some(m) = memory {
            self.push("container_memory_usage_bytes", &[], m.usage);
            self.push("container_memory_working_set_bytes", &[], m.working_set);
            self.push("container_memory_rss", &[], m.rss);
            let failures = "container_memory_failures_total";
            self.push(failures, &["pgfault", "container"], m.page_faults);
            self.push(failures, &["pgmajfault", "container"], m.major_page_faults);
        }
    }

    /// `container_pressure_<resource>_{waiting,stalled}_seconds_total`.
    fn pressure(&mut self, p: &crius_core::stats::Pressure) {
        for (resource, psi) in [("cpu", p.cpu), ("memory", p.memory), ("io", p.io)] {
            let Some(psi) = psi else { continue };
            let name = |kind| format!("container_pressure_{resource}_{kind}_seconds_total");
            self.push(&name("waiting"), &[], psi.some.total_ns / 1_000_000_000);
            if let Some(full) = psi.full {
                self.push(&name("stalled"), &[], full.total_ns / 1_000_000_000);
            }
        }
    }
}

/// One pod's metrics and its containers'.
pub(crate) fn pod_metrics(u: &PodUsage) -> v1::PodSandboxMetrics {
    let m = &u.sandbox.meta;
    let mut pod = Out::new(&m.id, &m.name, "");
    pod.cpu_and_memory(u.cpu_ns, u.memory.as_ref());
    pod.pressure(&u.pressure);
    if let Some(n) = u.processes {
        pod.push("container_processes", &[], n);
    }
    for i in &u.interfaces {
        let iface = [i.name.as_str()];
        pod.push("container_network_receive_bytes_total", &iface, i.rx_bytes);
        pod.push(
            "container_network_receive_errors_total",
            &iface,
            i.rx_errors,
        );
        pod.push("container_network_transmit_bytes_total", &iface, i.tx_bytes);
        pod.push(
            "container_network_transmit_errors_total",
            &iface,
            i.tx_errors,
        );
    }
    v1::PodSandboxMetrics {
        pod_sandbox_id: m.id.clone(),
        metrics: pod.metrics,
        container_metrics: u.containers.iter().map(container_metrics).collect(),
    }
}

fn container_metrics(c: &ContainerUsage) -> v1::ContainerMetrics {
    let meta = &c.container.meta;
    let mut out = Out::new(&meta.id, &meta.name, &meta.image_ref);
    out.cpu_and_memory(c.cpu_ns, c.memory.as_ref());
    out.pressure(&c.pressure);
    if let Some((bytes, inodes)) = c.writable_layer {
        out.push("container_fs_usage_bytes", &["rootfs"], bytes);
        out.push("container_fs_inodes_used", &["rootfs"], inodes);
    }
    v1::ContainerMetrics {
        container_id: meta.id.clone(),
        metrics: out.metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_descriptor_whose_keys_its_values_match() {
        let d = descriptors();
        assert_eq!(d.len(), METRICS.len());
        let mut out = Out::new("c1", "app", "sha256:x");
        out.cpu_and_memory(
            Some(2_500_000_000),
            Some(&crius_core::stats::Memory {
                usage: 10,
                working_set: 8,
                available: None,
                rss: 5,
                page_faults: 3,
                major_page_faults: 1,
            }),
        );
        out.push("container_network_receive_bytes_total", &["eth0"], 7);
        let line = |s: u64| crius_core::stats::PsiLine {
            total_ns: s * 1_000_000_000,
            ..Default::default()
        };
        let cpu = crius_core::stats::Psi {
            some: line(4),
            full: Some(line(3)),
        };
        out.pressure(&crius_core::stats::Pressure {
            cpu: Some(cpu),
            ..Default::default()
        });
        assert_eq!(out.metrics.len(), 9);
        let stalled = out.metrics.iter().find(|m| m.name.contains("cpu_stalled"));
        assert_eq!(
            stalled.and_then(|m| m.value.as_ref()).map(|v| v.value),
            Some(3)
        );
        for m in &out.metrics {
            let desc = d.iter().find(|x| x.name == m.name).expect("a descriptor");
            assert_eq!(desc.label_keys.len(), m.label_values.len(), "{}", m.name);
            assert_eq!(&m.label_values[..3], ["c1", "app", "sha256:x"]);
        }
        let cpu = &out.metrics[0];
        assert_eq!(
            cpu.value.as_ref().map(|v| v.value),
            Some(2),
            "whole seconds"
        );
        assert_eq!(cpu.metric_type, v1::MetricType::Counter as i32);
    }
}
