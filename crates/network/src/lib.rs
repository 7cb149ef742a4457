//! Pod networking through CNI: configuration discovery ([`cni`]), pinned
//! network namespaces ([`netns`]) and plugin execution ([`exec`]) and its
//! results ([`result`]); and the pod's other pinned namespaces, IPC and UTS,
//! with sysctls and reads inside pinned namespaces ([`pins`]).

pub mod cni;
mod error;
pub mod exec;
pub mod netns;
pub mod pins;
pub mod result;

pub use exec::{
    Attachment, Cni, CniError, CniResult, Interface, IpConfig, PortMapping, RuntimeConfig,
};
