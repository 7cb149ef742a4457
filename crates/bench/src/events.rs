//! The cost of one GetContainerEvents subscriber (kubelet's evented PLEG)
//! to crius during pod churn: the same churn without a subscriber, then
//! with one reading every event; criusd's CPU and RSS for each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crius_cri_api::v1;

use crate::bench::Target;
use crate::pods::{PodSettings, Workload, start_pod, teardown};
use crate::report::{EndpointResult, Metric, ScenarioReport};

/// What one half measured.
#[derive(Debug, Default, Clone)]
struct Half {
    cycles: usize,
    cpu_s: f64,
    rss_kib: u64,
    events: u64,
    /// The first failure of a worker.
    error: Option<String>,
}

/// Pod cycles at concurrency `s.c` for `s.churn / 2` each, without and
/// then with a subscriber, on `t` (crius: containerd 1.6's CRI has no
/// GetContainerEvents).
pub async fn subscriber_cost(t: &Target, w: &Workload, s: PodSettings) -> ScenarioReport {
    let half = s.churn / 2;
    let without = churn_half(t, w, s.c, half, false).await;
    let with = churn_half(t, w, s.c, half, true).await;
    let row = |name: &str, unit: &str, f: fn(&Half) -> f64| {
        Metric::value(
            name,
            unit,
            vec![
                (
                    "A0".into(),
                    "crius, no subscriber".into(),
                    Some(f(&without)),
                ),
                ("A1".into(), "crius, one subscriber".into(), Some(f(&with))),
            ],
        )
    };
    let per_cycle = |h: &Half| h.cpu_s * 1e3 / h.cycles.max(1) as f64;
    let metrics = vec![
        row("pod cycles", "count", |h| h.cycles as f64),
        row("criusd CPU per pod cycle", "ms", per_cycle),
        row("criusd CPU", "s", |h| h.cpu_s),
        row("criusd RSS after", "MiB", |h| h.rss_kib as f64 / 1024.0),
        row("events received", "count", |h| h.events as f64),
    ];
    let detail = format!(
        "{} s of pod churn at concurrency {} without, then {} s with one GetContainerEvents subscriber reading every event",
        half.as_secs(),
        s.c,
        half.as_secs()
    );
    let results = vec![EndpointResult {
        endpoint: t.name.clone(),
        label: t.label.clone(),
        samples_ms: vec![],
        summary: None,
        size_bytes: None,
        mb_per_s_p50: None,
        warm_samples: 0,
        error: without.error.clone().or(with.error.clone()),
        notes: vec![],
    }];
    ScenarioReport::with_metrics("events", "small", None, detail, results, metrics, vec![])
}

async fn churn_half(t: &Target, w: &Workload, c: usize, secs: Duration, subscribe: bool) -> Half {
    let seen = Arc::new(AtomicU64::new(0));
    let reader = if subscribe {
        let mut cri = t.cri.clone();
        let seen = seen.clone();
        Some(tokio::spawn(async move {
            let Ok(stream) = cri
                .runtime
                .get_container_events(v1::GetEventsRequest {})
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(_)) = stream.message().await {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }))
    } else {
        None
    };
    let cpu0 = daemon_cpu(t);
    let deadline = Instant::now() + secs;
    let workers = futures::future::join_all((0..c.max(1)).map(|_| async {
        let mut n = 0;
        while Instant::now() < deadline {
            let pod = match start_pod(&t.cri, w, &t.name, "events").await {
                Ok((pod, _)) => pod,
                Err(e) => return (n, Some(e)),
            };
            if let Err(e) = teardown(&t.cri, &pod).await {
                return (n, Some(e));
            }
            n += 1;
        }
        (n, None)
    }))
    .await;
    let cycles = workers.iter().map(|(n, _)| n).sum();
    let error = workers.into_iter().find_map(|(_, e)| e);
    // The last events arrive just after the last removal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(r) = reader {
        r.abort();
    }
    Half {
        cycles,
        cpu_s: daemon_cpu(t) - cpu0,
        rss_kib: t
            .local
            .as_ref()
            .and_then(|l| l.snapshot().daemon)
            .map_or(0, |d| d.rss_kib),
        events: seen.load(Ordering::Relaxed),
        error,
    }
}

/// criusd's own CPU seconds so far.
fn daemon_cpu(t: &Target) -> f64 {
    t.local
        .as_ref()
        .and_then(|l| l.snapshot().daemon)
        .map_or(0.0, |d| d.cpu_s)
}
