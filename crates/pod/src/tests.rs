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

pub(crate) struct Env {
    pub(crate) fake: Fake,
    pub(crate) pods: Arc<Pods>,
    pub(crate) config: Arc<Config>,
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

pub(crate) fn env() -> Env {
    env_on(host())
}

/// [`env`] on a host with `host`'s facts.
fn env_on(host: HostFacts) -> Env {
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
        host,
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
    pub(crate) fn restarted(&self) -> Arc<Pods> {
        Arc::new(Pods::with_ports(
            self.fake.ports(),
            self.config.state_dir.clone(),
            b"pause",
            host(),
        ))
    }

    pub(crate) async fn run(&self, name: &str) -> Result<String> {
        self.pods
            .run(self.config.clone(), CgroupDriver::Cgroupfs, pod(name))
            .await
    }

    pub(crate) async fn create(&self, sandbox: &str, name: &str) -> Result<String> {
        self.create_req(sandbox, container(name)).await
    }

    /// Creates `req` in `sandbox` (cgroupfs, this env's config).
    pub(crate) async fn create_req(&self, sandbox: &str, req: ContainerRequest) -> Result<String> {
        self.pods
            .create_container(self.config.clone(), CgroupDriver::Cgroupfs, sandbox, req)
            .await
    }
}

pub(crate) fn pod(name: &str) -> PodSandboxRequest {
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
pub(crate) async fn wait_for(cond: impl Fn() -> bool) {
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
    match e.pods.exec_sync(&id, vec![String::new()], 5).await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "cmd[0]"),
        other => panic!("an empty program: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_container_of_a_stopped_pod_does_not_start_and_stays_created() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.stop(&e.config, &sandbox).await?;
    let tasks_before = e.fake.ops().iter().filter(|o| *o == "task_create").count();
    match e.pods.start_container(&id).await {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("not ready"), "{m}"),
        other => panic!("{other:?}"),
    }
    let tasks_after = e.fake.ops().iter().filter(|o| *o == "task_create").count();
    assert_eq!(tasks_before, tasks_after, "no task was made");
    let (_, status) = e.pods.container_status(&id)?;
    assert_eq!(status.state, ContainerState::Created);
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
    // A container that no longer runs keeps new resources on record (as
    // in containerd), its task untouched.
    let resources = crius_core::container::ContainerResources {
        cpu_shares: 256,
        ..Default::default()
    };
    let updates = |e: &Env| {
        e.fake
            .ops()
            .iter()
            .filter(|o| *o == "task_update_resources")
            .count()
    };
    let before = updates(&e);
    e.pods.update_container_resources(&id, &resources).await?;
    assert_eq!(updates(&e), before);
    let (meta, _) = e.pods.container_status(&id)?;
    assert_eq!(meta.resources.map(|r| r.cpu_shares), Some(256));
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
    let missing = e.create_req(&sandbox, req.clone()).await;
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
    let id = e.create_req(&sandbox, req).await?;
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

/// Streaming sessions (Exec, Attach) over the fakes: real FIFOs under a
/// scratch state directory, the fake shim at their other ends.
mod streaming {
    use super::*;
    use crius_stream::backend::{AttachRequest, Backend, ExecRequest, Io};
    use crius_stream::channel::{ExitStatus, TerminalSize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;

    fn exec_req(id: &str, tty: bool, stdin: bool) -> ExecRequest {
        ExecRequest {
            container_id: id.to_string(),
            cmd: vec!["sh".into(), "-c".into(), "work".into()],
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        }
    }

    /// A running container `app` in pod `web`, with execs held until the
    /// test ends them.
    async fn running(e: &Env) -> Result<String> {
        let sandbox = e.run("web").await?;
        let id = e.create(&sandbox, "app").await?;
        e.pods.start_container(&id).await?;
        e.fake.world().hold_execs = true;
        Ok(id)
    }

    /// Waits for the next exec of `id` not in `seen`.
    async fn next_exec(e: &Env, id: &str, seen: &[String]) -> String {
        wait_for(|| e.fake.exec_ids(id).iter().any(|x| !seen.contains(x))).await;
        let ids = e.fake.exec_ids(id);
        ids.into_iter()
            .find(|x| !seen.contains(x))
            .unwrap_or_default()
    }

    fn exec_files(e: &Env, id: &str) -> Vec<String> {
        let dir = e.config.state_dir.join("containers").join(id);
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("exec-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn exec_streams_output_passes_the_exit_code_and_ids_are_unique() -> Result<()> {
        let e = env();
        let id = running(&e).await?;
        let streams = e.pods.streams();
        let mut ids = Vec::new();
        for code in [3u32, 0] {
            let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
            let (err_w, mut err_r) = tokio::io::duplex(1 << 16);
            let io = Io {
                stdin: None,
                stdout: Some(Box::pin(out_w)),
                stderr: Some(Box::pin(err_w)),
                resize: None,
            };
            let s = streams.clone();
            let req = exec_req(&id, false, false);
            let session = tokio::spawn(async move { s.exec(req, io).await });
            let exec_id = next_exec(&e, &id, &ids).await;
            e.fake.exec_write(&id, &exec_id, 0, b"out\n")?;
            e.fake.exec_write(&id, &exec_id, 1, b"err\n")?;
            e.fake.exec_exit(&id, &exec_id, code);
            let status = session.await.map_err(|e| Error::Internal(e.to_string()))?;
            match code {
                0 => assert_eq!(status, ExitStatus::Success),
                _ => assert!(
                    matches!(status, ExitStatus::ExitCode { code: 3, .. }),
                    "{status:?}"
                ),
            }
            let (mut out, mut err) = (String::new(), String::new());
            out_r.read_to_string(&mut out).await.ok();
            err_r.read_to_string(&mut err).await.ok();
            assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
            ids.push(exec_id);
        }
        assert_ne!(ids[0], ids[1], "each exec has its own id");
        let left = e.fake.leftovers();
        assert!(!left.iter().any(|l| l.starts_with("exec ")), "{left:?}");
        assert!(exec_files(&e, &id).is_empty(), "{:?}", exec_files(&e, &id));
        Ok(())
    }

    #[tokio::test]
    async fn a_dropped_exec_is_killed_deleted_and_its_fifos_removed() -> Result<()> {
        let e = env();
        let id = running(&e).await?;
        let streams = e.pods.streams();
        let io = Io {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
        };
        let req = exec_req(&id, true, true);
        let session = tokio::spawn(async move { streams.exec(req, io).await });
        let exec_id = next_exec(&e, &id, &[]).await;
        wait_for(|| e.fake.calls().iter().any(|c| c.starts_with("exec_start"))).await;
        assert!(!exec_files(&e, &id).is_empty(), "the exec has FIFOs");
        // The client goes away: the session's future is dropped.
        session.abort();
        wait_for(|| e.fake.exec_ids(&id).is_empty()).await;
        let calls = e.fake.calls();
        assert!(
            calls.contains(&format!("exec_kill {id} {exec_id} 9")),
            "{calls:?}"
        );
        assert!(calls.contains(&format!("exec_delete {id} {exec_id}")));
        wait_for(|| exec_files(&e, &id).is_empty()).await;
        Ok(())
    }

    /// A client gone while the shim is still starting the exec: crius'
    /// FIFO ends stay open until the start answered (the shim's blocking
    /// open of the stdout FIFO needs a reader), then the exec is killed.
    #[tokio::test]
    async fn an_exec_dropped_mid_start_keeps_its_fifos_open_until_the_start_answered() -> Result<()>
    {
        let e = env();
        let id = running(&e).await?;
        let (gate, gated) = watch::channel(false);
        {
            let mut w = e.fake.world();
            w.hold_execs = true;
            w.exec_start_gate = Some(gated);
        }
        let io = Io {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
        };
        let streams = e.pods.streams();
        let req = exec_req(&id, true, true);
        let session = tokio::spawn(async move { streams.exec(req, io).await });
        let exec_id = next_exec(&e, &id, &[]).await;
        wait_for(|| e.fake.calls().iter().any(|c| c.starts_with("exec_start"))).await;
        session.abort();
        let _ = session.await;
        gate.send_replace(true);
        wait_for(|| e.fake.exec_ids(&id).is_empty()).await;
        let calls = e.fake.calls();
        assert!(
            !calls.iter().any(|c| c.starts_with("exec_start_hung")),
            "{calls:?}"
        );
        assert!(
            calls.contains(&format!("exec_kill {id} {exec_id} 9")),
            "{calls:?}"
        );
        wait_for(|| exec_files(&e, &id).is_empty()).await;
        Ok(())
    }

    #[tokio::test]
    async fn exec_in_a_container_not_running_or_unknown_fails_clearly() -> Result<()> {
        let e = env();
        let sandbox = e.run("web").await?;
        let id = e.create(&sandbox, "app").await?;
        let io = || Io {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
        };
        let streams = e.pods.streams();
        match streams.exec(exec_req(&id, false, false), io()).await {
            ExitStatus::Failure { message, .. } => {
                assert!(message.contains("is not running"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match streams.exec(exec_req("nope", false, false), io()).await {
            ExitStatus::Failure { message, .. } => {
                assert!(message.contains("nope"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.fake.ops().iter().any(|o| o == "exec_create"));
        Ok(())
    }

    #[tokio::test]
    async fn exec_resizes_reach_the_port_and_stdin_eof_closes_the_exec_stdin() -> Result<()> {
        let e = env();
        let id = running(&e).await?;
        let (mut in_w, in_r) = tokio::io::duplex(1 << 16);
        let (size_tx, size_rx) = tokio::sync::mpsc::channel(4);
        // The first size may come before the process exists.
        size_tx
            .send(TerminalSize {
                width: 80,
                height: 24,
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let io = Io {
            stdin: Some(Box::pin(in_r)),
            stdout: None,
            stderr: None,
            resize: Some(size_rx),
        };
        let streams = e.pods.streams();
        let req = exec_req(&id, true, true);
        let session = tokio::spawn(async move { streams.exec(req, io).await });
        let exec_id = next_exec(&e, &id, &[]).await;
        let resized = format!("exec_resize {id} {exec_id} 80x24");
        wait_for(|| e.fake.calls().contains(&resized)).await;
        in_w.write_all(b"ls\n")
            .await
            .map_err(|e| Error::io("stdin", e))?;
        let got = std::sync::Mutex::new(Vec::new());
        wait_for(|| {
            let (data, _) = e.fake.exec_stdin(&id, &exec_id);
            let mut g = crate::lock(&got);
            g.extend(data);
            *g == b"ls\n"
        })
        .await;
        assert!(!e.fake.ops().iter().any(|o| o == "exec_close_stdin"));
        drop(in_w);
        let closed = format!("exec_close_stdin {id} {exec_id}");
        wait_for(|| e.fake.calls().contains(&closed)).await;
        assert!(e.fake.exec_stdin(&id, &exec_id).1, "the shim's side closed");
        e.fake.exec_exit(&id, &exec_id, 0);
        let status = session.await.map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(status, ExitStatus::Success);
        Ok(())
    }

    #[tokio::test]
    async fn attach_gets_live_output_feeds_stdin_once_and_ends_with_the_exit() -> Result<()> {
        let e = env();
        let sandbox = e.run("web").await?;
        let mut req = container("app");
        req.stdin = true;
        req.stdin_once = true;
        let id = e.create_req(&sandbox, req).await?;
        e.pods.start_container(&id).await?;
        let (mut in_w, in_r) = tokio::io::duplex(1 << 16);
        let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
        let io = Io {
            stdin: Some(Box::pin(in_r)),
            stdout: Some(Box::pin(out_w)),
            stderr: None,
            resize: None,
        };
        let streams = e.pods.streams();
        let attach = AttachRequest {
            container_id: id.clone(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: false,
        };
        let session = tokio::spawn(async move { streams.attach(attach, io).await });
        // Output written from now on reaches the client.
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"hello\n") {
            e.fake.task_write(&id, 0, b"hello\n")?;
            let n = tokio::time::timeout(Duration::from_millis(200), out_r.read(&mut buf))
                .await
                .unwrap_or(Ok(0))
                .map_err(|e| Error::io("stdout", e))?;
            got.extend_from_slice(&buf[..n]);
        }
        in_w.write_all(b"input\n")
            .await
            .map_err(|e| Error::io("stdin", e))?;
        let fed = std::sync::Mutex::new(Vec::new());
        wait_for(|| {
            let (data, _) = e.fake.exec_stdin(&id, "");
            let mut g = crate::lock(&fed);
            g.extend(data);
            *g == b"input\n"
        })
        .await;
        // stdin_once, no tty: the client's EOF closes the container's stdin
        // and the client stays attached.
        drop(in_w);
        let closed = format!("exec_close_stdin {id} ");
        wait_for(|| {
            e.fake
                .calls()
                .iter()
                .any(|c| c.starts_with(closed.trim_end()))
        })
        .await;
        assert!(!session.is_finished(), "still attached until the exit");
        e.fake.exit(&id, 5);
        let status = tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .map_err(|_| Error::Internal("attach did not end with the exit".into()))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert!(
            matches!(status, ExitStatus::ExitCode { code: 5, .. }),
            "{status:?}"
        );
        Ok(())
    }

    /// A listener on the loopback of a real pinned namespace where the
    /// pod's record says its namespace is (needs root; skipped otherwise).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_reaches_the_pods_loopback_and_a_closed_port_errors_clearly() -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return Ok(());
        }
        let e = env();
        let sandbox = e.run("web").await?;
        let dir = e.config.state_dir.join("netns");
        let ns = crius_network::netns::create(&dir, &sandbox)?;
        let _pin = Unpin(ns.clone(), dir);
        let up = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .map_err(|e| Error::io("nsenter", e))?;
        assert!(up.success());
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let ns_file = std::fs::File::open(&ns).map_err(|e| Error::io("netns", e))?;
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let _ = port_tx.send(l.local_addr()?.port());
            let (mut conn, _) = l.accept()?;
            std::io::Write::write_all(&mut conn, b"from the pod")
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut conn = e
            .pods
            .streams()
            .connect(&sandbox, port)
            .await
            .map_err(|e| Error::io("connect", e))?;
        let mut got = String::new();
        conn.read_to_string(&mut got)
            .await
            .map_err(|e| Error::io("read", e))?;
        assert_eq!(got, "from the pod");
        assert!(server.join().is_ok_and(|r| r.is_ok()));
        let err = match e.pods.streams().connect(&sandbox, port).await {
            Ok(_) => panic!("the listener is closed"),
            Err(err) => err,
        };
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("connection refused to port {port}")) && msg.contains(&sandbox),
            "{msg}"
        );
        Ok(())
    }

    /// Removes a pinned namespace and its directory's mount when dropped.
    struct Unpin(std::path::PathBuf, std::path::PathBuf);

    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = crius_network::netns::remove(&self.0);
            while nix::mount::umount2(&self.1, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        }
    }
}

/// A graceful stop arriving while a start is half-way (task created, not
/// started) waits for the start: its signal would kill the created task
/// and fail the start. Found by the fuzzer.
#[tokio::test]
async fn a_graceful_stop_does_not_signal_a_start_half_way() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.fake.hold_start(&id, true);
    let pods = e.pods.clone();
    let started = tokio::spawn({
        let id = id.clone();
        async move { pods.start_container(&id).await }
    });
    while !e.fake.ops().iter().any(|o| o == "task_start") {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let pods = e.pods.clone();
    let stopped = tokio::spawn({
        let id = id.clone();
        async move { pods.stop_container(&id, 30).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !e.fake.ops().iter().any(|o| o == "task_kill"),
        "a signal reached the half-made task: {:?}",
        e.fake.calls()
    );
    e.fake.hold_start(&id, false);
    started.await.expect("no panic")?;
    stopped.await.expect("no panic")?;
    let ops = e.fake.ops();
    let start = ops.iter().position(|o| o == "task_start");
    let kill = ops.iter().position(|o| o == "task_kill");
    assert!(start < kill, "{ops:?}");
    Ok(())
}

/// An ExecSync whose container stops while the command runs, its shim
/// gone with it: the client's race (FAILED_PRECONDITION), not crius'
/// fault. Found by the fuzzer ("containerd exec wait: ttrpc: closed").
#[tokio::test]
async fn an_exec_cut_off_by_the_container_stopping_is_a_precondition() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    {
        let mut w = e.fake.world();
        w.hold_execs = true;
        w.exec_waits_break = true;
    }
    let pods = e.pods.clone();
    let exec = tokio::spawn({
        let id = id.clone();
        async move {
            pods.exec_sync(&id, vec!["sleep".into(), "9".into()], 0)
                .await
        }
    });
    while !e.fake.ops().iter().any(|o| o == "exec_wait") {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    e.pods.stop_container(&id, 0).await?;
    match exec.await.expect("no panic") {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("stopped"), "{m}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

/// runc cannot join a container's namespaces ("error executing setns
/// process"): the client's race when the container is going away (a
/// moment later its task is stopped), crius' or runc's fault otherwise.
/// Found by the fuzzer (an ExecSync racing a RemoveContainer).
#[tokio::test]
async fn a_failed_setns_blames_a_dying_container_only() -> Result<()> {
    const SETNS: &str = "OCI runtime exec failed: error executing setns process: exit status 1";
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    e.pods.start_container(&id).await?;
    e.fake.fail_with("exec_start", 1, SETNS);
    match e.pods.exec_sync(&id, vec!["true".into()], 5).await {
        Err(Error::Internal(m)) => assert!(m.contains("setns"), "{m}"),
        other => panic!("a running container: {other:?}"),
    }
    e.fake.fail_with("exec_start", 1, SETNS);
    let fake = e.fake.clone();
    let dying = id.clone();
    let killer = tokio::spawn(async move {
        while fake
            .ops()
            .iter()
            .filter(|o| *o == "exec_start")
            .nth(1)
            .is_none()
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        fake.exit(&dying, 137);
    });
    match e.pods.exec_sync(&id, vec!["true".into()], 5).await {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("not running"), "{m}"),
        other => panic!("a dying container: {other:?}"),
    }
    killer.await.expect("no panic");
    Ok(())
}

#[tokio::test]
async fn a_recursive_read_only_mount_needs_a_runtime_and_kernel_that_can() -> Result<()> {
    let rro = |mut req: ContainerRequest| {
        req.mounts = vec![crius_core::container::Mount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            readonly: true,
            recursive_read_only: true,
            ..Default::default()
        }];
        req
    };
    // runc (the fake's) lists rro, the kernel has mount_setattr.
    let e = env_on(HostFacts {
        kernel_version: Some((6, 1)),
        ..host()
    });
    let sandbox = e.run("web").await?;
    let id = e.create_req(&sandbox, rro(container("app"))).await?;
    let (meta, _) = e.pods.container_status(&id)?;
    assert!(meta.mounts[0].recursive_read_only);
    assert!(e.fake.calls().contains(&"oci_features runc".to_string()));
    // A runtime that does not list it: refused, nothing left.
    e.fake.world().oci_runtimes.clear();
    let before = e.fake.leftovers();
    match e.create_req(&sandbox, rro(container("b"))).await {
        Err(Error::InvalidArgument { field, reason }) => {
            assert_eq!(field, "config.mounts[0].recursive_read_only");
            assert!(reason.contains("does not support"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.fake.leftovers(),
        before,
        "a refused create leaves nothing"
    );
    // An old kernel: refused however runc answers.
    let old = env();
    let sandbox = old.run("web").await?;
    let refused = old.create_req(&sandbox, rro(container("c"))).await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument { .. })),
        "{refused:?}"
    );
    // What Status advertises says the same.
    let handlers = e.pods.advertised_handlers(&e.config).await;
    assert!(handlers.iter().all(|(_, f)| !f.recursive_read_only_mounts));
    e.fake.world().oci_runtimes = Fake::new().world().oci_runtimes.clone();
    let handlers = e.pods.advertised_handlers(&e.config).await;
    assert!(!handlers.is_empty());
    assert!(
        handlers.iter().all(|(_, f)| f.recursive_read_only_mounts),
        "{handlers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_resize_is_in_the_spec_the_task_and_the_status_and_survives_a_restart() -> Result<()> {
    use crius_core::container::{ContainerResources, resources_in_force};
    let e = env();
    let sandbox = e.run("web").await?;
    let id = e.create(&sandbox, "app").await?;
    let spec_of = |e: &Env| {
        e.fake
            .world()
            .containers
            .get(&id)
            .map(|r| resources_in_force(&r.spec))
    };
    // Created: the spec changes, so the task starts with it.
    let cpu = ContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        ..Default::default()
    };
    e.pods.update_container_resources(&id, &cpu).await?;
    assert_eq!(spec_of(&e).map(|r| r.cpu_quota), Some(50_000));
    assert!(!e.fake.ops().contains(&"task_update_resources".to_string()));
    // Running: the task gets the merged set; the status reports it.
    e.pods.start_container(&id).await?;
    let memory = ContainerResources {
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    };
    e.pods.update_container_resources(&id, &memory).await?;
    let (task, _) = e
        .fake
        .world()
        .task_resources
        .get(&id)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        task.cpu().as_ref().and_then(|c| c.quota()),
        Some(50_000),
        "merged"
    );
    assert_eq!(
        task.memory().as_ref().and_then(|m| m.limit()),
        Some(64 << 20)
    );
    let (meta, _) = e.pods.container_status(&id)?;
    let r = meta.resources.unwrap_or_default();
    assert_eq!((r.cpu_quota, r.memory_limit_in_bytes), (50_000, 64 << 20));
    // A task that refuses: the old spec back, the status unchanged.
    e.fake.fail("task_update_resources", 1);
    let big = ContainerResources {
        memory_limit_in_bytes: 128 << 20,
        ..Default::default()
    };
    assert!(matches!(
        e.pods.update_container_resources(&id, &big).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(spec_of(&e).map(|r| r.memory_limit_in_bytes), Some(64 << 20));
    let (meta, _) = e.pods.container_status(&id)?;
    assert_eq!(
        meta.resources.map(|r| r.memory_limit_in_bytes),
        Some(64 << 20)
    );
    // A restarted daemon reads them from the spec.
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    let (meta, _) = pods.container_status(&id)?;
    let r = meta.resources.unwrap_or_default();
    assert_eq!((r.cpu_quota, r.memory_limit_in_bytes), (50_000, 64 << 20));
    Ok(())
}

#[tokio::test]
async fn a_pods_new_size_is_recorded_and_a_vm_runtime_gets_it() -> Result<()> {
    use crius_core::sandbox::Resources;
    let mut e = env();
    let mut config = (*e.config).clone();
    config.runtimes.insert(
        "kata".into(),
        crius_core::config::Config::parse(
            "default_runtime = \"kata\"\n[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
        )
        .map_err(|e| Error::Internal(e.to_string()))?
        .runtimes["kata"]
            .clone(),
    );
    e.config = Arc::new(config);
    let size = crate::PodResources {
        overhead: Some(Resources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        resources: Some(Resources {
            cpu_period: 100_000,
            cpu_quota: 200_000,
            cpu_shares: 2048,
            memory_limit_in_bytes: 512 << 20,
        }),
    };
    // runc: recorded only (the containers carry the limits).
    let runc = e.run("web").await?;
    e.pods.update_sandbox_resources(&runc, size).await?;
    assert!(!e.fake.world().task_resources.contains_key(&runc));
    assert_eq!(e.pods.status(&runc, false).await?.resources, Some(size));
    // A VM runtime: its sandbox task gets the totals and the annotations.
    let mut req = pod("vm");
    req.runtime_handler = "kata".into();
    let vm = e
        .pods
        .run(e.config.clone(), CgroupDriver::Cgroupfs, req)
        .await?;
    e.pods.update_sandbox_resources(&vm, size).await?;
    let (linux, annotations) = e
        .fake
        .world()
        .task_resources
        .get(&vm)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        linux.memory().as_ref().and_then(|m| m.limit()),
        Some(512 << 20)
    );
    assert_eq!(linux.cpu().as_ref().and_then(|c| c.quota()), Some(200_000));
    assert_eq!(
        annotations["io.kubernetes.cri.sandbox-memory"],
        (512u64 << 20).to_string()
    );
    assert_eq!(annotations["io.kubernetes.cri.sandbox-cpu-quota"], "200000");
    assert_eq!(annotations["io.kubernetes.cri.sandbox-cpu-shares"], "2048");
    // A restart finds what was recorded; an unknown pod is not found.
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(pods.status(&runc, false).await?.resources, Some(size));
    assert_eq!(pods.status(&vm, false).await?.resources, Some(size));
    assert!(matches!(
        pods.update_sandbox_resources("0123456789ab", size).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn an_image_volume_is_a_mounted_view_that_goes_with_its_container() -> Result<()> {
    let e = env();
    let sandbox = e.run("web").await?;
    let with_volume = |name: &str, sub: &str| {
        let mut req = container(name);
        req.mounts = vec![crius_core::container::Mount {
            container_path: "/data".into(),
            image: "busybox".into(),
            image_sub_path: sub.into(),
            readonly: true,
            ..Default::default()
        }];
        req
    };
    let create = |req| e.create_req(&sandbox, req);
    let before = e.fake.leftovers();
    let id = create(with_volume("app", "etc")).await?;
    let (meta, _) = e.pods.container_status(&id)?;
    let m = &meta.mounts[0];
    assert_eq!(
        (m.image.as_str(), m.image_ref.as_str()),
        ("busybox", "sha256:b0b0")
    );
    assert!(
        m.host_path.ends_with("/image-volumes/0/etc"),
        "{}",
        m.host_path
    );
    let v = &meta.image_volumes[0];
    let record = e
        .fake
        .world()
        .containers
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let gc = format!(
        "containerd.io/gc.ref.snapshot.{}/image-volume-0",
        v.snapshotter
    );
    assert_eq!(record.labels.get(&gc), Some(&v.key), "{:?}", record.labels);
    assert!(
        e.fake
            .leftovers()
            .contains(&format!("snapshot {}/{}", v.snapshotter, v.key))
    );
    // The spec binds the sub-path read-only.
    let bind = record
        .spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination().to_string_lossy() == "/data")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        bind.source().as_ref().map(|p| p.display().to_string()),
        Some(m.host_path.clone())
    );
    assert!(bind.options().iter().flatten().any(|o| o == "ro"));
    // A reboot took the mount (the state directory is volatile): the start
    // mounts it again where the spec binds it.
    let dir = std::path::PathBuf::from(&v.dir);
    e.fake.world().mounts.remove(&dir);
    e.pods.start_container(&id).await?;
    assert!(e.fake.world().mounts.contains(&dir), "mounted again");
    e.pods.remove_container(&e.config, &id).await?;
    assert_eq!(e.fake.leftovers(), before, "nothing left after removal");
    // A sub-path the image lacks, an image not there: refused, nothing left.
    e.fake.world().missing_sub_paths.insert("nope".into());
    match create(with_volume("b", "nope")).await {
        Err(Error::InvalidArgument { field, .. }) => {
            assert_eq!(field, "config.mounts[0].image_sub_path")
        }
        other => panic!("{other:?}"),
    }
    let mut unknown = with_volume("c", "");
    unknown.mounts[0].image = "no-such-image".into();
    assert!(matches!(create(unknown).await, Err(Error::NotFound { .. })));
    assert_eq!(
        e.fake.leftovers(),
        before,
        "a refused create leaves nothing"
    );
    Ok(())
}

/// Tests of pods in a user namespace (mode POD).
mod userns {
    use super::*;
    use crius_core::sandbox::NamespaceMode;
    use crius_core::userns::{Asked, IdMapping};

    fn mapped(name: &str) -> PodSandboxRequest {
        let m = IdMapping {
            container_id: 0,
            host_id: 300_000,
            length: 65536,
        };
        let mut req = pod(name);
        req.linux.user_namespace = Some(NamespaceMode::Pod);
        req.linux.userns_ids = Asked {
            uids: vec![m],
            gids: vec![m],
        };
        req
    }

    async fn run(e: &Env, name: &str) -> Result<String> {
        e.pods
            .run(e.config.clone(), CgroupDriver::Cgroupfs, mapped(name))
            .await
    }

    fn position(ops: &[String], op: &str) -> usize {
        ops.iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("no {op} in {ops:?}"))
    }

    #[tokio::test]
    async fn the_pause_makes_the_network_namespace_before_it_starts() -> Result<()> {
        let e = env();
        let id = run(&e, "web").await?;
        let ops = e.fake.ops();
        assert!(!ops.iter().any(|o| o == "netns_create"), "{ops:?}");
        let order = [
            "snapshot_prepare", // the copy to remap
            "remap_ids",
            "snapshot_commit",
            "snapshot_view",
            "task_create",
            "netns_pin_pid",
            "cni_add",
            "container_set_extension", // the record gets the IPs
            "task_start",
        ];
        let at: Vec<usize> = order.iter().map(|op| position(&ops, op)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{order:?} at {at:?}");
        let status = e.pods.status(&id, false).await?;
        assert_eq!(status.meta.ips, vec!["10.88.0.2".to_string()]);
        assert!(status.meta.userns.is_some());
        Ok(())
    }

    #[tokio::test]
    async fn a_failure_at_each_new_step_leaves_nothing() -> Result<()> {
        for op in [
            "remap_ids",
            "snapshot_commit",
            "netns_pin_pid",
            "cni_add",
            "container_set_extension",
            "task_start",
        ] {
            let e = env();
            e.fake.fail(op, 1);
            assert!(run(&e, "web").await.is_err(), "{op}");
            let left = e.fake.leftovers();
            assert!(left.is_empty(), "{op} left {left:?}");
            run(&e, "web").await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn containers_share_the_remapped_image_and_stay_in_the_pod() -> Result<()> {
        let e = env();
        let sandbox = run(&e, "web").await?;
        let remaps = || e.fake.ops().iter().filter(|o| *o == "remap_ids").count();
        let before = remaps();
        let create = |c: ContainerRequest| e.create_req(&sandbox, c);
        let mut c = container("app");
        c.linux.security.user_namespace = Some(NamespaceMode::Pod);
        c.linux.security.userns_ids = mapped("x").linux.userns_ids;
        create(c.clone()).await?;
        // busybox is remapped once, then reused.
        assert_eq!(remaps(), before + 1);
        c.name = "again".into();
        create(c.clone()).await?;
        assert_eq!(remaps(), before + 1);
        c.name = "leaves".into();
        c.linux.security.user_namespace = Some(NamespaceMode::Node);
        c.linux.security.userns_ids = Default::default();
        let refused = create(c).await;
        assert!(
            matches!(refused, Err(Error::InvalidArgument { .. })),
            "{refused:?}"
        );
        Ok(())
    }

    fn with_volume(name: &str, mapped: bool) -> ContainerRequest {
        let mut c = container(name);
        c.linux.security.user_namespace = Some(NamespaceMode::Pod);
        c.linux.security.userns_ids = self::mapped("x").linux.userns_ids;
        c.mounts = vec![crius_core::container::Mount {
            container_path: "/data".into(),
            host_path: "/var/lib/kubelet/pods/p/volumes/data".into(),
            id_mappings: if mapped {
                c.linux.security.userns_ids.clone()
            } else {
                Default::default()
            },
            ..Default::default()
        }];
        c
    }

    fn bind_source(e: &Env, id: &str) -> Option<String> {
        let w = e.fake.world();
        let spec = &w.containers.get(id)?.spec;
        let m = spec
            .mounts()
            .as_ref()?
            .iter()
            .find(|m| m.destination() == std::path::Path::new("/data"))?;
        m.source().as_ref().map(|s| s.display().to_string())
    }

    #[tokio::test]
    async fn a_mapped_volume_is_bound_through_an_idmapped_clone_gone_with_its_container()
    -> Result<()> {
        let e = env();
        let sandbox = run(&e, "web").await?;
        let id = e.create_req(&sandbox, with_volume("app", true)).await?;
        let pid = e.pods.status(&sandbox, false).await?.pid;
        let call = e
            .fake
            .calls()
            .into_iter()
            .find(|c| c.starts_with("idmapped_bind"));
        let call = call.unwrap_or_default();
        assert!(
            call.contains(&format!("/proc/{}/ns/user", pid.unwrap_or(0))),
            "{call}"
        );
        let clone = e.config.state_dir.join("idmapped").join(&id).join("0");
        assert_eq!(bind_source(&e, &id), Some(clone.display().to_string()));
        assert!(e.fake.world().mounts.contains(&clone));
        // Without mappings, or where the file system cannot: a plain bind.
        let plain = e.create_req(&sandbox, with_volume("plain", false)).await?;
        e.fake.world().no_idmap = true;
        let fallback = e
            .create_req(&sandbox, with_volume("fallback", true))
            .await?;
        for c in [&plain, &fallback] {
            let source = bind_source(&e, c);
            assert_eq!(
                source.as_deref(),
                Some("/var/lib/kubelet/pods/p/volumes/data")
            );
        }
        e.pods.remove_container(&e.config, &id).await?;
        assert!(
            !e.fake.world().mounts.contains(&clone),
            "unmounted with its container"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_create_unmounts_its_idmapped_clones() -> Result<()> {
        let e = env();
        let sandbox = run(&e, "web").await?;
        e.fake.fail("container_create", 1);
        assert!(
            e.create_req(&sandbox, with_volume("app", true))
                .await
                .is_err()
        );
        let idmapped = e.config.state_dir.join("idmapped");
        let w = e.fake.world();
        assert!(
            !w.mounts.iter().any(|m| m.starts_with(&idmapped)),
            "{:?}",
            w.mounts
        );
        Ok(())
    }
}

mod cdi {
    use super::*;

    const SPEC: &str = r#"{"cdiVersion": "0.6.0", "kind": "vendor.com/dev",
        "devices": [{"name": "null", "containerEdits": {
            "env": ["VENDOR_DEV=null"],
            "deviceNodes": [{"path": "/dev/vendor-null", "hostPath": "/dev/null"}],
            "mounts": [{"hostPath": "/srv/vendor", "containerPath": "/vendor", "options": ["ro", "rbind"]}]}}]}"#;

    fn with_device(name: &str) -> ContainerRequest {
        ContainerRequest {
            cdi_devices: vec![name.into()],
            ..container("app")
        }
    }

    #[tokio::test]
    async fn a_cdi_device_reaches_the_spec_from_a_spec_file_written_after_start() -> Result<()> {
        let e = env();
        let sandbox = e.run("web").await?;
        // Written after the daemon started: read at the create.
        e.fake
            .world()
            .host_files
            .insert("/var/run/cdi/vendor.json".into(), SPEC.into());
        let id = e
            .create_req(&sandbox, with_device("vendor.com/dev=null"))
            .await?;
        let spec = e.fake.world().containers.get(&id).map(|r| r.spec.clone());
        let spec = spec.ok_or_else(|| Error::Internal("no record".into()))?;
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        assert!(
            devices
                .iter()
                .any(|d| d.path() == std::path::Path::new("/dev/vendor-null")
                    && d.major() == 1
                    && d.minor() == 3),
            "{devices:?}"
        );
        let env = spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default();
        assert!(env.contains(&"VENDOR_DEV=null".to_string()), "{env:?}");
        let mounts = spec.mounts().clone().unwrap_or_default();
        assert!(
            mounts
                .iter()
                .any(|m| m.destination() == std::path::Path::new("/vendor"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_cdi_device_is_refused_with_nothing_made() -> Result<()> {
        let e = env();
        let sandbox = e.run("web").await?;
        let before = e.fake.calls().len();
        let err = e
            .create_req(&sandbox, with_device("vendor.com/dev=gpu9"))
            .await
            .expect_err("refused");
        match &err {
            Error::InvalidArgument { field, reason } => {
                assert_eq!(field, "config.CDI_devices[0].name");
                assert!(reason.contains("vendor.com/dev=gpu9"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let calls = e.fake.calls()[before..].to_vec();
        assert!(
            !calls.iter().any(|c| c.starts_with("lease_create")
                || c.starts_with("snapshot")
                || c.starts_with("container_create")),
            "{calls:?}"
        );
        assert!(e.pods.list_containers(&Default::default()).is_empty());
        Ok(())
    }
}
