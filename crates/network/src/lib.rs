//! Pod networking through CNI: configuration discovery ([`cni`]), pinned
//! network namespaces ([`netns`]) and plugin execution ([`exec`]) and its
//! results ([`result`]).

pub mod cni;
mod error;
pub mod exec;
pub mod netns;
pub mod result;

pub use exec::{
    Attachment, Cni, CniError, CniResult, Interface, IpConfig, PortMapping, RuntimeConfig,
};
