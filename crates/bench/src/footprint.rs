//! Scenario 5, daemon footprint: RSS and CPU of the CRI daemon and its
//! containerd idle, at M pods (from the scale scenario) and after churn
//! (from the churn scenario).
//!
//! Both sides count the same thing, containerd + CRI code: A is `criusd` +
//! its containerd (CRI plugin disabled), B is one containerd with its CRI
//! plugin. "CRI part" isolates the CRI code: `criusd` for A, and for B its
//! containerd minus A's containerd (a containerd of the same binary without
//! the CRI plugin, holding the same pods).

use std::time::Duration;

use crate::bench::Target;
use crate::pods::{ChurnOutcome, ScaleOutcome};
use crate::probe::Snapshot;
use crate::report::{EndpointResult, Metric, ScenarioReport};

/// Idle figures, per endpoint.
#[derive(Debug, Clone, Default)]
pub struct Idle {
    pub snapshot: Option<Snapshot>,
    /// CPU seconds used (daemon + containerd) over `window`.
    pub cpu_s: Option<f64>,
    pub window: Duration,
}

/// Measures every endpoint idle: a snapshot, then CPU over `window`
/// (all endpoints in the same window).
pub async fn idle(targets: &[Target], window: Duration) -> Vec<Idle> {
    let before: Vec<Option<Snapshot>> = targets
        .iter()
        .map(|t| t.local.as_ref().map(|l| l.snapshot()))
        .collect();
    tokio::time::sleep(window).await;
    targets
        .iter()
        .zip(before)
        .map(|(t, b)| {
            let after = t.local.as_ref().map(|l| l.snapshot());
            let cpu_s = match (&b, &after) {
                (Some(b), Some(a)) => Some(a.cpu_total_s() - b.cpu_total_s()),
                _ => None,
            };
            Idle {
                snapshot: after,
                cpu_s,
                window,
            }
        })
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The RSS rows of one moment: total, CRI part, containerd; all of it and
/// its anonymous part.
fn rss_rows(targets: &[Target], when: &str, snaps: &[Option<&Snapshot>]) -> Vec<Metric> {
    let vals = |f: &dyn Fn(&Snapshot) -> f64| {
        targets
            .iter()
            .zip(snaps)
            .map(|(t, s)| (t.name.clone(), t.label.clone(), s.map(f)))
            .collect::<Vec<_>>()
    };
    // B's CRI part: its containerd minus A's (same binary, CRI plugin off).
    let cri_part = |rss: fn(&crate::probe::ProcStat) -> u64| {
        let mut v = vals(&|s| s.daemon.map_or(f64::NAN, |d| mib(rss(&d))));
        if let [_, (_, _, b)] = v.as_mut_slice()
            && let [Some(a_snap), Some(b_snap)] = snaps
            && a_snap.daemon.is_some()
            && b_snap.daemon.is_none()
        {
            *b = Some(mib(rss(&b_snap.containerd)) - mib(rss(&a_snap.containerd)));
        }
        v
    };
    vec![
        Metric::value(
            &format!("RSS {when}: CRI daemon + containerd"),
            "MiB",
            vals(&|s| mib(s.rss_total_kib())),
        ),
        Metric::value(
            &format!("RSS {when}: CRI part (criusd | B containerd - A containerd)"),
            "MiB",
            cri_part(|p| p.rss_kib),
        ),
        Metric::value(
            &format!("RSS {when}: containerd (A without CRI plugin, B with)"),
            "MiB",
            vals(&|s| mib(s.containerd.rss_kib)),
        ),
        Metric::value(
            &format!("anon RSS {when}: CRI daemon + containerd"),
            "MiB",
            vals(&|s| mib(s.anon_total_kib())),
        ),
        Metric::value(
            &format!("anon RSS {when}: CRI part (criusd | B containerd - A containerd)"),
            "MiB",
            cri_part(|p| p.anon_kib),
        ),
    ]
}

pub fn report(
    targets: &[Target],
    idle: &[Idle],
    scale: Option<(usize, &[ScaleOutcome])>,
    churn: Option<&[ChurnOutcome]>,
) -> ScenarioReport {
    let mut metrics = Vec::new();
    let snaps: Vec<Option<&Snapshot>> = idle.iter().map(|i| i.snapshot.as_ref()).collect();
    metrics.extend(rss_rows(targets, "idle", &snaps));
    let window = idle.first().map_or(Duration::ZERO, |i| i.window);
    metrics.push(Metric::value(
        &format!(
            "CPU idle over {:.0} s: CRI daemon + containerd",
            window.as_secs_f64()
        ),
        "ms",
        targets
            .iter()
            .zip(idle)
            .map(|(t, i)| (t.name.clone(), t.label.clone(), i.cpu_s.map(|c| c * 1e3)))
            .collect(),
    ));
    metrics.push(Metric::value(
        "CPU since start (after set-up and pulls, idle): CRI daemon + containerd",
        "s",
        targets
            .iter()
            .zip(&snaps)
            .map(|(t, s)| (t.name.clone(), t.label.clone(), s.map(|s| s.cpu_total_s())))
            .collect(),
    ));
    metrics.push(Metric::value(
        "threads idle: CRI daemon + containerd",
        "count",
        targets
            .iter()
            .zip(&snaps)
            .map(|(t, s)| {
                (
                    t.name.clone(),
                    t.label.clone(),
                    s.map(|s| (s.containerd.threads + s.daemon.map_or(0, |d| d.threads)) as f64),
                )
            })
            .collect(),
    ));
    let mut notes = vec![
        "RSS = VmRSS (resident, the binary's file pages included); anon RSS = RssAnon (heap, \
         stacks: what the process costs beyond its binary); CPU = utime+stime of the CRI daemon \
         and containerd plus their reaped children (CNI plugins, `shim start`), not shims or runc"
            .to_owned(),
        "CRI part of B = B's containerd (CRI plugin on) minus A's containerd (CRI plugin off, \
         same binary, same pods): an estimate"
            .to_owned(),
    ];
    match scale {
        Some((m, outcomes)) => {
            let snaps: Vec<Option<&Snapshot>> = outcomes.iter().map(|o| o.at_m.as_ref()).collect();
            metrics.extend(rss_rows(targets, &format!("at {m} pods"), &snaps));
            metrics.push(Metric::value(
                &format!("RSS at {m} pods: all shims"),
                "MiB",
                targets
                    .iter()
                    .zip(&snaps)
                    .map(|(t, s)| {
                        (
                            t.name.clone(),
                            t.label.clone(),
                            s.map(|s| mib(s.shims_rss_kib)),
                        )
                    })
                    .collect(),
            ));
            metrics.push(Metric::value(
                &format!("shims at {m} pods"),
                "count",
                targets
                    .iter()
                    .zip(&snaps)
                    .map(|(t, s)| (t.name.clone(), t.label.clone(), s.map(|s| s.shims as f64)))
                    .collect(),
            ));
        }
        None => notes.push("no figures at M pods: the scale scenario did not run".to_owned()),
    }
    match churn {
        Some(outcomes) => {
            let snaps: Vec<Option<&Snapshot>> = outcomes.iter().map(|o| o.after.as_ref()).collect();
            metrics.extend(rss_rows(targets, "after churn", &snaps));
            metrics.push(Metric::value(
                "CPU per churn cycle: CRI daemon + containerd",
                "ms",
                targets
                    .iter()
                    .zip(outcomes)
                    .map(|(t, o)| {
                        (
                            t.name.clone(),
                            t.label.clone(),
                            o.cpu_s
                                .filter(|_| o.cycles > 0)
                                .map(|c| c * 1e3 / o.cycles as f64),
                        )
                    })
                    .collect(),
            ));
        }
        None => notes.push("no figures after churn: the churn scenario did not run".to_owned()),
    }
    let results = targets
        .iter()
        .map(|t| EndpointResult {
            endpoint: t.name.clone(),
            label: t.label.clone(),
            samples_ms: Vec::new(),
            summary: None,
            size_bytes: None,
            mb_per_s_p50: None,
            warm_samples: 0,
            error: t
                .local
                .is_none()
                .then(|| "not started by the benchmark: no processes to measure".to_owned()),
            notes: Vec::new(),
        })
        .collect();
    ScenarioReport::with_metrics(
        "footprint",
        "-",
        None,
        "RSS and CPU of the CRI daemon and its containerd: idle, at M pods, after churn".to_owned(),
        results,
        metrics,
        notes,
    )
}
