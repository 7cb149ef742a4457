//! Issue 15: CheckpointContainer. A running container's checkpoint archive
//! (CRIU's images, the metadata files, its root file system's changes, its
//! log) in the layout containerd and CRI-O write; the container runs on
//! unharmed; refusals leave nothing behind.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use crius_cri_api::v1;

use crate::Env;
use crate::containers::{container, create, exec, pod, start, status, status_verbose_pid};

crate::tests![
    a_running_container_is_checkpointed_and_runs_on,
    checkpoints_that_cannot_be_made_are_refused_with_nothing_left
];

/// The entries of a tar archive: name → content (directories: empty).
fn entries(archive: &mut dyn Read) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        let name = entry.path()?.display().to_string();
        let mut data = vec![];
        entry.read_to_end(&mut data)?;
        out.insert(name, data);
    }
    Ok(out)
}

fn files_at(archive: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    entries(&mut std::fs::File::open(archive)?)
}

fn json(files: &BTreeMap<String, Vec<u8>>, name: &str) -> anyhow::Result<serde_json::Value> {
    let data = files.get(name).with_context(|| format!("no {name}"))?;
    serde_json::from_slice(data).with_context(|| format!("{name} is not JSON"))
}

async fn checkpoint(
    cri: &mut crius_testkit::client::Cri,
    id: &str,
    location: &Path,
) -> Result<(), tonic::Status> {
    cri.runtime
        .checkpoint_container(v1::CheckpointContainerRequest {
            container_id: id.into(),
            location: location.display().to_string(),
            timeout: 60,
        })
        .await
        .map(|_| ())
}

async fn counter(cri: &mut crius_testkit::client::Cri, id: &str) -> anyhow::Result<u64> {
    let out = exec(cri, id, &["cat", "/counter"], 10).await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

async fn a_running_container_is_checkpointed_and_runs_on(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "checkpointed").await?;
    let cri = &mut p.env.cri;
    let script = "echo started; echo kept > /marker; i=0; \
                  while :; do i=$((i+1)); echo $i > /counter; sleep 0.1; done";
    let id = create(
        cri,
        &p.id,
        container("counting", &p.image, &["sh", "-c", script]),
    )
    .await?;
    start(cri, &id).await?;
    let pid = status_verbose_pid(cri, &id).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let out = tempfile::tempdir()?;
    // kubelet's directory may not exist yet: crius makes it.
    let location = out.path().join("checkpoints").join("counting.tar");
    let began = std::time::Instant::now();
    checkpoint(cri, &id, &location).await?;
    let size = std::fs::metadata(&location)?.len();
    eprintln!("checkpoint: {:?}, archive {size} bytes", began.elapsed());
    let files = entries(&mut std::fs::File::open(&location)?)?;
    let names: Vec<&String> = files.keys().collect();
    for must in [
        "checkpoint/inventory.img",
        "checkpoint/pstree.img",
        "dump.log",
        "stats-dump",
    ] {
        ensure!(files.contains_key(must), "{must} missing from {names:?}");
    }
    ensure!(
        files.keys().any(|n| n.starts_with("checkpoint/pages-")),
        "no memory pages in {names:?}"
    );
    let config = json(&files, "config.dump")?;
    ensure!(config["id"] == id.as_str(), "{config}");
    ensure!(config["name"] == "counting", "{config}");
    ensure!(config["runtime"] == "io.containerd.runc.v2", "{config}");
    ensure!(
        config["rootfsImageName"]
            .as_str()
            .is_some_and(|i| !i.is_empty()),
        "{config}"
    );
    ensure!(
        config["checkpointedTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{config}"
    );
    let spec = json(&files, "spec.dump")?;
    ensure!(spec["process"]["args"][2] == script, "spec.dump: {spec}");
    let st = json(&files, "status.dump")?;
    ensure!(
        st["id"] == id.as_str() && st["metadata"]["name"] == "counting",
        "{st}"
    );
    ensure!(
        json(&files, "status")?["Pid"] == pid,
        "containerd's status file"
    );
    let log = String::from_utf8_lossy(files.get("container.log").context("no container.log")?);
    ensure!(log.contains("started"), "container.log: {log}");
    // The root file system's changes, as a layer tar.
    let diff = files.get("rootfs-diff.tar").context("no rootfs-diff.tar")?;
    let layer = entries(&mut diff.as_slice())?;
    ensure!(
        layer.get("marker").map(Vec::as_slice) == Some(&b"kept\n"[..]),
        "layer: {:?}",
        layer.keys()
    );
    ensure!(layer.contains_key("counter"), "layer: {:?}", layer.keys());

    // The container runs on, as it was: same process, still counting.
    let s = status(cri, &id).await?;
    ensure!(
        s.state == v1::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    ensure!(
        status_verbose_pid(cri, &id).await? == pid,
        "the process changed"
    );
    let before = counter(cri, &id).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = counter(cri, &id).await?;
    ensure!(
        after > before,
        "the container stopped counting: {before} then {after}"
    );

    // `crius checkpoint` makes the same archive in its working directory.
    let out = std::process::Command::new(crate::CRIUS)
        .current_dir(out.path())
        .arg("--endpoint")
        .arg(p.env.daemon().socket())
        .args(["checkpoint", &id[..12]])
        .output()?;
    ensure!(out.status.success(), "crius checkpoint: {out:?}");
    let printed = String::from_utf8(out.stdout)?;
    let printed = Path::new(printed.trim());
    ensure!(
        printed.parent() == Some(location.parent().and_then(Path::parent).context("dir")?),
        "crius checkpoint wrote {}",
        printed.display()
    );
    let files = entries(&mut std::fs::File::open(printed)?)?;
    ensure!(json(&files, "config.dump")?["id"] == id.as_str());
    let cri = &mut p.env.cri;

    // A retry replaces the archive with a newer checkpoint.
    let first = json(&files_at(&location)?, "config.dump")?["checkpointedTime"].clone();
    checkpoint(cri, &id, &location).await?;
    let second = json(&files_at(&location)?, "config.dump")?["checkpointedTime"].clone();
    ensure!(
        first != second && second.is_string(),
        "{first} then {second}"
    );
    let left: Vec<_> = std::fs::read_dir(location.parent().context("dir")?)?.collect();
    ensure!(left.len() == 1, "files beside the archive: {left:?}");
    work_is_gone(&p.env, true).await?;
    p.env.remove_all_and_check().await
}

/// No checkpoint's work directory, lease or view is left.
async fn work_is_gone(env: &crate::pods::PodEnv, made_one: bool) -> anyhow::Result<()> {
    // Checkpoints work on disk, under root_dir (CRIU's images are as large
    // as the container's memory): the directory stays, empty.
    let work = env.daemon().dir().join("root").join("checkpoints");
    let left: Vec<_> = match std::fs::read_dir(&work) {
        Ok(d) => d.collect(),
        Err(e) if made_one => anyhow::bail!("no {}: {e}", work.display()),
        Err(_) => vec![],
    };
    ensure!(left.is_empty(), "work left in {}: {left:?}", work.display());
    let leases = env
        .containerd
        .lease_list_prefix("crius-checkpoint-")
        .await?;
    ensure!(leases.is_empty(), "leases left: {leases:?}");
    let views: Vec<_> = env
        .containerd
        .snapshot_list("overlayfs")
        .await?
        .into_iter()
        .filter(|s| s.name.starts_with("crius-checkpoint-"))
        .collect();
    ensure!(views.is_empty(), "views left: {views:?}");
    Ok(())
}

async fn checkpoints_that_cannot_be_made_are_refused_with_nothing_left(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = pod(&env, "not-checkpointed").await?;
    let cri = &mut p.env.cri;
    let out = tempfile::tempdir()?;
    let location = out.path().join("c.tar");

    let e = checkpoint(cri, "no-such-container", &location)
        .await
        .expect_err("unknown");
    ensure!(e.code() == tonic::Code::NotFound, "{e:?}");
    let id = create(cri, &p.id, container("short", &p.image, &["true"])).await?;
    let e = checkpoint(cri, &id, Path::new("relative.tar"))
        .await
        .expect_err("relative");
    ensure!(
        e.code() == tonic::Code::InvalidArgument && e.message().contains("location"),
        "{e:?}"
    );
    // Created, then exited: only a running container has processes to dump.
    let e = checkpoint(cri, &id, &location).await.expect_err("created");
    ensure!(e.code() == tonic::Code::FailedPrecondition, "{e:?}");
    start(cri, &id).await?;
    crate::containers::wait_exited(cri, &id).await?;
    let e = checkpoint(cri, &id, &location).await.expect_err("exited");
    ensure!(
        e.code() == tonic::Code::FailedPrecondition && e.message().contains("CONTAINER_EXITED"),
        "{e:?}"
    );
    ensure!(!location.exists(), "an archive of a refused checkpoint");
    work_is_gone(&p.env, false).await?;
    p.env.remove_all_and_check().await
}
