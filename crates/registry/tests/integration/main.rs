//! Integration tests of crius-registry against a real `docker-registry`
//! serving the test images, plus a fake HTTP server for what a real
//! registry will not do (stalls, lies, auth flows).

mod auth;
mod common;
mod fake;
mod mirror;
mod real;
mod tls;
