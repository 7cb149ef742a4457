//! The CRI gRPC layer: `runtime.v1.RuntimeService` and `ImageService`.
//!
//! Handlers only translate between CRI messages and the rest of crius; every
//! error goes through one mapping ([`edge`]) to a gRPC status.

mod edge;
mod image;
mod runtime;
pub mod state;

use std::sync::Arc;

use crius_cri_api::v1::image_service_server::ImageServiceServer;
use crius_cri_api::v1::runtime_service_server::RuntimeServiceServer;

pub use edge::to_status;
pub use image::ImageSvc;
pub use runtime::RuntimeSvc;
pub use state::State;

/// The two CRI services over one shared state, ready to add to a tonic router.
pub fn services(
    state: Arc<State>,
) -> (
    RuntimeServiceServer<RuntimeSvc>,
    ImageServiceServer<ImageSvc>,
) {
    (
        RuntimeServiceServer::new(RuntimeSvc::new(state.clone())),
        ImageServiceServer::new(ImageSvc::new(state)),
    )
}
