//! Runtime helpers every adapter shares.
//!
//! - [`blocking`]: blocking work (file systems, mounts, `setns`) off the
//!   async workers, with one mapping of a lost task to [`Error::Internal`].
//! - [`Background`]: the daemon's background tasks (exit watchers, lease
//!   clean-up, event followers), owned by one tracker and stopped at
//!   shutdown instead of detached.
//! - [`fault`]: fault points for crash tests (feature `fault-points`).

pub mod fault;

use std::future::Future;
use std::time::Duration;

use crius_core::{Error, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs `f` on tokio's blocking pool; `what` names the work in the error
/// if the task panicked or was cancelled.
pub async fn blocking<T, F>(what: &'static str, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("{what}: {e}")))?
}

/// Runs `fut` as its own task, so that the caller's cancellation (a client
/// going away mid-request) cannot cut it short halfway; `what` names the
/// work in the error if the task panicked.
pub async fn detached<T, F>(what: &'static str, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(fut)
        .await
        .map_err(|e| Error::Internal(format!("{what}: {e}")))?
}

/// The daemon's background tasks: every one is tracked, told to stop at
/// shutdown, and waited for.
#[derive(Clone, Debug, Default)]
pub struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// A fresh set with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `fut` until it ends or shutdown begins, whichever comes first.
    pub fn spawn<F>(&self, what: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = fut => {}
                () = stop.cancelled() => tracing::debug!(task = what, "stopped at shutdown"),
            }
        });
    }

    /// Runs `fut` to its end even once shutdown began (short clean-up work
    /// such as deleting a lease); shutdown still waits for it.
    pub fn spawn_to_end<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut);
    }

    /// A token that is cancelled when shutdown begins, for tasks that stop
    /// on their own terms.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Stops every task and waits up to `grace` for them; returns how many
    /// were still running then.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tracker.len(),
                "background tasks outlived shutdown"
            );
        }
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocking_maps_a_panic_to_internal() {
        let ok = blocking("adding", || Ok(1 + 1)).await;
        assert_eq!(ok.ok(), Some(2));
        let lost: Result<()> = blocking("panicking work", || panic!("boom")).await;
        match lost {
            Err(Error::Internal(m)) => assert!(m.starts_with("panicking work: "), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn shutdown_stops_endless_tasks_and_waits_for_clean_up() {
        let bg = Background::new();
        bg.spawn("endless", std::future::pending());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = bg.stopping();
        bg.spawn_to_end(async move {
            stop.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(());
        });
        assert_eq!(bg.len(), 2);
        assert_eq!(bg.shutdown(Duration::from_secs(5)).await, 0);
        assert!(rx.await.is_ok(), "clean-up ran to its end");
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace() {
        let bg = Background::new();
        bg.spawn_to_end(std::future::pending());
        assert_eq!(bg.shutdown(Duration::from_millis(10)).await, 1);
    }
}
