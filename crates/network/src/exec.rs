//! Running CNI plugins: what libcni does for Go runtimes, for the CNI 1.0.0
//! and 0.4.0 (and 0.3.x) configuration formats.
//!
//! [`Cni::add`] runs the plugins of a network in order, chaining each result
//! into the next plugin's `prevResult`, and caches the final result so that
//! [`Cni::del`] (plugins in reverse order) can hand it back. A failed ADD is
//! rolled back with a DEL of the plugins that ran, so it leaves nothing behind.
//!
//! Plugins are separate processes (`tokio::process`); nothing here enters a
//! network namespace.
//!
//! # Result cache
//!
//! One JSON file per attachment, `cache_dir/<network>-<container id>-<ifname>.json`,
//! written atomically (temporary file, `fsync`, rename):
//!
//! ```json
//! {"kind": "crius-cni-cache/v1", "networkName": "crius", "containerId": "…",
//!  "ifName": "eth0", "netns": "/run/netns/…", "cniArgs": [["K8S_POD_NAME", "…"]],
//!  "capabilityArgs": {"portMappings": […]}, "config": {…the network config…},
//!  "result": {…the final ADD result…}}
//! ```
//!
//! DEL prefers the cached `config` and `capabilityArgs` to the ones it is
//! given: they are what ADD set up (portmap, for one, deletes nothing unless it
//! gets the port mappings again), even if the configuration file changed since.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::error::CniError;

/// Result of a CNI operation.
pub type Result<T, E = CniError> = std::result::Result<T, E>;
use crius_metrics::CniOp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::cni::{NetworkConfig, find_plugin};
use crate::netns;
pub use crate::result::{CniResult, Interface, IpConfig};

/// How long one plugin invocation may run before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// `kind` of the cache files this module writes.
const CACHE_KIND: &str = "crius-cni-cache/v1";

/// A CNI plugin runner.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where plugins are looked up, in order; also `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// Where ADD results are cached for DEL.
    pub cache_dir: PathBuf,
    /// Per-invocation time limit; a plugin still running after this long
    /// is killed, with everything it started (its process group).
    pub plugin_timeout: Duration,
}

/// One container's attachment to one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the sandbox id (letters, digits, `_.-`).
    pub container_id: String,
    /// `CNI_NETNS`: the pinned network namespace (see [`crate::netns`]).
    pub netns: PathBuf,
    /// `CNI_IFNAME`: the interface inside the namespace, normally `eth0`.
    pub ifname: String,
    /// `CNI_ARGS`, in order; see [`Attachment::kubernetes_args`].
    pub args: Vec<(String, String)>,
    /// Capability arguments, given as `runtimeConfig` to the plugins that
    /// declare the capability.
    pub capabilities: RuntimeConfig,
}

/// Capability arguments (CNI `runtimeConfig`) crius can provide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// `portMappings` (portmap plugin). Mappings with host port 0 are not
    /// passed on (CRI: no host port).
    #[serde(
        rename = "portMappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_mappings: Vec<PortMapping>,
}

/// One `portMappings` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (any case; sent lower-case).
    pub protocol: String,
    /// Host address to bind; empty for all.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Del,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
        }
    }
}

/// A network configuration as plugins see it: the list form of a `.conflist`
/// or of a single `.conf`.
#[derive(Debug, Clone)]
struct NetList {
    name: String,
    cni_version: String,
    plugins: Vec<Map<String, Value>>,
    /// The whole configuration, for the cache.
    config: Value,
}

/// What every plugin of one invocation gets in its environment.
struct PluginEnv {
    container_id: String,
    netns: String,
    ifname: String,
    args: String,
}

/// The inputs of a DEL (see [`Cni::del_input`]).
struct DelInput {
    list: NetList,
    capabilities: RuntimeConfig,
    prev: Option<Value>,
    args: Vec<(String, String)>,
}

/// The cache file's content.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    kind: String,
    #[serde(rename = "networkName")]
    network_name: String,
    #[serde(rename = "containerId")]
    container_id: String,
    #[serde(rename = "ifName")]
    ifname: String,
    #[serde(default)]
    netns: String,
    #[serde(rename = "cniArgs", default)]
    args: Vec<(String, String)>,
    #[serde(rename = "capabilityArgs", default)]
    capabilities: RuntimeConfig,
    config: Value,
    result: Value,
}

impl Cni {
    /// A runner with [`DEFAULT_PLUGIN_TIMEOUT`].
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Cni {
            bin_dirs,
            cache_dir,
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }

    /// Sets the per-plugin time limit.
    pub fn with_plugin_timeout(mut self, timeout: Duration) -> Self {
        self.plugin_timeout = timeout;
        self
    }

    /// Attaches `att` to `net`: runs ADD through the plugin chain and caches
    /// the result.
    ///
    /// On failure, the plugins that ran (including the failing one) get a DEL
    /// in reverse order before the error is returned, so nothing stays
    /// allocated. Errors: `InvalidArgument` for a malformed attachment,
    /// `FailedPrecondition` for a missing namespace, a bad configuration, a
    /// missing plugin or a plugin error (naming the plugin and its `msg`),
    /// `DeadlineExceeded` for a plugin killed after the timeout.
    ///
    /// Dropping the returned future kills the running plugin and skips the
    /// rollback; call [`Cni::del`] afterwards.
    pub async fn add(&self, net: &NetworkConfig, att: &Attachment) -> Result<CniResult> {
        let started = Instant::now();
        let result = self.attach(net, att).await;
        crius_metrics::global().cni(CniOp::Add, result.is_ok(), started.elapsed());
        result
    }

    /// [`Cni::add`], untimed.
    async fn attach(&self, net: &NetworkConfig, att: &Attachment) -> Result<CniResult> {
        validate(att)?;
        let list = NetList::from_config(net)?;
        if !netns::is_pinned(&att.netns) {
            return Err(CniError::NoNetns {
                netns: att.netns.clone(),
                container: att.container_id.clone(),
            });
        }
        let env = PluginEnv {
            container_id: att.container_id.clone(),
            netns: att.netns.display().to_string(),
            ifname: att.ifname.clone(),
            args: cni_args(&att.args),
        };
        let started = Instant::now();
        let raw = self.add_chain(&list, &env, &att.capabilities).await?;
        let result = self.commit_add(&list, &env, att, raw).await?;
        tracing::debug!(
            network = %list.name,
            container = %att.container_id,
            ips = ?result.pod_ips(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "CNI ADD done"
        );
        Ok(result)
    }

    /// ADD through every plugin in order, each given the previous result;
    /// the last result. On a failure the plugins done are rolled back.
    async fn add_chain(
        &self,
        list: &NetList,
        env: &PluginEnv,
        capabilities: &RuntimeConfig,
    ) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for index in 0..list.plugins.len() {
            match self
                .invoke(Op::Add, list, index, env, prev.as_ref(), capabilities)
                .await
            {
                Ok(Some(result)) => prev = Some(result),
                Ok(None) => {
                    tracing::warn!(
                        network = %list.name,
                        plugin = plugin_type(list, index),
                        "CNI plugin printed no result on ADD; keeping the previous one"
                    );
                }
                Err(e) => {
                    self.rollback(list, index, env, prev.as_ref(), capabilities)
                        .await;
                    return Err(e);
                }
            }
        }
        let last = list.plugins.len().saturating_sub(1);
        match prev {
            Some(raw) => Ok(raw),
            None => {
                self.rollback(list, last, env, None, capabilities).await;
                Err(CniError::BadOutput(format!(
                    "CNI network {}: no plugin printed a result on ADD",
                    list.name
                )))
            }
        }
    }

    /// Reads the chain's result and caches it for DEL; on a failure the
    /// whole chain is rolled back.
    async fn commit_add(
        &self,
        list: &NetList,
        env: &PluginEnv,
        att: &Attachment,
        raw: Value,
    ) -> Result<CniResult> {
        let last = list.plugins.len().saturating_sub(1);
        let result = match CniResult::from_json(raw.clone()) {
            Ok(result) => result,
            Err(reason) => {
                self.rollback(list, last, env, Some(&raw), &att.capabilities)
                    .await;
                return Err(CniError::BadOutput(format!(
                    "CNI plugin {} of network {} printed an invalid result: {reason}",
                    plugin_type(list, last),
                    list.name
                )));
            }
        };
        let entry = CacheEntry {
            kind: CACHE_KIND.into(),
            network_name: list.name.clone(),
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            netns: env.netns.clone(),
            args: att.args.clone(),
            capabilities: att.capabilities.clone(),
            config: list.config.clone(),
            result: raw,
        };
        if let Err(e) = self.write_cache(&entry).await {
            self.rollback(list, last, env, Some(&entry.result), &att.capabilities)
                .await;
            return Err(e);
        }
        Ok(result)
    }

    /// Detaches `att` from `net`: DEL through the plugins in reverse order,
    /// with the cached ADD result as `prevResult`, then drops the cache entry.
    ///
    /// Works when the namespace is already gone (plugins then get an empty
    /// `CNI_NETNS`) and when nothing is attached (a second DEL is fine). All
    /// plugins are tried even if one fails; the first error is returned and
    /// the cache entry kept, so a retry gets the same input.
    pub async fn del(&self, net: &NetworkConfig, att: &Attachment) -> Result<()> {
        let started = Instant::now();
        let result = self.detach(net, att).await;
        crius_metrics::global().cni(CniOp::Del, result.is_ok(), started.elapsed());
        result
    }

    /// [`Cni::del`], untimed.
    async fn detach(&self, net: &NetworkConfig, att: &Attachment) -> Result<()> {
        validate(att)?;
        if !is_cni_identifier(&net.name) {
            return Err(CniError::Config {
                origin: net.file.display().to_string(),
                reason: format!("invalid network name {:?}", net.name),
            });
        }
        let cache_path = self.cache_path(&net.name, &att.container_id, &att.ifname);
        let input = self.del_input(net, att, &cache_path).await?;
        let list = &input.list;
        // libcni hands the cached result to DEL only from 0.4.0 on.
        let prev = input
            .prev
            .filter(|_| version_at_least(&list.cni_version, (0, 4, 0)));
        let netns = if netns::is_pinned(&att.netns) {
            att.netns.display().to_string()
        } else {
            tracing::debug!(netns = %att.netns.display(), "network namespace gone; DEL with empty CNI_NETNS");
            String::new()
        };
        let args = if att.args.is_empty() {
            &input.args
        } else {
            &att.args
        };
        let env = PluginEnv {
            container_id: att.container_id.clone(),
            netns,
            ifname: att.ifname.clone(),
            args: cni_args(args),
        };
        self.del_chain(list, &env, prev.as_ref(), &input.capabilities)
            .await?;
        match tokio::fs::remove_file(&cache_path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CniError::Cache {
                    context: format!("remove CNI cache {}", cache_path.display()),
                    source: e,
                });
            }
        }
        tracing::debug!(network = %list.name, container = %att.container_id, "CNI DEL done");
        Ok(())
    }

    /// What DEL runs with: the cached ADD's config, capabilities, result
    /// and args when there is a readable cache entry, else today's config.
    async fn del_input(
        &self,
        net: &NetworkConfig,
        att: &Attachment,
        cache_path: &Path,
    ) -> Result<DelInput> {
        let Some(entry) = self.read_cache(cache_path).await else {
            return Ok(DelInput {
                list: NetList::from_config(net)?,
                capabilities: att.capabilities.clone(),
                prev: None,
                args: Vec::new(),
            });
        };
        let list = match NetList::from_value(entry.config, &cache_path.display().to_string()) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(cache = %cache_path.display(), error = %e, "ignoring the cached CNI config");
                return Ok(DelInput {
                    list: NetList::from_config(net)?,
                    capabilities: att.capabilities.clone(),
                    prev: Some(entry.result),
                    args: entry.args,
                });
            }
        };
        Ok(DelInput {
            list,
            capabilities: entry.capabilities,
            prev: Some(entry.result),
            args: entry.args,
        })
    }

    /// DEL through every plugin in reverse order; all are tried, the first
    /// error is returned.
    async fn del_chain(
        &self,
        list: &NetList,
        env: &PluginEnv,
        prev: Option<&Value>,
        capabilities: &RuntimeConfig,
    ) -> Result<()> {
        let mut first_error = None;
        for index in (0..list.plugins.len()).rev() {
            if let Err(e) = self
                .invoke(Op::Del, list, index, env, prev, capabilities)
                .await
            {
                tracing::warn!(
                    network = %list.name,
                    container = %env.container_id,
                    plugin = plugin_type(list, index),
                    error = %e,
                    "CNI DEL failed"
                );
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The cached result of a successful ADD of `att` to network `network`,
    /// if any (e.g. to report pod IPs after a restart).
    pub async fn cached_result(&self, network: &str, att: &Attachment) -> Option<CniResult> {
        if !is_cni_identifier(network) || validate(att).is_err() {
            return None;
        }
        let path = self.cache_path(network, &att.container_id, &att.ifname);
        let entry = self.read_cache(&path).await?;
        CniResult::from_json(entry.result).ok()
    }

    /// Best-effort DEL of plugins `failed..=0` after a failed ADD.
    async fn rollback(
        &self,
        list: &NetList,
        failed: usize,
        env: &PluginEnv,
        prev: Option<&Value>,
        capabilities: &RuntimeConfig,
    ) {
        for index in (0..=failed).rev() {
            if let Err(e) = self
                .invoke(Op::Del, list, index, env, prev, capabilities)
                .await
            {
                tracing::warn!(
                    network = %list.name,
                    container = %env.container_id,
                    plugin = plugin_type(list, index),
                    error = %e,
                    "CNI DEL after a failed ADD failed"
                );
            }
        }
        let path = self.cache_path(&list.name, &env.container_id, &env.ifname);
        if let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(cache = %path.display(), error = %e, "cannot remove CNI cache");
        }
    }

    /// Runs one plugin; `Ok(Some(result))` for a result on stdout.
    async fn invoke(
        &self,
        op: Op,
        list: &NetList,
        index: usize,
        env: &PluginEnv,
        prev: Option<&Value>,
        capabilities: &RuntimeConfig,
    ) -> Result<Option<Value>> {
        let kind = plugin_type(list, index);
        let path = find_plugin(kind, &self.bin_dirs).ok_or_else(|| CniError::NoPlugin {
            plugin: kind.to_string(),
            network: list.name.clone(),
            dirs: join_paths(&self.bin_dirs),
        })?;
        let stdin = plugin_stdin(list, index, prev, capabilities)?;
        let started = Instant::now();
        let output = self
            .run_plugin((kind, &path), op, env, stdin, &list.name)
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        tracing::debug!(
            plugin = kind,
            op = op.as_str(),
            network = %list.name,
            container = %env.container_id,
            status = %output.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            stderr,
            "CNI plugin ran"
        );
        if !output.status.success() {
            if !stderr.is_empty() {
                tracing::warn!(plugin = kind, op = op.as_str(), network = %list.name, stderr, "CNI plugin failed");
            }
            return Err(plugin_error(
                kind,
                op,
                &list.name,
                &output.status,
                &output.stdout,
                stderr,
            ));
        }
        if op == Op::Del || output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&output.stdout)
            .map(Some)
            .map_err(|e| {
                CniError::BadOutput(format!(
                    "CNI plugin {kind} {} for network {} printed invalid JSON: {e}",
                    op.as_str(),
                    list.name
                ))
            })
    }

    /// Runs the plugin at `path` with `stdin` as its input, within the
    /// plugin timeout; its output whatever its exit status.
    async fn run_plugin(
        &self,
        (kind, path): (&str, &Path),
        op: Op,
        env: &PluginEnv,
        stdin: Vec<u8>,
        network: &str,
    ) -> Result<std::process::Output> {
        let pgid = AtomicU32::new(0);
        let run = async {
            let mut child = spawn_plugin(path, op, env, &self.bin_dirs).await?;
            pgid.store(child.id().unwrap_or(0), Ordering::Relaxed);
            let pipe = child.stdin.take();
            let feed = async move {
                if let Some(mut pipe) = pipe
                    && let Err(e) = pipe.write_all(&stdin).await
                {
                    // The plugin may exit without reading its input.
                    tracing::debug!(error = %e, "writing the CNI plugin's stdin");
                }
            };
            let ((), output) = tokio::join!(feed, child.wait_with_output());
            output
        };
        match tokio::time::timeout(self.plugin_timeout, run).await {
            Err(_) => {
                // Dropping `run` dropped the child: kill_on_drop killed it and
                // tokio reaps it. What it started (an IPAM plugin, say) is in
                // its process group.
                kill_group(pgid.load(Ordering::Relaxed));
                Err(CniError::Timeout {
                    plugin: kind.to_string(),
                    op: op.as_str(),
                    network: network.to_string(),
                    after: self.plugin_timeout,
                })
            }
            Ok(Err(source)) => Err(CniError::Spawn {
                path: path.to_path_buf(),
                op: op.as_str(),
                network: network.to_string(),
                source,
            }),
            Ok(Ok(output)) => Ok(output),
        }
    }

    fn cache_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{network}-{container_id}-{ifname}.json"))
    }

    async fn read_cache(&self, path: &Path) -> Option<CacheEntry> {
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(cache = %path.display(), error = %e, "cannot read CNI cache");
                return None;
            }
        };
        match serde_json::from_slice::<CacheEntry>(&bytes) {
            Ok(entry) if entry.kind == CACHE_KIND => Some(entry),
            Ok(entry) => {
                tracing::warn!(cache = %path.display(), kind = %entry.kind, "ignoring CNI cache of an unknown kind");
                None
            }
            Err(e) => {
                tracing::warn!(cache = %path.display(), error = %e, "ignoring a corrupt CNI cache");
                None
            }
        }
    }

    async fn write_cache(&self, entry: &CacheEntry) -> Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.cache_path(&entry.network_name, &entry.container_id, &entry.ifname);
        let bytes = serde_json::to_vec(entry).map_err(|source| CniError::Encode {
            what: "CNI cache",
            source,
        })?;
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.cache_dir)
            .await
            .map_err(|source| CniError::Cache {
                context: format!("create CNI cache directory {}", self.cache_dir.display()),
                source,
            })?;
        let tmp = self.cache_dir.join(format!(
            ".{}.{}.{}.tmp",
            entry.container_id,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .await?;
            f.write_all(&bytes).await?;
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(CniError::Cache {
                context: format!("write CNI cache {}", path.display()),
                source: e,
            });
        }
        Ok(())
    }
}

/// Spawns a plugin, retrying while its binary is busy (ETXTBSY: a freshly
/// written plugin whose write descriptor leaked into a concurrent fork), as
/// libcni does.
async fn spawn_plugin(
    path: &Path,
    op: Op,
    env: &PluginEnv,
    bin_dirs: &[PathBuf],
) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        let mut cmd = tokio::process::Command::new(path);
        cmd.env("CNI_COMMAND", op.as_str())
            .env("CNI_CONTAINERID", &env.container_id)
            .env("CNI_NETNS", &env.netns)
            .env("CNI_IFNAME", &env.ifname)
            .env("CNI_ARGS", &env.args)
            .env("CNI_PATH", join_paths(bin_dirs))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Kills the CNI plugins a previous daemon left running for the pods
/// `ids`: a daemon killed during an ADD leaves its plugin (in a process
/// group of its own) running, and an ADD that finishes after start-up's
/// DEL of the pod would leak what it made (an address, port mappings).
/// Finds processes whose environment holds `CNI_CONTAINERID=<id>` and
/// SIGKILLs their process groups. Returns how many groups. Blocking: reads
/// `/proc`.
pub fn kill_lost_plugins(ids: &[String]) -> usize {
    if ids.is_empty() {
        return 0;
    }
    let wanted: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| format!("CNI_CONTAINERID={id}").into_bytes())
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let own = nix::unistd::getpgrp();
    let mut groups = std::collections::BTreeSet::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|v| wanted.iter().any(|w| w == v))
        {
            continue;
        }
        match nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))) {
            Ok(pgid) if pgid != own && pgid.as_raw() > 1 => {
                groups.insert(pgid.as_raw());
            }
            _ => {}
        }
    }
    for pgid in &groups {
        tracing::warn!(pgid, "killing a CNI plugin a previous criusd left running");
        kill_group(*pgid as u32);
    }
    groups.len()
}

/// SIGKILLs the process group `pgid` (a timed-out plugin and its children).
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    match nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid, error = %e, "cannot kill a timed-out CNI plugin's process group")
        }
    }
}

/// Maps a failed plugin run to an error: the CNI error JSON on stdout when
/// there is one, else stderr.
fn plugin_error(
    kind: &str,
    op: Op,
    network: &str,
    status: &std::process::ExitStatus,
    stdout: &[u8],
    stderr: &str,
) -> CniError {
    #[derive(Deserialize)]
    struct PluginError {
        #[serde(default)]
        code: Option<u64>,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    let reported = serde_json::from_slice::<PluginError>(stdout).ok();
    let code = reported.as_ref().and_then(|e| e.code);
    let detail = match reported {
        Some(err) if !err.msg.is_empty() || err.code.is_some() => {
            let mut s = err.msg;
            if !err.details.is_empty() {
                s = format!("{s}: {}", err.details);
            }
            if let Some(code) = err.code {
                s = format!("{s} (code {code})");
            }
            s
        }
        _ => {
            let out = String::from_utf8_lossy(stdout);
            let text = [out.trim(), stderr]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            if text.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {text}")
            }
        }
    };
    CniError::Failed {
        plugin: kind.to_string(),
        action: match op {
            Op::Add => "add the pod to",
            Op::Del => "remove the pod from",
        },
        network: network.to_string(),
        detail,
        code,
    }
}

impl NetList {
    fn from_config(net: &NetworkConfig) -> Result<Self> {
        let origin = net.file.display().to_string();
        let value: Value = serde_json::from_slice(&net.raw).map_err(|e| CniError::Config {
            origin: origin.clone(),
            reason: format!("invalid JSON: {e}"),
        })?;
        Self::from_value(value, &origin)
    }

    /// Parses a `.conflist` or, without `plugins`, a single-plugin `.conf`.
    fn from_value(config: Value, origin: &str) -> Result<Self> {
        let bad = |reason: String| CniError::Config {
            origin: origin.to_string(),
            reason,
        };
        let obj = config
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !is_cni_identifier(&name) {
            return Err(bad(format!("invalid network name {name:?}")));
        }
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if cni_version.is_empty() {
            return Err(bad("cniVersion is missing".into()));
        }
        let plugins: Vec<Map<String, Value>> = match obj.get("plugins") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|p| {
                    p.as_object()
                        .cloned()
                        .ok_or_else(|| bad("a plugin is not a JSON object".into()))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("plugins is not a list".into())),
            None => vec![obj.clone()],
        };
        if plugins.is_empty() {
            return Err(bad("no plugins".into()));
        }
        for p in &plugins {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind.is_empty() || kind.contains('/') || kind == "." || kind == ".." {
                return Err(bad(format!("invalid plugin type {kind:?}")));
            }
        }
        Ok(NetList {
            name,
            cni_version,
            plugins,
            config,
        })
    }
}

fn plugin_type(list: &NetList, index: usize) -> &str {
    list.plugins
        .get(index)
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The stdin of plugin `index`: its configuration plus `name`, `cniVersion`,
/// `prevResult` and the `runtimeConfig` of the capabilities it declares.
fn plugin_stdin(
    list: &NetList,
    index: usize,
    prev: Option<&Value>,
    capabilities: &RuntimeConfig,
) -> Result<Vec<u8>> {
    let mut conf = list
        .plugins
        .get(index)
        .cloned()
        .ok_or_else(|| CniError::Config {
            origin: list.name.clone(),
            reason: format!("no plugin #{index}"),
        })?;
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime_config = runtime_config_for(&conf, capabilities)?;
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    serde_json::to_vec(&Value::Object(conf)).map_err(|source| CniError::Encode {
        what: "CNI plugin config",
        source,
    })
}

/// The capability arguments a plugin declares (`"capabilities": {"x": true}`)
/// and crius has a value for.
fn runtime_config_for(
    conf: &Map<String, Value>,
    capabilities: &RuntimeConfig,
) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let Some(declared) = conf.get("capabilities").and_then(Value::as_object) else {
        return Ok(out);
    };
    let normalized = RuntimeConfig {
        port_mappings: capabilities
            .port_mappings
            .iter()
            .filter(|m| m.host_port != 0)
            .map(|m| PortMapping {
                protocol: m.protocol.to_ascii_lowercase(),
                ..m.clone()
            })
            .collect(),
    };
    let offered = match serde_json::to_value(&normalized) {
        Ok(Value::Object(map)) => map,
        Ok(_) => Map::new(),
        Err(source) => {
            return Err(CniError::Encode {
                what: "runtimeConfig",
                source,
            });
        }
    };
    for (capability, enabled) in declared {
        if enabled.as_bool() == Some(true)
            && let Some(value) = offered.get(capability)
        {
            out.insert(capability.clone(), value.clone());
        }
    }
    Ok(out)
}

/// `CNI_ARGS`: `K=V;K=V`.
fn cni_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// libcni's rule for container ids and network names:
/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn is_cni_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn validate(att: &Attachment) -> Result<()> {
    if !is_cni_identifier(&att.container_id) {
        return Err(CniError::Invalid {
            field: "container_id",
            reason: format!(
                "{:?}: must start with a letter or digit and hold only letters, digits, '_', '.', '-'",
                att.container_id
            ),
        });
    }
    let ifname = &att.ifname;
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname == "."
        || ifname == ".."
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(CniError::Invalid {
            field: "ifname",
            reason: format!("{ifname:?} is not a valid interface name"),
        });
    }
    for (k, v) in &att.args {
        if k.is_empty() || k.contains(['=', ';']) || v.contains(';') {
            return Err(CniError::Invalid {
                field: "args",
                reason: format!("{k:?}={v:?} cannot be passed in CNI_ARGS"),
            });
        }
    }
    for m in &att.capabilities.port_mappings {
        if !matches!(
            m.protocol.to_ascii_lowercase().as_str(),
            "tcp" | "udp" | "sctp"
        ) {
            return Err(CniError::Invalid {
                field: "port_mappings.protocol",
                reason: format!("{:?} is not tcp, udp or sctp", m.protocol),
            });
        }
        if m.container_port == 0 && m.host_port != 0 {
            return Err(CniError::Invalid {
                field: "port_mappings.container_port",
                reason: format!("host port {} maps to container port 0", m.host_port),
            });
        }
        if !m.host_ip.is_empty() && m.host_ip.parse::<IpAddr>().is_err() {
            return Err(CniError::Invalid {
                field: "port_mappings.host_ip",
                reason: format!("{:?} is not an IP address", m.host_ip),
            });
        }
    }
    Ok(())
}

/// `a.b.c` >= `min`; unparsable versions count as new.
fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), c) => {
            let c = match c {
                Some(Ok(c)) => c,
                None => 0,
                Some(Err(_)) => return true,
            };
            (a, b, c) >= min
        }
        _ => true,
    }
}

impl Attachment {
    /// The `CNI_ARGS` kubelet-era runtimes pass for a pod (`IgnoreUnknown=1`
    /// first, so plugins that do not know the keys accept them).
    pub fn kubernetes_args(
        namespace: &str,
        name: &str,
        uid: &str,
        infra_container_id: &str,
    ) -> Vec<(String, String)> {
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", namespace),
            ("K8S_POD_NAME", name),
            ("K8S_POD_INFRA_CONTAINER_ID", infra_container_id),
            ("K8S_POD_UID", uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(config: Value) -> NetList {
        NetList::from_value(config, "test").expect("valid list")
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_declared_capabilities() {
        let l = list(json!({
            "cniVersion": "1.0.0",
            "name": "pods",
            "plugins": [
                {"type": "bridge", "bridge": "b0"},
                {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": true}},
                {"type": "other", "capabilities": {"portMappings": false}}
            ]
        }));
        let caps = RuntimeConfig {
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "TCP".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 0,
                    container_port: 81,
                    protocol: "udp".into(),
                    host_ip: String::new(),
                },
            ],
        };
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let parse = |b: Vec<u8>| -> Value { serde_json::from_slice(&b).expect("json") };

        let first = parse(plugin_stdin(&l, 0, None, &caps).expect("stdin"));
        assert_eq!(
            first,
            json!({"type": "bridge", "bridge": "b0", "name": "pods", "cniVersion": "1.0.0"})
        );
        let second = parse(plugin_stdin(&l, 1, Some(&prev), &caps).expect("stdin"));
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        let third = parse(plugin_stdin(&l, 2, Some(&prev), &caps).expect("stdin"));
        assert!(third.get("runtimeConfig").is_none(), "{third}");
    }

    #[test]
    fn single_conf_is_a_list_of_one() {
        let l = list(json!({"cniVersion": "0.4.0", "name": "one", "type": "bridge"}));
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(plugin_type(&l, 0), "bridge");
        for bad in [
            json!({"cniVersion": "1.0.0", "name": "x", "plugins": []}),
            json!({"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "../evil"}]}),
            json!({"cniVersion": "1.0.0", "name": "a/b", "plugins": [{"type": "bridge"}]}),
            json!({"name": "x", "plugins": [{"type": "bridge"}]}),
            json!({"cniVersion": "1.0.0", "name": "x", "plugins": {}}),
        ] {
            let err = NetList::from_value(bad.clone(), "t").expect_err("invalid");
            assert!(matches!(err, CniError::Config { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn attachments_are_validated() {
        let good = Attachment {
            container_id: "abc123".into(),
            netns: PathBuf::from("/run/netns/x"),
            ifname: "eth0".into(),
            args: Attachment::kubernetes_args("default", "web", "uid-1", "abc123"),
            capabilities: RuntimeConfig::default(),
        };
        validate(&good).expect("valid");
        assert_eq!(
            cni_args(&good.args),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=uid-1"
        );
        let mut bad = vec![];
        for id in ["", "-x", "a/b", "a b"] {
            bad.push(Attachment {
                container_id: id.into(),
                ..good.clone()
            });
        }
        for ifname in ["", "eth0:1", "a/b", "0123456789abcdef", "a b"] {
            bad.push(Attachment {
                ifname: ifname.into(),
                ..good.clone()
            });
        }
        bad.push(Attachment {
            args: vec![("K;X".into(), "v".into())],
            ..good.clone()
        });
        bad.push(Attachment {
            args: vec![("K".into(), "a;b".into())],
            ..good.clone()
        });
        bad.push(Attachment {
            capabilities: RuntimeConfig {
                port_mappings: vec![PortMapping {
                    host_port: 1,
                    container_port: 1,
                    protocol: "icmp".into(),
                    host_ip: String::new(),
                }],
            },
            ..good.clone()
        });
        for a in bad {
            let err = validate(&a).expect_err("invalid");
            assert!(matches!(err, CniError::Invalid { .. }), "{a:?}: {err}");
        }
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("1.0.0", (0, 4, 0)));
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(version_at_least("0.4", (0, 4, 0)));
        assert!(version_at_least("weird", (0, 4, 0)));
    }

    #[test]
    fn plugin_errors_name_the_plugin_and_message() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(1 << 8);
        let e = plugin_error(
            "bridge",
            Op::Add,
            "pods",
            &status,
            br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}"#,
            "",
        );
        let text = e.to_string();
        assert!(matches!(e, CniError::Failed { code: Some(11), .. }));
        assert!(
            text.contains("bridge") && text.contains("failed to allocate: range full (code 11)"),
            "{text}"
        );
        let e = plugin_error("x", Op::Del, "pods", &status, b"", "panic: boom");
        assert!(e.to_string().contains("panic: boom"), "{e}");
    }
}
