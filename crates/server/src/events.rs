//! `GetContainerEvents`: a subscription's first events (each pod and
//! container as it is now), then every transition, converted to CRI.
//!
//! The stream holds no queue of its own: it reads the daemon's ring when
//! the client's connection takes the next message, so a subscriber that
//! reads nothing costs nothing but its place in the ring.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crius_cri_api::v1;
use crius_pod::events::{BUFFER, PodEvent};
use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

use crate::convert_status::event_response;
use crate::edge::Answers;

/// The stream of one subscriber. It ends with RESOURCE_EXHAUSTED once the
/// subscriber fell more than the ring's [`BUFFER`] events behind (it then
/// subscribes again, and its first events say what is there now), and
/// without error when `ending` fires (shutdown).
pub(crate) fn stream(
    now: Vec<PodEvent>,
    rx: broadcast::Receiver<Arc<PodEvent>>,
    ending: CancellationToken,
) -> Answers<v1::ContainerEventResponse> {
    Box::pin(Subscription {
        now: now.into_iter(),
        rx: BroadcastStream::new(rx),
        ending: Box::pin(ending.cancelled_owned()),
        done: false,
    })
}

struct Subscription {
    now: std::vec::IntoIter<PodEvent>,
    rx: BroadcastStream<Arc<PodEvent>>,
    ending: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl Stream for Subscription {
    type Item = Result<v1::ContainerEventResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(e) = self.now.next() {
            return Poll::Ready(Some(Ok(event_response(&e))));
        }
        if self.ending.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.rx).poll_next(cx)) {
            Some(Ok(e)) => Poll::Ready(Some(Ok(event_response(&e)))),
            Some(Err(BroadcastStreamRecvError::Lagged(missed))) => {
                tracing::info!(missed, "an event subscriber fell behind: its stream ends");
                self.done = true;
                Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "this subscriber fell {missed} events behind (crius keeps {BUFFER}); subscribe again"
                )))))
            }
            None => Poll::Ready(None),
        }
    }
}
