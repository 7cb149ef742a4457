//! Test images built from `busybox-static`, without docker.
//!
//! The images are built in memory (deterministic tar layers: sorted entries,
//! fixed mtime, no host uid/gid; gzip/zstd with fixed settings; JSON from
//! structs, so field order is fixed), pushed to a [`Registry`] over its HTTP
//! API, and can be exported as an OCI image layout tar
//! ([`write_oci_layout_tar`]). The same busybox binary always gives the same
//! digests.
//!
//! [`TestImages::start`] builds everything once into a registry storage
//! directory under a cache root shared by every test binary, then serves a
//! private copy of it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::registry::{Registry, sha256_digest};

/// Bump when anything that changes the built images changes: the cache is
/// rebuilt when its stamp differs.
pub const BUILDER_VERSION: u32 = 1;

/// The static busybox copied into the images.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";
/// The Debian package that ships a static [`BUSYBOX_BINARY`].
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// `crius-test/busybox:latest`: the busybox image (OCI, gzip layer).
pub const BUSYBOX: &str = "crius-test/busybox:latest";
/// Same manifest as [`BUSYBOX`] (an image with several tags).
pub const BUSYBOX_1_0: &str = "crius-test/busybox:1.0";
/// Same manifest as [`BUSYBOX`] (an image with several tags).
pub const BUSYBOX_STABLE: &str = "crius-test/busybox:stable";
/// busybox with `USER 1234` (alice's uid, by number).
pub const USER_NUMERIC: &str = "crius-test/user-numeric:latest";
/// busybox with `USER alice` (uid 1234, gid 1234, member of staff (50)).
pub const USER_NAMED: &str = "crius-test/user-named:latest";
/// busybox with `USER 1234:50`.
pub const USER_UIDGID: &str = "crius-test/user-uidgid:latest";
/// busybox plus a layer with `/marker` = [`DISTINCT_A_MARKER`].
pub const DISTINCT_A: &str = "crius-test/distinct-a:latest";
/// busybox plus a layer with `/marker` = [`DISTINCT_B_MARKER`].
pub const DISTINCT_B: &str = "crius-test/distinct-b:latest";
/// busybox plus two layers with the files of [`MULTILAYER_FILES`].
pub const MULTILAYER: &str = "crius-test/multilayer:latest";
/// An OCI index: linux/amd64 (busybox) and linux/arm64/v8 (one layer with
/// `/arch` = [`ARM64_ARCH_CONTENT`]).
pub const MULTIARCH: &str = "crius-test/multiarch:latest";
/// busybox with its layer uncompressed (`application/vnd.oci.image.layer.v1.tar`).
pub const UNCOMPRESSED: &str = "crius-test/uncompressed:latest";
/// busybox with a zstd layer (`application/vnd.oci.image.layer.v1.tar+zstd`).
pub const ZSTD: &str = "crius-test/zstd:latest";
/// busybox with Docker schema 2 media types.
pub const DOCKER_SCHEMA2: &str = "crius-test/docker-schema2:latest";
/// Busybox with `VOLUME ["/data", "/scratch"]`: `/data` holds
/// [`VOLUME_SEED`] (`/data/seed`, and a link `/data/link` to it), owned by
/// 1234:1234 with mode 0750; `/scratch` is not in the image.
pub const VOLUME: &str = "crius-test/volume:latest";
/// The content of `/data/seed` in [`VOLUME`].
pub const VOLUME_SEED: &str = "seeded\n";

/// Every `repo:tag` that [`TestImages::start`] serves.
pub const ALL_IMAGES: &[&str] = &[
    BUSYBOX,
    BUSYBOX_1_0,
    BUSYBOX_STABLE,
    USER_NUMERIC,
    USER_NAMED,
    USER_UIDGID,
    DISTINCT_A,
    DISTINCT_B,
    MULTILAYER,
    MULTIARCH,
    UNCOMPRESSED,
    ZSTD,
    DOCKER_SCHEMA2,
    VOLUME,
];

/// The repositories and their tags, in push order.
const CATALOG: &[(&str, &[&str])] = &[
    ("crius-test/busybox", &["latest", "1.0", "stable"]),
    ("crius-test/user-numeric", &["latest"]),
    ("crius-test/user-named", &["latest"]),
    ("crius-test/user-uidgid", &["latest"]),
    ("crius-test/distinct-a", &["latest"]),
    ("crius-test/distinct-b", &["latest"]),
    ("crius-test/multilayer", &["latest"]),
    ("crius-test/multiarch", &["latest"]),
    ("crius-test/uncompressed", &["latest"]),
    ("crius-test/zstd", &["latest"]),
    ("crius-test/docker-schema2", &["latest"]),
    ("crius-test/volume", &["latest"]),
];

/// The applets linked to `/bin/busybox` in the busybox rootfs.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "id", "env", "ps", "ping", "wget", "hostname", "true",
    "false", "touch", "mkdir", "ip", "nc", "httpd", "top", "grep", "head", "dd", "mount", "stat",
    "tail", "test", "wc", "yes", "kill", "date",
];

/// The `PATH` of every image config.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The `Cmd` of every image config.
pub const DEFAULT_CMD: &[&str] = &["/bin/sh"];
/// Label set on every image config to the image's repository, so that no two
/// repositories share a config (an image id).
pub const IMAGE_LABEL: &str = "io.crius.test.image";

/// alice's uid in `/etc/passwd`.
pub const ALICE_UID: u32 = 1234;
/// alice's primary gid in `/etc/passwd` (group `alice`).
pub const ALICE_GID: u32 = 1234;
/// gid of group `staff`, which lists alice as a member.
pub const STAFF_GID: u32 = 50;

/// `/etc/passwd` of the busybox rootfs.
pub const ETC_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
alice:x:1234:1234:alice:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
/// `/etc/group` of the busybox rootfs.
pub const ETC_GROUP: &str = "root:x:0:
staff:x:50:alice
alice:x:1234:
nobody:x:65534:
";

/// Content of `/marker` in [`DISTINCT_A`].
pub const DISTINCT_A_MARKER: &str = "a\n";
/// Content of `/marker` in [`DISTINCT_B`].
pub const DISTINCT_B_MARKER: &str = "b\n";
/// Files added by the second and third layers of [`MULTILAYER`].
pub const MULTILAYER_FILES: &[(&str, &str)] =
    &[("/data/layer1", "layer 1\n"), ("/data/layer2", "layer 2\n")];
/// Content of `/arch` in the linux/arm64 image of [`MULTIARCH`].
pub const ARM64_ARCH_CONTENT: &str = "arm64\n";

/// mtime of every tar entry (2024-01-01T00:00:00Z).
const FIXED_MTIME: u64 = 1_704_067_200;
/// `created` of every image config and history entry.
const CREATED: &str = "2024-01-01T00:00:00Z";
/// The OCI layout annotation naming an image.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Media types used by the test images.
pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

// ---------------------------------------------------------------------------
// Public data

/// A blob (manifest, index, config or layer) with its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&data),
            data,
        }
    }

    /// An OCI descriptor of this blob.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.data.len() as u64,
            platform: None,
            annotations: None,
        }
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// One platform's image of a test image (the only one unless it is an index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformImage {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Digest of this platform's image manifest.
    pub manifest_digest: String,
    /// Digest of its config (the image id).
    pub image_id: String,
    /// Layer digests as stored (compressed).
    pub layers: Vec<String>,
    /// Digests of the uncompressed layers.
    pub diff_ids: Vec<String>,
}

/// What tests need to know about a pushed test image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `crius-test/...`, relative to the registry.
    pub repo: String,
    pub tags: Vec<String>,
    /// Digest of what the tags point at (a manifest, or an index for
    /// [`MULTIARCH`]): the repo digest.
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub manifest_size: u64,
    /// Config digest of the linux/amd64 image: the image id.
    pub image_id: String,
    /// `USER` of the config, if any.
    pub user: Option<String>,
    /// The platform images (one, or two for [`MULTIARCH`]; amd64 first).
    pub platforms: Vec<PlatformImage>,
}

impl ImageInfo {
    /// The linux/amd64 image.
    pub fn amd64(&self) -> &PlatformImage {
        self.platforms
            .iter()
            .find(|p| p.architecture == "amd64")
            .or(self.platforms.first())
            .expect("every test image has a platform image")
    }
}

/// A test image built in memory.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub info: ImageInfo,
    /// What the tags point at: a manifest, or an index.
    pub top: Blob,
    /// The platform manifests of an index (empty for a plain manifest).
    pub children: Vec<Blob>,
    /// Configs and layers, without duplicates.
    pub blobs: Vec<Blob>,
}

impl BuiltImage {
    /// Every blob, the top manifest included, by digest.
    pub fn all_blobs(&self) -> BTreeMap<&str, &Blob> {
        std::iter::once(&self.top)
            .chain(&self.children)
            .chain(&self.blobs)
            .map(|b| (b.digest.as_str(), b))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Building

/// Builds every test image (see [`ALL_IMAGES`]) in memory.
pub fn build_all() -> Result<Vec<BuiltImage>> {
    let ctx = Ctx::new()?;
    CATALOG
        .iter()
        .map(|(repo, tags)| ctx.build(repo, tags))
        .collect()
}

/// Builds one test image in memory; `name` is `repo:tag` or `repo`
/// (e.g. [`BUSYBOX`]).
pub fn build_image(name: &str) -> Result<BuiltImage> {
    let (repo, tags) = catalog_entry(name)?;
    Ctx::new()?.build(repo, tags)
}

/// Pushes a built image: blobs, then the platform manifests of an index by
/// digest, then the top manifest under every tag. Checks the digests the
/// registry reports.
pub fn push_image(registry: &Registry, image: &BuiltImage) -> Result<()> {
    let repo = &image.info.repo;
    for blob in &image.blobs {
        let digest = registry.push_blob(repo, &blob.data)?;
        if digest != blob.digest {
            bail!(
                "pushed blob of {repo}: digest {digest}, expected {}",
                blob.digest
            );
        }
    }
    for child in &image.children {
        let digest = registry.put_manifest(repo, &child.digest, &child.media_type, &child.data)?;
        if digest != child.digest {
            bail!(
                "pushed manifest of {repo}: digest {digest}, expected {}",
                child.digest
            );
        }
    }
    for tag in &image.info.tags {
        let digest = registry.put_manifest(repo, tag, &image.top.media_type, &image.top.data)?;
        if digest != image.top.digest {
            bail!(
                "pushed {repo}:{tag}: registry says {digest}, expected {}",
                image.top.digest
            );
        }
    }
    Ok(())
}

/// Writes a tar of an OCI image layout (`oci-layout`, `index.json` naming
/// the image with `org.opencontainers.image.ref.name` = `ref_name`,
/// `blobs/sha256/...`) holding test image `image` (e.g. [`BUSYBOX`]).
///
/// The image is rebuilt in memory: its digests are those of the pushed image
/// (the builder is deterministic). Returns the digest `index.json` points at.
pub fn write_oci_layout_tar(image: &str, out: &Path, ref_name: &str) -> Result<String> {
    let built = build_image(image)?;
    write_layout(&built, out, ref_name)?;
    Ok(built.top.digest)
}

fn write_layout(image: &BuiltImage, out: &Path, ref_name: &str) -> Result<()> {
    let mut top = image.top.descriptor();
    top.annotations = Some(BTreeMap::from([(
        REF_NAME_ANNOTATION.to_owned(),
        ref_name.to_owned(),
    )]));
    let index = Index {
        schema_version: 2,
        media_type: media_type::OCI_INDEX,
        manifests: vec![top],
    };
    let index_json = serde_json::to_vec(&index).context("serializing index.json")?;
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut entries = vec![
        Entry::dir("blobs", 0o755),
        Entry::dir("blobs/sha256", 0o755),
        Entry::file(
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        Entry::file("index.json", 0o644, index_json),
    ];
    for (digest, blob) in image.all_blobs() {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| anyhow!("unexpected digest {digest}"))?;
        entries.push(Entry::file(
            &format!("blobs/sha256/{hex}"),
            0o644,
            blob.data.clone(),
        ));
    }
    append_entries(&mut tar, entries)?;
    let mut w = tar.into_inner().context("finishing the layout tar")?;
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Compression {
    Uncompressed,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Oci,
    Docker,
}

/// An uncompressed layer.
struct RawLayer {
    tar: Vec<u8>,
    diff_id: String,
    created_by: String,
}

impl RawLayer {
    fn new(entries: Vec<Entry>, created_by: &str) -> Result<RawLayer> {
        let mut tar = tar::Builder::new(Vec::new());
        append_entries(&mut tar, entries)?;
        let tar = tar.into_inner().context("finishing a layer tar")?;
        Ok(RawLayer {
            diff_id: sha256_digest(&tar),
            tar,
            created_by: created_by.to_owned(),
        })
    }
}

/// One platform image.
struct Single {
    manifest: Blob,
    config: Blob,
    layers: Vec<Blob>,
    platform: PlatformImage,
}

struct Ctx {
    busybox: RawLayer,
    /// Compressed layers by (diff_id, compression): the busybox layer is
    /// compressed once for all images.
    compressed: std::cell::RefCell<BTreeMap<(String, Compression), Vec<u8>>>,
}

impl Ctx {
    fn new() -> Result<Ctx> {
        let busybox = read_busybox()?;
        Ok(Ctx {
            busybox: RawLayer::new(busybox_rootfs(busybox), "crius-testkit: busybox rootfs")?,
            compressed: Default::default(),
        })
    }

    fn build(&self, repo: &str, tags: &[&str]) -> Result<BuiltImage> {
        use Compression::{Gzip, Uncompressed, Zstd};
        use Flavor::{Docker, Oci};
        let busybox = &self.busybox;
        let amd = |ctx: &Ctx, flavor, user, layers: &[(&RawLayer, Compression)]| {
            ctx.single(repo, flavor, ("amd64", None), user, layers)
        };
        let singles = match repo {
            "crius-test/busybox" => vec![amd(self, Oci, None, &[(busybox, Gzip)])?],
            "crius-test/user-numeric" => vec![amd(self, Oci, Some("1234"), &[(busybox, Gzip)])?],
            "crius-test/user-named" => vec![amd(self, Oci, Some("alice"), &[(busybox, Gzip)])?],
            "crius-test/user-uidgid" => vec![amd(self, Oci, Some("1234:50"), &[(busybox, Gzip)])?],
            "crius-test/distinct-a" | "crius-test/distinct-b" => {
                let marker = if repo.ends_with('a') {
                    DISTINCT_A_MARKER
                } else {
                    DISTINCT_B_MARKER
                };
                let extra = RawLayer::new(
                    vec![Entry::file("marker", 0o644, marker.as_bytes().to_vec())],
                    "crius-testkit: /marker",
                )?;
                vec![amd(self, Oci, None, &[(busybox, Gzip), (&extra, Gzip)])?]
            }
            "crius-test/multilayer" => {
                let mut layers = Vec::new();
                for (path, content) in MULTILAYER_FILES {
                    let path = path.trim_start_matches('/');
                    layers.push(RawLayer::new(
                        vec![
                            Entry::dir("data", 0o755),
                            Entry::file(path, 0o644, content.as_bytes().to_vec()),
                        ],
                        &format!("crius-testkit: /{path}"),
                    )?);
                }
                let mut refs = vec![(busybox, Gzip)];
                refs.extend(layers.iter().map(|l| (l, Gzip)));
                vec![amd(self, Oci, None, &refs)?]
            }
            "crius-test/multiarch" => {
                let arch = RawLayer::new(
                    vec![Entry::file(
                        "arch",
                        0o644,
                        ARM64_ARCH_CONTENT.as_bytes().to_vec(),
                    )],
                    "crius-testkit: /arch",
                )?;
                vec![
                    amd(self, Oci, None, &[(busybox, Gzip)])?,
                    self.single(repo, Oci, ("arm64", Some("v8")), None, &[(&arch, Gzip)])?,
                ]
            }
            "crius-test/uncompressed" => vec![amd(self, Oci, None, &[(busybox, Uncompressed)])?],
            "crius-test/zstd" => vec![amd(self, Oci, None, &[(busybox, Zstd)])?],
            "crius-test/docker-schema2" => vec![amd(self, Docker, None, &[(busybox, Gzip)])?],
            "crius-test/volume" => {
                let data = RawLayer::new(
                    vec![
                        Entry::dir("data", 0o750).owned_by(ALICE_UID, ALICE_GID),
                        Entry::file("data/seed", 0o640, VOLUME_SEED.as_bytes().to_vec())
                            .owned_by(ALICE_UID, ALICE_GID),
                        Entry::symlink("data/link", "seed"),
                    ],
                    "crius-testkit: VOLUME /data /scratch",
                )?;
                vec![amd(self, Oci, None, &[(busybox, Gzip), (&data, Gzip)])?]
            }
            other => bail!("unknown test image repository {other}"),
        };
        let user = match repo {
            "crius-test/user-numeric" => Some("1234".to_owned()),
            "crius-test/user-named" => Some("alice".to_owned()),
            "crius-test/user-uidgid" => Some("1234:50".to_owned()),
            _ => None,
        };
        let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
        for s in &singles {
            for b in std::iter::once(&s.config).chain(&s.layers) {
                blobs.entry(b.digest.clone()).or_insert_with(|| b.clone());
            }
        }
        let platforms: Vec<PlatformImage> = singles.iter().map(|s| s.platform.clone()).collect();
        let image_id = platforms
            .iter()
            .find(|p| p.architecture == "amd64")
            .map(|p| p.image_id.clone())
            .ok_or_else(|| anyhow!("{repo} has no amd64 image"))?;
        let (top, children) = if singles.len() == 1 {
            let s = singles
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("{repo}: no manifest"))?;
            (s.manifest, Vec::new())
        } else {
            let manifests = singles
                .iter()
                .map(|s| {
                    let mut d = s.manifest.descriptor();
                    d.platform = Some(Platform {
                        architecture: s.platform.architecture.clone(),
                        os: s.platform.os.clone(),
                        variant: s.platform.variant.clone(),
                    });
                    d
                })
                .collect();
            let index = Index {
                schema_version: 2,
                media_type: media_type::OCI_INDEX,
                manifests,
            };
            let top = Blob::new(
                media_type::OCI_INDEX,
                serde_json::to_vec(&index).context("serializing an index")?,
            );
            (top, singles.into_iter().map(|s| s.manifest).collect())
        };
        Ok(BuiltImage {
            info: ImageInfo {
                repo: repo.to_owned(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                manifest_digest: top.digest.clone(),
                manifest_media_type: top.media_type.clone(),
                manifest_size: top.data.len() as u64,
                image_id,
                user,
                platforms,
            },
            top,
            children,
            blobs: blobs.into_values().collect(),
        })
    }

    fn compress(&self, layer: &RawLayer, compression: Compression) -> Result<Vec<u8>> {
        let key = (layer.diff_id.clone(), compression);
        if let Some(data) = self.compressed.borrow().get(&key) {
            return Ok(data.clone());
        }
        let data = match compression {
            Compression::Uncompressed => layer.tar.clone(),
            Compression::Gzip => {
                // GzEncoder writes mtime 0 and no file name: deterministic.
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(&layer.tar).context("gzip")?;
                enc.finish().context("gzip")?
            }
            Compression::Zstd => {
                zstd::stream::encode_all(layer.tar.as_slice(), 3).context("zstd")?
            }
        };
        self.compressed.borrow_mut().insert(key, data.clone());
        Ok(data)
    }

    fn single(
        &self,
        repo: &str,
        flavor: Flavor,
        (architecture, variant): (&str, Option<&str>),
        user: Option<&str>,
        layers: &[(&RawLayer, Compression)],
    ) -> Result<Single> {
        let mut layer_blobs = Vec::new();
        for (layer, compression) in layers {
            let media_type = match (flavor, compression) {
                (Flavor::Oci, Compression::Uncompressed) => media_type::OCI_LAYER_TAR,
                (Flavor::Oci, Compression::Gzip) => media_type::OCI_LAYER_GZIP,
                (Flavor::Oci, Compression::Zstd) => media_type::OCI_LAYER_ZSTD,
                (Flavor::Docker, Compression::Gzip) => media_type::DOCKER_LAYER_GZIP,
                (Flavor::Docker, c) => bail!("no Docker media type for {c:?} layers here"),
            };
            layer_blobs.push(Blob::new(media_type, self.compress(layer, *compression)?));
        }
        let diff_ids: Vec<String> = layers.iter().map(|(l, _)| l.diff_id.clone()).collect();
        let config = ImageConfig {
            created: CREATED,
            architecture,
            variant,
            os: "linux",
            config: RunConfig {
                user,
                env: vec![PATH_ENV],
                cmd: DEFAULT_CMD.to_vec(),
                labels: BTreeMap::from([(IMAGE_LABEL, repo)]),
                volumes: if repo == "crius-test/volume" {
                    BTreeMap::from([("/data", Empty {}), ("/scratch", Empty {})])
                } else {
                    BTreeMap::new()
                },
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids: diff_ids.iter().map(String::as_str).collect(),
            },
            history: layers
                .iter()
                .map(|(l, _)| History {
                    created: CREATED,
                    created_by: &l.created_by,
                })
                .collect(),
        };
        let (manifest_type, config_type) = match flavor {
            Flavor::Oci => (media_type::OCI_MANIFEST, media_type::OCI_CONFIG),
            Flavor::Docker => (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG),
        };
        let config = Blob::new(
            config_type,
            serde_json::to_vec(&config).context("serializing an image config")?,
        );
        let manifest = Manifest {
            schema_version: 2,
            media_type: manifest_type,
            config: config.descriptor(),
            layers: layer_blobs.iter().map(Blob::descriptor).collect(),
        };
        let manifest = Blob::new(
            manifest_type,
            serde_json::to_vec(&manifest).context("serializing a manifest")?,
        );
        Ok(Single {
            platform: PlatformImage {
                os: "linux".to_owned(),
                architecture: architecture.to_owned(),
                variant: variant.map(str::to_owned),
                manifest_digest: manifest.digest.clone(),
                image_id: config.digest.clone(),
                layers: layer_blobs.iter().map(|b| b.digest.clone()).collect(),
                diff_ids,
            },
            manifest,
            config,
            layers: layer_blobs,
        })
    }
}

#[derive(Serialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'a str,
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    os: &'a str,
    config: RunConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(rename = "Env")]
    env: Vec<&'a str>,
    #[serde(rename = "Cmd")]
    cmd: Vec<&'a str>,
    #[serde(rename = "Labels")]
    labels: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "Volumes", skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<&'a str, Empty>,
}

/// `{}`, as image configs write the values of `Volumes`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

// ---------------------------------------------------------------------------
// Tar entries

enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

struct Entry {
    /// Relative, no leading `/` nor trailing `/`.
    path: String,
    node: Node,
    mode: u32,
    uid: u64,
    gid: u64,
}

impl Entry {
    fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.to_owned(),
            node: Node::Dir,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
        Entry {
            path: path.to_owned(),
            node: Node::File(data),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            path: path.to_owned(),
            node: Node::Symlink(target.to_owned()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }

    fn owned_by(mut self, uid: u32, gid: u32) -> Entry {
        self.uid = uid.into();
        self.gid = gid.into();
        self
    }
}

/// Appends `entries` sorted by path components (parents first), with fixed
/// mtime and numeric owners only.
fn append_entries<W: Write>(tar: &mut tar::Builder<W>, mut entries: Vec<Entry>) -> Result<()> {
    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(FIXED_MTIME);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mode(e.mode);
        match e.node {
            Node::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{}/", e.path), std::io::empty())
            }
            Node::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, &e.path, data.as_slice())
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, &e.path, &target)
            }
        }
        .with_context(|| format!("adding {} to a tar", e.path))?;
    }
    Ok(())
}

/// The busybox rootfs around the `busybox` binary.
fn busybox_rootfs(busybox: Vec<u8>) -> Vec<Entry> {
    let mut entries = vec![
        Entry::dir("bin", 0o755),
        Entry::dir("dev", 0o755),
        Entry::dir("etc", 0o755),
        Entry::dir("home", 0o755),
        Entry::dir("home/alice", 0o755).owned_by(ALICE_UID, ALICE_GID),
        Entry::dir("proc", 0o555),
        Entry::dir("root", 0o700),
        Entry::dir("sys", 0o555),
        Entry::dir("tmp", 0o1777),
        Entry::file("bin/busybox", 0o755, busybox),
        Entry::file("etc/passwd", 0o644, ETC_PASSWD.as_bytes().to_vec()),
        Entry::file("etc/group", 0o644, ETC_GROUP.as_bytes().to_vec()),
    ];
    for applet in BUSYBOX_APPLETS {
        entries.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    entries
}

/// Reads [`BUSYBOX_BINARY`] and checks it is statically linked.
fn read_busybox() -> Result<Vec<u8>> {
    let data = fs::read(BUSYBOX_BINARY).map_err(|e| {
        anyhow!(
            "cannot read {BUSYBOX_BINARY} ({e}): install the Debian package {BUSYBOX_PACKAGE} \
             (`apt-get install -y {BUSYBOX_PACKAGE}`)"
        )
    })?;
    if elf_has_interpreter(&data)? {
        bail!(
            "{BUSYBOX_BINARY} is dynamically linked and cannot run in a test image: install the \
             Debian package {BUSYBOX_PACKAGE} (`apt-get install -y {BUSYBOX_PACKAGE}`)"
        );
    }
    Ok(data)
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header.
fn elf_has_interpreter(elf: &[u8]) -> Result<bool> {
    let not_elf = || anyhow!("{BUSYBOX_BINARY} is not a 64-bit little-endian ELF executable");
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(not_elf());
    }
    let u16_at =
        |o: usize| -> Option<u16> { Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?)) };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)) };
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(not_elf)?)?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(not_elf)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(not_elf)?);
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let p_type = elf
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(not_elf)?;
        if p_type == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn catalog_entry(name: &str) -> Result<(&'static str, &'static [&'static str])> {
    let repo = split_name(name).map_or(name, |(repo, _)| repo);
    CATALOG
        .iter()
        .find(|(r, _)| *r == repo)
        .copied()
        .ok_or_else(|| anyhow!("{name} is not a test image (see images::ALL_IMAGES)"))
}

/// `repo:tag` → (`repo`, `tag`).
fn split_name(name: &str) -> Option<(&str, &str)> {
    let (repo, tag) = name.rsplit_once(':')?;
    (!tag.contains('/')).then_some((repo, tag))
}

// ---------------------------------------------------------------------------
// The cache and the served registry

/// Name of the cache directory under the cache root.
const CACHE_DIR: &str = "registry-images";
/// Lock file serializing builders (and copiers) of the cache.
const CACHE_LOCK: &str = "registry-images.lock";
/// Written last, holding the stamp of what was built.
const DONE_FILE: &str = "done";
/// The [`ImageInfo`]s of the cached images.
const INFO_FILE: &str = "images.json";

#[derive(Serialize, Deserialize)]
struct CacheInfo {
    stamp: String,
    images: Vec<ImageInfo>,
}

/// The test images, served by a registry of their own.
///
/// The images are built once into `<cache_root>/registry-images/storage`
/// (a registry storage directory), with their digests in `images.json` and a
/// `done` stamp beside it. Each `TestImages` serves a private COPY of that
/// storage (a few MB), so a test may push, delete or tamper with blobs
/// (see [`Registry::blob_data_path`]) without affecting any other test.
#[derive(Debug)]
pub struct TestImages {
    /// Serves the copy; dropped (killed) before the copy is removed.
    pub registry: Registry,
    images: Vec<ImageInfo>,
    _storage: tempfile::TempDir,
}

impl TestImages {
    /// Builds the images under `cache_root` unless a build with the same
    /// stamp ([`BUILDER_VERSION`], the busybox binary, the image list) is
    /// there already, then starts a registry serving a copy of them.
    ///
    /// Concurrent callers (threads or test binaries) are serialized with an
    /// exclusive `flock` on `<cache_root>/registry-images.lock`.
    pub fn start(cache_root: &Path) -> Result<TestImages> {
        fs::create_dir_all(cache_root)
            .with_context(|| format!("creating {}", cache_root.display()))?;
        let copy = tempfile::Builder::new()
            .prefix("crius-test-images-")
            .tempdir()
            .context("creating a tempdir for the registry storage")?;
        let storage = copy.path().join("storage");
        let images = {
            let _lock = lock_file(&cache_root.join(CACHE_LOCK))?;
            let dir = cache_root.join(CACHE_DIR);
            let images = ensure_built(&dir)?;
            copy_tree(&dir.join("storage"), &storage)?;
            images
        };
        let mut registry = Registry::start_with_storage(&storage)?;
        registry.remove_on_exit(copy.path())?;
        let this = TestImages {
            registry,
            images,
            _storage: copy,
        };
        // Cheap sanity check that the copy serves what images.json says.
        let busybox = this
            .info(BUSYBOX)
            .ok_or_else(|| anyhow!("{BUSYBOX} missing"))?;
        let resp = this.registry.get_manifest(&busybox.repo, "latest")?;
        if resp.header("Docker-Content-Digest") != Some(busybox.manifest_digest.as_str()) {
            bail!(
                "the cached registry serves {BUSYBOX} as {:?}, images.json says {}: remove {}",
                resp.header("Docker-Content-Digest"),
                busybox.manifest_digest,
                cache_root.join(CACHE_DIR).display()
            );
        }
        Ok(this)
    }

    /// [`TestImages::start`] on [`default_cache_root`].
    pub fn start_default() -> Result<TestImages> {
        Self::start(&default_cache_root())
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.registry.addr()
    }

    /// `127.0.0.1:PORT/<name>`, e.g. `127.0.0.1:PORT/crius-test/busybox:latest`.
    /// `name` need not be a test image (to test pulls of missing images).
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{}", self.registry.addr(), name)
    }

    /// Every image, one entry per repository.
    pub fn images(&self) -> &[ImageInfo] {
        &self.images
    }

    /// What is known of test image `name` (`repo:tag`).
    pub fn info(&self, name: &str) -> Option<&ImageInfo> {
        let (repo, tag) = split_name(name)?;
        self.images
            .iter()
            .find(|i| i.repo == repo && i.tags.iter().any(|t| t == tag))
    }

    fn expect_info(&self, name: &str) -> &ImageInfo {
        self.info(name)
            .unwrap_or_else(|| panic!("{name} is not a test image (see images::ALL_IMAGES)"))
    }

    /// `sha256:...` of the (linux/amd64) config of `name`: the image id.
    /// Panics if `name` is not a test image.
    pub fn image_id(&self, name: &str) -> String {
        self.expect_info(name).image_id.clone()
    }

    /// `sha256:...` of what the tag points at (manifest, or index for
    /// [`MULTIARCH`]). Panics if `name` is not a test image.
    pub fn manifest_digest(&self, name: &str) -> String {
        self.expect_info(name).manifest_digest.clone()
    }

    /// `127.0.0.1:PORT/<repo>@sha256:...`: the repo digest CRI reports.
    /// Panics if `name` is not a test image.
    pub fn repo_digest(&self, name: &str) -> String {
        let info = self.expect_info(name);
        format!(
            "{}/{}@{}",
            self.registry.addr(),
            info.repo,
            info.manifest_digest
        )
    }

    /// [`write_oci_layout_tar`], checking that the rebuilt image has the
    /// digest of the served one.
    pub fn write_oci_layout_tar(&self, name: &str, out: &Path, ref_name: &str) -> Result<()> {
        let digest = write_oci_layout_tar(name, out, ref_name)?;
        let served = &self
            .info(name)
            .ok_or_else(|| anyhow!("{name} is not a test image"))?
            .manifest_digest;
        if &digest != served {
            bail!("{name} rebuilt as {digest} but the registry serves {served} (stale cache?)");
        }
        Ok(())
    }
}

/// Environment variable overriding [`default_cache_root`].
pub const CACHE_ROOT_ENV: &str = "CRIUS_TEST_CACHE";

/// `$CRIUS_TEST_CACHE` if set, else `<workspace>/target/crius-test-cache`
/// (the workspace holding this crate).
pub fn default_cache_root() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ROOT_ENV).filter(|d| !d.is_empty()) {
        return dir.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/crius-test-cache")
}

/// The stamp of a build: what, if changed, changes the images.
fn stamp() -> Result<String> {
    let busybox = read_busybox()?;
    Ok(format!(
        "crius-testkit test images\nbuilder: {BUILDER_VERSION}\nbusybox: {}\nimages: {}\n",
        sha256_digest(&busybox),
        ALL_IMAGES.join(" ")
    ))
}

/// Makes sure `dir` holds a complete build (`storage/`, `images.json`,
/// `done`); the caller holds the lock.
fn ensure_built(dir: &Path) -> Result<Vec<ImageInfo>> {
    let stamp = stamp()?;
    if fs::read_to_string(dir.join(DONE_FILE)).is_ok_and(|done| done == stamp)
        && dir.join("storage").is_dir()
        && let Ok(json) = fs::read(dir.join(INFO_FILE))
        && let Ok(info) = serde_json::from_slice::<CacheInfo>(&json)
        && info.stamp == stamp
    {
        return Ok(info.images);
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    let storage = dir.join("storage");
    fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let images = {
        let registry = Registry::start_with_storage(&storage)?;
        let mut images = Vec::new();
        for image in build_all()? {
            push_image(&registry, &image).with_context(|| {
                format!(
                    "pushing {} (log: {})",
                    image.info.repo,
                    registry.log_path().display()
                )
            })?;
            images.push(image.info);
        }
        images
    };
    let info = CacheInfo {
        stamp: stamp.clone(),
        images: images.clone(),
    };
    write_atomically(
        &dir.join(INFO_FILE),
        &serde_json::to_vec_pretty(&info).context("serializing images.json")?,
    )?;
    write_atomically(&dir.join(DONE_FILE), stamp.as_bytes())?;
    Ok(images)
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn lock_file(path: &Path) -> Result<nix::fcntl::Flock<fs::File>> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(anyhow!(e).context(format!("locking {}", path.display()))),
        }
    }
}

/// Copies a tree of directories and regular files (what a registry's
/// filesystem storage holds).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &to)
                .with_context(|| format!("creating {}", to.display()))?;
        } else {
            fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Read;

    /// A fresh registry on the shared cache of [`default_cache_root`] (no
    /// `static`: a registry kept in one is never dropped).
    fn start_images() -> TestImages {
        TestImages::start_default().expect("test images")
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("JSON")
    }

    #[test]
    fn catalog_matches_the_consts() {
        let from_catalog: BTreeSet<String> = CATALOG
            .iter()
            .flat_map(|(repo, tags)| tags.iter().map(move |t| format!("{repo}:{t}")))
            .collect();
        let consts: BTreeSet<String> = ALL_IMAGES.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(from_catalog, consts);
    }

    #[test]
    fn busybox_is_static() -> Result<()> {
        let data = read_busybox()?;
        assert!(!elf_has_interpreter(&data)?);
        assert!(
            elf_has_interpreter(&fs::read("/bin/sh")?)?,
            "/bin/sh is dynamic"
        );
        Ok(())
    }

    #[test]
    fn the_builder_is_deterministic() -> Result<()> {
        let a = build_image(DISTINCT_A)?;
        let b = build_image(DISTINCT_A)?;
        assert_eq!(a.info, b.info);
        assert_eq!(a.top, b.top);
        Ok(())
    }

    #[test]
    fn busybox_rootfs_layout() -> Result<()> {
        let image = build_image(BUSYBOX)?;
        let layer = image
            .blobs
            .iter()
            .find(|b| b.media_type == media_type::OCI_LAYER_GZIP)
            .expect("a gzip layer");
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(layer.data.as_slice()).read_to_end(&mut tar_bytes)?;
        assert_eq!(sha256_digest(&tar_bytes), image.info.amd64().diff_ids[0]);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut seen = BTreeMap::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let h = entry.header();
            assert_eq!(h.mtime()?, FIXED_MTIME);
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
            seen.insert(path, (h.entry_type(), h.mode()?, h.uid()?, h.gid()?, link));
        }
        assert_eq!(seen["tmp"].1, 0o1777);
        assert_eq!(seen["tmp"].0, tar::EntryType::Directory);
        assert_eq!(seen["bin/busybox"].0, tar::EntryType::Regular);
        assert_eq!(seen["bin/busybox"].2, 0);
        assert_eq!((seen["home/alice"].2, seen["home/alice"].3), (1234, 1234));
        for applet in BUSYBOX_APPLETS {
            let e = &seen[&format!("bin/{applet}")];
            assert_eq!(e.0, tar::EntryType::Symlink, "{applet}");
            assert_eq!(e.4.as_deref(), Some("busybox"), "{applet}");
        }
        for dir in ["proc", "sys", "dev", "etc", "root"] {
            assert_eq!(seen[dir].0, tar::EntryType::Directory, "{dir}");
        }
        Ok(())
    }

    #[test]
    fn tags_and_manifests_are_served() -> Result<()> {
        let images = start_images();
        assert_eq!(images.images().len(), CATALOG.len());
        let reg = &images.registry;
        assert_eq!(reg.tags("crius-test/busybox")?, ["1.0", "latest", "stable"]);
        let digest = images.manifest_digest(BUSYBOX);
        for name in [BUSYBOX, BUSYBOX_1_0, BUSYBOX_STABLE] {
            assert_eq!(images.manifest_digest(name), digest);
            assert_eq!(images.image_id(name), images.image_id(BUSYBOX));
        }
        assert_eq!(
            images.reference(BUSYBOX),
            format!("{}/crius-test/busybox:latest", reg.addr())
        );
        assert_eq!(
            images.repo_digest(BUSYBOX_STABLE),
            format!("{}/crius-test/busybox@{digest}", reg.addr())
        );

        let mut ids = BTreeSet::new();
        for name in ALL_IMAGES {
            let info = images.info(name).expect("known");
            let (repo, tag) = split_name(name).expect("repo:tag");
            let resp = reg.get_manifest(repo, tag)?;
            assert_eq!(
                resp.header("Docker-Content-Digest"),
                Some(info.manifest_digest.as_str()),
                "{name}"
            );
            assert_eq!(
                resp.header("Content-Type"),
                Some(info.manifest_media_type.as_str())
            );
            assert_eq!(sha256_digest(&resp.body), info.manifest_digest, "{name}");
            // The amd64 config is the image id, and is served.
            let config = reg.get_blob(repo, &info.image_id)?;
            assert_eq!(sha256_digest(&config), info.image_id);
            let config = json(&config);
            assert_eq!(config["architecture"], "amd64");
            assert_eq!(config["os"], "linux");
            assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
            assert_eq!(config["config"]["Env"], serde_json::json!([PATH_ENV]));
            assert_eq!(
                config["rootfs"]["diff_ids"],
                serde_json::json!(info.amd64().diff_ids)
            );
            ids.insert(info.image_id.clone());
        }
        // One id per repository.
        assert_eq!(ids.len(), CATALOG.len());

        let users = [
            (USER_NUMERIC, "1234"),
            (USER_NAMED, "alice"),
            (USER_UIDGID, "1234:50"),
        ];
        for (name, user) in users {
            let config = json(&reg.get_blob(
                &images.info(name).expect("known").repo,
                &images.image_id(name),
            )?);
            assert_eq!(config["config"]["User"], user, "{name}");
        }
        Ok(())
    }

    #[test]
    fn media_types_and_layers() -> Result<()> {
        let images = start_images();
        let reg = &images.registry;
        let layer_types = |name: &str| -> Result<(String, Vec<String>)> {
            let info = images.info(name).expect("known");
            let m = json(&reg.get_manifest(&info.repo, "latest")?.body);
            let types = m["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["mediaType"].as_str().expect("mediaType").to_owned())
                .collect();
            Ok((
                m["config"]["mediaType"]
                    .as_str()
                    .expect("config")
                    .to_owned(),
                types,
            ))
        };
        assert_eq!(
            layer_types(BUSYBOX)?,
            (
                media_type::OCI_CONFIG.to_owned(),
                vec![media_type::OCI_LAYER_GZIP.to_owned()]
            )
        );
        assert_eq!(layer_types(UNCOMPRESSED)?.1, [media_type::OCI_LAYER_TAR]);
        assert_eq!(layer_types(ZSTD)?.1, [media_type::OCI_LAYER_ZSTD]);
        assert_eq!(
            layer_types(DOCKER_SCHEMA2)?,
            (
                media_type::DOCKER_CONFIG.to_owned(),
                vec![media_type::DOCKER_LAYER_GZIP.to_owned()]
            )
        );
        assert_eq!(
            images
                .info(DOCKER_SCHEMA2)
                .expect("known")
                .manifest_media_type,
            media_type::DOCKER_MANIFEST
        );
        assert_eq!(layer_types(MULTILAYER)?.1.len(), 3);
        assert_eq!(layer_types(DISTINCT_A)?.1.len(), 2);
        // Same uncompressed busybox layer everywhere.
        let busybox_diff = &images.info(BUSYBOX).expect("known").amd64().diff_ids[0];
        for name in [UNCOMPRESSED, ZSTD, DOCKER_SCHEMA2, MULTILAYER, DISTINCT_B] {
            assert_eq!(
                &images.info(name).expect("known").amd64().diff_ids[0],
                busybox_diff
            );
        }
        // The zstd layer decompresses to it.
        let zstd_info = images.info(ZSTD).expect("known");
        let blob = reg.get_blob(&zstd_info.repo, &zstd_info.amd64().layers[0])?;
        let tar = zstd::stream::decode_all(blob.as_slice())?;
        assert_eq!(&sha256_digest(&tar), busybox_diff);
        // And the uncompressed one is it.
        let info = images.info(UNCOMPRESSED).expect("known");
        assert_eq!(&info.amd64().layers[0], busybox_diff);
        assert_ne!(images.image_id(DISTINCT_A), images.image_id(DISTINCT_B));
        Ok(())
    }

    #[test]
    fn multiarch_is_an_index_of_two() -> Result<()> {
        let images = start_images();
        let reg = &images.registry;
        let info = images.info(MULTIARCH).expect("known");
        let resp = reg.get_manifest(&info.repo, "latest")?;
        assert_eq!(resp.header("Content-Type"), Some(media_type::OCI_INDEX));
        let index = json(&resp.body);
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 2);
        let archs: Vec<&str> = manifests
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().expect("arch"))
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);
        for (m, platform) in manifests.iter().zip(&info.platforms) {
            assert_eq!(m["digest"], platform.manifest_digest.as_str());
            assert_eq!(m["platform"]["os"], "linux");
            let child = reg.get_manifest(&info.repo, &platform.manifest_digest)?;
            assert_eq!(child.header("Content-Type"), Some(media_type::OCI_MANIFEST));
            let child = json(&child.body);
            assert_eq!(child["config"]["digest"], platform.image_id.as_str());
            let config = json(&reg.get_blob(&info.repo, &platform.image_id)?);
            assert_eq!(config["architecture"], platform.architecture.as_str());
        }
        assert_eq!(info.image_id, info.platforms[0].image_id);
        Ok(())
    }

    #[test]
    fn oci_layout_tar_is_valid() -> Result<()> {
        let images = start_images();
        let dir = tempfile::tempdir()?;
        for (name, ref_name) in [
            (BUSYBOX, "latest"),
            (MULTIARCH, "multi"),
            (DOCKER_SCHEMA2, "d"),
        ] {
            let out = dir.path().join("layout.tar");
            images.write_oci_layout_tar(name, &out, ref_name)?;
            let mut files = BTreeMap::new();
            let mut archive = tar::Archive::new(fs::File::open(&out)?);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let path = entry.path()?.to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                files.insert(path, data);
            }
            assert_eq!(json(&files["oci-layout"])["imageLayoutVersion"], "1.0.0");
            let index = json(&files["index.json"]);
            assert_eq!(index["schemaVersion"], 2);
            let manifests = index["manifests"].as_array().expect("manifests");
            assert_eq!(manifests.len(), 1);
            assert_eq!(manifests[0]["annotations"][REF_NAME_ANNOTATION], ref_name);
            assert_eq!(
                manifests[0]["digest"],
                images.manifest_digest(name).as_str()
            );
            // Every blob is there, named by its digest, and everything the
            // manifests reference is there.
            let mut blobs = 0;
            for (path, data) in &files {
                if let Some(hex) = path.strip_prefix("blobs/sha256/")
                    && !hex.is_empty()
                {
                    assert_eq!(sha256_digest(data), format!("sha256:{hex}"));
                    blobs += 1;
                }
            }
            let blob = |d: &serde_json::Value| {
                let d = d.as_str().expect("digest");
                files
                    .get(&format!("blobs/sha256/{}", &d[7..]))
                    .unwrap_or_else(|| panic!("{name}: missing blob {d}"))
            };
            let mut pending = vec![manifests[0]["digest"].clone()];
            let mut seen = 0;
            while let Some(d) = pending.pop() {
                seen += 1;
                let v: serde_json::Value =
                    match serde_json::from_slice::<serde_json::Value>(blob(&d)) {
                        // Only manifests and indexes reference blobs.
                        Ok(v) if v["schemaVersion"] == 2 => v,
                        _ => continue, // a config or a layer
                    };
                for m in v["manifests"].as_array().into_iter().flatten() {
                    pending.push(m["digest"].clone());
                }
                if v["config"].is_object() {
                    pending.push(v["config"]["digest"].clone());
                }
                for l in v["layers"].as_array().into_iter().flatten() {
                    pending.push(l["digest"].clone());
                }
            }
            assert_eq!(seen, blobs, "{name}: unreferenced or missing blobs");
        }
        Ok(())
    }

    #[test]
    fn the_cache_is_reused_and_shared() -> Result<()> {
        let cache = tempfile::tempdir()?;
        let root = cache.path().to_owned();
        // Two concurrent starts on an empty cache: one builds, one waits.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || TestImages::start(&root))
            })
            .collect();
        let started: Vec<TestImages> = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect::<Result<_>>()?;
        assert_eq!(started[0].images(), started[1].images());
        assert_ne!(started[0].addr(), started[1].addr());
        let done = root.join(CACHE_DIR).join(DONE_FILE);
        let built_at = fs::metadata(&done)?.modified()?;
        drop(started);
        // A later start reuses the build.
        let again = TestImages::start(&root)?;
        assert_eq!(fs::metadata(&done)?.modified()?, built_at);
        assert_eq!(
            again.manifest_digest(BUSYBOX),
            start_images().manifest_digest(BUSYBOX)
        );
        // A private copy: deleting a manifest there does not touch the cache.
        let info = again.info(USER_NAMED).expect("known").clone();
        let resp = again.registry.request(
            "DELETE",
            &format!("/v2/{}/manifests/{}", info.repo, info.manifest_digest),
            &[],
            &[],
        )?;
        resp.expect_status(202, "DELETE manifest")?;
        drop(again);
        let third = TestImages::start(&root)?;
        third.registry.get_manifest(&info.repo, "latest")?;
        // A stale stamp rebuilds.
        drop(third);
        fs::write(&done, "old")?;
        let fourth = TestImages::start(&root)?;
        assert_eq!(fs::read_to_string(&done)?, stamp()?);
        assert_eq!(fourth.images(), start_images().images());
        Ok(())
    }
}
