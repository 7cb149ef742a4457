//! Which calls touched which pod or container when: a finding about a race
//! names the calls it raced with (including calls the client gave up on,
//! which go on in the daemon).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One call on one object.
#[derive(Debug, Clone)]
struct Visit {
    worker: usize,
    index: u64,
    rpc: &'static str,
    /// The call in short (its flaws, its request abbreviated).
    what: String,
    start: Instant,
    end: Option<Instant>,
    /// The client gave up (a deadline): the daemon may still be at it.
    cut: bool,
}

/// Recent calls per object id.
#[derive(Debug, Default)]
pub struct Traffic {
    visits: Mutex<HashMap<String, VecDeque<Visit>>>,
}

/// Calls kept per object; objects kept.
const PER_ID: usize = 16;
const IDS: usize = 20_000;
/// How long a call given up on may go on in the daemon.
const LINGER: Duration = Duration::from_secs(30);

/// Ids worth tracking: not empty, not huge.
fn tracked(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128
}

impl Traffic {
    /// Records that call `index` of `worker` (`rpc`, described by `what`)
    /// started on `ids`.
    pub fn begin(&self, ids: &[String], worker: usize, index: u64, rpc: &'static str, what: &str) {
        let Ok(mut v) = self.visits.lock() else {
            return;
        };
        if v.len() > IDS {
            v.clear();
        }
        let start = Instant::now();
        for id in ids.iter().filter(|id| tracked(id)) {
            let list = v.entry(id.clone()).or_default();
            if list.len() == PER_ID {
                list.pop_front();
            }
            let (end, cut) = (None, false);
            list.push_back(Visit {
                worker,
                index,
                rpc,
                what: what.to_owned(),
                start,
                end,
                cut,
            });
        }
    }

    /// Records that the call ended (`cut`: the client gave up on it).
    pub fn end(&self, ids: &[String], worker: usize, index: u64, cut: bool) {
        let Ok(mut v) = self.visits.lock() else {
            return;
        };
        for id in ids {
            let Some(list) = v.get_mut(id) else {
                continue;
            };
            for visit in list
                .iter_mut()
                .filter(|x| x.worker == worker && x.index == index)
            {
                visit.end = Some(Instant::now());
                visit.cut = cut;
            }
        }
    }

    /// The other calls on `ids` that overlapped call `index` of `worker`
    /// (or that the client gave up on shortly before it).
    pub fn overlapping(&self, ids: &[String], worker: usize, index: u64) -> Vec<String> {
        let Ok(v) = self.visits.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(list) = v.get(id) else {
                continue;
            };
            let Some(me) = list.iter().find(|x| x.worker == worker && x.index == index) else {
                continue;
            };
            let my_end = me.end.unwrap_or_else(Instant::now);
            for o in list
                .iter()
                .filter(|o| (o.worker, o.index) != (worker, index))
            {
                let o_end = o.end.unwrap_or_else(Instant::now);
                let lingering = if o.cut { o_end + LINGER } else { o_end };
                if o.start < my_end && lingering > me.start {
                    let cut = if o.cut {
                        ", given up by the client"
                    } else {
                        ""
                    };
                    let (w, i, rpc, what) = (o.worker, o.index, o.rpc, &o.what);
                    out.push(format!("worker {w} call {i} {rpc} on {id}{cut}: {what}"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_calls_on_one_object_are_named() {
        let t = Traffic::default();
        let a = vec!["pod1".to_owned()];
        t.begin(&a, 0, 1, "StopPodSandbox", "");
        t.begin(&a, 1, 7, "RemovePodSandbox", "valid");
        t.end(&a, 0, 1, false);
        t.end(&a, 1, 7, false);
        t.begin(&a, 2, 3, "PodSandboxStatus", "");
        t.end(&a, 2, 3, false);
        let seen = t.overlapping(&a, 0, 1);
        assert_eq!(
            seen,
            vec!["worker 1 call 7 RemovePodSandbox on pod1: valid".to_owned()]
        );
    }

    #[test]
    fn a_call_given_up_on_still_counts_afterwards() {
        let t = Traffic::default();
        let a = vec!["c1".to_owned()];
        t.begin(&a, 0, 1, "StartContainer", "");
        t.end(&a, 0, 1, true);
        t.begin(&a, 0, 2, "StartContainer", "");
        t.end(&a, 0, 2, false);
        let seen = t.overlapping(&a, 0, 2);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("given up by the client"), "{seen:?}");
    }
}
