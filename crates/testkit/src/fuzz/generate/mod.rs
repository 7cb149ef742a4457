//! The generator: from a worker's state and the call's random stream, the
//! next call. It does no I/O, so the same seed, worker, index and state give
//! the same call (`tests::same_seed_same_calls`).
//!
//! Each call is built valid first (as kubelet could send it), then, for
//! about a third of the calls, one of its fields is made malformed by one
//! of the RPC's mutators; the mutation is recorded as the call's flaw.

mod containers;
mod other;
mod pods;
mod resources;

pub use pods::{CGROUP, NAMESPACE};

use std::time::Duration;

use super::Settings;
use super::bad;
use super::call::{Call, Request, Rpc};
use super::rng::Gen;
use super::state::{Ids, WorkerState};

/// Turns one field of `Q` malformed and says what it did.
pub(super) type Mutator<Q> = fn(&mut Q, &mut Ctx<'_>) -> String;

/// Makes one worker's calls.
#[derive(Debug, Clone)]
pub struct Generator {
    settings: Settings,
    worker: usize,
    /// The registry host of `settings.image` (every pulled reference names
    /// it, so no call reaches another registry).
    registry: String,
}

/// What one call's builders see.
pub(super) struct Ctx<'a> {
    pub g: Gen,
    pub s: &'a Settings,
    pub registry: &'a str,
    pub state: &'a WorkerState,
    pub foreign: &'a Ids,
    pub worker: usize,
    pub index: u64,
    malformed: bool,
    flaws: Vec<String>,
    pub mkdirs: Vec<String>,
    pub deadline: Option<Duration>,
}

impl Generator {
    /// The generator of worker `worker`.
    pub fn new(settings: &Settings, worker: usize) -> Generator {
        let registry = settings
            .image
            .split_once('/')
            .map(|(host, _)| host.to_owned())
            .unwrap_or_else(|| "localhost:1".to_owned());
        Generator {
            settings: settings.clone(),
            worker,
            registry,
        }
    }

    /// Call `index`, given what the worker has and what is on the board.
    pub fn call(&self, index: u64, state: &WorkerState, foreign: &Ids) -> Call {
        let mut g = Gen::for_call(self.settings.seed, self.worker, index);
        let malformed = g.chance(self.settings.malformed);
        let mut cx = Ctx {
            g,
            s: &self.settings,
            registry: &self.registry,
            state,
            foreign,
            worker: self.worker,
            index,
            malformed,
            flaws: Vec::new(),
            mkdirs: Vec::new(),
            deadline: None,
        };
        let rpc = choose(&mut cx);
        let request = build(rpc, &mut cx);
        if cx.deadline.is_none() && cx.g.chance(0.03) {
            cx.deadline = Some(Duration::from_millis(cx.g.between(1, 50) as u64));
        }
        Call {
            worker: self.worker,
            index,
            request,
            flaws: cx.flaws,
            deadline: cx.deadline,
            mkdirs: cx.mkdirs,
        }
    }
}

/// The RPC of the next call, weighted by what the worker has: pods and
/// containers are made up to the limits, then churned.
fn choose(cx: &mut Ctx<'_>) -> Rpc {
    let st = cx.state;
    let pods = st.pods.len();
    let full = pods >= cx.s.max_pods;
    let room = st
        .pods
        .iter()
        .any(|p| p.ready && p.containers.len() < cx.s.max_containers);
    let created = !st.containers_in(CREATED).is_empty();
    let running = !st.containers_in(RUNNING).is_empty();
    let some = |b: bool, yes: u32| if b { yes } else { 1 };
    let weights: Vec<(Rpc, u32)> = vec![
        (Rpc::RunPodSandbox, if full { 0 } else { 10 }),
        (Rpc::StopPodSandbox, some(pods > 0, 3)),
        (
            Rpc::RemovePodSandbox,
            some(pods > 0, if full { 6 } else { 3 }),
        ),
        (Rpc::PodSandboxStatus, 4),
        (Rpc::ListPodSandbox, 2),
        (Rpc::CreateContainer, some(room, 10)),
        (Rpc::StartContainer, some(created, 8)),
        (Rpc::StopContainer, some(running, 4)),
        (
            Rpc::RemoveContainer,
            some(st.containers().next().is_some(), 4),
        ),
        (Rpc::ContainerStatus, 4),
        (Rpc::ListContainers, 2),
        (Rpc::ExecSync, some(running, 5)),
        (Rpc::Exec, 2),
        (Rpc::Attach, 2),
        (Rpc::PortForward, 2),
        (Rpc::UpdateContainerResources, some(running, 3)),
        (Rpc::UpdatePodSandboxResources, 2),
        (Rpc::ReopenContainerLog, 2),
        (Rpc::ContainerStats, 2),
        (Rpc::ListContainerStats, 2),
        (Rpc::PodSandboxStats, 2),
        (Rpc::ListPodSandboxStats, 2),
        (Rpc::Status, 1),
        (Rpc::Version, 1),
        (Rpc::RuntimeConfig, 1),
        (Rpc::UpdateRuntimeConfig, 1),
        (Rpc::PullImage, 3),
        (Rpc::ImageStatus, 2),
        (Rpc::ListImages, 1),
        (Rpc::RemoveImage, 2),
        (Rpc::ImageFsInfo, 1),
    ];
    let w: Vec<u32> = weights.iter().map(|(_, w)| *w).collect();
    weights[cx.g.weighted(&w)].0
}

fn build(rpc: Rpc, cx: &mut Ctx<'_>) -> Request {
    match rpc {
        Rpc::RunPodSandbox => Request::RunPodSandbox(pods::run(cx)),
        Rpc::StopPodSandbox => Request::StopPodSandbox(pods::stop(cx)),
        Rpc::RemovePodSandbox => Request::RemovePodSandbox(pods::remove(cx)),
        Rpc::PodSandboxStatus => Request::PodSandboxStatus(pods::status(cx)),
        Rpc::ListPodSandbox => Request::ListPodSandbox(pods::list(cx)),
        Rpc::PodSandboxStats => Request::PodSandboxStats(pods::stats(cx)),
        Rpc::UpdatePodSandboxResources => {
            Request::UpdatePodSandboxResources(pods::update_resources(cx))
        }
        Rpc::ListPodSandboxStats => Request::ListPodSandboxStats(pods::list_stats(cx)),
        Rpc::PortForward => Request::PortForward(pods::port_forward(cx)),
        Rpc::CreateContainer => Request::CreateContainer(containers::create(cx)),
        Rpc::StartContainer => Request::StartContainer(containers::start(cx)),
        Rpc::StopContainer => Request::StopContainer(containers::stop(cx)),
        Rpc::RemoveContainer => Request::RemoveContainer(containers::remove(cx)),
        Rpc::ContainerStatus => Request::ContainerStatus(containers::status(cx)),
        Rpc::ListContainers => Request::ListContainers(containers::list(cx)),
        Rpc::ExecSync => Request::ExecSync(containers::exec_sync(cx)),
        Rpc::Exec => Request::Exec(containers::exec(cx)),
        Rpc::Attach => Request::Attach(containers::attach(cx)),
        Rpc::UpdateContainerResources => {
            Request::UpdateContainerResources(containers::update_resources(cx))
        }
        Rpc::ReopenContainerLog => Request::ReopenContainerLog(containers::reopen_log(cx)),
        Rpc::ContainerStats => Request::ContainerStats(containers::stats(cx)),
        Rpc::ListContainerStats => Request::ListContainerStats(containers::list_stats(cx)),
        _ => other::build(rpc, cx),
    }
}

const CREATED: i32 = crius_cri_api::v1::ContainerState::ContainerCreated as i32;
const RUNNING: i32 = crius_cri_api::v1::ContainerState::ContainerRunning as i32;

impl Ctx<'_> {
    /// When the call is to be malformed: applies one of `mutators` to `q`
    /// and records it as the call's flaw.
    pub fn mutate<Q>(&mut self, q: &mut Q, mutators: &[(&'static str, Mutator<Q>)]) {
        if !self.malformed {
            return;
        }
        let allowed: Vec<&(&str, Mutator<Q>)> = mutators
            .iter()
            .filter(|(f, _)| !self.s.skip.iter().any(|s| s == f))
            .collect();
        if allowed.is_empty() {
            return;
        }
        let (field, m) = *allowed[self.g.below(allowed.len())];
        if field.ends_with("_id") {
            // The id is replaced: the object it named is not the target.
            self.flaws.retain(|f| !f.starts_with("target:"));
        }
        let what = m(q, self);
        self.flaws.push(format!("{field}: {what}"));
    }

    /// A pod id to act on: mostly one of the worker's, else another
    /// worker's, a well-formed id nobody has, or a prefix of one of ours.
    pub fn pod_id(&mut self) -> String {
        let own: Vec<&str> = self.state.pods.iter().map(|p| p.id.as_str()).collect();
        let foreign: Vec<&str> = self.foreign.pods.iter().map(String::as_str).collect();
        self.some_id(&own, &foreign)
    }

    /// A pod id not of this worker: another worker's, or one nobody has.
    pub fn foreign_pod_id(&mut self) -> String {
        let foreign: Vec<&str> = self.foreign.pods.iter().map(String::as_str).collect();
        self.some_id(&[], &foreign)
    }

    /// A container id to act on, preferring the worker's containers last
    /// seen in `state` (any of them when none is).
    pub fn container_id(&mut self, state: Option<i32>) -> String {
        let mut own: Vec<&str> = match state {
            Some(s) => self
                .state
                .containers_in(s)
                .iter()
                .map(|c| c.id.as_str())
                .collect(),
            None => Vec::new(),
        };
        if own.is_empty() {
            own = self.state.containers().map(|c| c.id.as_str()).collect();
        }
        let foreign: Vec<&str> = self.foreign.containers.iter().map(String::as_str).collect();
        self.some_id(&own, &foreign)
    }

    fn some_id(&mut self, own: &[&str], foreign: &[&str]) -> String {
        let roll = self.g.below(100);
        let id = if roll < 75 && !own.is_empty() {
            self.g.pick(own).to_owned()
        } else if roll < 88 && !foreign.is_empty() {
            return self.g.pick(foreign).to_owned();
        } else if roll < 94 && !own.is_empty() {
            let id = self.g.pick(own);
            id[..id.len().min(12)].to_owned()
        } else {
            return self.g.hex(64);
        };
        self.note_target(&id);
        id
    }

    /// A call on an object made from malformed input inherits the flaw.
    pub fn note_target(&mut self, id: &str) {
        if let Some(origin) = self.state.origin_of(id) {
            self.flaws.push(format!("target: made by {origin}"));
        }
    }

    /// A malformed id (for an id mutator).
    pub fn bad_id(&mut self) -> bad::Bad<String> {
        bad::id(&mut self.g)
    }

    /// The scratch directory, as a string.
    pub fn scratch(&self) -> String {
        self.s.scratch.display().to_string()
    }
}

#[cfg(test)]
mod tests;
