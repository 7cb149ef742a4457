//! Labels of a sandbox's containerd container record, and the key that
//! reserves a sandbox name.
//!
//! The record carries the pod's CRI labels so that listing with a label
//! selector works from containerd alone, plus labels crius owns. A CRI label
//! with a reserved prefix is skipped (not refused: kubelet never sends one):
//! - `io.crius.`: crius' own labels ([`KIND`]); a client must not be able to
//!   make a container look like a sandbox or vice versa;
//! - `containerd.io/`: containerd acts on these (`containerd.io/gc.*` steer
//!   garbage collection, for instance).

use std::collections::BTreeMap;

use super::PodSandboxRequest;

/// The pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// The pod's Kubernetes namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod's UID.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// What a crius container record is: [`KIND_SANDBOX`] or [`KIND_CONTAINER`].
pub const KIND: &str = "io.crius.kind";
/// [`KIND`] of a pod sandbox.
pub const KIND_SANDBOX: &str = "sandbox";
/// [`KIND`] of a container in a pod.
pub const KIND_CONTAINER: &str = "container";
/// Prefixes of label keys a CRI client cannot set.
pub const RESERVED_PREFIXES: [&str; 2] = ["io.crius.", "containerd.io/"];

/// Whether `key` uses one of the [`RESERVED_PREFIXES`].
pub fn is_reserved(key: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The labels of the sandbox's containerd container: the CRI labels without
/// reserved ones, then the pod metadata (winning over CRI labels of the same
/// key, which kubelet sets to the same values) and [`KIND`].
pub fn sandbox_labels(req: &PodSandboxRequest) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = req
        .labels
        .iter()
        .filter(|(k, _)| !is_reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in [
        (POD_NAME, &req.name),
        (POD_NAMESPACE, &req.namespace),
        (POD_UID, &req.uid),
    ] {
        labels.insert(key.to_string(), value.clone());
    }
    labels.insert(KIND.to_string(), KIND_SANDBOX.to_string());
    labels
}

/// The key that reserves a sandbox's name: `<name>_<namespace>_<uid>_<attempt>`
/// (containerd's `makeSandboxName`). Note the argument order differs from
/// the key's.
pub fn sandbox_name_key(name: &str, uid: &str, namespace: &str, attempt: u32) -> String {
    format!("{name}_{namespace}_{uid}_{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_a_sandbox() {
        let req = PodSandboxRequest {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            labels: BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                (POD_NAME.to_string(), "spoofed".to_string()),
                ("io.crius.kind".to_string(), "container".to_string()),
                ("io.crius.other".to_string(), "x".to_string()),
                ("containerd.io/gc.expire".to_string(), "x".to_string()),
                ("io.crius".to_string(), "kept".to_string()),
            ]),
            ..Default::default()
        };
        let labels = sandbox_labels(&req);
        let expected: BTreeMap<String, String> = [
            ("app", "web"),
            ("io.crius", "kept"),
            ("io.crius.kind", "sandbox"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.namespace", "default"),
            ("io.kubernetes.pod.uid", "uid-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn name_key_like_containerd() {
        assert_eq!(
            sandbox_name_key("web-0", "uid-1", "default", 2),
            "web-0_default_uid-1_2"
        );
    }
}
