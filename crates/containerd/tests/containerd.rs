//! crius-containerd against a real, private containerd (needs root, and the
//! Debian packages containerd and runc). Every test starts its own
//! containerd and uses its own namespace, so tests run in parallel.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use crius_containerd::{Containerd, ImageRecord, SnapshotKind, chain_id, chain_ids};
use crius_containerd::{Error, Kind};
use crius_testkit::registry::sha256_digest;
use futures::StreamExt;
use oci_spec::image::{Descriptor, Digest, MediaType};

const SNAPSHOTTER: &str = "overlayfs";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TEST_LEASE: &str = "test-lease";

/// A private containerd and a connection to it in namespace `ns`, under a
/// lease: containerd's garbage collector, which runs soon after any
/// deletion, removes content and snapshots that nothing references.
async fn start(ns: &str) -> Result<(crius_testkit::containerd::Containerd, Containerd)> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    crius_testkit::require_root()?;
    let daemon = crius_testkit::containerd::Containerd::start()?;
    let client = Containerd::connect(daemon.socket(), ns)
        .await
        .with_context(|| format!("connecting: {}", daemon.log()))?;
    client
        .lease_create(TEST_LEASE, Duration::from_secs(3600))
        .await?;
    Ok((daemon, client.with_lease(TEST_LEASE)))
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn descriptor(media_type: &str, data: &[u8]) -> Result<Descriptor> {
    let digest: Digest = sha256_digest(data).parse()?;
    Ok(Descriptor::new(
        MediaType::from(media_type),
        data.len() as u64,
        digest,
    ))
}

/// A gzip-compressed layer tar holding `files` (path, content) and its
/// diff id (the digest of the tar).
fn layer(files: &[(&str, &[u8])]) -> Result<(Vec<u8>, String)> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *content)?;
    }
    let tar = builder.into_inner()?;
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    Ok((gz.finish()?, diff_id))
}

/// Stores `layer` in the content store the way a pull does.
async fn store_layer(c: &Containerd, gz: &[u8], diff_id: &str) -> Result<Descriptor> {
    let desc = descriptor(GZIP_LAYER, gz)?;
    let digest = desc.digest().to_string();
    c.content_write_bytes(
        &format!("test-{digest}"),
        &digest,
        labels(&[("containerd.io/uncompressed", diff_id)]),
        Bytes::copy_from_slice(gz),
    )
    .await?;
    Ok(desc)
}

/// Snapshots whose key says they are extractions in progress.
async fn extraction_keys(c: &Containerd) -> Result<Vec<String>> {
    Ok(c.snapshot_list(SNAPSHOTTER)
        .await?
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n.starts_with("extract-"))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_create_list_delete() -> Result<()> {
    let (_daemon, c) = start("crius-test-leases").await?;
    c.lease_create("crius-pull-1", Duration::from_secs(600))
        .await?;
    c.lease_create("crius-pull-2", Duration::from_secs(600))
        .await?;
    c.lease_create("other-1", Duration::from_secs(600)).await?;
    match c
        .lease_create("crius-pull-1", Duration::from_secs(600))
        .await
    {
        Err(e) if e.kind() == Kind::AlreadyExists => {}
        other => bail!("second create of a lease: {other:?}"),
    }
    assert_eq!(
        c.lease_list_prefix("crius-pull-").await?,
        vec!["crius-pull-1".to_string(), "crius-pull-2".to_string()]
    );
    c.lease_delete("crius-pull-1").await?;
    c.lease_delete("crius-pull-1").await?;
    c.lease_delete("never-created").await?;
    assert_eq!(c.lease_list_prefix("crius-").await?, vec!["crius-pull-2"]);
    // Another namespace sees none of them.
    let other = Containerd::connect(c.address(), "crius-test-leases-other").await?;
    assert!(other.lease_list_prefix("").await?.is_empty());
    assert_eq!(c.lease(), Some(TEST_LEASE));
    assert_eq!(other.with_lease("x").lease(), Some("x"));
    Ok(())
}

/// Leaves a partial ingest under `reference`, the way a crashed writer
/// does: containerd's Write stream closed without a commit.
async fn leave_ingest(
    socket: &std::path::Path,
    ns: &str,
    reference: &str,
    data: &[u8],
) -> Result<()> {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{WriteAction, WriteContentRequest};
    let channel = containerd_client::connect(socket).await?;
    let msgs = vec![
        WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.to_string(),
            ..Default::default()
        },
        WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: reference.to_string(),
            data: data.to_vec(),
            ..Default::default()
        },
    ];
    let mut req = tonic::Request::new(futures::stream::iter(msgs));
    req.metadata_mut()
        .insert("containerd-namespace", ns.parse()?);
    let mut responses = ContentClient::new(channel).write(req).await?.into_inner();
    while responses.message().await?.is_some() {}
    Ok(())
}

/// A stream that fails the test if it is ever polled.
fn never_polled() -> impl futures::Stream<Item = crius_containerd::Result<Bytes>> + Send + 'static {
    futures::stream::once(async { Err(Error::Broken("the data stream was read".into())) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_leftover_ingests_and_shared_blobs() -> Result<()> {
    let ns = "crius-test-leftover";
    let (daemon, c) = start(ns).await?;
    let data = Bytes::from(vec![5u8; (1 << 20) + 17]);
    let digest = sha256_digest(&data);

    // A partial ingest (half the blob): restarted from 0.
    leave_ingest(daemon.socket(), ns, "crius-partial", &data[..1000]).await?;
    assert_eq!(c.content_list_statuses().await?, vec!["crius-partial"]);
    c.content_write_bytes("crius-partial", &digest, HashMap::new(), data.clone())
        .await?;
    assert_eq!(c.content_read(&digest, 4 << 20).await?, data);
    assert!(c.content_list_statuses().await?.is_empty());

    // A partial ingest of garbage is overwritten too.
    let other = Bytes::from(vec![6u8; 3000]);
    let other_digest = sha256_digest(&other);
    leave_ingest(daemon.socket(), ns, "crius-garbage", &[1u8; 5000]).await?;
    c.content_write_bytes(
        "crius-garbage",
        &other_digest,
        HashMap::new(),
        other.clone(),
    )
    .await?;
    assert_eq!(c.content_read(&other_digest, 4 << 20).await?, other);

    // A complete but uncommitted ingest: committed without reading the data.
    let third = Bytes::from(vec![7u8; 4000]);
    let third_digest = sha256_digest(&third);
    leave_ingest(daemon.socket(), ns, "crius-complete", &third).await?;
    c.content_write(
        "crius-complete",
        &third_digest,
        third.len() as u64,
        labels(&[("k", "v")]),
        never_polled(),
    )
    .await
    .context("complete ingest")?;
    let info = c.content_info(&third_digest).await?.context("no info")?;
    assert_eq!(info.labels, labels(&[("k", "v")]));
    assert!(c.content_list_statuses().await?.is_empty());

    // A blob another namespace holds ("shared" content): the same.
    let elsewhere = Containerd::connect(daemon.socket(), "crius-test-leftover-2").await?;
    elsewhere
        .lease_create(TEST_LEASE, Duration::from_secs(3600))
        .await?;
    let elsewhere = elsewhere.with_lease(TEST_LEASE);
    elsewhere
        .content_write(
            "crius-x",
            &digest,
            data.len() as u64,
            HashMap::new(),
            never_polled(),
        )
        .await
        .context("shared blob")?;
    assert_eq!(elsewhere.content_read(&digest, 4 << 20).await?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_collected() -> Result<()> {
    let (_daemon, c) = start("crius-test-expiry").await?;
    c.lease_create("crius-short", Duration::from_secs(1))
        .await?;
    let data = Bytes::from_static(b"only the lease holds me");
    let digest = sha256_digest(&data);
    c.with_lease("crius-short")
        .content_write_bytes("crius-leased", &digest, HashMap::new(), data)
        .await?;
    assert!(c.content_info(&digest).await?.is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The garbage collector runs after a deletion.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let trigger = Bytes::from_static(b"trigger");
        c.content_write_bytes(
            "crius-trigger",
            &sha256_digest(&trigger),
            HashMap::new(),
            trigger.clone(),
        )
        .await?;
        c.content_delete(&sha256_digest(&trigger)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if c.lease_list_prefix("crius-short").await?.is_empty()
            && c.content_info(&digest).await?.is_none()
        {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the expired lease or its content is still there"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_round_trip() -> Result<()> {
    let (_daemon, c) = start("crius-test-content").await?;
    let data = Bytes::from_static(b"{\"hello\":\"world\"}");
    let digest = sha256_digest(&data);
    assert!(c.content_info(&digest).await?.is_none());
    c.content_write_bytes(
        "crius-small",
        &digest,
        labels(&[("a", "1"), ("containerd.io/gc.ref.content.x", "sha256:00")]),
        data.clone(),
    )
    .await?;
    let info = c.content_info(&digest).await?.context("no info")?;
    assert_eq!(info.digest, digest);
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(
        info.labels,
        labels(&[("a", "1"), ("containerd.io/gc.ref.content.x", "sha256:00")])
    );
    assert_eq!(c.content_read(&digest, 1 << 20).await?, data);
    match c.content_read(&digest, 4).await {
        Err(e) if e.kind() == Kind::FailedPrecondition => {}
        other => bail!("read of a blob larger than allowed: {other:?}"),
    }
    // Merge: `a` changes, `b` is added, the GC label stays.
    c.content_update_labels(&digest, labels(&[("a", "2"), ("b", "x")]))
        .await?;
    c.content_update_labels(&digest, HashMap::new()).await?;
    let info = c.content_info(&digest).await?.context("no info")?;
    assert_eq!(
        info.labels,
        labels(&[
            ("a", "2"),
            ("b", "x"),
            ("containerd.io/gc.ref.content.x", "sha256:00")
        ])
    );
    let listed = c.content_list(&[]).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, digest);
    assert_eq!(c.content_list(&["labels.b==y".into()]).await?.len(), 0);
    assert_eq!(c.content_list(&["labels.b==x".into()]).await?.len(), 1);
    assert!(c.content_list_statuses().await?.is_empty());

    c.content_delete(&digest).await?;
    assert!(c.content_info(&digest).await?.is_none());
    c.content_delete(&digest).await?;
    match c.content_read(&digest, 1 << 20).await {
        Err(e) if e.kind() == Kind::NotFound => {}
        other => bail!("read of a deleted blob: {other:?}"),
    }
    c.content_abort("never-started").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_large_blob_in_chunks() -> Result<()> {
    let (_daemon, c) = start("crius-test-large").await?;
    // 3.5 MiB in uneven pieces: several Write messages and a commit with data.
    let data: Vec<u8> = (0..(7 << 19)).map(|i: u32| (i % 251) as u8).collect();
    let digest = sha256_digest(&data);
    let pieces: Vec<crius_containerd::Result<Bytes>> = data
        .chunks(300_000)
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    c.content_write(
        "crius-large",
        &digest,
        data.len() as u64,
        HashMap::new(),
        futures::stream::iter(pieces),
    )
    .await?;
    assert_eq!(c.content_read(&digest, 8 << 20).await?, data);
    // An empty blob works too.
    let empty = sha256_digest(b"");
    c.content_write_bytes("crius-empty", &empty, HashMap::new(), Bytes::new())
        .await?;
    assert_eq!(c.content_info(&empty).await?.context("no info")?.size, 0);
    assert!(c.content_list_statuses().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_wrong_digest_is_data_loss() -> Result<()> {
    let (_daemon, c) = start("crius-test-baddigest").await?;
    let data = Bytes::from_static(b"hello");
    let claimed = sha256_digest(b"world");
    match c
        .content_write_bytes("crius-bad", &claimed, HashMap::new(), data.clone())
        .await
    {
        Err(Error::Corrupt(msg)) => ensure!(msg.contains(&claimed), "{msg}"),
        other => bail!("write with a wrong digest: {other:?}"),
    }
    assert!(c.content_list_statuses().await?.is_empty());
    assert!(c.content_info(&claimed).await?.is_none());
    assert!(c.content_info(&sha256_digest(&data)).await?.is_none());

    // A wrong size, both ways, is DataLoss too.
    let digest = sha256_digest(&data);
    for declared in [4, 6] {
        match c
            .content_write(
                "crius-badsize",
                &digest,
                declared,
                HashMap::new(),
                futures::stream::iter([Ok(data.clone())]),
            )
            .await
        {
            Err(Error::Corrupt(msg)) => ensure!(msg.contains(&digest), "{msg}"),
            other => bail!("write with declared size {declared}: {other:?}"),
        }
    }
    assert!(c.content_list_statuses().await?.is_empty());
    assert!(c.content_info(&digest).await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_stream_error_aborts() -> Result<()> {
    let (_daemon, c) = start("crius-test-streamerr").await?;
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    let digest = sha256_digest(&vec![7u8; 5 << 20]);
    // Before failing, the stream records the ingests containerd has: the
    // data sent so far is there.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let items = futures::stream::iter(0..5).then({
        let c = c.clone();
        let seen = seen.clone();
        move |i| {
            let (c, seen, chunk) = (c.clone(), seen.clone(), chunk.clone());
            async move {
                if i < 3 {
                    return Ok(chunk);
                }
                if let Ok(refs) = c.content_list_statuses().await
                    && let Ok(mut seen) = seen.lock()
                {
                    *seen = refs;
                }
                Err(Error::Broken("registry went away".into()))
            }
        }
    });
    match c
        .content_write("crius-interrupted", &digest, 5 << 20, HashMap::new(), items)
        .await
    {
        Err(Error::Broken(msg)) => ensure!(msg.contains("registry went away"), "{msg}"),
        other => bail!("write of an interrupted stream: {other:?}"),
    }
    assert_eq!(
        *seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
        vec!["crius-interrupted".to_string()]
    );
    assert!(c.content_list_statuses().await?.is_empty());
    assert!(c.content_info(&digest).await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_write_twice_and_concurrently() -> Result<()> {
    let (_daemon, c) = start("crius-test-twice").await?;
    let data = Bytes::from(vec![42u8; 3 << 20]);
    let digest = sha256_digest(&data);
    c.content_write_bytes("crius-twice", &digest, labels(&[("a", "1")]), data.clone())
        .await?;
    // Present already: Ok, and the new labels are merged in.
    c.content_write_bytes("crius-twice", &digest, labels(&[("b", "2")]), data.clone())
        .await?;
    let info = c.content_info(&digest).await?.context("no info")?;
    assert_eq!(info.labels, labels(&[("a", "1"), ("b", "2")]));

    // Two writers of one new blob under one reference at once: one waits
    // for the other's lock, then finds the blob.
    let data = Bytes::from(vec![43u8; 9 << 20]);
    let digest = sha256_digest(&data);
    let slow = |c: Containerd, data: Bytes, digest: String| async move {
        let pieces: Vec<crius_containerd::Result<Bytes>> = data
            .chunks(1 << 20)
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let stream = futures::stream::iter(pieces).then(|p| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            p
        });
        c.content_write(
            "crius-shared-ref",
            &digest,
            data.len() as u64,
            HashMap::new(),
            stream,
        )
        .await
    };
    let (a, b) = tokio::join!(
        slow(c.clone(), data.clone(), digest.clone()),
        slow(c.clone(), data.clone(), digest.clone())
    );
    a?;
    b?;
    assert_eq!(c.content_read(&digest, 16 << 20).await?, data);
    assert!(c.content_list_statuses().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_put_get_list_delete() -> Result<()> {
    let (_daemon, c) = start("crius-test-images").await?;
    let manifest = Bytes::from_static(br#"{"schemaVersion":2}"#);
    let target = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest)?;
    c.content_write_bytes("m", target.digest().as_ref(), HashMap::new(), manifest)
        .await?;
    assert!(c.image_get("example.com/a:1").await?.is_none());
    c.image_put(ImageRecord {
        name: "example.com/a:1".into(),
        target: target.clone(),
        labels: labels(&[("io.crius.managed", "true"), ("old", "x")]),
        ..Default::default()
    })
    .await?;
    let got = c.image_get("example.com/a:1").await?.context("no image")?;
    assert_eq!(got.name, "example.com/a:1");
    assert_eq!(got.target.digest(), target.digest());
    assert_eq!(got.target.size(), target.size());
    assert_eq!(got.target.media_type(), target.media_type());
    assert!(got.created_at.is_some());

    // Put again: target and labels replaced.
    let other_manifest = Bytes::from_static(br#"{"schemaVersion":2,"x":1}"#);
    let other = descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        &other_manifest,
    )?;
    c.content_write_bytes(
        "m2",
        other.digest().as_ref(),
        HashMap::new(),
        other_manifest,
    )
    .await?;
    c.image_put(ImageRecord {
        name: "example.com/a:1".into(),
        target: other.clone(),
        labels: labels(&[("io.crius.managed", "true")]),
        ..Default::default()
    })
    .await?;
    c.image_put(ImageRecord {
        name: "example.com/b:1".into(),
        target: target.clone(),
        labels: HashMap::new(),
        ..Default::default()
    })
    .await?;
    let got = c.image_get("example.com/a:1").await?.context("no image")?;
    assert_eq!(got.target.digest(), other.digest());
    assert_eq!(got.labels, labels(&[("io.crius.managed", "true")]));

    let mut all: Vec<String> = c
        .image_list(&[])
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    all.sort();
    assert_eq!(all, vec!["example.com/a:1", "example.com/b:1"]);
    let managed = c
        .image_list(&["labels.\"io.crius.managed\"==true".into()])
        .await?;
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].name, "example.com/a:1");

    c.image_delete("example.com/a:1", false).await?;
    c.image_delete("example.com/a:1", true).await?;
    assert!(c.image_get("example.com/a:1").await?.is_none());
    assert_eq!(c.image_list(&[]).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_layers_into_snapshots() -> Result<()> {
    let (_daemon, c) = start("crius-test-unpack").await?;
    let (gz0, diff0) = layer(&[("hello.txt", b"hello\n"), ("etc/x", b"x")])?;
    let (gz1, diff1) = layer(&[("world.txt", b"world\n")])?;
    let l0 = store_layer(&c, &gz0, &diff0).await?;
    let l1 = store_layer(&c, &gz1, &diff1).await?;
    let diff_ids = vec![diff0.clone(), diff1.clone()];
    let chains = chain_ids(&diff_ids);

    let top = c
        .unpack(SNAPSHOTTER, &[l0.clone(), l1.clone()], &diff_ids)
        .await?;
    assert_eq!(top, chain_id(&diff_ids));
    assert_eq!(chains[0], diff0);
    let info = c
        .snapshot_stat(SNAPSHOTTER, &top)
        .await?
        .context("no top snapshot")?;
    assert_eq!(info.kind, SnapshotKind::Committed);
    assert_eq!(info.parent.as_deref(), Some(chains[0].as_str()));
    assert_eq!(
        info.labels.get("containerd.io/snapshot.ref"),
        Some(&top),
        "{info:?}"
    );
    let base = c
        .snapshot_stat(SNAPSHOTTER, &chains[0])
        .await?
        .context("no base")?;
    assert_eq!(base.kind, SnapshotKind::Committed);
    assert_eq!(base.parent, None);
    let before = c.snapshot_list(SNAPSHOTTER).await?.len();
    assert_eq!(before, 2);
    assert!(extraction_keys(&c).await?.is_empty());

    // Again: nothing to do.
    let again = c
        .unpack(SNAPSHOTTER, &[l0.clone(), l1.clone()], &diff_ids)
        .await?;
    assert_eq!(again, top);
    assert_eq!(c.snapshot_list(SNAPSHOTTER).await?.len(), before);

    // A container's root file system on top: overlay mounts.
    let mounts = c
        .snapshot_prepare(SNAPSHOTTER, "ctr-1", Some(&top), HashMap::new())
        .await?;
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].r#type, "overlay", "{mounts:?}");
    ensure!(
        mounts[0].options.iter().any(|o| o.starts_with("lowerdir=")),
        "{mounts:?}"
    );
    assert_eq!(c.snapshot_mounts(SNAPSHOTTER, "ctr-1").await?, mounts);
    match c
        .snapshot_prepare(SNAPSHOTTER, "ctr-1", Some(&top), HashMap::new())
        .await
    {
        Err(e) if e.kind() == Kind::AlreadyExists => {}
        other => bail!("second prepare of one key: {other:?}"),
    }
    let active = c
        .snapshot_stat(SNAPSHOTTER, "ctr-1")
        .await?
        .context("no ctr-1")?;
    assert_eq!(active.kind, SnapshotKind::Active);
    // The files of both layers are in the lower directories.
    let lowers: Vec<String> = mounts[0]
        .options
        .iter()
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .flat_map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(lowers.len(), 2, "{lowers:?}");
    ensure!(
        lowers
            .iter()
            .any(|l| std::fs::read(format!("{l}/world.txt")).ok().as_deref() == Some(b"world\n")),
        "world.txt not in {lowers:?}"
    );
    ensure!(
        lowers
            .iter()
            .any(|l| std::fs::read(format!("{l}/hello.txt")).ok().as_deref() == Some(b"hello\n")),
        "hello.txt not in {lowers:?}"
    );

    // A view is read-only, a committed snapshot with children stays.
    let view = c
        .snapshot_view(SNAPSHOTTER, "view-1", Some(&top), HashMap::new())
        .await?;
    ensure!(!view.is_empty());
    assert_eq!(
        c.snapshot_stat(SNAPSHOTTER, "view-1")
            .await?
            .map(|i| i.kind),
        Some(SnapshotKind::View)
    );
    match c.snapshot_remove(SNAPSHOTTER, &top).await {
        Err(e) if e.kind() == Kind::FailedPrecondition => {}
        other => bail!("remove of a snapshot with children: {other:?}"),
    }
    c.snapshot_remove(SNAPSHOTTER, "view-1").await?;
    c.snapshot_remove(SNAPSHOTTER, "ctr-1").await?;
    c.snapshot_remove(SNAPSHOTTER, "ctr-1").await?;
    assert!(c.snapshot_stat(SNAPSHOTTER, "ctr-1").await?.is_none());

    // Commit a container's changes under a new name; the name is taken after.
    c.snapshot_prepare(SNAPSHOTTER, "ctr-2", Some(&top), HashMap::new())
        .await?;
    c.snapshot_commit(SNAPSHOTTER, "committed-2", "ctr-2", labels(&[("k", "v")]))
        .await?;
    let committed = c
        .snapshot_stat(SNAPSHOTTER, "committed-2")
        .await?
        .context("no committed-2")?;
    assert_eq!(committed.kind, SnapshotKind::Committed);
    assert_eq!(committed.labels, labels(&[("k", "v")]));
    c.snapshot_prepare(SNAPSHOTTER, "ctr-3", Some(&top), HashMap::new())
        .await?;
    match c
        .snapshot_commit(SNAPSHOTTER, "committed-2", "ctr-3", HashMap::new())
        .await
    {
        Err(e) if e.kind() == Kind::AlreadyExists => {}
        other => bail!("commit to a taken name: {other:?}"),
    }
    let usage = c.snapshots_usage(SNAPSHOTTER).await?;
    ensure!(usage.inodes > 0, "{usage:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unpacks_of_one_image() -> Result<()> {
    let (_daemon, c) = start("crius-test-unpack-race").await?;
    let big: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..3 {
        let name = format!("f{i}");
        let (gz, diff) = layer(&[(name.as_str(), &big[..(1 << 20) * (i + 1)])])?;
        layers.push(store_layer(&c, &gz, &diff).await?);
        diff_ids.push(diff);
    }
    // Two connections (no shared in-process locks: they race in
    // containerd), two unpacks through each.
    let second = Containerd::connect(c.address(), c.namespace())
        .await?
        .with_lease(TEST_LEASE);
    let mut tasks = Vec::new();
    for conn in [&c, &second, &c, &second] {
        let conn = conn.clone();
        let layers = layers.clone();
        let diff_ids = diff_ids.clone();
        tasks.push(tokio::spawn(async move {
            conn.unpack(SNAPSHOTTER, &layers, &diff_ids).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await??, chain_id(&diff_ids));
    }
    let names: Vec<String> = c
        .snapshot_list(SNAPSHOTTER)
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    let mut expected = chain_ids(&diff_ids);
    expected.sort();
    let mut names_sorted = names.clone();
    names_sorted.sort();
    assert_eq!(names_sorted, expected, "{names:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_with_wrong_diff_id_is_data_loss() -> Result<()> {
    let (_daemon, c) = start("crius-test-unpack-bad").await?;
    let (gz, diff) = layer(&[("a", b"a")])?;
    let l0 = store_layer(&c, &gz, &diff).await?;
    let wrong = sha256_digest(b"not the tar");
    match c
        .unpack(
            SNAPSHOTTER,
            std::slice::from_ref(&l0),
            std::slice::from_ref(&wrong),
        )
        .await
    {
        Err(Error::Corrupt(msg)) => {
            ensure!(msg.contains(&wrong) && msg.contains(&diff), "{msg}")
        }
        other => bail!("unpack with a wrong diff id: {other:?}"),
    }
    assert!(c.snapshot_list(SNAPSHOTTER).await?.is_empty());
    assert!(c.snapshot_stat(SNAPSHOTTER, &wrong).await?.is_none());

    // A wrong second layer leaves the good first one, and nothing else.
    let (gz1, diff1) = layer(&[("b", b"b")])?;
    let l1 = store_layer(&c, &gz1, &diff1).await?;
    match c
        .unpack(
            SNAPSHOTTER,
            &[l0.clone(), l1.clone()],
            &[diff.clone(), wrong.clone()],
        )
        .await
    {
        Err(e) if e.kind() == Kind::DataLoss => {}
        other => bail!("unpack with a wrong second diff id: {other:?}"),
    }
    let names: Vec<String> = c
        .snapshot_list(SNAPSHOTTER)
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec![diff.clone()]);
    assert!(extraction_keys(&c).await?.is_empty());

    // Mismatched lengths and malformed diff ids are refused up front.
    match c.unpack(SNAPSHOTTER, std::slice::from_ref(&l0), &[]).await {
        Err(e) if e.kind() == Kind::InvalidArgument => {}
        other => bail!("unpack with no diff ids: {other:?}"),
    }
    match c.unpack(SNAPSHOTTER, &[l0], &["sha256:abc".into()]).await {
        Err(e) if e.kind() == Kind::InvalidArgument => {}
        other => bail!("unpack with a malformed diff id: {other:?}"),
    }
    // A layer missing from the content store: an error, nothing left.
    let (gz2, diff2) = layer(&[("c", b"c")])?;
    let missing = descriptor(GZIP_LAYER, &gz2)?;
    let err = c
        .unpack(SNAPSHOTTER, &[missing], &[diff2])
        .await
        .err()
        .context("unpack of a layer that is not in the content store")?;
    tracing::debug!("missing layer: {err}");
    assert!(extraction_keys(&c).await?.is_empty());
    Ok(())
}
