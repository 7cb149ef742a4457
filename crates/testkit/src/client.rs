//! A CRI client over a unix socket, as kubelet dials one.

use std::path::Path;

use anyhow::Context;
use crius_cri_api::v1::image_service_client::ImageServiceClient;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Both CRI services on one connection.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

/// A gRPC channel to the unix socket at `socket`, for clients of any
/// service (or of none: `tonic::client::Grpc` with a codec of one's own).
pub async fn channel(socket: &Path) -> anyhow::Result<Channel> {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// Connects to the CRI socket at `socket`.
pub async fn connect(socket: &Path) -> anyhow::Result<Cri> {
    let channel = channel(socket).await?;
    Ok(Cri {
        // ExecSync answers up to 2 × 16 MiB of output.
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
        image: ImageServiceClient::new(channel),
    })
}
