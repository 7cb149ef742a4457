//! Pod networking through CNI.

pub mod cni;
