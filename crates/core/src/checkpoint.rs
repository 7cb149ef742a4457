//! CheckpointContainer's rules: where the archive may go, which runtimes
//! and CRIU versions can make one, and the metadata files it carries in the
//! layout containerd and CRI-O write (checkpointctl reads them):
//!
//! ```text
//! checkpoint/      CRIU's images
//! config.dump      ContainerConfigDump (id, name, image, runtime, times)
//! spec.dump        the container's OCI runtime spec
//! status.dump      its CRI ContainerStatus (JSON, CRI's field names)
//! status           containerd's status of it (containerd's archives only)
//! rootfs-diff.tar  what it changed in its root file system (a layer tar)
//! container.log    its CRI log so far
//! dump.log         CRIU's log; stats-dump: CRIU's statistics
//! ```

use std::path::PathBuf;

use serde::Serialize;

use crate::{Error, Result};

/// The oldest CRIU containerd's CRI checkpoints with (3.16).
pub const MIN_CRIU_VERSION: u32 = 31600;

/// The files of a checkpoint archive (see the [module docs](self)).
pub const IMAGES_DIR: &str = "checkpoint";
pub const CONFIG_DUMP: &str = "config.dump";
pub const SPEC_DUMP: &str = "spec.dump";
pub const STATUS_DUMP: &str = "status.dump";
pub const CONTAINERD_STATUS: &str = "status";
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
pub const CONTAINER_LOG: &str = "container.log";
pub const CRIU_FILES: [&str; 2] = ["dump.log", "stats-dump"];

/// Go's zero `time.Time`, what a checkpoint never restored says it was
/// restored at.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Where a checkpoint archive goes: an absolute path. containerd writes a
/// relative one under its own working directory, which no client can know;
/// crius refuses it instead.
pub fn location(location: &str) -> Result<PathBuf> {
    let field = "location";
    if location.is_empty() {
        return Err(Error::invalid(
            field,
            "is required: the path of the archive to write",
        ));
    }
    if location.contains('\0') {
        return Err(Error::invalid(field, "contains NUL"));
    }
    crate::container::validate::check_path_len(location).map_err(|r| Error::invalid(field, r))?;
    let path = PathBuf::from(location);
    if !path.is_absolute() {
        return Err(Error::invalid(
            field,
            format!("{location:?} is not an absolute path"),
        ));
    }
    if path.file_name().is_none() || location.ends_with('/') {
        return Err(Error::invalid(field, format!("{location:?} names no file")));
    }
    Ok(path)
}

/// Whether the shim `runtime` checkpoints with runc and CRIU (runc's own
/// shims; others, Kata's among them, have no checkpoint of their own).
pub fn runtime_can_checkpoint(runtime: &str) -> bool {
    matches!(runtime, "io.containerd.runc.v2" | "io.containerd.runc.v1")
}

/// CRIU's version from what `criu --version` prints (`Version: 4.1.1`), as
/// `major * 10000 + minor * 100 + patch`.
pub fn criu_version(text: &str) -> Option<u32> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?;
    let mut parts = line.trim().split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(major * 10000 + minor * 100 + patch)
}

/// `config.dump`: checkpointctl's `ContainerConfig`, as containerd fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDump {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rootfs_image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rootfs_image_ref: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rootfs_image_name: String,
    #[serde(rename = "runtime", skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// RFC 3339, UTC.
    pub created_time: String,
    #[serde(rename = "checkpointedTime")]
    pub checkpointed_at: String,
    pub restored_time: String,
    pub restored: bool,
}

impl ConfigDump {
    /// The metadata of a checkpoint made at `checkpointed_at` of a
    /// container created at `created_time` (both RFC 3339) from `image`
    /// (a name) resolved to `image_ref`.
    pub fn new(
        (id, name): (&str, &str),
        (image, image_ref): (&str, &str),
        runtime: &str,
        (created_time, checkpointed_at): (String, String),
    ) -> Self {
        ConfigDump {
            id: id.to_string(),
            name: name.to_string(),
            rootfs_image: image.to_string(),
            rootfs_image_ref: image_ref.to_string(),
            rootfs_image_name: image.to_string(),
            runtime: runtime.to_string(),
            created_time,
            checkpointed_at,
            restored_time: GO_ZERO_TIME.to_string(),
            restored: false,
        }
    }
}

/// containerd's own `status` file of a checkpointed container (Go field
/// names, times in nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerdStatus {
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub pid: u32,
    pub reason: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_an_absolute_file_path() {
        assert!(location("/var/lib/kubelet/checkpoints/c.tar").is_ok());
        for (bad, why) in [
            ("", "is required"),
            ("c.tar", "not an absolute path"),
            ("/tmp/dir/", "names no file"),
            ("/tmp/a\0b", "NUL"),
        ] {
            let e = location(bad).expect_err(bad).to_string();
            assert!(e.contains("location") && e.contains(why), "{bad:?}: {e}");
        }
        let long = format!("/{}", "a".repeat(5000));
        assert!(location(&long).is_err());
    }

    #[test]
    fn criu_versions_are_read_as_containerd_compares_them() {
        assert_eq!(criu_version("Version: 4.1.1\n"), Some(40101));
        assert_eq!(criu_version("Version: 3.17\nGitID: v3.17\n"), Some(31700));
        assert_eq!(criu_version("criu: command not found"), None);
        assert!(criu_version("Version: 3.15").is_some_and(|v| v < MIN_CRIU_VERSION));
    }

    #[test]
    fn only_runc_shims_checkpoint() {
        assert!(runtime_can_checkpoint("io.containerd.runc.v2"));
        assert!(!runtime_can_checkpoint("io.containerd.kata.v2"));
    }

    #[test]
    fn config_dump_has_checkpointctl_names() -> serde_json::Result<()> {
        let dump = ConfigDump::new(
            ("c1", "web"),
            ("busybox:1", "sha256:abc"),
            "io.containerd.runc.v2",
            (
                "2026-12-03T10:00:00.000000000Z".into(),
                "2026-12-03T11:00:00.000000000Z".into(),
            ),
        );
        let v = serde_json::to_value(&dump)?;
        assert_eq!(v["id"], "c1");
        assert_eq!(v["rootfsImageName"], "busybox:1");
        assert_eq!(v["rootfsImageRef"], "sha256:abc");
        assert_eq!(v["runtime"], "io.containerd.runc.v2");
        assert_eq!(v["checkpointedTime"], "2026-12-03T11:00:00.000000000Z");
        assert_eq!(v["restoredTime"], GO_ZERO_TIME);
        assert_eq!(v["restored"], false);
        let status = ContainerdStatus {
            created_at: 1,
            started_at: 2,
            finished_at: 0,
            exit_code: 0,
            pid: 7,
            reason: String::new(),
            message: String::new(),
        };
        assert_eq!(serde_json::to_value(&status)?["Pid"], 7);
        Ok(())
    }
}
