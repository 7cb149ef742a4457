//! One function per subcommand.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use crius_cri_api::v1;
use serde_json::{Value, json};

use crate::interactive::Interactive;
use crate::{Cli, Command, ImageCommand, Output, PodCommand, client, podspec};

/// Runs the command; crius' exit code (the remote command's for exec,
/// attach and run).
pub async fn run(cli: &Cli) -> anyhow::Result<i32> {
    // It reports an unreachable criusd rather than failing on it.
    if let Command::Doctor { kubelet_config } = &cli.command {
        return crate::doctor::run(cli, kubelet_config.as_deref()).await;
    }
    if let Command::Completion { shell } = &cli.command {
        crate::docs::completion(*shell, &mut std::io::stdout());
        return Ok(0);
    }
    let mut cri = client::connect(&cli.socket_path(), answer_timeout(cli)).await?;
    match &cli.command {
        Command::Exec {
            interactive,
            tty,
            transport,
            id,
            cmd,
            ..
        } if *interactive || *tty => {
            let how = Interactive::new(*interactive, *tty, (*transport).into());
            crate::interactive::exec(&mut cri, id, cmd, how).await
        }
        Command::Exec {
            id,
            cmd_timeout,
            cmd,
            ..
        } => crate::containers::exec(&mut cri, id, cmd, *cmd_timeout).await,
        Command::Attach {
            no_stdin,
            transport,
            id,
        } => crate::interactive::attach(&mut cri, id, *no_stdin, (*transport).into()).await,
        Command::PortForward { pod, ports } => {
            crate::portforward::port_forward(&cri, pod, ports).await?;
            Ok(0)
        }
        Command::Run { .. } => crate::containers::run(cli, &mut cri).await,
        _ => run_other(cli, &mut cri).await.map(|()| 0),
    }
}

/// How long crius waits for each answer: `--timeout`, and for a
/// checkpoint its `--wait` and a little more.
fn answer_timeout(cli: &Cli) -> Duration {
    match cli.command {
        Command::Checkpoint { wait, .. } => {
            Duration::from_secs(wait) + crate::checkpoint::ANSWER_GRACE
        }
        _ => Duration::from_secs(cli.timeout),
    }
}

/// The commands that either succeed or fail.
async fn run_other(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<()> {
    match &cli.command {
        Command::Version => version(cli, cri).await,
        Command::Info => info(cli, cri).await,
        Command::Events => crate::events::events(cri, cli.output.machine()).await,
        Command::Doctor { .. } | Command::Completion { .. } => {
            anyhow::bail!("run() handles this command")
        }
        Command::Pull { image, creds } => pull(cli, cri, image, creds.as_deref()).await,
        Command::Images {
            image,
            quiet,
            digests,
        } => images(cli, cri, image.as_deref(), (*quiet, *digests)).await,
        Command::Rmi { images } => rmi(cri, images).await,
        Command::Pods { quiet, label } => pods(cli, cri, *quiet, label).await,
        Command::Ps {
            all,
            quiet,
            pod,
            state,
            label,
        } => {
            let filter = crate::containers::PsFilter {
                all: *all,
                pod: pod.clone(),
                state: state.clone(),
                labels: label_selector(label)?,
            };
            crate::containers::ps(cli, cri, &filter, *quiet).await
        }
        Command::Inspect { id } => crate::containers::inspect(cri, id).await,
        Command::Stats { ids, all, how } => {
            crate::stats::containers(cri, ids, *all, how, cli.output.machine()).await
        }
        Command::Checkpoint { id, export, wait } => {
            let json = cli.output.machine();
            crate::checkpoint::checkpoint(cri, id, export.as_deref(), *wait, json).await
        }
        Command::Logs {
            id,
            follow,
            tail,
            timestamps,
            since,
        } => {
            let how = crate::containers::LogsHow {
                follow: *follow,
                tail: *tail,
                timestamps: *timestamps,
                since: *since,
            };
            crate::containers::logs(cri, id, &how).await
        }
        Command::Create { pod, file } => create(cli, cri, pod, file).await,
        Command::Start { ids } => crate::containers::start(cri, ids).await,
        Command::Stop { grace, ids } => crate::containers::stop(cri, ids, *grace).await,
        Command::Rm { ids, force } => crate::containers::rm(cri, ids, *force).await,
        Command::Exec { .. }
        | Command::Attach { .. }
        | Command::PortForward { .. }
        | Command::Run { .. } => anyhow::bail!("run() handles this command"),
        Command::Config {
            command: crate::ConfigCommand::Reload,
        } => reload_config(cli, cri).await,
        Command::Pod { command } => match command {
            PodCommand::Run { file, runtime } => pod_run(cli, cri, file, runtime).await,
            PodCommand::Inspect { id } => pod_inspect(cri, id).await,
            PodCommand::Stop { ids } => pod_stop(cri, ids).await,
            PodCommand::Rm { ids, force } => pod_rm(cri, ids, *force).await,
            PodCommand::Ls { quiet } => pods(cli, cri, *quiet, &[]).await,
            PodCommand::Stats { ids, how } => {
                crate::stats::pods(cri, ids, how, cli.output.machine()).await
            }
        },
        Command::Image { command } => match command {
            ImageCommand::Inspect { image } => inspect_image(cri, image).await,
            ImageCommand::Ls { quiet, digests } => images(cli, cri, None, (*quiet, *digests)).await,
            ImageCommand::Rm { images } => rmi(cri, images).await,
            ImageCommand::Pull { image, creds } => pull(cli, cri, image, creds.as_deref()).await,
            ImageCommand::Import { file } => import(cli, cri, file).await,
        },
    }
}

/// `crius config reload`.
async fn reload_config(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<()> {
    let r = cri
        .admin
        .reload_config(crius_cri_api::admin::ReloadConfigRequest {})
        .await
        .context("ReloadConfig")?
        .into_inner();
    match cli.output {
        Output::Json | Output::Yaml => print_json(
            &json!({ "runtimeHandlers": r.runtime_handlers, "defaultRuntime": r.default_runtime }),
        ),
        Output::Text => {
            println!(
                "reloaded: handlers {} (default {})",
                r.runtime_handlers.join(", "),
                r.default_runtime
            );
            Ok(())
        }
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    crate::print_doc(v)
}

async fn version(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<()> {
    let v = cri
        .runtime
        .version(v1::VersionRequest {
            version: "v1".into(),
        })
        .await
        .context("Version")?
        .into_inner();
    match cli.output {
        Output::Json | Output::Yaml => print_json(&json!({
            "client": { "name": "crius", "version": env!("CARGO_PKG_VERSION") },
            "runtimeName": v.runtime_name,
            "runtimeVersion": v.runtime_version,
            "runtimeApiVersion": v.runtime_api_version,
            "version": v.version,
        })),
        Output::Text => {
            println!("Client:          crius {}", env!("CARGO_PKG_VERSION"));
            println!("Runtime:         {} {}", v.runtime_name, v.runtime_version);
            println!("CRI API version: {}", v.runtime_api_version);
            Ok(())
        }
    }
}

/// Parses one JSON value of the verbose `Status` info map.
fn info_json(info: &std::collections::HashMap<String, String>, key: &str) -> Value {
    info.get(key)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

async fn info(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<()> {
    let status = cri
        .runtime
        .status(v1::StatusRequest { verbose: true })
        .await
        .context("Status")?
        .into_inner();
    let conditions: Vec<Value> = status
        .status
        .map(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({ "type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message }))
        .collect();
    let version = info_json(&status.info, "version");
    let containerd = info_json(&status.info, "containerd");
    let handlers = info_json(&status.info, "runtimeHandlers");
    if cli.output.machine() {
        return print_json(&json!({
            "version": version,
            "conditions": conditions,
            "containerd": containerd,
            "runtimeHandlers": handlers,
            "podCIDR": status.info.get("podCIDR"),
            "config": info_json(&status.info, "config"),
        }));
    }
    print_info(&version, &containerd, &conditions, &handlers);
    Ok(())
}

/// A string of the verbose info, or `-`.
fn text(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_string()
}

/// `crius info` as text.
fn print_info(version: &Value, containerd: &Value, conditions: &[Value], handlers: &Value) {
    let s = text;
    println!(
        "Runtime:     {} {} (CRI {})",
        s(&version["runtimeName"]),
        s(&version["runtimeVersion"]),
        s(&version["runtimeApiVersion"])
    );
    println!(
        "containerd:  {} at {} (namespace {})",
        containerd["version"].as_str().unwrap_or("not connected"),
        s(&containerd["address"]),
        s(&containerd["namespace"])
    );
    println!("Conditions:");
    for c in conditions {
        println!("{}", condition_line(c));
    }
    println!("Runtime handlers (default: {}):", s(&handlers["default"]));
    for h in handlers["handlers"].as_array().into_iter().flatten() {
        println!("{}", handler_line(h));
    }
    let passthrough = if handlers["shimPassthrough"] == true {
        "on"
    } else {
        "off"
    };
    println!("Shim name passthrough: {passthrough}");
}

/// A condition: its type and `true`, or `false` with reason and message.
fn condition_line(c: &Value) -> String {
    let s = text;
    let ok = c["status"].as_bool().unwrap_or(false);
    if ok {
        format!("  {:<14} true", s(&c["type"]))
    } else {
        format!(
            "  {:<14} false  {}: {}",
            s(&c["type"]),
            s(&c["reason"]),
            s(&c["message"])
        )
    }
}

/// A runtime handler: name, shim and what is notable about it.
fn handler_line(h: &Value) -> String {
    let s = text;
    let mut notes = Vec::new();
    if h["privileged"] == false {
        notes.push("unprivileged");
    }
    if h["trusted"] == true {
        notes.push("trusted");
    }
    if h["shim_found"] == false {
        notes.push("SHIM NOT FOUND");
    }
    format!(
        "  {:<14} {:<28} {}",
        s(&h["name"]),
        s(&h["runtime_type"]),
        notes.join(", ")
    )
}

fn image_spec(image: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(
    cli: &Cli,
    cri: &mut client::Cri,
    image: &str,
    creds: Option<&str>,
) -> anyhow::Result<()> {
    let (username, password) = match creds {
        Some(c) => c.split_once(':').context("--creds takes user:password")?,
        None => ("", ""),
    };
    let started = std::time::Instant::now();
    let mut stream = cri
        .admin
        .pull_image(crius_cri_api::admin::PullImageRequest {
            image: image.to_string(),
            username: username.into(),
            password: password.into(),
        })
        .await
        .with_context(|| format!("pulling {image}"))?
        .into_inner();
    let mut view = crate::progress::PullView::new(cli.output == Output::Text);
    let mut last = None;
    while let Some(msg) = stream
        .message()
        .await
        .with_context(|| format!("pulling {image}"))?
    {
        view.update(&msg);
        last = Some(msg);
    }
    view.finish();
    let last = last.context("the pull ended without a result")?;
    let seconds = started.elapsed().as_secs_f64();
    match cli.output {
        Output::Json | Output::Yaml => print_json(
            &json!({ "image": image, "name": last.name, "imageRef": last.image_ref, "seconds": seconds }),
        ),
        Output::Text => {
            println!("{} ({}, {seconds:.2} s)", last.image_ref, last.name);
            Ok(())
        }
    }
}

fn image_json(i: &v1::Image) -> Value {
    json!({
        "id": i.id,
        "repoTags": i.repo_tags,
        "repoDigests": i.repo_digests,
        "size": i.size,
        "uid": i.uid.as_ref().map(|u| u.value),
        "username": i.username,
        "pinned": i.pinned,
    })
}

/// `sha256:0123456789ab…` shortened to 13 hex digits, as container tools show ids.
pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(13)]
}

pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

async fn images(
    cli: &Cli,
    cri: &mut client::Cri,
    image: Option<&str>,
    (quiet, digests): (bool, bool),
) -> anyhow::Result<()> {
    let images = cri
        .image
        .list_images(v1::ListImagesRequest {
            filter: image.map(|i| v1::ImageFilter {
                image: image_spec(i),
            }),
        })
        .await
        .context("ListImages")?
        .into_inner()
        .images;
    if cli.output.machine() {
        return print_json(&Value::Array(images.iter().map(image_json).collect()));
    }
    if quiet {
        for i in &images {
            println!("{}", i.id);
        }
        return Ok(());
    }
    let digest_head = if digests {
        format!(" {:<71}", "DIGEST")
    } else {
        String::new()
    };
    println!(
        "{:<60} {:<15}{digest_head} {:<14} {:>8}",
        "IMAGE", "TAG", "IMAGE ID", "SIZE"
    );
    for i in &images {
        for (repo, tag, digest) in image_rows(i) {
            let digest = if digests {
                format!(" {digest:<71}")
            } else {
                String::new()
            };
            println!(
                "{repo:<60} {tag:<15}{digest} {:<14} {:>8}",
                short_id(&i.id),
                human_size(i.size)
            );
        }
    }
    Ok(())
}

/// `(repository, tag, digest)` of each name of `i`: its tags, else its
/// digests' repositories (tag `<none>`); the digest is the repository's,
/// else `<none>`.
fn image_rows(i: &v1::Image) -> Vec<(String, String, String)> {
    let digest_of = |repo: &str| {
        i.repo_digests
            .iter()
            .find_map(|d| d.split_once('@').filter(|(r, _)| *r == repo))
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let tagged: Vec<(String, String, String)> = i
        .repo_tags
        .iter()
        .filter_map(|t| t.rsplit_once(':'))
        .map(|(r, t)| (r.to_string(), t.to_string(), digest_of(r)))
        .collect();
    if !tagged.is_empty() {
        return tagged;
    }
    i.repo_digests
        .iter()
        .filter_map(|d| d.split_once('@'))
        .map(|(r, d)| (r.to_string(), "<none>".to_string(), d.to_string()))
        .collect()
}

async fn rmi(cri: &mut client::Cri, images: &[String]) -> anyhow::Result<()> {
    for image in images {
        cri.image
            .remove_image(v1::RemoveImageRequest {
                image: image_spec(image),
            })
            .await
            .with_context(|| format!("removing {image}"))?;
        println!("removed {image}");
    }
    Ok(())
}

async fn inspect_image(cri: &mut client::Cri, image: &str) -> anyhow::Result<()> {
    let resp = cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: image_spec(image),
            verbose: true,
        })
        .await
        .context("ImageStatus")?
        .into_inner();
    let Some(found) = resp.image else {
        anyhow::bail!("image {image} not found");
    };
    let mut out = json!({ "status": image_json(&found) });
    if let Some(info) = resp.info.get("info") {
        out["info"] = serde_json::from_str(info).unwrap_or(Value::String(info.clone()));
    }
    print_json(&out)
}

async fn import(cli: &Cli, cri: &mut client::Cri, file: &std::path::Path) -> anyhow::Result<()> {
    // The daemon opens the file: send it a path it can open.
    let path = std::fs::canonicalize(file).with_context(|| format!("{}", file.display()))?;
    let resp = cri
        .admin
        .import_images(crius_cri_api::admin::ImportImagesRequest {
            path: path.display().to_string(),
        })
        .await
        .with_context(|| format!("importing {}", path.display()))?
        .into_inner();
    if cli.output.machine() {
        let images: Vec<Value> = resp
            .images
            .iter()
            .map(|i| json!({ "id": i.id, "repoTags": i.repo_tags, "repoDigests": i.repo_digests }))
            .collect();
        return print_json(&Value::Array(images));
    }
    for i in &resp.images {
        let names = if i.repo_tags.is_empty() {
            "<no name>".to_string()
        } else {
            i.repo_tags.join(", ")
        };
        println!("imported {} {names}", i.id);
    }
    Ok(())
}

pub(crate) fn pod_state(state: i32) -> &'static str {
    if state == v1::PodSandboxState::SandboxReady as i32 {
        "Ready"
    } else {
        "NotReady"
    }
}

/// "3 minutes ago" style age of a nanosecond timestamp.
fn age(created_ns: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    let secs = ((now - created_ns) / 1_000_000_000).max(0);
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        3600..=86399 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

async fn pods(
    cli: &Cli,
    cri: &mut client::Cri,
    quiet: bool,
    labels: &[String],
) -> anyhow::Result<()> {
    let selector = label_selector(labels)?;
    let items = cri
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    if cli.output.machine() {
        let out: Vec<Value> = items
            .iter()
            .map(|p| {
                let m = p.metadata.clone().unwrap_or_default();
                json!({ "id": p.id, "name": m.name, "namespace": m.namespace, "uid": m.uid, "attempt": m.attempt,
                        "state": pod_state(p.state), "createdAt": p.created_at, "runtimeHandler": p.runtime_handler,
                        "labels": p.labels })
            })
            .collect();
        return print_json(&Value::Array(out));
    }
    if quiet {
        for p in &items {
            println!("{}", p.id);
        }
        return Ok(());
    }
    println!(
        "{:<14} {:<16} {:<9} {:<30} {:<16} RUNTIME",
        "POD ID", "CREATED", "STATE", "NAME", "NAMESPACE"
    );
    for p in &items {
        println!("{}", pod_line(p));
    }
    Ok(())
}

/// `--label key=value`s as a label selector.
pub(crate) fn label_selector(
    labels: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut selector = std::collections::HashMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').context("--label takes key=value")?;
        selector.insert(k.to_string(), v.to_string());
    }
    Ok(selector)
}

/// A row of `crius pods`.
fn pod_line(p: &v1::PodSandbox) -> String {
    let m = p.metadata.clone().unwrap_or_default();
    format!(
        "{:<14} {:<16} {:<9} {:<30} {:<16} {}",
        short_id(&p.id),
        age(p.created_at),
        pod_state(p.state),
        m.name,
        m.namespace,
        if p.runtime_handler.is_empty() {
            "(default)"
        } else {
            &p.runtime_handler
        }
    )
}

async fn create(
    cli: &Cli,
    cri: &mut client::Cri,
    pod: &str,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let config = crate::containerspec::parse(&text)
        .with_context(|| format!("{} is not a ContainerConfig", file.display()))?;
    let id = cri
        .runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    match cli.output {
        Output::Json | Output::Yaml => print_json(&json!({ "id": id })),
        Output::Text => {
            println!("{id}");
            Ok(())
        }
    }
}

async fn pod_run(
    cli: &Cli,
    cri: &mut client::Cri,
    file: &std::path::Path,
    runtime: &str,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let config = podspec::parse(&text)
        .with_context(|| format!("{} is not a PodSandboxConfig", file.display()))?;
    let id = cri
        .runtime
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime.to_string(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    match cli.output {
        Output::Json | Output::Yaml => print_json(&json!({ "id": id })),
        Output::Text => {
            println!("{id}");
            Ok(())
        }
    }
}

/// Pod `id`'s status (an id or a unique prefix), with its verbose info
/// when asked (PodSandboxStatus), as [`crate::containers::status`] for a
/// container.
pub(crate) async fn pod_status(
    cri: &mut client::Cri,
    id: &str,
    verbose: bool,
) -> anyhow::Result<(v1::PodSandboxStatus, HashMap<String, String>)> {
    let r = cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        })
        .await
        .context("PodSandboxStatus")?
        .into_inner();
    Ok((r.status.context("no status")?, r.info))
}

async fn pod_inspect(cri: &mut client::Cri, id: &str) -> anyhow::Result<()> {
    let (s, info) = pod_status(cri, id, true).await?;
    let m = s.metadata.clone().unwrap_or_default();
    let net = s.network.clone().unwrap_or_default();
    let mut out = json!({
        "status": {
            "id": s.id, "name": m.name, "namespace": m.namespace, "uid": m.uid, "attempt": m.attempt,
            "state": pod_state(s.state), "createdAt": s.created_at,
            "ip": net.ip, "additionalIps": net.additional_ips.iter().map(|i| i.ip.clone()).collect::<Vec<_>>(),
            "labels": s.labels, "annotations": s.annotations, "runtimeHandler": s.runtime_handler,
        }
    });
    if let Some(info) = info.get("info") {
        out["info"] = serde_json::from_str(info).unwrap_or(Value::String(info.clone()));
    }
    print_json(&out)
}

async fn pod_stop(cri: &mut client::Cri, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        cri.runtime
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .with_context(|| format!("stopping {id}"))?;
        println!("stopped {id}");
    }
    Ok(())
}

async fn pod_rm(cri: &mut client::Cri, ids: &[String], force: bool) -> anyhow::Result<()> {
    for id in ids {
        let ready = |s: v1::PodSandboxStatusResponse| {
            s.status
                .is_some_and(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
        };
        let status = v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        };
        if !force
            && let Ok(s) = cri.runtime.pod_sandbox_status(status).await
            && ready(s.into_inner())
        {
            anyhow::bail!(
                "removing {id}: it is ready; stop it first (crius pod stop {id}) or use -f"
            );
        }
        cri.runtime
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .with_context(|| format!("removing {id}"))?;
        println!("removed {id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_rows_give_each_repository_its_digest() {
        let i = v1::Image {
            repo_tags: vec!["reg/a:1".into(), "reg/b:2".into()],
            repo_digests: vec!["reg/a@sha256:aa".into()],
            ..Default::default()
        };
        let row = |r: &str, t: &str, d: &str| (r.to_string(), t.to_string(), d.to_string());
        assert_eq!(
            image_rows(&i),
            [row("reg/a", "1", "sha256:aa"), row("reg/b", "2", "<none>")]
        );
        let untagged = v1::Image {
            repo_digests: vec!["reg/c@sha256:cc".into()],
            ..Default::default()
        };
        assert_eq!(image_rows(&untagged), [row("reg/c", "<none>", "sha256:cc")]);
    }

    #[test]
    fn info_lines() {
        let ready = json!({ "type": "RuntimeReady", "status": true, "reason": "", "message": "" });
        assert_eq!(condition_line(&ready), "  RuntimeReady   true");
        let not = json!({ "type": "NetworkReady", "status": false, "reason": "NetworkPluginNotReady",
                          "message": "no CNI config" });
        assert_eq!(
            condition_line(&not),
            "  NetworkReady   false  NetworkPluginNotReady: no CNI config"
        );
        assert_eq!(condition_line(&json!({})), "  -              false  -: -");
        let kata = json!({ "name": "kata", "runtime_type": "io.containerd.kata.v2",
                           "privileged": false, "trusted": false, "shim_found": false });
        assert_eq!(
            handler_line(&kata),
            format!(
                "  {:<14} {:<28} unprivileged, SHIM NOT FOUND",
                "kata", "io.containerd.kata.v2"
            )
        );
        let runc = json!({ "name": "runc", "runtime_type": "io.containerd.runc.v2",
                           "privileged": true, "trusted": true, "shim_found": true });
        assert!(
            handler_line(&runc).ends_with(" trusted"),
            "{}",
            handler_line(&runc)
        );
    }

    #[test]
    fn a_checkpoint_is_waited_for_longer_than_its_own_timeout() {
        use clap::Parser;
        let cli = |args: &[&str]| Cli::try_parse_from(args).expect("parsed");
        let checkpoint = cli(&[
            "crius",
            "--timeout",
            "30",
            "checkpoint",
            "c1",
            "--wait",
            "60",
        ]);
        assert_eq!(answer_timeout(&checkpoint), Duration::from_secs(65));
        let ps = cli(&["crius", "--timeout", "30", "ps"]);
        assert_eq!(answer_timeout(&ps), Duration::from_secs(30));
    }

    #[test]
    fn label_selectors() {
        let s = label_selector(&["app=web".into(), "tier=a=b".into()]).expect("valid");
        assert_eq!(s.get("app").map(String::as_str), Some("web"));
        assert_eq!(s.get("tier").map(String::as_str), Some("a=b"));
        assert!(label_selector(&["app".into()]).is_err());
        assert!(label_selector(&[]).expect("empty").is_empty());
    }
}
