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
        }
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

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
