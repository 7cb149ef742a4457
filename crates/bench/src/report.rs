//! The report: a table per scenario, or the same as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bench::Settings;
use crate::machine::Machine;
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize)]
pub struct EndpointInfo {
    pub name: String,
    pub label: String,
    pub address: String,
    /// From the CRI Version call.
    pub runtime_name: String,
    pub runtime_version: String,
    pub error: Option<String>,
}

/// One endpoint's figures in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointResult {
    pub endpoint: String,
    pub label: String,
    /// Every measured sample in run order (pull scenarios only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples_ms: Vec<f64>,
    /// `None` when nothing was measured (see `error`).
    pub summary: Option<Summary>,
    /// Bytes downloaded per pull (compressed image size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// size / p50 wall time, in MB/s (10^6 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s_p50: Option<f64>,
    /// Samples whose image blobs were still present when the pull started.
    pub warm_samples: usize,
    /// Why this endpoint's measurement stopped (the first failure).
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// First endpoint / second endpoint (> 1: the first is slower).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub numerator: String,
    pub denominator: String,
    pub p50: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// `pull`, `image_status` or `list_images`.
    pub scenario: String,
    /// Which image (`big`, `small`, or a reference).
    pub image: String,
    pub reference: Option<String>,
    pub size_bytes: Option<u64>,
    pub layers: Option<usize>,
    /// Measured runs (pull) or calls (queries) per endpoint.
    pub runs: usize,
    pub warmup: usize,
    pub results: Vec<EndpointResult>,
    /// results[0] / results[1], when both measured something.
    pub ratio: Option<Ratio>,
    /// What was run, in words (scenarios with metrics).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The figures of the pod, footprint and floor scenarios: one row per
    /// metric, one value per endpoint. Their `results` carry the headline
    /// latency (the summary `ratio` is computed from) and the errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Whether a metric is a latency distribution or one number per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Latency,
    Value,
}

/// One row of a scenario's table.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: String,
    /// `ms`, `pods/s`, `MiB`, `count`, ...
    pub unit: String,
    pub kind: MetricKind,
    pub values: Vec<MetricValue>,
    /// values[0] / values[1]: of the p50 for latencies, of the value otherwise.
    pub ratio: Option<f64>,
    /// Latencies: values[0] / values[1] of the p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_p99: Option<f64>,
}

/// One endpoint's figure of a metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricValue {
    pub endpoint: String,
    pub label: String,
    /// Latencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

fn quotient(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

impl Metric {
    /// A latency row: `(endpoint, label, samples summary)` per endpoint.
    pub fn latency(name: &str, values: Vec<(String, String, Option<Summary>)>) -> Metric {
        let values: Vec<MetricValue> = values
            .into_iter()
            .map(|(endpoint, label, summary)| MetricValue {
                endpoint,
                label,
                summary,
                value: None,
            })
            .collect();
        let (ratio, ratio_p99) = match values.as_slice() {
            [a, b] => (
                quotient(a.summary.map(|s| s.p50_ms), b.summary.map(|s| s.p50_ms)),
                quotient(a.summary.map(|s| s.p99_ms), b.summary.map(|s| s.p99_ms)),
            ),
            _ => (None, None),
        };
        Metric {
            name: name.to_owned(),
            unit: "ms".to_owned(),
            kind: MetricKind::Latency,
            values,
            ratio,
            ratio_p99,
        }
    }

    /// A value row: `(endpoint, label, value)` per endpoint.
    pub fn value(name: &str, unit: &str, values: Vec<(String, String, Option<f64>)>) -> Metric {
        let values: Vec<MetricValue> = values
            .into_iter()
            .map(|(endpoint, label, value)| MetricValue {
                endpoint,
                label,
                summary: None,
                value: value.filter(|v| v.is_finite()),
            })
            .collect();
        let ratio = match values.as_slice() {
            [a, b] => quotient(a.value, b.value),
            _ => None,
        };
        Metric {
            name: name.to_owned(),
            unit: unit.to_owned(),
            kind: MetricKind::Value,
            values,
            ratio,
            ratio_p99: None,
        }
    }
}

impl ScenarioReport {
    pub fn new(
        scenario: &str,
        image: &str,
        reference: Option<String>,
        size_bytes: Option<u64>,
        layers: Option<usize>,
        s: Settings,
        results: Vec<EndpointResult>,
    ) -> Self {
        let ratio = match results.as_slice() {
            [a, b] => match (a.summary, b.summary) {
                (Some(x), Some(y)) if y.p50_ms > 0.0 && y.min_ms > 0.0 && y.max_ms > 0.0 => {
                    Some(Ratio {
                        numerator: a.endpoint.clone(),
                        denominator: b.endpoint.clone(),
                        p50: x.p50_ms / y.p50_ms,
                        min: x.min_ms / y.min_ms,
                        max: x.max_ms / y.max_ms,
                    })
                }
                _ => None,
            },
            _ => None,
        };
        ScenarioReport {
            scenario: scenario.to_owned(),
            image: image.to_owned(),
            reference,
            size_bytes,
            layers,
            runs: s.runs,
            warmup: s.warmup,
            results,
            ratio,
            detail: String::new(),
            metrics: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A scenario reported as metrics (pod start, churn, scale, footprint,
    /// floor). `results` carry each endpoint's headline latency and error.
    pub fn with_metrics(
        scenario: &str,
        image: &str,
        reference: Option<String>,
        detail: String,
        results: Vec<EndpointResult>,
        metrics: Vec<Metric>,
        notes: Vec<String>,
    ) -> Self {
        let mut s = ScenarioReport::new(
            scenario,
            image,
            reference,
            None,
            None,
            Settings {
                runs: 0,
                warmup: 0,
                calls: 0,
            },
            results,
        );
        s.detail = detail;
        s.metrics = metrics;
        s.notes = notes;
        s
    }

    pub fn errors(&self) -> impl Iterator<Item = String> + '_ {
        self.results.iter().filter_map(move |r| {
            r.error.as_ref().map(|e| {
                format!(
                    "{} {} on {} ({}): {e}",
                    self.scenario, self.image, r.endpoint, r.label
                )
            })
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    /// `compare` or `pull`.
    pub mode: String,
    pub machine: Machine,
    pub endpoints: Vec<EndpointInfo>,
    pub scenarios: Vec<ScenarioReport>,
    /// Every endpoint error, in one place.
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(
        mode: &str,
        machine: Machine,
        endpoints: Vec<EndpointInfo>,
        scenarios: Vec<ScenarioReport>,
        mut notes: Vec<String>,
    ) -> Report {
        // The end figure includes the benchmark's own load: judge by the start.
        let busy = machine.load_average_start[0];
        if busy > 0.5 * machine.cores as f64 {
            notes.push(format!(
                "the machine was busy (1-min load average {busy:.2} at start, on {} cores): figures are noisy; \
                 only the ratio of alternated runs is meaningful",
                machine.cores
            ));
        }
        let errors = endpoints
            .iter()
            .filter_map(|e| {
                e.error
                    .as_ref()
                    .map(|m| format!("{} ({}): {m}", e.name, e.label))
            })
            .chain(scenarios.iter().flat_map(|s| s.errors()))
            .collect();
        Report {
            tool: format!("crius-bench {}", env!("CARGO_PKG_VERSION")),
            mode: mode.to_owned(),
            machine,
            endpoints,
            scenarios,
            errors,
            notes,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "machine: {}", self.machine.line());
        for e in &self.endpoints {
            let _ = writeln!(
                out,
                "endpoint {} = {} at {} ({} {})",
                e.name,
                e.label,
                e.address,
                if e.runtime_name.is_empty() {
                    "?"
                } else {
                    &e.runtime_name
                },
                e.runtime_version
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for s in &self.scenarios {
            let _ = writeln!(out);
            if !s.metrics.is_empty() || !s.detail.is_empty() {
                metrics_table(&mut out, s);
                continue;
            }
            let mut title = format!("== {} {}", s.scenario, s.image);
            let mut parts = Vec::new();
            if let Some(r) = s.reference.as_ref().filter(|r| **r != s.image) {
                parts.push(r.clone());
            }
            if let Some(size) = s.size_bytes {
                parts.push(format!("{:.1} MB compressed", size as f64 / 1e6));
            }
            if let Some(l) = s.layers {
                parts.push(format!("{l} layers"));
            }
            if !parts.is_empty() {
                let _ = write!(title, " ({})", parts.join(", "));
            }
            if s.scenario == "pull" {
                let _ = write!(title, ": {} cold pulls", s.runs);
                if s.warmup > 0 {
                    let _ = write!(title, " after {} warmup", s.warmup);
                }
            } else {
                let _ = write!(title, ": {} calls", s.runs);
            }
            let _ = writeln!(out, "{title}");
            let pull = s.scenario == "pull";
            let w = s
                .results
                .iter()
                .map(|r| r.endpoint.len() + 1 + r.label.len())
                .chain([12])
                .max()
                .unwrap_or(12);
            let _ = writeln!(
                out,
                "{:<w$} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "endpoint",
                "p50 ms",
                "min ms",
                "max ms",
                "p99 ms",
                if pull { "MB/s p50" } else { "" }
            );
            for r in &s.results {
                let name = format!("{} {}", r.endpoint, r.label);
                match r.summary {
                    Some(sum) => {
                        let rate = r
                            .mb_per_s_p50
                            .map(|m| format!("{m:.1}"))
                            .unwrap_or_default();
                        let _ = writeln!(
                            out,
                            "{name:<w$} {:>10} {:>10} {:>10} {:>10} {rate:>10}",
                            ms(sum.p50_ms),
                            ms(sum.min_ms),
                            ms(sum.max_ms),
                            ms(sum.p99_ms),
                        );
                    }
                    None => {
                        let _ = writeln!(out, "{name:<w$} {:>10}", "-");
                    }
                }
                if let Some(e) = &r.error {
                    let _ = writeln!(out, "{:<w$}   error: {e}", "");
                }
                for n in &r.notes {
                    let _ = writeln!(out, "{:<w$}   note: {n}", "");
                }
            }
            match &s.ratio {
                Some(q) => {
                    let _ = writeln!(
                        out,
                        "{:<w$} {:>10} {:>10} {:>10}",
                        format!("ratio {}/{}", q.numerator, q.denominator),
                        format!("{:.2}", q.p50),
                        format!("{:.2}", q.min),
                        format!("{:.2}", q.max),
                    );
                }
                None => {
                    let _ = writeln!(out, "{:<w$} {:>10}", "ratio", "n/a");
                }
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nerrors:");
            for e in &self.errors {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }
}

/// The endpoints (columns) of `metrics`, in order of appearance.
fn columns(metrics: &[&Metric]) -> Vec<(String, String)> {
    let mut cols: Vec<(String, String)> = Vec::new();
    for v in metrics.iter().flat_map(|m| &m.values) {
        if !cols.iter().any(|(e, _)| *e == v.endpoint) {
            cols.push((v.endpoint.clone(), v.label.clone()));
        }
    }
    cols
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_owned())
}

fn ratio_text(v: f64) -> String {
    format!("{v:.2}")
}

/// A value for the table: counts whole, others with about three
/// significant digits.
fn num(v: f64, unit: &str) -> String {
    let a = v.abs();
    if unit == "count" || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The table of a scenario reported as metrics: latencies (p50/p90/p99/n
/// per endpoint, ratios of p50 and p99), then values (one per endpoint,
/// ratio).
fn metrics_table(out: &mut String, s: &ScenarioReport) {
    let _ = write!(out, "== {}", s.scenario);
    if !s.detail.is_empty() {
        let _ = write!(out, ": {}", s.detail);
    }
    let _ = writeln!(out);
    let head_of = |cols: &[(String, String)]| {
        if cols.len() == 2 {
            format!("{}/{}", cols[0].0, cols[1].0)
        } else {
            String::new()
        }
    };
    let latencies: Vec<&Metric> = s
        .metrics
        .iter()
        .filter(|m| m.kind == MetricKind::Latency)
        .collect();
    let values: Vec<&Metric> = s
        .metrics
        .iter()
        .filter(|m| m.kind == MetricKind::Value)
        .collect();
    let name_of = |m: &Metric| format!("{} ({})", m.name, m.unit);
    let w = s
        .metrics
        .iter()
        .map(|m| name_of(m).len())
        .chain([20])
        .max()
        .unwrap_or(20);
    if !latencies.is_empty() {
        let cols = columns(&latencies);
        let two = cols.len() == 2;
        let ratio_head = head_of(&cols);
        // Group header: endpoint names over their four columns.
        let group = 8 * 3 + 6;
        let mut head = format!("{:<w$}", "");
        for (e, l) in &cols {
            let mut name = format!("{e} {l}");
            name.truncate(group);
            let _ = write!(head, " {name:<group$}");
        }
        if two {
            let _ = write!(head, " {ratio_head}");
        }
        let _ = writeln!(out, "{}", head.trim_end());
        let mut sub = format!("{:<w$}", "latency");
        for _ in &cols {
            let _ = write!(sub, " {:>7} {:>7} {:>7} {:>5}", "p50", "p90", "p99", "n");
        }
        if two {
            let _ = write!(sub, " {:>7} {:>7}", "p50", "p99");
        }
        let _ = writeln!(out, "{sub}");
        for m in latencies {
            let mut line = format!("{:<w$}", name_of(m));
            for (e, _) in &cols {
                match m
                    .values
                    .iter()
                    .find(|v| v.endpoint == *e)
                    .and_then(|v| v.summary)
                {
                    Some(sum) => {
                        let _ = write!(
                            line,
                            " {:>7} {:>7} {:>7} {:>5}",
                            ms(sum.p50_ms),
                            ms(sum.p90_ms),
                            ms(sum.p99_ms),
                            sum.n
                        );
                    }
                    None => {
                        let _ = write!(line, " {:>7} {:>7} {:>7} {:>5}", "-", "-", "-", 0);
                    }
                }
            }
            if two {
                let _ = write!(
                    line,
                    " {:>7} {:>7}",
                    opt(m.ratio, ratio_text),
                    opt(m.ratio_p99, ratio_text)
                );
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if !values.is_empty() {
        let cols = columns(&values);
        let two = cols.len() == 2;
        let ratio_head = head_of(&cols);
        let cw = cols
            .iter()
            .map(|(e, l)| e.len() + 1 + l.len())
            .chain([10])
            .max()
            .unwrap_or(10);
        let mut head = format!("{:<w$}", "value");
        for (e, l) in &cols {
            let _ = write!(head, " {:>cw$}", format!("{e} {l}"));
        }
        if two {
            let _ = write!(head, " {ratio_head:>7}");
        }
        let _ = writeln!(out, "{head}");
        for m in values {
            let mut line = format!("{:<w$}", name_of(m));
            for (e, _) in &cols {
                let v = m
                    .values
                    .iter()
                    .find(|v| v.endpoint == *e)
                    .and_then(|v| v.value);
                let text = v.map_or_else(|| "-".to_owned(), |v| num(v, &m.unit));
                let _ = write!(line, " {text:>cw$}");
            }
            if two {
                let _ = write!(line, " {:>7}", opt(m.ratio, ratio_text));
            }
            let _ = writeln!(out, "{line}");
        }
    }
    for r in &s.results {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "{} {}: error: {e}", r.endpoint, r.label);
        }
        for n in &r.notes {
            let _ = writeln!(out, "{} {}: note: {n}", r.endpoint, r.label);
        }
    }
    for n in &s.notes {
        let _ = writeln!(out, "note: {n}");
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
