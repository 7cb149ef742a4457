//! Issue 14 (first step): what cri-api v0.36 (Kubernetes 1.36) adds to
//! the wire: stop signals, environment values as bytes, and the RPCs crius
//! does not serve yet, which answer Unimplemented so kubelet falls back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use crius_cri_api::v1;

use crate::Env;
use crate::containers::{container, create, pod, start, status, wait_exited};

crate::tests![
    a_config_stop_signal_is_sent_and_reported,
    env_values_are_bytes_and_must_be_utf8,
    new_rpcs_answer_unimplemented,
];

/// A shell that exits 0 on `signal` and ignores SIGTERM: only the signal
/// asked for stops it before the grace period ends.
fn trapping(image: &str, name: &str, signal: &str) -> v1::ContainerConfig {
    let script = format!("trap 'exit 0' {signal}; trap '' TERM; while :; do sleep 0.1; done");
    container(name, image, &["sh", "-c", &script])
}

async fn a_config_stop_signal_is_sent_and_reported(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stop-signal").await?;
    let cri = &mut p.env.cri;
    let mut c = trapping(&p.image, "usr1", "USR1");
    c.stop_signal = v1::Signal::Sigusr1 as i32;
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    let s = status(cri, &id).await?;
    ensure!(s.stop_signal == v1::Signal::Sigusr1 as i32, "{s:?}");
    // Give the shell time to set its traps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    cri.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 30,
        })
        .await?;
    ensure!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let s = wait_exited(cri, &id).await?;
    ensure!(s.exit_code == 0, "not stopped by SIGUSR1: {s:?}");
    // None asked for: SIGTERM (busybox names no STOPSIGNAL).
    let plain = create(cri, &p.id, container("plain", &p.image, &["sleep", "60"])).await?;
    let s = status(cri, &plain).await?;
    ensure!(s.stop_signal == v1::Signal::Sigterm as i32, "{s:?}");
    // A number that is no signal.
    let mut c = container("bad-signal", &p.image, &["true"]);
    c.stop_signal = 999;
    let err = create(cri, &p.id, c).await.expect_err("999 is no signal");
    ensure!(
        err.code() == tonic::Code::InvalidArgument && err.message().contains("config.stop_signal"),
        "{err:?}"
    );
    p.env.remove_all_and_check().await
}

async fn env_values_are_bytes_and_must_be_utf8(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "env-bytes").await?;
    let cri = &mut p.env.cri;
    let mut c = container("env", &p.image, &["sh", "-c", "echo \"$GREETING\""]);
    c.envs = vec![v1::KeyValue {
        key: "GREETING".into(),
        value: "grüße".into(),
    }];
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    wait_exited(cri, &id).await?;
    let log = std::fs::read_to_string(p.logs.path().join("env.log"))?;
    ensure!(log.contains("grüße"), "{log}");
    let mut c = container("latin1", &p.image, &["true"]);
    c.envs = vec![v1::KeyValue {
        key: "A".into(),
        value: vec![b'a', 0xff],
    }];
    let err = create(cri, &p.id, c).await.expect_err("not UTF-8");
    ensure!(
        err.code() == tonic::Code::InvalidArgument
            && err.message().contains("config.envs[0].value"),
        "{err:?}"
    );
    p.env.remove_all_and_check().await
}

async fn new_rpcs_answer_unimplemented(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let unimplemented = |r: Result<(), tonic::Status>, rpc: &str| match r {
        Err(e) if e.code() == tonic::Code::Unimplemented => Ok(()),
        other => Err(anyhow::anyhow!("{rpc}: {other:?}")),
    };
    let rt = &mut cri.runtime;
    unimplemented(
        rt.stream_pod_sandboxes(v1::StreamPodSandboxesRequest::default())
            .await
            .map(|_| ()),
        "StreamPodSandboxes",
    )?;
    unimplemented(
        rt.stream_containers(v1::StreamContainersRequest::default())
            .await
            .map(|_| ()),
        "StreamContainers",
    )?;
    unimplemented(
        rt.update_pod_sandbox_resources(v1::UpdatePodSandboxResourcesRequest::default())
            .await
            .map(|_| ()),
        "UpdatePodSandboxResources",
    )?;
    unimplemented(
        cri.image
            .stream_images(v1::StreamImagesRequest::default())
            .await
            .map(|_| ()),
        "StreamImages",
    )
}
