//! How long each step of an operation took, for one debug line per
//! operation (the step table in BENCHMARKS.md is read from these lines).

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// The steps of one operation so far, in order.
pub(crate) struct Steps {
    start: Instant,
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Steps {
            start: now,
            last: now,
            done: Vec::new(),
        }
    }

    /// Step `name` ended now (it began where the previous one ended).
    pub(crate) fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    /// A step that ran beside others, with its own duration.
    pub(crate) fn beside(&mut self, name: &'static str, took: Duration) {
        self.done.push((name, took));
    }
}

/// `a=1.2ms b=0.3ms … total=1.5ms`.
impl fmt::Display for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for (name, took) in &self.done {
            write!(f, "{name}={:.2}ms ", ms(*took))?;
        }
        write!(f, "total={:.2}ms", ms(self.last - self.start))
    }
}

/// `fut`'s output and how long it took.
pub(crate) async fn timed<F: Future>(fut: F) -> (F::Output, Duration) {
    let start = Instant::now();
    let out = fut.await;
    (out, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_are_listed_in_order_with_the_total() {
        let mut s = Steps::new();
        s.mark("first");
        let ((), took) = timed(tokio::time::sleep(Duration::from_millis(5))).await;
        s.beside("slept", took);
        s.mark("second");
        let text = s.to_string();
        let names: Vec<&str> = text
            .split(' ')
            .map(|kv| kv.split('=').next().unwrap_or_default())
            .collect();
        assert_eq!(names, ["first", "slept", "second", "total"], "{text}");
        assert!(took >= Duration::from_millis(5), "{took:?}");
    }
}
