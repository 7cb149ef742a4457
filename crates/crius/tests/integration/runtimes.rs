//! Issue 6 (first steps): runtime selection: shim names passed verbatim,
//! paths refused before anything exists, a trusted runtime for privileged
//! pods. A second shim name (`io.containerd.runc-alias.v2`, a link to the
//! runc shim on the test containerd's PATH) stands in for a VM runtime.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::containerd::ALIAS_SHIM;

use crate::Env;
use crate::pods::{PodEnv, config};

crate::tests![
    drop_ins_are_merged_refused_whole_and_reloaded,
    shim_names_pass_through,
    paths_are_refused_and_nothing_is_created,
    privileged_pods_go_to_the_trusted_runtime,
    privileged_pods_are_refused_without_a_trusted_runtime,
    live_reload_changes_handlers_for_new_pods_only,
    allow_listed_annotations_reach_the_specs,
    handler_path_snapshotter_pause_image_and_host_devices,
];

pub(crate) async fn run_with(
    p: &mut PodEnv,
    c: v1::PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    p.cri
        .runtime
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(c),
            runtime_handler: handler.into(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

pub(crate) fn host_network(mut c: v1::PodSandboxConfig) -> v1::PodSandboxConfig {
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                network: v1::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

/// Processes whose command line runs `binary` for container `id`.
fn shims_of(binary: &str, id: &str) -> usize {
    crius_testkit::pids_with_arg(id)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(binary))
                .unwrap_or(false)
        })
        .count()
}

async fn shim_names_pass_through(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let id = run_with(&mut p, config("alias"), ALIAS_SHIM).await?;
    let record = p.containerd.container_get(&id).await?.context("record")?;
    ensure!(record.runtime.name == ALIAS_SHIM, "{:?}", record.runtime);
    // containerd started the shim by that name (the runc shim then re-executes
    // itself from its real path, so the process shows the runc shim).
    ensure!(
        shims_of("containerd-shim-runc", &id) >= 1,
        "no shim runs pod {id}"
    );
    let s = p
        .cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("status")?;
    ensure!(
        s.runtime_handler == ALIAS_SHIM && s.state == v1::PodSandboxState::SandboxReady as i32,
        "{s:?}"
    );
    // An unknown but well-formed shim: containerd says the binary is missing.
    let err = run_with(
        &mut p,
        config("missing-shim"),
        "io.containerd.nosuchshim.v2",
    )
    .await
    .expect_err("no such shim");
    ensure!(
        err.message().contains("containerd-shim-nosuchshim-v2")
            || err.message().contains("nosuchshim"),
        "{err:?}"
    );
    p.remove_all_and_check().await
}

async fn paths_are_refused_and_nothing_is_created(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    // Shims of this daemon's namespace only: other tests start theirs on
    // the same containerd meanwhile.
    let shims_before = crius_testkit::pids_with_arg(&p.namespace).len();
    let long = "a".repeat(10_000);
    for bad in [
        "/usr/bin/containerd-shim-runc-v2",
        "../x",
        "./x",
        "io.containerd/../x",
        "a/b",
        "io",
        "io.containerd.ruｎc.v2",
        long.as_str(),
    ] {
        let err = run_with(&mut p, config("evil"), bad).await.expect_err(bad);
        ensure!(
            err.code() == tonic::Code::InvalidArgument,
            "{bad:.40}: {err:?}"
        );
        ensure!(err.message().contains("runtime_handler"), "{err:?}");
    }
    // Nothing was created: no pod, no record, no netns, no shim.
    let pods = p
        .cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    ensure!(pods.is_empty(), "{pods:?}");
    ensure!(p.containerd.container_list(&[]).await?.is_empty());
    let netns = p.daemon().dir().join("state/netns");
    let entries = std::fs::read_dir(&netns).map(|d| d.count()).unwrap_or(0);
    ensure!(entries == 0, "a netns was created");
    let shims_after = crius_testkit::pids_with_arg(&p.namespace).len();
    ensure!(
        shims_after <= shims_before,
        "a shim was started: {shims_before} -> {shims_after}"
    );
    p.remove_all_and_check().await
}

const VM_CONFIG: &str = "[runtimes.vm]\nruntime_type = \"io.containerd.runc-alias.v2\"\nprivileged = false\n[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n";

async fn privileged_pods_go_to_the_trusted_runtime(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start_with(
        &env,
        None,
        "default_runtime = \"vm\"\ntrusted_runtime = \"runc\"",
        VM_CONFIG,
    )
    .await?;
    let plain = run_with(&mut p, config("plain"), "").await?;
    let record = p
        .containerd
        .container_get(&plain)
        .await?
        .context("record")?;
    ensure!(
        record.runtime.name == ALIAS_SHIM,
        "plain pod: {:?}",
        record.runtime
    );

    let privileged = run_with(&mut p, host_network(config("hostnet")), "").await?;
    let record = p
        .containerd
        .container_get(&privileged)
        .await?
        .context("record")?;
    ensure!(
        record.runtime.name == "io.containerd.runc.v2",
        "privileged pod: {:?}",
        record.runtime
    );
    let listed = p
        .cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let handlers: HashMap<_, _> = listed
        .iter()
        .map(|s| (s.id.clone(), s.runtime_handler.clone()))
        .collect();
    ensure!(
        handlers.get(&plain).map(String::as_str) == Some("vm"),
        "{handlers:?}"
    );
    ensure!(
        handlers.get(&privileged).map(String::as_str) == Some("runc"),
        "{handlers:?}"
    );

    // Asking for the VM handler explicitly does not escape it either.
    let asked = run_with(&mut p, host_network(config("asked-vm")), "vm").await?;
    let record = p
        .containerd
        .container_get(&asked)
        .await?
        .context("record")?;
    ensure!(
        record.runtime.name == "io.containerd.runc.v2",
        "{:?}",
        record.runtime
    );

    // The untrusted-workload annotation on a privileged pod is refused.
    let mut c = host_network(config("untrusted"));
    c.annotations
        .insert("io.kubernetes.cri.untrusted-workload".into(), "true".into());
    let err = run_with(&mut p, c, "")
        .await
        .expect_err("untrusted + privileged");
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    p.remove_all_and_check().await
}

async fn privileged_pods_are_refused_without_a_trusted_runtime(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start_with(&env, None, "default_runtime = \"vm\"", VM_CONFIG).await?;
    let err = run_with(&mut p, host_network(config("refused")), "")
        .await
        .expect_err("no trusted runtime");
    ensure!(err.code() == tonic::Code::FailedPrecondition, "{err:?}");
    ensure!(err.message().contains("trusted_runtime"), "{err:?}");
    run_with(&mut p, config("fine"), "").await?;
    p.remove_all_and_check().await
}

async fn handlers(p: &mut PodEnv) -> anyhow::Result<serde_json::Value> {
    let s = p
        .cri
        .runtime
        .status(v1::StatusRequest { verbose: true })
        .await?
        .into_inner();
    Ok(serde_json::from_str(
        s.info.get("runtimeHandlers").context("no handlers")?,
    )?)
}

async fn live_reload_changes_handlers_for_new_pods_only(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let before = run_with(&mut p, config("before"), "").await?;
    let path = p.daemon().dir().join("config.toml");
    let original = std::fs::read_to_string(&path)?;
    // A new default handler, by SIGHUP.
    std::fs::write(
        &path,
        format!(
            "default_runtime = \"alias\"\n{original}\n[runtimes.alias]\nruntime_type = \"{ALIAS_SHIM}\"\n[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n"
        ),
    )?;
    let pid = p.daemon().pid().context("pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let mut reloaded = false;
    for _ in 0..100 {
        if handlers(&mut p).await?["default"] == "alias" {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure!(
        reloaded,
        "SIGHUP did not reload: {}",
        handlers(&mut p).await?
    );
    let after = run_with(&mut p, config("after"), "").await?;
    let rec = |id: String| {
        let c = p.containerd.clone();
        async move { anyhow::Ok(c.container_get(&id).await?.context("record")?.runtime.name) }
    };
    ensure!(
        rec(after.clone()).await? == ALIAS_SHIM,
        "the new default was not used"
    );
    ensure!(
        rec(before.clone()).await? == "io.containerd.runc.v2",
        "a running pod changed runtime"
    );
    let s = p
        .cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: before.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("status")?;
    ensure!(s.state == v1::PodSandboxState::SandboxReady as i32, "{s:?}");

    // An invalid file is refused through `crius config reload`; the old config stays.
    std::fs::write(&path, format!("frobnicate = 1\n{original}"))?;
    let out = std::process::Command::new(crate::CRIUS)
        .arg("--endpoint")
        .arg(p.daemon().socket())
        .args(["config", "reload"])
        .output()?;
    ensure!(!out.status.success(), "an invalid config was accepted");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("frobnicate"),
        "{:?}",
        out.stderr
    );
    ensure!(
        handlers(&mut p).await?["default"] == "alias",
        "the old config was not kept"
    );
    // And a valid one through the CLI.
    std::fs::write(&path, &original)?;
    let out = std::process::Command::new(crate::CRIUS)
        .arg("--endpoint")
        .arg(p.daemon().socket())
        .args(["config", "reload"])
        .output()?;
    ensure!(out.status.success(), "{:?}", out.stderr);
    ensure!(handlers(&mut p).await?["default"] == "runc");
    p.remove_all_and_check().await
}

async fn allow_listed_annotations_reach_the_specs(env: Arc<Env>) -> anyhow::Result<()> {
    let tables = format!(
        "[runtimes.kata]\nruntime_type = \"{ALIAS_SHIM}\"\npod_annotations = [\"io.katacontainers.*\"]\ncontainer_annotations = [\"io.katacontainers.container.*\"]\n[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n"
    );
    let mut p = PodEnv::start_with(&env, None, "", &tables).await?;
    let mut c = config("annotated");
    c.annotations.insert(
        "io.katacontainers.config.hypervisor.kernel_params".into(),
        "quiet".into(),
    );
    c.annotations
        .insert("run.oci.handler".into(), "smuggled".into());
    // The pod's resource totals, as kubelet sends them, for a VM's sizing.
    c.linux = Some(v1::LinuxPodSandboxConfig {
        resources: Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_with(&mut p, c.clone(), "kata").await?;
    let spec = p
        .containerd
        .container_get(&id)
        .await?
        .context("record")?
        .spec;
    let ann = spec.annotations().clone().unwrap_or_default();
    ensure!(
        ann.get("io.katacontainers.config.hypervisor.kernel_params")
            .map(String::as_str)
            == Some("quiet"),
        "{ann:?}"
    );
    ensure!(
        !ann.contains_key("run.oci.handler"),
        "a non-allowed annotation reached the spec: {ann:?}"
    );
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri.sandbox-cpu-period", "100000"),
        ("io.kubernetes.cri.sandbox-cpu-quota", "50000"),
        ("io.kubernetes.cri.sandbox-cpu-shares", "512"),
        ("io.kubernetes.cri.sandbox-memory", "268435456"),
    ] {
        ensure!(ann.get(k).map(String::as_str) == Some(v), "{k}: {ann:?}");
    }

    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let container = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image,
            ..Default::default()
        }),
        command: vec!["true".into()],
        annotations: HashMap::from([
            ("io.katacontainers.container.resource".into(), "x".into()),
            ("org.systemd.property.After".into(), "evil".into()),
        ]),
        linux: Some(v1::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let cid = p
        .cri
        .runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(container),
            sandbox_config: Some(c),
        })
        .await?
        .into_inner()
        .container_id;
    let record = p.containerd.container_get(&cid).await?.context("record")?;
    ensure!(
        record.runtime.name == ALIAS_SHIM,
        "the container left its pod's runtime: {:?}",
        record.runtime
    );
    let ann = record.spec.annotations().clone().unwrap_or_default();
    for (k, v) in [
        ("io.katacontainers.container.resource", "x"),
        ("io.katacontainers.config.hypervisor.kernel_params", "quiet"),
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-id", id.as_str()),
        ("io.kubernetes.cri.container-name", "app"),
    ] {
        ensure!(ann.get(k).map(String::as_str) == Some(v), "{k}: {ann:?}");
    }
    ensure!(
        !ann.contains_key("org.systemd.property.After") && !ann.contains_key("run.oci.handler"),
        "{ann:?}"
    );
    p.remove_all_and_check().await
}

fn privileged(mut c: v1::PodSandboxConfig) -> v1::PodSandboxConfig {
    c.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

fn privileged_container(name: &str, image: &str) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "60".into()],
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates and starts a container; returns its id.
async fn create_started(
    p: &mut PodEnv,
    pod: &str,
    c: v1::ContainerConfig,
) -> anyhow::Result<String> {
    let id = p
        .cri
        .runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(c),
            sandbox_config: Some(config("unused")),
        })
        .await?
        .into_inner()
        .container_id;
    p.cri
        .runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    Ok(id)
}

/// A handler's `runtime_path` (a shim name found nowhere on containerd's
/// PATH, run through the configured binary), `snapshotter`,
/// `sandbox_image` and `privileged_without_host_devices`, each seen in
/// containerd's records and in `Status`.
async fn handler_path_snapshotter_pause_image_and_host_devices(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let shim = crius_testkit::require_binary("containerd-shim-runc-v2", "containerd")?;
    let busybox = env.images.reference(crius_testkit::images::BUSYBOX);
    let missing = env.images.reference("crius-test/no-such-pause:1");
    let tables = format!(
        "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
         [runtimes.pathed]\nruntime_type = \"io.containerd.pathed.v2\"\nruntime_path = \"{}\"\n\
         snapshotter = \"native\"\nprivileged_without_host_devices = true\n\
         [runtimes.imaged]\nruntime_type = \"io.containerd.runc.v2\"\nsandbox_image = \"{busybox}\"\n\
         [runtimes.unpullable]\nruntime_type = \"io.containerd.runc.v2\"\nsandbox_image = \"{missing}\"\n\
         [runtimes.ghost]\nruntime_type = \"io.containerd.ghost.v1\"\n",
        shim.display()
    );
    let mut p = PodEnv::start_with(&env, None, "", &tables).await?;

    // Status lists each handler with its shim binary, found or not.
    let h = handlers(&mut p).await?;
    let by_name = |name: &str| {
        h["handlers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    ensure!(
        by_name("pathed")["shim_found"] == true
            && by_name("pathed")["shim_binary"] == shim.display().to_string(),
        "{h}"
    );
    ensure!(
        by_name("runc")["shim_found"] == true
            && by_name("runc")["shim_binary"]
                .as_str()
                .is_some_and(|b| b.ends_with("/containerd-shim-runc-v2")),
        "{h}"
    );
    ensure!(by_name("ghost")["shim_found"] == false, "{h}");

    // runtime_path + snapshotter: the pod and its containers run through
    // the configured binary on the native snapshotter.
    let pod = run_with(&mut p, privileged(config("pathed")), "pathed").await?;
    let rec = p.containerd.container_get(&pod).await?.context("record")?;
    ensure!(
        rec.runtime.name == "io.containerd.pathed.v2" && rec.snapshotter == "native",
        "{:?} on {}",
        rec.runtime,
        rec.snapshotter
    );
    crate::images::pull(&mut p.cri, &busybox).await?;
    let cid = create_started(&mut p, &pod, privileged_container("app", &busybox)).await?;
    let rec = p.containerd.container_get(&cid).await?.context("record")?;
    ensure!(
        rec.runtime.name == "io.containerd.pathed.v2" && rec.snapshotter == "native",
        "{:?} on {}",
        rec.runtime,
        rec.snapshotter
    );
    ensure!(
        p.containerd
            .snapshot_mounts("native", &cid)
            .await
            .is_ok_and(|m| !m.is_empty()),
        "no native snapshot for the container"
    );
    // privileged_without_host_devices: no host device in the spec or in /dev.
    let devices = rec
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    ensure!(devices.is_empty(), "host devices given: {devices:?}");
    let ls = p
        .cri
        .runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec!["ls".into(), "/dev".into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    let listing = String::from_utf8_lossy(&ls.stdout).to_string();
    ensure!(
        listing.contains("null") && !listing.contains("loop-control") && !listing.contains("vda"),
        "{listing}"
    );

    // The same privileged container on runc gets the host's devices.
    let plain = run_with(&mut p, privileged(config("plain")), "runc").await?;
    let cid = create_started(&mut p, &plain, privileged_container("app", &busybox)).await?;
    let rec = p.containerd.container_get(&cid).await?.context("record")?;
    let devices = rec
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    ensure!(
        devices
            .iter()
            .any(|d| d.path().to_string_lossy() == "/dev/null"),
        "no host devices: {devices:?}"
    );

    // sandbox_image: the handler's pause image, pulled when missing.
    let imaged = run_with(&mut p, config("imaged"), "imaged").await?;
    let rec = p
        .containerd
        .container_get(&imaged)
        .await?
        .context("record")?;
    ensure!(rec.image == busybox, "sandbox image {}", rec.image);
    let err = run_with(&mut p, config("unpullable"), "unpullable")
        .await
        .expect_err("missing pause image");
    ensure!(
        err.code() == tonic::Code::NotFound && err.message().contains("no-such-pause"),
        "{err:?}"
    );
    // A missing shim binary: the error names it.
    let err = run_with(&mut p, config("ghost"), "ghost")
        .await
        .expect_err("no shim");
    ensure!(
        err.message().contains("containerd-shim-ghost-v1"),
        "{err:?}"
    );
    p.remove_all_and_check().await
}

/// `crius config reload` through the CLI: its stderr on failure.
fn cli_reload(p: &PodEnv) -> anyhow::Result<Result<(), String>> {
    let out = std::process::Command::new(crate::CRIUS)
        .arg("--endpoint")
        .arg(p.daemon().socket())
        .args(["config", "reload"])
        .output()?;
    Ok(match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

/// Config drop-ins (`config.d/*.toml` beside the file, in name order):
/// a handler dropped in is served after a reload, a broken drop-in is
/// refused naming its file (the old config stays), and `criusd config
/// show` tells each value's file with secrets redacted.
async fn drop_ins_are_merged_refused_whole_and_reloaded(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let dir = p.daemon().dir().join("config.d");
    std::fs::create_dir_all(&dir)?;
    let kata = dir.join("10-kata.toml");
    std::fs::write(
        &kata,
        format!("[runtimes.kata]\nruntime_type = \"{ALIAS_SHIM}\"\nprivileged = false\n"),
    )?;
    let later = dir.join("20-later.toml");
    std::fs::write(
        &later,
        "[runtimes.kata]\npod_annotations = [\"io.katacontainers.*\"]\n\
         [images.auths.\"registry.example.com\"]\nusername = \"u\"\npassword = \"hunter2\"\n",
    )?;
    std::fs::write(dir.join("README"), "not a drop-in")?;
    cli_reload(&p)?.map_err(anyhow::Error::msg)?;
    let names = |h: &serde_json::Value| -> Vec<String> {
        h["handlers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["name"].as_str().map(str::to_string))
            .collect()
    };
    let h = handlers(&mut p).await?;
    ensure!(names(&h).contains(&"kata".to_string()), "{h}");
    // The pod runs on the dropped-in handler.
    let id = run_with(&mut p, config("dropped"), "kata").await?;
    let rec = p.containerd.container_get(&id).await?.context("record")?;
    ensure!(rec.runtime.name == ALIAS_SHIM, "{:?}", rec.runtime);
    // A broken drop-in: refused naming it, the old config stays.
    let broken = dir.join("30-broken.toml");
    std::fs::write(&broken, "[runtimes.kata]\nruntime_tpye = \"x\"\n")?;
    let err = cli_reload(&p)?
        .err()
        .context("a broken drop-in was accepted")?;
    ensure!(
        err.contains("30-broken.toml") && err.contains("runtime_tpye"),
        "{err}"
    );
    ensure!(names(&handlers(&mut p).await?).contains(&"kata".to_string()));
    // `criusd config show`: each value's file, the password hidden.
    let out = std::process::Command::new(crate::CRIUSD)
        .arg("--config")
        .arg(p.daemon().dir().join("config.toml"))
        .args(["config", "show"])
        .output()?;
    ensure!(!out.status.success(), "show of a broken drop-in succeeded");
    std::fs::remove_file(&broken)?;
    let out = std::process::Command::new(crate::CRIUSD)
        .arg("--config")
        .arg(p.daemon().dir().join("config.toml"))
        .args(["config", "show"])
        .output()?;
    let shown = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{out:?}");
    ensure!(
        shown.contains(&format!(
            "runtime_type = \"{ALIAS_SHIM}\"  # {}",
            kata.display()
        )),
        "{shown}"
    );
    ensure!(shown.contains(&format!("# {}", later.display())), "{shown}");
    ensure!(
        !shown.contains("hunter2") && shown.contains("<redacted>"),
        "{shown}"
    );
    // Removing the drop-ins and reloading takes the handler away.
    std::fs::remove_dir_all(&dir)?;
    cli_reload(&p)?.map_err(anyhow::Error::msg)?;
    ensure!(!names(&handlers(&mut p).await?).contains(&"kata".to_string()));
    p.remove_all_and_check().await
}
