//! At the end: everything the fuzzer made removed through CRI, and nothing
//! of it left (no pod, container, or process naming one of their ids).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crius_cri_api::v1;
use tonic::Status;

use super::generate::CGROUP;
use super::verdict::{Finding, Kind, classify};
use crate::client::Cri;

/// The annotation every pod of the fuzzer carries (malformed ones too:
/// mutators add to the annotations, never take this one away).
pub const MARK: &str = "crius.fuzz/seed";

/// Longest a cleanup call may take.
const CALL: Duration = Duration::from_secs(60);

/// What the cleanup did and found.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Pods removed.
    pub pods: usize,
    /// Containers removed.
    pub containers: usize,
    /// Leaks, and cleanup calls answered INTERNAL or UNKNOWN.
    pub findings: Vec<Finding>,
}

/// Removes the fuzzer's pods and their containers (in up to three rounds),
/// then checks that nothing of them is left.
pub async fn remove_all(cri: &mut Cri, seed: u64) -> Cleanup {
    let mut out = Cleanup::default();
    let mut ids = BTreeSet::new();
    let mut left = Vec::new();
    for _ in 0..3 {
        left = match ours(cri).await {
            Ok(l) => l,
            Err(st) => {
                out.findings.push(failed(seed, "ListPodSandbox", &st));
                return out;
            }
        };
        if left.is_empty() {
            break;
        }
        for (pod, containers) in &left {
            for c in containers {
                ids.insert(c.clone());
                out.containers += usize::from(remove_container(cri, c, seed, &mut out).await);
            }
            ids.insert(pod.clone());
            out.pods += usize::from(remove_pod(cri, pod, seed, &mut out).await);
        }
    }
    if !left.is_empty() {
        let msg = format!("after three rounds of removal: {left:?}");
        out.findings.push(Finding::of_run(Kind::Leak, seed, &msg));
    }
    processes_gone(&ids, seed, &mut out).await;
    cgroups_gone(seed, &mut out).await;
    out
}

/// The fuzzer's pods with their containers.
async fn ours(cri: &mut Cri) -> Result<Vec<(String, Vec<String>)>, Status> {
    let pods = cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let containers = cri
        .runtime
        .list_containers(v1::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    Ok(pods
        .into_iter()
        .filter(|p| p.annotations.contains_key(MARK))
        .map(|p| {
            let mine = containers
                .iter()
                .filter(|c| c.pod_sandbox_id == p.id)
                .map(|c| c.id.clone())
                .collect();
            (p.id, mine)
        })
        .collect())
}

fn failed(seed: u64, rpc: &'static str, st: &Status) -> Finding {
    let kind = classify(true, st.code(), st.message()).unwrap_or(Kind::Leak);
    let mut f = Finding::of_run(kind, seed, &format!("cleanup: {}", st.message()));
    f.rpc = rpc;
    f.code = Some(st.code());
    f
}

/// Runs one cleanup call with a time limit; a failure is recorded.
async fn step<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    rpc: &'static str,
    seed: u64,
    out: &mut Cleanup,
) -> bool {
    match tokio::time::timeout(CALL, call).await {
        Ok(Ok(_)) => true,
        Ok(Err(st)) if st.code() == tonic::Code::NotFound => true,
        Ok(Err(st)) => {
            out.findings.push(failed(seed, rpc, &st));
            false
        }
        Err(_) => {
            let msg = format!("cleanup: no answer within {CALL:?}");
            let mut f = Finding::of_run(Kind::Hang, seed, &msg);
            f.rpc = rpc;
            out.findings.push(f);
            false
        }
    }
}

async fn remove_container(cri: &mut Cri, id: &str, seed: u64, out: &mut Cleanup) -> bool {
    let rt = &mut cri.runtime;
    let stop = v1::StopContainerRequest {
        container_id: id.into(),
        timeout: 0,
    };
    step(rt.stop_container(stop), "StopContainer", seed, out).await;
    let remove = v1::RemoveContainerRequest {
        container_id: id.into(),
    };
    step(rt.remove_container(remove), "RemoveContainer", seed, out).await
}

async fn remove_pod(cri: &mut Cri, id: &str, seed: u64, out: &mut Cleanup) -> bool {
    let rt = &mut cri.runtime;
    let stop = v1::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    step(rt.stop_pod_sandbox(stop), "StopPodSandbox", seed, out).await;
    let remove = v1::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    step(rt.remove_pod_sandbox(remove), "RemovePodSandbox", seed, out).await
}

/// Waits up to 10 s for every process naming one of `ids` (a shim, a
/// pause) to be gone; what is left is a leak.
async fn processes_gone(ids: &BTreeSet<String>, seed: u64, out: &mut Cleanup) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<(String, Vec<i32>)>;
    loop {
        left = ids
            .iter()
            .map(|id| (id.clone(), crate::pids_with_arg(id)))
            .filter(|(_, pids)| !pids.is_empty())
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, pids) in left {
        let msg = format!("processes {pids:?} still name {id}");
        out.findings.push(Finding::of_run(Kind::Leak, seed, &msg));
    }
}

/// The cgroups that malformed cgroup parents made (`/crius-fuzz…` in every
/// hierarchy): removed, deepest first; one that stays holds processes.
async fn cgroups_gone(seed: u64, out: &mut Cleanup) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<PathBuf> = fuzz_cgroups()
            .into_iter()
            .filter(|d| !crate::rmdir_tree(d))
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let msg = format!("cgroups that cannot be removed (processes in them?): {left:?}");
            out.findings.push(Finding::of_run(Kind::Leak, seed, &msg));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `crius-fuzz*` directories at the root of the cgroup hierarchies
/// (v2, or each v1 controller).
fn fuzz_cgroups() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_owned()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut out = Vec::new();
    for h in hierarchies {
        let Ok(entries) = std::fs::read_dir(&h) else {
            continue;
        };
        out.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(CGROUP))
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
    }
    out
}
