//! Issue 14: what cri-api v0.36 and the kubelets of 1.33-1.36 use: stop
//! signals, environment values as bytes, recursive read-only mounts,
//! supplemental-groups policies, in-place resize of containers and pods,
//! image volumes, list streaming, user namespaces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use crius_cri_api::v1;

use crate::Env;
use crate::containers::{container, create, exec, pod, start, status, wait_exited};
use crate::pods::{PodEnv, config, run};

crate::tests![
    recursive_read_only_mounts_where_the_runtime_can,
    supplemental_groups_policies_and_the_user_reported,
    in_place_resize_is_in_force_and_kept_across_a_restart,
    a_pods_new_size_is_recorded_and_handed_to_a_vm_shim,
    image_volumes_are_read_only_views_that_go_with_their_container,
    a_config_stop_signal_is_sent_and_reported,
    env_values_are_bytes_and_must_be_utf8,
    list_streams_carry_what_lists_do,
    image_fs_info_names_every_snapshotter_in_use,
    a_user_namespaced_pod_is_root_inside_and_unprivileged_outside,
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

/// Each list-streaming RPC (KEP-5825) carries what its List RPC answers,
/// every item once; the filter is applied.
async fn list_streams_carry_what_lists_do(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let mut c = config(name);
        c.metadata.get_or_insert_default().uid = format!("{name}-uid");
        let pod = run(&mut p.cri, c).await?;
        let cid = create(&mut p.cri, &pod, container(name, &image, &["sleep", "600"])).await?;
        start(&mut p.cri, &cid).await?;
        ids.push((pod, cid));
    }
    let rt = &mut p.cri.runtime;
    let mut streamed = Vec::new();
    let mut s = rt
        .stream_pod_sandboxes(v1::StreamPodSandboxesRequest::default())
        .await?
        .into_inner();
    while let Some(m) = s.message().await? {
        streamed.extend(m.pod_sandboxes.into_iter().map(|p| p.id));
    }
    let listed: Vec<String> = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.id)
        .collect();
    ensure!(
        streamed == listed && listed.len() == 2,
        "{streamed:?} vs {listed:?}"
    );
    // Filtered: one pod's containers.
    let filter = v1::ContainerFilter {
        pod_sandbox_id: ids[0].0.clone(),
        ..Default::default()
    };
    let mut s = rt
        .stream_containers(v1::StreamContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner();
    let mut containers = Vec::new();
    while let Some(m) = s.message().await? {
        containers.extend(m.containers.into_iter().map(|c| c.id));
    }
    ensure!(containers == [ids[0].1.clone()], "{containers:?}");
    let mut s = rt
        .stream_container_stats(v1::StreamContainerStatsRequest::default())
        .await?
        .into_inner();
    let mut stats = 0;
    while let Some(m) = s.message().await? {
        stats += m.container_stats.len();
    }
    ensure!(stats == 2, "{stats} container stats");
    let mut s = rt
        .stream_pod_sandbox_stats(v1::StreamPodSandboxStatsRequest::default())
        .await?
        .into_inner();
    let mut pod_stats = 0;
    while let Some(m) = s.message().await? {
        pod_stats += m.pod_sandbox_stats.len();
    }
    ensure!(pod_stats == 2, "{pod_stats} pod stats");
    let mut s = rt
        .stream_pod_sandbox_metrics(v1::StreamPodSandboxMetricsRequest::default())
        .await?
        .into_inner();
    let mut pod_metrics = 0;
    while let Some(m) = s.message().await? {
        pod_metrics += m.pod_sandbox_metrics.len();
    }
    ensure!(pod_metrics == 2, "{pod_metrics} pod metrics");
    let mut s = p
        .cri
        .image
        .stream_images(v1::StreamImagesRequest::default())
        .await?
        .into_inner();
    let mut images = Vec::new();
    while let Some(m) = s.message().await? {
        images.extend(m.images.into_iter().map(|i| i.id));
    }
    let listed: Vec<String> = p
        .cri
        .image
        .list_images(v1::ListImagesRequest::default())
        .await?
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    ensure!(
        images == listed && !images.is_empty(),
        "{images:?} vs {listed:?}"
    );
    p.remove_all_and_check().await
}

/// A host directory with a tmpfs mounted below it (`<dir>/tmpfs`), as the
/// validation suite builds one; unmounted on drop.
struct SubMounted(tempfile::TempDir);

impl SubMounted {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("tmpfs");
        std::fs::create_dir(&sub)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(&sub)
            .output()?;
        ensure!(out.status.success(), "mount tmpfs: {out:?}");
        Ok(SubMounted(dir))
    }
}

impl Drop for SubMounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path().join("tmpfs"))
            .status();
    }
}

/// An OCI runtime that is runc in everything but its features, where it
/// leaves out `rro` (as runc 1.0 would).
fn runc_without_rro(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runc = crius_testkit::require_binary("runc", "runc")?;
    let path = dir.join("runc-without-rro");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = features ]; then {} features | grep -v '\"rro\"'; exit 0; fi\nexec {} \"$@\"\n",
        runc.display(),
        runc.display()
    );
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The mount the validation suite sends, on `host` at `/mnt`.
fn ro_mount(host: &std::path::Path, recursive: bool) -> v1::Mount {
    v1::Mount {
        container_path: "/mnt".into(),
        host_path: host.display().to_string(),
        readonly: true,
        recursive_read_only: recursive,
        selinux_relabel: true,
        ..Default::default()
    }
}

/// `Status` says rro works where runc lists it and the kernel has
/// `mount_setattr`, and not on a handler whose runtime leaves it out; an
/// rro mount makes the tmpfs below it read-only, a plain read-only one
/// does not; the combinations kubelet refuses are refused.
async fn recursive_read_only_mounts_where_the_runtime_can(env: Arc<Env>) -> anyhow::Result<()> {
    let bin = tempfile::tempdir()?;
    let old = runc_without_rro(bin.path())?;
    let tables = format!(
        "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
         [runtimes.old]\nruntime_type = \"io.containerd.runc.v2\"\n\
         [runtimes.old.options]\nbinary_name = \"{}\"\n",
        old.display()
    );
    let mut p = PodEnv::start_with(&env, None, "", &tables).await?;
    let answer = p
        .cri
        .runtime
        .status(v1::StatusRequest { verbose: false })
        .await?;
    let rro: Vec<(String, bool)> = answer
        .into_inner()
        .runtime_handlers
        .iter()
        .map(|h| {
            let f = h.features.unwrap_or_default();
            (h.name.clone(), f.recursive_read_only_mounts)
        })
        .collect();
    let kernel_can = crius_testkit::kernel_at_least(5, 12)?;
    let want = [("", kernel_can), ("old", false), ("runc", kernel_can)];
    ensure!(
        rro == want.map(|(n, b)| (n.to_string(), b)),
        "advertised: {rro:?}"
    );
    ensure!(
        kernel_can,
        "this kernel has no mount_setattr: rro cannot be tried"
    );
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let host = SubMounted::new()?;
    let id = run(&mut p.cri, config("rro")).await?;
    let sleeper = |name: &str, recursive| {
        let mut c = container(name, &image, &["sleep", "600"]);
        c.mounts = vec![ro_mount(host.0.path(), recursive)];
        c
    };
    // Recursive: the tmpfs below is read-only too.
    let rro = create(&mut p.cri, &id, sleeper("rro", true)).await?;
    start(&mut p.cri, &rro).await?;
    let s = status(&mut p.cri, &rro).await?;
    ensure!(
        s.mounts.first().is_some_and(|m| m.recursive_read_only),
        "{s:?}"
    );
    let touch = exec(&mut p.cri, &rro, &["touch", "/mnt/tmpfs/file"], 10).await?;
    let err = String::from_utf8_lossy(&touch.stderr);
    ensure!(
        touch.exit_code != 0 && err.contains("Read-only file system"),
        "rro: {touch:?}"
    );
    // Plain read-only: only the top.
    let ro = create(&mut p.cri, &id, sleeper("ro", false)).await?;
    start(&mut p.cri, &ro).await?;
    let touch = exec(&mut p.cri, &ro, &["touch", "/mnt/tmpfs/file"], 10).await?;
    ensure!(
        touch.exit_code == 0,
        "ro: the tmpfs below should be writable: {touch:?}"
    );
    let top = exec(&mut p.cri, &ro, &["touch", "/mnt/file"], 10).await?;
    ensure!(
        top.exit_code != 0,
        "ro: the top should be read-only: {top:?}"
    );
    // What is refused, naming the field.
    let before = p.containerd.container_list(&[]).await?.len();
    let refused = |edit: fn(&mut v1::Mount)| {
        let mut c = sleeper("refused", true);
        c.mounts.iter_mut().for_each(edit);
        c
    };
    for (what, c) in [
        ("read-write", refused(|m| m.readonly = false)),
        (
            "host-to-container",
            refused(|m| m.propagation = v1::MountPropagation::PropagationHostToContainer as i32),
        ),
        (
            "bidirectional",
            refused(|m| m.propagation = v1::MountPropagation::PropagationBidirectional as i32),
        ),
    ] {
        let err = create(&mut p.cri, &id, c).await.expect_err(what);
        ensure!(
            err.code() == tonic::Code::InvalidArgument
                && err
                    .message()
                    .contains("config.mounts[0].recursive_read_only"),
            "{what}: {err:?}"
        );
    }
    // A handler whose runtime does not list rro: refused there.
    let mut on_old = config("old-runtime");
    on_old.metadata.get_or_insert_default().uid = "old-runtime-uid".into();
    let old_pod = crate::runtimes::run_with(&mut p, on_old, "old").await?;
    let before_old = p.containerd.container_list(&[]).await?.len();
    ensure!(before_old == before + 1, "{before} -> {before_old}");
    let err = create(&mut p.cri, &old_pod, sleeper("on-old", true))
        .await
        .expect_err("old runtime");
    ensure!(
        err.code() == tonic::Code::InvalidArgument
            && err.message().contains("\"old\" does not support"),
        "{err:?}"
    );
    ensure!(
        p.containerd.container_list(&[]).await?.len() == before_old,
        "a refusal left a record"
    );
    // ...and a plain read-only mount runs there.
    let plain = create(&mut p.cri, &old_pod, sleeper("plain-on-old", false)).await?;
    start(&mut p.cri, &plain).await?;
    p.remove_all_and_check().await
}

/// The validation suite's case on our busybox: alice (uid 1234, primary
/// gid 1234) is a member of `staff` (gid 50) in the image's `/etc/group`.
/// Merge adds it, Strict does not; `ContainerStatus.user` says what the
/// process got (also for an exec, also after a restart of criusd).
async fn supplemental_groups_policies_and_the_user_reported(env: Arc<Env>) -> anyhow::Result<()> {
    use crius_testkit::images::ALICE_UID;
    let mut p = PodEnv::start(&env).await?;
    let answer = p
        .cri
        .runtime
        .status(v1::StatusRequest { verbose: false })
        .await?;
    let features = answer.into_inner().features.unwrap_or_default();
    ensure!(features.supplemental_groups_policy, "{features:?}");
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let extra: i64 = 4321;
    let mut pod_config = config("groups");
    // The pod asks for Strict too: accepted (the pause has no image groups).
    pod_config.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run(&mut p.cri, pod_config).await?;
    let mut ids = Vec::new();
    for policy in [
        v1::SupplementalGroupsPolicy::Merge,
        v1::SupplementalGroupsPolicy::Strict,
    ] {
        let mut c = container(
            &format!("{policy:?}").to_lowercase(),
            &image,
            &["sleep", "600"],
        );
        c.linux = Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value {
                    value: ALICE_UID.into(),
                }),
                supplemental_groups: vec![extra],
                supplemental_groups_policy: policy as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = create(&mut p.cri, &pod, c).await?;
        start(&mut p.cri, &id).await?;
        ids.push((policy, id));
    }
    check_groups(&mut p, &ids, extra, false).await?;
    p.restart_daemon().await?;
    check_groups(&mut p, &ids, extra, true).await?;
    p.remove_all_and_check().await
}

/// Each container's reported user and `id -G` of an exec in it, as
/// `policy` and the request (alice, `extra`) make them.
async fn check_groups(
    p: &mut PodEnv,
    ids: &[(v1::SupplementalGroupsPolicy, String)],
    extra: i64,
    restarted: bool,
) -> anyhow::Result<()> {
    use crius_testkit::images::{ALICE_GID, ALICE_UID, STAFF_GID};
    let (uid, gid, staff) = (
        i64::from(ALICE_UID),
        i64::from(ALICE_GID),
        i64::from(STAFF_GID),
    );
    for (policy, id) in ids {
        let groups = match policy {
            v1::SupplementalGroupsPolicy::Merge => vec![gid, staff, extra],
            _ => vec![gid, extra],
        };
        let s = status(&mut p.cri, id).await?;
        let user = s.user.and_then(|u| u.linux).unwrap_or_default();
        ensure!(
            (user.uid, user.gid, &user.supplemental_groups) == (uid, gid, &groups),
            "{policy:?} (restarted: {restarted}): {user:?}"
        );
        let got = exec(&mut p.cri, id, &["id", "-G"], 10).await?;
        let mut seen: Vec<i64> = String::from_utf8_lossy(&got.stdout)
            .split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect();
        seen.sort_unstable();
        let mut groups = groups;
        groups.sort_unstable();
        ensure!(seen == groups, "{policy:?}: id -G {got:?}");
    }
    Ok(())
}

async fn resize(
    p: &mut PodEnv,
    id: &str,
    linux: v1::LinuxContainerResources,
) -> anyhow::Result<()> {
    p.cri
        .runtime
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The resources `ContainerStatus` reports: (cpu quota, memory limit).
async fn reported(p: &mut PodEnv, id: &str) -> anyhow::Result<(i64, i64)> {
    let s = status(&mut p.cri, id).await?;
    let r = s.resources.and_then(|r| r.linux).unwrap_or_default();
    Ok((r.cpu_quota, r.memory_limit_in_bytes))
}

/// A cgroup v1 file of the container, read inside it.
async fn cgroup_value(p: &mut PodEnv, id: &str, file: &str) -> anyhow::Result<i64> {
    let r = exec(
        &mut p.cri,
        id,
        &["cat", &format!("/sys/fs/cgroup/{file}")],
        10,
    )
    .await?;
    let text = String::from_utf8_lossy(&r.stdout).trim().to_string();
    text.parse()
        .map_err(|e| anyhow::anyhow!("{file}: {text:?} ({e}) {r:?}"))
}

/// In-place resize (KEP-1287): a created container starts with what an
/// update gave it, a running one gets it in its cgroup, a stopped one keeps
/// it on record; `ContainerStatus.resources` reports the values in force,
/// also after a SIGKILLed criusd came back; a refused value changes nothing.
async fn in_place_resize_is_in_force_and_kept_across_a_restart(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let pod = run(&mut p.cri, config("resize")).await?;
    let mut c = container("app", &image, &["sleep", "600"]);
    c.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 128 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut p.cri, &pod, c).await?;
    let quota = |q| v1::LinuxContainerResources {
        cpu_quota: q,
        ..Default::default()
    };
    let memory = |m| v1::LinuxContainerResources {
        memory_limit_in_bytes: m,
        ..Default::default()
    };
    // Created: the start uses it.
    resize(&mut p, &id, quota(150_000)).await?;
    ensure!(reported(&mut p, &id).await? == (150_000, 128 << 20));
    start(&mut p.cri, &id).await?;
    ensure!(cgroup_value(&mut p, &id, "cpu/cpu.cfs_quota_us").await? == 150_000);
    // Running: the cgroup changes at once; the rest stays.
    resize(&mut p, &id, memory(96 << 20)).await?;
    ensure!(cgroup_value(&mut p, &id, "memory/memory.limit_in_bytes").await? == 96 << 20);
    ensure!(cgroup_value(&mut p, &id, "cpu/cpu.cfs_quota_us").await? == 150_000);
    ensure!(reported(&mut p, &id).await? == (150_000, 96 << 20));
    // Refused by runc (shares beyond what the kernel takes): the old spec
    // stays and nothing is recorded.
    let refused = p
        .cri
        .runtime
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(v1::LinuxContainerResources {
                cpu_shares: 1_000_000_000_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("shares of 10^18");
    ensure!(
        refused.code() == tonic::Code::InvalidArgument,
        "{refused:?}"
    );
    let shares = status(&mut p.cri, &id)
        .await?
        .resources
        .and_then(|r| r.linux)
        .unwrap_or_default()
        .cpu_shares;
    ensure!(
        shares != 1_000_000_000_000_000_000,
        "a refused value was recorded"
    );
    // A SIGKILLed criusd comes back with the values in force.
    p.restart_daemon().await?;
    ensure!(
        reported(&mut p, &id).await? == (150_000, 96 << 20),
        "after a restart"
    );
    // Stopped: kept on record.
    p.cri
        .runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    wait_exited(&mut p.cri, &id).await?;
    resize(&mut p, &id, memory(64 << 20)).await?;
    ensure!(reported(&mut p, &id).await? == (150_000, 64 << 20));
    p.remove_all_and_check().await
}

/// `PodSandboxStatus` verbose `info.resources`.
async fn recorded_size(p: &mut PodEnv, id: &str) -> anyhow::Result<serde_json::Value> {
    let s = p
        .cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(s.info.get("info").map_or("{}", |v| v))?;
    Ok(info["resources"].clone())
}

/// UpdatePodSandboxResources: recorded for every pod (kept across a
/// restart of criusd), and handed to the sandbox task of a runtime outside
/// the runc family (a VM runtime sizes its VM by it). The alias shim is
/// runc under another name, so the pause's cgroup shows what it got.
async fn a_pods_new_size_is_recorded_and_handed_to_a_vm_shim(env: Arc<Env>) -> anyhow::Result<()> {
    use crius_testkit::containerd::ALIAS_SHIM;
    let tables = format!(
        "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
         [runtimes.vm]\nruntime_type = \"{ALIAS_SHIM}\"\n"
    );
    let mut p = PodEnv::start_with(&env, None, "", &tables).await?;
    let size = v1::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 200_000,
        cpu_shares: 2048,
        memory_limit_in_bytes: 512 << 20,
        ..Default::default()
    };
    let update = |id: &str| v1::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: id.into(),
        overhead: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        resources: Some(size.clone()),
    };
    let runc = run(&mut p.cri, config("plain")).await?;
    let mut vm_config = config("vm");
    vm_config.metadata.get_or_insert_default().uid = "vm-uid".into();
    let vm = crate::runtimes::run_with(&mut p, vm_config, "vm").await?;
    for id in [&runc, &vm] {
        p.cri
            .runtime
            .update_pod_sandbox_resources(update(id))
            .await?;
    }
    let want = serde_json::json!({
        "overhead": {"cpu_period": 0, "cpu_quota": 0, "cpu_shares": 0, "memory_limit_in_bytes": 16 << 20},
        "resources": {"cpu_period": 100_000, "cpu_quota": 200_000, "cpu_shares": 2048, "memory_limit_in_bytes": 512 << 20},
    });
    ensure!(
        recorded_size(&mut p, &runc).await? == want,
        "{}",
        recorded_size(&mut p, &runc).await?
    );
    // The VM pod's sandbox task got it: its cgroup says so; the runc
    // pod's pause was left alone.
    ensure!(pause_memory_limit(&p, &vm).await? == 512 << 20);
    ensure!(pause_memory_limit(&p, &runc).await? != 512 << 20);
    // A restart keeps what was recorded; an unknown pod is not found.
    p.restart_daemon().await?;
    ensure!(
        recorded_size(&mut p, &runc).await? == want,
        "after a restart"
    );
    ensure!(recorded_size(&mut p, &vm).await? == want, "after a restart");
    let err = p
        .cri
        .runtime
        .update_pod_sandbox_resources(update("0123456789abcdef"))
        .await
        .expect_err("unknown pod");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    p.remove_all_and_check().await
}

/// The memory limit of a pod's pause container (its cgroup v1 file).
async fn pause_memory_limit(p: &PodEnv, id: &str) -> anyhow::Result<u64> {
    let record = p
        .containerd
        .container_get(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no record of {id}"))?;
    let cgroup = record
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .ok_or_else(|| anyhow::anyhow!("no cgroups path"))?;
    let file = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(cgroup.strip_prefix("/").unwrap_or(&cgroup))
        .join("memory.limit_in_bytes");
    let text = std::fs::read_to_string(&file)?;
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{file:?}: {text:?}: {e}"))
}

/// Mount points of this machine under `dir`.
fn mounts_under(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let dir = dir.display().to_string();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&dir))
        .map(str::to_string)
        .collect())
}

/// Image volumes (KEP-4639): the pulled image mounted read-only (its
/// programs run), a sub-path resolved inside the image (`..` cannot climb
/// out of it), `ContainerStatus` naming the image mounted; a writable one,
/// a missing sub-path or image refused with nothing left; the mounts and
/// views outlive a SIGKILLed criusd and go with the container.
async fn image_volumes_are_read_only_views_that_go_with_their_container(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    let image_id = crate::images::pull(&mut p.cri, &image).await?;
    let pod = run(&mut p.cri, config("image-volumes")).await?;
    let volume = |path: &str, sub: &str| v1::Mount {
        container_path: path.into(),
        readonly: true,
        image: Some(v1::ImageSpec {
            image: image_id.clone(),
            user_specified_image: image.clone(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    };
    let before = p.containerd.container_list(&[]).await?.len();
    let state = p.daemon().dir().join("state");
    // Refused, naming the field, leaving nothing.
    for (field, m) in [
        (
            "config.mounts[0].readonly",
            v1::Mount {
                readonly: false,
                ..volume("/iv", "")
            },
        ),
        (
            "config.mounts[0].image_sub_path",
            volume("/iv", "not-there"),
        ),
        (
            "config.mounts[0].image_sub_path",
            volume("/iv", "etc/passwd"),
        ),
    ] {
        let mut c = container("refused", &image, &["sleep", "600"]);
        c.mounts = vec![m];
        let err = create(&mut p.cri, &pod, c).await.expect_err(field);
        ensure!(
            err.code() == tonic::Code::InvalidArgument && err.message().contains(field),
            "{field}: {err:?}"
        );
    }
    let mut c = container("refused", &image, &["sleep", "600"]);
    c.mounts = vec![v1::Mount {
        image: Some(v1::ImageSpec {
            image: "crius-test/no-such-image:1".into(),
            ..Default::default()
        }),
        ..volume("/iv", "")
    }];
    let err = create(&mut p.cri, &pod, c)
        .await
        .expect_err("no such image");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    ensure!(
        p.containerd.container_list(&[]).await?.len() == before,
        "a refusal left a record"
    );
    ensure!(
        mounts_under(&state)?
            .iter()
            .all(|m| !m.contains("image-volume")),
        "a refusal left a mount"
    );
    // Whole, by sub-path, and by a sub-path that climbs.
    let mut c = container("app", &image, &["sleep", "600"]);
    c.mounts = vec![
        volume("/iv", ""),
        volume("/iv-etc", "etc"),
        volume("/iv-up", "../../.."),
    ];
    let id = create(&mut p.cri, &pod, c).await?;
    start(&mut p.cri, &id).await?;
    let sh = |cmd: &str| vec!["sh".to_string(), "-c".to_string(), cmd.to_string()];
    for (cmd, want_ok) in [
        // Its programs run (not noexec, as containerd and the suite want).
        ("/iv/bin/busybox true", true),
        ("grep -q alice /iv-etc/passwd", true),
        // `..` stays in the image: its /etc (alice), not the node's.
        (
            "grep -q alice /iv-up/etc/passwd && test -x /iv-up/bin/busybox",
            true,
        ),
        ("touch /iv/new", false),
        ("touch /iv-etc/new", false),
    ] {
        let argv = sh(cmd);
        let r = exec(
            &mut p.cri,
            &id,
            &argv.iter().map(String::as_str).collect::<Vec<_>>(),
            10,
        )
        .await?;
        ensure!((r.exit_code == 0) == want_ok, "{cmd}: {r:?}");
    }
    let s = status(&mut p.cri, &id).await?;
    let reported: Vec<(String, String, String)> = s
        .mounts
        .iter()
        .filter_map(|m| {
            let i = m.image.as_ref()?;
            Some((
                m.container_path.clone(),
                i.image_ref.clone(),
                m.image_sub_path.clone(),
            ))
        })
        .collect();
    ensure!(
        reported
            == [
                ("/iv".to_string(), image_id.clone(), String::new()),
                ("/iv-etc".to_string(), image_id.clone(), "etc".to_string()),
                (
                    "/iv-up".to_string(),
                    image_id.clone(),
                    "../../..".to_string()
                ),
            ],
        "{reported:?}"
    );
    // containerd's garbage collector keeps them (the record refers to them).
    collect_garbage(&env, &p)?;
    ensure!(image_views(&p).await? == 3, "three views");
    ensure!(
        mounts_under(&state)?
            .iter()
            .filter(|m| m.contains("image-volume"))
            .count()
            == 3
    );
    // A SIGKILLed criusd: the container and its volumes stay.
    p.restart_daemon().await?;
    let r = exec(&mut p.cri, &id, &["cat", "/iv-etc/hostname"], 10).await;
    ensure!(r.is_ok(), "{r:?}");
    let r = exec(&mut p.cri, &id, &["test", "-x", "/iv/bin/busybox"], 10).await?;
    ensure!(r.exit_code == 0, "after a restart: {r:?}");
    // Removal takes the mounts and the views.
    p.cri
        .runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    ensure!(
        mounts_under(&state)?
            .iter()
            .all(|m| !m.contains("image-volume")),
        "{:?}",
        mounts_under(&state)?
    );
    ensure!(image_views(&p).await? == 0, "views left");
    p.remove_all_and_check().await
}

/// The image volume views in the pod environment's namespace.
async fn image_views(p: &PodEnv) -> anyhow::Result<usize> {
    let all = p.containerd.snapshot_list("overlayfs").await?;
    Ok(all
        .iter()
        .filter(|s| s.name.contains("image-volume"))
        .count())
}

/// Runs containerd's garbage collection now (a lease deleted with `--sync`).
fn collect_garbage(env: &Env, p: &PodEnv) -> anyhow::Result<()> {
    let ctr = crius_testkit::require_binary("ctr", "containerd")?;
    let socket = env.containerd.socket().display().to_string();
    for args in [
        vec!["leases", "create", "--id", "crius-test-gc"],
        vec!["leases", "delete", "--sync", "crius-test-gc"],
    ] {
        let out = std::process::Command::new(&ctr)
            .args(["--address", &socket, "--namespace", &p.namespace])
            .args(&args)
            .output()?;
        ensure!(out.status.success(), "ctr {args:?}: {out:?}");
    }
    Ok(())
}

/// `ImageFsInfo`: the default snapshotter first (kubelet reads the first
/// entry), then a handler's own; containers' writable layers in the same.
async fn image_fs_info_names_every_snapshotter_in_use(env: Arc<Env>) -> anyhow::Result<()> {
    let tables = "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
                  [runtimes.native]\nruntime_type = \"io.containerd.runc.v2\"\nsnapshotter = \"native\"\n\
                  [runtimes.absent]\nruntime_type = \"io.containerd.runc.v2\"\nsnapshotter = \"no-such-snapshotter\"\n";
    let mut p = PodEnv::start_with(&env, None, "", tables).await?;
    let fs = p
        .cri
        .image
        .image_fs_info(v1::ImageFsInfoRequest {})
        .await?
        .into_inner();
    let points: Vec<String> = fs
        .image_filesystems
        .iter()
        .filter_map(|f| f.fs_id.as_ref().map(|i| i.mountpoint.clone()))
        .collect();
    ensure!(
        points.len() == 2,
        "the absent snapshotter is left out: {points:?}"
    );
    ensure!(
        points[0].ends_with("io.containerd.snapshotter.v1.overlayfs"),
        "{points:?}"
    );
    ensure!(
        points[1].ends_with("io.containerd.snapshotter.v1.native"),
        "{points:?}"
    );
    ensure!(fs.container_filesystems == fs.image_filesystems, "{fs:?}");
    // A container on the native handler: its stats name that filesystem
    // (the native snapshotter exports no root; containerd's root has it).
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let mut c = config("native");
    c.metadata.get_or_insert_default().uid = "native-uid".into();
    let pod = crate::runtimes::run_with(&mut p, c, "native").await?;
    let id = create(
        &mut p.cri,
        &pod,
        container("app", &image, &["sleep", "600"]),
    )
    .await?;
    let stats = p
        .cri
        .runtime
        .container_stats(v1::ContainerStatsRequest { container_id: id })
        .await?
        .into_inner()
        .stats
        .and_then(|s| s.writable_layer)
        .and_then(|w| w.fs_id)
        .map(|f| f.mountpoint)
        .unwrap_or_default();
    ensure!(stats == points[1], "{stats} vs {points:?}");
    p.remove_all_and_check().await
}

/// `userns_options` of mode `mode` with `uids` as uid and gid mappings.
fn userns(mode: v1::NamespaceMode, uids: &[(u32, u32, u32)]) -> v1::NamespaceOption {
    let maps: Vec<v1::IdMapping> = uids
        .iter()
        .map(|&(container_id, host_id, length)| v1::IdMapping {
            container_id,
            host_id,
            length,
        })
        .collect();
    v1::NamespaceOption {
        userns_options: Some(v1::UserNamespace {
            mode: mode as i32,
            uids: maps.clone(),
            gids: maps,
        }),
        ..Default::default()
    }
}

fn userns_pod(name: &str, ns: v1::NamespaceOption) -> v1::PodSandboxConfig {
    let mut c = config(name);
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(ns),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

fn in_userns(mut c: v1::ContainerConfig, ns: v1::NamespaceOption) -> v1::ContainerConfig {
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(ns),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

/// KEP-127 mode POD: the pod's processes are root inside and the mapped
/// host id outside; the rootfs (a remapped copy) is theirs to write; the
/// pod's network works (its namespace belongs to the pod's user
/// namespace: sysfs shows the pod's devices); all of it after a restart
/// of criusd. Mappings kubelet and containerd refuse are refused.
async fn a_user_namespaced_pod_is_root_inside_and_unprivileged_outside(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    const HOST_ID: u32 = 3_000_000;
    let mut p = PodEnv::start(&env).await?;
    let answer = p
        .cri
        .runtime
        .status(v1::StatusRequest { verbose: true })
        .await?;
    let answer = answer.into_inner();
    let default = answer.runtime_handlers.iter().find(|h| h.name.is_empty());
    ensure!(
        default
            .and_then(|h| h.features)
            .is_some_and(|f| f.user_namespaces),
        "runc 1.1 knows user namespaces: {:?}",
        answer.runtime_handlers
    );
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let refused = [
        userns(
            v1::NamespaceMode::Pod,
            &[(0, HOST_ID, 65536), (0, HOST_ID * 2, 65536)],
        ),
        userns(v1::NamespaceMode::Pod, &[(1, HOST_ID, 65536)]),
        userns(v1::NamespaceMode::Node, &[(0, HOST_ID, 65536)]),
        userns(v1::NamespaceMode::Container, &[]),
        userns(v1::NamespaceMode::Target, &[]),
    ];
    for ns in refused {
        let err = run(&mut p.cri, userns_pod("userns-bad", ns.clone()))
            .await
            .expect_err("refused");
        ensure!(
            err.code() == tonic::Code::InvalidArgument && err.message().contains("userns_options"),
            "{ns:?}: {err:?}"
        );
    }
    let ns = userns(v1::NamespaceMode::Pod, &[(0, HOST_ID, 65536)]);
    let pod = run(&mut p.cri, userns_pod("userns", ns.clone())).await?;
    // Every mount carries the pod's mappings, as kubelet sends them.
    let volume = tempfile::tempdir()?;
    std::fs::write(volume.path().join("data"), "from the host")?;
    let plain = tempfile::tempdir()?;
    std::fs::write(plain.path().join("data"), "plain")?;
    let maps = ns.userns_options.clone().unwrap_or_default();
    let mount = |uids: Vec<v1::IdMapping>| v1::Mount {
        container_path: "/vol".into(),
        host_path: volume.path().display().to_string(),
        uid_mappings: uids.clone(),
        gid_mappings: uids,
        ..Default::default()
    };
    let plain_mount = v1::Mount {
        container_path: "/plain".into(),
        host_path: plain.path().display().to_string(),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let mut c = in_userns(container(name, &image, &["sleep", "600"]), ns.clone());
        c.mounts = vec![mount(maps.uids.clone()), plain_mount.clone()];
        let id = create(&mut p.cri, &pod, c).await?;
        start(&mut p.cri, &id).await?;
        ids.push(id);
    }
    // A container cannot leave its pod's user namespace.
    let node = in_userns(
        container("leaves", &image, &["true"]),
        userns(v1::NamespaceMode::Node, &[]),
    );
    let err = create(&mut p.cri, &pod, node).await.expect_err("refused");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    // Nor mount with other mappings than its pod's.
    let mut other = in_userns(container("other-map", &image, &["true"]), ns.clone());
    let shifted = v1::IdMapping {
        host_id: HOST_ID + 65536,
        ..maps.uids[0]
    };
    other.mounts = vec![mount(vec![shifted])];
    let err = create(&mut p.cri, &pod, other).await.expect_err("refused");
    ensure!(err.message().contains("mounts[0].uidMappings"), "{err:?}");
    // The volume with the pod's mappings is an idmapped clone (ext4 can
    // be idmapped): the host's root owns it inside as the pod's root, who
    // writes it, and the host sees root's files. Without mappings a mount
    // stays a plain bind, where the host's root is not mapped (the
    // overflow id) and the pod's root cannot write.
    let said = |r: &v1::ExecSyncResponse| String::from_utf8_lossy(&r.stdout).trim().to_string();
    let read = exec(&mut p.cri, &ids[0], &["cat", "/vol/data"], 10).await?;
    ensure!(read.stdout == b"from the host", "{read:?}");
    let owner = exec(&mut p.cri, &ids[0], &["stat", "-c", "%u", "/vol/data"], 10).await?;
    ensure!(said(&owner) == "0", "/vol/data inside: {owner:?}");
    let wrote = exec(&mut p.cri, &ids[1], &["sh", "-c", "echo x > /vol/made"], 10).await?;
    ensure!(
        wrote.exit_code == 0,
        "the idmapped volume is not writable: {wrote:?}"
    );
    let made = std::fs::metadata(volume.path().join("made"))?;
    ensure!(
        std::os::unix::fs::MetadataExt::uid(&made) == 0,
        "the pod's root wrote as {} on the host",
        std::os::unix::fs::MetadataExt::uid(&made)
    );
    let owner = exec(
        &mut p.cri,
        &ids[0],
        &["stat", "-c", "%u", "/plain/data"],
        10,
    )
    .await?;
    ensure!(said(&owner) == "65534", "/plain/data inside: {owner:?}");
    let wrote = exec(
        &mut p.cri,
        &ids[0],
        &["sh", "-c", "echo x > /plain/made"],
        10,
    )
    .await?;
    ensure!(
        wrote.exit_code != 0,
        "a plain bind gave the pod the host's root's files"
    );
    check_userns(&mut p, &ids, HOST_ID).await?;
    let (s, _) = crate::pods::status(&mut p.cri, &pod).await?;
    let ip = s.network.map(|n| n.ip).unwrap_or_default();
    ensure!(!ip.is_empty(), "the pod has no IP");
    // Its /etc/hosts got the IP, which came after the pause was created.
    let hosts = exec(&mut p.cri, &ids[0], &["cat", "/etc/hosts"], 10).await?;
    ensure!(
        String::from_utf8_lossy(&hosts.stdout).contains(&ip),
        "{hosts:?}"
    );
    p.restart_daemon().await?;
    check_userns(&mut p, &ids, HOST_ID).await?;
    p.remove_all_and_check().await
}

/// Each container: uid 0 inside mapped to `host_id`, its process' uid on
/// the host `host_id`, its rootfs writable and owned by root inside, the
/// pod's own network devices in sysfs.
async fn check_userns(p: &mut PodEnv, ids: &[String], host_id: u32) -> anyhow::Result<()> {
    for id in ids {
        let out = |got: &crius_cri_api::v1::ExecSyncResponse| {
            String::from_utf8_lossy(&got.stdout).trim().to_string()
        };
        let map = out(&exec(&mut p.cri, id, &["cat", "/proc/self/uid_map"], 10).await?);
        let fields: Vec<&str> = map.split_whitespace().collect();
        let want = ["0".to_string(), host_id.to_string(), "65536".to_string()];
        ensure!(fields == want, "uid_map {map:?}");
        let who = out(&exec(&mut p.cri, id, &["id", "-u"], 10).await?);
        ensure!(who == "0", "id -u: {who}");
        let owner = out(&exec(&mut p.cri, id, &["stat", "-c", "%u", "/bin"], 10).await?);
        ensure!(owner == "0", "/bin is owned by {owner} inside");
        let wrote = exec(&mut p.cri, id, &["sh", "-c", "echo x > /made-here"], 10).await?;
        ensure!(wrote.exit_code == 0, "rootfs not writable: {wrote:?}");
        let net = out(&exec(&mut p.cri, id, &["ls", "/sys/class/net"], 10).await?);
        ensure!(net.split_whitespace().any(|d| d == "eth0"), "sysfs: {net}");
        let pid = crate::containers::status_verbose_pid(&mut p.cri, id).await?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default();
        ensure!(uid == host_id.to_string(), "outside, uid {uid}");
    }
    Ok(())
}
