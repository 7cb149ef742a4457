//! `crius stats` and `crius pod stats`: live resource usage, like `docker
//! stats`. Each sample is a few list calls (ListContainers,
//! ListPodSandbox, ListContainerStats; or ListPodSandboxStats), whatever
//! the number of containers; the CPU % of a row is the CPU time its
//! container (or pod) used between two samples over the time between
//! them, so the first table comes with the second sample.

mod rows;

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use crius_cri_api::v1;

use crate::client::Cri;
use rows::{ContainerRow, PodRow, Row, Style};

/// The longest wait for the second sample, whatever the interval: the
/// first table is a second away at most.
const FIRST_GAP: Duration = Duration::from_secs(1);

/// How samples are taken and shown (the flags both commands have).
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Print one table (after two samples, about a second apart, so that
    /// CPU % means something) and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Seconds between samples (fractions allowed: 0.5).
    #[arg(long, default_value = "1", value_parser = parse_interval, value_name = "SECS")]
    pub interval: Duration,
}

/// `--interval`: a number of seconds, 0.1 to 3600.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("{s}: the interval is 0.1 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One kind of table: how a sample of it is taken.
trait Sampler {
    type Row: Row;
    async fn sample(&mut self, cri: &mut Cri) -> anyhow::Result<Vec<Self::Row>>;
}

/// `crius stats [ID...]`.
pub(crate) async fn containers(
    cri: &mut Cri,
    ids: &[String],
    all: bool,
    args: &StatsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let ids = if ids.is_empty() {
        None
    } else {
        Some(resolve_containers(cri, ids).await?)
    };
    run(cri, &mut Containers { ids, all }, args, json).await
}

/// `crius pod stats [ID...]`.
pub(crate) async fn pods(
    cri: &mut Cri,
    ids: &[String],
    args: &StatsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let ids = if ids.is_empty() {
        None
    } else {
        Some(resolve_pods(cri, ids).await?)
    };
    run(cri, &mut Pods { ids }, args, json).await
}

/// The full ids of `ids` (ids or unique prefixes, as ContainerStatus
/// resolves them for every other command).
async fn resolve_containers(cri: &mut Cri, ids: &[String]) -> anyhow::Result<HashSet<String>> {
    let mut full = HashSet::new();
    for id in ids {
        full.insert(crate::containers::status(cri, id).await?.0.id);
    }
    Ok(full)
}

/// The full ids of pods `ids`, as PodSandboxStatus resolves them.
async fn resolve_pods(cri: &mut Cri, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let mut full = Vec::new();
    for id in ids {
        let (status, _) = crate::commands::pod_status(cri, id, false).await?;
        if !full.contains(&status.id) {
            full.push(status.id);
        }
    }
    Ok(full)
}

/// Samples until interrupted (Ctrl-C), until stdout is closed, or, with
/// `--no-stream`, after the first table.
async fn run<S: Sampler>(
    cri: &mut Cri,
    sampler: &mut S,
    args: &StatsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let style = if json {
        Style::Json
    } else {
        Style::Table {
            clear: !args.no_stream && std::io::stdout().is_terminal(),
        }
    };
    tokio::select! {
        r = sample_loop(cri, sampler, args, style) => r,
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
    }
}

async fn sample_loop<S: Sampler>(
    cri: &mut Cri,
    sampler: &mut S,
    args: &StatsArgs,
    style: Style,
) -> anyhow::Result<()> {
    let mut previous = rows::compare(&mut sampler.sample(cri).await?, &HashMap::new());
    tokio::time::sleep(args.interval.min(FIRST_GAP)).await;
    loop {
        let mut rows = sampler.sample(cri).await?;
        previous = rows::compare(&mut rows, &previous);
        if !write_frame(&rows::frame(&rows, now_ns(), style))? || args.no_stream {
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
    }
}

/// Writes a frame to stdout; false when stdout is closed (a reader such
/// as `head` went away: the end, and no error).
fn write_frame(frame: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(frame.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// `crius stats`: running containers (any state with `all`), or those of
/// `ids` in any state.
struct Containers {
    ids: Option<HashSet<String>>,
    all: bool,
}

impl Sampler for Containers {
    type Row = ContainerRow;

    async fn sample(&mut self, cri: &mut Cri) -> anyhow::Result<Vec<ContainerRow>> {
        let running = v1::ContainerStateValue {
            state: v1::ContainerState::ContainerRunning as i32,
        };
        let filter = v1::ContainerFilter {
            state: (!self.all && self.ids.is_none()).then_some(running),
            ..Default::default()
        };
        let listed = crate::containers::list(cri, filter).await?;
        let pods = list_pods(cri).await?;
        let stats = list_container_stats(cri).await?;
        let mut rows: Vec<ContainerRow> = listed
            .iter()
            .filter(|c| self.ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
            .map(|c| ContainerRow::new(c, pods.get(&c.pod_sandbox_id), stats.get(&c.id)))
            .collect();
        rows::sort_containers(&mut rows);
        Ok(rows)
    }
}

/// Every pod's name, by id.
async fn list_pods(cri: &mut Cri) -> anyhow::Result<HashMap<String, rows::PodName>> {
    let pods = cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    Ok(rows::pod_names(&pods))
}

/// Every container's stats, by id.
async fn list_container_stats(
    cri: &mut Cri,
) -> anyhow::Result<HashMap<String, v1::ContainerStats>> {
    let stats = cri
        .runtime
        .list_container_stats(v1::ListContainerStatsRequest { filter: None })
        .await
        .context("ListContainerStats")?
        .into_inner()
        .stats;
    Ok(stats
        .into_iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
        .collect())
}

/// `crius pod stats`: the ready pods, or those of `ids` (ready or not;
/// one removed meanwhile is left out).
struct Pods {
    ids: Option<Vec<String>>,
}

impl Sampler for Pods {
    type Row = PodRow;

    async fn sample(&mut self, cri: &mut Cri) -> anyhow::Result<Vec<PodRow>> {
        let Some(ids) = &self.ids else {
            let stats = cri
                .runtime
                .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest { filter: None })
                .await
                .context("ListPodSandboxStats")?
                .into_inner()
                .stats;
            return Ok(stats.iter().map(PodRow::new).collect());
        };
        let mut rows = Vec::new();
        for id in ids {
            let request = v1::PodSandboxStatsRequest {
                pod_sandbox_id: id.clone(),
            };
            match cri.runtime.pod_sandbox_stats(request).await {
                Ok(r) => rows.extend(r.into_inner().stats.as_ref().map(PodRow::new)),
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(s).context("PodSandboxStats"),
            }
        }
        Ok(rows)
    }
}

/// Now, in nanoseconds since the epoch (a JSON sample's `timestamp`).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
