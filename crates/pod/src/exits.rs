//! Exits and OOM kills as containerd's events report them: the fallback for
//! a task whose Wait was cut off (its shim died, and containerd cleaned the
//! task up and published `128 + SIGKILL` for it), and the OOM kills the
//! shims report (on cgroup v1 and v2, whatever the cgroup driver).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crius_containerd::{Event, EventKind, TaskExit};
use futures::StreamExt;

use crate::ports;

/// How long a broken subscription waits before subscribing again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// How many exits are kept (oldest dropped first): far more than can be
/// waiting for a watcher at once.
const KEEP: usize = 512;

/// Recent init-process exits by container id.
#[derive(Default)]
pub(crate) struct Exits {
    inner: Mutex<(HashMap<String, TaskExit>, VecDeque<String>)>,
    /// Containers that had an OOM kill, oldest first.
    ooms: Mutex<VecDeque<String>>,
    following: std::sync::atomic::AtomicBool,
}

impl Exits {
    fn record(&self, id: String, exit: TaskExit) {
        let mut g = crate::lock(&self.inner);
        let (map, order) = &mut *g;
        if map.insert(id.clone(), exit).is_none() {
            order.push_back(id);
        }
        while order.len() > KEEP {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    fn record_oom(&self, id: String) {
        let mut ooms = crate::lock(&self.ooms);
        if !ooms.contains(&id) {
            ooms.push_back(id);
        }
        while ooms.len() > KEEP {
            ooms.pop_front();
        }
    }

    /// Whether containerd reported an OOM kill in container `id` (and
    /// forgets it).
    pub(crate) fn take_oom(&self, id: &str) -> bool {
        let mut ooms = crate::lock(&self.ooms);
        let before = ooms.len();
        ooms.retain(|k| k != id);
        ooms.len() != before
    }

    fn take(&self, id: &str) -> Option<TaskExit> {
        let mut g = crate::lock(&self.inner);
        let (map, order) = &mut *g;
        let exit = map.remove(id)?;
        order.retain(|k| k != id);
        Some(exit)
    }

    /// The exit of `id`'s init process, waiting up to `patience` for the
    /// event to arrive.
    pub(crate) async fn wait(&self, id: &str, patience: Duration) -> Option<TaskExit> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(e) = self.take(id) {
                return Some(e);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Follows containerd's `/tasks/exit` and `/tasks/oom` events for as
    /// long as `exits` lives (or until shutdown), subscribing again after a
    /// broken subscription.
    pub(crate) fn follow(
        exits: &Arc<Exits>,
        containerd: Arc<dyn ports::Containerd>,
        background: &crius_rt::Background,
    ) {
        if exits
            .following
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let weak = Arc::downgrade(exits);
        background.spawn("exit event follower", async move {
            let filters = vec![
                "topic==\"/tasks/exit\"".to_string(),
                "topic==\"/tasks/oom\"".to_string(),
            ];
            loop {
                match containerd.subscribe(filters.clone()).await {
                    Ok(mut stream) => {
                        while let Some(ev) = stream.next().await {
                            let Some(exits) = weak.upgrade() else { return };
                            match ev {
                                Ok(ev) => exits.on_event(ev),
                                Err(e) => {
                                    tracing::debug!("exit event subscription broke: {e}");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!("cannot subscribe to exit events: {e}"),
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            }
        });
    }

    fn on_event(&self, ev: Event) {
        match ev.kind {
            EventKind::TaskOom { container_id } => self.record_oom(container_id),
            EventKind::TaskExit {
                container_id,
                id,
                pid,
                exit_status,
                exited_at,
            } if container_id == id => self.record(
                container_id,
                TaskExit {
                    exit_status,
                    exited_at,
                    pid,
                },
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_until_taken_and_bounded() {
        let e = Exits::default();
        for i in 0..KEEP + 10 {
            e.record(
                format!("c{i}"),
                TaskExit {
                    exit_status: i as u32,
                    exited_at: None,
                    pid: 1,
                },
            );
        }
        assert!(e.take("c0").is_none(), "the oldest is dropped");
        assert_eq!(
            e.wait("c20", Duration::ZERO).await.map(|x| x.exit_status),
            Some(20)
        );
        assert!(e.take("c20").is_none(), "taken once");
    }
}
