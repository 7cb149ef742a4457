//! The life of a sandbox, from crius' point of view.
//!
//! `RunPodSandbox` creates and starts the pause task in one call, and a
//! sandbox is recorded only once that succeeded, so a sandbox is born
//! [`Ready`](SandboxState::Ready). After that:
//!
//! | state      | [`Stopped`](SandboxEvent::Stopped) | [`TaskExited`](SandboxEvent::TaskExited) | [`PinLost`](SandboxEvent::PinLost) |
//! |------------|----------|------------|------------|
//! | `Ready`    | NotReady | NotReady   | NotReady   |
//! | `NotReady` | NotReady | NotReady   | NotReady   |
//! | `Unknown`  | NotReady | NotReady   | NotReady   |
//!
//! `Unknown` is for a sandbox whose state crius cannot learn. A pause pod
//! whose shim does not answer at recovery is not one: it keeps its last
//! known state (`Ready`: it was not stopped, or its task would be gone)
//! until the shim answers, as its containers keep theirs. Stop and remove work from any
//! state (both are idempotent; `RemovePodSandbox` always stops first, as
//! containerd does). A sandbox never goes back to `Ready`: kubelet makes a
//! new one (next `attempt`) instead.

/// The state of a sandbox; only [`SandboxState::Ready`] is reported to CRI
/// as `SANDBOX_READY`, everything else as `SANDBOX_NOTREADY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// The pause task runs and the pod network is set up.
    Ready,
    /// Stopped, or the pause task died.
    NotReady,
    /// Recovered without knowing whether the pause task runs.
    Unknown,
}

/// What can happen to a recorded sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxEvent {
    /// `StopPodSandbox` (or the stop inside `RemovePodSandbox`) completed.
    Stopped,
    /// The pause task exited on its own (or was killed behind crius' back).
    TaskExited,
    /// A pinned pod's namespace pin is gone (unmounted behind crius' back).
    PinLost,
}

impl SandboxState {
    /// The state of a sandbox found at recovery: `task_running` is whether
    /// its pause task runs, `None` when that could not be determined.
    pub fn recovered(task_running: Option<bool>) -> Self {
        match task_running {
            Some(true) => SandboxState::Ready,
            Some(false) => SandboxState::NotReady,
            None => SandboxState::Unknown,
        }
    }

    /// The state after `event` (see the module table).
    pub fn after(self, event: SandboxEvent) -> Self {
        match event {
            SandboxEvent::Stopped | SandboxEvent::TaskExited | SandboxEvent::PinLost => {
                SandboxState::NotReady
            }
        }
    }

    /// Whether CRI sees the sandbox as `SANDBOX_READY`.
    pub fn is_ready(self) -> bool {
        self == SandboxState::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxState::*;

    #[test]
    fn transition_table() {
        for state in [Ready, NotReady, Unknown] {
            for event in [
                SandboxEvent::Stopped,
                SandboxEvent::TaskExited,
                SandboxEvent::PinLost,
            ] {
                assert_eq!(state.after(event), NotReady, "{state:?} {event:?}");
            }
        }
        assert!(Ready.is_ready());
        assert!(!NotReady.is_ready() && !Unknown.is_ready());
    }

    #[test]
    fn recovery() {
        assert_eq!(SandboxState::recovered(Some(true)), Ready);
        assert_eq!(SandboxState::recovered(Some(false)), NotReady);
        assert_eq!(SandboxState::recovered(None), Unknown);
    }
}
