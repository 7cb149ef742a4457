//! OCI spec annotations of the CRI contract: VM runtimes (Kata and others)
//! read them from the spec to tell a pod's sandbox from its containers and to
//! size the VM. The keys are containerd's (`pkg/cri/annotations`).

/// `sandbox` or `container`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// [`CONTAINER_TYPE`] of a pod sandbox (the pause container).
pub const CONTAINER_TYPE_SANDBOX: &str = "sandbox";
/// [`CONTAINER_TYPE`] of a container in a pod.
pub const CONTAINER_TYPE_CONTAINER: &str = "container";

/// The sandbox's crius ID (also on every container of the pod).
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The pod's name.
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
/// The pod's Kubernetes namespace.
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
/// The pod's UID.
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
/// The pod's log directory (sandbox only).
pub const SANDBOX_LOG_DIRECTORY: &str = "io.kubernetes.cri.sandbox-log-directory";

/// CRI `resources.cpu_period` of the pod (sandbox only, when known).
pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
/// CRI `resources.cpu_quota` of the pod (sandbox only, when known).
pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
/// CRI `resources.cpu_shares` of the pod (sandbox only, when known).
pub const SANDBOX_CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
/// CRI `resources.memory_limit_in_bytes` of the pod (sandbox only, when known).
pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";

/// The container's CRI name (containers only).
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
/// The image the container was created from (containers only).
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// The pod's resources as VM runtimes read them: at RunPodSandbox in the
/// sandbox's spec, at UpdatePodSandboxResources with the sandbox task's
/// update.
pub fn resource_annotations(r: &super::Resources) -> [(&'static str, String); 4] {
    [
        (SANDBOX_CPU_PERIOD, r.cpu_period.to_string()),
        (SANDBOX_CPU_QUOTA, r.cpu_quota.to_string()),
        (SANDBOX_CPU_SHARES, r.cpu_shares.to_string()),
        (SANDBOX_MEMORY, r.memory_limit_in_bytes.to_string()),
    ]
}
