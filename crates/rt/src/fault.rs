//! Fault points: the places where a test makes `criusd` die as if it had
//! been SIGKILLed, to check that a restarted daemon finds the true state
//! of what it was doing there.
//!
//! Compiled in only with the feature `fault-points` (the integration tests
//! turn it on through a dev-dependency; release builds never have it).
//! With the feature, `CRIUS_FAULT_POINT=<name>` in `criusd`'s environment
//! arms the point of that name; without it every point is a no-op.

/// The environment variable that arms one fault point.
pub const ENV: &str = "CRIUS_FAULT_POINT";

/// Whether fault points are compiled into this build.
pub const COMPILED_IN: bool = cfg!(feature = "fault-points");

/// Kills the process with SIGKILL when the point `name` is armed.
#[cfg(feature = "fault-points")]
pub fn point(name: &'static str) {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(name) {
        // To stderr directly: the log writer may not flush before the kill.
        eprintln!("fault point {name} reached: killing criusd");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Without the feature, a fault point is nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
