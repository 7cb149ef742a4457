//! What `compare` starts: containerd with its own CRI plugin (endpoint B),
//! `criusd` (endpoint A) on a containerd without it, one CNI network per
//! endpoint, and the cache lock. Everything is stopped and removed on drop:
//! processes, mounts (rootfs, shm, pinned netns), bridges, pod cgroups.

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

/// One endpoint's CNI network: a bridge of its own and a /24 of its own,
/// host-local IPAM, portmap (no port mappings are ever asked for, so it
/// adds no iptables rules) and loopback; no NAT (`ipMasq` false).
#[derive(Debug, Clone)]
pub struct Network {
    pub bridge: String,
    pub subnet: String,
}

impl Network {
    /// Networks for `n` endpoints, named after this process so that two
    /// benchmarks (or a test run) on one machine never share one:
    /// bridges `crb<pid>x<i>`, subnets `10.250.<k>.0/24`.
    pub fn for_endpoints(n: usize) -> Vec<Network> {
        let pid = std::process::id();
        let base = (pid % 60) as usize * 4;
        (0..n)
            .map(|i| Network {
                bridge: format!("crb{}x{i}", pid % 1_000_000),
                subnet: format!("10.250.{}.0/24", base + i),
            })
            .collect()
    }

    /// The `.conflist`, host-local keeping its leases in `ipam_dir`.
    pub fn conflist(&self, ipam_dir: &Path) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "crius-bench",
            "plugins": [
                {
                    "type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet }]],
                        "dataDir": ipam_dir,
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                { "type": "loopback" }
            ]
        })
        .to_string()
    }
}

/// What the benchmark leaves on the host outside its temporary
/// directories: the CNI bridges and the pods' cgroup tree. Removed on drop,
/// after the runtimes (declare it before them).
pub struct HostGuard {
    pub bridges: Vec<String>,
    /// `/crius-bench-<pid>`: every pod's cgroup parent is below it.
    pub cgroup_root: String,
}

impl HostGuard {
    pub fn new(networks: &[Network]) -> HostGuard {
        HostGuard {
            bridges: networks.iter().map(|n| n.bridge.clone()).collect(),
            cgroup_root: format!("/crius-bench-{}", std::process::id()),
        }
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        for b in &self.bridges {
            if Path::new("/sys/class/net").join(b).exists() {
                let _ = Command::new("ip")
                    .args(["link", "del", b])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let dirs: Vec<PathBuf> = controllers
            .flatten()
            .map(|c| c.path().join(self.cgroup_root.trim_start_matches('/')))
            .filter(|d| d.exists())
            .collect();
        // Killed processes leave their cgroups a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in dirs {
            while !crius_testkit::rmdir_tree(&d) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Mounts a tmpfs at `dir` (created): state directories live on tmpfs
/// (`/run`) on a node, roots on disk.
fn mount_tmpfs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0711"),
    )
    .with_context(|| format!("mounting a tmpfs at {}", dir.display()))
}

/// Which containerd to start.
pub enum Flavor<'a> {
    /// containerd's own CRI plugin on (endpoint B).
    Cri {
        registry_addr: &'a str,
        sandbox_image: &'a str,
        network: &'a Network,
    },
    /// The CRI plugin off: what criusd runs on (endpoint A).
    Plain,
}

/// A private containerd: its own root, state and socket in a temporary
/// directory. Stopped on drop with its shims and their containers, and
/// whatever it mounted unmounted.
pub struct BenchContainerd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
}

impl BenchContainerd {
    /// Writes the config (for the CRI flavor: `certs.d/<registry>/hosts.toml`
    /// with plain HTTP to the registry, the CNI network), starts containerd
    /// and waits for its socket.
    pub fn start(flavor: Flavor<'_>, log_level: &str) -> Result<BenchContainerd> {
        crius_testkit::require_binary("containerd", "containerd")?;
        let cri = matches!(flavor, Flavor::Cri { .. });
        let dir = tempfile::Builder::new()
            .prefix(if cri {
                "crius-bench-ctd-cri-"
            } else {
                "crius-bench-ctd-"
            })
            .tempdir_in("/tmp")
            .context("creating containerd's directory")?;
        let socket = dir.path().join("containerd.sock");
        // From here on, dropping `this` cleans up (the tmpfs included).
        let mut this = BenchContainerd {
            dir,
            socket,
            child: None,
        };
        let p = this.dir.path().to_owned();
        let p = p.as_path();
        mount_tmpfs(&p.join("state"))?;
        let mut config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
  level = "{log_level}"
[metrics]
  address = ""
"#,
            root = p.join("root").display(),
            state = p.join("state").display(),
            socket = this.socket.display(),
        );
        match flavor {
            Flavor::Plain => {
                config.insert_str(
                    "version = 2\n".len(),
                    "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
                );
            }
            Flavor::Cri {
                registry_addr,
                sandbox_image,
                network,
            } => {
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
                std::fs::write(
                    cni_conf.join("10-crius-bench.conflist"),
                    network.conflist(&p.join("ipam")),
                )?;
                config.push_str(&format!(
                    r#"[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni}"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{certs}"
"#,
                    cni = cni_conf.display(),
                    certs = certs.display(),
                ));
            }
        }
        std::fs::write(p.join("config.toml"), config)?;
        let log = File::create(p.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        this.child = Some(child);
        let log_path = this.dir.path().join("containerd.log");
        let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(child) = this.child.as_mut() {
            wait_socket(&this.socket, child, "containerd", &log)?;
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

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

/// SIGKILLs the shims naming `socket` and every process below them (pause
/// and container processes: a killed shim leaves them running).
pub fn kill_shims_and_containers(socket: &Path) {
    let shims = crius_testkit::pids_with_arg(&socket.display().to_string());
    for pid in crate::probe::descendants(&shims) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

impl Drop for BenchContainerd {
    fn drop(&mut self) {
        kill_shims_and_containers(&self.socket);
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
        crius_testkit::unmount_under(self.dir.path());
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
    pub fn start(
        binary: &Path,
        containerd_socket: &Path,
        registry_addr: &str,
        network: &Network,
        log_level: &str,
    ) -> Result<Self> {
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
        let socket = dir.path().join("crius.sock");
        // From here on, dropping `this` cleans up (the tmpfs included).
        let mut this = CriusdProc {
            dir,
            socket,
            child: None,
        };
        let p = this.dir.path().to_owned();
        let p = p.as_path();
        mount_tmpfs(&p.join("state"))?;
        let cni = p.join("cni");
        std::fs::create_dir_all(&cni)?;
        std::fs::write(
            cni.join("10-crius-bench.conflist"),
            network.conflist(&p.join("ipam")),
        )?;
        let config = format!(
            "root_dir = {root:?}\nstate_dir = {state:?}\nsocket = {socket:?}\ncgroup_driver = \"cgroupfs\"\n\n[log]\nlevel = {log_level:?}\n\n[containerd]\naddress = {ctd:?}\nnamespace = \"crius\"\n\n[cni]\nconf_dir = {cni:?}\nbin_dirs = [\"/usr/lib/cni\"]\n\n[images]\nregistry_config_dir = \"\"\nplain_http_hosts = [{registry:?}]\n",
            root = p.join("root"),
            state = p.join("state"),
            socket = this.socket,
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
        this.child = Some(child);
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

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
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
        // Pinned network namespaces and pod /dev/shm of pods left behind.
        crius_testkit::unmount_under(self.dir.path());
    }
}
