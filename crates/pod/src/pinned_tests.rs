//! Pods without a pause process (pinned namespaces), over the recording
//! fakes: what a run makes, its undo at every step, containers joining the
//! pins, stop, removal and recovery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crius_core::cgroup::CgroupDriver;
use crius_core::config::{Config, SandboxMode};
use crius_core::container::ContainerState;
use crius_core::sandbox::{NamespaceMode, PodSandboxRequest, SandboxState};
use crius_core::{Error, Result};

use crate::tests::{Env, env, pod};

/// A pod whose containers each have their own PID namespace (kubelet's
/// default): pinned on the default handler (`sandbox_mode = "auto"`).
fn pinned_pod(name: &str) -> PodSandboxRequest {
    let mut req = pod(name);
    req.linux.namespaces.pid = NamespaceMode::Container;
    req
}

async fn run(e: &Env, req: PodSandboxRequest) -> Result<String> {
    e.pods
        .run(e.config.clone(), CgroupDriver::Cgroupfs, req)
        .await
}

fn with_mode(e: &Env, mode: SandboxMode) -> Arc<Config> {
    let mut config: Config = (*e.config).clone();
    for h in config.runtimes.values_mut() {
        h.sandbox_mode = mode;
    }
    Arc::new(config)
}

/// Every step of a pinned run that makes or records something.
const PINNED_STEPS: &[(&str, usize)] = &[
    ("create_dir", 1),
    ("write_atomic", 1), // the intent record
    ("cni_load", 1),
    ("write_atomic", 2), // the intent, with the network
    ("netns_create", 1),
    ("pin", 1),
    ("cni_add", 1),
    ("net_sysctls", 1),
    ("write_atomic", 3), // hostname
    ("mount_shm", 1),
    ("write_atomic", 6), // the intent, complete
    ("container_create", 1),
];

fn with_sysctls(name: &str) -> PodSandboxRequest {
    let mut req = pinned_pod(name);
    req.linux.sysctls = BTreeMap::from([
        ("kernel.shmmni".to_string(), "1234".to_string()),
        ("net.ipv4.ping_group_range".to_string(), "0 0".to_string()),
    ]);
    req
}

#[tokio::test]
async fn a_pinned_run_makes_namespaces_network_and_a_record_but_no_task() -> Result<()> {
    let e = env();
    let id = run(&e, with_sysctls("web")).await?;
    let calls = e.fake.calls();
    let pin = format!("pin {id} ipc=true uts=true hostname=web kernel.shmmni=1234");
    assert!(calls.contains(&pin), "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("net_sysctls ") && c.ends_with("net.ipv4.ping_group_range=0 0")),
        "{calls:?}"
    );
    for never in [
        "image_find",
        "image_builtin",
        "snapshot_view",
        "task_create",
        "lease_create",
    ] {
        assert!(
            !e.fake.ops().iter().any(|o| o == never),
            "{never}: {calls:?}"
        );
    }
    let left = e.fake.leftovers();
    for want in [".ipc", ".uts", &format!("netns/{id}")] {
        assert!(left.iter().any(|l| l.ends_with(want)), "{want}: {left:?}");
    }
    let status = e.pods.status(&id, true).await?;
    assert_eq!(status.state, SandboxState::Ready);
    assert_eq!(status.pid, None);
    let spec = status.spec.unwrap_or_default();
    assert!(spec.get("process").is_none_or(|p| p.is_null()), "{spec}");
    Ok(())
}

#[tokio::test]
async fn a_pinned_run_failing_at_each_step_leaves_nothing() -> Result<()> {
    for &(op, nth) in PINNED_STEPS {
        let e = env();
        e.fake.fail(op, nth);
        assert!(run(&e, with_sysctls("web")).await.is_err(), "{op} #{nth}");
        let left = e.fake.leftovers();
        assert!(left.is_empty(), "{op} #{nth} left {left:?}");
        let id = run(&e, with_sysctls("web")).await?;
        assert!(e.pods.status(&id, false).await.is_ok(), "{op} #{nth}");
    }
    Ok(())
}

#[tokio::test]
async fn containers_of_a_pinned_pod_join_its_pins_with_their_own_pid_namespace() -> Result<()> {
    let e = env();
    let sandbox = run(&e, pinned_pod("web")).await?;
    let id = e.create(&sandbox, "app").await?;
    let record = e.fake.world().containers.get(&id).cloned();
    let spec = serde_json::to_value(record.map(|r| r.spec)).unwrap_or_default();
    let ns = &spec["linux"]["namespaces"];
    let path_of = |typ: &str| {
        ns.as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == typ))
            .map(|n| n["path"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(path_of("pid"), Some(String::new()), "{ns}");
    assert!(
        path_of("ipc").is_some_and(|p| p.ends_with(&format!("pins/{sandbox}.ipc"))),
        "{ns}"
    );
    assert!(
        path_of("uts").is_some_and(|p| p.ends_with(&format!("pins/{sandbox}.uts"))),
        "{ns}"
    );
    assert!(
        path_of("network").is_some_and(|p| p.ends_with(&format!("netns/{sandbox}"))),
        "{ns}"
    );
    e.pods.start_container(&id).await?;
    assert_eq!(
        e.pods.container_status(&id)?.1.state,
        ContainerState::Running
    );
    Ok(())
}

#[tokio::test]
async fn stop_marks_the_record_unpins_and_remove_leaves_nothing() -> Result<()> {
    let e = env();
    let sandbox = run(&e, pinned_pod("web")).await?;
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
    let extensions = e.fake.world().containers[&sandbox].extensions.clone();
    assert!(extensions.contains_key(crate::meta::STOPPED_EXTENSION));
    let left = e.fake.leftovers();
    assert!(
        !left
            .iter()
            .any(|l| l.ends_with(".ipc") || l.ends_with(".uts")),
        "{left:?}"
    );
    assert!(e.fake.world().attachments.is_empty(), "CNI DEL ran");
    // A container cannot be made in a stopped pod.
    assert!(matches!(
        e.create(&sandbox, "late").await,
        Err(Error::FailedPrecondition(_))
    ));
    e.pods.stop(&e.config, &sandbox).await?;
    e.pods.remove(&e.config, &sandbox).await?;
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    e.pods.remove(&e.config, &sandbox).await?;
    Ok(())
}

#[tokio::test]
async fn recovery_finds_pinned_pods_ready_stopped_or_with_a_pin_lost() -> Result<()> {
    let e = env();
    let ready = run(&e, pinned_pod("ready")).await?;
    let stopped = run(&e, pinned_pod("stopped")).await?;
    let lost = run(&e, pinned_pod("lost")).await?;
    e.pods.stop(&e.config, &stopped).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    let lost_pin = e.config.state_dir.join("pins").join(format!("{lost}.uts"));
    assert!(e.fake.world().netns.remove(&lost_pin), "{lost_pin:?}");
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    let state = |id: &str| {
        let pods = pods.clone();
        let id = id.to_string();
        async move { pods.status(&id, false).await.map(|s| s.state) }
    };
    assert_eq!(state(&ready).await?, SandboxState::Ready);
    assert_eq!(state(&stopped).await?, SandboxState::NotReady);
    assert_eq!(state(&lost).await?, SandboxState::NotReady);
    // A pin lost while the daemon runs shows at the next status or list.
    let pin = e.config.state_dir.join("pins").join(format!("{ready}.ipc"));
    e.fake.world().netns.remove(&pin);
    let listed = pods.list(&Default::default());
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|(_, s)| *s == SandboxState::NotReady));
    for id in [&ready, &stopped, &lost] {
        pods.remove(&e.config, id).await?;
    }
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn recovery_removes_the_pins_of_a_run_cut_short() -> Result<()> {
    let e = env();
    let sandbox = run(&e, pinned_pod("web")).await?;
    e.pods.shutdown(Duration::from_secs(1)).await;
    // As if the daemon died between pinning and the record.
    e.fake.world().containers.clear();
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert!(pods.status(&sandbox, false).await.is_err());
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    // A plugin still running its ADD is killed before the DEL.
    let calls = e.fake.calls();
    let kill = calls
        .iter()
        .position(|c| *c == format!("kill_lost_plugins {sandbox}"));
    let del = calls
        .iter()
        .rposition(|c| *c == format!("cni_del {sandbox}"));
    assert!(kill.is_some() && kill < del, "{calls:?}");
    Ok(())
}

#[tokio::test]
async fn a_shared_pid_namespace_gets_a_pause_task_and_pinned_mode_refuses_it() -> Result<()> {
    let e = env();
    let shared = run(&e, pod("shared")).await?;
    assert!(e.fake.world().tasks.contains_key(&shared), "a pause task");
    let paused = with_mode(&e, SandboxMode::Pause);
    let id = e
        .pods
        .run(paused, CgroupDriver::Cgroupfs, pinned_pod("paused"))
        .await?;
    assert!(
        e.fake.world().tasks.contains_key(&id),
        "sandbox_mode = pause"
    );
    let before = e.fake.leftovers();
    let pinned = with_mode(&e, SandboxMode::Pinned);
    match e
        .pods
        .run(pinned, CgroupDriver::Cgroupfs, pod("refused"))
        .await
    {
        Err(Error::InvalidArgument { field, .. }) => {
            assert_eq!(field, "config.linux.security_context.namespace_options.pid")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.fake.leftovers(), before, "nothing of the refused pod");
    Ok(())
}

#[tokio::test]
async fn a_pinned_pods_network_stats_are_read_in_its_netns() -> Result<()> {
    let e = env();
    let sandbox = run(&e, pinned_pod("web")).await?;
    let usage = e
        .pods
        .pod_sandbox_stats(&sandbox, CgroupDriver::Cgroupfs)
        .await?;
    assert!(
        e.fake
            .calls()
            .iter()
            .any(|c| c.starts_with("net_dev ") && c.ends_with(&sandbox)),
        "{:?}",
        e.fake.calls()
    );
    assert_eq!(usage.interfaces.len(), 1, "{:?}", usage.interfaces);
    Ok(())
}

#[tokio::test]
async fn a_pod_with_nothing_pinned_is_not_ready_after_a_reboot() -> Result<()> {
    let e = env();
    let mut req = pinned_pod("host");
    req.linux.namespaces.network = NamespaceMode::Node;
    req.linux.namespaces.ipc = NamespaceMode::Node;
    let id = run(&e, req).await?;
    assert!(!e.fake.calls().iter().any(|c| c.starts_with("netns_create")));
    e.pods.shutdown(Duration::from_secs(1)).await;
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(pods.status(&id, false).await?.state, SandboxState::Ready);
    pods.shutdown(Duration::from_secs(1)).await;
    // A reboot: state_dir (a tmpfs) is empty, containerd's record is not.
    {
        let mut w = e.fake.world();
        w.files.clear();
        w.dirs.clear();
        w.mounts.clear();
    }
    let pods = e.restarted();
    pods.recover(&e.config).await?;
    assert_eq!(pods.status(&id, false).await?.state, SandboxState::NotReady);
    pods.remove(&e.config, &id).await?;
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_record_removed_behind_our_back_still_stops_and_removes() -> Result<()> {
    let e = env();
    let sandbox = run(&e, pinned_pod("web")).await?;
    e.fake.world().containers.remove(&sandbox);
    e.pods.stop(&e.config, &sandbox).await?;
    assert_eq!(
        e.pods.status(&sandbox, false).await?.state,
        SandboxState::NotReady
    );
    e.pods.remove(&e.config, &sandbox).await?;
    assert_eq!(e.fake.leftovers(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn the_lost_shims_of_a_pinned_pod_are_looked_for_by_its_containers() -> Result<()> {
    let e = env();
    let sandbox = run(&e, pinned_pod("web")).await?;
    let a = e.create(&sandbox, "a").await?;
    let b = e.create(&sandbox, "b").await?;
    e.pods.remove(&e.config, &sandbox).await?;
    let looked: Vec<String> = e
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("kill_lost_shims "))
        .collect();
    assert_eq!(looked.len(), 1, "{looked:?}");
    assert!(
        looked[0].contains(&a) && looked[0].contains(&b),
        "{looked:?}"
    );
    assert!(!looked[0].contains(&sandbox), "{looked:?}");
    Ok(())
}
