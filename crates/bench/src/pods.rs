//! The pod scenarios: pod start (serial and parallel), churn and scale.
//!
//! Every pod is what kubelet would make of a one-container pod: a sandbox
//! with its own network (the endpoint's CNI bridge), PID namespace per
//! container, seccomp unconfined (kubelet's default), a cgroupfs cgroup
//! parent, a log directory; one container running busybox `sleep 3600`
//! with a CRI log file, kubelet's default masked and read-only paths and a
//! BestEffort container's resources. Teardown: StopContainer with timeout 0 (SIGKILL:
//! `sleep` as PID 1 ignores SIGTERM), RemoveContainer, StopPodSandbox,
//! RemovePodSandbox.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crius_cri_api::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    SecurityProfile, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    security_profile,
};
use crius_testkit::client::Cri;
use futures::StreamExt;

use crate::bench::{Target, status_text, visit_order};
use crate::probe::Snapshot;
use crate::report::{EndpointResult, Metric, ScenarioReport};
use crate::stats::summarize;

/// How long one RPC may take before the endpoint counts as failed.
const RPC_TIMEOUT: Duration = Duration::from_secs(120);
const NAMESPACE: &str = "crius-bench";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// kubelet's default masked paths (`securitycontext.defaultMaskedPaths`).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
/// kubelet's default read-only paths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What every pod is made of.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The container image (busybox), pulled on every endpoint beforehand.
    pub image: String,
    /// Pod log directories go below `<log_root>/<endpoint>/`.
    pub log_root: PathBuf,
    /// Pod cgroup parents go below `<cgroup_root>/<endpoint>/`.
    pub cgroup_root: String,
}

/// Sizes of the pod scenarios.
#[derive(Debug, Clone, Copy)]
pub struct PodSettings {
    /// Pods per endpoint (pod start).
    pub n: usize,
    /// Concurrency (parallel pod start, churn, scale set-up and teardown).
    pub c: usize,
    /// Running pods per endpoint (scale).
    pub m: usize,
    pub churn: Duration,
    /// Unmeasured pods per endpoint before the serial ones.
    pub warmup: usize,
    /// Calls per endpoint and query (scale).
    pub calls: usize,
}

/// A running pod and its container.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub container: String,
}

/// Milliseconds of each step of a pod start.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimes {
    pub run: f64,
    pub create: f64,
    pub start: f64,
    /// RunPodSandbox sent to StartContainer answered.
    pub total: f64,
}

/// Milliseconds of each step of a teardown.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopTimes {
    pub stop_container: f64,
    pub remove_container: f64,
    pub stop_pod: f64,
    pub remove_pod: f64,
    pub total: f64,
}

fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn unconfined() -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: security_profile::ProfileType::Unconfined as i32,
        ..Default::default()
    })
}

impl Workload {
    /// A new pod's config; creates its log directory (kubelet does that
    /// before RunPodSandbox).
    fn sandbox_config(&self, endpoint: &str, tag: &str) -> Result<PodSandboxConfig, String> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let ep = endpoint.to_lowercase();
        let name = format!("{tag}-{seq}");
        let uid = format!("crius-bench-{}-{seq}", std::process::id());
        let log_dir = self
            .log_root
            .join(&ep)
            .join(format!("{NAMESPACE}_{name}_{uid}"));
        std::fs::create_dir_all(log_dir.join("sleep"))
            .map_err(|e| format!("creating {}: {e}", log_dir.display()))?;
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid,
                namespace: NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: log_dir.display().to_string(),
            labels: [
                ("io.kubernetes.pod.name".to_owned(), name),
                ("crius-bench/scenario".to_owned(), tag.to_owned()),
            ]
            .into(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/{ep}/pod{seq}", self.cgroup_root),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    seccomp: unconfined(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// What kubelet sends for a BestEffort container with no security
    /// context: default masked and read-only paths, CPU shares 2, OOM score
    /// adjustment 1000, seccomp unconfined.
    fn container_config(&self) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "sleep".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: vec!["sleep".into()],
            args: vec!["3600".into()],
            log_path: "sleep/0.log".into(),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    seccomp: unconfined(),
                    masked_paths: MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// Runs one RPC with a deadline; its answer and wall milliseconds.
async fn timed<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<(T, f64), String> {
    let started = Instant::now();
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Err(_) => Err(format!("{what}: no answer within {RPC_TIMEOUT:?}")),
        Ok(Err(s)) => Err(status_text(what, &s)),
        Ok(Ok(r)) => Ok((r.into_inner(), started.elapsed().as_secs_f64() * 1e3)),
    }
}

/// The pod's IP, from PodSandboxStatus: checks that the endpoint's CNI
/// network is in place.
async fn pod_ip(cri: &Cri, id: &str) -> Result<String, String> {
    let mut cri = cri.clone();
    let (status, _) = timed(
        "PodSandboxStatus",
        cri.runtime.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        }),
    )
    .await?;
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    if ip.is_empty() {
        return Err(format!(
            "pod {id} has no IP: the CNI network is not in place"
        ));
    }
    Ok(ip)
}

/// Best effort: stops and removes a pod (and so its containers).
async fn discard_pod(cri: &mut Cri, id: &str) {
    let _ = tokio::time::timeout(
        RPC_TIMEOUT,
        cri.runtime.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }),
    )
    .await;
    let _ = tokio::time::timeout(
        RPC_TIMEOUT,
        cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }),
    )
    .await;
}

/// RunPodSandbox, CreateContainer, StartContainer. On failure whatever was
/// made is removed again.
pub async fn start_pod(
    cri: &Cri,
    w: &Workload,
    endpoint: &str,
    tag: &str,
) -> Result<(Pod, StartTimes), String> {
    let mut cri = cri.clone();
    let config = w.sandbox_config(endpoint, tag)?;
    let t0 = Instant::now();
    let (r, run) = timed(
        "RunPodSandbox",
        cri.runtime.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?;
    let pod = r.pod_sandbox_id;
    let created = timed(
        "CreateContainer",
        cri.runtime.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(w.container_config()),
            sandbox_config: Some(config),
        }),
    )
    .await;
    let (c, create) = match created {
        Ok(v) => v,
        Err(e) => {
            discard_pod(&mut cri, &pod).await;
            return Err(e);
        }
    };
    let container = c.container_id;
    let started = timed(
        "StartContainer",
        cri.runtime.start_container(StartContainerRequest {
            container_id: container.clone(),
        }),
    )
    .await;
    let (_, start) = match started {
        Ok(v) => v,
        Err(e) => {
            discard_pod(&mut cri, &pod).await;
            return Err(e);
        }
    };
    let total = t0.elapsed().as_secs_f64() * 1e3;
    Ok((
        Pod { id: pod, container },
        StartTimes {
            run,
            create,
            start,
            total,
        },
    ))
}

/// StopContainer (timeout 0), RemoveContainer, StopPodSandbox,
/// RemovePodSandbox.
pub async fn teardown(cri: &Cri, pod: &Pod) -> Result<StopTimes, String> {
    let mut cri = cri.clone();
    let t0 = Instant::now();
    let steps = async {
        let (_, stop_container) = timed(
            "StopContainer",
            cri.runtime.stop_container(StopContainerRequest {
                container_id: pod.container.clone(),
                timeout: 0,
            }),
        )
        .await?;
        let (_, remove_container) = timed(
            "RemoveContainer",
            cri.runtime.remove_container(RemoveContainerRequest {
                container_id: pod.container.clone(),
            }),
        )
        .await?;
        let (_, stop_pod) = timed(
            "StopPodSandbox",
            cri.runtime.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }),
        )
        .await?;
        let (_, remove_pod) = timed(
            "RemovePodSandbox",
            cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }),
        )
        .await?;
        Ok::<_, String>(StopTimes {
            stop_container,
            remove_container,
            stop_pod,
            remove_pod,
            total: t0.elapsed().as_secs_f64() * 1e3,
        })
    }
    .await;
    if steps.is_err() {
        discard_pod(&mut cri, &pod.id).await;
    }
    steps
}

/// Stops and removes every container and pod of an endpoint (the
/// benchmark's endpoints hold nothing else). Returns how many pods there
/// were.
pub async fn remove_all(cri: &Cri, c: usize) -> Result<usize, String> {
    let mut cri = cri.clone();
    let (containers, _) = timed(
        "ListContainers",
        cri.runtime
            .list_containers(ListContainersRequest { filter: None }),
    )
    .await?;
    futures::stream::iter(containers.containers)
        .for_each_concurrent(c.max(1), |ctr| {
            let mut cri = cri.clone();
            async move {
                let _ = tokio::time::timeout(
                    RPC_TIMEOUT,
                    cri.runtime.stop_container(StopContainerRequest {
                        container_id: ctr.id.clone(),
                        timeout: 0,
                    }),
                )
                .await;
                let _ = tokio::time::timeout(
                    RPC_TIMEOUT,
                    cri.runtime.remove_container(RemoveContainerRequest {
                        container_id: ctr.id,
                    }),
                )
                .await;
            }
        })
        .await;
    let (pods, _) = timed(
        "ListPodSandbox",
        cri.runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
    )
    .await?;
    let n = pods.items.len();
    futures::stream::iter(pods.items)
        .for_each_concurrent(c.max(1), |p| {
            let mut cri = cri.clone();
            async move { discard_pod(&mut cri, &p.id).await }
        })
        .await;
    let (left, _) = timed(
        "ListPodSandbox",
        cri.runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
    )
    .await?;
    if !left.items.is_empty() {
        return Err(format!(
            "{} pods still listed after removing them all",
            left.items.len()
        ));
    }
    Ok(n)
}

/// Latency samples of every step, one endpoint.
#[derive(Debug, Default)]
struct Life {
    run: Vec<f64>,
    create: Vec<f64>,
    start: Vec<f64>,
    to_running: Vec<f64>,
    stop_container: Vec<f64>,
    remove_container: Vec<f64>,
    stop_pod: Vec<f64>,
    remove_pod: Vec<f64>,
    teardown: Vec<f64>,
    cycle: Vec<f64>,
    error: Option<String>,
    notes: Vec<String>,
}

impl Life {
    fn started(&mut self, t: StartTimes) {
        self.run.push(t.run);
        self.create.push(t.create);
        self.start.push(t.start);
        self.to_running.push(t.total);
    }

    fn stopped(&mut self, t: StopTimes) {
        self.stop_container.push(t.stop_container);
        self.remove_container.push(t.remove_container);
        self.stop_pod.push(t.stop_pod);
        self.remove_pod.push(t.remove_pod);
        self.teardown.push(t.total);
    }

    fn fail(&mut self, e: String) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

type Pick = fn(&Life) -> &Vec<f64>;

/// The latency rows of the lifecycle steps (those with samples).
fn life_metrics(targets: &[Target], lives: &[Life], cycle: bool) -> Vec<Metric> {
    let rows: [(&str, Pick); 10] = [
        ("RunPodSandbox", |l| &l.run),
        ("CreateContainer", |l| &l.create),
        ("StartContainer", |l| &l.start),
        ("time to running: run+create+start", |l| &l.to_running),
        ("StopContainer (timeout 0: SIGKILL)", |l| &l.stop_container),
        ("RemoveContainer", |l| &l.remove_container),
        ("StopPodSandbox", |l| &l.stop_pod),
        ("RemovePodSandbox", |l| &l.remove_pod),
        ("teardown: stop+remove both", |l| &l.teardown),
        ("cycle: start+teardown", |l| &l.cycle),
    ];
    rows.iter()
        .filter(|(name, pick)| {
            (cycle || !name.starts_with("cycle")) && lives.iter().any(|l| !pick(l).is_empty())
        })
        .map(|(name, pick)| {
            Metric::latency(
                name,
                targets
                    .iter()
                    .zip(lives)
                    .map(|(t, l)| (t.name.clone(), t.label.clone(), summarize(pick(l))))
                    .collect(),
            )
        })
        .collect()
}

fn results(targets: &[Target], lives: Vec<Life>) -> Vec<EndpointResult> {
    targets
        .iter()
        .zip(lives)
        .map(|(t, l)| EndpointResult {
            endpoint: t.name.clone(),
            label: t.label.clone(),
            samples_ms: Vec::new(),
            summary: summarize(&l.to_running),
            size_bytes: None,
            mb_per_s_p50: None,
            warm_samples: 0,
            error: l.error,
            notes: l.notes,
        })
        .collect()
}

/// `(endpoint, label, value)` per target.
fn per_target<T>(
    targets: &[Target],
    values: &[T],
    f: impl Fn(&T) -> Option<f64>,
) -> Vec<(String, String, Option<f64>)> {
    targets
        .iter()
        .zip(values)
        .map(|(t, v)| (t.name.clone(), t.label.clone(), f(v)))
        .collect()
}

fn progress(what: &str, t: &Target, detail: &str) {
    eprintln!("crius-bench: {what} on {} ({}): {detail}", t.name, t.label);
}

/// Scenario 1a: `n` pods one after the other per endpoint, endpoints taking
/// turns pod by pod, each pod started and torn down before the next.
pub async fn pod_start_serial(targets: &[Target], w: &Workload, s: PodSettings) -> ScenarioReport {
    let mut lives: Vec<Life> = targets.iter().map(|_| Life::default()).collect();
    let total = s.warmup + s.n;
    for i in 0..total {
        for ti in visit_order(i, targets.len()) {
            let (t, l) = (&targets[ti], &mut lives[ti]);
            if l.error.is_some() {
                continue;
            }
            let (pod, st) = match start_pod(&t.cri, w, &t.name, "serial").await {
                Ok(v) => v,
                Err(e) => {
                    progress("pod start", t, &e);
                    l.fail(e);
                    continue;
                }
            };
            if i == 0 {
                match pod_ip(&t.cri, &pod.id).await {
                    Ok(ip) => l.notes.push(format!("first pod's IP: {ip}")),
                    Err(e) => l.fail(e),
                }
            }
            match teardown(&t.cri, &pod).await {
                Ok(sp) if i >= s.warmup => {
                    l.started(st);
                    l.stopped(sp);
                }
                Ok(_) => {}
                Err(e) => {
                    progress("pod teardown", t, &e);
                    l.fail(e);
                }
            }
        }
        if (i + 1) % 25 == 0 || i + 1 == total {
            eprintln!("crius-bench: pod start serial: {}/{total}", i + 1);
        }
    }
    let metrics = life_metrics(targets, &lives, false);
    ScenarioReport::with_metrics(
        "pod_start_serial",
        "small",
        Some(w.image.clone()),
        format!(
            "{} pods per endpoint one at a time, endpoints alternating pod by pod, after {} warmup",
            s.n, s.warmup
        ),
        results(targets, lives),
        metrics,
        Vec::new(),
    )
}

/// Starts `count` pods at concurrency `c`; the pods that run, the wall
/// seconds until all answered.
async fn start_many(
    t: &Target,
    w: &Workload,
    tag: &str,
    count: usize,
    c: usize,
    life: &mut Life,
) -> (Vec<Pod>, f64) {
    let started = Instant::now();
    let outcomes: Vec<Result<(Pod, StartTimes), String>> = futures::stream::iter(0..count)
        .map(|_| start_pod(&t.cri, w, &t.name, tag))
        .buffer_unordered(c.max(1))
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let mut pods = Vec::new();
    for o in outcomes {
        match o {
            Ok((pod, st)) => {
                life.started(st);
                pods.push(pod);
            }
            Err(e) => life.fail(e),
        }
    }
    (pods, wall)
}

/// Tears `pods` down at concurrency `c`; the wall seconds.
async fn stop_many(t: &Target, pods: &[Pod], c: usize, life: &mut Life) -> f64 {
    let started = Instant::now();
    let outcomes: Vec<Result<StopTimes, String>> = futures::stream::iter(pods)
        .map(|p| teardown(&t.cri, p))
        .buffer_unordered(c.max(1))
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    for o in outcomes {
        match o {
            Ok(sp) => life.stopped(sp),
            Err(e) => life.fail(e),
        }
    }
    wall
}

/// Scenario 1b: `n` pods per endpoint at concurrency `c`, in up to four
/// rounds (A,B then B,A, ...); each round starts its pods, then tears them
/// down.
pub async fn pod_start_parallel(
    targets: &[Target],
    w: &Workload,
    s: PodSettings,
) -> ScenarioReport {
    let mut lives: Vec<Life> = targets.iter().map(|_| Life::default()).collect();
    let mut start_wall = vec![0.0; targets.len()];
    let mut stop_wall = vec![0.0; targets.len()];
    let mut started = vec![0usize; targets.len()];
    // Up to 4 rounds of at least 2 x C pods: endpoints alternate round by
    // round, so a disturbance of the machine hits both.
    let k = (s.n / (2 * s.c.max(1))).clamp(1, 4);
    let rounds: Vec<usize> = (0..k).map(|r| s.n / k + usize::from(r < s.n % k)).collect();
    for (r, size) in rounds.iter().enumerate() {
        for ti in visit_order(r, targets.len()) {
            let t = &targets[ti];
            if lives[ti].error.is_some() {
                continue;
            }
            let (pods, wall) = start_many(t, w, "parallel", *size, s.c, &mut lives[ti]).await;
            start_wall[ti] += wall;
            started[ti] += pods.len();
            stop_wall[ti] += stop_many(t, &pods, s.c, &mut lives[ti]).await;
            progress(
                "pod start parallel",
                t,
                &format!("round {}: {} pods in {wall:.2} s", r + 1, pods.len()),
            );
        }
    }
    let mut metrics = life_metrics(targets, &lives, false);
    let rate = |n: usize, secs: f64| (secs > 0.0).then(|| n as f64 / secs);
    let pairs: Vec<(usize, f64, f64)> = (0..targets.len())
        .map(|i| (started[i], start_wall[i], stop_wall[i]))
        .collect();
    metrics.push(Metric::value(
        "start throughput: pods running / wall",
        "pods/s",
        per_target(targets, &pairs, |(n, w, _)| rate(*n, *w)),
    ));
    metrics.push(Metric::value(
        "teardown throughput",
        "pods/s",
        per_target(targets, &pairs, |(n, _, w)| rate(*n, *w)),
    ));
    metrics.push(Metric::value(
        "wall: start all",
        "s",
        per_target(targets, &pairs, |(_, w, _)| Some(*w)),
    ));
    ScenarioReport::with_metrics(
        "pod_start_parallel",
        "small",
        Some(w.image.clone()),
        format!(
            "{} pods per endpoint at concurrency {}, in {} rounds (endpoints alternating); each round starts all, then tears all down",
            s.n,
            s.c,
            rounds.len()
        ),
        results(targets, lives),
        metrics,
        Vec::new(),
    )
}

/// Waits (at most 10 s) until the endpoint runs no more shims than `shims`:
/// shims exit asynchronously after their last task is deleted.
async fn settle(t: &Target, shims: u64) {
    let Some(local) = &t.local else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while (local.shim_pids().len() as u64) > shims && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// What churn measured beyond latencies, per endpoint.
#[derive(Debug, Default, Clone)]
pub struct ChurnOutcome {
    pub cycles: usize,
    pub secs: f64,
    pub before: Option<Snapshot>,
    pub after: Option<Snapshot>,
    /// CPU seconds of the daemons (self + reaped children) while churning.
    pub cpu_s: Option<f64>,
}

/// Scenario 2: `c` workers per endpoint run pod cycles (start, teardown)
/// back to back for `churn` (two halves: A,B then B,A). Leaks: what the
/// endpoint holds before and after (processes, mounts, netns, cgroups, fds).
pub async fn churn(
    targets: &[Target],
    w: &Workload,
    s: PodSettings,
) -> (ScenarioReport, Vec<ChurnOutcome>) {
    let mut lives: Vec<Life> = targets.iter().map(|_| Life::default()).collect();
    let mut out: Vec<ChurnOutcome> = targets.iter().map(|_| ChurnOutcome::default()).collect();
    let half = s.churn / 2;
    for round in 0..2 {
        for ti in visit_order(round, targets.len()) {
            let t = &targets[ti];
            if lives[ti].error.is_some() {
                continue;
            }
            if round == 0 {
                out[ti].before = t.local.as_ref().map(|l| l.snapshot());
            }
            let cpu0 = t.local.as_ref().map(|l| l.snapshot().cpu_total_s());
            let deadline = Instant::now() + half;
            let started = Instant::now();
            let workers: Vec<Life> = futures::future::join_all((0..s.c.max(1)).map(|_| async {
                let mut l = Life::default();
                while Instant::now() < deadline && l.error.is_none() {
                    let c0 = Instant::now();
                    match start_pod(&t.cri, w, &t.name, "churn").await {
                        Ok((pod, st)) => {
                            l.started(st);
                            match teardown(&t.cri, &pod).await {
                                Ok(sp) => {
                                    l.stopped(sp);
                                    l.cycle.push(c0.elapsed().as_secs_f64() * 1e3);
                                }
                                Err(e) => l.fail(e),
                            }
                        }
                        Err(e) => l.fail(e),
                    }
                }
                l
            }))
            .await;
            let secs = started.elapsed().as_secs_f64();
            let mut cycles = 0;
            for wl in workers {
                cycles += wl.cycle.len();
                let life = &mut lives[ti];
                life.run.extend(wl.run);
                life.create.extend(wl.create);
                life.start.extend(wl.start);
                life.to_running.extend(wl.to_running);
                life.stop_container.extend(wl.stop_container);
                life.remove_container.extend(wl.remove_container);
                life.stop_pod.extend(wl.stop_pod);
                life.remove_pod.extend(wl.remove_pod);
                life.teardown.extend(wl.teardown);
                life.cycle.extend(wl.cycle);
                if let Some(e) = wl.error {
                    life.fail(e);
                }
            }
            if let (Some(c0), Some(l)) = (cpu0, &t.local) {
                let cpu = l.snapshot().cpu_total_s() - c0;
                *out[ti].cpu_s.get_or_insert(0.0) += cpu;
            }
            out[ti].cycles += cycles;
            out[ti].secs += secs;
            progress(
                "churn",
                t,
                &format!("half {}: {cycles} cycles in {secs:.1} s", round + 1),
            );
        }
    }
    for (ti, t) in targets.iter().enumerate() {
        if let Err(e) = remove_all(&t.cri, s.c).await {
            lives[ti].fail(format!("cleaning up after churn: {e}"));
        }
        settle(t, out[ti].before.as_ref().map_or(0, |b| b.shims)).await;
        out[ti].after = t.local.as_ref().map(|l| l.snapshot());
    }
    let mut metrics = life_metrics(targets, &lives, true);
    metrics.push(Metric::value(
        "throughput: cycles / wall",
        "cycles/s",
        per_target(targets, &out, |o| {
            (o.secs > 0.0).then(|| o.cycles as f64 / o.secs)
        }),
    ));
    metrics.push(Metric::value(
        "cycles",
        "count",
        per_target(targets, &out, |o| Some(o.cycles as f64)),
    ));
    metrics.push(Metric::value(
        "CPU per cycle, CRI daemon + containerd (+ CNI plugins)",
        "ms",
        per_target(targets, &out, |o| {
            o.cpu_s
                .filter(|_| o.cycles > 0)
                .map(|c| c * 1e3 / o.cycles as f64)
        }),
    ));
    type Field = fn(&Snapshot) -> f64;
    let leaks: [(&str, &str, Field); 8] = [
        ("leak: runtime processes, after - before", "count", |s| {
            s.processes as f64
        }),
        ("leak: shims, after - before", "count", |s| s.shims as f64),
        ("leak: mounts, after - before", "count", |s| s.mounts as f64),
        ("leak: netns, after - before", "count", |s| s.netns as f64),
        ("leak: container cgroups, after - before", "count", |s| {
            s.cgroups as f64
        }),
        ("leak: CRI daemon fds, after - before", "count", |s| {
            s.daemon.unwrap_or(s.containerd).fds as f64
        }),
        ("leak: containerd fds, after - before", "count", |s| {
            s.containerd.fds as f64
        }),
        ("RSS CRI daemon + containerd, after - before", "MiB", |s| {
            s.rss_total_kib() as f64 / 1024.0
        }),
    ];
    for (name, unit, f) in leaks {
        metrics.push(Metric::value(
            name,
            unit,
            per_target(targets, &out, |o| match (&o.before, &o.after) {
                (Some(b), Some(a)) => Some(f(a) - f(b)),
                _ => None,
            }),
        ));
    }
    let notes = vec![
        "leaks: measured with no pod left, after waiting up to 10 s for shims to exit; \
         the CRI daemon of B is containerd itself; RSS is not a leak by itself (allocators keep freed memory)"
            .to_owned(),
        "CPU: utime+stime of the CRI daemon and containerd plus their reaped children \
         (CNI plugins, `shim start`); shims and runc are not counted"
            .to_owned(),
    ];
    (
        ScenarioReport::with_metrics(
            "churn",
            "small",
            Some(w.image.clone()),
            format!(
                "pod cycles (run, create, start, stop, remove) by {} workers per endpoint for {:.0} s each, in two halves (A,B then B,A)",
                s.c,
                s.churn.as_secs_f64()
            ),
            results(targets, lives),
            metrics,
            notes,
        ),
        out,
    )
}

/// What scale measured beyond latencies, per endpoint.
#[derive(Debug, Default, Clone)]
pub struct ScaleOutcome {
    pub before: Option<Snapshot>,
    pub at_m: Option<Snapshot>,
    pub running: usize,
    pub cpu_s: Option<f64>,
}

/// Scenario 3: `m` running pods per endpoint (both endpoints at once), then
/// ListPodSandbox, ListContainers, PodSandboxStatus and ContainerStatus
/// `calls` times each, alternating call by call; memory at that scale.
pub async fn scale(
    targets: &[Target],
    w: &Workload,
    s: PodSettings,
) -> (ScenarioReport, Vec<ScaleOutcome>) {
    let mut lives: Vec<Life> = targets.iter().map(|_| Life::default()).collect();
    let mut out: Vec<ScaleOutcome> = targets.iter().map(|_| ScaleOutcome::default()).collect();
    let mut pods: Vec<Vec<Pod>> = targets.iter().map(|_| Vec::new()).collect();
    let mut start_wall = vec![0.0; targets.len()];
    let mut cpu0: Vec<Option<f64>> = vec![None; targets.len()];
    for (ti, t) in targets.iter().enumerate() {
        out[ti].before = t.local.as_ref().map(|l| l.snapshot());
        cpu0[ti] = out[ti].before.as_ref().map(|b| b.cpu_total_s());
        let (p, wall) = start_many(t, w, "scale", s.m, s.c, &mut lives[ti]).await;
        progress(
            "scale",
            t,
            &format!("{} of {} pods running after {wall:.1} s", p.len(), s.m),
        );
        out[ti].running = p.len();
        start_wall[ti] = wall;
        pods[ti] = p;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (ti, t) in targets.iter().enumerate() {
        out[ti].at_m = t.local.as_ref().map(|l| l.snapshot());
    }

    // name -> samples per endpoint
    let names = [
        "ListPodSandbox",
        "ListContainers",
        "ListContainers, filter by pod",
        "PodSandboxStatus",
        "ContainerStatus",
    ];
    // q[query][endpoint]: samples, queries in the order of `names`.
    let mut q: Vec<Vec<Vec<f64>>> = names
        .iter()
        .map(|_| targets.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut counts: Vec<(usize, usize)> = vec![(0, 0); targets.len()];
    for call in 0..s.calls {
        for ti in visit_order(call, targets.len()) {
            let t = &targets[ti];
            if lives[ti].error.is_some() || pods[ti].is_empty() {
                continue;
            }
            let mut cri = t.cri.clone();
            let pod = &pods[ti][call % pods[ti].len()];
            let r = async {
                let (l, ms) = timed(
                    "ListPodSandbox",
                    cri.runtime
                        .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
                )
                .await?;
                q[0][ti].push(ms);
                let (c, ms) = timed(
                    "ListContainers",
                    cri.runtime
                        .list_containers(ListContainersRequest { filter: None }),
                )
                .await?;
                q[1][ti].push(ms);
                counts[ti] = (l.items.len(), c.containers.len());
                let (_, ms) = timed(
                    "ListContainers",
                    cri.runtime.list_containers(ListContainersRequest {
                        filter: Some(crius_cri_api::v1::ContainerFilter {
                            pod_sandbox_id: pod.id.clone(),
                            ..Default::default()
                        }),
                    }),
                )
                .await?;
                q[2][ti].push(ms);
                let (_, ms) = timed(
                    "PodSandboxStatus",
                    cri.runtime.pod_sandbox_status(PodSandboxStatusRequest {
                        pod_sandbox_id: pod.id.clone(),
                        verbose: false,
                    }),
                )
                .await?;
                q[3][ti].push(ms);
                let (_, ms) = timed(
                    "ContainerStatus",
                    cri.runtime.container_status(ContainerStatusRequest {
                        container_id: pod.container.clone(),
                        verbose: false,
                    }),
                )
                .await?;
                q[4][ti].push(ms);
                Ok::<_, String>(())
            }
            .await;
            if let Err(e) = r {
                lives[ti].fail(e);
            }
        }
    }
    for (ti, (p, c)) in counts.iter().enumerate() {
        if *p != s.m || *c != s.m {
            lives[ti].notes.push(format!(
                "listed {p} pods and {c} containers, expected {} of each",
                s.m
            ));
        }
    }
    let mut stop_wall = vec![0.0; targets.len()];
    for ti in visit_order(1, targets.len()) {
        let t = &targets[ti];
        stop_wall[ti] = stop_many(t, &pods[ti], s.c, &mut lives[ti]).await;
        if let Some(l) = &t.local
            && let Some(c0) = cpu0[ti]
        {
            out[ti].cpu_s = Some(l.snapshot().cpu_total_s() - c0);
        }
        if let Err(e) = remove_all(&t.cri, s.c).await {
            lives[ti].fail(format!("cleaning up after scale: {e}"));
        }
    }

    let mut metrics: Vec<Metric> = names
        .iter()
        .zip(&q)
        .map(|(n, samples)| {
            Metric::latency(
                n,
                targets
                    .iter()
                    .zip(samples)
                    .map(|(t, v)| (t.name.clone(), t.label.clone(), summarize(v)))
                    .collect(),
            )
        })
        .collect();
    metrics.extend(
        life_metrics(targets, &lives, false)
            .into_iter()
            .filter(|m| m.name.starts_with("time to running") || m.name.starts_with("teardown")),
    );
    let walls: Vec<(usize, f64, f64)> = (0..targets.len())
        .map(|i| (out[i].running, start_wall[i], stop_wall[i]))
        .collect();
    metrics.push(Metric::value(
        &format!("wall: start {} pods", s.m),
        "s",
        per_target(targets, &walls, |(_, w, _)| Some(*w)),
    ));
    metrics.push(Metric::value(
        &format!("wall: tear down {} pods", s.m),
        "s",
        per_target(targets, &walls, |(_, _, w)| Some(*w)),
    ));
    metrics.push(Metric::value(
        "RSS at M pods: CRI daemon + containerd",
        "MiB",
        per_target(targets, &out, |o| {
            o.at_m.as_ref().map(|s| s.rss_total_kib() as f64 / 1024.0)
        }),
    ));
    metrics.push(Metric::value(
        "RSS at M pods: all shims",
        "MiB",
        per_target(targets, &out, |o| {
            o.at_m.as_ref().map(|s| s.shims_rss_kib as f64 / 1024.0)
        }),
    ));
    metrics.push(Metric::value(
        "RSS growth per pod: CRI daemon + containerd",
        "KiB",
        per_target(targets, &out, |o| match (&o.before, &o.at_m) {
            (Some(b), Some(a)) if o.running > 0 => {
                Some((a.rss_total_kib() as f64 - b.rss_total_kib() as f64) / o.running as f64)
            }
            _ => None,
        }),
    ));
    metrics.push(Metric::value(
        "shims at M pods",
        "count",
        per_target(targets, &out, |o| o.at_m.as_ref().map(|s| s.shims as f64)),
    ));
    metrics.push(Metric::value(
        "processes at M pods (shims, pause, containers)",
        "count",
        per_target(targets, &out, |o| {
            o.at_m.as_ref().map(|s| s.processes as f64)
        }),
    ));
    metrics.push(Metric::value(
        "CPU: start, queries, teardown (daemon + containerd + CNI)",
        "s",
        per_target(targets, &out, |o| o.cpu_s),
    ));
    let notes = vec![format!(
        "M = {} pods (one container each) per endpoint, both endpoints at once while queried; {} calls of each query per endpoint, alternating; Status calls rotate over the pods",
        s.m, s.calls
    )];
    (
        ScenarioReport::with_metrics(
            "scale",
            "small",
            Some(w.image.clone()),
            format!(
                "{} running pods per endpoint (started at concurrency {}), then {} calls of each query",
                s.m, s.c, s.calls
            ),
            results(targets, lives),
            metrics,
            notes,
        ),
        out,
    )
}
