//! `crius checkpoint ID`: CheckpointContainer into a tar archive on this
//! node; criusd writes it, so the path it is sent is absolute.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use crius_cri_api::v1;
use serde_json::json;

use crate::client::Cri;

/// How much longer than the checkpoint's own timeout crius waits for the
/// answer, so that criusd's error (with its reason) comes first.
pub(crate) const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Checkpoints container `id` into `export` (by default
/// `./checkpoint-<name>-<time>.tar`), `timeout` seconds at most; prints
/// the archive's path.
pub(crate) async fn checkpoint(
    cri: &mut Cri,
    id: &str,
    export: Option<&Path>,
    timeout: u64,
    json: bool,
) -> anyhow::Result<()> {
    let (status, _) = crate::containers::status(cri, id).await?;
    let name = status.metadata.as_ref().map_or("", |m| m.name.as_str());
    let cwd = std::env::current_dir().context("the current directory")?;
    let path = archive_path(export, &cwd, name, SystemTime::now());
    cri.runtime
        .checkpoint_container(v1::CheckpointContainerRequest {
            container_id: status.id.clone(),
            location: path.display().to_string(),
            timeout: i64::try_from(timeout).unwrap_or(i64::MAX),
        })
        .await
        .with_context(|| format!("checkpointing {id}"))?;
    if json {
        return crate::print_doc(&json!({ "id": status.id, "path": path }));
    }
    println!("{}", path.display());
    Ok(())
}

/// Where the archive goes: `export` made absolute against `cwd`, or
/// `cwd/checkpoint-<name>-<time>.tar`.
pub(crate) fn archive_path(
    export: Option<&Path>,
    cwd: &Path,
    name: &str,
    now: SystemTime,
) -> PathBuf {
    match export {
        Some(p) => absolute(cwd, p),
        None => cwd.join(default_file_name(name, now)),
    }
}

/// `p`, relative to `cwd` unless absolute, without `.` components.
fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    cwd.join(p)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

/// `checkpoint-<name>-<YYYYMMDDTHHMMSSZ>.tar`: the name with anything but
/// letters, digits, `.`, `_` and `-` made `-`; a UTC time without colons
/// (tar takes `host:file` for a remote archive).
pub(crate) fn default_file_name(name: &str, now: SystemTime) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let safe = if safe.is_empty() { "container" } else { &safe };
    // 2026-12-02T21:00:00.123456789Z -> 20261202T210000Z
    let stamp: String = crius_logs::format_timestamp(now)
        .chars()
        .take("2026-12-02T21:00:00".len())
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("checkpoint-{safe}-{stamp}Z.tar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(123)
    }

    #[test]
    fn the_default_archive_is_in_the_current_directory_named_and_timed() {
        let cwd = Path::new("/srv/work");
        // 2026-12-02T21:00:00Z
        let p = archive_path(None, cwd, "web", at(1_796_245_200));
        assert_eq!(
            p,
            Path::new("/srv/work/checkpoint-web-20261202T210000Z.tar")
        );
        assert!(p.is_absolute());
    }

    #[test]
    fn an_export_path_is_made_absolute() {
        let cwd = Path::new("/srv/work");
        let now = at(0);
        let abs = |p: &str| archive_path(Some(Path::new(p)), cwd, "x", now);
        assert_eq!(abs("/tmp/c.tar"), Path::new("/tmp/c.tar"));
        assert_eq!(abs("c.tar"), Path::new("/srv/work/c.tar"));
        assert_eq!(abs("./out/./c.tar"), Path::new("/srv/work/out/c.tar"));
        // `..` is kept: what it means depends on symlinks.
        assert_eq!(abs("../c.tar"), Path::new("/srv/work/../c.tar"));
    }

    #[test]
    fn names_are_made_safe_for_a_file_name() {
        let now = at(0);
        assert_eq!(
            default_file_name("app", now),
            "checkpoint-app-19700101T000000Z.tar"
        );
        assert_eq!(
            default_file_name("a/b c:d", now),
            "checkpoint-a-b-c-d-19700101T000000Z.tar"
        );
        assert_eq!(
            default_file_name("", now),
            "checkpoint-container-19700101T000000Z.tar"
        );
    }
}
