//! Issue 3: pulling from a real registry, listing, status, removal, faults.
//! Each test runs its own daemon in a containerd namespace of its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::client::Cri;
use crius_testkit::images as ti;

use crate::{CRIUS, Env};

crate::tests![
    builtin_sandbox_image_is_listed_and_pinned,
    pull_by_tag_then_status,
    pull_without_tag_defaults_to_latest,
    pull_by_digest,
    several_tags_are_one_image,
    distinct_images_are_listed_apart,
    status_by_every_kind_of_reference,
    remove_a_tag_keeps_the_others,
    remove_by_id_removes_everything_and_is_idempotent,
    uid_and_username_from_user,
    multi_platform_index_picks_amd64,
    zstd_uncompressed_and_docker_schema2_layers,
    concurrent_pulls_of_one_image,
    pulls_racing_removals_of_one_image,
    malformed_reference_is_invalid_argument,
    unknown_tag_is_not_found,
    registry_down_is_unavailable_naming_it,
    tampered_blob_is_refused_and_nothing_kept,
    list_filter_by_image,
    import_an_oci_layout_archive,
    import_a_docker_save_archive,
    daemon_killed_mid_pull_leaves_nothing_that_breaks_the_next,
    unpack_on_pull_can_be_switched_off,
    cli_pull_reports_progress_per_layer,
    records_changed_behind_our_back_are_seen,
    what_a_lease_holds_outlives_the_removal_of_its_image,
];

fn spec(image: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

pub(crate) async fn pull(cri: &mut Cri, image: &str) -> Result<String, tonic::Status> {
    cri.image
        .pull_image(v1::PullImageRequest {
            image: spec(image),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(cri: &mut Cri, image: &str) -> anyhow::Result<Option<v1::Image>> {
    Ok(cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await?
        .into_inner()
        .image)
}

/// The images a test pulled: all but the pinned built-in sandbox image.
async fn list(cri: &mut Cri) -> anyhow::Result<Vec<v1::Image>> {
    Ok(cri
        .image
        .list_images(v1::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images
        .into_iter()
        .filter(|i| !i.pinned)
        .collect())
}

/// A daemon with `opts` in a containerd namespace of its own (`crius-<tag>-<pid>`),
/// a CRI client of it and a containerd connection to that namespace.
async fn own_daemon(
    env: &Env,
    mut opts: crius_testkit::criusd::CriusdOptions,
    tag: &str,
) -> anyhow::Result<(
    crius_testkit::criusd::Criusd,
    Cri,
    crius_containerd::Containerd,
)> {
    opts.namespace = format!("crius-{tag}-{}", std::process::id());
    let daemon = crius_testkit::criusd::Criusd::start(&opts)?;
    daemon
        .wait_runtime_ready(std::time::Duration::from_secs(30))
        .await?;
    let cri = crius_testkit::client::connect(daemon.socket()).await?;
    let containerd =
        crius_containerd::Containerd::connect(env.containerd.socket(), &opts.namespace).await?;
    Ok((daemon, cri, containerd))
}

/// The chain id (the top layer's snapshot) ImageStatus reports for `reference`.
async fn chain_id(cri: &mut Cri, reference: &str) -> anyhow::Result<String> {
    let resp = cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: spec(reference),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(resp.info.get("info").context("verbose")?)?;
    Ok(info["chainID"].as_str().context("chain id")?.to_string())
}

async fn pull_by_tag_then_status(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let reference = env.images.reference(ti::BUSYBOX);
    let id = pull(&mut cri, &reference).await?;
    ensure!(id == env.images.image_id(ti::BUSYBOX), "image_ref {id}");
    let image = status(&mut cri, &reference)
        .await?
        .context("no image after pull")?;
    ensure!(image.id == id, "{image:?}");
    ensure!(image.repo_tags == vec![reference.clone()], "{image:?}");
    ensure!(
        image.repo_digests == vec![env.images.repo_digest(ti::BUSYBOX)],
        "{image:?}"
    );
    ensure!(image.size > 500_000, "busybox is not that small: {image:?}");
    ensure!(
        image.uid.is_none() && image.username.is_empty(),
        "{image:?}"
    );
    Ok(())
}

async fn pull_without_tag_defaults_to_latest(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let reference = env.images.reference("crius-test/busybox");
    let id = pull(&mut cri, &reference).await?;
    ensure!(id == env.images.image_id(ti::BUSYBOX));
    let image = status(&mut cri, &reference).await?.context("no image")?;
    ensure!(
        image.repo_tags == vec![format!("{reference}:latest")],
        "{image:?}"
    );
    Ok(())
}

async fn pull_by_digest(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let by_digest = env.images.repo_digest(ti::MULTILAYER);
    let id = pull(&mut cri, &by_digest).await?;
    ensure!(id == env.images.image_id(ti::MULTILAYER));
    let image = status(&mut cri, &by_digest).await?.context("no image")?;
    ensure!(
        image.repo_tags.is_empty(),
        "a pull by digest adds no tag: {image:?}"
    );
    ensure!(image.repo_digests == vec![by_digest.clone()], "{image:?}");
    Ok(())
}

async fn several_tags_are_one_image(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    for tag in [ti::BUSYBOX, ti::BUSYBOX_1_0, ti::BUSYBOX_STABLE] {
        pull(&mut cri, &env.images.reference(tag)).await?;
    }
    let images = list(&mut cri).await?;
    ensure!(images.len() == 1, "{images:?}");
    let tags: BTreeSet<_> = images[0].repo_tags.iter().cloned().collect();
    let expected: BTreeSet<_> = [ti::BUSYBOX, ti::BUSYBOX_1_0, ti::BUSYBOX_STABLE]
        .iter()
        .map(|t| env.images.reference(t))
        .collect();
    ensure!(tags == expected, "{tags:?}");
    ensure!(images[0].repo_digests.len() == 1, "{images:?}");
    Ok(())
}

async fn distinct_images_are_listed_apart(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    for name in [ti::BUSYBOX, ti::DISTINCT_A, ti::DISTINCT_B] {
        pull(&mut cri, &env.images.reference(name)).await?;
    }
    let ids: BTreeSet<_> = list(&mut cri).await?.into_iter().map(|i| i.id).collect();
    let expected: BTreeSet<_> = [ti::BUSYBOX, ti::DISTINCT_A, ti::DISTINCT_B]
        .iter()
        .map(|n| env.images.image_id(n))
        .collect();
    ensure!(ids == expected, "{ids:?} != {expected:?}");
    Ok(())
}

async fn status_by_every_kind_of_reference(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let reference = env.images.reference(ti::DISTINCT_A);
    let id = pull(&mut cri, &reference).await?;
    let hex = id.trim_start_matches("sha256:").to_string();
    for query in [
        reference.clone(),
        env.images.repo_digest(ti::DISTINCT_A),
        id.clone(),
        hex.clone(),
    ] {
        let image = status(&mut cri, &query).await?;
        ensure!(
            image.as_ref().map(|i| i.id.as_str()) == Some(id.as_str()),
            "status of {query}: {image:?}"
        );
    }
    // Unknown images are not an error for ImageStatus: the image is absent.
    ensure!(
        status(&mut cri, &env.images.reference("crius-test/none:latest"))
            .await?
            .is_none()
    );
    // Verbose info carries the image config.
    let resp = cri
        .image
        .image_status(v1::ImageStatusRequest {
            image: spec(&reference),
            verbose: true,
        })
        .await?
        .into_inner();
    let info = resp.info.get("info").context("no verbose info")?;
    let info: serde_json::Value = serde_json::from_str(info)?;
    ensure!(info["imageSpec"]["config"]["Env"].is_array(), "{info}");
    Ok(())
}

async fn remove_a_tag_keeps_the_others(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let latest = env.images.reference(ti::BUSYBOX);
    let stable = env.images.reference(ti::BUSYBOX_STABLE);
    pull(&mut cri, &latest).await?;
    pull(&mut cri, &stable).await?;
    cri.image
        .remove_image(v1::RemoveImageRequest {
            image: spec(&stable),
        })
        .await?;
    ensure!(
        status(&mut cri, &stable).await?.is_none(),
        "the removed tag is still there"
    );
    let image = status(&mut cri, &latest)
        .await?
        .context("the other tag went too")?;
    ensure!(image.repo_tags == vec![latest], "{image:?}");
    Ok(())
}

async fn remove_by_id_removes_everything_and_is_idempotent(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let id = pull(&mut cri, &env.images.reference(ti::BUSYBOX)).await?;
    pull(&mut cri, &env.images.reference(ti::BUSYBOX_1_0)).await?;
    cri.image
        .remove_image(v1::RemoveImageRequest { image: spec(&id) })
        .await?;
    ensure!(
        list(&mut cri).await?.is_empty(),
        "images left after removal by id"
    );
    cri.image
        .remove_image(v1::RemoveImageRequest { image: spec(&id) })
        .await
        .context("a second removal must succeed")?;
    cri.image
        .remove_image(v1::RemoveImageRequest {
            image: spec(&env.images.reference("crius-test/never-pulled:latest")),
        })
        .await
        .context("removing an unknown image must succeed")?;
    Ok(())
}

async fn uid_and_username_from_user(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    for (name, uid, username) in [
        (ti::USER_NUMERIC, Some(1234), ""),
        (ti::USER_NAMED, None, "alice"),
        (ti::USER_UIDGID, Some(1234), ""),
    ] {
        let reference = env.images.reference(name);
        pull(&mut cri, &reference).await?;
        let image = status(&mut cri, &reference).await?.context("no image")?;
        ensure!(
            image.uid.as_ref().map(|u| u.value) == uid,
            "{name}: {image:?}"
        );
        ensure!(image.username == username, "{name}: {image:?}");
    }
    Ok(())
}

async fn multi_platform_index_picks_amd64(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let reference = env.images.reference(ti::MULTIARCH);
    let id = pull(&mut cri, &reference).await?;
    ensure!(id == env.images.image_id(ti::MULTIARCH), "{id}");
    let image = status(&mut cri, &reference).await?.context("no image")?;
    // The repo digest is the index's: what the tag points at.
    ensure!(
        image.repo_digests == vec![env.images.repo_digest(ti::MULTIARCH)],
        "{image:?}"
    );
    Ok(())
}

async fn zstd_uncompressed_and_docker_schema2_layers(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    for name in [ti::ZSTD, ti::UNCOMPRESSED, ti::DOCKER_SCHEMA2] {
        let id = pull(&mut cri, &env.images.reference(name))
            .await
            .with_context(|| format!("pulling {name}"))?;
        ensure!(id == env.images.image_id(name), "{name}: {id}");
    }
    ensure!(list(&mut cri).await?.len() == 3);
    Ok(())
}

async fn concurrent_pulls_of_one_image(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, cri) = env.isolated().await?;
    let reference = env.images.reference(ti::MULTILAYER);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut cri = cri.clone();
        let reference = reference.clone();
        tasks.push(tokio::spawn(
            async move { pull(&mut cri, &reference).await },
        ));
    }
    for t in tasks {
        let id = t.await??;
        ensure!(id == env.images.image_id(ti::MULTILAYER), "{id}");
    }
    let mut cri = cri.clone();
    ensure!(list(&mut cri).await?.len() == 1);
    Ok(())
}

/// Pulls and removals of one image at once: each answers OK (or NOT_FOUND
/// for a removal that lost), never INTERNAL (the fuzzer found "image
/// update: not found" when a removal came between a pull's create and
/// update of the record), and a last pull leaves the image there.
async fn pulls_racing_removals_of_one_image(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, cri) = env.isolated().await?;
    let reference = env.images.reference(ti::DISTINCT_A);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let mut cri = cri.clone();
        let reference = reference.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..6 {
                let answer = if (worker + round) % 2 == 0 {
                    pull(&mut cri, &reference).await.map(|_| ())
                } else {
                    cri.image
                        .remove_image(v1::RemoveImageRequest {
                            image: spec(&reference),
                        })
                        .await
                        .map(|_| ())
                };
                if let Err(e) = answer {
                    ensure!(e.code() == tonic::Code::NotFound, "round {round}: {e:?}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut cri = cri.clone();
    pull(&mut cri, &reference).await?;
    ensure!(status(&mut cri, &reference).await?.is_some());
    Ok(())
}

async fn malformed_reference_is_invalid_argument(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    for bad in [
        "",
        // Upper case in the repository (`UPPER/case` alone names a
        // registry host `UPPER`, as for Docker and containerd).
        "docker.io/UPPER/case:tag",
        "busybox@sha256:123",
        "a b",
        "busybox:",
    ] {
        let err = pull(&mut cri, bad).await.expect_err(bad);
        ensure!(
            err.code() == tonic::Code::InvalidArgument,
            "{bad:?}: {err:?}"
        );
        ensure!(
            bad.is_empty() || err.message().contains(bad),
            "{bad:?} should be named: {err:?}"
        );
    }
    Ok(())
}

async fn unknown_tag_is_not_found(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    let reference = env.images.reference("crius-test/busybox:no-such-tag");
    let err = pull(&mut cri, &reference).await.expect_err("unknown tag");
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    ensure!(err.message().contains("no-such-tag"), "{err:?}");
    Ok(())
}

async fn registry_down_is_unavailable_naming_it(env: Arc<Env>) -> anyhow::Result<()> {
    let mut cri = env.cri().await?;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let reference = format!("127.0.0.1:{port}/crius-test/busybox:latest");
    let err = pull(&mut cri, &reference)
        .await
        .expect_err("nothing listens there");
    ensure!(err.code() == tonic::Code::Unavailable, "{err:?}");
    ensure!(
        err.message().contains(&format!("127.0.0.1:{port}")),
        "{err:?}"
    );
    Ok(())
}

async fn tampered_blob_is_refused_and_nothing_kept(env: Arc<Env>) -> anyhow::Result<()> {
    // A layer no other test has: containerd shares blobs between namespaces,
    // so a blob pulled elsewhere would never be downloaded again.
    let registry = crius_testkit::registry::Registry::start()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let layer: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(nanos as u32) >> 13) as u8)
        .collect();
    let repo = "crius-test/tampered";
    let layer_digest = push_one_layer_image(&registry, repo, &layer)?;
    // Now the registry serves other bytes under the layer's digest.
    let path = registry.blob_data_path(&layer_digest);
    let mut data = std::fs::read(&path)?;
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, data)?;

    let mut opts = env.options();
    opts.extra_config = format!("[images]\nplain_http_hosts = [{:?}]\n", registry.addr());
    opts.namespace = format!("crius-tamper-{}", std::process::id());
    let daemon = crius_testkit::criusd::Criusd::start(&opts)?;
    daemon
        .wait_runtime_ready(std::time::Duration::from_secs(30))
        .await?;
    let mut cri = crius_testkit::client::connect(daemon.socket()).await?;
    let reference = format!("{}/{repo}:latest", registry.addr());
    let err = pull(&mut cri, &reference)
        .await
        .expect_err("tampered layer");
    ensure!(err.code() == tonic::Code::DataLoss, "{err:?}");
    ensure!(
        err.message().contains(&layer_digest),
        "the error should name the blob: {err:?}"
    );
    ensure!(list(&mut cri).await?.is_empty(), "an image was recorded");

    let containerd =
        crius_containerd::Containerd::connect(env.containerd.socket(), &opts.namespace).await?;
    ensure!(
        containerd.content_info(&layer_digest).await?.is_none(),
        "the tampered blob was kept"
    );
    ensure!(
        containerd.content_list_statuses().await?.is_empty(),
        "a partial download was left"
    );
    ensure!(
        containerd.lease_list_prefix("crius-").await?.is_empty(),
        "a pull lease was left"
    );
    Ok(())
}

async fn list_filter_by_image(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let a = env.images.reference(ti::DISTINCT_A);
    pull(&mut cri, &a).await?;
    pull(&mut cri, &env.images.reference(ti::DISTINCT_B)).await?;
    let images = cri
        .image
        .list_images(v1::ListImagesRequest {
            filter: Some(v1::ImageFilter { image: spec(&a) }),
        })
        .await?
        .into_inner()
        .images;
    ensure!(
        images.len() == 1 && images[0].repo_tags == vec![a],
        "{images:?}"
    );
    Ok(())
}

/// Runs `crius image import` against a daemon; returns its JSON output.
fn cli_import(
    socket: &std::path::Path,
    file: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(CRIUS)
        .arg("--endpoint")
        .arg(socket)
        .args(["image", "import", "-o", "json"])
        .arg(file)
        .output()?;
    ensure!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn import_an_oci_layout_archive(env: Arc<Env>) -> anyhow::Result<()> {
    let (daemon, mut cri) = env.isolated().await?;
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("busybox-oci.tar");
    let name = "registry.invalid/air-gapped/busybox:1.0";
    env.images
        .write_oci_layout_tar(ti::DISTINCT_A, &archive, name)?;
    let imported = cli_import(daemon.socket(), &archive)?;
    let id = env.images.image_id(ti::DISTINCT_A);
    ensure!(imported[0]["id"] == id.as_str(), "{imported}");
    let image = status(&mut cri, name)
        .await?
        .context("imported image not found")?;
    ensure!(
        image.id == id && image.repo_tags == vec![name.to_string()],
        "{image:?}"
    );
    // Nothing of it came from a registry: this name resolves nowhere.
    ensure!(
        pull(&mut cri, name).await.is_err(),
        "registry.invalid should not resolve"
    );
    // A missing file is NotFound; a file that is no archive is refused.
    let err = cri_import_err(&daemon, "/nonexistent/archive.tar").await?;
    ensure!(err.code() == tonic::Code::NotFound, "{err:?}");
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all")?;
    let err = cri_import_err(&daemon, &junk.display().to_string()).await?;
    ensure!(err.code() == tonic::Code::InvalidArgument, "{err:?}");
    Ok(())
}

async fn cri_import_err(
    daemon: &crius_testkit::criusd::Criusd,
    path: &str,
) -> anyhow::Result<tonic::Status> {
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn({
            let socket = daemon.socket().to_path_buf();
            move |_| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }
        }))
        .await?;
    let mut admin = crius_cri_api::admin::admin_client::AdminClient::new(channel);
    match admin
        .import_images(crius_cri_api::admin::ImportImagesRequest { path: path.into() })
        .await
    {
        Ok(r) => anyhow::bail!("import of {path} succeeded: {:?}", r.into_inner()),
        Err(e) => Ok(e),
    }
}

async fn import_a_docker_save_archive(env: Arc<Env>) -> anyhow::Result<()> {
    let (daemon, mut cri) = env.isolated().await?;
    // A legacy `docker save` archive: manifest.json, <id>.json, <dir>/layer.tar
    // (uncompressed). The UNCOMPRESSED test image has exactly such a layer.
    let built = ti::build_image(ti::UNCOMPRESSED)?;
    let amd64 = built.info.amd64().clone();
    let blobs = built.all_blobs();
    let config = blobs.get(amd64.image_id.as_str()).context("config blob")?;
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("legacy.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&archive)?);
    let mut add = |name: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
        Ok(())
    };
    let config_name = format!("{}.json", amd64.image_id.trim_start_matches("sha256:"));
    let mut layer_names = Vec::new();
    for (i, layer) in amd64.layers.iter().enumerate() {
        let blob = blobs.get(layer.as_str()).context("layer blob")?;
        let name = format!("layer{i}/layer.tar");
        add(&name, &blob.data)?;
        layer_names.push(name);
    }
    add(&config_name, &config.data)?;
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["legacy.invalid/app:v1"],
        "Layers": layer_names,
    }]);
    add("manifest.json", manifest.to_string().as_bytes())?;
    tar.finish()?;
    drop(tar);

    let imported = cli_import(daemon.socket(), &archive)?;
    ensure!(imported[0]["id"] == amd64.image_id.as_str(), "{imported}");
    let image = status(&mut cri, "legacy.invalid/app:v1")
        .await?
        .context("not found")?;
    ensure!(image.id == amd64.image_id, "{image:?}");
    Ok(())
}

/// Pushes a one-layer image whose layer is `size` bytes of noise (never
/// unpacked: the daemon using it runs with `unpack_on_pull = false`).
fn push_noise_image(
    registry: &crius_testkit::registry::Registry,
    repo: &str,
    size: usize,
) -> anyhow::Result<String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u32;
    let chunk: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect();
    let mut layer = Vec::with_capacity(size);
    let mut n = 0u8;
    while layer.len() < size {
        layer.extend_from_slice(&chunk);
        layer.push(n);
        n = n.wrapping_add(1);
    }
    push_one_layer_image(registry, repo, &layer)
}

async fn daemon_killed_mid_pull_leaves_nothing_that_breaks_the_next(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    use nix::sys::signal::Signal;
    let registry = crius_testkit::registry::Registry::start()?;
    let repo = "crius-test/big";
    push_noise_image(&registry, repo, 96 << 20)?;
    let mut opts = env.options();
    opts.extra_config = format!(
        "[images]\nplain_http_hosts = [{:?}]\nunpack_on_pull = false\n",
        registry.addr()
    );
    opts.namespace = format!("crius-killed-{}", std::process::id());
    let containerd =
        crius_containerd::Containerd::connect(env.containerd.socket(), &opts.namespace).await?;
    let reference = format!("{}/{repo}:latest", registry.addr());

    let mut daemon = crius_testkit::criusd::Criusd::start(&opts)?;
    daemon
        .wait_runtime_ready(std::time::Duration::from_secs(30))
        .await?;
    let mut cri = crius_testkit::client::connect(daemon.socket()).await?;
    let pulling = {
        let mut cri = cri.clone();
        let reference = reference.clone();
        tokio::spawn(async move { pull(&mut cri, &reference).await })
    };
    // Kill it while the layer is being written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ingests = containerd.content_list_statuses().await?;
        if ingests.iter().any(|r| r.starts_with("crius-")) {
            break;
        }
        ensure!(
            !pulling.is_finished(),
            "the pull finished before it could be interrupted"
        );
        ensure!(
            std::time::Instant::now() < deadline,
            "no ingest ever started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    daemon.signal_and_wait(Signal::SIGKILL, std::time::Duration::from_secs(10))?;
    ensure!(pulling.await?.is_err(), "the pull survived the daemon");
    ensure!(
        !containerd
            .lease_list_prefix("crius-pull-")
            .await?
            .is_empty(),
        "a killed pull should have left its lease (else this test proves nothing)"
    );

    // A new daemon cleans up, then pulls as if nothing happened.
    let daemon = crius_testkit::criusd::Criusd::start(&opts)?;
    daemon
        .wait_runtime_ready(std::time::Duration::from_secs(30))
        .await?;
    ensure!(
        containerd.lease_list_prefix("crius-").await?.is_empty(),
        "leases left after recovery"
    );
    let left: Vec<_> = containerd
        .content_list_statuses()
        .await?
        .into_iter()
        .filter(|r| r.starts_with("crius-"))
        .collect();
    ensure!(left.is_empty(), "ingests left after recovery: {left:?}");
    cri = crius_testkit::client::connect(daemon.socket()).await?;
    pull(&mut cri, &reference).await?;
    ensure!(status(&mut cri, &reference).await?.is_some());
    Ok(())
}

async fn builtin_sandbox_image_is_listed_and_pinned(env: Arc<Env>) -> anyhow::Result<()> {
    let (_d, mut cri) = env.isolated().await?;
    let all = cri
        .image
        .list_images(v1::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    let pause: Vec<_> = all.iter().filter(|i| i.pinned).collect();
    ensure!(pause.len() == 1, "{all:?}");
    let name = format!("localhost/crius/pause:{}", env!("CARGO_PKG_VERSION"));
    ensure!(pause[0].repo_tags == vec![name.clone()], "{:?}", pause[0]);
    // Pinned: kubelet's image garbage collection never removes it.
    let status = status(&mut cri, &name).await?.context("no pause image")?;
    ensure!(status.pinned && status.size > 100_000, "{status:?}");
    Ok(())
}

async fn unpack_on_pull_can_be_switched_off(env: Arc<Env>) -> anyhow::Result<()> {
    let mut opts = env.options();
    opts.extra_config = format!(
        "[images]\nplain_http_hosts = [{:?}]\nunpack_on_pull = false\n",
        env.images.addr()
    );
    let (_daemon, mut cri, containerd) = own_daemon(&env, opts, "nounpack").await?;
    let reference = env.images.reference(ti::MULTILAYER);
    pull(&mut cri, &reference).await?;
    let chain_id = chain_id(&mut cri, &reference).await?;
    // Other namespaces may have unpacked the same layers: snapshots are per
    // namespace, so this one must have none.
    ensure!(
        containerd
            .snapshot_stat("overlayfs", &chain_id)
            .await?
            .is_none(),
        "unpacked at pull"
    );
    Ok(())
}

async fn cli_pull_reports_progress_per_layer(env: Arc<Env>) -> anyhow::Result<()> {
    let (daemon, mut cri) = env.isolated().await?;
    let reference = env.images.reference(ti::MULTILAYER);
    let crius = |args: &[&str]| {
        std::process::Command::new(CRIUS)
            .arg("--endpoint")
            .arg(daemon.socket())
            .args(args)
            .output()
    };
    let out = crius(&["pull", &reference])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stderr}");
    let id = env.images.image_id(ti::MULTILAYER);
    ensure!(
        String::from_utf8_lossy(&out.stdout).starts_with(&id),
        "{:?}",
        out.stdout
    );
    // Not a terminal: one line per finished layer.
    let layers = &env
        .images
        .info(ti::MULTILAYER)
        .context("info")?
        .amd64()
        .layers;
    for layer in layers {
        let short = &layer.trim_start_matches("sha256:")[..12];
        ensure!(
            stderr.contains(&format!("{short}: done"))
                || stderr.contains(&format!("{short}: exists")),
            "{short} not reported:\n{stderr}"
        );
    }
    ensure!(stderr.contains("downloading"), "{stderr}");
    // Again: every layer is there already.
    let out = crius(&["pull", "-o", "json", &reference])?;
    ensure!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(v["imageRef"] == id.as_str(), "{v}");
    ensure!(status(&mut cri, &reference).await?.is_some());
    let out = crius(&["pull", &env.images.reference("crius-test/busybox:nope")])?;
    ensure!(!out.status.success());
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{:?}",
        out.stderr
    );
    Ok(())
}

/// Pushes `repo:latest` with one uncompressed layer of `layer`'s bytes (any
/// bytes: the image is never unpacked); returns the layer digest.
fn push_one_layer_image(
    registry: &crius_testkit::registry::Registry,
    repo: &str,
    layer: &[u8],
) -> anyhow::Result<String> {
    let layer_digest = registry.push_blob(repo, layer)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    })
    .to_string();
    let config_digest = registry.push_blob(repo, config.as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len() }],
    })
    .to_string();
    registry.put_manifest(
        repo,
        "latest",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    )?;
    Ok(layer_digest)
}

/// crius keeps the image list in memory, but containerd stays the source of
/// truth: records deleted or created by another client of containerd (here
/// the containerd API directly) show in ImageStatus / ListImages at once.
async fn records_changed_behind_our_back_are_seen(env: Arc<Env>) -> anyhow::Result<()> {
    let (_daemon, mut cri, containerd) = own_daemon(&env, env.options(), "behind").await?;
    let reference = env.images.reference(ti::BUSYBOX);
    pull(&mut cri, &reference).await?;
    for _ in 0..3 {
        ensure!(status(&mut cri, &reference).await?.is_some(), "not found");
    }
    let records: Vec<_> = containerd
        .image_list(&[])
        .await?
        .into_iter()
        .filter(|r| !r.name.contains("crius/pause"))
        .collect();
    ensure!(!records.is_empty(), "no records");
    let eventually = |want: bool| {
        let mut cri = cri.clone();
        let reference = reference.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                let found = status(&mut cri, &reference).await?.is_some()
                    && list(&mut cri).await?.len() == 1;
                if found == want {
                    return anyhow::Ok(());
                }
                ensure!(
                    std::time::Instant::now() < deadline,
                    "ImageStatus still says found={found}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    for r in &records {
        containerd.image_delete(&r.name, false).await?;
    }
    eventually(false).await.context("after deletion")?;
    for r in records {
        containerd.image_put(r).await?;
    }
    eventually(true).await.context("after re-creation")?;
    Ok(())
}

/// A pull or import that finds a layer in place holds it in its lease
/// (`Containerd::lease_hold`) before using it, so another image's removal
/// cannot take it meanwhile (critest's parallel specs hit that: a layer
/// shared by two images vanished under an unpack). Here the hold is made by
/// hand, and the removal's own garbage collection (synchronous on the last
/// record) must leave the held blob and snapshot alone.
async fn what_a_lease_holds_outlives_the_removal_of_its_image(env: Arc<Env>) -> anyhow::Result<()> {
    use crius_containerd::Held;
    let (_daemon, mut cri, containerd) = own_daemon(&env, env.options(), "hold").await?;
    let reference = env.images.reference(ti::BUSYBOX);
    let id = pull(&mut cri, &reference).await?;
    let chain_id = chain_id(&mut cri, &reference).await?;
    let layers: Vec<String> = containerd
        .content_list(&[])
        .await?
        .into_iter()
        .filter(|c| c.labels.contains_key("containerd.io/uncompressed"))
        .map(|c| c.digest)
        .collect();
    let layer = layers.first().context("no layer blob")?.clone();
    let lease = "crius-test-hold";
    containerd
        .lease_create(lease, std::time::Duration::from_secs(120))
        .await?;
    let held = containerd.with_lease(lease);
    held.lease_hold(Held::Content(&layer)).await?;
    held.lease_hold(Held::Snapshot {
        snapshotter: "overlayfs",
        key: &chain_id,
    })
    .await?;
    // Without a lease, holding is nothing (and no error).
    containerd.lease_hold(Held::Content(&layer)).await?;

    cri.image
        .remove_image(v1::RemoveImageRequest { image: spec(&id) })
        .await?;
    let blob_kept = containerd.content_info(&layer).await?.is_some();
    let snapshot_kept = containerd
        .snapshot_stat("overlayfs", &chain_id)
        .await?
        .is_some();
    containerd.lease_delete(lease).await?;
    ensure!(blob_kept, "the held layer blob {layer} was collected");
    ensure!(snapshot_kept, "the held snapshot {chain_id} was collected");
    Ok(())
}
