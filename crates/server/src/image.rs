//! `runtime.v1.ImageService`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crius_core::Error;
use crius_cri_api::v1::{self, image_service_server::ImageService};
use tonic::{Request, Response, Status};

use crate::edge::{not_yet, respond};
use crate::state::State;

/// The image service.
pub struct ImageSvc {
    state: Arc<State>,
}

impl ImageSvc {
    pub fn new(state: Arc<State>) -> Self {
        ImageSvc { state }
    }

    async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse, Error> {
        let containerd = self.state.containerd()?;
        let snapshotter = self.state.config().containerd.snapshotter.clone();
        let root = containerd.snapshotter_root(&snapshotter).await?;
        let usage = containerd.snapshots_usage(&snapshotter).await?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        let fs = v1::FilesystemUsage {
            timestamp,
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(v1::UInt64Value { value: usage.bytes }),
            inodes_used: Some(v1::UInt64Value {
                value: usage.inodes,
            }),
        };
        Ok(v1::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            // Container root filesystems live in the same snapshotter.
            container_filesystems: vec![fs],
        })
    }
}

#[tonic::async_trait]
impl ImageService for ImageSvc {
    async fn image_fs_info(
        &self,
        _req: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        respond("ImageFsInfo", ImageSvc::image_fs_info(self)).await
    }

    async fn list_images(
        &self,
        _req: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        not_yet("ListImages").await
    }

    async fn image_status(
        &self,
        _req: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        not_yet("ImageStatus").await
    }

    async fn pull_image(
        &self,
        _req: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        not_yet("PullImage").await
    }

    async fn remove_image(
        &self,
        _req: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        not_yet("RemoveImage").await
    }
}
