//! Images as CRI sees them, built from containerd's image records.
//!
//! crius stores each pulled image in containerd as several records that share
//! one target: `name:tag` (a repo tag), `name@sha256:…` (a repo digest) and
//! `sha256:<config digest>` (the id). Labels on every record carry what CRI
//! needs without reading content: the image id, the platform manifest, the
//! size and the config's `USER`. CRI wants one entry per image id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Label marking an image record as crius'.
pub const LABEL_MANAGED: &str = "io.crius.image.managed";
/// Label: the image id (config digest).
pub const LABEL_ID: &str = "io.crius.image.id";
/// Label: the digest of the platform's image manifest.
pub const LABEL_MANIFEST: &str = "io.crius.image.manifest";
/// Label: the image size (config + compressed layers), decimal bytes.
pub const LABEL_SIZE: &str = "io.crius.image.size";
/// Label: the image config's `USER`.
pub const LABEL_USER: &str = "io.crius.image.user";
/// Label: the top chain id of the image's layers (its rootfs snapshot).
pub const LABEL_CHAIN_ID: &str = "io.crius.image.chainid";
/// Label: the image is pinned (never garbage collected by kubelet).
pub const LABEL_PINNED: &str = "io.crius.image.pinned";

/// The sandbox image crius builds itself from its embedded pause program.
pub const BUILTIN_SANDBOX_IMAGE: &str =
    concat!("localhost/crius/pause:", env!("CARGO_PKG_VERSION"));

/// One image record as stored in containerd: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// One CRI image: every record with the same id, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriImage {
    /// The config digest, `sha256:…`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    /// The config's `USER`, unparsed.
    pub user: String,
    /// Digest of the platform's image manifest.
    pub manifest: String,
    /// Top chain id of the layers.
    pub chain_id: String,
    pub pinned: bool,
    /// Names of all records of this image (tags, digests and the id record).
    pub record_names: Vec<String>,
}

/// What kind of name a record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// `sha256:<hex>`: the id record.
    Id,
    /// `repo@sha256:<hex>`.
    Digest,
    /// `repo:tag`.
    Tag,
}

/// Classifies a record name.
pub fn name_kind(name: &str) -> NameKind {
    if is_digest(name) {
        NameKind::Id
    } else if name.contains('@') {
        NameKind::Digest
    } else {
        NameKind::Tag
    }
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// Groups records into CRI images, ordered by id. Records without crius'
/// labels are ignored.
pub fn group(records: &[ImageRecord]) -> Vec<CriImage> {
    let mut by_id: BTreeMap<&str, CriImage> = BTreeMap::new();
    for r in records {
        if r.labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
            continue;
        }
        let Some(id) = r.labels.get(LABEL_ID).filter(|id| is_digest(id)) else {
            continue;
        };
        let entry = by_id.entry(id).or_insert_with(|| CriImage {
            id: id.clone(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 0,
            user: String::new(),
            manifest: String::new(),
            chain_id: String::new(),
            pinned: false,
            record_names: vec![],
        });
        let label = |k: &str| r.labels.get(k).cloned().unwrap_or_default();
        if let Ok(size) = label(LABEL_SIZE).parse() {
            entry.size = size;
        }
        entry.user = label(LABEL_USER);
        entry.manifest = label(LABEL_MANIFEST);
        entry.chain_id = label(LABEL_CHAIN_ID);
        entry.pinned |= label(LABEL_PINNED) == "true";
        entry.record_names.push(r.name.clone());
        match name_kind(&r.name) {
            NameKind::Id => {}
            NameKind::Digest => entry.repo_digests.push(r.name.clone()),
            NameKind::Tag => entry.repo_tags.push(r.name.clone()),
        }
    }
    by_id
        .into_values()
        .map(|mut i| {
            for v in [&mut i.repo_tags, &mut i.repo_digests, &mut i.record_names] {
                let set: BTreeSet<String> = v.drain(..).collect();
                v.extend(set);
            }
            i
        })
        .collect()
}

/// The uid or user name of an image config's `USER` (`uid`, `name`,
/// `uid:gid`, `name:group`), as CRI reports them: a numeric user becomes the
/// uid, a name the username. A uid outside 0..=2^31-1 is no uid.
pub fn parse_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or_default().trim();
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) if (0..=i64::from(i32::MAX)).contains(&uid) => (Some(uid), String::new()),
        Ok(_) => (None, String::new()),
        Err(_) => (None, user.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ID_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn rec(name: &str, id: &str) -> ImageRecord {
        let mut labels = HashMap::new();
        labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        labels.insert(LABEL_ID.to_string(), id.to_string());
        labels.insert(LABEL_SIZE.to_string(), "1234".to_string());
        labels.insert(LABEL_USER.to_string(), "alice".to_string());
        ImageRecord {
            name: name.into(),
            labels,
        }
    }

    #[test]
    fn records_of_one_id_make_one_image() {
        let records = vec![
            rec("docker.io/library/busybox:latest", ID_A),
            rec("docker.io/library/busybox:1.0", ID_A),
            rec(
                &format!("docker.io/library/busybox@{}", ID_B.replace('b', "c")),
                ID_A,
            ),
            rec(ID_A, ID_A),
            rec("example.com/other:v1", ID_B),
            ImageRecord {
                name: "not-ours:latest".into(),
                labels: HashMap::new(),
            },
        ];
        let images = group(&records);
        assert_eq!(images.len(), 2);
        let a = &images[0];
        assert_eq!(a.id, ID_A);
        assert_eq!(
            a.repo_tags,
            vec![
                "docker.io/library/busybox:1.0",
                "docker.io/library/busybox:latest"
            ]
        );
        assert_eq!(a.repo_digests.len(), 1);
        assert_eq!(a.record_names.len(), 4);
        assert_eq!(a.size, 1234);
        assert_eq!(images[1].repo_tags, vec!["example.com/other:v1"]);
    }

    #[test]
    fn name_kinds() {
        assert_eq!(name_kind(ID_A), NameKind::Id);
        assert_eq!(name_kind(&format!("a/b@{ID_A}")), NameKind::Digest);
        assert_eq!(name_kind("a/b:c"), NameKind::Tag);
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&ID_A.to_uppercase()));
    }

    #[test]
    fn users() {
        assert_eq!(parse_user(""), (None, String::new()));
        assert_eq!(parse_user("1234"), (Some(1234), String::new()));
        assert_eq!(parse_user("1234:50"), (Some(1234), String::new()));
        assert_eq!(parse_user("alice"), (None, "alice".into()));
        assert_eq!(parse_user("alice:staff"), (None, "alice".into()));
        assert_eq!(parse_user("0"), (Some(0), String::new()));
        assert_eq!(parse_user("4294967296"), (None, String::new()));
        assert_eq!(parse_user("-1"), (None, String::new()));
    }
}
