//! Mirrors configured through a hosts directory.

use std::path::Path;

use crius_core::Error;
use crius_registry::{Fetcher, RegistryConfig, media, parse_reference};
use crius_testkit::images as ti;

use crate::common::{FakeServer, Reply, amd64, dead_port, drain, images, proxy};

fn hosts_dir(registry: &str, toml: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join(registry))?;
    std::fs::write(dir.path().join(registry).join("hosts.toml"), toml)?;
    Ok(dir)
}

fn config(dir: &Path) -> RegistryConfig {
    RegistryConfig {
        hosts_dir: Some(dir.to_owned()),
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn a_mirror_serves_another_registry() -> anyhow::Result<()> {
    let images = images();
    let dir = hosts_dir(
        "registry.example.test",
        &format!(
            "server = \"https://registry.example.test\"\n\
             [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            images.addr()
        ),
    )?;
    let name = "registry.example.test/crius-test/busybox:latest";
    let reference = parse_reference(name)?;
    let fetcher = Fetcher::new(&config(dir.path()), &reference, None)?;
    let r = fetcher.resolve(&amd64()).await?;
    // The image keeps its own name.
    assert_eq!(r.name, name);
    assert_eq!(
        r.repo_digest(),
        format!(
            "registry.example.test/crius-test/busybox@{}",
            images.manifest_digest(ti::BUSYBOX)
        )
    );
    assert_eq!(r.top.digest(), images.manifest_digest(ti::BUSYBOX));
    assert_eq!(r.image_id(), images.image_id(ti::BUSYBOX));
    let (data, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        media::sha256_digest(&data),
        r.layers[0].digest().to_string()
    );
    // The mirror was asked with ?ns= naming the original registry.
    let log = std::fs::read_to_string(images.registry.log_path())?;
    assert!(
        log.contains("/v2/crius-test/busybox/manifests/latest?ns=registry.example.test"),
        "the registry log shows no ?ns= request"
    );
    assert!(log.contains(&format!(
        "/v2/crius-test/busybox/blobs/{}?ns=registry.example.test",
        r.layers[0].digest()
    )));
    Ok(())
}

#[tokio::test]
async fn hosts_fall_back_in_order() -> anyhow::Result<()> {
    let images = images();
    // A mirror that is down, a mirror that has nothing (404), then the
    // server that has the image.
    let empty = FakeServer::start(|_| Reply::status(404)).await;
    let dir = hosts_dir(
        "registry.example.test",
        &format!(
            "server = \"http://{}\"\n\
             [host.\"http://127.0.0.1:{}\"]\n\
             [host.\"http://{}\"]\n",
            images.addr(),
            dead_port(),
            empty.addr
        ),
    )?;
    let name = "registry.example.test/crius-test/distinct-a:latest";
    let reference = parse_reference(name)?;
    let fetcher = Fetcher::new(&config(dir.path()), &reference, None)?;
    let r = fetcher.resolve(&amd64()).await?;
    assert_eq!(r.image_id(), images.image_id(ti::DISTINCT_A));
    let reqs = empty.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].target,
        "/v2/crius-test/distinct-a/manifests/latest?ns=registry.example.test"
    );
    assert_eq!(
        reqs[0].header("accept").map(|a| a.split(", ").count()),
        Some(4),
        "all four manifest types are accepted"
    );
    // Blobs come from the host that resolved: the empty mirror is not asked.
    let (_, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(empty.requests().len(), 1);
    // When every host fails, the last host's error is the answer.
    let dir = hosts_dir(
        "registry.example.test",
        &format!(
            "server = \"http://{}\"\n[host.\"http://127.0.0.1:{}\"]\n",
            empty.addr,
            dead_port()
        ),
    )?;
    match Fetcher::new(&config(dir.path()), &reference, None)?
        .resolve(&amd64())
        .await
    {
        Err(Error::NotFound { what }) => assert!(what.contains(name), "{what}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn capabilities_choose_the_hosts() -> anyhow::Result<()> {
    let images = images();
    // The only good host may pull but not resolve; the server is down.
    let proxied = images.addr();
    let pull_only = FakeServer::start(move |req| proxy(&proxied, req)).await;
    let down = dead_port();
    let dir = hosts_dir(
        "registry.example.test",
        &format!(
            "server = \"http://127.0.0.1:{down}\"\n\
             [host.\"http://{}\"]\n  capabilities = [\"pull\"]\n",
            pull_only.addr
        ),
    )?;
    let config = config(dir.path());
    // By tag: only the server may resolve, and it is down.
    let by_tag = parse_reference("registry.example.test/crius-test/busybox:latest")?;
    match Fetcher::new(&config, &by_tag, None)?
        .resolve(&amd64())
        .await
    {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&format!("127.0.0.1:{down}")), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    assert!(pull_only.requests().is_empty());
    // By digest: the pull-only mirror serves it.
    let by_digest = parse_reference(&format!(
        "registry.example.test/crius-test/busybox@{}",
        images.manifest_digest(ti::BUSYBOX)
    ))?;
    let fetcher = Fetcher::new(&config, &by_digest, None)?;
    let r = fetcher.resolve(&amd64()).await?;
    assert_eq!(r.image_id(), images.image_id(ti::BUSYBOX));
    let (_, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");
    assert!(
        pull_only
            .requests()
            .iter()
            .all(|r| r.target.ends_with("?ns=registry.example.test"))
    );
    // Blobs of a tag reference that was not resolved come from pull hosts in
    // order: the mirror first.
    let fetcher = Fetcher::new(&config, &by_tag, None)?;
    let before = pull_only.requests().len();
    let (_, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pull_only.requests().len(), before + 1);
    Ok(())
}

#[tokio::test]
async fn mirror_headers_are_sent() -> anyhow::Result<()> {
    let images = images();
    let proxied = images.addr();
    let mirror = FakeServer::start(move |req| proxy(&proxied, req)).await;
    let dir = hosts_dir(
        "_default",
        &format!(
            "[host.\"http://{}\"]\n  [host.\"http://{}\".header]\n    x-mirror-token = \"abc\"\n",
            mirror.addr, mirror.addr
        ),
    )?;
    // `_default` applies to any registry without its own directory.
    let r = parse_reference("quay.example.test/crius-test/busybox:stable")?;
    let resolved = Fetcher::new(&config(dir.path()), &r, None)?
        .resolve(&amd64())
        .await?;
    assert_eq!(resolved.image_id(), images.image_id(ti::BUSYBOX));
    let reqs = mirror.requests();
    assert!(!reqs.is_empty());
    for req in reqs {
        assert_eq!(req.header("x-mirror-token"), Some("abc"));
        assert!(
            req.target.ends_with("?ns=quay.example.test"),
            "{}",
            req.target
        );
    }
    Ok(())
}
