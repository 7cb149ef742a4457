//! The edge of every RPC: one span, one log line, one error mapping.

use std::future::Future;
use std::time::Instant;

use crius_core::Error;
use tonic::{Code, Response, Status};
use tracing::Instrument;

/// Maps a crius error to the gRPC status the client sees. Exhaustive on
/// purpose: a new error kind must choose its code here.
pub fn to_status(e: Error) -> Status {
    let code = match &e {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::DataLoss(_) => Code::DataLoss,
        Error::Unimplemented { .. } => Code::Unimplemented,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Containerd { .. } | Error::Io { .. } | Error::Internal(_) => Code::Internal,
    };
    Status::new(code, bounded(e.to_string()))
}

/// The most bytes of an error message sent. It travels in the
/// `grpc-message` trailer, percent-encoded (up to 3 bytes per byte); a
/// message quoting a huge input would pass the 16 KiB of headers a client
/// takes (grpc-go, h2), and the client would see a protocol error instead.
const MAX_MESSAGE: usize = 2048;

/// `message`, cut at [`MAX_MESSAGE`] bytes (on a character boundary),
/// saying how much was cut.
fn bounded(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let total = message.len();
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes)", total - end));
    message
}

/// Runs one RPC's body inside a span, logs its outcome once and maps its error.
pub(crate) async fn respond<T>(
    rpc: &'static str,
    body: impl Future<Output = Result<T, Error>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    let result = body.instrument(tracing::debug_span!("rpc", rpc)).await;
    let elapsed = start.elapsed();
    let elapsed_us = elapsed.as_micros() as u64;
    match result {
        Ok(v) => {
            crius_metrics::global().rpc(rpc, code_name(Code::Ok), elapsed);
            tracing::debug!(rpc, elapsed_us, "ok");
            Ok(Response::new(v))
        }
        Err(e) => {
            let status = to_status(e);
            crius_metrics::global().rpc(rpc, code_name(status.code()), elapsed);
            if matches!(status.code(), Code::Internal | Code::Unknown) {
                tracing::error!(rpc, elapsed_us, error = status.message(), "failed");
            } else {
                tracing::debug!(rpc, elapsed_us, code = ?status.code(), error = status.message(), "refused");
            }
            Err(status)
        }
    }
}

/// A gRPC code as its name (`crius_grpc_requests_total`'s `code`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A server stream of answers.
pub(crate) type Answers<T> =
    std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<T, Status>> + Send>>;

/// How many items one message of a list-streaming RPC carries: far below
/// gRPC's 4 MiB message limit even for big items (a pod's stats are a few
/// KiB), which is what the streaming is for.
pub(crate) const CHUNK: usize = 200;

/// A list answered as the list-streaming RPCs (KEP-5825) want it: every
/// item in exactly one message, none empty (an empty list: no message),
/// then the end of the stream.
pub(crate) fn chunked<I, T>(mut items: Vec<I>, wrap: impl Fn(Vec<I>) -> T) -> Response<Answers<T>>
where
    T: Send + 'static,
{
    let mut chunks = Vec::with_capacity(items.len().div_ceil(CHUNK));
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(CHUNK));
        chunks.push(Ok(wrap(std::mem::replace(&mut items, rest))));
    }
    Response::new(Box::pin(tokio_stream::iter(chunks)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_streams_in_chunks_each_item_once() {
        use tokio_stream::StreamExt as _;
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let items: Vec<usize> = (0..n).collect();
            let mut stream = chunked(items, |v| v).into_inner();
            let mut seen = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("no error");
                assert!(
                    !chunk.is_empty() && chunk.len() <= CHUNK,
                    "{n}: {}",
                    chunk.len()
                );
                seen.extend(chunk);
            }
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{n}");
        }
    }

    #[test]
    fn every_kind_maps_to_its_code() {
        let io = std::io::Error::other("x");
        for (e, code) in [
            (
                Error::invalid("metadata.name", "empty"),
                Code::InvalidArgument,
            ),
            (Error::not_found("pod x"), Code::NotFound),
            (
                Error::AlreadyExists { what: "x".into() },
                Code::AlreadyExists,
            ),
            (
                Error::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (Error::Unavailable("x".into()), Code::Unavailable),
            (Error::Unauthenticated("x".into()), Code::Unauthenticated),
            (Error::PermissionDenied("x".into()), Code::PermissionDenied),
            (Error::DataLoss("x".into()), Code::DataLoss),
            (Error::Unimplemented { rpc: "Exec" }, Code::Unimplemented),
            (Error::DeadlineExceeded("x".into()), Code::DeadlineExceeded),
            (
                Error::Containerd {
                    op: "x",
                    message: "y".into(),
                },
                Code::Internal,
            ),
            (Error::io("reading", io), Code::Internal),
            (Error::Internal("x".into()), Code::Internal),
        ] {
            assert_eq!(to_status(e).code(), code);
        }
        let s = to_status(Error::invalid("metadata.name", "must not be empty"));
        assert_eq!(s.message(), "invalid metadata.name: must not be empty");
        let s = to_status(Error::Unimplemented { rpc: "ExecSync" });
        assert!(s.message().contains("ExecSync"));
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn messages_quoting_huge_input_are_cut() {
        let short = to_status(Error::not_found("container abc"));
        assert_eq!(short.message(), "container abc not found");
        let huge = to_status(Error::not_found(format!(
            "container {}",
            "é".repeat(100_000)
        )));
        assert!(
            huge.message().len() < MAX_MESSAGE + 40,
            "{}",
            huge.message().len()
        );
        assert!(
            huge.message().ends_with("more bytes)"),
            "{}",
            &huge.message()[2000..]
        );
        assert_eq!(huge.code(), Code::NotFound);
    }
}
