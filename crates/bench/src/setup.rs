//! What `compare` starts: containerd with its own CRI plugin (endpoint B),
//! `criusd` (endpoint A, on a testkit containerd without CRI plugin), and
//! the cache lock. Everything is stopped and removed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crius_cri_api::v1::{StatusRequest, VersionRequest};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

/// Serializes benchmark runs sharing a cache directory (two benchmarks at
/// once would measure each other anyway).
pub fn lock_cache(dir: &Path) -> Result<Flock<File>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        return Ok(lock);
    }
    eprintln!(
        "crius-bench: waiting for another crius-bench holding {}",
        path.display()
    );
    let file = File::create(&path)?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

/// SIGTERM, up to 10 s, then SIGKILL; always reaps.
fn stop_child(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `socket` accepts connections, or `child` exits.
fn wait_socket(
    socket: &Path,
    child: &mut Child,
    what: &str,
    log: &dyn Fn() -> String,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status}:\n{}", tail(&log(), 30));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{what} did not open {} within 20 s:\n{}",
        socket.display(),
        tail(&log(), 30)
    )
}

/// A private containerd with its CRI plugin enabled: its own root, state and
/// socket in a temporary directory, registry hosts in `certs.d/`.
pub struct CriContainerd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

impl CriContainerd {
    /// Writes the config and `certs.d/<registry>/hosts.toml` (plain HTTP to
    /// `registry_addr`), starts containerd and waits for its socket.
    pub fn start(registry_addr: &str) -> Result<CriContainerd> {
        crius_testkit::require_binary("containerd", "containerd")?;
        let dir = tempfile::Builder::new()
            .prefix("crius-bench-ctd-cri-")
            .tempdir_in("/tmp")
            .context("creating containerd's directory")?;
        let p = dir.path();
        let socket = p.join("containerd.sock");
        let certs = p.join("certs.d");
        let host_dir = certs.join(registry_addr);
        std::fs::create_dir_all(&host_dir)?;
        std::fs::write(
            host_dir.join("hosts.toml"),
            format!(
                "server = \"http://{registry_addr}\"\n\n[host.\"http://{registry_addr}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        let cni_conf = p.join("cni");
        std::fs::create_dir_all(&cni_conf)?;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni}"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{certs}"
"#,
            root = p.join("root").display(),
            state = p.join("state").display(),
            socket = socket.display(),
            cni = cni_conf.display(),
            certs = certs.display(),
        );
        std::fs::write(p.join("config.toml"), config)?;
        let log = File::create(p.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (CRI plugin enabled)")?;
        let mut this = CriContainerd {
            dir,
            socket,
            child: Some(child),
        };
        let log_path = this.dir.path().join("containerd.log");
        let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(child) = this.child.as_mut() {
            wait_socket(&this.socket, child, "containerd (CRI plugin enabled)", &log)?;
        }
        Ok(this)
    }

    /// Waits until the CRI plugin answers Version (it may fail to load while
    /// containerd itself runs on).
    pub async fn wait_cri(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut cri = crius_testkit::client::connect(&self.socket).await?;
        loop {
            match cri
                .runtime
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
            {
                Ok(_) => return Ok(()),
                Err(s) if Instant::now() > deadline || s.code() == tonic::Code::Unimplemented => {
                    let log = self.log();
                    let cri_lines: Vec<&str> = log
                        .lines()
                        .filter(|l| {
                            l.contains("cri")
                                && (l.contains("level=error")
                                    || l.contains("level=warn")
                                    || l.contains("failed"))
                        })
                        .collect();
                    bail!(
                        "containerd's CRI plugin does not answer Version ({:?}: {}); CRI errors in its log:\n{}\nlog tail:\n{}",
                        s.code(),
                        s.message(),
                        cri_lines.join("\n"),
                        tail(&log, 20)
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        crius_testkit::containerd::kill_shims(&self.socket);
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

/// `criusd` at log level info (what containerd logs at by default), with
/// its own socket and state directories.
pub struct CriusdProc {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

impl CriusdProc {
    pub fn start(binary: &Path, containerd_socket: &Path, registry_addr: &str) -> Result<Self> {
        if !binary.is_file() {
            bail!(
                "criusd binary {} does not exist (build it: cargo build --release -p crius, or pass --criusd)",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("crius-bench-d-")
            .tempdir_in("/tmp")
            .context("creating criusd's directory")?;
        let p = dir.path();
        let socket = p.join("crius.sock");
        let cni = p.join("cni");
        std::fs::create_dir_all(&cni)?;
        let config = format!(
            "root_dir = {root:?}\nstate_dir = {state:?}\nsocket = {socket:?}\n\n[log]\nlevel = \"info\"\n\n[containerd]\naddress = {ctd:?}\nnamespace = \"crius\"\n\n[cni]\nconf_dir = {cni:?}\n\n[images]\nregistry_config_dir = \"\"\nplain_http_hosts = [{registry:?}]\n",
            root = p.join("root"),
            state = p.join("state"),
            socket = socket,
            ctd = containerd_socket,
            cni = cni,
            registry = registry_addr,
        );
        let config_path = p.join("config.toml");
        std::fs::write(&config_path, config)?;
        let log = File::create(p.join("criusd.log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut this = CriusdProc {
            dir,
            socket,
            child: Some(child),
        };
        let log_path = this.dir.path().join("criusd.log");
        let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(child) = this.child.as_mut() {
            wait_socket(&this.socket, child, "criusd", &log)?;
        }
        Ok(this)
    }

    /// Waits until Status reports RuntimeReady (criusd reached containerd).
    pub async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut cri = crius_testkit::client::connect(&self.socket).await?;
        loop {
            let status = cri
                .runtime
                .status(StatusRequest { verbose: false })
                .await
                .map_err(|s| anyhow::anyhow!("criusd Status: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            let ready = status
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|c| c.r#type == "RuntimeReady" && c.status);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "criusd not RuntimeReady within 20 s: {status:?}\n{}",
                    tail(&self.log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("criusd.log")).unwrap_or_default()
    }
}

impl Drop for CriusdProc {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}
