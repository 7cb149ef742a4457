//! What running CNI plugins fails with, and the one place it becomes a
//! [`crius_core::Error`].

use std::path::PathBuf;
use std::time::Duration;

/// A failed CNI ADD or DEL, by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// An attachment field CNI cannot carry (the caller's input).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The network's configuration cannot be used.
    #[error("CNI network config {origin}: {reason}")]
    Config { origin: String, reason: String },
    /// The pod's network namespace is not there.
    #[error("network namespace {} of {container} does not exist", .netns.display())]
    NoNetns { netns: PathBuf, container: String },
    /// No binary for a plugin the network names.
    #[error("CNI plugin {plugin:?} of network {network} not found in {dirs}")]
    NoPlugin {
        plugin: String,
        network: String,
        dirs: String,
    },
    /// A plugin could not be started.
    #[error("cannot run CNI plugin {} ({op} for network {network}): {source}", .path.display())]
    Spawn {
        path: PathBuf,
        op: &'static str,
        network: String,
        #[source]
        source: std::io::Error,
    },
    /// A plugin ran longer than allowed and was killed.
    #[error(
        "CNI plugin {plugin} {op} for network {network} did not finish within {after:?}; killed"
    )]
    Timeout {
        plugin: String,
        op: &'static str,
        network: String,
        after: Duration,
    },
    /// A plugin failed: `detail` is its CNI error (with `code`) or its exit
    /// status and output.
    #[error("CNI plugin {plugin} failed to {action} network {network}: {detail}")]
    Failed {
        plugin: String,
        action: &'static str,
        network: String,
        detail: String,
        code: Option<u64>,
    },
    /// A plugin's output is not what CNI specifies (no JSON, an invalid
    /// result, no result at all).
    #[error("{0}")]
    BadOutput(String),
    /// The result cache could not be written or removed.
    #[error("{context}: {source}")]
    Cache {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A document crius built does not serialize (a bug in crius).
    #[error("serialize {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl From<CniError> for crius_core::Error {
    fn from(e: CniError) -> Self {
        use crius_core::Error as E;
        match e {
            CniError::Invalid { field, reason } => E::invalid(field, reason),
            // The node's network is not usable as configured: kubelet's
            // retry may meet a fixed config or a plugin that recovered.
            e @ (CniError::Config { .. }
            | CniError::NoNetns { .. }
            | CniError::NoPlugin { .. }
            | CniError::Spawn { .. }
            | CniError::Failed { .. }
            | CniError::BadOutput(_)) => E::FailedPrecondition(e.to_string()),
            e @ CniError::Timeout { .. } => E::DeadlineExceeded(e.to_string()),
            CniError::Cache { context, source } => E::io(context, source),
            e @ CniError::Encode { .. } => E::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crius_core::Error as E;

    #[test]
    fn each_failure_reaches_the_client_as_what_it_means() {
        let failed = CniError::Failed {
            plugin: "bridge".into(),
            action: "add the pod to",
            network: "crius".into(),
            detail: "no IP addresses left (code 11)".into(),
            code: Some(11),
        };
        let text = failed.to_string();
        assert_eq!(
            text,
            "CNI plugin bridge failed to add the pod to network crius: no IP addresses left (code 11)"
        );
        assert!(matches!(E::from(failed), E::FailedPrecondition(m) if m == text));
        let slow = CniError::Timeout {
            plugin: "bridge".into(),
            op: "ADD",
            network: "crius".into(),
            after: Duration::from_secs(1),
        };
        assert!(matches!(E::from(slow), E::DeadlineExceeded(_)));
        let bad = CniError::Invalid {
            field: "ifname",
            reason: "\"a/b\" is not a valid interface name".into(),
        };
        assert!(matches!(E::from(bad), E::InvalidArgument { field, .. } if field == "ifname"));
    }

    #[test]
    fn io_failures_keep_their_cause() {
        let spawn = CniError::Spawn {
            path: "/opt/cni/bin/bridge".into(),
            op: "ADD",
            network: "crius".into(),
            source: std::io::Error::other("exec format error"),
        };
        assert!(std::error::Error::source(&spawn).is_some());
        let cache = CniError::Cache {
            context: "write CNI cache /x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(matches!(E::from(cache), E::Io { context, .. } if context == "write CNI cache /x"));
    }
}
