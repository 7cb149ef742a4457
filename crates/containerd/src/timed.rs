//! The connection's calls, timed: every gRPC call to containerd goes
//! through [`Timed`], which records how long containerd took to answer
//! (until its response headers) in `crius_containerd_request_duration_seconds`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::transport::Channel;

/// A [`Channel`] whose calls are timed.
#[derive(Clone, Debug)]
pub(crate) struct Timed(pub(crate) Channel);

type Answer = Result<http::Response<Body>, tonic::transport::Error>;

impl tower::Service<http::Request<Body>> for Timed {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = method_label(req.uri().path()).to_string();
        let start = Instant::now();
        let answer = self.0.call(req);
        Box::pin(async move {
            let answer = answer.await;
            crius_metrics::global().containerd_call(&method, start.elapsed());
            answer
        })
    }
}

/// `/containerd.services.tasks.v1.Tasks/Create` as `Tasks/Create`: the
/// service's own name and the method (a fixed set: containerd's API).
fn method_label(path: &str) -> &str {
    let Some((service, _)) = path.trim_start_matches('/').split_once('/') else {
        return path;
    };
    let start = path.len() - path.trim_start_matches('/').len();
    let short = service.rsplit('.').next().unwrap_or(service);
    &path[start + service.len() - short.len()..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_is_labelled_by_its_service_and_name() {
        assert_eq!(
            method_label("/containerd.services.tasks.v1.Tasks/Create"),
            "Tasks/Create"
        );
        assert_eq!(
            method_label("/containerd.services.version.v1.Version/Version"),
            "Version/Version"
        );
        assert_eq!(method_label("/Plain/Call"), "Plain/Call");
        assert_eq!(method_label("odd"), "odd");
    }
}
