//! A generated call: the request, whether its input is valid (the fields
//! made malformed on purpose, if any), and where it came from.

use std::time::Duration;

use crius_cri_api::v1;

macro_rules! rpcs {
    ($($name:ident),* $(,)?) => {
        /// The RPCs the fuzzer calls.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rpc { $($name),* }

        impl Rpc {
            /// Every RPC, in declaration order.
            pub const ALL: &'static [Rpc] = &[$(Rpc::$name),*];

            /// The RPC's CRI name.
            pub fn name(self) -> &'static str {
                match self { $(Rpc::$name => stringify!($name)),* }
            }
        }

        /// A request of any of the RPCs.
        // Made once per call and moved whole: boxing the big ones buys nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request { $($name(paste_request!($name))),* }

        impl Request {
            /// Which RPC this is.
            pub fn rpc(&self) -> Rpc {
                match self { $(Request::$name(_) => Rpc::$name),* }
            }
        }
    };
}

/// `v1::<Name>Request` of an RPC name (written out: no paste crate).
macro_rules! paste_request {
    (Version) => {
        v1::VersionRequest
    };
    (Status) => {
        v1::StatusRequest
    };
    (RuntimeConfig) => {
        v1::RuntimeConfigRequest
    };
    (UpdateRuntimeConfig) => {
        v1::UpdateRuntimeConfigRequest
    };
    (RunPodSandbox) => {
        v1::RunPodSandboxRequest
    };
    (StopPodSandbox) => {
        v1::StopPodSandboxRequest
    };
    (RemovePodSandbox) => {
        v1::RemovePodSandboxRequest
    };
    (PodSandboxStatus) => {
        v1::PodSandboxStatusRequest
    };
    (ListPodSandbox) => {
        v1::ListPodSandboxRequest
    };
    (CreateContainer) => {
        v1::CreateContainerRequest
    };
    (StartContainer) => {
        v1::StartContainerRequest
    };
    (StopContainer) => {
        v1::StopContainerRequest
    };
    (RemoveContainer) => {
        v1::RemoveContainerRequest
    };
    (ContainerStatus) => {
        v1::ContainerStatusRequest
    };
    (ListContainers) => {
        v1::ListContainersRequest
    };
    (ExecSync) => {
        v1::ExecSyncRequest
    };
    (Exec) => {
        v1::ExecRequest
    };
    (Attach) => {
        v1::AttachRequest
    };
    (PortForward) => {
        v1::PortForwardRequest
    };
    (UpdateContainerResources) => {
        v1::UpdateContainerResourcesRequest
    };
    (UpdatePodSandboxResources) => {
        v1::UpdatePodSandboxResourcesRequest
    };
    (ReopenContainerLog) => {
        v1::ReopenContainerLogRequest
    };
    (ContainerStats) => {
        v1::ContainerStatsRequest
    };
    (ListContainerStats) => {
        v1::ListContainerStatsRequest
    };
    (PodSandboxStats) => {
        v1::PodSandboxStatsRequest
    };
    (ListPodSandboxStats) => {
        v1::ListPodSandboxStatsRequest
    };
    (PullImage) => {
        v1::PullImageRequest
    };
    (ImageStatus) => {
        v1::ImageStatusRequest
    };
    (ListImages) => {
        v1::ListImagesRequest
    };
    (RemoveImage) => {
        v1::RemoveImageRequest
    };
    (ImageFsInfo) => {
        v1::ImageFsInfoRequest
    };
}

rpcs![
    Version,
    Status,
    RuntimeConfig,
    UpdateRuntimeConfig,
    RunPodSandbox,
    StopPodSandbox,
    RemovePodSandbox,
    PodSandboxStatus,
    ListPodSandbox,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    ContainerStatus,
    ListContainers,
    ExecSync,
    Exec,
    Attach,
    PortForward,
    UpdateContainerResources,
    UpdatePodSandboxResources,
    ReopenContainerLog,
    ContainerStats,
    ListContainerStats,
    PodSandboxStats,
    ListPodSandboxStats,
    PullImage,
    ImageStatus,
    ListImages,
    RemoveImage,
    ImageFsInfo,
];

/// One generated call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The worker that made it.
    pub worker: usize,
    /// Its index among the worker's calls (from 0).
    pub index: u64,
    /// What is sent.
    pub request: Request,
    /// The fields made malformed on purpose (`field: what`); empty when
    /// the input is valid, as kubelet could send it.
    pub flaws: Vec<String>,
    /// A deadline sent with the call (`grpc-timeout`): a client giving up.
    pub deadline: Option<Duration>,
    /// Directories the client makes before sending (as kubelet makes a
    /// pod's log directory before RunPodSandbox).
    pub mkdirs: Vec<String>,
}

impl Request {
    /// The pod or container ids the request names.
    pub fn ids(&self) -> Vec<&str> {
        let id = match self {
            Request::StopPodSandbox(q) => &q.pod_sandbox_id,
            Request::RemovePodSandbox(q) => &q.pod_sandbox_id,
            Request::PodSandboxStatus(q) => &q.pod_sandbox_id,
            Request::PodSandboxStats(q) => &q.pod_sandbox_id,
            Request::UpdatePodSandboxResources(q) => &q.pod_sandbox_id,
            Request::PortForward(q) => &q.pod_sandbox_id,
            Request::CreateContainer(q) => &q.pod_sandbox_id,
            Request::StartContainer(q) => &q.container_id,
            Request::StopContainer(q) => &q.container_id,
            Request::RemoveContainer(q) => &q.container_id,
            Request::ContainerStatus(q) => &q.container_id,
            Request::ExecSync(q) => &q.container_id,
            Request::Exec(q) => &q.container_id,
            Request::Attach(q) => &q.container_id,
            Request::UpdateContainerResources(q) => &q.container_id,
            Request::ReopenContainerLog(q) => &q.container_id,
            Request::ContainerStats(q) => &q.container_id,
            _ => return Vec::new(),
        };
        vec![id.as_str()]
    }
}

impl Call {
    /// Whether the input is valid (no field made malformed).
    pub fn valid(&self) -> bool {
        self.flaws.is_empty()
    }

    /// The call in a line: its flaws (or `valid`), its deadline, its
    /// request with strings cut short.
    pub fn summary(&self) -> String {
        use super::report::{abbreviate, shorten_strings};
        let flaws = if self.valid() {
            "valid".to_owned()
        } else {
            self.flaws.join("; ")
        };
        let deadline = self
            .deadline
            .map(|d| format!(" (deadline {d:?})"))
            .unwrap_or_default();
        let request = abbreviate(&shorten_strings(&format!("{:?}", self.request), 24), 300);
        format!("{}{deadline}; {request}", abbreviate(&flaws, 300))
    }
}

/// What a successful call answered, as far as the worker's state cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing the state needs.
    Done,
    /// The id of a pod or container made.
    Id(String),
    /// A pod's or container's state (the CRI enum value).
    State(i32),
}
