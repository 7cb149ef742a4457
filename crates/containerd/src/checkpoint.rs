//! What a checkpoint of a running container needs: pausing and resuming
//! its task, the runc shim's checkpoint (CRIU) into a directory, and the
//! changes of its writable snapshot as a tar file.
//!
//! The task service of containerd 1.6 copies a checkpoint into its content
//! store unless the runc options name an image path; with one, the shim's
//! `runc checkpoint` writes CRIU's images there and nothing else is kept.

use std::path::Path;

use containerd_client::services::v1::ResumeTaskRequest;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::{CheckpointTaskRequest, DiffRequest, PauseTaskRequest};
use containerd_client::types::Mount;
use futures::StreamExt;
use prost::Message;
use tokio::io::AsyncWriteExt;

use crate::{Containerd, Error, Result, map_status};

/// Type URL of the runc shim's checkpoint options.
const CHECKPOINT_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.CheckpointOptions";

/// An uncompressed layer tar, with OCI whiteouts for what was deleted.
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The runc shim's `containerd.runc.v1.CheckpointOptions` (the fields crius
/// sets; the others keep CRIU's defaults).
#[derive(Clone, PartialEq, Message)]
struct CheckpointOptions {
    /// Stop the container after the dump (crius never does: kubelet's
    /// checkpoints leave it running).
    #[prost(bool, tag = "1")]
    exit: bool,
    #[prost(string, tag = "8")]
    image_path: String,
    #[prost(string, tag = "9")]
    work_path: String,
}

impl Containerd {
    /// Freezes every process of container `id`'s task.
    pub async fn task_pause(&self, id: &str) -> Result<()> {
        self.tasks()
            .pause(self.request(PauseTaskRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(map_status("task pause"))?;
        Ok(())
    }

    /// Thaws the processes [`Containerd::task_pause`] froze.
    pub async fn task_resume(&self, id: &str) -> Result<()> {
        self.tasks()
            .resume(self.request(ResumeTaskRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(map_status("task resume"))?;
        Ok(())
    }

    /// Checkpoints container `id`'s task with CRIU (runc shims only): its
    /// images into `image_dir`, CRIU's log (`dump.log`) and statistics
    /// (`stats-dump`) into `work_dir`. The container keeps running.
    pub async fn task_checkpoint(&self, id: &str, image_dir: &Path, work_dir: &Path) -> Result<()> {
        let options = CheckpointOptions {
            exit: false,
            image_path: image_dir.to_string_lossy().into_owned(),
            work_path: work_dir.to_string_lossy().into_owned(),
        };
        self.tasks()
            .checkpoint(self.request(CheckpointTaskRequest {
                container_id: id.to_string(),
                parent_checkpoint: String::new(),
                options: Some(prost_types::Any {
                    type_url: CHECKPOINT_OPTIONS_TYPE_URL.to_string(),
                    value: options.encode_to_vec(),
                }),
            }))
            .await
            .map_err(map_status("task checkpoint"))?;
        tracing::debug!(container = id, dir = %image_dir.display(), "task checkpointed");
        Ok(())
    }

    /// Writes what `upper` (an active snapshot's mounts) changed over
    /// `lower` (its parent's, a view) to `dest` as an uncompressed tar and
    /// returns its size. The diff service writes it into the content store
    /// first: call this on a clone made by [`Containerd::with_lease`], whose
    /// lease keeps the blob until the caller deletes the lease.
    pub async fn diff_to_file(
        &self,
        lower: Vec<Mount>,
        upper: Vec<Mount>,
        dest: &Path,
    ) -> Result<u64> {
        let resp = DiffClient::new(self.channel.clone())
            .diff(self.request(DiffRequest {
                left: lower,
                right: upper,
                media_type: LAYER_TAR.to_string(),
                ..Default::default()
            }))
            .await
            .map_err(map_status("diff"))?
            .into_inner();
        let diff = resp.diff.ok_or_else(|| Error::Malformed {
            op: "diff",
            what: "no descriptor of the diff".to_string(),
        })?;
        self.content_to_file(&diff.digest, diff.size as u64, dest)
            .await
    }

    /// Copies blob `digest` of `size` bytes into a new file `dest`.
    async fn content_to_file(&self, digest: &str, size: u64, dest: &Path) -> Result<u64> {
        let io = |source| Error::Io {
            what: format!("writing {}", dest.display()),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut stream = std::pin::pin!(self.content_chunks(digest).await?);
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            file.write_all(&chunk.data).await.map_err(io)?;
            written += chunk.data.len() as u64;
        }
        file.sync_all().await.map_err(io)?;
        if written != size {
            return Err(Error::Corrupt(format!(
                "content {digest}: read {written} bytes of {size}"
            )));
        }
        Ok(written)
    }
}
