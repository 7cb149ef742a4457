//! CheckpointContainer over the fakes: the task paused for the dump and
//! the diff, resumed whatever fails; the archive's files; refusals before
//! anything is touched; recovery thaws a task a dead daemon left paused.

use std::path::Path;
use std::time::Duration;

use crius_containerd::TaskStatus;
use crius_core::container::ContainerState;
use crius_core::{Error, Result};

use crate::tests::{Env, env};

const ARCHIVE: &str = "/var/lib/kubelet/checkpoints/app.tar";

async fn running(e: &Env) -> Result<String> {
    let sandbox = e.run("web").await?;
    running_in(e, &sandbox).await
}

async fn running_in(e: &Env, sandbox: &str) -> Result<String> {
    let id = e.create(sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    Ok(id)
}

fn position(ops: &[String], op: &str) -> usize {
    ops.iter().position(|o| o == op).unwrap_or(usize::MAX)
}

fn task_status(e: &Env, id: &str) -> Option<TaskStatus> {
    e.fake.world().tasks.get(id).map(|t| t.status)
}

#[tokio::test]
async fn a_checkpoint_pauses_dumps_diffs_resumes_and_archives() -> Result<()> {
    let e = env();
    let id = running(&e).await?;
    let before = e.fake.ops().len();
    e.pods
        .checkpoint_container(&e.config, &id, Path::new(ARCHIVE), None)
        .await?;
    let ops = e.fake.ops()[before..].to_vec();
    let at = |op| position(&ops, op);
    assert!(at("task_pause") < at("task_checkpoint"), "{ops:?}");
    assert!(at("task_checkpoint") < at("diff_to_file"), "{ops:?}");
    assert!(at("diff_to_file") < at("task_resume"), "{ops:?}");
    assert!(at("task_resume") < at("write_archive"), "{ops:?}");
    assert_eq!(task_status(&e, &id), Some(TaskStatus::Running));
    let names = e.fake.world().archives.get(Path::new(ARCHIVE)).cloned();
    let names = names.unwrap_or_default();
    for must in [
        "checkpoint/inventory.img",
        "config.dump",
        "spec.dump",
        "status.dump",
        "status",
        "rootfs-diff.tar",
        "dump.log",
    ] {
        assert!(names.iter().any(|n| n == must), "{must} missing: {names:?}");
    }
    // The diff's lease and view are gone; so is the work directory.
    let w = e.fake.world();
    assert!(w.leases.is_empty(), "{:?}", w.leases);
    assert!(!w.snapshots.iter().any(|(_, k)| k.contains("checkpoint")));
    assert!(
        !w.files
            .keys()
            .any(|p| p.to_string_lossy().contains("/checkpoints/"))
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_dump_resumes_the_task_and_writes_no_archive() -> Result<()> {
    let e = env();
    let id = running(&e).await?;
    e.fake
        .fail_with("task_checkpoint", 1, "runc did not terminate successfully");
    let err = e
        .pods
        .checkpoint_container(&e.config, &id, Path::new(ARCHIVE), None)
        .await
        .expect_err("the dump fails");
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("runc did not terminate")),
        "{err:?}"
    );
    assert_eq!(task_status(&e, &id), Some(TaskStatus::Running));
    assert!(e.fake.world().archives.is_empty());
    // A failed diff too.
    e.fake.fail("diff_to_file", 1);
    let err = e
        .pods
        .checkpoint_container(&e.config, &id, Path::new(ARCHIVE), None)
        .await;
    assert!(err.is_err());
    assert_eq!(task_status(&e, &id), Some(TaskStatus::Running));
    assert!(e.fake.world().leases.is_empty());
    Ok(())
}

#[tokio::test]
async fn checkpoints_that_cannot_be_made_are_refused_before_the_task_is_touched() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let created = e.create(&sandbox, "created").await?;
    let refused = |r: Result<u64>| matches!(r, Err(Error::FailedPrecondition(_)));
    let cp = |id: String| {
        let (pods, config) = (e.pods.clone(), e.config.clone());
        async move {
            pods.checkpoint_container(&config, &id, Path::new(ARCHIVE), None)
                .await
        }
    };
    assert!(refused(cp(created.clone()).await), "a created container");
    let unknown = cp("nope".into()).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
    let id = running_in(&e, &sandbox).await?;
    e.fake.world().criu = Some(31500);
    assert!(refused(cp(id.clone()).await), "CRIU 3.15");
    e.fake.world().criu = None;
    assert!(refused(cp(id.clone()).await), "no CRIU");
    e.fake.world().criu = Some(40101);
    if let Some(c) = e.fake.world().containers.get_mut(&id) {
        c.runtime.name = "io.containerd.kata.v2".into();
    }
    let kata = cp(id.clone()).await;
    assert!(
        matches!(&kata, Err(Error::FailedPrecondition(m)) if m.contains("io.containerd.kata.v2")),
        "{kata:?}"
    );
    assert!(!e.fake.ops().iter().any(|o| o == "task_pause"));
    Ok(())
}

#[tokio::test]
async fn a_resume_that_fails_is_tried_again() -> Result<()> {
    let e = env();
    let id = running(&e).await?;
    e.fake.fail("task_resume", 1);
    e.pods
        .checkpoint_container(&e.config, &id, Path::new(ARCHIVE), None)
        .await?;
    assert_eq!(task_status(&e, &id), Some(TaskStatus::Running));
    let resumes = e.fake.ops().iter().filter(|o| *o == "task_resume").count();
    assert_eq!(resumes, 2);
    // A pause that failed is followed by a resume all the same.
    e.fake.fail("task_pause", 1);
    let r = e
        .pods
        .checkpoint_container(&e.config, &id, Path::new(ARCHIVE), None)
        .await;
    assert!(r.is_err());
    let ops = e.fake.ops();
    let pause = ops.iter().rposition(|o| o == "task_pause");
    assert_eq!(
        pause.and_then(|i| ops.get(i + 1)).map(String::as_str),
        Some("task_resume")
    );
    Ok(())
}

#[tokio::test]
async fn past_its_timeout_a_checkpoint_writes_nothing() -> Result<()> {
    let e = env();
    let id = running(&e).await?;
    let err = e
        .pods
        .checkpoint_container(&e.config, &id, Path::new(ARCHIVE), Some(Duration::ZERO))
        .await
        .expect_err("no time at all");
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
    assert!(e.fake.world().archives.is_empty());
    assert_eq!(task_status(&e, &id), Some(TaskStatus::Running));
    // It gave up before pausing anything.
    assert!(!e.fake.ops().iter().any(|o| o == "task_pause"));
    Ok(())
}

#[tokio::test]
async fn recovery_thaws_a_task_a_checkpoint_left_paused() -> Result<()> {
    let e = env();
    let id = running(&e).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    // As if criusd died mid-checkpoint.
    if let Some(t) = e.fake.world().tasks.get_mut(&id) {
        t.status = TaskStatus::Paused;
    }
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(task_status(&e, &id), Some(TaskStatus::Running));
    assert_eq!(pods.container_status(&id)?.1.state, ContainerState::Running);
    // Watched again: its exit is recorded.
    e.fake.exit(&id, 3);
    crate::tests::wait_for(|| {
        pods.container_status(&id)
            .is_ok_and(|(_, s)| s.state == ContainerState::Exited)
    })
    .await;
    Ok(())
}
