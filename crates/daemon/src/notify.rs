//! systemd readiness (`Type=notify`): `READY=1` once start-up recovery is
//! done, `STATUS=` lines while it waits, `STOPPING=1` at shutdown. Nothing
//! is sent when `$NOTIFY_SOCKET` is unset (not started by systemd).

use sd_notify::NotifyState;

/// Start-up is done: containerd answered and the state is recovered; RPCs
/// are served from now on.
pub fn ready() {
    send(&[
        NotifyState::Ready,
        NotifyState::Status("serving CRI; state recovered from containerd"),
    ]);
}

/// What start-up waits for (`systemctl status criusd` shows it).
pub fn status(why: &str) {
    send(&[NotifyState::Status(why)]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down; containers keep running"),
    ]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        // The service manager then times the start out and says so; the
        // daemon itself works on.
        tracing::warn!("cannot notify the service manager ($NOTIFY_SOCKET): {e}");
    }
}
