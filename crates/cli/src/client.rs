//! A CRI client over the daemon's unix socket.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use crius_cri_api::admin::admin_client::AdminClient;
use crius_cri_api::v1::image_service_client::ImageServiceClient;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// The CRI clients and crius' admin client, on one connection.
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    pub admin: AdminClient<Channel>,
}

/// Connects to the CRI socket at `path`.
pub async fn connect(path: &Path, timeout: Duration) -> anyhow::Result<Cri> {
    let socket = path.to_path_buf();
    // The URI is not dialled: the connector opens the socket. Its host
    // becomes the `:authority`, `localhost` as current kubelets send.
    let channel = Endpoint::from_static("http://localhost")
        .timeout(timeout)
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .with_context(|| format!("cannot connect to {} (is criusd running?)", path.display()))?;
    Ok(Cri {
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel.clone()),
        admin: AdminClient::new(channel),
    })
}
