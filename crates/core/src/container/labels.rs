//! Labels of a container's containerd record, and the key that reserves a
//! container name in its pod.
//!
//! As in containerd's CRI plugin, the image config's labels come first,
//! then the request's (which win), then the labels crius owns (which win
//! over both). Keys with a reserved prefix
//! ([`crate::sandbox::labels::RESERVED_PREFIXES`]: `io.crius.`,
//! `containerd.io/`) are skipped from the image and the request: an image
//! must not steer containerd's garbage collection nor pass for a sandbox.

use std::collections::BTreeMap;

use super::ContainerRequest;
use crate::sandbox::PodSandboxRequest;
use crate::sandbox::labels::{KIND, KIND_CONTAINER, POD_NAME, POD_NAMESPACE, POD_UID, is_reserved};

/// The container's CRI name.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The ID of the container's sandbox.
pub const SANDBOX_ID: &str = "io.crius.sandbox-id";
/// containerd's limit on a label's key plus value: image labels beyond it
/// are skipped (containerd would refuse the record).
const MAX_LABEL_SIZE: usize = 4096;

/// The labels of the container record of `req` in the sandbox `sandbox_id`
/// (whose request is `sandbox`), given the image config's labels.
pub fn container_labels(
    req: &ContainerRequest,
    sandbox: &PodSandboxRequest,
    sandbox_id: &str,
    image_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = image_labels
        .iter()
        .filter(|(k, v)| !k.is_empty() && k.len() + v.len() <= MAX_LABEL_SIZE)
        .chain(&req.labels)
        .filter(|(k, _)| !is_reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in [
        (POD_NAME, sandbox.name.as_str()),
        (POD_NAMESPACE, &sandbox.namespace),
        (POD_UID, &sandbox.uid),
        (CONTAINER_NAME, &req.name),
        (KIND, KIND_CONTAINER),
        (SANDBOX_ID, sandbox_id),
    ] {
        labels.insert(key.to_string(), value.to_string());
    }
    labels
}

/// The key that reserves a container's name in its pod:
/// `<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>` (containerd's
/// `makeContainerName`).
pub fn container_name_key(req: &ContainerRequest, sandbox: &PodSandboxRequest) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        req.name, sandbox.name, sandbox.namespace, sandbox.uid, req.attempt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_a_container() {
        let sandbox = PodSandboxRequest {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            ..Default::default()
        };
        let req = ContainerRequest {
            name: "nginx".into(),
            labels: BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("from".to_string(), "request".to_string()),
                (CONTAINER_NAME.to_string(), "spoofed".to_string()),
                ("io.crius.kind".to_string(), "sandbox".to_string()),
            ]),
            ..Default::default()
        };
        let image = BTreeMap::from([
            ("from".to_string(), "image".to_string()),
            (
                "org.opencontainers.image.version".to_string(),
                "1.25".to_string(),
            ),
            (
                "containerd.io/gc.ref.content.0".to_string(),
                "x".to_string(),
            ),
            ("io.crius.sandbox-id".to_string(), "spoofed".to_string()),
            ("big".to_string(), "x".repeat(4096)),
            (POD_NAME.to_string(), "spoofed".to_string()),
        ]);
        let labels = container_labels(&req, &sandbox, "sb1", &image);
        let expected: BTreeMap<String, String> = [
            ("app", "web"),
            ("from", "request"),
            ("io.crius.kind", "container"),
            ("io.crius.sandbox-id", "sb1"),
            ("io.kubernetes.container.name", "nginx"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.namespace", "default"),
            ("io.kubernetes.pod.uid", "uid-1"),
            ("org.opencontainers.image.version", "1.25"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
        assert_eq!(
            container_name_key(&ContainerRequest { attempt: 3, ..req }, &sandbox),
            "nginx_web-0_default_uid-1_3"
        );
    }
}
