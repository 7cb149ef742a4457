//! containerd's events (task exits, OOMs, ...) of crius' namespace, as a
//! stream.

use std::time::{Duration, Instant, SystemTime};

use crate::{Error, Result};
use containerd_client::events as ev;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use containerd_client::types::Envelope;
use futures::{Stream, StreamExt};
use prost::{Message, Name};

use crate::{Containerd, map_status, system_time, unique_suffix};

/// Topics of the events [`Containerd::events_subscribe`] publishes to learn
/// that its subscription is live; every subscriber drops them.
const SYNC_TOPIC_PREFIX: &str = "/crius/subscribe-sync/";
/// How long a subscription may take to become live.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Containerd::follow_events`] tells its handler.
#[derive(Debug)]
pub enum Followed {
    /// The subscription is live (again): events from now on arrive.
    Live,
    /// An event.
    Event(Event),
    /// The subscription broke; events are lost until the next `Live`.
    Lost,
}

/// How long [`Containerd::follow_events`] waits before subscribing again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// One event of containerd.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub namespace: String,
    /// e.g. `/tasks/exit`.
    pub topic: String,
    pub timestamp: Option<SystemTime>,
    pub kind: EventKind,
}

/// What an event says. `container_id` is the container (task) id; `id`
/// (in exits and deletes) the process: the container id for the task's
/// init process, the exec id for an exec.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    TaskCreate {
        container_id: String,
        pid: u32,
    },
    TaskStart {
        container_id: String,
        pid: u32,
    },
    TaskExit {
        container_id: String,
        id: String,
        pid: u32,
        exit_status: u32,
        exited_at: Option<SystemTime>,
    },
    TaskDelete {
        container_id: String,
        id: String,
        pid: u32,
        exit_status: u32,
        exited_at: Option<SystemTime>,
    },
    TaskOom {
        container_id: String,
    },
    TaskExecAdded {
        container_id: String,
        exec_id: String,
    },
    TaskExecStarted {
        container_id: String,
        exec_id: String,
        pid: u32,
    },
    TaskPaused {
        container_id: String,
    },
    TaskResumed {
        container_id: String,
    },
    /// Any other event (or one that did not decode); its topic.
    Other(String),
}

/// Decodes `any` as `T` when it is a `T`; `None` when it is another type,
/// `Some(Err)` when it is a `T` that does not decode.
fn decode<T: Message + Name + Default>(
    any: &prost_types::Any,
) -> Option<std::result::Result<T, prost::DecodeError>> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    (name == T::full_name()).then(|| T::decode(any.value.as_slice()))
}

impl EventKind {
    fn decode(topic: &str, any: Option<&prost_types::Any>) -> EventKind {
        let Some(any) = any else {
            return EventKind::Other(topic.to_string());
        };
        match Self::try_decode(any) {
            Some(Ok(kind)) => kind,
            Some(Err(e)) => {
                tracing::warn!(topic, type_url = %any.type_url, "containerd event does not decode: {e}");
                EventKind::Other(topic.to_string())
            }
            None => EventKind::Other(topic.to_string()),
        }
    }

    fn try_decode(
        any: &prost_types::Any,
    ) -> Option<std::result::Result<EventKind, prost::DecodeError>> {
        if let Some(r) = decode::<ev::TaskExit>(any) {
            return Some(r.map(|e| EventKind::TaskExit {
                container_id: e.container_id,
                id: e.id,
                pid: e.pid,
                exit_status: e.exit_status,
                exited_at: system_time(e.exited_at),
            }));
        }
        if let Some(r) = decode::<ev::TaskStart>(any) {
            return Some(r.map(|e| EventKind::TaskStart {
                container_id: e.container_id,
                pid: e.pid,
            }));
        }
        if let Some(r) = decode::<ev::TaskOom>(any) {
            return Some(r.map(|e| EventKind::TaskOom {
                container_id: e.container_id,
            }));
        }
        if let Some(r) = decode::<ev::TaskDelete>(any) {
            return Some(r.map(|e| EventKind::TaskDelete {
                container_id: e.container_id,
                id: e.id,
                pid: e.pid,
                exit_status: e.exit_status,
                exited_at: system_time(e.exited_at),
            }));
        }
        if let Some(r) = decode::<ev::TaskCreate>(any) {
            return Some(r.map(|e| EventKind::TaskCreate {
                container_id: e.container_id,
                pid: e.pid,
            }));
        }
        if let Some(r) = decode::<ev::TaskExecAdded>(any) {
            return Some(r.map(|e| EventKind::TaskExecAdded {
                container_id: e.container_id,
                exec_id: e.exec_id,
            }));
        }
        if let Some(r) = decode::<ev::TaskExecStarted>(any) {
            return Some(r.map(|e| EventKind::TaskExecStarted {
                container_id: e.container_id,
                exec_id: e.exec_id,
                pid: e.pid,
            }));
        }
        if let Some(r) = decode::<ev::TaskPaused>(any) {
            return Some(r.map(|e| EventKind::TaskPaused {
                container_id: e.container_id,
            }));
        }
        if let Some(r) = decode::<ev::TaskResumed>(any) {
            return Some(r.map(|e| EventKind::TaskResumed {
                container_id: e.container_id,
            }));
        }
        None
    }
}

impl From<Envelope> for Event {
    fn from(e: Envelope) -> Self {
        Event {
            kind: EventKind::decode(&e.topic, e.event.as_ref()),
            namespace: e.namespace,
            topic: e.topic,
            timestamp: system_time(e.timestamp),
        }
    }
}

/// The filters that select what matches one of `filters` in namespace
/// `ns`, and the sync events of topic `sync_topic`.
fn scoped_filters(ns: &str, filters: &[String], sync_topic: &str) -> Vec<String> {
    let ns_filter = format!("namespace=={}", quote(ns));
    let mut out: Vec<String> = if filters.is_empty() {
        vec![ns_filter.clone()]
    } else {
        filters.iter().map(|f| format!("{ns_filter},{f}")).collect()
    };
    out.push(format!("{ns_filter},topic=={}", quote(sync_topic)));
    out
}

/// `s` as a quoted value of containerd's filter syntax.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Containerd {
    /// Follows the events `filters` select in a task of its own, for as
    /// long as `handler` returns true, subscribing again after a broken
    /// subscription. The handler hears `Live` each time the subscription
    /// is (again) in place and `Lost` when it broke.
    pub fn follow_events<F>(&self, filters: Vec<String>, mut handler: F)
    where
        F: FnMut(Followed) -> bool + Send + 'static,
    {
        let containerd = self.clone();
        tokio::spawn(async move {
            loop {
                match containerd.events_subscribe(filters.clone()).await {
                    Ok(stream) => {
                        if !handler(Followed::Live) {
                            return;
                        }
                        let mut stream = std::pin::pin!(stream);
                        while let Some(ev) = stream.next().await {
                            match ev {
                                Ok(ev) => {
                                    if !handler(Followed::Event(ev)) {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    tracing::debug!(?filters, "event subscription broke: {e}");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!(?filters, "cannot subscribe to events: {e}"),
                }
                if !handler(Followed::Lost) {
                    return;
                }
                tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            }
        });
    }

    /// Subscribes to the events of this connection's namespace that match
    /// one of `filters` (containerd's filter syntax on the envelope, e.g.
    /// `topic=="/tasks/exit"` or `topic~="^/tasks/"`; all events when
    /// empty).
    ///
    /// Returns once the subscription is live: every event published after
    /// that is in the stream. The stream never ends quietly: when
    /// containerd goes away (or closes the subscription) it yields one
    /// [`Error::StreamEnded`] and ends, and the caller subscribes again
    /// (the connection reconnects by itself). Events published meanwhile
    /// are lost: after resubscribing, check the state of what matters
    /// (e.g. [`Containerd::task_get`]).
    pub async fn events_subscribe(
        &self,
        filters: Vec<String>,
    ) -> Result<impl Stream<Item = Result<Event>> + Send + 'static + use<>> {
        let sync_topic = format!("{SYNC_TOPIC_PREFIX}{}", unique_suffix());
        let filters = scoped_filters(&self.namespace, &filters, &sync_topic);
        let mut client =
            EventsClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX);
        let call = client.subscribe(self.request(SubscribeRequest {
            filters: filters.clone(),
        }));
        tokio::pin!(call);
        // containerd sends the response headers with the first event, so
        // the call completes only then: publish events of our own until
        // one comes through. Retried, as the subscription may not be
        // registered yet when the first one is published.
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        let mut delay = Duration::ZERO;
        let response = loop {
            tokio::select! {
                biased;
                r = &mut call => break r,
                () = tokio::time::sleep(delay) => {
                    if Instant::now() > deadline {
                        return Err(Error::TimedOut(format!(
                            "containerd event subscription not live within {SUBSCRIBE_TIMEOUT:?}"
                        )));
                    }
                    self.publish_sync(&sync_topic).await?;
                    delay = (delay * 2).clamp(Duration::from_millis(10), Duration::from_millis(200));
                }
            }
        };
        let streaming = response
            .map_err(|s| {
                // containerd 1.6 sends a bad filter back as Unknown with
                // errdefs' text at the end.
                if s.code() == tonic::Code::Unknown && s.message().ends_with(": invalid argument") {
                    Error::Invalid {
                        field: "event filters".into(),
                        reason: s.message().to_string(),
                    }
                } else {
                    map_status("events subscribe")(s)
                }
            })?
            .into_inner();
        tracing::debug!(?filters, "subscribed to containerd events");
        Ok(futures::stream::unfold(
            Some(streaming),
            |state| async move {
                let mut streaming = state?;
                loop {
                    match streaming.message().await {
                        Ok(Some(envelope)) if envelope.topic.starts_with(SYNC_TOPIC_PREFIX) => {}
                        Ok(Some(envelope)) => {
                            return Some((Ok(Event::from(envelope)), Some(streaming)));
                        }
                        Ok(None) => {
                            let e = Error::StreamEnded("containerd closed the event stream".into());
                            return Some((Err(e), None));
                        }
                        Err(s) => {
                            let e = Error::StreamEnded(format!("containerd event stream: {s}"));
                            return Some((Err(e), None));
                        }
                    }
                }
            },
        ))
    }

    /// Publishes an empty event of `topic` in this namespace.
    async fn publish_sync(&self, topic: &str) -> Result<()> {
        let empty = prost_types::Any {
            type_url: "google.protobuf.Empty".into(),
            value: vec![],
        };
        EventsClient::new(self.channel.clone())
            .publish(self.request(PublishRequest {
                topic: topic.to_string(),
                event: Some(empty),
            }))
            .await
            .map_err(map_status("events publish"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_scoped_to_the_namespace() {
        assert_eq!(
            scoped_filters("crius", &[], "/s/1"),
            vec![
                r#"namespace=="crius""#.to_string(),
                r#"namespace=="crius",topic=="/s/1""#.to_string()
            ]
        );
        assert_eq!(
            scoped_filters("k8s.io", &[r#"topic=="/tasks/exit""#.to_string()], "/s/2"),
            vec![
                r#"namespace=="k8s.io",topic=="/tasks/exit""#.to_string(),
                r#"namespace=="k8s.io",topic=="/s/2""#.to_string()
            ]
        );
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn decodes_task_events() {
        let exit = ev::TaskExit {
            container_id: "c".into(),
            id: "c".into(),
            pid: 42,
            exit_status: 3,
            exited_at: None,
        };
        let any = prost_types::Any {
            type_url: "containerd.events.TaskExit".into(),
            value: exit.encode_to_vec(),
        };
        let event = Event::from(Envelope {
            timestamp: None,
            namespace: "ns".into(),
            topic: "/tasks/exit".into(),
            event: Some(any.clone()),
        });
        assert_eq!(
            event.kind,
            EventKind::TaskExit {
                container_id: "c".into(),
                id: "c".into(),
                pid: 42,
                exit_status: 3,
                exited_at: None
            }
        );
        let oom = prost_types::Any {
            type_url: "types.googleapis.com/containerd.events.TaskOOM".into(),
            value: ev::TaskOom {
                container_id: "c".into(),
            }
            .encode_to_vec(),
        };
        assert_eq!(
            EventKind::decode("/tasks/oom", Some(&oom)),
            EventKind::TaskOom {
                container_id: "c".into()
            }
        );
        let garbage = prost_types::Any {
            type_url: any.type_url,
            value: vec![0xff, 0xff],
        };
        assert_eq!(
            EventKind::decode("/tasks/exit", Some(&garbage)),
            EventKind::Other("/tasks/exit".into())
        );
        assert_eq!(EventKind::decode("/x", None), EventKind::Other("/x".into()));
    }
}
