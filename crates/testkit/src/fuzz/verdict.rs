//! What counts as a finding. The rule: INTERNAL only for faults of the
//! runtime or its dependencies, never for what a client sent or a race it
//! caused; UNKNOWN never; every call answered, the daemon alive after each,
//! no panic, nothing left behind.

use std::time::Duration;

use tonic::Code;

use super::call::Call;
use super::report::{abbreviate, shorten_strings};

/// Kinds of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// INTERNAL for a call with valid input.
    InternalForValid,
    /// INTERNAL for a call with malformed input: the client's fault.
    InternalForMalformed,
    /// UNKNOWN, for any input.
    Unknown,
    /// INVALID_ARGUMENT for a call with valid input (kubelet could send it).
    ValidRefused,
    /// An answer the client's HTTP/2 layer refused ("h2 protocol error":
    /// e.g. headers over hyper's 16 KB limit, an error message that echoes
    /// a huge input); the client may lose its connection too.
    BrokenAnswer,
    /// No answer within the call timeout.
    Hang,
    /// The daemon did not answer Version after a call.
    Unresponsive,
    /// A panic in the daemon's log.
    Panic,
    /// Something the fuzzer made was left after it removed everything.
    Leak,
}

impl Kind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InternalForValid => "INTERNAL for valid input",
            Kind::InternalForMalformed => "INTERNAL for malformed input",
            Kind::Unknown => "UNKNOWN",
            Kind::ValidRefused => "valid input refused (INVALID_ARGUMENT)",
            Kind::BrokenAnswer => {
                "answer refused by the client's HTTP/2 layer (headers over its 16 KB limit? a message quoting a huge input?)"
            }
            Kind::Hang => "hang (no answer)",
            Kind::Unresponsive => "daemon unresponsive after a call",
            Kind::Panic => "panic in the daemon's log",
            Kind::Leak => "left behind",
        }
    }
}

/// What tonic's client says when h2 refused an answer (not the server's
/// own status).
pub const H2_ERROR: &str = "h2 protocol error";

/// The finding an answer (`code`, `message`) makes, for input that is
/// `valid` or not.
pub fn classify(valid: bool, code: Code, message: &str) -> Option<Kind> {
    if code != Code::Ok && message.starts_with(H2_ERROR) {
        return Some(Kind::BrokenAnswer);
    }
    match code {
        Code::Unknown => Some(Kind::Unknown),
        Code::Internal if valid => Some(Kind::InternalForValid),
        Code::Internal => Some(Kind::InternalForMalformed),
        Code::InvalidArgument if valid => Some(Kind::ValidRefused),
        _ => None,
    }
}

/// One finding, with what it takes to make it again.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What is wrong.
    pub kind: Kind,
    /// The RPC (empty for findings of the whole run: a panic, a leak).
    pub rpc: &'static str,
    /// The gRPC code answered, if any.
    pub code: Option<Code>,
    /// The status message, or what was seen.
    pub message: String,
    /// The run's seed.
    pub seed: u64,
    /// The worker and the index of its call (`worker`, `index`).
    pub at: Option<(usize, u64)>,
    /// The fields made malformed (empty: valid input).
    pub flaws: Vec<String>,
    /// The deadline the call was sent with, if any.
    pub deadline: Option<Duration>,
    /// The request, abbreviated (long strings shortened).
    pub request: String,
    /// Other calls on the same pod or container at the time.
    pub concurrent: Vec<String>,
}

/// Longest request text kept in a finding.
const REQUEST_CHARS: usize = 1500;

impl Finding {
    /// A finding about call `call`.
    pub fn of_call(
        kind: Kind,
        call: &Call,
        seed: u64,
        code: Option<Code>,
        message: &str,
    ) -> Finding {
        Finding {
            kind,
            rpc: call.request.rpc().name(),
            code,
            message: abbreviate(message, 600),
            seed,
            at: Some((call.worker, call.index)),
            flaws: call.flaws.clone(),
            deadline: call.deadline,
            request: abbreviate(
                &shorten_strings(&format!("{:?}", call.request), 80),
                REQUEST_CHARS,
            ),
            concurrent: Vec::new(),
        }
    }

    /// A finding about the whole run.
    pub fn of_run(kind: Kind, seed: u64, message: &str) -> Finding {
        Finding {
            kind,
            rpc: "",
            code: None,
            message: abbreviate(message, 600),
            seed,
            at: None,
            flaws: Vec::new(),
            deadline: None,
            request: String::new(),
            concurrent: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_unknown_are_always_findings() {
        for valid in [true, false] {
            assert_eq!(classify(valid, Code::Unknown, ""), Some(Kind::Unknown));
            assert!(matches!(
                classify(valid, Code::Internal, ""),
                Some(Kind::InternalForValid | Kind::InternalForMalformed)
            ));
        }
        assert_eq!(
            classify(true, Code::Internal, ""),
            Some(Kind::InternalForValid)
        );
        assert_eq!(
            classify(false, Code::Internal, ""),
            Some(Kind::InternalForMalformed)
        );
    }

    #[test]
    fn invalid_argument_only_for_valid_input() {
        assert_eq!(
            classify(true, Code::InvalidArgument, ""),
            Some(Kind::ValidRefused)
        );
        assert_eq!(classify(false, Code::InvalidArgument, ""), None);
    }

    #[test]
    fn answers_the_client_could_not_take_are_findings() {
        let m = "h2 protocol error: http2 error";
        assert_eq!(classify(false, Code::Internal, m), Some(Kind::BrokenAnswer));
        assert_eq!(
            classify(false, Code::ResourceExhausted, m),
            Some(Kind::BrokenAnswer)
        );
        assert_eq!(classify(false, Code::ResourceExhausted, "too big"), None);
    }

    #[test]
    fn client_errors_and_preconditions_are_fine() {
        for code in [
            Code::Ok,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unimplemented,
            Code::ResourceExhausted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::PermissionDenied,
            Code::Aborted,
        ] {
            assert_eq!(classify(true, code, ""), None, "{code:?}");
            assert_eq!(classify(false, code, ""), None, "{code:?}");
        }
    }
}
