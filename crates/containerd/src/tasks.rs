//! Tasks: the running side of a container record (its init process, in
//! runc's shim) and the processes exec'ed into it.
//!
//! Stdio: each of stdin, stdout and stderr is a path or `""` for none. The
//! runc shim of containerd 1.6 treats a path without a scheme as a FIFO
//! when it is one (it copies the container's output into it; the reader
//! must open it before the task is created, read side `O_NONBLOCK`), and
//! otherwise as an existing file it appends to. `file:///path` sends both
//! stdout and stderr to one file the shim creates, `binary:///path?args`
//! to a logging program the shim starts. crius reads its containers'
//! output from FIFOs itself; the pause task of a sandbox gets no stdio.
//!
//! Without a terminal the 1.6 shim needs both stdout and stderr when
//! either is set (it opens both; `""` fails the create with `opening file
//! "" failed`): [`Containerd::task_create`] and [`Containerd::exec_create`]
//! pass `/dev/null` for the missing one. A stdio path that does not exist
//! fails the create too.

use std::time::SystemTime;

use crate::{Error, Result};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, CreateTaskRequest, DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest,
    GetRequest, KillRequest, ListPidsRequest, ListTasksRequest, MetricsRequest, ResizePtyRequest,
    StartRequest, UpdateTaskRequest, WaitRequest,
};
use containerd_client::types::Mount;
use containerd_client::types::v1::{Process, Status};
use prost::Message;

use crate::{Containerd, map_status, not_found_as_none, system_time};

/// Type URL of an OCI process (exec) spec, JSON.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// Type URL of OCI Linux resources (task update), JSON.
pub const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// Type URL of the details the runc shim gives for each pid of a task.
const PROCESS_DETAILS_TYPE_URL: &str = "containerd.runc.v1.ProcessDetails";
/// What the shim is given for the missing one of stdout and stderr.
const DEV_NULL: &str = "/dev/null";

/// The stdio of a task or exec: paths (FIFOs, files), URIs (`file://`,
/// `binary://`) or `""` for none. See the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    /// Run the process on a pseudo-terminal (its output then all goes to
    /// `stdout`).
    pub terminal: bool,
}

impl Stdio {
    /// No stdio at all (e.g. for a sandbox's pause task).
    pub fn null() -> Stdio {
        Stdio::default()
    }

    /// What the 1.6 shim accepts: without a terminal, stdout and stderr
    /// are both set or both empty.
    fn for_shim(&self) -> Stdio {
        let mut s = self.clone();
        if !s.terminal {
            if s.stdout.is_empty() && !s.stderr.is_empty() {
                s.stdout = DEV_NULL.to_string();
            }
            if s.stderr.is_empty() && !s.stdout.is_empty() {
                s.stderr = DEV_NULL.to_string();
            }
        }
        s
    }
}

/// A task's or exec's status, as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Created,
    Running,
    Stopped,
    Paused,
    Pausing,
    Unknown,
}

impl From<i32> for TaskStatus {
    fn from(s: i32) -> Self {
        match Status::try_from(s) {
            Ok(Status::Created) => TaskStatus::Created,
            Ok(Status::Running) => TaskStatus::Running,
            Ok(Status::Stopped) => TaskStatus::Stopped,
            Ok(Status::Paused) => TaskStatus::Paused,
            Ok(Status::Pausing) => TaskStatus::Pausing,
            _ => TaskStatus::Unknown,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExit {
    /// The exit code, or 128 + the signal that killed it.
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
    /// The process' pid (0 when containerd did not say).
    pub pid: u32,
}

/// A task (`exec_id` empty) or exec as containerd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The container's id.
    pub id: String,
    /// The exec's id; empty for the task (the init process).
    pub exec_id: String,
    pub pid: u32,
    pub status: TaskStatus,
    /// Meaningful when `status` is [`TaskStatus::Stopped`].
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
    pub stdio: Stdio,
}

impl TaskInfo {
    /// containerd 1.6 leaves `container_id` empty and puts the process id
    /// (the container id for the init process, else the exec id) in `id`:
    /// `container_id`, `exec_id` say what was asked for.
    fn from_process(container_id: &str, exec_id: &str, p: Process) -> Self {
        TaskInfo {
            status: TaskStatus::from(p.status),
            id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            pid: p.pid,
            exit_status: p.exit_status,
            exited_at: system_time(p.exited_at),
            stdio: Stdio {
                stdin: p.stdin,
                stdout: p.stdout,
                stderr: p.stderr,
                terminal: p.terminal,
            },
        }
    }
}

/// One process of a task (from [`Containerd::task_pids`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The exec this process is the main process of, if the shim says so.
    pub exec_id: Option<String>,
}

/// The runc shim's details of a pid (`containerd.runc.v1.ProcessDetails`).
#[derive(Clone, PartialEq, Message)]
struct ProcessDetails {
    #[prost(string, tag = "1")]
    exec_id: String,
}

/// One task's metrics as the shim reports them (for runc on cgroup v1 an
/// `io.containerd.cgroups.v1.Metrics`, which this crate does not decode).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMetric {
    pub id: String,
    pub timestamp: Option<SystemTime>,
    pub data: Option<prost_types::Any>,
}

/// containerd 1.6 refuses to delete a running process with code Unknown
/// (`cannot delete a running process`): make it `FailedPrecondition`.
fn running_is_precondition(s: tonic::Status) -> tonic::Status {
    if s.code() == tonic::Code::Unknown && s.message().contains("cannot delete a running process") {
        tonic::Status::failed_precondition(s.message())
    } else {
        s
    }
}

/// An OCI JSON object as an `Any` of `type_url`.
fn json_any<T: serde::Serialize>(type_url: &str, v: &T) -> Result<prost_types::Any> {
    let value = serde_json::to_vec(v).map_err(|source| Error::Encode {
        what: type_url.to_string(),
        source,
    })?;
    Ok(prost_types::Any {
        type_url: type_url.to_string(),
        value,
    })
}

impl Containerd {
    pub(crate) fn tasks(&self) -> TasksClient<crate::timed::Timed> {
        TasksClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// Creates the task of container `id` on the root file system `rootfs`
    /// (the mounts of its snapshot; empty when the spec's root is already
    /// a directory) and returns its init process' pid. The process does
    /// not run until [`Containerd::task_start`]. The shim gets the
    /// container's runtime options.
    pub async fn task_create(&self, id: &str, rootfs: Vec<Mount>, stdio: &Stdio) -> Result<u32> {
        self.task_create_with(id, rootfs, stdio, "").await
    }

    /// [`Containerd::task_create`] with the shim binary given by its
    /// absolute path (`runtime_path`, from the administrator's config; ""
    /// = the container's runtime name looked up on containerd's PATH).
    pub async fn task_create_with(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        stdio: &Stdio,
        runtime_path: &str,
    ) -> Result<u32> {
        let stdio = stdio.for_shim();
        let request = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs,
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            checkpoint: None,
            options: None,
            runtime_path: runtime_path.to_string(),
        };
        let mut tries = 0;
        let resp = loop {
            tries += 1;
            match self.tasks().create(self.request(request.clone())).await {
                Err(s) if tries < SHIM_RACE_TRIES && shim_went_away(&s) => {
                    tracing::debug!(container = id, "the pod's shim was exiting: again");
                    tokio::time::sleep(SHIM_RACE_PAUSE).await;
                }
                r => break r.map_err(map_status("task create"))?.into_inner(),
            }
        };
        tracing::debug!(container = id, pid = resp.pid, "task created");
        Ok(resp.pid)
    }

    /// Starts the task of container `id`; returns its pid.
    pub async fn task_start(&self, id: &str) -> Result<u32> {
        self.start_process("task start", id, "").await
    }

    async fn start_process(&self, op: &'static str, id: &str, exec_id: &str) -> Result<u32> {
        let resp = self
            .tasks()
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(map_status(op))?
            .into_inner();
        tracing::debug!(container = id, exec_id, pid = resp.pid, "{op}");
        Ok(resp.pid)
    }

    /// Sends `signal` to the task's init process, or with `all` to every
    /// process of the container. `NotFound` when there is no such task;
    /// signalling a task that exited is `NotFound` too (`process already
    /// finished`).
    pub async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        self.kill_process("task kill", id, "", signal, all).await
    }

    async fn kill_process(
        &self,
        op: &'static str,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
        self.tasks()
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all,
            }))
            .await
            .map_err(map_status(op))?;
        tracing::debug!(container = id, exec_id, signal, all, "{op}");
        Ok(())
    }

    /// Deletes the task of container `id` (it must have exited or never
    /// started: a running task is `FailedPrecondition`) and returns how it
    /// ended; `None` when there is no task. The shim exits and the rootfs
    /// is unmounted.
    pub async fn task_delete(&self, id: &str) -> Result<Option<TaskExit>> {
        let r = self
            .tasks()
            .delete(self.request(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(running_is_precondition);
        let exit = not_found_as_none("task delete", r)?.map(|r| {
            let r = r.into_inner();
            TaskExit {
                exit_status: r.exit_status,
                exited_at: system_time(r.exited_at),
                pid: r.pid,
            }
        });
        tracing::debug!(container = id, ?exit, "task deleted");
        Ok(exit)
    }

    /// The task of container `id`; `None` when there is none.
    pub async fn task_get(&self, id: &str) -> Result<Option<TaskInfo>> {
        self.get_process("task get", id, "").await
    }

    /// Exec `exec_id` of container `id`; `None` when there is none.
    pub async fn exec_get(&self, id: &str, exec_id: &str) -> Result<Option<TaskInfo>> {
        self.get_process("exec get", id, exec_id).await
    }

    async fn get_process(
        &self,
        op: &'static str,
        id: &str,
        exec_id: &str,
    ) -> Result<Option<TaskInfo>> {
        let r = self
            .tasks()
            .get(self.request(GetRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await;
        Ok(not_found_as_none(op, r)?
            .and_then(|r| r.into_inner().process)
            .map(|p| TaskInfo::from_process(id, exec_id, p)))
    }

    /// Every task of this namespace.
    pub async fn task_list(&self) -> Result<Vec<TaskInfo>> {
        let resp = self
            .tasks()
            .list(self.request(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(map_status("task list"))?
            .into_inner();
        Ok(resp
            .tasks
            .into_iter()
            .map(|p| {
                // Tasks only (no execs): the process id is the container id.
                let id = if p.container_id.is_empty() {
                    p.id.clone()
                } else {
                    p.container_id.clone()
                };
                TaskInfo::from_process(&id, "", p)
            })
            .collect())
    }

    /// Waits until the task of container `id` exits (at once when it has)
    /// and returns how. Dropping the future cancels the wait. `NotFound`
    /// when there is no task (or it was deleted meanwhile).
    pub async fn task_wait(&self, id: &str) -> Result<TaskExit> {
        self.wait_process("task wait", id, "").await
    }

    /// [`Containerd::task_wait`] for exec `exec_id` of container `id`.
    pub async fn task_wait_exec(&self, id: &str, exec_id: &str) -> Result<TaskExit> {
        self.wait_process("exec wait", id, exec_id).await
    }

    async fn wait_process(&self, op: &'static str, id: &str, exec_id: &str) -> Result<TaskExit> {
        // The wait answer has no pid: ask for it first (the process keeps
        // its pid after it exits, until it is deleted).
        let pid = self
            .get_process(op, id, exec_id)
            .await?
            .map(|p| p.pid)
            .ok_or_else(|| Error::Missing {
                what: format!("{op}: task {id} {exec_id}"),
            })?;
        let resp = self
            .tasks()
            .wait(self.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(map_status(op))?
            .into_inner();
        Ok(TaskExit {
            exit_status: resp.exit_status,
            exited_at: system_time(resp.exited_at),
            pid,
        })
    }

    /// The processes of the task of container `id`.
    pub async fn task_pids(&self, id: &str) -> Result<Vec<ProcessInfo>> {
        let resp = self
            .tasks()
            .list_pids(self.request(ListPidsRequest {
                container_id: id.to_string(),
            }))
            .await
            .map_err(map_status("task pids"))?
            .into_inner();
        Ok(resp
            .processes
            .into_iter()
            .map(|p| ProcessInfo {
                pid: p.pid,
                exec_id: p
                    .info
                    .filter(|i| i.type_url.rsplit('/').next() == Some(PROCESS_DETAILS_TYPE_URL))
                    .and_then(|i| ProcessDetails::decode(i.value.as_slice()).ok())
                    .map(|d| d.exec_id)
                    .filter(|e| !e.is_empty()),
            })
            .collect())
    }

    /// Creates exec `exec_id` running `process` in the task of container
    /// `id`; it runs once [`Containerd::exec_start`]ed. `AlreadyExists`
    /// when the exec id is taken; `NotFound` when there is no task.
    pub async fn exec_create(
        &self,
        id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &Stdio,
    ) -> Result<()> {
        let stdio = stdio.for_shim();
        self.tasks()
            .exec(self.request(ExecProcessRequest {
                container_id: id.to_string(),
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: stdio.terminal,
                spec: Some(json_any(PROCESS_TYPE_URL, process)?),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(map_status("exec create"))?;
        tracing::debug!(container = id, exec_id, "exec created");
        Ok(())
    }

    /// Starts exec `exec_id` of container `id`; returns its pid.
    pub async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32> {
        self.start_process("exec start", id, exec_id).await
    }

    /// Sends `signal` to exec `exec_id` of container `id`.
    pub async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        self.kill_process("exec kill", id, exec_id, signal, false)
            .await
    }

    /// Deletes exec `exec_id` of container `id` (it must have exited or
    /// never started) and returns how it ended; `None` when there is none.
    pub async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<Option<TaskExit>> {
        let r = self
            .tasks()
            .delete_process(self.request(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(running_is_precondition);
        let exit = not_found_as_none("exec delete", r)?.map(|r| {
            let r = r.into_inner();
            TaskExit {
                exit_status: r.exit_status,
                exited_at: system_time(r.exited_at),
                pid: r.pid,
            }
        });
        tracing::debug!(container = id, exec_id, ?exit, "exec deleted");
        Ok(exit)
    }

    /// Resizes the terminal of the task (`exec_id` empty) or of an exec.
    pub async fn task_resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        self.tasks()
            .resize_pty(self.request(ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await
            .map_err(map_status("task resize pty"))?;
        Ok(())
    }

    /// Closes the shim's side of the stdin FIFO of the task (`exec_id`
    /// empty) or of an exec: the process reads end-of-file once the
    /// caller's writers of the FIFO are closed too.
    pub async fn task_close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        self.tasks()
            .close_io(self.request(CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await
            .map_err(map_status("task close stdin"))?;
        Ok(())
    }

    /// Changes the resources (cgroup limits) of the running task of
    /// container `id` (`runc update`).
    pub async fn task_update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.task_update(id, resources, &Default::default()).await
    }

    /// [`Containerd::task_update_resources`] with annotations for the shim
    /// (VM runtimes read the pod's new size from them).
    pub async fn task_update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
        annotations: &std::collections::HashMap<String, String>,
    ) -> Result<()> {
        self.tasks()
            .update(self.request(UpdateTaskRequest {
                container_id: id.to_string(),
                resources: Some(json_any(LINUX_RESOURCES_TYPE_URL, resources)?),
                annotations: annotations.clone(),
            }))
            .await
            .map_err(map_status("task update"))?;
        tracing::debug!(container = id, "task resources updated");
        Ok(())
    }

    /// The metrics of the tasks of containers `ids` (of every task when
    /// empty). Tasks without metrics (e.g. not started) are left out.
    pub async fn task_metrics(&self, ids: &[String]) -> Result<Vec<TaskMetric>> {
        let filters = ids.iter().map(|id| format!("id==\"{id}\"")).collect();
        let resp = self
            .tasks()
            .metrics(self.request(MetricsRequest { filters }))
            .await
            .map_err(map_status("task metrics"))?
            .into_inner();
        Ok(resp
            .metrics
            .into_iter()
            .map(|m| TaskMetric {
                id: m.id,
                timestamp: system_time(m.timestamp),
                data: m.data,
            })
            .collect())
    }
}

/// Tries of a task create that met a shim on its way out.
const SHIM_RACE_TRIES: u32 = 3;
const SHIM_RACE_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether a task create failed because the shim it was to join (a pod's
/// shim, shared by its containers) exited meanwhile: the shim found its
/// socket taken by a running shim, which then shut down (its last task
/// gone) before containerd connected, or closed the connection while the
/// create was under way ("ttrpc: closed", seen by the fuzzer). A new shim
/// starts on the next try; a pod that stopped meanwhile makes that try
/// fail in runc, which the caller tells apart.
fn shim_went_away(s: &tonic::Status) -> bool {
    let m = s.message();
    let connect = m.contains("failed to start shim")
        && (m.contains("connect: no such file or directory")
            || m.contains("connect: connection refused"));
    let closed = m.contains("failed to create shim task") && m.contains("ttrpc: closed");
    connect || closed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time check: the futures of the calls a server spawns are Send.
    #[allow(dead_code)]
    fn futures_are_send(c: &Containerd, p: &oci_spec::runtime::Process) {
        fn send<T: Send>(_: T) {}
        send(c.task_create("x", vec![], &Stdio::null()));
        send(c.task_start("x"));
        send(c.task_wait("x"));
        send(c.task_wait_exec("x", "e"));
        send(c.task_delete("x"));
        send(c.exec_create("x", "e", p, &Stdio::null()));
        send(c.task_update_resources("x", &Default::default()));
        send(c.events_subscribe(vec![]));
        send(c.container_create(&Default::default()));
        send(c.container_list(&[]));
        send(c.container_delete("x"));
    }

    #[test]
    fn shim_gets_stdout_and_stderr_together() {
        let only_out = Stdio {
            stdout: "/x/out".into(),
            ..Default::default()
        };
        assert_eq!(only_out.for_shim().stderr, "/dev/null");
        let only_err = Stdio {
            stderr: "/x/err".into(),
            ..Default::default()
        };
        assert_eq!(only_err.for_shim().stdout, "/dev/null");
        let tty = Stdio {
            stdout: "/x/out".into(),
            terminal: true,
            ..Default::default()
        };
        assert_eq!(tty.for_shim(), tty);
        assert_eq!(Stdio::null().for_shim(), Stdio::null());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            TaskStatus::from(Status::Running as i32),
            TaskStatus::Running
        );
        assert_eq!(
            TaskStatus::from(Status::Stopped as i32),
            TaskStatus::Stopped
        );
        assert_eq!(TaskStatus::from(42), TaskStatus::Unknown);
    }

    #[test]
    fn a_shim_that_went_away_is_told_from_other_failures() {
        let gone = tonic::Status::unknown(
            "failed to start shim: start failed: dial unix /run/containerd/s/8202: connect: no such file or directory: unknown",
        );
        assert!(shim_went_away(&gone));
        let refused = tonic::Status::unknown(
            "failed to start shim: start failed: dial unix /run/containerd/s/8202: connect: connection refused",
        );
        assert!(shim_went_away(&refused));
        let closed = tonic::Status::unknown("failed to create shim task: ttrpc: closed: unknown");
        assert!(shim_went_away(&closed));
        let other = tonic::Status::unknown("failed to start shim: mkdir /run/x: file exists");
        assert!(!shim_went_away(&other));
        let runc = tonic::Status::unknown("OCI runtime create failed: no such file or directory");
        assert!(!shim_went_away(&runc));
    }
}
