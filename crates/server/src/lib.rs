//! The CRI gRPC layer: `runtime.v1.RuntimeService` and `ImageService`.
//!
//! Handlers only translate between CRI messages and the rest of crius; every
//! error goes through one mapping ([`edge`]) to a gRPC status.

mod admin;
mod census;
mod convert;
mod convert_container;
mod convert_metrics;
mod convert_status;
mod edge;
mod events;
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
pub use census::PodCensus;
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

/// The largest message crius takes or sends: containerd's CRI server and
/// kubelet's client use 16 MiB both ways (tonic's default would take only
/// 4 MiB). A larger request is refused before it is read whole
/// (OUT_OF_RANGE, naming both sizes).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// All services, ready to add to a tonic router.
pub fn services(state: Arc<State>) -> Services {
    Services {
        runtime: RuntimeServiceServer::new(RuntimeSvc::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
        image: ImageServiceServer::new(ImageSvc::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
        admin: AdminServer::new(AdminSvc::new(state))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    }
}
