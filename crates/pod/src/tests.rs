//! Lifecycle tests over the recording fakes ([`crate::fake`]): no root, no
//! containerd. Each failure injected at a step of a create must leave
//! nothing behind; recovery must find each interrupted state.

use std::sync::Arc;
use std::time::Duration;

use crius_core::cgroup::CgroupDriver;
use crius_core::config::Config;
use crius_core::container::{ContainerRequest, ContainerState, HostFacts};
use crius_core::sandbox::{PodSandboxRequest, SandboxState};
use crius_core::{Error, Result};

use crate::Pods;
use crate::fake::{self, Fake};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

struct Env {
    fake: Fake,
    pods: Arc<Pods>,
    config: Arc<Config>,
    _tmp: tempfile::TempDir,
}

fn host() -> HostFacts {
    HostFacts {
        daemon_oom_score_adj: 0,
        capabilities: vec![],
        cgroup_controllers: Default::default(),
        memory_swap: false,
        cgroup_unified: false,
        apparmor: crius_core::apparmor::Mode::Disabled,
        kernel_version: None,
    }
}

fn env() -> Env {
    let fake = Fake::new();
    fake.add_image(fake::image("sha256:b0b0", BUSYBOX));
    let tmp = tempfile::tempdir().expect("a scratch directory");
    let config = Config {
        state_dir: tmp.path().join("run"),
        root_dir: tmp.path().join("lib"),
        ..Default::default()
    };
    let pods = Arc::new(Pods::with_ports(
        fake.ports(),
        config.state_dir.clone(),
        b"pause",
        host(),
    ));
    Env {
        fake,
        pods,
        config: Arc::new(config),
        _tmp: tmp,
    }
}

impl Env {
    /// The same world under a new daemon (a restart).
    fn restarted(&self) -> Arc<Pods> {
        Arc::new(Pods::with_ports(
            self.fake.ports(),
            self.config.state_dir.clone(),
            b"pause",
            host(),
        ))
    }

    async fn run(&self, name: &str) -> Result<String> {
        self.pods
            .run(self.config.clone(), CgroupDriver::Cgroupfs, pod(name))
            .await
    }

    async fn create(&self, sandbox: &str, name: &str) -> Result<String> {
        self.pods
            .create_container(
                self.config.clone(),
                CgroupDriver::Cgroupfs,
                sandbox,
                container(name),
            )
            .await
    }
}

fn pod(name: &str) -> PodSandboxRequest {
    PodSandboxRequest {
        name: name.into(),
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        hostname: name.into(),
        ..Default::default()
    }
}

fn container(name: &str) -> ContainerRequest {
    ContainerRequest {
        name: name.into(),
        image: "busybox".into(),
        command: vec!["/bin/sh".into()],
        ..Default::default()
    }
}

/// Every step of a sandbox run that makes or records something, as
/// `(op, nth call)`.
const SANDBOX_STEPS: &[(&str, usize)] = &[
    ("image_find", 1),
    ("image_builtin", 1),
    ("image_config", 1),
    ("create_dir", 1),
    ("write_atomic", 1), // the intent record
    ("cni_load", 1),
    ("write_atomic", 2), // the intent, with the network
    ("netns_create", 1),
    ("cni_add", 1),
    ("write_atomic", 3), // hostname
    ("write_atomic", 4), // hosts
    ("write_atomic", 5), // resolv.conf
    ("mount_shm", 1),
    ("write_atomic", 6), // the intent, complete
    ("lease_create", 1),
    ("snapshot_view", 1),
    ("container_create", 1),
    ("task_create", 1),
    ("task_start", 1),
];

#[tokio::test]
async fn a_sandbox_run_makes_everything_and_keeps_no_lease() -> Result<()> {
    let e = env();
    let id = e.run("web").await?;
    let left = e.fake.leftovers();
    for want in [
        "container ",
        "task ",
        "snapshot ",
        "netns ",
        "cni ",
        "mount ",
    ] {
        assert!(
            left.iter().any(|l| l.starts_with(want) && l.contains(&id)),
            "{want}: {left:?}"
        );
    }
    assert!(!left.iter().any(|l| l.starts_with("lease ")), "{left:?}");
    let status = e.pods.status(&id, false).await?;
    assert_eq!(status.state, SandboxState::Ready);
    assert_eq!(status.meta.ips, vec!["10.88.0.2".to_string()]);
    Ok(())
}

#[tokio::test]
async fn a_sandbox_run_failing_at_each_step_leaves_nothing() -> Result<()> {
    for &(op, nth) in SANDBOX_STEPS {
        let e = env();
        e.fake.fail(op, nth);
        let run = e.run("web").await;
        assert!(run.is_err(), "{op} #{nth}: the run must fail");
        let left = e.fake.leftovers();
        assert!(left.is_empty(), "{op} #{nth} left {left:?}");
        // The name is free again: the same pod runs now.
        let id = e.run("web").await?;
        assert!(e.pods.status(&id, false).await.is_ok(), "{op} #{nth}");
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_image_snapshot_is_unpacked_lazily() -> Result<()> {
    let e = env();
    e.run("first").await?; // builds the pause image
    e.fake.world().unpacked.clear();
    let sandbox = e.run("web").await?;
    e.fake.world().unpacked.clear();
    e.create(&sandbox, "app").await?;
    let unpacks = e.fake.ops().iter().filter(|o| *o == "image_unpack").count();
    assert_eq!(unpacks, 2, "{:?}", e.fake.calls());
    Ok(())
}

/// Every step of a container create that makes or records something.
const CONTAINER_STEPS: &[(&str, usize)] = &[
    ("image_find", 1),
    ("image_config", 1),
    ("lease_create", 1),
    ("snapshot_prepare", 1),
    ("read_rootfs", 1),
    ("host_lookup", 1),
    ("container_get", 1), // the pod's runtime
    ("container_create", 1),
];

#[tokio::test]
async fn a_container_create_failing_at_each_step_leaves_nothing() -> Result<()> {
    for &(op, nth) in CONTAINER_STEPS {
        let e = env();
        let sandbox = e.run("web").await?;
        let before = e.fake.leftovers();
        e.fake.fail(op, nth);
        assert!(e.create(&sandbox, "app").await.is_err(), "{op} #{nth}");
        assert_eq!(e.fake.leftovers(), before, "{op} #{nth}");
        let id = e.create(&sandbox, "app").await?;
        assert!(e.pods.container_status(&id).is_ok(), "{op} #{nth}");
    }
    Ok(())
}

#[tokio::test]
async fn identical_retries_in_flight_get_the_same_id() -> Result<()> {
    let e = env();
    let (a, b) = tokio::join!(e.run("web"), e.run("web"));
    let sandbox = a?;
    assert_eq!(sandbox, b?);
    let (a, b) = tokio::join!(e.create(&sandbox, "app"), e.create(&sandbox, "app"));
    assert_eq!(a?, b?);
    // Once made, the name is taken.
    assert!(matches!(
        e.run("web").await,
        Err(Error::AlreadyExists { .. })
    ));
    let creates = e
        .fake
        .ops()
        .iter()
        .filter(|o| *o == "container_create")
        .count();
    assert_eq!(creates, 2, "one sandbox and one container record");
    Ok(())
}

#[tokio::test]
async fn a_container_runs_exits_and_is_removed() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    assert_eq!(
        e.pods.container_status(&id)?.1.state,
        ContainerState::Running
    );
    e.fake.exit(&id, 3);
    wait_for(|| {
        e.pods
            .container_status(&id)
            .is_ok_and(|s| s.1.state == ContainerState::Exited)
    })
    .await;
    let (_, status) = e.pods.container_status(&id)?;
    assert_eq!(status.exit_code, 3);
    assert!(
        !e.fake.world().tasks.contains_key(&id),
        "the exited task goes"
    );
    e.pods.remove_container(&e.config, &id).await?;
    assert!(e.pods.container_status(&id).is_err());
    let left = e.fake.leftovers();
    assert!(!left.iter().any(|l| l.contains(&id)), "{left:?}");
    Ok(())
}

#[tokio::test]
async fn a_remove_racing_the_exit_watcher_removes_everything() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    // The exit and the removal at once: whoever deletes the task first,
    // the other must not fail.
    e.fake.exit(&id, 0);
    e.pods.remove_container(&e.config, &id).await?;
    let left = e.fake.leftovers();
    assert!(!left.iter().any(|l| l.contains(&id)), "{left:?}");
    e.pods.remove(&e.config, &sandbox).await?;
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn stop_and_remove_of_a_pod_take_its_containers_and_network() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    e.pods.stop(&e.config, &sandbox).await?;
    assert_eq!(
        e.pods.container_status(&id)?.1.state,
        ContainerState::Exited
    );
    assert_eq!(
        e.pods.status(&sandbox, false).await?.state,
        SandboxState::NotReady
    );
    assert!(e.fake.world().attachments.is_empty(), "CNI DEL ran");
    e.pods.remove(&e.config, &sandbox).await?;
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    // Unknown ids are fine, as CRI wants.
    e.pods.stop(&e.config, &sandbox).await?;
    e.pods.remove(&e.config, &sandbox).await?;
    Ok(())
}

#[tokio::test]
async fn recovery_records_an_exit_that_happened_while_the_daemon_was_down() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    e.fake.exit(&id, 7);
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    let (_, status) = pods.container_status(&id)?;
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, 7)
    );
    assert_eq!(
        pods.status(&sandbox, false).await?.state,
        SandboxState::Ready
    );
    Ok(())
}

#[tokio::test]
async fn recovery_of_a_running_record_whose_task_is_gone() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    e.fake.world().tasks.remove(&id);
    e.fake.world().tasks.remove(&sandbox);
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    let (_, status) = pods.container_status(&id)?;
    assert_eq!(status.state, ContainerState::Exited);
    assert_eq!(
        status.exit_code,
        crius_core::container::state::VANISHED_EXIT_CODE
    );
    assert_eq!(
        pods.status(&sandbox, false).await?.state,
        SandboxState::NotReady
    );
    // The names stay taken by the recovered objects.
    assert!(matches!(
        pods.run(e.config.clone(), CgroupDriver::Cgroupfs, pod("web"))
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn recovery_watches_a_container_still_running() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(pods.container_status(&id)?.1.state, ContainerState::Running);
    e.fake.exit(&id, 0);
    wait_for(|| {
        pods.container_status(&id)
            .is_ok_and(|s| s.1.state == ContainerState::Exited)
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn recovery_removes_what_a_run_cut_short_left() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    // As if the daemon died before the record was written: the pod's
    // directory (with its intent record), netns and network remain.
    {
        let mut w = e.fake.world();
        w.tasks.clear();
        w.containers.clear();
        w.snapshots.clear();
        w.leases.insert(format!("crius-sandbox-{sandbox}"));
    }
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert!(pods.status(&sandbox, false).await.is_err());
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_failed_start_is_recorded_and_leaves_no_task() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.fake.fail("task_start", 1);
    assert!(e.pods.start_container(&id).await.is_err());
    let (_, status) = e.pods.container_status(&id)?;
    assert_eq!(status.state, ContainerState::Exited);
    assert!(!e.fake.world().tasks.contains_key(&id));
    // The record says so too: persisted, then published.
    let record = e.fake.world().containers.get(&id).cloned();
    let persisted: crius_core::container::ContainerStatus = record
        .as_ref()
        .and_then(|r| r.extensions.get(crate::container::STATUS_EXTENSION))
        .map(crate::meta::from_any)
        .transpose()?
        .ok_or_else(|| Error::Internal("no status on record".into()))?;
    assert_eq!(persisted, status);
    Ok(())
}

/// Waits (up to 10 s) for `cond`.
async fn wait_for(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cond(), "condition not met in 10 s");
}

#[tokio::test]
async fn exec_sync_runs_in_a_running_container_only() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    assert!(matches!(
        e.pods.exec_sync(&id, vec!["true".into()], 0).await,
        Err(Error::FailedPrecondition(_))
    ));
    e.pods.start_container(&id).await?;
    let out = e.pods.exec_sync(&id, vec!["true".into()], 5).await?;
    assert_eq!(out.exit_code, 0);
    let ops = e.fake.ops();
    let execs: Vec<&String> = ops.iter().filter(|o| o.starts_with("exec_")).collect();
    assert_eq!(
        execs,
        ["exec_create", "exec_start", "exec_wait", "exec_delete"],
        "the exec is deleted after it ran"
    );
    Ok(())
}

#[tokio::test]
async fn a_stopped_pod_takes_no_new_container_and_shutdown_stops_the_watchers() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    // Unknown ids are fine for stops, as CRI wants.
    e.pods.stop_container("0123456789ab", 0).await?;
    e.pods.stop(&e.config, &sandbox).await?;
    assert!(matches!(
        e.create(&sandbox, "late").await,
        Err(Error::FailedPrecondition(_))
    ));
    // A container that no longer runs takes no resources.
    let resources = crius_core::container::ContainerResources::default();
    assert!(matches!(
        e.pods.update_container_resources(&id, &resources).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(e.pods.shutdown(Duration::from_secs(5)).await, 0);
    Ok(())
}

#[tokio::test]
async fn a_shim_dead_before_the_first_wait_is_its_published_exit_not_a_vanished_task() -> Result<()>
{
    let e = env();
    e.pods.recover(&e.config).await?;
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.fake.task_gone_at_wait(&id);
    e.pods.start_container(&id).await?;
    // containerd publishes the exit before it cleans the task up, but the
    // event may reach crius after the watcher's Wait found no task.
    let waiting = format!("task_wait {id}");
    wait_for(|| e.fake.calls().contains(&waiting)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.fake.publish_shim_exit(&id);
    wait_for(|| {
        e.pods
            .container_status(&id)
            .is_ok_and(|s| s.1.state == ContainerState::Exited)
    })
    .await;
    let (_, status) = e.pods.container_status(&id)?;
    assert_eq!(status.exit_code, 137, "{status:?}");
    Ok(())
}

#[tokio::test]
async fn a_dead_shim_is_an_exit_as_containerd_published_it() -> Result<()> {
    let e = env();
    // Recovery starts the follower of containerd's exit events.
    e.pods.recover(&e.config).await?;
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    // Once the exit watcher waits (a shim dead before the first Wait: the
    // test above).
    let waiting = format!("task_wait {id}");
    wait_for(|| e.fake.calls().contains(&waiting)).await;
    e.fake.shim_dies(&id);
    wait_for(|| {
        e.pods
            .container_status(&id)
            .is_ok_and(|s| s.1.state == ContainerState::Exited)
    })
    .await;
    let (_, status) = e.pods.container_status(&id)?;
    assert_eq!(status.exit_code, 137, "{status:?} {:?}", e.fake.calls());
    Ok(())
}

#[tokio::test]
async fn recovery_removes_container_files_no_record_owns() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    let fifos = e.config.state_dir.join("containers").join("0rphan");
    let scratch = e.config.state_dir.join("containers").join("0rphan.rootfs");
    let volumes = e.config.root_dir.join("containers/0rphan/volumes/0");
    let kept = e.config.state_dir.join("containers").join(&id);
    {
        let mut w = e.fake.world();
        w.dirs
            .extend([fifos.clone(), scratch.clone(), volumes, kept.clone()]);
    }
    e.pods.shutdown(Duration::from_secs(1)).await;
    e.restarted().recover(&e.config).await?;
    let left = e.fake.leftovers();
    assert!(!left.iter().any(|l| l.contains("0rphan")), "{left:?}");
    assert!(
        e.fake.world().dirs.contains(&kept),
        "a known container's files stay"
    );
    Ok(())
}

#[tokio::test]
async fn stats_of_a_created_container_are_its_writable_layer_only() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    let usage = e.pods.container_stats(&id).await?;
    assert_eq!(usage.writable_layer, Some((4096, 1)));
    assert!(usage.cpu_ns.is_none() && usage.memory.is_none());
    let all = e
        .pods
        .list_container_stats(&crate::StatsFilter {
            pod_sandbox_id: sandbox.clone(),
            ..Default::default()
        })
        .await?;
    assert_eq!(all.len(), 1);
    let none = e
        .pods
        .list_container_stats(&crate::StatsFilter {
            pod_sandbox_id: "ffff".into(),
            ..Default::default()
        })
        .await?;
    assert!(none.is_empty());
    let pod = e
        .pods
        .pod_sandbox_stats(&sandbox, CgroupDriver::Cgroupfs)
        .await?;
    assert!(pod.containers.is_empty(), "no container runs");
    Ok(())
}

#[tokio::test]
async fn a_localhost_seccomp_profile_is_read_through_the_host_port() -> Result<()> {
    use crius_core::sandbox::SecurityProfile;
    let e = env();
    let sandbox = e.run("web").await?;
    let profile = "/etc/crius/seccomp/deny-mkdir.json";
    let mut req = container("app");
    req.linux.security.seccomp = Some(SecurityProfile::Localhost(profile.into()));
    let before = e.fake.leftovers();
    let missing = e
        .pods
        .create_container(
            e.config.clone(),
            CgroupDriver::Cgroupfs,
            &sandbox,
            req.clone(),
        )
        .await;
    match missing {
        Err(Error::InvalidArgument { field, reason }) => {
            assert_eq!(field, "config.linux.security_context.seccomp.localhost_ref");
            assert!(reason.contains(profile), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.fake.leftovers(),
        before,
        "a refused create leaves nothing"
    );
    let rules = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
    e.fake
        .world()
        .host_files
        .insert(profile.into(), rules.into());
    let id = e
        .pods
        .create_container(e.config.clone(), CgroupDriver::Cgroupfs, &sandbox, req)
        .await?;
    let record = e.fake.world().containers.get(&id).cloned();
    let seccomp = record
        .and_then(|r| r.spec.linux().clone())
        .and_then(|l| l.seccomp().clone())
        .ok_or_else(|| Error::Internal("no seccomp in the spec".into()))?;
    let json = serde_json::to_value(&seccomp).map_err(|e| Error::Internal(e.to_string()))?;
    assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW", "{json}");
    assert_eq!(json["syscalls"][0]["names"][0], "mkdir", "{json}");
    Ok(())
}
