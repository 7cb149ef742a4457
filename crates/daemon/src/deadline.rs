//! A request's own deadline (`grpc-timeout`), answered as DEADLINE_EXCEEDED.
//!
//! tonic enforces the header itself, but answers CANCELLED ("Timeout
//! expired") when it runs out; clients (kubelet, crictl, the CRI validation
//! suite) expect DEADLINE_EXCEEDED when their own deadline cut the call
//! short, as containerd answers. This layer runs inside tonic's timeout and
//! gives up [`MARGIN`] earlier, so the client always sees DEADLINE_EXCEEDED.
//! Work that must not be cut short (a pod being run, an image being pulled)
//! runs in tasks of its own and is not affected.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// How much earlier than tonic's timer this layer answers: tonic polls the
/// service before its own timer, so any margin wins; a few milliseconds
/// keep it so across timer rounding.
const MARGIN: Duration = Duration::from_millis(5);

/// Adds [`Deadline`] to a tonic server.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// Answers DEADLINE_EXCEEDED when the request's `grpc-timeout` runs out.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        // The deadline counts from now, as tonic's own does (the future
        // may be polled first much later on a loaded node).
        let deadline = timeout.map(|t| (t, tokio::time::Instant::now() + t.saturating_sub(MARGIN)));
        let call = self.inner.call(req);
        Box::pin(async move {
            let Some((timeout, deadline)) = deadline else {
                return call.await;
            };
            match tokio::time::timeout_at(deadline, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the request's deadline ({timeout:?}) passed before it was done"
                ))
                .into_http()),
            }
        })
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`), as the gRPC HTTP/2 protocol defines it.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        for (v, d) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("99999999u", Duration::from_micros(99_999_999)),
            ("7n", Duration::from_nanos(7)),
        ] {
            assert_eq!(parse_grpc_timeout(v), Some(d), "{v}");
        }
        for bad in ["", "S", "100", "123456789S", "1s", "-1S", "1.5S", "1 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_deadline_exceeded() {
        use tower::{Layer, Service, ServiceExt};
        let slow = tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("late")))
        });
        let mut svc = DeadlineLayer.layer(slow);
        let req = http::Request::builder()
            .header("grpc-timeout", "50m")
            .body(())
            .expect("request");
        let started = std::time::Instant::now();
        let answer = svc
            .ready()
            .await
            .expect("ready")
            .call(req)
            .await
            .expect("answer");
        assert!(started.elapsed() < Duration::from_secs(1));
        let status = tonic::Status::from_header_map(answer.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        // The deadline counts from the call, not from the first poll (a
        // loaded node may poll late).
        let req = http::Request::builder()
            .header("grpc-timeout", "100m")
            .body(())
            .expect("request");
        let late = svc.ready().await.expect("ready").call(req);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let polled = std::time::Instant::now();
        let answer = late.await.expect("answer");
        assert!(
            polled.elapsed() < Duration::from_millis(50),
            "{:?}",
            polled.elapsed()
        );
        let status = tonic::Status::from_header_map(answer.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        // Without a deadline the call runs to its end.
        let quick = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        });
        let mut svc = DeadlineLayer.layer(quick);
        let answer = svc
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(()))
            .await
            .expect("answer");
        assert_eq!(answer.body(), "ok");
    }
}
