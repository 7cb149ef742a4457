//! The pure part of `crius stats` and `crius pod stats`: CPU % from two
//! samples, units for people, one row per container or pod (as a table
//! line and as JSON with the raw numbers), whole frames.

use std::collections::HashMap;

use crius_cri_api::v1;
use serde_json::{Value, json};

use crate::commands::{human_size, short_id};
use crate::containers::state_name;

/// A cumulative CPU counter read at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuSample {
    /// When it was read, nanoseconds since the epoch.
    pub timestamp: i64,
    /// CPU time used since the object started, nanoseconds (all cores).
    pub usage: u64,
}

impl CpuSample {
    /// The counter of a CRI CPU usage, if it has one and a time.
    pub fn of(cpu: Option<&v1::CpuUsage>) -> Option<CpuSample> {
        let cpu = cpu?;
        let usage = cpu.usage_core_nano_seconds.as_ref()?.value;
        (cpu.timestamp > 0).then_some(CpuSample {
            timestamp: cpu.timestamp,
            usage,
        })
    }
}

/// Percent of one core used between `earlier` and `later` (200.0 is two
/// cores busy, as docker counts). None when they do not make an interval:
/// the same or an earlier time, or a counter that went back.
pub(crate) fn cpu_percent(earlier: CpuSample, later: CpuSample) -> Option<f64> {
    let elapsed = later.timestamp.checked_sub(earlier.timestamp)?;
    let used = later.usage.checked_sub(earlier.usage)?;
    (elapsed > 0).then(|| used as f64 / elapsed as f64 * 100.0)
}

/// CPU % of an object: from our previous sample of it when there is one;
/// else from the runtime's own rate (`usage_nano_cores`, over the runtime's
/// last interval), else unknown.
pub(crate) fn cpu_percent_or_rate(
    previous: Option<CpuSample>,
    now: Option<CpuSample>,
    nano_cores: Option<u64>,
) -> Option<f64> {
    match (previous, now) {
        (Some(p), Some(n)) => cpu_percent(p, n),
        (None, Some(_)) => nano_cores.map(|r| r as f64 / 1e7),
        (_, None) => None,
    }
}

/// Bytes in binary units, as docker shows memory: `512B`, `1.5KiB`,
/// `12.3MiB`, `2.0GiB`.
pub(crate) fn human_binary(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// A percentage with two decimals (`12.34%`), or `-`.
pub(crate) fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{p:.2}%"))
}

/// `f` of a value, or `-`.
fn or_dash(v: Option<u64>, f: fn(u64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn value(v: Option<&v1::UInt64Value>) -> Option<u64> {
    v.map(|v| v.value)
}

/// The memory a CRI memory usage reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Memory {
    pub working_set: Option<u64>,
    pub usage: Option<u64>,
    pub rss: Option<u64>,
    /// The limit less the working set; only with a limit.
    pub available: Option<u64>,
}

impl Memory {
    pub fn of(m: Option<&v1::MemoryUsage>) -> Memory {
        let Some(m) = m else {
            return Memory::default();
        };
        Memory {
            working_set: value(m.working_set_bytes.as_ref()),
            usage: value(m.usage_bytes.as_ref()),
            rss: value(m.rss_bytes.as_ref()),
            available: value(m.available_bytes.as_ref()),
        }
    }

    /// The limit: the working set plus what is available (the CRI
    /// reports no limit itself; the runtime gives `available` only under
    /// one).
    pub fn limit(&self) -> Option<u64> {
        self.working_set?.checked_add(self.available?)
    }

    /// The working set as a percentage of the limit.
    pub fn percent(&self) -> Option<f64> {
        let limit = self.limit().filter(|l| *l > 0)?;
        Some(self.working_set? as f64 / limit as f64 * 100.0)
    }
}

/// What a row's CPU columns need: this sample's counter, the runtime's
/// rate, and the CPU % once compared with the previous sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Cpu {
    pub sample: Option<CpuSample>,
    pub nano_cores: Option<u64>,
    pub percent: Option<f64>,
}

impl Cpu {
    pub fn of(cpu: Option<&v1::CpuUsage>) -> Cpu {
        Cpu {
            sample: CpuSample::of(cpu),
            nano_cores: cpu.and_then(|c| value(c.usage_nano_cores.as_ref())),
            percent: None,
        }
    }

    /// Sets the CPU % from the previous sample of the same object.
    pub fn compare(&mut self, previous: Option<CpuSample>) {
        self.percent = cpu_percent_or_rate(previous, self.sample, self.nano_cores);
    }

    fn json(&self) -> Value {
        json!({
            "cpuPercent": self.percent,
            "cpuUsageCoreNanoSeconds": self.sample.map(|s| s.usage),
            "cpuUsageNanoCores": self.nano_cores,
        })
    }
}

/// The pod a container belongs to, as the table names it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PodName {
    pub name: String,
    pub namespace: String,
}

/// The pods of a ListPodSandbox answer, by id.
pub(crate) fn pod_names(pods: &[v1::PodSandbox]) -> HashMap<String, PodName> {
    pods.iter()
        .map(|p| {
            let m = p.metadata.clone().unwrap_or_default();
            let name = PodName {
                name: m.name,
                namespace: m.namespace,
            };
            (p.id.clone(), name)
        })
        .collect()
}

/// One line of `crius stats`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerRow {
    pub id: String,
    pub name: String,
    pub pod_id: String,
    pub pod: Option<PodName>,
    pub state: &'static str,
    pub cpu: Cpu,
    pub memory: Memory,
    pub writable_bytes: Option<u64>,
    pub writable_inodes: Option<u64>,
}

impl ContainerRow {
    /// The row of container `c`, in pod `pod`, with its stats (none for a
    /// container the runtime has no stats of).
    pub fn new(
        c: &v1::Container,
        pod: Option<&PodName>,
        stats: Option<&v1::ContainerStats>,
    ) -> ContainerRow {
        let layer = stats.and_then(|s| s.writable_layer.as_ref());
        ContainerRow {
            id: c.id.clone(),
            name: c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            pod_id: c.pod_sandbox_id.clone(),
            pod: pod.cloned(),
            state: state_name(c.state),
            cpu: Cpu::of(stats.and_then(|s| s.cpu.as_ref())),
            memory: Memory::of(stats.and_then(|s| s.memory.as_ref())),
            writable_bytes: layer.and_then(|l| value(l.used_bytes.as_ref())),
            writable_inodes: layer.and_then(|l| value(l.inodes_used.as_ref())),
        }
    }

    /// The table's header line.
    pub fn header() -> String {
        format!(
            "{:<13} {:<20} {:<20} {:>8} {:>10} {:>10} {:>7} {:>9}",
            "CONTAINER", "NAME", "POD", "CPU %", "MEM", "MEM LIMIT", "MEM %", "WRITABLE"
        )
    }

    /// Its line of the table.
    pub fn line(&self) -> String {
        let pod = self
            .pod
            .as_ref()
            .map_or_else(|| short_id(&self.pod_id).to_string(), |p| p.name.clone());
        format!(
            "{:<13} {:<20} {:<20} {:>8} {:>10} {:>10} {:>7} {:>9}",
            short_id(&self.id),
            self.name,
            pod,
            percent(self.cpu.percent),
            or_dash(self.memory.working_set, human_binary),
            or_dash(self.memory.limit(), human_binary),
            percent(self.memory.percent()),
            or_dash(self.writable_bytes, human_size),
        )
    }

    /// The row with its raw numbers (null for what is not known).
    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "podId": self.pod_id,
            "podName": self.pod.as_ref().map(|p| &p.name),
            "podNamespace": self.pod.as_ref().map(|p| &p.namespace),
            "state": self.state,
            "memoryWorkingSetBytes": self.memory.working_set,
            "memoryUsageBytes": self.memory.usage,
            "memoryRssBytes": self.memory.rss,
            "memoryLimitBytes": self.memory.limit(),
            "writableLayerBytes": self.writable_bytes,
            "writableLayerInodes": self.writable_inodes,
        });
        merge(&mut v, self.cpu.json());
        v
    }
}

/// Adds the keys of `extra` (an object) to `v` (an object).
fn merge(v: &mut Value, extra: Value) {
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
}

/// Rows in a stable order: by pod name, then name, then id.
pub(crate) fn sort_containers(rows: &mut [ContainerRow]) {
    rows.sort_by(|a, b| {
        let pod = |r: &ContainerRow| r.pod.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        (pod(a), &a.name, &a.id).cmp(&(pod(b), &b.name, &b.id))
    });
}

/// One line of `crius pod stats`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodRow {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub cpu: Cpu,
    pub memory: Memory,
    /// CPU and memory are the sum of the containers' (the pod has no
    /// cgroup of its own to read: no cgroup parent).
    pub summed: bool,
    pub processes: Option<u64>,
    /// Its running containers (those the runtime measured with it).
    pub containers: usize,
    /// The default interface: its name, bytes received, bytes sent.
    pub network: Option<(String, Option<u64>, Option<u64>)>,
}

impl PodRow {
    pub fn new(s: &v1::PodSandboxStats) -> PodRow {
        let a = s.attributes.clone().unwrap_or_default();
        let m = a.metadata.unwrap_or_default();
        let linux = s.linux.as_ref();
        let network = linux
            .and_then(|l| l.network.as_ref())
            .and_then(|n| n.default_interface.as_ref())
            .map(|i| {
                let (rx, tx) = (value(i.rx_bytes.as_ref()), value(i.tx_bytes.as_ref()));
                (i.name.clone(), rx, tx)
            });
        let (cpu, memory, summed) = pod_usage(linux);
        PodRow {
            id: a.id,
            name: m.name,
            namespace: m.namespace,
            cpu,
            memory,
            summed,
            processes: linux
                .and_then(|l| l.process.as_ref())
                .and_then(|p| value(p.process_count.as_ref())),
            containers: linux.map_or(0, |l| l.containers.len()),
            network,
        }
    }

    pub fn header() -> String {
        format!(
            "{:<13} {:<24} {:<16} {:>8} {:>10} {:>10} {:>5} {:>9} {:>9}",
            "POD", "NAME", "NAMESPACE", "CPU %", "MEM", "CONTAINERS", "PIDS", "NET RX", "NET TX"
        )
    }

    pub fn line(&self) -> String {
        let (rx, tx) = self.network.as_ref().map_or((None, None), |n| (n.1, n.2));
        format!(
            "{:<13} {:<24} {:<16} {:>8} {:>10} {:>10} {:>5} {:>9} {:>9}",
            short_id(&self.id),
            self.name,
            self.namespace,
            percent(self.cpu.percent),
            or_dash(self.memory.working_set, human_binary),
            self.containers,
            or_dash(self.processes, |n| n.to_string()),
            or_dash(rx, human_size),
            or_dash(tx, human_size),
        )
    }

    pub fn json(&self) -> Value {
        let net = self.network.as_ref();
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "namespace": self.namespace,
            "memoryWorkingSetBytes": self.memory.working_set,
            "memoryUsageBytes": self.memory.usage,
            "memoryLimitBytes": self.memory.limit(),
            "processes": self.processes,
            "usageOfContainers": self.summed,
            "containers": self.containers,
            "networkInterface": net.map(|n| &n.0),
            "networkRxBytes": net.and_then(|n| n.1),
            "networkTxBytes": net.and_then(|n| n.2),
        });
        merge(&mut v, self.cpu.json());
        v
    }
}

/// A pod's CPU and memory: its cgroup's, else (a pod without a cgroup
/// parent, as `crius run` makes, has none to read) the sum of its
/// containers'; whether summed.
fn pod_usage(linux: Option<&v1::LinuxPodSandboxStats>) -> (Cpu, Memory, bool) {
    let Some(l) = linux else {
        return (Cpu::default(), Memory::default(), false);
    };
    let (cpu, memory) = (Cpu::of(l.cpu.as_ref()), Memory::of(l.memory.as_ref()));
    if cpu.sample.is_some() || memory.working_set.is_some() || l.containers.is_empty() {
        return (cpu, memory, false);
    }
    let cpus: Vec<Cpu> = l
        .containers
        .iter()
        .map(|c| Cpu::of(c.cpu.as_ref()))
        .collect();
    let memories: Vec<Memory> = l
        .containers
        .iter()
        .map(|c| Memory::of(c.memory.as_ref()))
        .collect();
    (Cpu::sum(&cpus), Memory::sum(&memories), true)
}

/// The sum of the values there are; None when there are none.
fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.unwrap_or(0u64).saturating_add(v)))
}

impl Cpu {
    /// The counters of several objects as one: their usage summed, read at
    /// the latest of their times.
    fn sum(cpus: &[Cpu]) -> Cpu {
        let usage = sum(cpus.iter().map(|c| c.sample.map(|s| s.usage)));
        let timestamp = cpus
            .iter()
            .filter_map(|c| c.sample.map(|s| s.timestamp))
            .max();
        Cpu {
            sample: usage
                .zip(timestamp)
                .map(|(usage, timestamp)| CpuSample { timestamp, usage }),
            nano_cores: sum(cpus.iter().map(|c| c.nano_cores)),
            percent: None,
        }
    }
}

impl Memory {
    /// Several objects' memory as one (no limit).
    fn sum(memories: &[Memory]) -> Memory {
        Memory {
            working_set: sum(memories.iter().map(|m| m.working_set)),
            usage: sum(memories.iter().map(|m| m.usage)),
            rss: sum(memories.iter().map(|m| m.rss)),
            available: None,
        }
    }
}

/// What both tables have in common, for the sampling loop.
pub(crate) trait Row {
    /// The key of the list in a JSON sample (`containers`, `pods`).
    const KIND: &'static str;
    fn key(&self) -> &str;
    fn cpu_mut(&mut self) -> &mut Cpu;
    fn header() -> String;
    fn line(&self) -> String;
    fn json(&self) -> Value;
}

impl Row for ContainerRow {
    const KIND: &'static str = "containers";
    fn key(&self) -> &str {
        &self.id
    }
    fn cpu_mut(&mut self) -> &mut Cpu {
        &mut self.cpu
    }
    fn header() -> String {
        ContainerRow::header()
    }
    fn line(&self) -> String {
        ContainerRow::line(self)
    }
    fn json(&self) -> Value {
        ContainerRow::json(self)
    }
}

impl Row for PodRow {
    const KIND: &'static str = "pods";
    fn key(&self) -> &str {
        &self.id
    }
    fn cpu_mut(&mut self) -> &mut Cpu {
        &mut self.cpu
    }
    fn header() -> String {
        PodRow::header()
    }
    fn line(&self) -> String {
        PodRow::line(self)
    }
    fn json(&self) -> Value {
        PodRow::json(self)
    }
}

/// Gives each row its CPU % against `previous` (the last sample's
/// counters by key); the counters of these rows, for the next.
pub(crate) fn compare<R: Row>(
    rows: &mut [R],
    previous: &HashMap<String, CpuSample>,
) -> HashMap<String, CpuSample> {
    let mut next = HashMap::new();
    for r in rows.iter_mut() {
        let earlier = previous.get(r.key()).copied();
        let key = r.key().to_string();
        let cpu = r.cpu_mut();
        cpu.compare(earlier);
        if let Some(s) = cpu.sample {
            next.insert(key, s);
        }
    }
    next
}

/// How a frame is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// One JSON object per sample, one line.
    Json,
    /// A table; `clear`: the terminal cleared and the cursor homed first,
    /// so each table replaces the last (as docker stats draws).
    Table { clear: bool },
}

/// ANSI: clear the screen, cursor to the top left.
pub(crate) const CLEAR_HOME: &str = "\x1b[2J\x1b[H";

/// One sample as written: a JSON line with `timestamp` (ns), or a table.
pub(crate) fn frame<R: Row>(rows: &[R], timestamp: i64, style: Style) -> String {
    match style {
        Style::Json => {
            let list: Vec<Value> = rows.iter().map(Row::json).collect();
            let mut v = json!({ "timestamp": timestamp });
            v[R::KIND] = Value::Array(list);
            format!("{v}\n")
        }
        Style::Table { clear } => {
            let mut out = String::from(if clear { CLEAR_HOME } else { "" });
            out.push_str(&R::header());
            out.push('\n');
            for r in rows {
                out.push_str(&r.line());
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn at(timestamp: i64, usage: u64) -> CpuSample {
        CpuSample { timestamp, usage }
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        // Half a second of CPU in one second: 50 % of a core.
        assert_eq!(
            cpu_percent(at(SEC, 0), at(2 * SEC, 500_000_000)),
            Some(50.0)
        );
        // Two cores busy for two seconds.
        assert_eq!(
            cpu_percent(at(0, 0), at(2 * SEC, 4 * SEC as u64)),
            Some(200.0)
        );
        assert_eq!(cpu_percent(at(SEC, 7), at(2 * SEC, 7)), Some(0.0));
        // No interval, or a counter that went back: unknown.
        assert_eq!(cpu_percent(at(SEC, 0), at(SEC, 10)), None);
        assert_eq!(cpu_percent(at(2 * SEC, 0), at(SEC, 10)), None);
        assert_eq!(cpu_percent(at(0, 10), at(SEC, 5)), None);
    }

    #[test]
    fn without_a_previous_sample_the_runtimes_rate_is_taken() {
        let now = Some(at(2 * SEC, SEC as u64));
        assert_eq!(
            cpu_percent_or_rate(Some(at(SEC, 0)), now, Some(1)),
            Some(100.0)
        );
        // 250 million nano-cores: a quarter of a core.
        assert_eq!(
            cpu_percent_or_rate(None, now, Some(250_000_000)),
            Some(25.0)
        );
        assert_eq!(cpu_percent_or_rate(None, now, None), None);
        assert_eq!(cpu_percent_or_rate(Some(at(SEC, 0)), None, Some(5)), None);
    }

    #[test]
    fn cpu_samples_need_a_counter_and_a_time() {
        let cpu = |timestamp, usage: Option<u64>| v1::CpuUsage {
            timestamp,
            usage_core_nano_seconds: usage.map(|value| v1::UInt64Value { value }),
            ..Default::default()
        };
        assert_eq!(CpuSample::of(Some(&cpu(5, Some(9)))), Some(at(5, 9)));
        assert_eq!(CpuSample::of(Some(&cpu(0, Some(9)))), None);
        assert_eq!(CpuSample::of(Some(&cpu(5, None))), None);
        assert_eq!(CpuSample::of(None), None);
    }

    #[test]
    fn units() {
        assert_eq!(human_binary(0), "0B");
        assert_eq!(human_binary(1023), "1023B");
        assert_eq!(human_binary(1536), "1.5KiB");
        assert_eq!(human_binary(64 << 20), "64.0MiB");
        assert_eq!(human_binary(3 << 30), "3.0GiB");
        assert_eq!(human_binary(u64::MAX), "16777216.0TiB");
        assert_eq!(percent(Some(12.345)), "12.35%");
        assert_eq!(percent(None), "-");
    }

    fn uint(value: u64) -> Option<v1::UInt64Value> {
        Some(v1::UInt64Value { value })
    }

    #[test]
    fn memory_limit_is_working_set_plus_available() {
        let m = Memory::of(Some(&v1::MemoryUsage {
            working_set_bytes: uint(16 << 20),
            available_bytes: uint(48 << 20),
            ..Default::default()
        }));
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.percent(), Some(25.0));
        let unlimited = Memory::of(Some(&v1::MemoryUsage {
            working_set_bytes: uint(16 << 20),
            ..Default::default()
        }));
        assert_eq!((unlimited.limit(), unlimited.percent()), (None, None));
        assert_eq!(Memory::of(None), Memory::default());
    }

    fn busy() -> (v1::Container, v1::ContainerStats) {
        let c = v1::Container {
            id: "0123456789abcdef0123".into(),
            pod_sandbox_id: "fedcba9876543210fedc".into(),
            metadata: Some(v1::ContainerMetadata {
                name: "busy".into(),
                attempt: 0,
            }),
            state: v1::ContainerState::ContainerRunning as i32,
            ..Default::default()
        };
        let stats = v1::ContainerStats {
            cpu: Some(v1::CpuUsage {
                timestamp: 2 * SEC,
                usage_core_nano_seconds: uint(SEC as u64),
                usage_nano_cores: uint(900_000_000),
                ..Default::default()
            }),
            memory: Some(v1::MemoryUsage {
                working_set_bytes: uint(1536),
                available_bytes: uint((1 << 20) - 1536),
                usage_bytes: uint(4096),
                ..Default::default()
            }),
            writable_layer: Some(v1::FilesystemUsage {
                used_bytes: uint(8_400_000),
                inodes_used: uint(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        (c, stats)
    }

    #[test]
    fn a_container_row_as_a_line_and_as_json() {
        let (c, stats) = busy();
        let pod = PodName {
            name: "web".into(),
            namespace: "default".into(),
        };
        let mut rows = vec![ContainerRow::new(&c, Some(&pod), Some(&stats))];
        let previous = HashMap::from([(c.id.clone(), at(SEC, 0))]);
        let next = compare(&mut rows, &previous);
        assert_eq!(next.get(&c.id), Some(&at(2 * SEC, SEC as u64)));
        let line = rows[0].line();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "0123456789abc",
                "busy",
                "web",
                "100.00%",
                "1.5KiB",
                "1.0MiB",
                "0.15%",
                "8.4MB"
            ]
        );
        let j = rows[0].json();
        assert_eq!(j["cpuPercent"], 100.0);
        assert_eq!(j["cpuUsageCoreNanoSeconds"], SEC);
        assert_eq!(j["memoryWorkingSetBytes"], 1536);
        assert_eq!(j["memoryLimitBytes"], 1 << 20);
        assert_eq!(j["podName"], "web");
        assert_eq!(j["state"], "Running");
        assert_eq!(j["writableLayerInodes"], 3);
    }

    #[test]
    fn a_stopped_container_without_stats_shows_dashes() {
        let (mut c, _) = busy();
        c.state = v1::ContainerState::ContainerExited as i32;
        let mut rows = vec![ContainerRow::new(&c, None, None)];
        assert!(compare(&mut rows, &HashMap::new()).is_empty());
        let cols: Vec<String> = rows[0]
            .line()
            .split_whitespace()
            .map(String::from)
            .collect();
        // The pod by its short id when it is not listed.
        assert_eq!(cols[2], "fedcba9876543");
        assert!(cols[3..].iter().all(|c| c == "-"), "{cols:?}");
        let j = rows[0].json();
        assert!(j["cpuPercent"].is_null() && j["memoryWorkingSetBytes"].is_null());
        assert_eq!(j["state"], "Exited");
    }

    #[test]
    fn containers_sort_by_pod_then_name() {
        let (c, _) = busy();
        let row = |pod: &str, name: &str| {
            let mut r = ContainerRow::new(&c, None, None);
            r.name = name.into();
            r.pod = Some(PodName {
                name: pod.into(),
                namespace: String::new(),
            });
            r
        };
        let mut rows = vec![row("b", "a"), row("a", "z"), row("a", "b")];
        sort_containers(&mut rows);
        let order: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["b", "z", "a"]);
    }

    fn pod_stats() -> v1::PodSandboxStats {
        let (_, container) = busy();
        v1::PodSandboxStats {
            attributes: Some(v1::PodSandboxAttributes {
                id: "fedcba9876543210fedc".into(),
                metadata: Some(v1::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "shop".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            linux: Some(v1::LinuxPodSandboxStats {
                cpu: container.cpu,
                memory: container.memory,
                process: Some(v1::ProcessUsage {
                    timestamp: 1,
                    process_count: uint(3),
                }),
                network: Some(v1::NetworkUsage {
                    timestamp: 1,
                    default_interface: Some(v1::NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: uint(1500),
                        tx_bytes: uint(2_000_000),
                        ..Default::default()
                    }),
                    interfaces: vec![],
                }),
                containers: vec![container.clone(), container],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_row_counts_containers_and_the_default_interface() {
        let mut rows = vec![PodRow::new(&pod_stats())];
        compare(&mut rows, &HashMap::new());
        let cols: Vec<String> = rows[0]
            .line()
            .split_whitespace()
            .map(String::from)
            .collect();
        // No previous sample: the runtime's rate, 0.9 of a core.
        assert_eq!(
            cols,
            [
                "fedcba9876543",
                "web",
                "shop",
                "90.00%",
                "1.5KiB",
                "2",
                "3",
                "1.5kB",
                "2.0MB"
            ]
        );
        let j = rows[0].json();
        assert_eq!(j["containers"], 2);
        assert_eq!(j["networkInterface"], "eth0");
        assert_eq!(j["networkTxBytes"], 2_000_000);
        assert_eq!(j["namespace"], "shop");
        let bare = PodRow::new(&v1::PodSandboxStats::default());
        let cols: Vec<String> = bare.line().split_whitespace().map(String::from).collect();
        // No id or names: the empty columns are blank.
        assert_eq!(cols, ["-", "-", "0", "-", "-", "-"]);
    }

    #[test]
    fn a_pod_without_a_cgroup_of_its_own_sums_its_containers() {
        let mut stats = pod_stats();
        let linux = stats.linux.as_mut().expect("linux");
        (linux.cpu, linux.memory) = (None, None);
        let mut later = linux.containers[1].clone();
        later.cpu = Some(v1::CpuUsage {
            timestamp: 3 * SEC,
            usage_core_nano_seconds: uint(5),
            usage_nano_cores: None,
            ..Default::default()
        });
        later.memory = None;
        linux.containers[1] = later;
        let row = PodRow::new(&stats);
        assert!(row.summed);
        let sample = row.cpu.sample.expect("summed counter");
        assert_eq!(sample, at(3 * SEC, SEC as u64 + 5));
        assert_eq!(row.cpu.nano_cores, Some(900_000_000));
        assert_eq!(row.memory.working_set, Some(1536));
        assert_eq!(row.memory.limit(), None);
        assert_eq!(row.json()["usageOfContainers"], true);
        // With its own cgroup's numbers, those.
        let own = PodRow::new(&pod_stats());
        assert!(!own.summed && own.memory.limit() == Some(1 << 20));
        assert_eq!(sum([None, None].into_iter()), None);
        assert_eq!(sum([Some(u64::MAX), Some(1)].into_iter()), Some(u64::MAX));
    }

    #[test]
    fn frames_are_one_json_line_or_a_table() {
        let rows = vec![PodRow::new(&pod_stats())];
        let json_line = frame(&rows, 42, Style::Json);
        assert_eq!(json_line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&json_line).expect("json");
        assert_eq!(v["timestamp"], 42);
        assert_eq!(v["pods"][0]["name"], "web");
        let table = frame(&rows, 42, Style::Table { clear: false });
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("POD ") && lines[0].contains("NET TX"),
            "{table}"
        );
        assert!(lines[1].starts_with("fedcba9876543 "), "{table}");
        assert_eq!(lines.len(), 2);
        let redrawn = frame(&rows, 42, Style::Table { clear: true });
        assert!(redrawn.starts_with(CLEAR_HOME) && redrawn.ends_with(&table));
        let empty: Vec<ContainerRow> = vec![];
        assert_eq!(
            frame(&empty, 7, Style::Json),
            "{\"containers\":[],\"timestamp\":7}\n"
        );
    }
}
