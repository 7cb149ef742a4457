//! Resolving and fetching from the real test registry.

use crius_core::Error;
use crius_registry::{Fetcher, Platform, RegistryConfig, media, parse_reference};
use crius_testkit::images::{self as ti, TestImages};

use crate::common::{amd64, dead_port, drain, images, resolve};

fn config() -> RegistryConfig {
    RegistryConfig {
        plain_http_hosts: vec![images().addr()],
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn resolve_by_tag() -> anyhow::Result<()> {
    let images = images();
    let r = resolve(&config(), &images.reference(ti::BUSYBOX)).await?;
    let info = images.info(ti::BUSYBOX).expect("known");
    assert_eq!(r.name, images.reference(ti::BUSYBOX));
    assert_eq!(r.top.digest(), images.manifest_digest(ti::BUSYBOX));
    assert_eq!(r.top.media_type(), media::OCI_MANIFEST);
    assert_eq!(r.top.descriptor.size(), info.manifest_size);
    assert_eq!(r.top.descriptor.size(), r.top.bytes.len() as u64);
    assert_eq!(r.manifest, r.top);
    assert_eq!(r.image_id(), images.image_id(ti::BUSYBOX));
    assert_eq!(r.config.media_type(), media::OCI_CONFIG);
    assert_eq!(media::sha256_digest(&r.config.bytes), r.image_id());
    let layers: Vec<String> = r.layers.iter().map(|l| l.digest().to_string()).collect();
    assert_eq!(layers, info.amd64().layers);
    assert_eq!(r.diff_ids, info.amd64().diff_ids);
    assert_eq!(r.layers[0].media_type().to_string(), media::OCI_LAYER_GZIP);
    assert_eq!(r.repo_tag(), Some(images.reference(ti::BUSYBOX)));
    assert_eq!(r.repo_digest(), images.repo_digest(ti::BUSYBOX));
    // Other tags of the same image resolve to the same content.
    for tag in [ti::BUSYBOX_1_0, ti::BUSYBOX_STABLE] {
        let other = resolve(&config(), &images.reference(tag)).await?;
        assert_eq!(other.top, r.top, "{tag}");
    }
    Ok(())
}

#[tokio::test]
async fn resolve_by_digest() -> anyhow::Result<()> {
    let images = images();
    let by_tag = resolve(&config(), &images.reference(ti::USER_NUMERIC)).await?;
    let by_digest = images.repo_digest(ti::USER_NUMERIC);
    let r = resolve(&config(), &by_digest).await?;
    assert_eq!(r.name, by_digest);
    assert_eq!(r.top, by_tag.top);
    assert_eq!(r.image_id(), images.image_id(ti::USER_NUMERIC));
    assert_eq!(r.repo_tag(), None);
    // tag@digest: the digest wins (the tag is not even looked at).
    let tagged = format!(
        "{}/crius-test/user-numeric:no-such-tag@{}",
        images.addr(),
        images.manifest_digest(ti::USER_NUMERIC)
    );
    let r = resolve(&config(), &tagged).await?;
    assert_eq!(r.top, by_tag.top);
    // A digest the registry does not have.
    let missing = format!(
        "{}/crius-test/user-numeric@sha256:{}",
        images.addr(),
        "0".repeat(64)
    );
    match resolve(&config(), &missing).await {
        Err(Error::NotFound { what }) => assert!(what.contains(&missing), "{what}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn multiarch_picks_the_platform() -> anyhow::Result<()> {
    let images = images();
    let info = images.info(ti::MULTIARCH).expect("known");
    let reference = parse_reference(&images.reference(ti::MULTIARCH))?;
    let fetcher = Fetcher::new(&config(), &reference, None)?;
    let r = fetcher.resolve(&amd64()).await?;
    assert_eq!(r.top.media_type(), media::OCI_INDEX);
    assert_eq!(r.top.digest(), info.manifest_digest);
    assert_eq!(r.manifest.digest(), info.platforms[0].manifest_digest);
    assert_eq!(r.manifest.media_type(), media::OCI_MANIFEST);
    let platform = r.manifest.descriptor.platform().as_ref().expect("platform");
    assert_eq!(platform.architecture().to_string(), "amd64");
    assert_eq!(r.image_id(), info.platforms[0].image_id);
    assert_eq!(r.image_id(), images.image_id(ti::MULTIARCH));
    assert_eq!(r.diff_ids, info.platforms[0].diff_ids);
    // The host platform of this machine is amd64 too.
    if cfg!(target_arch = "x86_64") {
        assert_eq!(fetcher.resolve(&Platform::host()).await?, r);
    }
    let arm = fetcher
        .resolve(&Platform::new("linux", "arm64", Some("v8")))
        .await?;
    assert_eq!(arm.top, r.top);
    assert_eq!(arm.manifest.digest(), info.platforms[1].manifest_digest);
    assert_eq!(arm.image_id(), info.platforms[1].image_id);
    match fetcher
        .resolve(&Platform::new("linux", "s390x", None))
        .await
    {
        Err(Error::NotFound { what }) => {
            assert!(what.contains("linux/s390x"), "{what}");
            assert!(what.contains(&images.reference(ti::MULTIARCH)), "{what}");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn docker_schema2() -> anyhow::Result<()> {
    let images = images();
    let r = resolve(&config(), &images.reference(ti::DOCKER_SCHEMA2)).await?;
    assert_eq!(r.top.media_type(), media::DOCKER_MANIFEST);
    assert_eq!(r.top.digest(), images.manifest_digest(ti::DOCKER_SCHEMA2));
    assert_eq!(r.config.media_type(), media::DOCKER_CONFIG);
    assert_eq!(r.image_id(), images.image_id(ti::DOCKER_SCHEMA2));
    let types: Vec<String> = r
        .layers
        .iter()
        .map(|l| l.media_type().to_string())
        .collect();
    assert_eq!(types, [media::DOCKER_LAYER_GZIP]);
    Ok(())
}

#[tokio::test]
async fn layer_media_types() -> anyhow::Result<()> {
    let images = images();
    let busybox_diff = images.info(ti::BUSYBOX).expect("known").amd64().diff_ids[0].clone();
    for (name, want) in [
        (ti::ZSTD, vec![media::OCI_LAYER_ZSTD]),
        (ti::UNCOMPRESSED, vec![media::OCI_LAYER_TAR]),
    ] {
        let r = resolve(&config(), &images.reference(name)).await?;
        let types: Vec<String> = r
            .layers
            .iter()
            .map(|l| l.media_type().to_string())
            .collect();
        assert_eq!(types, want, "{name}");
        assert_eq!(r.diff_ids, std::slice::from_ref(&busybox_diff), "{name}");
    }
    let r = resolve(&config(), &images.reference(ti::MULTILAYER)).await?;
    assert_eq!(r.layers.len(), 3);
    assert_eq!(
        r.diff_ids,
        images.info(ti::MULTILAYER).expect("known").amd64().diff_ids
    );
    Ok(())
}

#[tokio::test]
async fn blobs_stream_and_verify() -> anyhow::Result<()> {
    let images = images();
    let reference = parse_reference(&images.reference(ti::MULTILAYER))?;
    let fetcher = Fetcher::new(&config(), &reference, None)?;
    let r = fetcher.resolve(&amd64()).await?;
    for layer in &r.layers {
        let (data, err) = drain(fetcher.blob(layer).await?).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(data.len() as u64, layer.size());
        assert_eq!(media::sha256_digest(&data), layer.digest().to_string());
    }
    // The config is a blob too.
    let (data, err) = drain(fetcher.blob(&r.config.descriptor).await?).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(data, r.config.bytes);
    // A fetcher that did not resolve can still fetch blobs; blobs are
    // independent of each other, and the fetcher is Send + Clone.
    let other = Fetcher::new(&config(), &reference, None)?;
    let layer = r.layers[1].clone();
    let handle = tokio::spawn(async move {
        let stream = other.clone().blob(&layer).await?;
        Ok::<_, Error>(drain(stream).await)
    });
    let (data, err) = handle.await??;
    assert!(err.is_none());
    assert_eq!(
        media::sha256_digest(&data),
        r.layers[1].digest().to_string()
    );
    Ok(())
}

#[tokio::test]
async fn tampered_blobs_are_data_loss() -> anyhow::Result<()> {
    // A private registry: tampering must not touch the shared one.
    let images = TestImages::start_default()?;
    let config = RegistryConfig {
        plain_http_hosts: vec![images.addr()],
        ..RegistryConfig::default()
    };
    let reference = parse_reference(&images.reference(ti::MULTILAYER))?;
    let fetcher = Fetcher::new(&config, &reference, None)?;
    let r = fetcher.resolve(&amd64()).await?;
    // Same size, different content: the stream ends with DataLoss.
    let layer = &r.layers[0];
    let digest = layer.digest().to_string();
    let path = images.registry.blob_data_path(&digest);
    let mut data = std::fs::read(&path)?;
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&path, &data)?;
    let (received, err) = drain(fetcher.blob(layer).await?).await;
    assert_eq!(received.len() as u64, layer.size());
    match err {
        Some(Error::DataLoss(msg)) => assert!(msg.contains(&digest), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A different size: refused before streaming (Content-Length).
    let layer = &r.layers[1];
    let digest = layer.digest().to_string();
    std::fs::write(images.registry.blob_data_path(&digest), b"short")?;
    match fetcher.blob(layer).await {
        Err(Error::DataLoss(msg)) => assert!(msg.contains(&digest), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A tampered config fails the resolve.
    let config_path = images.registry.blob_data_path(&r.image_id());
    let mut config_bytes = std::fs::read(&config_path)?;
    config_bytes[0] = b' ';
    std::fs::write(&config_path, &config_bytes)?;
    match fetcher.resolve(&amd64()).await {
        Err(Error::DataLoss(msg)) => assert!(msg.contains(&r.image_id()), "{msg}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unknown_tag_or_repository_is_not_found() -> anyhow::Result<()> {
    let images = images();
    for name in [
        "crius-test/busybox:no-such-tag",
        "crius-test/no-such-repo:latest",
    ] {
        let reference = images.reference(name);
        match resolve(&config(), &reference).await {
            Err(Error::NotFound { what }) => assert!(what.contains(&reference), "{what}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // A blob the registry does not have.
    let reference = parse_reference(&images.reference(ti::BUSYBOX))?;
    let fetcher = Fetcher::new(&config(), &reference, None)?;
    let missing = crius_registry::Descriptor::new(
        oci_spec::image::MediaType::ImageLayerGzip,
        3,
        oci_spec::image::Digest::try_from(format!("sha256:{}", "1".repeat(64)))?,
    );
    assert!(matches!(
        fetcher.blob(&missing).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn registry_down_is_unavailable() -> anyhow::Result<()> {
    let addr = format!("127.0.0.1:{}", dead_port());
    let config = RegistryConfig {
        plain_http_hosts: vec![addr.clone()],
        ..RegistryConfig::default()
    };
    match resolve(&config, &format!("{addr}/crius-test/busybox:latest")).await {
        Err(Error::Unavailable(msg)) => {
            assert_eq!(
                msg,
                format!("registry {addr} is not reachable: connection refused")
            );
        }
        other => panic!("{other:?}"),
    }
    // Same over https (the default for a non-loopback name is https; here a
    // loopback address configured in no list is plain http, so force https
    // with a hosts file).
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join(&addr))?;
    std::fs::write(
        dir.path().join(&addr).join("hosts.toml"),
        format!("server = \"https://{addr}\"\n"),
    )?;
    let config = RegistryConfig {
        hosts_dir: Some(dir.path().to_owned()),
        ..RegistryConfig::default()
    };
    match resolve(&config, &format!("{addr}/x:latest")).await {
        Err(Error::Unavailable(msg)) => assert!(msg.contains(&addr), "{msg}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn https_to_a_plain_http_registry_is_unavailable() -> anyhow::Result<()> {
    // TLS errors are Unavailable too, naming the registry.
    let addr = images().addr();
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join(&addr))?;
    std::fs::write(
        dir.path().join(&addr).join("hosts.toml"),
        format!("server = \"https://{addr}\"\n"),
    )?;
    let config = RegistryConfig {
        hosts_dir: Some(dir.path().to_owned()),
        ..RegistryConfig::default()
    };
    match resolve(&config, &images().reference(ti::BUSYBOX)).await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&addr), "{msg}");
            assert!(msg.contains("TLS handshake failed"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}
