//! The life of a container: its states and the events that move it.
//!
//! ```text
//!              Started                 Exited / Vanished
//!   Created ─────────────▶ Running ─────────────────────▶ Exited
//!      │                                                    ▲
//!      └──────────────── StartFailed / Exited ──────────────┘
//! ```
//!
//! `Exited` is final: a later `Exited` (a watcher and recovery both seeing
//! the same exit) changes nothing, and a `Started` that arrives after the
//! exit was recorded (a process that ended before `StartContainer` had
//! answered) only records when it started. `Unknown` comes from records
//! crius cannot read the state of; it moves as `Running` does.
//!
//! The caller persists the status an event gives before anyone sees it
//! (`crius-pod` does both under one lock per container), so a restarted
//! daemon never reports less than a client was told.

use serde::{Deserialize, Serialize};

/// Where a container is in its life (CRI `ContainerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container's changing status, persisted on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub state: ContainerState,
    /// The process id while running, else 0.
    pub pid: u32,
    /// Nanoseconds since the epoch; 0 when not started.
    pub started_at: i64,
    /// Nanoseconds since the epoch; 0 when not exited.
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled` or `StartError` once exited.
    pub reason: String,
    pub message: String,
}

/// What can happen to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    /// Its process started with `pid` at `at`.
    Started { pid: u32, at: i64 },
    /// The runtime refused to start it (e.g. the command does not exist).
    StartFailed { at: i64, message: String },
    /// Its process exited with `exit_code` at `at`; `oom` when the kernel
    /// killed it for memory.
    Exited { exit_code: i32, at: i64, oom: bool },
    /// Its task is gone without an exit status (a lost shim, a task
    /// deleted behind crius' back); `message` says how it was found.
    Vanished { at: i64, message: String },
}

/// The exit code crius reports for a start the runtime refused (as
/// containerd).
pub const START_ERROR_EXIT_CODE: i32 = 128;
/// The exit code of a container whose task vanished without a status.
pub const VANISHED_EXIT_CODE: i32 = 255;

impl ContainerStatus {
    /// The status of a container just created.
    pub fn created() -> Self {
        ContainerStatus {
            state: ContainerState::Created,
            pid: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
        }
    }

    /// The status after `event` (see the module diagram).
    pub fn after(&self, event: &ContainerEvent) -> ContainerStatus {
        let mut next = self.clone();
        if self.state == ContainerState::Exited {
            if let ContainerEvent::Started { at, .. } = event {
                next.started_at = *at;
            }
            return next;
        }
        match event {
            ContainerEvent::Started { pid, at } => {
                if self.state == ContainerState::Created {
                    next.state = ContainerState::Running;
                }
                next.pid = *pid;
                next.started_at = *at;
            }
            ContainerEvent::StartFailed { at, message } => {
                next.exit(START_ERROR_EXIT_CODE, *at, "StartError");
                next.message = message.clone();
            }
            ContainerEvent::Exited { exit_code, at, oom } => {
                let reason = match (*oom, *exit_code) {
                    (true, _) => "OOMKilled",
                    (false, 0) => "Completed",
                    (false, _) => "Error",
                };
                next.exit(*exit_code, *at, reason);
            }
            ContainerEvent::Vanished { at, message } => {
                next.exit(VANISHED_EXIT_CODE, *at, "Error");
                next.message = message.clone();
            }
        }
        next
    }

    fn exit(&mut self, exit_code: i32, at: i64, reason: &str) {
        self.state = ContainerState::Exited;
        self.pid = 0;
        self.exit_code = exit_code;
        self.finished_at = at;
        self.reason = reason.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerState::*;

    fn started() -> ContainerEvent {
        ContainerEvent::Started { pid: 42, at: 10 }
    }

    fn exited(exit_code: i32, oom: bool) -> ContainerEvent {
        ContainerEvent::Exited {
            exit_code,
            at: 20,
            oom,
        }
    }

    #[test]
    fn a_life() {
        let c = ContainerStatus::created();
        assert_eq!(c.state, Created);
        let r = c.after(&started());
        assert_eq!((r.state, r.pid, r.started_at), (Running, 42, 10));
        let e = r.after(&exited(3, false));
        assert_eq!(
            (
                e.state,
                e.pid,
                e.exit_code,
                e.finished_at,
                e.reason.as_str()
            ),
            (Exited, 0, 3, 20, "Error")
        );
        assert_eq!(e.started_at, 10);
    }

    #[test]
    fn reasons() {
        let r = ContainerStatus::created().after(&started());
        assert_eq!(r.after(&exited(0, false)).reason, "Completed");
        assert_eq!(r.after(&exited(137, true)).reason, "OOMKilled");
        let v = r.after(&ContainerEvent::Vanished {
            at: 30,
            message: "gone".into(),
        });
        assert_eq!(
            (v.state, v.exit_code, v.reason.as_str(), v.message.as_str()),
            (Exited, VANISHED_EXIT_CODE, "Error", "gone")
        );
        let f = ContainerStatus::created().after(&ContainerEvent::StartFailed {
            at: 5,
            message: "no such file".into(),
        });
        assert_eq!(
            (f.state, f.exit_code, f.reason.as_str(), f.finished_at),
            (Exited, START_ERROR_EXIT_CODE, "StartError", 5)
        );
    }

    #[test]
    fn exited_is_final() {
        let e = ContainerStatus::created()
            .after(&started())
            .after(&exited(1, false));
        // A second report of an exit (watcher and recovery) changes nothing.
        assert_eq!(e.after(&exited(0, true)), e);
        assert_eq!(
            e.after(&ContainerEvent::Vanished {
                at: 99,
                message: "x".into()
            }),
            e
        );
        // A quick exit recorded before the start was: only the start time.
        let quick = ContainerStatus::created().after(&exited(0, false));
        let late = quick.after(&ContainerEvent::Started { pid: 7, at: 1 });
        assert_eq!((late.state, late.pid, late.started_at), (Exited, 0, 1));
    }

    #[test]
    fn unknown_moves_as_running() {
        let u = ContainerStatus {
            state: Unknown,
            ..ContainerStatus::created()
        };
        assert_eq!(u.after(&exited(0, false)).state, Exited);
        assert_eq!(u.after(&started()).state, Unknown);
    }

    #[test]
    fn records_read_back() -> serde_json::Result<()> {
        // A record as crius has always written it.
        let text = r#"{"state":"Running","pid":9,"started_at":1,"finished_at":0,
                       "exit_code":0,"reason":"","message":""}"#;
        let s: ContainerStatus = serde_json::from_str(text)?;
        assert_eq!((s.state, s.pid), (Running, 9));
        assert_eq!(
            serde_json::from_str::<ContainerStatus>(&serde_json::to_string(&s)?)?,
            s
        );
        Ok(())
    }
}
