//! `runtime.v1.ImageService`.

use std::collections::HashMap;
use std::sync::Arc;

use crius_core::Error;
use crius_core::image::{CriImage, parse_user};
use crius_cri_api::v1::{self, image_service_server::ImageService};
use crius_image::Query;
use crius_registry::Credentials;
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::edge::respond;
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
        let filesystems: Vec<v1::FilesystemUsage> = self
            .state
            .image_fs()
            .await?
            .into_iter()
            .map(|fs| v1::FilesystemUsage {
                timestamp: fs.timestamp,
                fs_id: Some(v1::FilesystemIdentifier {
                    mountpoint: fs.mountpoint,
                }),
                used_bytes: Some(v1::UInt64Value {
                    value: fs.usage.bytes,
                }),
                inodes_used: Some(v1::UInt64Value {
                    value: fs.usage.inodes,
                }),
            })
            .collect();
        Ok(v1::ImageFsInfoResponse {
            image_filesystems: filesystems.clone(),
            // Containers' writable layers live in the same snapshotters.
            container_filesystems: filesystems,
        })
    }
}

#[tonic::async_trait]
impl ImageService for ImageSvc {
    // KEP-5825 (alpha in 1.36): ListImages in chunks.
    type StreamImagesStream = crate::edge::Answers<v1::StreamImagesResponse>;

    async fn stream_images(
        &self,
        req: Request<v1::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = req.into_inner().filter;
        let images = self
            .list_images(Request::new(v1::ListImagesRequest { filter }))
            .await?
            .into_inner()
            .images;
        Ok(crate::edge::chunked(images, |images| {
            v1::StreamImagesResponse { images }
        }))
    }

    async fn image_fs_info(
        &self,
        _req: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        respond("ImageFsInfo", ImageSvc::image_fs_info(self)).await
    }

    async fn list_images(
        &self,
        req: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        respond("ListImages", async {
            let images = &self.state.backend()?.images;
            let found = match filter {
                Some(q) => images.find(&Query::parse(&q)?).await?.into_iter().collect(),
                None => images.list().await?,
            };
            Ok(v1::ListImagesResponse {
                images: found.into_iter().map(to_cri).collect(),
            })
        })
        .await
    }

    async fn image_status(
        &self,
        req: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        respond("ImageStatus", async {
            let query = image_query(req.image.as_ref())?;
            let images = &self.state.backend()?.images;
            let Some(image) = images.find(&query).await? else {
                return Ok(v1::ImageStatusResponse::default());
            };
            let mut info = HashMap::new();
            if req.verbose {
                let config = images.config(&image).await?;
                let verbose = json!({
                    "imageSpec": config,
                    "manifest": image.manifest,
                    "chainID": image.chain_id,
                    "records": image.record_names,
                });
                info.insert("info".to_string(), verbose.to_string());
            }
            Ok(v1::ImageStatusResponse {
                image: Some(to_cri(image)),
                info,
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        req: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        let req = req.into_inner();
        respond("PullImage", async {
            let image = req.image.map(|s| s.image).unwrap_or_default();
            // containerd refuses it too: there is nothing to pull.
            if image.is_empty() {
                return Err(Error::invalid("image.image", "must name an image"));
            }
            let credentials = req.auth.map(credentials).transpose()?;
            let backend = self.state.backend()?;
            let config = self.state.config();
            let pulled = backend
                .images
                .pull(
                    &config.images,
                    &config.containerd.snapshotter,
                    &image,
                    credentials,
                )
                .await?;
            Ok(v1::PullImageResponse {
                image_ref: pulled.id,
            })
        })
        .await
    }

    async fn remove_image(
        &self,
        req: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        respond("RemoveImage", async {
            let query = image_query(req.image.as_ref())?;
            self.state.backend()?.images.remove(&query).await?;
            Ok(v1::RemoveImageResponse {})
        })
        .await
    }
}

/// The query an `ImageSpec` names.
fn image_query(spec: Option<&v1::ImageSpec>) -> Result<Query, Error> {
    let image = spec.map(|s| s.image.as_str()).unwrap_or_default();
    if image.is_empty() {
        return Err(Error::invalid("image.image", "must name an image"));
    }
    Query::parse(image)
}

/// A CRI image from a stored one.
fn to_cri(i: CriImage) -> v1::Image {
    let (uid, username) = parse_user(&i.user);
    v1::Image {
        spec: Some(v1::ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        id: i.id,
        repo_tags: i.repo_tags,
        repo_digests: i.repo_digests,
        size: i.size,
        uid: uid.map(|value| v1::Int64Value { value }),
        username,
        pinned: i.pinned,
    }
}

/// Registry credentials from a CRI `AuthConfig`.
fn credentials(a: v1::AuthConfig) -> Result<Credentials, Error> {
    Credentials::from_parts(
        &a.username,
        &a.password,
        &a.auth,
        &a.identity_token,
        &a.registry_token,
    )
}
