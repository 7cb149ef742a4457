//! What a well-behaved registry never does: stalls, lies about sizes and
//! digests, refused media types, server errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crius_core::Error;
use crius_registry::{Fetcher, RegistryConfig, media, parse_reference};
use serde_json::json;

use crate::common::{FakeServer, Reply, amd64, drain, resolve};

/// A one-layer image served by a fake registry, with overrides by path.
struct FakeImage {
    layer: Vec<u8>,
    layer_digest: String,
    config: Vec<u8>,
    config_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

impl FakeImage {
    fn new(layer_media_type: &str) -> FakeImage {
        let layer = b"not really a tarball, but bytes with a digest".repeat(100);
        let layer_digest = media::sha256_digest(&layer);
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        })
        .to_string()
        .into_bytes();
        let config_digest = media::sha256_digest(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_media_type, "digest": layer_digest, "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = media::sha256_digest(&manifest);
        FakeImage {
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }

    /// Serves the image at `/v2/fake/app/…`; `overrides` answer first.
    async fn serve(self: &Arc<Self>, overrides: HashMap<String, Reply>) -> FakeServer {
        let image = self.clone();
        FakeServer::start(move |req| {
            if let Some(reply) = overrides.get(req.path()) {
                return reply.clone();
            }
            let path = req.path();
            if path == "/v2/fake/app/manifests/latest"
                || path == format!("/v2/fake/app/manifests/{}", image.manifest_digest)
            {
                return Reply::ok(media::OCI_MANIFEST, image.manifest.clone())
                    .header("Docker-Content-Digest", &image.manifest_digest);
            }
            if path == format!("/v2/fake/app/blobs/{}", image.config_digest) {
                return Reply::ok("application/octet-stream", image.config.clone());
            }
            if path == format!("/v2/fake/app/blobs/{}", image.layer_digest) {
                return Reply::ok("application/octet-stream", image.layer.clone());
            }
            Reply::status(404)
        })
        .await
    }

    fn layer_path(&self) -> String {
        format!("/v2/fake/app/blobs/{}", self.layer_digest)
    }
}

fn fast_config() -> RegistryConfig {
    RegistryConfig {
        progress_timeout: Duration::from_millis(500),
        ..RegistryConfig::default()
    }
}

async fn fetcher_for(server: &FakeServer, config: &RegistryConfig) -> anyhow::Result<Fetcher> {
    let reference = parse_reference(&format!("{}/fake/app:latest", server.addr))?;
    Ok(Fetcher::new(config, &reference, None)?)
}

#[tokio::test]
async fn the_fake_image_resolves() -> anyhow::Result<()> {
    let image = Arc::new(FakeImage::new(media::OCI_LAYER_GZIP));
    let server = image.serve(HashMap::new()).await;
    let fetcher = fetcher_for(&server, &fast_config()).await?;
    let r = fetcher.resolve(&amd64()).await?;
    assert_eq!(r.top.digest(), image.manifest_digest);
    assert_eq!(r.image_id(), image.config_digest);
    let (data, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(data, image.layer);
    Ok(())
}

#[tokio::test]
async fn a_stalled_blob_is_deadline_exceeded() -> anyhow::Result<()> {
    let image = Arc::new(FakeImage::new(media::OCI_LAYER_GZIP));
    let stall = Reply::Stall {
        headers: vec![("Content-Length".into(), image.layer.len().to_string())],
        prefix: image.layer[..100].to_vec(),
    };
    let server = image
        .serve(HashMap::from([(image.layer_path(), stall)]))
        .await;
    let fetcher = fetcher_for(&server, &fast_config()).await?;
    let r = fetcher.resolve(&amd64()).await?;
    let started = Instant::now();
    let (data, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert_eq!(data.len(), 100);
    match err {
        Some(Error::DeadlineExceeded(msg)) => {
            assert!(msg.contains(&image.layer_digest), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // A registry that never answers a manifest request.
    let silent = FakeServer::start(|_| Reply::Stall {
        headers: vec![],
        prefix: vec![],
    })
    .await;
    let started = Instant::now();
    match resolve(&fast_config(), &format!("{}/fake/app:latest", silent.addr)).await {
        Err(Error::DeadlineExceeded(msg)) => assert!(msg.contains(&silent.addr), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn blob_sizes_are_enforced() -> anyhow::Result<()> {
    let image = Arc::new(FakeImage::new(media::OCI_LAYER_GZIP));
    // Without a Content-Length: more bytes than declared.
    let mut longer = image.layer.clone();
    longer.extend_from_slice(b"extra");
    let server = image
        .serve(HashMap::from([(
            image.layer_path(),
            Reply::ok("application/octet-stream", longer).close_delimited(),
        )]))
        .await;
    let fetcher = fetcher_for(&server, &fast_config()).await?;
    let r = fetcher.resolve(&amd64()).await?;
    let (_, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    match err {
        Some(Error::DataLoss(msg)) => {
            assert!(msg.contains(&image.layer_digest), "{msg}");
            assert!(msg.contains("more than"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Fewer bytes than declared.
    let server = image
        .serve(HashMap::from([(
            image.layer_path(),
            Reply::ok("application/octet-stream", image.layer[..10].to_vec()).close_delimited(),
        )]))
        .await;
    let fetcher = fetcher_for(&server, &fast_config()).await?;
    let r = fetcher.resolve(&amd64()).await?;
    let (data, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert_eq!(data.len(), 10);
    match err {
        Some(Error::DataLoss(msg)) => assert!(msg.contains(&image.layer_digest), "{msg}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn manifest_digests_are_verified() -> anyhow::Result<()> {
    let image = Arc::new(FakeImage::new(media::OCI_LAYER_GZIP));
    // The registry claims another digest for the tag.
    let other = format!("sha256:{}", "e".repeat(64));
    let server = image
        .serve(HashMap::from([(
            "/v2/fake/app/manifests/latest".to_owned(),
            Reply::ok(media::OCI_MANIFEST, image.manifest.clone())
                .header("Docker-Content-Digest", &other),
        )]))
        .await;
    let fetcher = fetcher_for(&server, &fast_config()).await?;
    assert!(matches!(
        fetcher.resolve(&amd64()).await,
        Err(Error::DataLoss(_))
    ));
    // By digest, content that does not match the reference.
    let wrong_path = format!("/v2/fake/app/manifests/{other}");
    let server = image
        .serve(HashMap::from([(
            wrong_path,
            Reply::ok(media::OCI_MANIFEST, image.manifest.clone()),
        )]))
        .await;
    let reference = format!("{}/fake/app@{other}", server.addr);
    match resolve(&fast_config(), &reference).await {
        Err(Error::DataLoss(msg)) => assert!(msg.contains(&other), "{msg}"),
        r => panic!("{r:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn refused_content() -> anyhow::Result<()> {
    // Foreign layers.
    let image = Arc::new(FakeImage::new(
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ));
    let server = image.serve(HashMap::new()).await;
    match fetcher_for(&server, &fast_config())
        .await?
        .resolve(&amd64())
        .await
    {
        Err(Error::FailedPrecondition(msg)) => assert!(msg.contains("foreign"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let image = Arc::new(FakeImage::new(media::OCI_LAYER_GZIP));
    let manifest_path = "/v2/fake/app/manifests/latest".to_owned();
    let cases = [
        (
            "schema 1",
            Reply::ok(
                media::DOCKER_MANIFEST_V1_SIGNED,
                json!({"schemaVersion": 1, "name": "fake/app", "fsLayers": []}).to_string(),
            ),
        ),
        (
            "unsupported manifest media type",
            Reply::ok(
                "application/vnd.example.thing+json",
                json!({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"})
                    .to_string(),
            ),
        ),
        (
            "more than the limit",
            Reply::ok(media::OCI_MANIFEST, Vec::new())
                .header("Content-Length", &(5 << 20).to_string()),
        ),
        (
            "more than the limit",
            Reply::ok(media::OCI_MANIFEST, vec![b' '; (4 << 20) + 1]).close_delimited(),
        ),
        ("not JSON", Reply::ok(media::OCI_MANIFEST, "<html>")),
    ];
    for (want, reply) in cases {
        let server = image
            .serve(HashMap::from([(manifest_path.clone(), reply)]))
            .await;
        match fetcher_for(&server, &fast_config())
            .await?
            .resolve(&amd64())
            .await
        {
            Err(Error::FailedPrecondition(msg)) => assert!(msg.contains(want), "{want}: {msg}"),
            other => panic!("{want}: {other:?}"),
        }
    }
    // A config that is not a container image's.
    let helm = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": image.config_digest, "size": image.config.len()},
        "layers": [],
    })
    .to_string();
    let server = image
        .serve(HashMap::from([(
            manifest_path.clone(),
            Reply::ok(media::OCI_MANIFEST, helm),
        )]))
        .await;
    match fetcher_for(&server, &fast_config())
        .await?
        .resolve(&amd64())
        .await
    {
        Err(Error::FailedPrecondition(msg)) => {
            assert!(msg.contains("not a container image"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn server_errors_are_unavailable() -> anyhow::Result<()> {
    for status in [500, 502, 503, 429] {
        let server = FakeServer::start(move |_| {
            Reply::status(status)
                .body(r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#)
        })
        .await;
        match resolve(&fast_config(), &format!("{}/fake/app:latest", server.addr)).await {
            Err(Error::Unavailable(msg)) => {
                assert!(msg.contains(&server.addr), "{msg}");
                assert!(msg.contains(&status.to_string()), "{msg}");
                assert!(msg.contains("try later"), "{msg}");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    Ok(())
}
