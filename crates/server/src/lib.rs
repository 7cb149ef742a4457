//! The CRI gRPC layer: `runtime.v1.RuntimeService` and `ImageService`.
//!
//! Handlers only translate between CRI messages and the rest of crius; every
//! error goes through one mapping ([`edge`]) to a gRPC status.

mod admin;
mod convert;
mod convert_container;
mod convert_status;
mod edge;
mod image;
mod runtime;
mod service;
pub mod state;
pub mod streaming;

use std::sync::Arc;

use crius_cri_api::admin::admin_server::AdminServer;
use crius_cri_api::v1::image_service_server::ImageServiceServer;
use crius_cri_api::v1::runtime_service_server::RuntimeServiceServer;

pub use admin::AdminSvc;
pub use edge::to_status;
pub use image::ImageSvc;
pub use runtime::RuntimeSvc;
pub use state::State;

/// The services crius serves over one shared state: CRI's two and crius' admin.
pub struct Services {
    pub runtime: RuntimeServiceServer<RuntimeSvc>,
    pub image: ImageServiceServer<ImageSvc>,
    pub admin: AdminServer<AdminSvc>,
}

/// All services, ready to add to a tonic router.
pub fn services(state: Arc<State>) -> Services {
    Services {
        runtime: RuntimeServiceServer::new(RuntimeSvc::new(state.clone())),
        image: ImageServiceServer::new(ImageSvc::new(state.clone())),
        admin: AdminServer::new(AdminSvc::new(state)),
    }
}
