//! crius' Prometheus metrics. One process-wide set of families, like
//! `tracing`'s subscriber: each layer records what it alone sees (the gRPC
//! edge its RPCs, the containerd adapter its calls, CNI its plugin runs,
//! the image store its pulls) into [`global()`], and the daemon serves it
//! ([`serve`]) when `[metrics] address` is set. Recording is a few atomic
//! operations whether or not anyone scrapes. Label values come from fixed
//! sets (RPC names, gRPC codes, containerd method paths, states, the
//! configured runtime handlers), never from what a client names, so the
//! number of series stays bounded.
//!
//! The names follow Prometheus' conventions (`crius_` prefix, base units,
//! `_total` for counters, `_seconds` for durations); README's "Metrics"
//! section lists each one.

mod census;
mod serve;

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use census::{Census, Count};
pub use serve::{ServeError, bind, serve};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CniLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn buckets(start: f64, n: u16) -> Histogram {
    Histogram::new(exponential_buckets(start, 2.0, n))
}

/// 0.5 ms to ~16 s: CRI calls.
fn rpc_histogram() -> Histogram {
    buckets(0.0005, 16)
}

/// 0.2 ms to ~6.5 s: containerd calls.
fn containerd_histogram() -> Histogram {
    buckets(0.0002, 16)
}

/// 5 ms to ~20 s: CNI plugin chains.
fn cni_histogram() -> Histogram {
    buckets(0.005, 12)
}

/// 50 ms to ~27 min: image pulls.
fn pull_histogram() -> Histogram {
    buckets(0.05, 15)
}

/// What a CNI run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniOp {
    Add,
    Del,
}

/// The streaming sessions counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::Exec => "exec",
            StreamKind::Attach => "attach",
            StreamKind::PortForward => "portforward",
        }
    }
}

/// Every family crius records, in one registry.
pub struct Metrics {
    registry: Registry,
    rpcs: Family<Rpc, Counter>,
    rpc_seconds: Histograms<Method>,
    containerd_seconds: Histograms<Call>,
    cni: Family<CniLabels, Counter>,
    cni_seconds: Histograms<Op>,
    pulls: Family<Outcome, Counter>,
    pull_bytes: Counter,
    pull_seconds: Histogram,
    recovery_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    sessions: Family<Kind, Counter>,
    sessions_open: Family<Kind, Gauge>,
    census: Arc<OnceLock<Box<dyn Census>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(env!("CARGO_PKG_VERSION")));

/// The process' metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    /// A fresh set of families (the process uses [`global()`]; tests make
    /// their own).
    pub fn new(version: &str) -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            rpcs: Family::default(),
            rpc_seconds: Family::new_with_constructor(rpc_histogram),
            containerd_seconds: Family::new_with_constructor(containerd_histogram),
            cni: Family::default(),
            cni_seconds: Family::new_with_constructor(cni_histogram),
            pulls: Family::default(),
            pull_bytes: Counter::default(),
            pull_seconds: pull_histogram(),
            recovery_seconds: Gauge::default(),
            sessions: Family::default(),
            sessions_open: Family::default(),
            census: Arc::default(),
        };
        m.register(version);
        m
    }

    fn register(&mut self, version: &str) {
        let r = &mut self.registry;
        let info = Info::new(vec![("version", version.to_string())]);
        r.register("crius_build", "criusd's version", info);
        r.register(
            "crius_grpc_requests",
            "CRI (and crius.v1.Admin) requests answered, by method and gRPC code",
            self.rpcs.clone(),
        );
        r.register_with_unit(
            "crius_grpc_request_duration",
            "Time to answer a CRI request, by method",
            Unit::Seconds,
            self.rpc_seconds.clone(),
        );
        r.register_with_unit(
            "crius_containerd_request_duration",
            "Time containerd took to answer (response headers), by gRPC method",
            Unit::Seconds,
            self.containerd_seconds.clone(),
        );
        r.register(
            "crius_cni_operations",
            "CNI plugin chains run (op add or del), by result",
            self.cni.clone(),
        );
        r.register_with_unit(
            "crius_cni_operation_duration",
            "Time a CNI plugin chain took, by op",
            Unit::Seconds,
            self.cni_seconds.clone(),
        );
        r.register(
            "crius_image_pulls",
            "Image pulls ended, by result (ok or failed)",
            self.pulls.clone(),
        );
        r.register_with_unit(
            "crius_image_pull",
            "Bytes of image layers fetched from registries",
            Unit::Bytes,
            self.pull_bytes.clone(),
        );
        r.register_with_unit(
            "crius_image_pull_duration",
            "Time an image pull took, failed ones included",
            Unit::Seconds,
            self.pull_seconds.clone(),
        );
        r.register_with_unit(
            "crius_recovery_duration",
            "Time the last start-up recovery took, until RPCs were served",
            Unit::Seconds,
            self.recovery_seconds.clone(),
        );
        r.register(
            "crius_streaming_sessions",
            "Streaming sessions begun (exec, attach, portforward)",
            self.sessions.clone(),
        );
        r.register(
            "crius_streaming_sessions_open",
            "Streaming sessions open now",
            self.sessions_open.clone(),
        );
        r.register_collector(Box::new(census::Collector(self.census.clone())));
    }

    /// One RPC answered with `code` (a gRPC code name) after `elapsed`.
    pub fn rpc(&self, method: &'static str, code: &'static str, elapsed: Duration) {
        self.rpcs.get_or_create(&Rpc { method, code }).inc();
        self.rpc_seconds
            .get_or_create(&Method { method })
            .observe(elapsed.as_secs_f64());
    }

    /// One containerd call (`method`: the gRPC path's last two parts, as
    /// `Tasks/Create`) answered after `elapsed`.
    pub fn containerd_call(&self, method: &str, elapsed: Duration) {
        let labels = Call {
            method: method.to_string(),
        };
        self.containerd_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// One CNI plugin chain run.
    pub fn cni(&self, op: CniOp, ok: bool, elapsed: Duration) {
        let op = match op {
            CniOp::Add => "add",
            CniOp::Del => "del",
        };
        let result = if ok { "ok" } else { "failed" };
        self.cni.get_or_create(&CniLabels { op, result }).inc();
        self.cni_seconds
            .get_or_create(&Op { op })
            .observe(elapsed.as_secs_f64());
    }

    /// One image pull ended.
    pub fn image_pull(&self, ok: bool, elapsed: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.pulls.get_or_create(&Outcome { result }).inc();
        self.pull_seconds.observe(elapsed.as_secs_f64());
    }

    /// Bytes fetched from a registry.
    pub fn pulled_bytes(&self, bytes: u64) {
        self.pull_bytes.inc_by(bytes);
    }

    /// The start-up recovery took `elapsed`.
    pub fn recovery(&self, elapsed: Duration) {
        self.recovery_seconds.set(elapsed.as_secs_f64());
    }

    /// A streaming session begins; it counts as open until the answer is
    /// dropped.
    pub fn session(&self, kind: StreamKind) -> SessionOpen {
        let kind = Kind { kind: kind.label() };
        self.sessions.get_or_create(&kind).inc();
        let open = self.sessions_open.get_or_create(&kind).clone();
        open.inc();
        SessionOpen(open)
    }

    /// Where the pod and container gauges come from (set once, by the
    /// daemon once its pods are recovered; before that they are absent).
    pub fn set_census(&self, census: Box<dyn Census>) {
        if self.census.set(census).is_err() {
            tracing::debug!("the metrics census was set already");
        }
    }

    /// The OpenMetrics text of every family (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding the metrics: {e}");
        }
        out
    }
}

/// An open streaming session (see [`Metrics::session`]).
#[derive(Debug)]
pub struct SessionOpen(Gauge);

impl Drop for SessionOpen {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
