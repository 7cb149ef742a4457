//! Start-up state: what the daemon is still waiting for before it can serve.

/// Whether the daemon can serve requests that need containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Start-up is not finished; the string says what it waits for, in words
    /// fit for a client (it becomes the `Unavailable` message and the
    /// `RuntimeReady` condition's message).
    Starting(String),
    /// Connected to containerd and recovered.
    Ready,
}

impl Readiness {
    /// `Ok` when ready, else the reason for an `Unavailable` answer.
    pub fn check(&self) -> Result<(), crate::Error> {
        match self {
            Readiness::Ready => Ok(()),
            Readiness::Starting(why) => Err(crate::Error::Unavailable(format!(
                "crius is starting: {why}"
            ))),
        }
    }
}
