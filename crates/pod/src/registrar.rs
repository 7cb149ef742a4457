//! Names reserved atomically, with retries of an identical in-flight request
//! answered by the first one.
//!
//! kubelet retries `RunPodSandbox` / `CreateContainer` after a timeout while
//! the first call may still be running. A retry of the *same* request waits
//! for the first and gets its id; a *different* request for a taken name is
//! refused. A reservation that is dropped without [`Reservation::commit`]
//! (failure or cancellation) frees the name and tells the waiters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crius_core::{Error, Result};
use tokio::sync::watch;

/// What a waiter learns when the first request ends: its id, or nothing
/// (the first request failed, so the waiter should try again itself).
type Outcome = Option<Option<String>>;

enum Slot {
    InFlight {
        id: String,
        fingerprint: String,
        done: watch::Receiver<Outcome>,
    },
    Taken {
        id: String,
    },
}

/// The table of reserved names. Its lock is a std mutex held for a few
/// instructions, never across an `.await`.
#[derive(Default)]
pub struct Registrar {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

/// A name held by a request in flight.
pub struct Reservation {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    key: String,
    id: String,
    tx: Option<watch::Sender<Outcome>>,
}

/// The result of asking for a name.
pub enum Reserve {
    /// The name is now ours, for the given id.
    Reserved(Reservation),
    /// An identical request held it and succeeded: its id. (When that one
    /// failed, the name was free again and this request reserved it.)
    Duplicate(String),
}

impl Registrar {
    /// Reserves `key` for `id`. `fingerprint` identifies the request: an
    /// identical one waits for the request in flight.
    pub async fn reserve(&self, key: &str, id: &str, fingerprint: &str) -> Result<Reserve> {
        loop {
            let mut done = {
                let mut slots = self.lock();
                match slots.get(key) {
                    None => {
                        let (tx, rx) = watch::channel(None);
                        slots.insert(
                            key.to_string(),
                            Slot::InFlight {
                                id: id.to_string(),
                                fingerprint: fingerprint.to_string(),
                                done: rx,
                            },
                        );
                        return Ok(Reserve::Reserved(Reservation {
                            slots: self.slots.clone(),
                            key: key.to_string(),
                            id: id.to_string(),
                            tx: Some(tx),
                        }));
                    }
                    Some(Slot::InFlight {
                        fingerprint: f,
                        done,
                        ..
                    }) if f == fingerprint => done.clone(),
                    Some(Slot::InFlight { id: other, .. }) | Some(Slot::Taken { id: other }) => {
                        return Err(Error::AlreadyExists {
                            what: format!("name {key:?} (reserved for {other})"),
                        });
                    }
                }
            };
            // Wait for the request in flight to end.
            let outcome = loop {
                if let Some(outcome) = done.borrow().clone() {
                    break Some(outcome);
                }
                if done.changed().await.is_err() {
                    break None;
                }
            };
            match outcome {
                Some(Some(id)) => return Ok(Reserve::Duplicate(id)),
                // Failed or vanished: try to take the name ourselves.
                _ => continue,
            }
        }
    }

    /// Marks `key` as taken by `id` without a request in flight (recovery).
    pub fn insert_taken(&self, key: &str, id: &str) {
        self.lock()
            .insert(key.to_string(), Slot::Taken { id: id.to_string() });
    }

    /// Frees `key` if `id` holds it (removal).
    pub fn release(&self, key: &str, id: &str) {
        let mut slots = self.lock();
        let holds = matches!(slots.get(key), Some(Slot::Taken { id: i }) | Some(Slot::InFlight { id: i, .. }) if i == id);
        if holds {
            slots.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        crate::lock(&self.slots)
    }
}

impl Reservation {
    /// The id the name is reserved for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The request succeeded: the name stays taken; waiters get the id.
    pub fn commit(mut self) {
        let mut slots = crate::lock(&self.slots);
        slots.insert(
            self.key.clone(),
            Slot::Taken {
                id: self.id.clone(),
            },
        );
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(Some(self.id.clone())));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Not committed: free the name and wake the waiters.
        if let Some(tx) = self.tx.take() {
            let mut slots = crate::lock(&self.slots);
            slots.remove(&self.key);
            let _ = tx.send(Some(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identical_retry_waits_and_gets_the_same_id() {
        let r = Arc::new(Registrar::default());
        let Reserve::Reserved(first) = r.reserve("pod", "id1", "f").await.expect("free") else {
            panic!("first must reserve");
        };
        let r2 = r.clone();
        let retry = tokio::spawn(async move { r2.reserve("pod", "id2", "f").await });
        tokio::task::yield_now().await;
        assert!(!retry.is_finished());
        first.commit();
        match retry.await.expect("join").expect("ok") {
            Reserve::Duplicate(id) => assert_eq!(id, "id1"),
            _ => panic!("the retry must get the first id"),
        }
        // Once taken, a new request for the name is refused.
        assert!(matches!(
            r.reserve("pod", "id3", "f").await,
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[tokio::test]
    async fn a_different_request_is_refused_and_a_failure_frees_the_name() {
        let r = Arc::new(Registrar::default());
        let Reserve::Reserved(first) = r.reserve("pod", "id1", "f").await.expect("free") else {
            panic!("first must reserve");
        };
        assert!(matches!(
            r.reserve("pod", "id2", "other").await,
            Err(Error::AlreadyExists { .. })
        ));
        let r2 = r.clone();
        let retry = tokio::spawn(async move { r2.reserve("pod", "id2", "f").await });
        tokio::task::yield_now().await;
        drop(first); // failed or cancelled
        match retry.await.expect("join").expect("ok") {
            Reserve::Reserved(res) => assert_eq!(res.id(), "id2"),
            _ => panic!("the retry must take the freed name"),
        }
    }

    #[tokio::test]
    async fn release_frees_only_the_holder() {
        let r = Registrar::default();
        r.insert_taken("pod", "id1");
        r.release("pod", "other");
        assert!(r.reserve("pod", "x", "f").await.is_err());
        r.release("pod", "id1");
        assert!(matches!(
            r.reserve("pod", "x", "f").await,
            Ok(Reserve::Reserved(_))
        ));
    }
}
