//! A private containerd: its own root, state and socket in a temporary
//! directory, the CRI plugin off. Stopped (with any shim it started) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{kill_and_reap, require_binary};

/// The runtime name of the alias shim every private containerd has on its PATH.
pub const ALIAS_SHIM: &str = "io.containerd.runc-alias.v2";
/// Its binary: a link to `containerd-shim-runc-v2`.
pub const ALIAS_SHIM_BINARY: &str = "containerd-shim-runc-alias-v2";

/// A containerd that is configured, and started or not.
pub struct Containerd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    /// Writes the config of a private containerd without starting it (to
    /// test a daemon that comes up before containerd does).
    pub fn configure() -> anyhow::Result<Self> {
        require_binary("containerd", "containerd")?;
        let dir = tempfile::Builder::new()
            .prefix("crius-ctd-")
            .tempdir_in("/tmp")
            .context("creating containerd's directory")?;
        let socket = dir.path().join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
        );
        std::fs::write(dir.path().join("config.toml"), config)?;
        // A second shim name for the same shim, to test runtime selection
        // without Kata: io.containerd.runc-alias.v2.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let shim = require_binary("containerd-shim-runc-v2", "containerd")?;
        std::os::unix::fs::symlink(&shim, bin.join(ALIAS_SHIM_BINARY))?;
        Ok(Containerd {
            dir,
            socket,
            child: None,
        })
    }

    /// A started private containerd.
    pub fn start() -> anyhow::Result<Self> {
        let mut c = Self::configure()?;
        c.spawn()?;
        Ok(c)
    }

    /// Starts the configured containerd and waits until its socket answers.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("containerd is already running");
        }
        let log = std::fs::File::create(self.dir.path().join("containerd.log"))?;
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .env("PATH", path)
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("containerd exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "containerd did not open {} within 20 s: {}",
            self.socket.display(),
            self.log()
        )
    }

    /// containerd's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's root directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// What containerd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Stops containerd, every shim it started and every container process
    /// of those shims (a killed shim leaves its containers running).
    pub fn stop(&mut self) {
        kill_containers(&self.dir.path().join("state"));
        kill_shims(&self.socket);
        if let Some(child) = self.child.take() {
            kill_and_reap(child, nix::sys::signal::Signal::SIGTERM);
        }
        crate::unmount_under(self.dir.path());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills the shims whose command line names `socket` as their containerd.
pub fn kill_shims(socket: &Path) {
    let needle = socket.display().to_string();
    for pid in crate::pids_with_arg(&needle) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The pids cgroup of this process.
fn own_pids_cgroup() -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
}

/// Kills the processes of every container whose task state lives under
/// `state` (containerd's state dir): each task's `init.pid` and whatever
/// shares its pids cgroup.
fn kill_containers(state: &Path) {
    let tasks = state.join("io.containerd.runtime.v2.task");
    let Ok(namespaces) = std::fs::read_dir(&tasks) else {
        return;
    };
    for ns in namespaces.flatten() {
        let Ok(containers) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for c in containers.flatten() {
            let Some(pid) = std::fs::read_to_string(c.path().join("init.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            else {
                continue;
            };
            // Never 0 or 1 (kill(0) is our own process group), and never
            // the processes of the root cgroup (everything not in a container).
            if pid <= 1 {
                continue;
            }
            let mut pids = vec![pid];
            if let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                && let Some(path) = cgroups
                    .lines()
                    .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
                && !path.trim_matches('/').is_empty()
                && Some(path.as_str()) != own_pids_cgroup().as_deref()
                && let Ok(procs) =
                    std::fs::read_to_string(format!("/sys/fs/cgroup/pids{path}/cgroup.procs"))
            {
                pids.extend(procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()));
            }
            for p in pids.into_iter().filter(|p| *p > 1) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
