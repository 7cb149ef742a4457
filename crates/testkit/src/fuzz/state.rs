//! What a worker knows: the pods and containers it made (and what it last
//! saw of them), and the board where all workers post their ids so that
//! others can use them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crius_cri_api::v1;
use tonic::Code;

use super::call::{Call, Reply, Request};

/// A container a worker made.
#[derive(Debug, Clone)]
pub struct Ctr {
    /// Its id.
    pub id: String,
    /// What the worker last knew of it (a CRI `ContainerState` value).
    pub state: i32,
    /// The call that made it, when its input was malformed.
    pub origin: Option<String>,
}

/// A pod a worker made.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its id.
    pub id: String,
    /// The config it was run with (sent again with CreateContainer).
    pub config: v1::PodSandboxConfig,
    /// Whether it was READY when last seen.
    pub ready: bool,
    /// Its containers made by this worker.
    pub containers: Vec<Ctr>,
    /// The call that made it, when its input was malformed.
    pub origin: Option<String>,
}

/// One worker's objects.
#[derive(Debug, Default, Clone)]
pub struct WorkerState {
    /// Its live pods, oldest first.
    pub pods: Vec<Pod>,
    /// Pods it has asked for so far (numbers names).
    pub pods_made: u64,
    /// Containers it has asked for so far (numbers names).
    pub containers_made: u64,
}

const CREATED: i32 = v1::ContainerState::ContainerCreated as i32;
const RUNNING: i32 = v1::ContainerState::ContainerRunning as i32;
const EXITED: i32 = v1::ContainerState::ContainerExited as i32;

impl WorkerState {
    /// Every container of the worker's pods.
    pub fn containers(&self) -> impl Iterator<Item = &Ctr> {
        self.pods.iter().flat_map(|p| p.containers.iter())
    }

    /// Containers last seen in `state`.
    pub fn containers_in(&self, state: i32) -> Vec<&Ctr> {
        self.containers().filter(|c| c.state == state).collect()
    }

    fn pod_mut(&mut self, id: &str) -> Option<&mut Pod> {
        self.pods.iter_mut().find(|p| p.id == id)
    }

    fn ctr_mut(&mut self, id: &str) -> Option<&mut Ctr> {
        self.pods
            .iter_mut()
            .flat_map(|p| p.containers.iter_mut())
            .find(|c| c.id == id)
    }

    fn forget_pod(&mut self, id: &str) {
        self.pods.retain(|p| p.id != id);
    }

    fn forget_ctr(&mut self, id: &str) {
        for p in &mut self.pods {
            p.containers.retain(|c| c.id != id);
        }
    }

    /// The call that made the pod or container `id` (or the one `id` is a
    /// prefix of), when that call's input was malformed.
    pub fn origin_of(&self, id: &str) -> Option<&str> {
        let named = |other: &str| other == id || (id.len() >= 12 && other.starts_with(id));
        let pod = self.pods.iter().find(|p| named(&p.id)).map(|p| &p.origin);
        let ctr = || self.containers().find(|c| named(&c.id)).map(|c| &c.origin);
        pod.or_else(ctr).and_then(|o| o.as_deref())
    }

    /// Takes in what `call` answered.
    pub fn apply(&mut self, call: &Call, answer: &Result<Reply, Code>) {
        match answer {
            Ok(reply) => self.succeeded(call, reply),
            Err(Code::NotFound) => self.not_found(&call.request),
            Err(_) => {}
        }
    }

    fn succeeded(&mut self, call: &Call, reply: &Reply) {
        let origin =
            (!call.valid()).then(|| format!("call {} ({})", call.index, call.flaws.join("; ")));
        match (&call.request, reply) {
            (Request::RunPodSandbox(q), Reply::Id(id)) => self.pod_made(q, id, origin),
            (Request::StopPodSandbox(q), _) => self.pod_stopped(&q.pod_sandbox_id),
            (Request::RemovePodSandbox(q), _) => self.forget_pod(&q.pod_sandbox_id),
            (Request::PodSandboxStatus(q), Reply::State(s)) => {
                if let Some(p) = self.pod_mut(&q.pod_sandbox_id) {
                    p.ready = *s == v1::PodSandboxState::SandboxReady as i32;
                }
            }
            (Request::CreateContainer(q), Reply::Id(id)) => {
                let ctr = Ctr {
                    id: id.clone(),
                    state: CREATED,
                    origin,
                };
                if let Some(p) = self.pod_mut(&q.pod_sandbox_id)
                    && !p.containers.iter().any(|c| c.id == *id)
                {
                    p.containers.push(ctr);
                }
            }
            (Request::StartContainer(q), _) => self.set_ctr(&q.container_id, RUNNING),
            (Request::StopContainer(q), _) => self.set_ctr(&q.container_id, EXITED),
            (Request::RemoveContainer(q), _) => self.forget_ctr(&q.container_id),
            (Request::ContainerStatus(q), Reply::State(s)) => self.set_ctr(&q.container_id, *s),
            _ => {}
        }
    }

    fn pod_made(&mut self, q: &v1::RunPodSandboxRequest, id: &str, origin: Option<String>) {
        if self.pods.iter().any(|p| p.id == id) {
            return;
        }
        self.pods.push(Pod {
            id: id.to_owned(),
            config: q.config.clone().unwrap_or_default(),
            ready: true,
            containers: Vec::new(),
            origin,
        });
    }

    fn pod_stopped(&mut self, id: &str) {
        if let Some(p) = self.pod_mut(id) {
            p.ready = false;
            for c in &mut p.containers {
                if c.state != CREATED {
                    c.state = EXITED;
                }
            }
        }
    }

    fn set_ctr(&mut self, id: &str, state: i32) {
        if let Some(c) = self.ctr_mut(id) {
            c.state = state;
        }
    }

    /// An object of ours that is not found was removed by someone else.
    fn not_found(&mut self, request: &Request) {
        match request {
            Request::PodSandboxStatus(q) => self.forget_pod(&q.pod_sandbox_id),
            Request::ContainerStatus(q) => self.forget_ctr(&q.container_id),
            _ => {}
        }
    }
}

/// Ids that the workers made, for the others to use (most recent last).
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Ids>,
    pods: Mutex<Pods>,
}

/// A snapshot of the board.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    /// Pod ids.
    pub pods: VecDeque<String>,
    /// Container ids.
    pub containers: VecDeque<String>,
}

/// Containers' pods, as the workers made them.
#[derive(Debug, Default)]
struct Pods(HashMap<String, String>);

/// Ids kept of each kind.
const BOARD_LEN: usize = 32;

impl Board {
    /// Posts what a successful call made.
    pub fn post(&self, request: &Request, answer: &Result<Reply, Code>) {
        let Ok(Reply::Id(id)) = answer else {
            return;
        };
        let Ok(mut ids) = self.inner.lock() else {
            return;
        };
        let list = match request {
            Request::RunPodSandbox(_) => &mut ids.pods,
            Request::CreateContainer(q) => {
                self.note_pod(id, &q.pod_sandbox_id);
                &mut ids.containers
            }
            _ => return,
        };
        if list.len() == BOARD_LEN {
            list.pop_front();
        }
        list.push_back(id.clone());
    }

    fn note_pod(&self, container: &str, pod: &str) {
        if let Ok(mut p) = self.pods.lock() {
            if p.0.len() > 20_000 {
                p.0.clear();
            }
            p.0.insert(container.to_owned(), pod.to_owned());
        }
    }

    /// The pod of container `id`, if a worker made it.
    pub fn pod_of(&self, id: &str) -> Option<String> {
        self.pods.lock().ok()?.0.get(id).cloned()
    }

    /// What is on the board now.
    pub fn snapshot(&self) -> Ids {
        self.inner.lock().map(|i| i.clone()).unwrap_or_default()
    }
}
