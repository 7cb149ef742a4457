//! Fixtures for crius integration tests.
//!
//! Everything here runs real programs: a private containerd per test binary,
//! `criusd` on its own socket, `docker-registry` on 127.0.0.1 and test images
//! built from `busybox-static`. A missing dependency fails loudly: a test that
//! cannot run must never pass.

pub mod images;
pub mod registry;
