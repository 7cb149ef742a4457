//! `crius.v1.Admin`: crius' own RPCs for the CLI, beside CRI.

use std::path::PathBuf;
use std::sync::Arc;

use crius_core::Error;
use crius_cri_api::admin::{self, admin_server::Admin};
use tonic::{Request, Response, Status};

use crate::edge::respond;
use crate::state::State;

/// The admin service.
pub struct AdminSvc {
    state: Arc<State>,
}

impl AdminSvc {
    pub fn new(state: Arc<State>) -> Self {
        AdminSvc { state }
    }
}

#[tonic::async_trait]
impl Admin for AdminSvc {
    async fn import_images(
        &self,
        req: Request<admin::ImportImagesRequest>,
    ) -> Result<Response<admin::ImportImagesResponse>, Status> {
        let path = PathBuf::from(req.into_inner().path);
        respond("ImportImages", async {
            if path.as_os_str().is_empty() {
                return Err(Error::invalid("path", "must name an archive"));
            }
            let backend = self.state.backend()?;
            let config = self.state.config();
            let images = backend
                .images
                .import(&config.images, &config.containerd.snapshotter, &path)
                .await?;
            Ok(admin::ImportImagesResponse {
                images: images
                    .into_iter()
                    .map(|i| admin::ImportedImage {
                        id: i.id,
                        repo_tags: i.repo_tags,
                        repo_digests: i.repo_digests,
                    })
                    .collect(),
            })
        })
        .await
    }
}
