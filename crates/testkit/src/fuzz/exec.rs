//! Sending a generated call, and the liveness probe after it.

use std::time::Duration;

use tonic::Status;

use super::call::{Call, Reply, Request};
use crate::client::Cri;

/// What became of a call.
#[derive(Debug)]
pub enum Outcome {
    /// The daemon answered.
    Answer(Result<Reply, Status>),
    /// No answer within the call timeout (the call was dropped).
    Hang(Duration),
}

/// Makes the call's directories, sends it, and waits up to `timeout`.
pub async fn send(cri: &mut Cri, call: &Call, timeout: Duration) -> Outcome {
    for dir in &call.mkdirs {
        // A path the daemon refuses may not be one this host takes either.
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    match tokio::time::timeout(timeout, request(cri, &call.request, call.deadline)).await {
        Ok(answer) => Outcome::Answer(answer),
        Err(_) => Outcome::Hang(timeout),
    }
}

/// One RPC with an optional `grpc-timeout`; the answer as the state sees it.
macro_rules! rpc {
    ($client:expr, $method:ident, $q:expr, $deadline:expr) => {{
        let mut r = tonic::Request::new($q.clone());
        if let Some(d) = $deadline {
            r.set_timeout(d);
        }
        $client.$method(r).await.map(|r| r.into_inner())
    }};
}

fn done<T>(_: T) -> Reply {
    Reply::Done
}

async fn request(cri: &mut Cri, req: &Request, d: Option<Duration>) -> Result<Reply, Status> {
    let rt = &mut cri.runtime;
    match req {
        Request::Version(q) => rpc!(rt, version, q, d).map(done),
        Request::Status(q) => rpc!(rt, status, q, d).map(done),
        Request::RuntimeConfig(q) => rpc!(rt, runtime_config, q, d).map(done),
        Request::UpdateRuntimeConfig(q) => rpc!(rt, update_runtime_config, q, d).map(done),
        Request::RunPodSandbox(q) => {
            rpc!(rt, run_pod_sandbox, q, d).map(|r| Reply::Id(r.pod_sandbox_id))
        }
        Request::StopPodSandbox(q) => rpc!(rt, stop_pod_sandbox, q, d).map(done),
        Request::RemovePodSandbox(q) => rpc!(rt, remove_pod_sandbox, q, d).map(done),
        Request::PodSandboxStatus(q) => rpc!(rt, pod_sandbox_status, q, d)
            .map(|r| Reply::State(r.status.map_or(-1, |s| s.state))),
        Request::ListPodSandbox(q) => rpc!(rt, list_pod_sandbox, q, d).map(done),
        Request::CreateContainer(q) => {
            rpc!(rt, create_container, q, d).map(|r| Reply::Id(r.container_id))
        }
        Request::StartContainer(q) => rpc!(rt, start_container, q, d).map(done),
        Request::StopContainer(q) => rpc!(rt, stop_container, q, d).map(done),
        Request::RemoveContainer(q) => rpc!(rt, remove_container, q, d).map(done),
        Request::ContainerStatus(q) => {
            rpc!(rt, container_status, q, d).map(|r| Reply::State(r.status.map_or(-1, |s| s.state)))
        }
        Request::ListContainers(q) => rpc!(rt, list_containers, q, d).map(done),
        Request::ExecSync(q) => rpc!(rt, exec_sync, q, d).map(done),
        Request::Exec(q) => rpc!(rt, exec, q, d).map(done),
        Request::Attach(q) => rpc!(rt, attach, q, d).map(done),
        Request::PortForward(q) => rpc!(rt, port_forward, q, d).map(done),
        _ => stats_or_image(cri, req, d).await,
    }
}

async fn stats_or_image(
    cri: &mut Cri,
    req: &Request,
    d: Option<Duration>,
) -> Result<Reply, Status> {
    let (rt, im) = (&mut cri.runtime, &mut cri.image);
    match req {
        Request::UpdateContainerResources(q) => {
            rpc!(rt, update_container_resources, q, d).map(done)
        }
        Request::UpdatePodSandboxResources(q) => {
            rpc!(rt, update_pod_sandbox_resources, q, d).map(done)
        }
        Request::ReopenContainerLog(q) => rpc!(rt, reopen_container_log, q, d).map(done),
        Request::ContainerStats(q) => rpc!(rt, container_stats, q, d).map(done),
        Request::ListContainerStats(q) => rpc!(rt, list_container_stats, q, d).map(done),
        Request::PodSandboxStats(q) => rpc!(rt, pod_sandbox_stats, q, d).map(done),
        Request::ListPodSandboxStats(q) => rpc!(rt, list_pod_sandbox_stats, q, d).map(done),
        Request::PullImage(q) => rpc!(im, pull_image, q, d).map(done),
        Request::ImageStatus(q) => rpc!(im, image_status, q, d).map(done),
        Request::ListImages(q) => rpc!(im, list_images, q, d).map(done),
        Request::RemoveImage(q) => rpc!(im, remove_image, q, d).map(done),
        Request::ImageFsInfo(q) => rpc!(im, image_fs_info, q, d).map(done),
        // Every other request was sent by `request`.
        _ => Ok(Reply::Done),
    }
}

/// Whether the daemon answers a Version call within `timeout`.
pub async fn alive(cri: &mut Cri, timeout: Duration) -> Result<(), String> {
    let q = crius_cri_api::v1::VersionRequest {
        version: "v1".into(),
    };
    let rt = &mut cri.runtime;
    match tokio::time::timeout(timeout, async { rpc!(rt, version, q, Some(timeout)) }).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s)) => Err(format!("Version: {:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("Version: no answer within {timeout:?}")),
    }
}
