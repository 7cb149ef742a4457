//! `crius.v1.Admin`: crius' own RPCs for the CLI, beside CRI.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crius_core::Error;
use crius_cri_api::admin::{self, admin_server::Admin};
use tonic::{Request, Response, Status};

use crius_image::{LayerState, Phase, Progress};
use crius_registry::Credentials;
use tokio::sync::{mpsc, watch};

use crate::edge::{respond, to_status};

/// Least time between two progress messages of one pull.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

type PullStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<admin::PullImageProgress, Status>> + Send>>;

fn to_message(p: &Progress, image_ref: &str, done: bool) -> admin::PullImageProgress {
    admin::PullImageProgress {
        name: p.name.clone(),
        phase: if done {
            "done"
        } else {
            match p.phase {
                Phase::Resolving => "resolving",
                Phase::Downloading => "downloading",
                Phase::Unpacking => "unpacking",
            }
        }
        .to_string(),
        layers: p
            .layers
            .iter()
            .map(|l| admin::LayerProgress {
                digest: l.digest.clone(),
                size: l.size,
                done: l.done,
                state: match l.state {
                    LayerState::Waiting => "waiting",
                    LayerState::Downloading => "downloading",
                    LayerState::Exists => "exists",
                    LayerState::Done => "done",
                }
                .to_string(),
            })
            .collect(),
        image_ref: image_ref.to_string(),
    }
}
use crate::state::State;

/// One pull of `crius pull`, streaming its progress.
struct PullJob {
    images: Arc<crius_image::Images>,
    config: Arc<crius_core::config::Config>,
    image: String,
    credentials: Option<Credentials>,
}

impl PullJob {
    /// Pulls, sending progress at most every [`PROGRESS_INTERVAL`] and the
    /// outcome last; a client that hangs up stops the messages, not the
    /// pull.
    async fn stream_to(self, out: mpsc::Sender<Result<admin::PullImageProgress, Status>>) {
        let (tx, mut rx) = watch::channel(Progress::default());
        let pull = self.images.pull_with_progress(
            &self.config.images,
            &self.config.containerd.snapshotter,
            &self.image,
            self.credentials,
            Some(&tx),
        );
        tokio::pin!(pull);
        loop {
            tokio::select! {
                result = &mut pull => {
                    let last = match result {
                        Ok(image) => Ok(to_message(&tx.borrow(), &image.id, true)),
                        Err(e) => {
                            tracing::warn!(rpc = "PullImage(admin)", image = %self.image, "failed: {e}");
                            Err(to_status(e))
                        }
                    };
                    let _ = out.send(last).await;
                    return;
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let msg = to_message(&rx.borrow_and_update(), "", false);
                    if out.send(Ok(msg)).await.is_err() {
                        let _ = pull.await;
                        return;
                    }
                    tokio::time::sleep(PROGRESS_INTERVAL).await;
                }
            }
        }
    }
}

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
    type PullImageStream = PullStream;

    async fn reload_config(
        &self,
        _req: Request<admin::ReloadConfigRequest>,
    ) -> Result<Response<admin::ReloadConfigResponse>, Status> {
        respond("ReloadConfig", async {
            self.state.reload()?;
            let config = self.state.config();
            Ok(admin::ReloadConfigResponse {
                runtime_handlers: config.runtimes.keys().cloned().collect(),
                default_runtime: config.default_runtime.clone(),
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        req: Request<admin::PullImageRequest>,
    ) -> Result<Response<PullStream>, Status> {
        let req = req.into_inner();
        let (images, config) = respond("PullImage(admin)", async {
            if req.image.is_empty() {
                return Err(Error::invalid("image", "must name an image"));
            }
            Ok((self.state.backend()?.images.clone(), self.state.config()))
        })
        .await?
        .into_inner();
        let credentials = (!req.username.is_empty()).then(|| Credentials::Basic {
            username: req.username.clone(),
            password: req.password.clone(),
        });
        let (out, rx_out) = mpsc::channel(16);
        let pull = PullJob {
            images,
            config,
            image: req.image,
            credentials,
        };
        // The pull goes on when the client goes away (as CRI's does); it is
        // tracked, and stopped at shutdown.
        self.state
            .background()
            .spawn("admin pull", pull.stream_to(out));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx_out),
        )))
    }

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
