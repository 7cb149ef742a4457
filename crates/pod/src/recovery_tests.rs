//! Recovery after a crash at each point of a run or a start (the windows
//! the integration tests also kill `criusd` in, with fault points), and
//! recovery that a silent shim does not hold up.

use std::time::{Duration, Instant};

use crius_containerd::{Stdio, TaskStatus};
use crius_core::Result;
use crius_core::container::ContainerState;
use crius_core::sandbox::SandboxState;
use crius_core::status::RecoveryPhase;

use crate::ports::Tasks;
use crate::tests::{env, wait_for};

#[tokio::test]
async fn a_pause_task_created_but_never_started_is_deleted() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    // As if criusd died between the pause task's create and its start.
    if let Some(t) = e.fake.world().tasks.get_mut(&sandbox) {
        t.status = TaskStatus::Created;
    }
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(
        pods.status(&sandbox, false).await?.state,
        SandboxState::NotReady
    );
    assert!(
        !e.fake.world().tasks.contains_key(&sandbox),
        "no runc init left"
    );
    pods.remove(&e.config, &sandbox).await?;
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_task_started_before_its_start_was_recorded_is_running() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    // As if criusd died after the task's start, before it recorded it.
    e.fake.task_create(&id, vec![], &Stdio::null(), "").await?;
    let pid = e.fake.task_start(&id).await?;
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    let (_, status) = pods.container_status(&id)?;
    assert_eq!((status.state, status.pid), (ContainerState::Running, pid));
    assert!(status.started_at > 0);
    // Persisted: one more restart says the same.
    let again = e.restarted();
    again.recover(&e.config).await?;
    assert_eq!(
        again.container_status(&id)?.1.state,
        ContainerState::Running
    );
    // And watched: its exit is recorded.
    e.fake.exit(&id, 3);
    wait_for(|| {
        pods.container_status(&id)
            .is_ok_and(|s| s.1.state == ContainerState::Exited && s.1.exit_code == 3)
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn a_task_created_but_never_started_leaves_a_startable_container() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    e.fake.task_create(&id, vec![], &Stdio::null(), "").await?;
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(pods.container_status(&id)?.1.state, ContainerState::Created);
    assert!(!e.fake.world().tasks.contains_key(&id));
    pods.start_container(&id).await?;
    assert_eq!(pods.container_status(&id)?.1.state, ContainerState::Running);
    Ok(())
}

#[tokio::test]
async fn a_silent_shim_holds_up_nothing_and_is_reconciled_when_it_answers() -> Result<()> {
    let e = env();
    let (web, db) = (e.run("web").await?, e.run("db").await?);
    let app = e.create(&web, "app").await?;
    e.pods.start_container(&app).await?;
    let other = e.create(&db, "other").await?;
    e.pods.start_container(&other).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    e.fake.silence(&web, true);
    e.fake.silence(&app, true);
    e.fake.exit(&app, 0);
    let pods = e.restarted();
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), pods.recover(&e.config))
        .await
        .map_err(|_| crius_core::Error::Internal("recovery waited for a silent shim".into()))??;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    // The rest is recovered as usual; the silent ones wait.
    assert_eq!(pods.status(&db, false).await?.state, SandboxState::Ready);
    assert_eq!(
        pods.container_status(&other)?.1.state,
        ContainerState::Running
    );
    // Its last known state: READY (it was not stopped).
    assert_eq!(pods.status(&web, false).await?.state, SandboxState::Ready);
    assert_eq!(
        pods.container_status(&app)?.1.state,
        ContainerState::Running
    );
    let report = pods.recovery_report();
    assert_eq!(report.phase, RecoveryPhase::Done);
    assert_eq!((report.sandboxes, report.containers), (2, 2));
    let mut waiting = report.waiting_for_shims.clone();
    waiting.sort();
    let mut expected = vec![web.clone(), app.clone()];
    expected.sort();
    assert_eq!(waiting, expected);
    // The shims answer: the truth is learned.
    e.fake.silence(&web, false);
    e.fake.silence(&app, false);
    wait_for(|| pods.recovery_report().waiting_for_shims.is_empty()).await;
    assert_eq!(pods.status(&web, false).await?.state, SandboxState::Ready);
    assert_eq!(pods.container_status(&app)?.1.state, ContainerState::Exited);
    Ok(())
}

#[tokio::test]
async fn a_shim_that_does_not_know_is_no_exit() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    // A shim still busy after a restart answers UNKNOWN: the pod is as it was.
    if let Some(t) = e.fake.world().tasks.get_mut(&sandbox) {
        t.status = TaskStatus::Unknown;
    }
    assert_eq!(
        e.pods.status(&sandbox, true).await?.state,
        SandboxState::Ready
    );
    if let Some(t) = e.fake.world().tasks.get_mut(&sandbox) {
        t.status = TaskStatus::Running;
    }
    e.fake.exit(&sandbox, 0);
    assert_eq!(
        e.pods.status(&sandbox, true).await?.state,
        SandboxState::NotReady
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_task_state_is_asked_again() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    // containerd says UNKNOWN when the shim did not answer it in time.
    if let Some(t) = e.fake.world().tasks.get_mut(&sandbox) {
        t.status = TaskStatus::Unknown;
    }
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(
        pods.recovery_report().waiting_for_shims,
        vec![sandbox.clone()]
    );
    // The answer, at last: it had stopped meanwhile.
    if let Some(t) = e.fake.world().tasks.get_mut(&sandbox) {
        t.status = TaskStatus::Stopped;
    }
    wait_for(|| pods.recovery_report().waiting_for_shims.is_empty()).await;
    assert_eq!(
        pods.status(&sandbox, false).await?.state,
        SandboxState::NotReady
    );
    Ok(())
}
