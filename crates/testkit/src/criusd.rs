//! `criusd` under test: its own socket, state directories and config file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

/// How to start a `criusd`.
#[derive(Debug, Clone)]
pub struct CriusdOptions {
    /// The `criusd` binary (`env!("CARGO_BIN_EXE_criusd")`).
    pub binary: PathBuf,
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    /// containerd namespace (default `crius`).
    pub namespace: String,
    /// Extra TOML appended to the generated config file.
    pub extra_config: String,
    /// Extra environment of the daemon, e.g. `NOTIFY_SOCKET`.
    pub env: Vec<(String, String)>,
}

impl CriusdOptions {
    pub fn new(binary: impl Into<PathBuf>, containerd_socket: impl Into<PathBuf>) -> Self {
        CriusdOptions {
            binary: binary.into(),
            containerd_socket: containerd_socket.into(),
            namespace: "crius".into(),
            extra_config: String::new(),
            env: Vec::new(),
        }
    }
}

/// A running (or exited) `criusd`.
pub struct Criusd {
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
    namespace: String,
    /// The fault point armed at the next launch (`crius_rt::fault`).
    fault_point: Option<String>,
    env: Vec<(String, String)>,
}

impl Criusd {
    /// Writes the config, starts the daemon and waits for its socket.
    pub fn start(opts: &CriusdOptions) -> anyhow::Result<Self> {
        let mut d = Self::spawn(opts)?;
        d.wait_for_socket()?;
        Ok(d)
    }

    /// Starts the daemon without waiting for anything.
    pub fn spawn(opts: &CriusdOptions) -> anyhow::Result<Self> {
        if !opts.binary.is_file() {
            bail!("criusd binary {} does not exist", opts.binary.display());
        }
        let dir = tempfile::Builder::new()
            .prefix("crius-d-")
            .tempdir_in("/tmp")
            .context("creating criusd's directory")?;
        let socket = dir.path().join("crius.sock");
        let cni = dir.path().join("cni");
        std::fs::create_dir_all(&cni)?;
        let config = format!(
            "root_dir = {root:?}\nstate_dir = {state:?}\nsocket = {socket:?}\n{extra}\n[containerd]\naddress = {ctd:?}\nnamespace = {ns:?}\n[cni]\nconf_dir = {cni:?}\n",
            root = dir.path().join("root"),
            state = dir.path().join("state"),
            socket = socket,
            ctd = opts.containerd_socket,
            ns = opts.namespace,
            cni = cni,
            extra = opts.extra_config,
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)?;
        let child = launch(&opts.binary, dir.path(), None, &opts.env)?;
        Ok(Criusd {
            binary: opts.binary.clone(),
            dir,
            child: Some(child),
            socket,
            namespace: opts.namespace.clone(),
            fault_point: None,
            env: opts.env.clone(),
        })
    }

    /// Kills the daemon with `signal` and starts it again with the same
    /// config and state (the log is appended to); waits for its socket.
    pub fn restart(&mut self, signal: Signal) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.signal_and_wait(signal, Duration::from_secs(15))?;
        }
        let fault = self.fault_point.as_deref();
        self.child = Some(launch(&self.binary, self.dir.path(), fault, &self.env)?);
        self.wait_for_socket()
    }

    /// Arms the fault point `point` (`None`: none) from the next
    /// [`Criusd::restart`] on: the daemon kills itself when it gets there.
    /// Needs a test build of `criusd` (feature `fault-points`).
    pub fn set_fault_point(&mut self, point: Option<&str>) {
        self.fault_point = point.map(str::to_string);
    }

    /// Waits (at most `timeout`) for the daemon to exit on its own (a
    /// fault point); its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("criusd did not exit within {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the CRI socket accepts connections.
    pub fn wait_for_socket(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                bail!("criusd exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "criusd did not open {} within 20 s: {}",
            self.socket.display(),
            self.log()
        )
    }

    /// Waits until `Status` reports `RuntimeReady` (containerd connected).
    pub async fn wait_runtime_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut cri = crate::client::connect(&self.socket).await?;
        loop {
            let status = cri
                .runtime
                .status(crius_cri_api::v1::StatusRequest { verbose: false })
                .await?
                .into_inner();
            let ready = status
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.r#type == "RuntimeReady");
            match ready {
                Some(c) if c.status => return Ok(()),
                Some(c) if Instant::now() > deadline => {
                    bail!(
                        "criusd not ready within {timeout:?}: {}: {}",
                        c.reason,
                        c.message
                    )
                }
                None => bail!("Status has no RuntimeReady condition: {status:?}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The CRI socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory holding config, log and state.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CNI configuration directory this daemon reads.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("criusd.log")).unwrap_or_default()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Non-blocking check for exit.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("criusd was already reaped"),
        }
    }

    /// Sends `signal` and waits (at most `timeout`) for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: Signal,
        timeout: Duration,
    ) -> anyhow::Result<ExitStatus> {
        let child = self.child.as_mut().context("criusd was already reaped")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("criusd did not exit within {timeout:?} after {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Criusd {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::kill_and_reap(child, Signal::SIGKILL);
        }
        crate::unmount_under(self.dir.path());
        // runc's state root of the namespace, which nothing else removes:
        // only when empty (a container that outlives its daemon keeps it).
        let _ = std::fs::remove_dir(Path::new(RUNC_STATE_ROOT).join(&self.namespace));
    }
}

/// Where the runc shim keeps runc's state, one directory per namespace.
const RUNC_STATE_ROOT: &str = "/run/containerd/runc";

/// Starts `criusd` on the config in `dir`, logging to `dir/criusd.log`.
/// `NOTIFY_SOCKET` only when `env` gives it: never the test runner's own.
fn launch(
    binary: &Path,
    dir: &Path,
    fault_point: Option<&str>,
    env: &[(String, String)],
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("criusd.log"))?;
    let mut cmd = Command::new(binary);
    match fault_point {
        Some(point) => cmd.env("CRIUS_FAULT_POINT", point),
        None => cmd.env_remove("CRIUS_FAULT_POINT"),
    };
    cmd.env_remove("NOTIFY_SOCKET").envs(env.iter().cloned());
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--log-level")
        .arg("debug")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting criusd")
}
