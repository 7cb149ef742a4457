//! Recording fakes of every port ([`crate::ports`]): one in-memory world
//! (containerd's containers, tasks, snapshots and leases; network
//! namespaces and CNI attachments; images; the host's files and mounts)
//! that records every call in order and fails the calls it is told to.
//!
//! Compiled for this crate's tests and, with the `test-util` feature, for
//! other crates' tests; never part of a daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use crius_containerd::{
    ContainerRecord, Event, Mount, Stdio, TaskExit, TaskInfo, TaskStatus, Usage,
};
use crius_core::config::ImagesConfig;
use crius_core::container::Device;
use crius_core::image::CriImage;
use crius_core::{Error, Result};
use crius_image::Query;
use crius_network::cni::{NetworkConfig, NotReady};
use crius_network::exec::Attachment;
use crius_network::pins::{PinPlan, Pins};
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::Ports;
use crate::ports::{self, Found, HostLookup, Made};

/// A task of the fake containerd.
#[derive(Debug)]
pub struct FakeTask {
    pub pid: u32,
    pub status: TaskStatus,
    /// Set once the process exited; waiters watch it.
    exit: watch::Sender<Option<TaskExit>>,
    /// The write ends of the task's stdout/stderr FIFOs, held as a shim
    /// holds them: closed at the exit, so the log copy sees EOF.
    pipes: Vec<std::fs::File>,
    /// The read end of its stdin FIFO, as the shim holds it until CloseIO.
    stdin: Option<std::fs::File>,
}

/// An exec process of the fake containerd.
#[derive(Debug)]
pub struct FakeExec {
    pub pid: u32,
    pub started: bool,
    /// Whether the process runs on a terminal.
    pub terminal: bool,
    /// Set once the process exited; waiters watch it.
    exit: watch::Sender<Option<TaskExit>>,
    /// The write ends of its stdout/stderr FIFOs (as the shim holds them),
    /// stdout first; closed at the exit.
    pipes: Vec<std::fs::File>,
    /// Its stdout FIFO, which the shim opens again, blocking, at the start
    /// (`None`: not checked, the fake holds it read-write).
    stdout: Option<String>,
    /// The read end of its stdin FIFO, as the shim holds it until CloseIO.
    stdin: Option<std::fs::File>,
}

/// Everything the fakes hold.
#[derive(Debug, Default)]
pub struct World {
    /// Every call, in order: `"op arg…"` (with `lease=…` when leased).
    pub calls: Vec<String>,
    /// `(op, nth)`: the nth call (from 1) of `op` fails.
    /// `(op, nth call, message)`.
    failures: Vec<(String, usize, String)>,
    counts: BTreeMap<String, usize>,
    pub containers: BTreeMap<String, ContainerRecord>,
    pub tasks: BTreeMap<String, FakeTask>,
    /// `(container id, exec id)`.
    pub execs: BTreeMap<(String, String), FakeExec>,
    /// Execs run until [`Fake::exec_exit`] or a kill; otherwise (the
    /// default) each exits with 0 as soon as it starts.
    pub hold_execs: bool,
    /// A task's exit takes its execs' waits down with it (their shim went
    /// away: containerd's "ttrpc: closed") instead of ending them with 137.
    pub exec_waits_break: bool,
    /// `(snapshotter, key)`.
    pub snapshots: BTreeSet<(String, String)>,
    pub leases: BTreeSet<String>,
    /// Chain ids whose layers are unpacked.
    pub unpacked: BTreeSet<String>,
    pub images: Vec<CriImage>,
    pub netns: BTreeSet<PathBuf>,
    /// Container ids of CNI attachments.
    pub attachments: BTreeSet<String>,
    /// `None`: no CNI network is configured.
    pub network: Option<String>,
    pub dirs: BTreeSet<PathBuf>,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// Files of the host crius only reads (profiles, cgroup files).
    pub host_files: BTreeMap<PathBuf, String>,
    pub mounts: BTreeSet<PathBuf>,
    /// Tasks whose shim died: their waiters' Wait breaks off with an error
    /// (not NotFound), as the shim's connection closes.
    dead_shims: BTreeSet<String>,
    /// Tasks whose shim died before anyone waited: Wait answers NotFound at
    /// once, and the exit event is the test's to publish.
    gone_at_wait: BTreeSet<String>,
    /// Tasks whose shim does not answer: `task_get` hangs until the test
    /// lets it ([`Fake::silence`]).
    silent_shims: BTreeSet<String>,
    /// Tasks whose start hangs until the test lets it ([`Fake::hold_start`]).
    held_starts: BTreeSet<String>,
    /// Exec starts wait until this turns true (a test's gate).
    pub exec_start_gate: Option<watch::Receiver<bool>>,
    /// The live event subscriptions.
    subscribers: Vec<tokio::sync::mpsc::UnboundedSender<Event>>,
    /// What the rootfs reader finds: `(passwd, group)`.
    pub rootfs_etc: (Option<String>, Option<String>),
    /// Image sub-paths the fake's images lack.
    pub missing_sub_paths: BTreeSet<String>,
    /// The resources (and annotations) each task was last updated with.
    pub task_resources:
        BTreeMap<String, (oci_spec::runtime::LinuxResources, BTreeMap<String, String>)>,
    /// What each OCI runtime binary says it supports (absent: it cannot
    /// say); `runc` knows `rro` unless a test changes it.
    pub oci_runtimes: BTreeMap<String, crius_core::runtime::OciFeatures>,
    /// The CRIU version on the fake's `PATH` (`None`: none).
    pub criu: Option<u32>,
    /// The parent each snapshot was made on.
    pub snapshot_parents: BTreeMap<(String, String), String>,
    /// Idmapped mounts cannot be made (the file system says EINVAL).
    pub no_idmap: bool,
    /// Archives written: their path and the names in them, sorted.
    pub archives: BTreeMap<PathBuf, Vec<String>>,
    next_pid: u32,
}

/// The fakes, sharing one [`World`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fake {
    world: Arc<Mutex<World>>,
    lease: Option<String>,
}

impl Default for Fake {
    fn default() -> Self {
        Self::new()
    }
}

impl Fake {
    /// An empty world with a CNI network named `fake-net`.
    pub fn new() -> Self {
        let runc = crius_core::runtime::OciFeatures {
            mount_options: Some(["ro", "rro", "rbind"].map(String::from).into()),
            user_namespace: true,
        };
        let world = World {
            network: Some("fake-net".into()),
            oci_runtimes: BTreeMap::from([("runc".to_string(), runc)]),
            criu: Some(40101),
            next_pid: 100,
            ..Default::default()
        };
        Fake {
            world: Arc::new(Mutex::new(world)),
            lease: None,
        }
    }

    /// The ports of a [`crate::Pods`] over this world.
    pub fn ports(&self) -> Ports {
        Ports {
            containerd: Arc::new(self.clone()),
            images: Arc::new(self.clone()),
            network: Arc::new(self.clone()),
            fs: Arc::new(self.clone()),
            runtimes: Arc::new(self.clone()),
        }
    }

    /// The world, locked. A panic in a test holding it does not matter to
    /// the others: the poisoned lock is taken over.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the `nth` call (from 1, counted from now) of `op` fail with
    /// `Internal("injected …")`.
    pub fn fail(&self, op: &str, nth: usize) {
        self.fail_with(op, nth, &format!("injected failure of {op}"));
    }

    /// [`Fake::fail`] with `Internal(message)`.
    pub fn fail_with(&self, op: &str, nth: usize, message: &str) {
        let mut w = self.world();
        let done = w.counts.get(op).copied().unwrap_or(0);
        w.failures
            .push((op.to_string(), done + nth, message.to_string()));
    }

    /// Makes `id`'s shim silent (`task_get` hangs) or lets it answer again.
    pub fn silence(&self, id: &str, silent: bool) {
        let mut w = self.world();
        match silent {
            true => w.silent_shims.insert(id.to_string()),
            false => w.silent_shims.remove(id),
        };
    }

    /// Makes `id`'s task start hang (`held`) until called again with
    /// false: a start caught half-way, its task created.
    pub fn hold_start(&self, id: &str, held: bool) {
        let mut w = self.world();
        match held {
            true => w.held_starts.insert(id.to_string()),
            false => w.held_starts.remove(id),
        };
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    /// The ops of every call so far, in order.
    pub fn ops(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| c.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    /// Adds an image (unpacked).
    pub fn add_image(&self, image: CriImage) {
        let mut w = self.world();
        w.unpacked.insert(image.chain_id.clone());
        w.images.push(image);
    }

    /// Makes the process of `id`'s task exit with `code` (its execs die
    /// with it, as its PID namespace goes).
    pub fn exit(&self, id: &str, code: u32) {
        if self.world().exec_waits_break {
            self.world().execs.retain(|(c, _), _| c != id);
        }
        for exec_id in self.exec_ids(id) {
            self.exec_exit(id, &exec_id, 137);
        }
        let mut w = self.world();
        if let Some(t) = w.tasks.get_mut(id) {
            t.status = TaskStatus::Stopped;
            t.pipes.clear();
            t.stdin = None;
            t.exit.send_replace(Some(TaskExit {
                exit_status: code,
                exited_at: Some(std::time::SystemTime::now()),
                pid: t.pid,
            }));
        }
    }

    /// Publishes `event` to every subscription.
    pub fn publish(&self, event: Event) {
        self.world()
            .subscribers
            .retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// The shim of `id`'s task dies: containerd publishes the exit
    /// (`128 + SIGKILL`) and cleans the task up, so waiters get NotFound.
    pub fn shim_dies(&self, id: &str) {
        self.publish_shim_exit(id);
        let mut w = self.world();
        w.dead_shims.insert(id.to_string());
        w.tasks.remove(id);
    }

    /// The exit containerd publishes for a task whose shim died.
    pub fn publish_shim_exit(&self, id: &str) {
        let pid = self.world().tasks.get(id).map_or(0, |t| t.pid);
        self.publish(Event {
            namespace: "crius".into(),
            topic: "/tasks/exit".into(),
            timestamp: None,
            kind: crius_containerd::EventKind::TaskExit {
                container_id: id.to_string(),
                id: id.to_string(),
                pid,
                exit_status: 137,
                exited_at: Some(std::time::SystemTime::now()),
            },
        });
    }

    /// `id`'s shim will have died by the time its task is first waited
    /// for: that Wait answers NotFound; the exit event comes when the test
    /// publishes it ([`Fake::publish_shim_exit`]).
    pub fn task_gone_at_wait(&self, id: &str) {
        self.world().gone_at_wait.insert(id.to_string());
    }

    /// What is left of everything a create makes, as lines (empty when
    /// nothing is).
    pub fn leftovers(&self) -> Vec<String> {
        let w = self.world();
        let mut out: Vec<String> = Vec::new();
        out.extend(w.containers.keys().map(|k| format!("container {k}")));
        out.extend(w.tasks.keys().map(|k| format!("task {k}")));
        out.extend(w.execs.keys().map(|(c, e)| format!("exec {c}/{e}")));
        out.extend(w.snapshots.iter().map(|(s, k)| format!("snapshot {s}/{k}")));
        out.extend(w.leases.iter().map(|l| format!("lease {l}")));
        out.extend(w.netns.iter().map(|p| format!("netns {}", p.display())));
        out.extend(w.attachments.iter().map(|a| format!("cni {a}")));
        out.extend(w.dirs.iter().map(|d| format!("dir {}", d.display())));
        out.extend(w.files.keys().map(|f| format!("file {}", f.display())));
        out.extend(w.mounts.iter().map(|m| format!("mount {}", m.display())));
        out
    }

    /// Records a call of `op` and fails it when told to.
    fn call(&self, op: &str, args: std::fmt::Arguments<'_>) -> Result<()> {
        let mut w = self.world();
        let line = match &self.lease {
            Some(l) => format!("{op} {args} lease={l}"),
            None => format!("{op} {args}"),
        };
        w.calls.push(line.trim_end().to_string());
        let n = {
            let c = w.counts.entry(op.to_string()).or_default();
            *c += 1;
            *c
        };
        match w.failures.iter().position(|(o, at, _)| o == op && *at == n) {
            Some(i) => {
                let (_, _, message) = w.failures.remove(i);
                Err(Error::Internal(message))
            }
            None => Ok(()),
        }
    }
}

/// Opens the write ends of `stdio`'s FIFOs (their readers are open).
fn open_pipes(stdio: &Stdio) -> Result<Vec<std::fs::File>> {
    open_pipes_with(stdio, false)
}

/// Opens the write ends of `stdio`'s FIFOs; with `early`, read-write, so
/// that this works before crius opened its read ends (as the shim's
/// asynchronous open does; ExecSync opens them in tasks of their own).
fn open_pipes_with(stdio: &Stdio, early: bool) -> Result<Vec<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    [&stdio.stdout, &stdio.stderr]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            std::fs::OpenOptions::new()
                .read(early)
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(p)
                .map_err(|e| Error::io(format!("opening FIFO {p}"), e))
        })
        .collect()
}

/// Whether the FIFO at `path` has a reader (a non-blocking open for
/// writing fails with ENXIO when not).
fn has_reader(path: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .is_ok()
}

/// Opens the read end of `stdio`'s stdin FIFO (non-blocking), as the shim
/// does.
fn open_stdin(stdio: &Stdio) -> Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    if stdio.stdin.is_empty() {
        return Ok(None);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&stdio.stdin)
        .map(Some)
        .map_err(|e| Error::io(format!("opening FIFO {}", stdio.stdin), e))
}

fn not_found(what: String) -> Error {
    Error::not_found(what)
}

#[async_trait]
impl ports::Containers for Fake {
    async fn container_create(&self, record: &ContainerRecord) -> Result<()> {
        self.call("container_create", format_args!("{}", record.id))?;
        let mut w = self.world();
        if w.containers.contains_key(&record.id) {
            return Err(Error::AlreadyExists {
                what: format!("container {}", record.id),
            });
        }
        w.containers.insert(record.id.clone(), record.clone());
        Ok(())
    }
    async fn container_get(&self, id: &str) -> Result<Option<ContainerRecord>> {
        self.call("container_get", format_args!("{id}"))?;
        Ok(self.world().containers.get(id).cloned())
    }
    async fn container_list(&self, filters: &[String]) -> Result<Vec<ContainerRecord>> {
        self.call("container_list", format_args!("{}", filters.join(",")))?;
        // The filters crius uses select by `io.crius.kind`.
        let kind = filters
            .iter()
            .find_map(|f| f.rsplit("==").next().map(str::to_string));
        Ok(self
            .world()
            .containers
            .values()
            .filter(|r| {
                kind.as_ref()
                    .is_none_or(|k| r.labels.get(crius_core::sandbox::labels::KIND) == Some(k))
            })
            .cloned()
            .collect())
    }
    async fn container_set_extension(
        &self,
        id: &str,
        name: &str,
        value: prost_types::Any,
    ) -> Result<()> {
        self.call("container_set_extension", format_args!("{id} {name}"))?;
        let mut w = self.world();
        let r = w
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found(format!("container {id}")))?;
        r.extensions.insert(name.to_string(), value);
        Ok(())
    }
    async fn container_set_spec(&self, id: &str, spec: &oci_spec::runtime::Spec) -> Result<()> {
        self.call("container_set_spec", format_args!("{id}"))?;
        let mut w = self.world();
        let r = w
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found(format!("container {id}")))?;
        r.spec = spec.clone();
        Ok(())
    }
    async fn container_delete(&self, id: &str) -> Result<()> {
        self.call("container_delete", format_args!("{id}"))?;
        let mut w = self.world();
        if w.tasks.contains_key(id) {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has a task: delete the task first"
            )));
        }
        w.containers.remove(id);
        Ok(())
    }
}

#[async_trait]
impl ports::Tasks for Fake {
    async fn task_create(
        &self,
        id: &str,
        _rootfs: Vec<Mount>,
        stdio: &Stdio,
        _runtime_path: &str,
    ) -> Result<u32> {
        self.call("task_create", format_args!("{id}"))?;
        let pipes = open_pipes(stdio)?;
        let stdin = open_stdin(stdio)?;
        let mut w = self.world();
        if !w.containers.contains_key(id) {
            return Err(not_found(format!("container {id}")));
        }
        if w.tasks.contains_key(id) {
            return Err(Error::AlreadyExists {
                what: format!("task {id}"),
            });
        }
        w.next_pid += 1;
        let pid = w.next_pid;
        let task = FakeTask {
            pid,
            status: TaskStatus::Created,
            exit: watch::Sender::new(None),
            pipes,
            stdin,
        };
        w.tasks.insert(id.to_string(), task);
        Ok(pid)
    }
    async fn task_start(&self, id: &str) -> Result<u32> {
        self.call("task_start", format_args!("{id}"))?;
        while self.world().held_starts.contains(id) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut w = self.world();
        let t = w
            .tasks
            .get_mut(id)
            .ok_or_else(|| not_found(format!("task {id}")))?;
        t.status = TaskStatus::Running;
        Ok(t.pid)
    }
    async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<Found<()>> {
        self.call("task_kill", format_args!("{id} {signal} all={all}"))?;
        let live = match self.world().tasks.get(id) {
            None => return Ok(Found::Gone),
            Some(t) => t.status != TaskStatus::Stopped,
        };
        if live {
            self.exit(id, 128 + signal);
        }
        Ok(Found::Here(()))
    }
    async fn task_delete(&self, id: &str) -> Result<Option<TaskExit>> {
        self.call("task_delete", format_args!("{id}"))?;
        let mut w = self.world();
        match w.tasks.get(id) {
            None => Ok(None),
            Some(t) if t.status == TaskStatus::Running => {
                Err(Error::FailedPrecondition(format!("task {id} is running")))
            }
            Some(_) => Ok(w.tasks.remove(id).and_then(|t| *t.exit.borrow())),
        }
    }
    async fn task_get(&self, id: &str) -> Result<Option<TaskInfo>> {
        self.call("task_get", format_args!("{id}"))?;
        while self.world().silent_shims.contains(id) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let w = self.world();
        Ok(w.tasks.get(id).map(|t| {
            let exit = *t.exit.borrow();
            TaskInfo {
                id: id.to_string(),
                exec_id: String::new(),
                pid: t.pid,
                status: t.status,
                exit_status: exit.map_or(0, |e| e.exit_status),
                exited_at: exit.and_then(|e| e.exited_at),
                stdio: Stdio::null(),
            }
        }))
    }
    async fn task_wait(&self, id: &str) -> Result<Found<TaskExit>> {
        self.call("task_wait", format_args!("{id}"))?;
        if self.world().gone_at_wait.remove(id) {
            return Ok(Found::Gone);
        }
        let mut rx = match self.world().tasks.get(id) {
            None => return Ok(Found::Gone),
            Some(t) => t.exit.subscribe(),
        };
        // A task deleted while waited for: its sender goes, as containerd's
        // Wait ends with NotFound.
        let Ok(exit) = rx.wait_for(Option::is_some).await else {
            if self.world().dead_shims.remove(id) {
                let closed = format!("task {id}: the shim's connection closed");
                return Err(Error::Unavailable(closed));
            }
            return Ok(Found::Gone);
        };
        Ok((*exit).map_or(Found::Gone, Found::Here))
    }
    async fn task_update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
        annotations: &std::collections::HashMap<String, String>,
    ) -> Result<Found<()>> {
        self.call("task_update_resources", format_args!("{id}"))?;
        let mut w = self.world();
        if w.tasks.contains_key(id) {
            let annotations = annotations.clone().into_iter().collect();
            w.task_resources
                .insert(id.to_string(), (resources.clone(), annotations));
            Ok(Found::Here(()))
        } else {
            Ok(Found::Gone)
        }
    }
    async fn exec_create(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &Stdio,
    ) -> Result<()> {
        self.call("exec_create", format_args!("{id} {exec_id}"))?;
        // Write-only, as the shim's, when crius' read ends are open already
        // (the streaming exec): then the start can check they still are.
        // Else (ExecSync opens them after the create) read-write.
        let (pipes, stdout) = match open_pipes_with(stdio, false) {
            Ok(pipes) => (pipes, Some(stdio.stdout.clone())),
            Err(_) => (open_pipes_with(stdio, true)?, None),
        };
        let stdin = open_stdin(stdio)?;
        let mut w = self.world();
        if !w.tasks.contains_key(id) {
            return Err(not_found(format!("task {id}")));
        }
        let key = (id.to_string(), exec_id.to_string());
        if w.execs.contains_key(&key) {
            return Err(Error::AlreadyExists {
                what: format!("exec {exec_id}"),
            });
        }
        w.next_pid += 1;
        let exec = FakeExec {
            pid: w.next_pid,
            started: false,
            terminal: process.terminal().unwrap_or(false),
            exit: watch::Sender::new(None),
            pipes,
            stdout,
            stdin,
        };
        w.execs.insert(key, exec);
        Ok(())
    }
    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32> {
        self.call("exec_start", format_args!("{id} {exec_id}"))?;
        let gate = self.world().exec_start_gate.clone();
        if let Some(mut gate) = gate {
            let _ = gate.wait_for(|open| *open).await;
        }
        let key = (id.to_string(), exec_id.to_string());
        let stdout = self.world().execs.get(&key).and_then(|e| e.stdout.clone());
        // The shim opens the stdout FIFO's write end blocking: with no
        // reader its start would hang for good (here: an error saying so).
        if let Some(path) = stdout.filter(|p| !has_reader(p)) {
            self.call("exec_start_hung", format_args!("{id} {exec_id}"))?;
            return Err(Error::Internal(format!(
                "the start hangs: no reader of {path}"
            )));
        }
        let (pid, hold) = {
            let mut w = self.world();
            let hold = w.hold_execs;
            let e = w
                .execs
                .get_mut(&(id.to_string(), exec_id.to_string()))
                .ok_or_else(|| not_found(format!("exec {exec_id}")))?;
            e.started = true;
            (e.pid, hold)
        };
        if !hold {
            self.exec_exit(id, exec_id, 0);
        }
        Ok(pid)
    }
    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<TaskExit> {
        self.call("exec_wait", format_args!("{id} {exec_id}"))?;
        let mut rx = self
            .world()
            .execs
            .get(&(id.to_string(), exec_id.to_string()))
            .map(|e| e.exit.subscribe())
            .ok_or_else(|| not_found(format!("exec {exec_id}")))?;
        let gone = || not_found(format!("exec {exec_id}"));
        let exit = rx.wait_for(Option::is_some).await.map_err(|_| gone())?;
        (*exit).ok_or_else(gone)
    }
    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        self.call("exec_kill", format_args!("{id} {exec_id} {signal}"))?;
        let key = (id.to_string(), exec_id.to_string());
        if !self.world().execs.contains_key(&key) {
            return Err(not_found(format!("exec {exec_id}")));
        }
        self.exec_exit(id, exec_id, 128 + signal);
        Ok(())
    }
    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<Option<TaskExit>> {
        self.call("exec_delete", format_args!("{id} {exec_id}"))?;
        let key = (id.to_string(), exec_id.to_string());
        let mut w = self.world();
        match w.execs.get(&key) {
            None => Ok(None),
            Some(e) if e.started && e.exit.borrow().is_none() => Err(Error::FailedPrecondition(
                format!("exec {exec_id} is running"),
            )),
            Some(_) => Ok(w.execs.remove(&key).and_then(|e| *e.exit.borrow())),
        }
    }
    async fn exec_resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        self.call(
            "exec_resize",
            format_args!("{id} {exec_id} {width}x{height}"),
        )
    }
    async fn exec_close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        self.call("exec_close_stdin", format_args!("{id} {exec_id}"))?;
        if exec_id.is_empty() {
            if let Some(t) = self.world().tasks.get_mut(id) {
                t.stdin = None;
            }
            return Ok(());
        }
        if let Some(e) = self
            .world()
            .execs
            .get_mut(&(id.to_string(), exec_id.to_string()))
        {
            e.stdin = None;
        }
        Ok(())
    }
}

impl Fake {
    /// Makes exec `exec_id` of `id` exit with `code` (its pipes close).
    pub fn exec_exit(&self, id: &str, exec_id: &str, code: u32) {
        let mut w = self.world();
        if let Some(e) = w.execs.get_mut(&(id.to_string(), exec_id.to_string()))
            && e.exit.borrow().is_none()
        {
            e.pipes.clear();
            e.stdin = None;
            e.exit.send_replace(Some(TaskExit {
                exit_status: code,
                exited_at: Some(std::time::SystemTime::now()),
                pid: e.pid,
            }));
        }
    }

    /// Writes `data` as the output of `id`'s task on stream `n` (0:
    /// stdout, 1: stderr).
    pub fn task_write(&self, id: &str, n: usize, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut w = self.world();
        let t = w
            .tasks
            .get_mut(id)
            .ok_or_else(|| not_found(format!("task {id}")))?;
        let pipe = t
            .pipes
            .get_mut(n)
            .ok_or_else(|| Error::Internal(format!("task {id} has no stream {n}")))?;
        pipe.write_all(data)
            .map_err(|e| Error::io("writing a fake task's output", e))
    }

    /// The exec ids of container `id`, in order.
    pub fn exec_ids(&self, id: &str) -> Vec<String> {
        let w = self.world();
        w.execs
            .keys()
            .filter(|(c, _)| c == id)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Writes `data` as exec `exec_id`'s output on stream `n` (0: stdout,
    /// 1: stderr).
    pub fn exec_write(&self, id: &str, exec_id: &str, n: usize, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut w = self.world();
        let e = w
            .execs
            .get_mut(&(id.to_string(), exec_id.to_string()))
            .ok_or_else(|| not_found(format!("exec {exec_id}")))?;
        let pipe = e
            .pipes
            .get_mut(n)
            .ok_or_else(|| Error::Internal(format!("exec {exec_id} has no stream {n}")))?;
        pipe.write_all(data)
            .map_err(|e| Error::io("writing a fake exec's output", e))
    }

    /// What reached exec `exec_id`'s stdin (`""`: the task's) so far (read without waiting),
    /// and whether it was closed (CloseIO, or the writers closed it).
    pub fn exec_stdin(&self, id: &str, exec_id: &str) -> (Vec<u8>, bool) {
        use std::io::Read;
        let mut w = self.world();
        let stdin = if exec_id.is_empty() {
            w.tasks.get_mut(id).and_then(|t| t.stdin.as_mut())
        } else {
            w.execs
                .get_mut(&(id.to_string(), exec_id.to_string()))
                .and_then(|e| e.stdin.as_mut())
        };
        let Some(f) = stdin else {
            return (Vec::new(), true);
        };
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, false),
            }
        }
    }
}

impl Fake {
    /// `false` when the parent is not unpacked.
    fn snapshot_make(&self, snapshotter: &str, key: &str, parent: Option<&str>) -> Result<bool> {
        let mut w = self.world();
        if let Some(p) = parent
            && !w.unpacked.contains(p)
        {
            return Ok(false);
        }
        if !w
            .snapshots
            .insert((snapshotter.to_string(), key.to_string()))
        {
            return Err(Error::AlreadyExists {
                what: format!("snapshot {key}"),
            });
        }
        if let Some(p) = parent {
            w.snapshot_parents
                .insert((snapshotter.to_string(), key.to_string()), p.to_string());
        }
        Ok(true)
    }

    /// The task of `id` in `from`, moved to `to`; FailedPrecondition as
    /// containerd when it is in another state.
    fn task_move(&self, id: &str, from: TaskStatus, to: TaskStatus) -> Result<()> {
        let mut w = self.world();
        let t = w
            .tasks
            .get_mut(id)
            .ok_or_else(|| not_found(format!("task {id}")))?;
        if t.status != from {
            return Err(Error::FailedPrecondition(format!(
                "task {id} is {:?}, not {from:?}",
                t.status
            )));
        }
        t.status = to;
        Ok(())
    }
}

#[async_trait]
impl ports::Checkpoints for Fake {
    async fn task_pause(&self, id: &str) -> Result<()> {
        self.call("task_pause", format_args!("{id}"))?;
        self.task_move(id, TaskStatus::Running, TaskStatus::Paused)
    }
    async fn task_resume(&self, id: &str) -> Result<()> {
        self.call("task_resume", format_args!("{id}"))?;
        self.task_move(id, TaskStatus::Paused, TaskStatus::Running)
    }
    /// Writes an image and CRIU's log, as runc's checkpoint does.
    async fn task_checkpoint(&self, id: &str, image_dir: &Path, work_dir: &Path) -> Result<()> {
        self.call("task_checkpoint", format_args!("{id}"))?;
        let mut w = self.world();
        if !w.tasks.contains_key(id) {
            return Err(not_found(format!("task {id}")));
        }
        w.files
            .insert(image_dir.join("inventory.img"), b"criu".to_vec());
        w.files
            .insert(work_dir.join("dump.log"), b"dumped".to_vec());
        Ok(())
    }
    async fn snapshot_parent(&self, snapshotter: &str, key: &str) -> Result<Option<String>> {
        self.call("snapshot_parent", format_args!("{snapshotter} {key}"))?;
        let k = (snapshotter.to_string(), key.to_string());
        Ok(self.world().snapshot_parents.get(&k).cloned())
    }
    async fn diff_to_file(
        &self,
        _lower: Vec<Mount>,
        _upper: Vec<Mount>,
        dest: &Path,
    ) -> Result<u64> {
        self.call("diff_to_file", format_args!("{}", dest.display()))?;
        self.world()
            .files
            .insert(dest.to_path_buf(), b"layer".to_vec());
        Ok(5)
    }
}

#[async_trait]
impl ports::Snapshots for Fake {
    async fn snapshot_prepare(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Made> {
        self.call("snapshot_prepare", format_args!("{snapshotter} {key}"))?;
        if !self.snapshot_make(snapshotter, key, parent)? {
            return Ok(Made::ParentMissing);
        }
        Ok(Made::Mounts(vec![Mount {
            r#type: "bind".into(),
            source: format!("/fake/snapshots/{key}"),
            ..Default::default()
        }]))
    }
    async fn snapshot_view(
        &self,
        snapshotter: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Made> {
        self.call("snapshot_view", format_args!("{snapshotter} {key}"))?;
        if !self.snapshot_make(snapshotter, key, parent)? {
            return Ok(Made::ParentMissing);
        }
        Ok(Made::Mounts(vec![]))
    }
    async fn snapshot_mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
        self.call("snapshot_mounts", format_args!("{snapshotter} {key}"))?;
        let w = self.world();
        if w.snapshots
            .contains(&(snapshotter.to_string(), key.to_string()))
        {
            Ok(vec![])
        } else {
            Err(not_found(format!("snapshot {key}")))
        }
    }
    async fn snapshot_remove(&self, snapshotter: &str, key: &str) -> Result<()> {
        self.call("snapshot_remove", format_args!("{snapshotter} {key}"))?;
        self.world()
            .snapshots
            .remove(&(snapshotter.to_string(), key.to_string()));
        Ok(())
    }
    async fn snapshot_commit(&self, snapshotter: &str, name: &str, key: &str) -> Result<bool> {
        self.call(
            "snapshot_commit",
            format_args!("{snapshotter} {name} {key}"),
        )?;
        let mut w = self.world();
        if w.unpacked.contains(name) {
            return Ok(false);
        }
        if !w
            .snapshots
            .remove(&(snapshotter.to_string(), key.to_string()))
        {
            return Err(not_found(format!("snapshot {key}")));
        }
        // A committed snapshot can be a parent, like an unpacked layer.
        w.unpacked.insert(name.to_string());
        Ok(true)
    }
    async fn snapshot_exists(&self, snapshotter: &str, key: &str) -> Result<bool> {
        self.call("snapshot_exists", format_args!("{snapshotter} {key}"))?;
        let w = self.world();
        Ok(w.unpacked.contains(key)
            || w.snapshots
                .contains(&(snapshotter.to_string(), key.to_string())))
    }
    async fn snapshot_usage(&self, snapshotter: &str, key: &str) -> Result<Option<Usage>> {
        self.call("snapshot_usage", format_args!("{snapshotter} {key}"))?;
        let w = self.world();
        Ok(w.snapshots
            .contains(&(snapshotter.to_string(), key.to_string()))
            .then_some(Usage {
                bytes: 4096,
                inodes: 1,
            }))
    }
}

#[async_trait]
impl ports::Leases for Fake {
    async fn lease_create(&self, id: &str, _expire: Duration) -> Result<()> {
        self.call("lease_create", format_args!("{id}"))?;
        self.world().leases.insert(id.to_string());
        Ok(())
    }
    async fn lease_delete(&self, id: &str) -> Result<()> {
        self.call("lease_delete", format_args!("{id}"))?;
        self.world().leases.remove(id);
        Ok(())
    }
    async fn lease_list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        self.call("lease_list_prefix", format_args!("{prefix}"))?;
        let w = self.world();
        Ok(w.leases
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl ports::Containerd for Fake {
    fn with_lease(&self, id: &str) -> Arc<dyn ports::Containerd> {
        Arc::new(Fake {
            world: self.world.clone(),
            lease: Some(id.to_string()),
        })
    }
    async fn subscribe(&self, _filters: Vec<String>) -> Result<BoxStream<'static, Result<Event>>> {
        self.call("subscribe", format_args!(""))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.world().subscribers.push(tx);
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok(e), rx))
        })))
    }
    fn kill_lost_shims(&self, ids: &[String]) -> usize {
        let _ = self.call("kill_lost_shims", format_args!("{}", ids.join(",")));
        0
    }
}

#[async_trait]
impl ports::Network for Fake {
    fn load(
        &self,
        conf_dir: &Path,
        _bin_dirs: &[PathBuf],
    ) -> std::result::Result<NetworkConfig, NotReady> {
        let no_config = || NotReady::NoConfig {
            dir: conf_dir.to_path_buf(),
        };
        self.call("cni_load", format_args!(""))
            .map_err(|_| no_config())?;
        let name = self.world().network.clone().ok_or_else(no_config)?;
        Ok(NetworkConfig {
            file: conf_dir.join("10-fake.conflist"),
            name,
            plugins: vec!["bridge".into()],
            raw: b"{}".to_vec(),
        })
    }
    async fn add(&self, _net: &NetworkConfig, att: &Attachment) -> Result<Vec<IpAddr>> {
        self.call("cni_add", format_args!("{}", att.container_id))?;
        self.world().attachments.insert(att.container_id.clone());
        Ok(vec![IpAddr::from([10, 88, 0, 2])])
    }
    async fn del(&self, _net: &NetworkConfig, att: &Attachment) -> Result<()> {
        self.call("cni_del", format_args!("{}", att.container_id))?;
        self.world().attachments.remove(&att.container_id);
        Ok(())
    }
    async fn netns_create(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        self.call("netns_create", format_args!("{name}"))?;
        let path = dir.join(name);
        self.world().netns.insert(path.clone());
        Ok(path)
    }
    async fn netns_remove(&self, path: &Path) -> Result<()> {
        self.call("netns_remove", format_args!("{}", path.display()))?;
        self.world().netns.remove(path);
        Ok(())
    }
    async fn netns_pin_pid(&self, dir: &Path, name: &str, pid: u32) -> Result<PathBuf> {
        self.call("netns_pin_pid", format_args!("{name} {pid}"))?;
        let path = dir.join(name);
        self.world().netns.insert(path.clone());
        Ok(path)
    }
    fn netns_is_pinned(&self, path: &Path) -> bool {
        self.world().netns.contains(path)
    }
    async fn pin_namespaces(&self, dir: &Path, name: &str, plan: &PinPlan) -> Result<Pins> {
        let sysctls: Vec<String> = plan
            .sysctls
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.call(
            "pin",
            format_args!(
                "{name} ipc={} uts={} hostname={} {}",
                plan.ipc,
                plan.uts,
                plan.hostname.as_deref().unwrap_or(""),
                sysctls.join(",")
            ),
        )?;
        let pin = |on: bool, kind: &str| on.then(|| dir.join(format!("{name}.{kind}")));
        let pins = Pins {
            ipc: pin(plan.ipc, "ipc"),
            uts: pin(plan.uts, "uts"),
        };
        let mut world = self.world();
        world
            .netns
            .extend(pins.ipc.iter().chain(&pins.uts).cloned());
        Ok(pins)
    }
    async fn net_sysctls(&self, netns: &Path, sysctls: &[(String, String)]) -> Result<()> {
        let s: Vec<String> = sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.call(
            "net_sysctls",
            format_args!("{} {}", netns.display(), s.join(",")),
        )
    }
    fn kill_lost_plugins(&self, ids: &[String]) -> usize {
        let _ = self.call("kill_lost_plugins", format_args!("{}", ids.join(",")));
        0
    }
    async fn net_dev(&self, netns: &Path) -> Result<Option<String>> {
        self.call("net_dev", format_args!("{}", netns.display()))?;
        Ok(self.world().netns.contains(netns).then(|| {
            "Inter-|   Receive\n face |bytes\n  eth0: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n"
                .to_string()
        }))
    }
}

fn query_matches(query: &Query, image: &CriImage) -> bool {
    match query {
        Query::Id(id) => image.id == *id,
        Query::Name { name, .. } => image.record_names.iter().any(|n| n == name),
    }
}

#[async_trait]
impl ports::ImageStore for Fake {
    async fn find(&self, query: &Query) -> Result<Option<CriImage>> {
        self.call("image_find", format_args!("{query:?}"))?;
        let w = self.world();
        Ok(w.images.iter().find(|i| query_matches(query, i)).cloned())
    }
    async fn config(&self, image: &CriImage) -> Result<serde_json::Value> {
        self.call("image_config", format_args!("{}", image.id))?;
        Ok(serde_json::json!({
            "config": { "Entrypoint": ["/pause"], "Env": ["PATH=/bin"] }
        }))
    }
    async fn ensure_unpacked(&self, image: &CriImage, snapshotter: &str) -> Result<()> {
        self.call(
            "image_unpack",
            format_args!("{} {snapshotter}", image.chain_id),
        )?;
        self.world().unpacked.insert(image.chain_id.clone());
        Ok(())
    }
    async fn pull(
        &self,
        _config: &ImagesConfig,
        _snapshotter: &str,
        name: &str,
    ) -> Result<CriImage> {
        self.call("image_pull", format_args!("{name}"))?;
        Err(not_found(format!("image {name} in the fake registry")))
    }
    async fn ensure_builtin(
        &self,
        _config: &ImagesConfig,
        _snapshotter: &str,
        name: &str,
        _files: &[crius_image::File<'_>],
        _entrypoint: &[&str],
    ) -> Result<CriImage> {
        self.call("image_builtin", format_args!("{name}"))?;
        let query = Query::parse(name)?;
        if let Some(i) = self
            .world()
            .images
            .iter()
            .find(|i| query_matches(&query, i))
        {
            return Ok(i.clone());
        }
        let Query::Name { name: full, .. } = query else {
            return Err(Error::invalid("image", "a built-in image has a name"));
        };
        let image = image("sha256:feed", &full);
        self.add_image(image.clone());
        Ok(image)
    }
}

/// An image named `name` (normalized) with id `id`, its one layer's chain
/// id derived from the id.
pub fn image(id: &str, name: &str) -> CriImage {
    CriImage {
        id: id.to_string(),
        repo_tags: vec![name.to_string()],
        repo_digests: vec![],
        size: 1 << 20,
        user: String::new(),
        manifest: format!("manifest-{id}"),
        chain_id: format!("chain-{id}"),
        pinned: false,
        record_names: vec![name.to_string(), id.to_string()],
    }
}

#[async_trait]
impl ports::OciRuntimes for Fake {
    async fn features(&self, binary: &str) -> Option<crius_core::runtime::OciFeatures> {
        self.call("oci_features", format_args!("{binary}")).ok()?;
        self.world().oci_runtimes.get(binary).cloned()
    }
    async fn criu_version(&self) -> Option<u32> {
        self.world().criu
    }
}

impl ports::HostFs for Fake {
    fn create_dir(&self, dir: &Path) -> Result<()> {
        self.call("create_dir", format_args!("{}", dir.display()))?;
        self.world().dirs.insert(dir.to_path_buf());
        Ok(())
    }
    fn write_atomic(&self, path: &Path, data: &[u8], _mode: u32) -> Result<()> {
        self.call("write_atomic", format_args!("{}", path.display()))?;
        self.world().files.insert(path.to_path_buf(), data.to_vec());
        Ok(())
    }
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        self.world().files.get(path).cloned()
    }
    fn read_text(&self, path: &Path) -> std::io::Result<String> {
        let w = self.world();
        match (w.host_files.get(path), w.files.get(path)) {
            (Some(text), _) => Ok(text.clone()),
            (None, Some(bytes)) => String::from_utf8(bytes.clone()).map_err(std::io::Error::other),
            (None, None) => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
    fn dir_names(&self, dir: &Path) -> Vec<String> {
        let w = self.world();
        // The first component below `dir` of every path beneath it, as
        // a real directory holds its subdirectories.
        let child = |p: &PathBuf| {
            let rest = p.strip_prefix(dir).ok()?;
            rest.components()
                .next()
                .and_then(|c| c.as_os_str().to_str().map(str::to_string))
        };
        let names: BTreeSet<String> = w
            .dirs
            .iter()
            .chain(w.files.keys())
            .chain(w.netns.iter())
            .filter_map(child)
            .collect();
        names.into_iter().collect()
    }
    fn mount_shm(&self, dir: &Path) -> Result<PathBuf> {
        self.call("mount_shm", format_args!("{}", dir.display()))?;
        let shm = dir.join("shm");
        self.world().mounts.insert(shm.clone());
        Ok(shm)
    }
    fn remove_pod_dir(&self, dir: &Path) -> Result<()> {
        self.call("remove_pod_dir", format_args!("{}", dir.display()))?;
        self.remove_under(dir);
        Ok(())
    }
    fn copy_file(&self, from: &Path, to: &Path) -> Result<bool> {
        self.call(
            "copy_file",
            format_args!("{} {}", from.display(), to.display()),
        )?;
        let mut w = self.world();
        let Some(data) = w.files.get(from).cloned() else {
            return Ok(false);
        };
        w.files.insert(to.to_path_buf(), data);
        Ok(true)
    }
    /// Records the names of the files under `dir`.
    fn write_archive(&self, dir: &Path, dest: &Path) -> Result<u64> {
        self.call(
            "write_archive",
            format_args!("{} {}", dir.display(), dest.display()),
        )?;
        let mut w = self.world();
        let names: Vec<String> = w
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .map(|p| p.display().to_string())
            .collect();
        w.archives.insert(dest.to_path_buf(), names);
        Ok(1)
    }
    /// As the real one: without `unmount`, a tree with a mount beneath is
    /// refused (deleting it would delete through the mount).
    fn remove_tree(&self, path: &Path, unmount: bool) -> Result<()> {
        self.call("remove_tree", format_args!("{}", path.display()))?;
        let mounted = self.world().mounts.iter().any(|m| m.starts_with(path));
        if mounted && !unmount {
            return Err(Error::Internal(format!(
                "{} holds a mount: removing it would delete through it",
                path.display()
            )));
        }
        self.remove_under(path);
        Ok(())
    }
    fn node_hostname(&self) -> String {
        "fake-node".into()
    }
    fn read_rootfs(
        &self,
        _mounts: &[Mount],
        scratch: &Path,
        volumes: &[(String, PathBuf)],
    ) -> Result<(Option<String>, Option<String>)> {
        self.call("read_rootfs", format_args!("{}", scratch.display()))?;
        let mut w = self.world();
        for (_, dir) in volumes {
            w.dirs.insert(dir.clone());
        }
        Ok(w.rootfs_etc.clone())
    }
    fn mounted(&self, path: &Path) -> bool {
        self.world().mounts.contains(path)
    }
    fn remap_ids(
        &self,
        _mounts: &[Mount],
        scratch: &Path,
        maps: &crius_core::userns::IdMaps,
    ) -> Result<()> {
        self.call(
            "remap_ids",
            format_args!("{} {}", scratch.display(), maps.uids.host_id),
        )
    }
    fn idmapped_bind(&self, source: &Path, userns: &Path, target: &Path) -> Result<bool> {
        self.call(
            "idmapped_bind",
            format_args!(
                "{} {} {}",
                source.display(),
                userns.display(),
                target.display()
            ),
        )?;
        let mut w = self.world();
        if w.no_idmap {
            return Ok(false);
        }
        w.mounts.insert(target.to_path_buf());
        Ok(true)
    }
    fn remove_mount_points(&self, dir: &Path) -> Result<()> {
        self.call("remove_mount_points", format_args!("{}", dir.display()))?;
        self.remove_under(dir);
        Ok(())
    }
    fn mount_image_volume(&self, _mounts: &[Mount], dir: &Path, sub_path: &str) -> Result<PathBuf> {
        self.call(
            "mount_image_volume",
            format_args!("{} {sub_path}", dir.display()),
        )?;
        let mut w = self.world();
        if w.missing_sub_paths.contains(sub_path) {
            return Err(Error::invalid(
                "image_sub_path",
                format!("{sub_path:?} is not in the image"),
            ));
        }
        w.dirs.insert(dir.to_path_buf());
        w.mounts.insert(dir.to_path_buf());
        Ok(dir.join(sub_path))
    }
    fn cdi_specs(&self, dirs: &[PathBuf]) -> Vec<(usize, PathBuf, String)> {
        let w = self.world();
        let mut out = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            for (path, text) in &w.host_files {
                if path.parent() == Some(dir.as_path()) {
                    out.push((i, path.clone(), text.clone()));
                }
            }
        }
        out
    }
    fn device_at(&self, path: &Path) -> Option<crius_core::container::HostDevice> {
        // The fake host has /dev/null only.
        (path == Path::new("/dev/null")).then(|| crius_core::container::HostDevice {
            path: "/dev/null".into(),
            kind: crius_core::container::HostDeviceKind::Char,
            major: 1,
            minor: 3,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        })
    }
    fn host_lookup(
        &self,
        devices: &[Device],
        paths: &[String],
        _all_devices: bool,
    ) -> Result<HostLookup> {
        self.call(
            "host_lookup",
            format_args!("{} devices, {} paths", devices.len(), paths.len()),
        )?;
        Ok(HostLookup::default())
    }
}

impl Fake {
    fn remove_under(&self, path: &Path) {
        let mut w = self.world();
        w.dirs.retain(|d| !d.starts_with(path));
        w.files.retain(|f, _| !f.starts_with(path));
        w.mounts.retain(|m| !m.starts_with(path));
    }
}
