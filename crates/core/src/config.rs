//! The daemon configuration: one TOML file, typed, validated whole at load.
//!
//! [`Config::parse`] refuses unknown keys and bad values with a message naming
//! the key. The validated value is immutable; the daemon holds it behind a
//! swappable pointer so a reload replaces it whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupDriverSetting;
use crate::names::{ShimName, validate_namespace};

/// Where `criusd` reads its config unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/crius/config.toml";

/// The full configuration of `criusd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent state (survives reboots).
    pub root_dir: PathBuf,
    /// Volatile state (netns pins, sockets); lost at reboot.
    pub state_dir: PathBuf,
    /// The CRI socket kubelet and `crius` talk to.
    pub socket: PathBuf,
    /// cgroup driver: auto, cgroupfs or systemd.
    pub cgroup_driver: CgroupDriverSetting,
    /// Longest wait for in-flight RPCs at shutdown, in seconds.
    pub shutdown_timeout_secs: u64,
    /// The runtime handler used when a pod names none.
    pub default_runtime: String,
    /// The image of pod sandboxes (pulled like any image); "" for crius'
    /// built-in pause image, which needs no registry.
    pub sandbox_image: String,
    /// Handler for privileged pods when the selected one cannot run them
    /// ("" = none: such pods are refused).
    pub trusted_runtime: String,
    /// A `runtime_handler` that is no configured handler but a well-formed
    /// shim name (`io.containerd.<name>.<version>`) goes to containerd as is.
    pub shim_passthrough: bool,
    pub log: LogConfig,
    pub containerd: ContainerdConfig,
    pub cni: CniConfig,
    pub images: ImagesConfig,
    pub streaming: StreamingConfig,
    pub metrics: MetricsConfig,
    pub cdi: CdiConfig,
    /// Runtime handlers by name (the names Kubernetes RuntimeClasses use).
    pub runtimes: BTreeMap<String, RuntimeHandler>,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// trace, debug, info, warn or error.
    pub level: LogLevel,
    /// text or json.
    pub format: LogFormat,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The level's name as tracing filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[containerd]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub address: PathBuf,
    /// The containerd namespace all of crius' objects live in.
    pub namespace: String,
    /// The snapshotter for image layers and container root filesystems.
    pub snapshotter: String,
}

/// `[cni]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Directory of CNI network configurations (`*.conflist`, `*.conf`, `*.json`).
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for CNI plugin binaries.
    pub bin_dirs: Vec<PathBuf>,
}

/// `[streaming]`: the server kubelet proxies `exec`, `attach` and
/// `port-forward` to (the URLs Exec, Attach and PortForward answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// The address it listens on: loopback by default, as containerd's
    /// `stream_server_address`; a node IP makes it reachable from the
    /// network (kubelet proxies, so loopback is enough for kubelet).
    pub address: String,
    /// Its TCP port; 0 picks a free one at start-up.
    pub port: u16,
    /// A session that moves no bytes for this long is closed, in seconds
    /// (kubelet's streaming idle timeout: 4 hours).
    pub idle_timeout_secs: u64,
    /// How long a URL stays valid, in seconds (containerd: 60).
    pub token_ttl_secs: u64,
    /// Sessions open at once; more are refused (503).
    pub max_sessions: usize,
    /// Serve over TLS (URLs are then `https://`), as containerd's
    /// `enable_tls_streaming`: with the two files below, or, with neither,
    /// a self-signed certificate made at start-up and held in memory only.
    pub tls: bool,
    /// PEM certificate chain (leaf first); "" = none. Only with `tls`, and
    /// with `tls_key_file`.
    pub tls_cert_file: PathBuf,
    /// PEM private key (PKCS#8, RSA or EC) of `tls_cert_file`; "" = none.
    pub tls_key_file: PathBuf,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".into(),
            port: 0,
            idle_timeout_secs: 4 * 3600,
            token_ttl_secs: 60,
            max_sessions: 256,
            tls: false,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

/// `[cdi]`: CDI device specs (`CDI_devices`, `cdi.k8s.io/*` annotations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdiConfig {
    /// Directories of spec files (`*.json`, `*.yaml`), read at each
    /// CreateContainer that names a device; for one device, a later
    /// directory wins (containerd's `cdi_spec_dirs`).
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for CdiConfig {
    fn default() -> Self {
        CdiConfig {
            spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (`GET /metrics`, plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where it listens: "" = no endpoint (the default); `host:port`, or a
    /// port alone for loopback (`9101` = `127.0.0.1:9101`). Only a
    /// restart changes it.
    pub address: String,
}

impl MetricsConfig {
    /// The socket address to listen on; `None` when off.
    pub fn socket_addr(&self) -> Option<Result<std::net::SocketAddr, String>> {
        let a = self.address.trim();
        if a.is_empty() {
            return None;
        }
        if let Ok(port) = a.parse::<u16>() {
            return Some(Ok((std::net::Ipv4Addr::LOCALHOST, port).into()));
        }
        Some(a.parse().map_err(|_| {
            format!(
                "metrics.address: {a:?} is neither host:port (an IP address and a port) nor a port"
            )
        }))
    }
}

/// `[images]`: pulling and unpacking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Registry host configuration in containerd's layout:
    /// `<dir>/<host>/hosts.toml` (mirrors, plain HTTP, CAs). "" = none.
    pub registry_config_dir: PathBuf,
    /// Registries reached over plain HTTP without a hosts.toml (e.g. "127.0.0.1:5000").
    pub plain_http_hosts: Vec<String>,
    /// Unpack layers into the snapshotter at pull; else on first use.
    pub unpack_on_pull: bool,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// A transfer that receives nothing for this long fails, in seconds.
    pub progress_timeout_secs: u64,
    /// Credentials per registry host.
    pub auths: BTreeMap<String, RegistryAuth>,
}

/// `[images.auths."<host>"]`: credentials for one registry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: Secret,
    /// OAuth2 refresh token.
    pub identity_token: Secret,
    /// Bearer token sent as is.
    pub registry_token: Secret,
}

/// What a secret shows instead of its value.
pub const REDACTED: &str = "<redacted>";

/// A secret of the config (a password, a token): read from TOML like a
/// string, but its `Debug` and its serialized form (`criusd config check`,
/// `Status` verbose) show [`REDACTED`] unless it is empty. Only
/// [`Secret::expose`] gives the value, for the one place that sends it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

/// Reads a string; any other value is refused without quoting it (a
/// password written without quotes would else end up in the error).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Secret(s)),
            _ => Err(serde::de::Error::custom(
                "a secret must be a quoted string (its value is not shown)",
            )),
        }
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What is shown instead of the value.
    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { REDACTED }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            registry_config_dir: PathBuf::from("/etc/crius/certs.d"),
            plain_http_hosts: vec![],
            unpack_on_pull: true,
            max_concurrent_downloads: 3,
            progress_timeout_secs: 30,
            auths: BTreeMap::new(),
        }
    }
}

/// `[runtimes.<handler>]`: one runtime handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// containerd shim name, e.g. `io.containerd.runc.v2` or `io.containerd.kata.v2`.
    pub runtime_type: String,
    /// Options of the runc shim family, sent to the shim by containerd.
    #[serde(default)]
    pub options: RuncOptions,
    /// Whether this runtime can run privileged pods (host namespaces,
    /// devices). VM runtimes such as Kata cannot: set false, and name a
    /// `trusted_runtime` for privileged pods.
    #[serde(default = "yes")]
    pub privileged: bool,
    /// Pod annotation keys passed into the OCI specs of this handler's
    /// sandboxes and containers (e.g. `io.katacontainers.*`; `*` only as a
    /// suffix). Others never reach the runtime.
    #[serde(default)]
    pub pod_annotations: Vec<String>,
    /// Container annotation keys passed into container specs.
    #[serde(default)]
    pub container_annotations: Vec<String>,
    /// Privileged containers on this handler get no host devices (for VM
    /// runtimes, where the host's devices mean nothing inside the guest).
    #[serde(default)]
    pub privileged_without_host_devices: bool,
    /// An absolute path to the shim binary, used instead of looking
    /// `runtime_type` up on containerd's PATH. Only the config file, written
    /// by the node's administrator, can name a path.
    #[serde(default)]
    pub runtime_path: String,
    /// The snapshotter of this handler's pods (default:
    /// `containerd.snapshotter`).
    #[serde(default)]
    pub snapshotter: String,
    /// The pause image of this handler's pods (default: `sandbox_image`).
    #[serde(default)]
    pub sandbox_image: String,
    /// What a pod sandbox of this handler is: a pause task, or pinned
    /// namespaces without a process (runc-family handlers only).
    #[serde(default)]
    pub sandbox_mode: SandboxMode,
}

/// `[runtimes.<handler>] sandbox_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Pinned namespaces where the pod allows it (a runc-family handler,
    /// no shared PID namespace), else a pause task.
    #[default]
    Auto,
    /// Always a pause task.
    Pause,
    /// Never a pause task: a pod that needs one (a shared PID namespace
    /// needs its PID 1) is refused. runc-family handlers only.
    Pinned,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Pause => "pause",
            SandboxMode::Pinned => "pinned",
        }
    }
}

impl RuntimeHandler {
    /// The sandbox mode in force: the configured one for the runc family,
    /// else `pause` (a VM runtime's sandbox task is the VM).
    pub fn effective_sandbox_mode(&self) -> SandboxMode {
        if is_runc_family(&self.runtime_type) {
            self.sandbox_mode
        } else {
            SandboxMode::Pause
        }
    }
}

/// A handler of the runc shim family (`io.containerd.runc.*`): its
/// containers can join namespaces by path, so its pods need no pause task.
pub fn is_runc_family(runtime_type: &str) -> bool {
    runtime_type.starts_with("io.containerd.runc.")
}

fn yes() -> bool {
    true
}

/// `[runtimes.<handler>.options]` for the runc shim family.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuncOptions {
    /// OCI runtime binary the shim runs (default: runc on the shim's PATH).
    pub binary_name: String,
    /// runc state root (default: the shim's).
    pub root: String,
    /// Let runc manage cgroups through systemd.
    pub systemd_cgroup: bool,
}

impl Default for Config {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert(
            "runc".to_string(),
            RuntimeHandler {
                runtime_type: "io.containerd.runc.v2".to_string(),
                options: RuncOptions::default(),
                privileged: true,
                pod_annotations: vec![],
                container_annotations: vec![],
                privileged_without_host_devices: false,
                runtime_path: String::new(),
                snapshotter: String::new(),
                sandbox_image: String::new(),
                sandbox_mode: SandboxMode::Auto,
            },
        );
        Config {
            root_dir: PathBuf::from("/var/lib/crius"),
            state_dir: PathBuf::from("/run/crius"),
            socket: PathBuf::from("/run/crius/crius.sock"),
            cgroup_driver: CgroupDriverSetting::Auto,
            shutdown_timeout_secs: 10,
            default_runtime: "runc".to_string(),
            sandbox_image: String::new(),
            trusted_runtime: String::new(),
            shim_passthrough: true,
            log: LogConfig::default(),
            containerd: ContainerdConfig::default(),
            cni: CniConfig::default(),
            streaming: StreamingConfig::default(),
            metrics: MetricsConfig::default(),
            cdi: CdiConfig::default(),
            images: ImagesConfig::default(),
            runtimes,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
        }
    }
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        ContainerdConfig {
            address: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "crius".to_string(),
            snapshotter: "overlayfs".to_string(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

impl StreamingConfig {
    fn check(&self, problems: &mut Vec<String>) {
        if self.address.parse::<std::net::IpAddr>().is_err() {
            problems.push(format!(
                "streaming.address: {:?} is not an IP address",
                self.address
            ));
        }
        for (name, value, max) in [
            ("idle_timeout_secs", self.idle_timeout_secs, 7 * 24 * 3600),
            ("token_ttl_secs", self.token_ttl_secs, 3600),
            ("max_sessions", self.max_sessions as u64, 65_536),
        ] {
            if !(1..=max).contains(&value) {
                problems.push(format!("streaming.{name}: {value} is outside 1..={max}"));
            }
        }
        self.check_tls(problems);
    }

    /// The TLS files: both or neither, absolute, only with `tls` (as
    /// containerd refuses `x509_key_pair_streaming` without
    /// `enable_tls_streaming`).
    fn check_tls(&self, problems: &mut Vec<String>) {
        let (cert, key) = (&self.tls_cert_file, &self.tls_key_file);
        let files = [
            ("tls_cert_file", cert, "tls_key_file", key),
            ("tls_key_file", key, "tls_cert_file", cert),
        ];
        let set = |p: &Path| !p.as_os_str().is_empty();
        for (name, path, other, other_path) in files {
            if !set(path) {
                continue;
            }
            if !self.tls {
                problems.push(format!(
                    "streaming.{name}: {path:?} is set but streaming.tls is false"
                ));
            }
            if !path.is_absolute() {
                problems.push(format!(
                    "streaming.{name}: {path:?} must be an absolute path"
                ));
            }
            if !set(other_path) {
                problems.push(format!(
                    "streaming.{other}: must be set with streaming.{name} (both or neither)"
                ));
            }
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML, an unknown key or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// Well-formed but invalid values; each entry starts with the key.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Command-line overrides applied on top of the file, before validation.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub root_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub containerd_address: Option<PathBuf>,
    pub containerd_namespace: Option<String>,
    pub cni_conf_dir: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Self::parse_with(text, &Overrides::default())
    }

    /// Parses a TOML document, applies `overrides`, then validates.
    pub fn parse_with(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut self.socket, &o.socket);
        set(&mut self.root_dir, &o.root_dir);
        set(&mut self.state_dir, &o.state_dir);
        set(&mut self.containerd.address, &o.containerd_address);
        set(&mut self.containerd.namespace, &o.containerd_namespace);
        set(&mut self.cni.conf_dir, &o.cni_conf_dir);
        set(&mut self.log.level, &o.log_level);
        set(&mut self.log.format, &o.log_format);
    }

    /// Checks every value; reports all problems at once, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check_paths(&mut problems);
        self.check_daemon_values(&mut problems);
        self.images.check(&mut problems);
        let snap = &self.containerd.snapshotter;
        if !is_snapshotter_name(snap) {
            problems.push(format!(
                "containerd.snapshotter: {snap:?} is not a snapshotter name"
            ));
        }
        for (name, handler) in &self.runtimes {
            handler.check(name, &mut problems);
        }
        self.check_trusted_runtime(&mut problems);
        self.check_default_runtime(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every path crius opens must be absolute (`images.registry_config_dir`
    /// only when set).
    fn check_paths(&self, problems: &mut Vec<String>) {
        let mut absolute = |key: &str, p: &Path| {
            if !p.is_absolute() {
                problems.push(format!("{key}: {p:?} must be an absolute path"));
            }
        };
        absolute("root_dir", &self.root_dir);
        absolute("state_dir", &self.state_dir);
        absolute("socket", &self.socket);
        absolute("containerd.address", &self.containerd.address);
        absolute("cni.conf_dir", &self.cni.conf_dir);
        for (i, dir) in self.cni.bin_dirs.iter().enumerate() {
            absolute(&format!("cni.bin_dirs[{i}]"), dir);
        }
        if !self.images.registry_config_dir.as_os_str().is_empty() {
            absolute(
                "images.registry_config_dir",
                &self.images.registry_config_dir,
            );
        }
    }

    /// At least one CNI bin dir, a bounded shutdown timeout, a valid
    /// containerd namespace.
    fn check_daemon_values(&self, problems: &mut Vec<String>) {
        if self.cni.bin_dirs.is_empty() {
            problems.push("cni.bin_dirs: must list at least one directory".into());
        }
        if !(1..=300).contains(&self.shutdown_timeout_secs) {
            problems.push(format!(
                "shutdown_timeout_secs: {} is outside 1..=300",
                self.shutdown_timeout_secs
            ));
        }
        self.streaming.check(problems);
        if let Some(Err(why)) = self.metrics.socket_addr() {
            problems.push(why);
        }
        for d in &self.cdi.spec_dirs {
            if !d.is_absolute() {
                problems.push(format!("cdi.spec_dirs: {d:?} must be an absolute path"));
            }
        }
        if let Err(e) = validate_namespace(&self.containerd.namespace) {
            problems.push(format!(
                "containerd.namespace: {:?} is not a valid containerd namespace: {e}",
                self.containerd.namespace
            ));
        }
    }

    /// `trusted_runtime`, when set, names a configured handler that can run
    /// privileged pods.
    fn check_trusted_runtime(&self, problems: &mut Vec<String>) {
        if self.trusted_runtime.is_empty() {
            return;
        }
        match self.runtimes.get(&self.trusted_runtime) {
            None => problems.push(format!(
                "trusted_runtime: {:?} is not a configured handler ([runtimes.*])",
                self.trusted_runtime
            )),
            Some(h) if !h.privileged => problems.push(format!(
                "trusted_runtime: handler {:?} has privileged = false",
                self.trusted_runtime
            )),
            Some(_) => {}
        }
    }

    /// `default_runtime` is a configured handler or a shim name.
    fn check_default_runtime(&self, problems: &mut Vec<String>) {
        if !self.runtimes.contains_key(&self.default_runtime)
            && let Err(e) = ShimName::parse(&self.default_runtime)
        {
            problems.push(format!(
                "default_runtime: {:?} is neither a configured handler ([runtimes.*]) nor a shim name: {e}",
                self.default_runtime
            ));
        }
    }

    /// The shim name of `default_runtime`.
    pub fn default_runtime_type(&self) -> &str {
        self.runtimes
            .get(&self.default_runtime)
            .map(|h| h.runtime_type.as_str())
            .unwrap_or(&self.default_runtime)
    }
}

impl ImagesConfig {
    /// Bounded download concurrency and progress timeout; plain-HTTP hosts
    /// that look like `host[:port]`.
    fn check(&self, problems: &mut Vec<String>) {
        if !(1..=32).contains(&self.max_concurrent_downloads) {
            problems.push(format!(
                "images.max_concurrent_downloads: {} is outside 1..=32",
                self.max_concurrent_downloads
            ));
        }
        if !(1..=3600).contains(&self.progress_timeout_secs) {
            problems.push(format!(
                "images.progress_timeout_secs: {} is outside 1..=3600",
                self.progress_timeout_secs
            ));
        }
        for host in &self.plain_http_hosts {
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                problems.push(format!(
                    "images.plain_http_hosts: {host:?} is not a host[:port]"
                ));
            }
        }
    }
}

impl RuntimeHandler {
    /// The handler `[runtimes.<name>]`: its name, annotation patterns,
    /// shim path, snapshotter and shim name.
    fn check(&self, name: &str, problems: &mut Vec<String>) {
        if !is_handler_name(name) {
            problems.push(format!(
                "runtimes.{name}: a handler name must be a DNS label ([a-z0-9-], at most 63 characters)"
            ));
        }
        for (list, patterns) in [
            ("pod_annotations", &self.pod_annotations),
            ("container_annotations", &self.container_annotations),
        ] {
            for p in patterns.iter().filter(|p| !is_annotation_pattern(p)) {
                problems.push(format!(
                    "runtimes.{name}.{list}: {p:?} is not a key or a key prefix ending in *"
                ));
            }
        }
        if !self.runtime_path.is_empty() && !is_clean_absolute_path(&self.runtime_path) {
            problems.push(format!(
                "runtimes.{name}.runtime_path: {:?} is not an absolute path without '..'",
                self.runtime_path
            ));
        }
        if !self.snapshotter.is_empty() && !is_snapshotter_name(&self.snapshotter) {
            problems.push(format!(
                "runtimes.{name}.snapshotter: {:?} is not a snapshotter name",
                self.snapshotter
            ));
        }
        if let Err(e) = ShimName::parse(&self.runtime_type) {
            problems.push(format!(
                "runtimes.{name}.runtime_type: {:?} is not a containerd shim name: {e}",
                self.runtime_type
            ));
        }
        // impossible: only runc-family shims join namespaces by path; the
        // sandbox task of a VM runtime is the VM.
        if self.sandbox_mode == SandboxMode::Pinned && !is_runc_family(&self.runtime_type) {
            problems.push(format!(
                "runtimes.{name}.sandbox_mode: \"pinned\" needs a runc-family handler \
                 (io.containerd.runc.*), not {:?}",
                self.runtime_type
            ));
        }
    }
}

/// An annotation key, or a key prefix ending in `*` (no other `*`).
fn is_annotation_pattern(p: &str) -> bool {
    let body = p.strip_suffix('*').unwrap_or(p);
    !p.is_empty() && !body.contains('*')
}

/// An absolute path with no `..` component.
fn is_clean_absolute_path(path: &str) -> bool {
    let path = Path::new(path);
    path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

/// A TOML error as line, column and message, without the quote of the
/// offending line toml adds: that line may hold a password.
pub(crate) fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let Some(start) = e.span().map(|s| s.start.min(text.len())) else {
        return ConfigError::Parse(e.message().to_string());
    };
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    ConfigError::Parse(format!(
        "line {line}, column {column}: {}",
        e.message().trim_end()
    ))
}

/// A containerd snapshotter plugin name.
fn is_snapshotter_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A Kubernetes RuntimeClass handler name: a DNS label.
fn is_handler_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The default configuration as a commented TOML document
/// (`criusd config default`). A unit test keeps it equal to [`Config::default`].
pub const DEFAULT_TOML: &str = r#"# criusd configuration. Every key is optional; these are the defaults.

# Persistent state of crius (survives reboots).
root_dir = "/var/lib/crius"
# Volatile state: network namespace pins, pod files (lost at reboot).
state_dir = "/run/crius"
# The CRI socket that kubelet and `crius` connect to (mode 0660).
socket = "/run/crius/crius.sock"
# cgroup driver reported to kubelet: "auto" (systemd when the host was booted
# by systemd, else cgroupfs), "cgroupfs" or "systemd".
cgroup_driver = "auto"
# How long a shutdown waits for in-flight requests, in seconds (1-300).
# Containers keep running when criusd stops.
shutdown_timeout_secs = 10
# Runtime handler for pods that name none: a [runtimes.*] name or a shim name.
default_runtime = "runc"
# Image of the pod sandboxes' pause container; "" = crius' built-in pause
# image (localhost/crius/pause:<version>), made at start-up without a registry.
# Another image must contain the mount points /proc, /sys and /dev: the
# sandbox root filesystem is a read-only view.
sandbox_image = ""
# Handler for privileged pods (security context privileged, or host network,
# PID or IPC) when the selected handler has privileged = false, as VM
# runtimes do. "" = none: such pods are refused.
trusted_runtime = ""
# A runtime_handler that is no configured handler but a well-formed shim
# name (io.containerd.<name>.<version>) is passed to containerd as is. Paths
# are always refused: they would let a client run any binary as root.
shim_passthrough = true

[log]
# trace, debug, info, warn or error.
level = "info"
# "text" or "json".
format = "text"

[containerd]
# containerd's gRPC socket.
address = "/run/containerd/containerd.sock"
# containerd namespace of crius' images, containers and snapshots; a
# namespace of its own lets crius share a containerd with other users.
namespace = "crius"
# Snapshotter for image layers and container root filesystems.
snapshotter = "overlayfs"

[cni]
# CNI network configurations; the first (by file name) is used.
conf_dir = "/etc/cni/net.d"
# Where CNI plugin binaries are looked up, in order.
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

[streaming]
# The server kubelet proxies exec, attach and port-forward to (the URLs the
# Exec, Attach and PortForward RPCs answer). Loopback is enough for kubelet;
# a node IP makes it reachable from the network, without auth (and, unless
# tls = true, without TLS): only on a trusted network.
address = "127.0.0.1"
# TCP port; 0 = a free one picked at start-up.
port = 0
# A session that moves no bytes for this long is closed, in seconds.
idle_timeout_secs = 14400
# How long a URL stays valid (single use), in seconds.
token_ttl_secs = 60
# Sessions open at once; more are refused.
max_sessions = 256
# TLS (https:// URLs), as containerd's enable_tls_streaming. With both
# files (PEM; the key PKCS#8, RSA or EC) they are used; with neither, a
# self-signed certificate for the address, the hostname and the node's IPs
# is made at start-up (in memory only). kubelet checks the certificate
# against the node's system roots, so a self-signed one only suits clients
# that skip verification (crictl); kubelet proxies, so plain HTTP on
# loopback is what containerd recommends.
tls = false
tls_cert_file = ""
tls_key_file = ""

[cdi]
# CDI device spec directories (*.json, *.yaml), read at each CreateContainer
# that names a device (CDI_devices, cdi.k8s.io/* annotations): a device
# plugin's new spec needs no restart. For one device a later directory wins.
spec_dirs = ["/etc/cdi", "/var/run/cdi"]

[metrics]
# The Prometheus endpoint (GET /metrics, plain HTTP, no auth): "" = none;
# "host:port", or a port alone for loopback ("9101" = "127.0.0.1:9101").
# Only a restart changes it.
address = ""

[images]
# Registry hosts in containerd's layout: <dir>/<registry-host>/hosts.toml
# (server, [host."…"] mirrors with capabilities, skip_verify, ca).
registry_config_dir = "/etc/crius/certs.d"
# Registries reached over plain HTTP without a hosts.toml, e.g. ["127.0.0.1:5000"].
plain_http_hosts = []
# Unpack layers into the snapshotter at pull (else when a container first needs them).
unpack_on_pull = true
# Layers downloaded at once per pull (1-32).
max_concurrent_downloads = 3
# A transfer that receives nothing for this long fails, in seconds.
progress_timeout_secs = 30
# Credentials per registry host (shown as "<redacted>" by `criusd config
# check` and `Status`; keep this file readable by root only):
# [images.auths."registry.example.com"]
# username = "…"
# password = "…"          # or identity_token / registry_token

# Runtime handlers: the names Kubernetes RuntimeClasses refer to.
[runtimes.runc]
# containerd shim name (io.containerd.<name>.<version>).
runtime_type = "io.containerd.runc.v2"
# Can run privileged pods (false for VM runtimes such as Kata).
privileged = true
# Pod / container annotation keys passed into this handler's OCI specs
# (e.g. ["io.katacontainers.*"]); no other annotation reaches the runtime.
pod_annotations = []
container_annotations = []
# Privileged containers get no host devices (for VM runtimes).
privileged_without_host_devices = false
# Absolute path of the shim binary ("" = runtime_type looked up on
# containerd's PATH as containerd-shim-<name>-<version>).
runtime_path = ""
# Snapshotter of this handler's pods ("" = containerd.snapshotter).
snapshotter = ""
# Pause image of this handler's pods ("" = sandbox_image).
sandbox_image = ""
# A pod sandbox: "auto" (pinned namespaces, no pause process, for
# runc-family handlers when the pod shares no PID namespace; else a pause
# task), "pause" (always a pause task) or "pinned" (never; pods that share
# their PID namespace are refused; runc-family handlers only).
sandbox_mode = "auto"

[runtimes.runc.options]
# OCI runtime binary run by the shim ("" = runc on the shim's PATH).
binary_name = ""
# runc state root ("" = the shim's default).
root = ""
# Let runc manage cgroups through systemd.
systemd_cgroup = false
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    const AUTHS: &str = "[images.auths.\"registry.example.com\"]\n\
                         username = \"alice\"\n\
                         password = \"hunter2-pw\"\n\
                         identity_token = \"refresh-tok\"\n\
                         [images.auths.\"other.example.com\"]\n\
                         registry_token = \"bearer-tok\"\n";
    const SECRETS: [&str; 3] = ["hunter2-pw", "refresh-tok", "bearer-tok"];

    #[test]
    fn secrets_are_read_but_never_shown() {
        let c = Config::parse(AUTHS).expect("valid");
        let auth = &c.images.auths["registry.example.com"];
        assert_eq!(auth.username, "alice");
        assert_eq!(auth.password.expose(), "hunter2-pw");
        assert_eq!(auth.identity_token.expose(), "refresh-tok");
        assert!(auth.registry_token.is_empty());
        let other = &c.images.auths["other.example.com"];
        assert_eq!(other.registry_token.expose(), "bearer-tok");
        let shown = [
            format!("{c:?}"),
            format!("{c:#?}"),
            toml::to_string(&c).expect("toml"),
            serde_json::to_string(&c).expect("json"),
        ];
        for text in &shown {
            for secret in SECRETS {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains(REDACTED), "{text}");
            assert!(text.contains("alice"), "{text}");
        }
        // A secret of the wrong type, or on a line TOML cannot parse, is
        // refused without being quoted.
        for text in [
            "[images.auths.x]\npassword = 123456789\n",
            "[images.auths.x]\npassword = \"123456789\n",
            "[images.auths.x]\nregistry_token = [\"123456789\"]\n",
        ] {
            match Config::parse(text) {
                Err(ConfigError::Parse(m)) => {
                    assert!(!m.contains("123456789"), "{m}");
                    assert!(m.starts_with("line 2, column "), "{m}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Unset secrets show as unset, not as redacted values.
        let json = serde_json::to_value(&c).expect("json");
        let auth = &json["images"]["auths"]["registry.example.com"];
        assert_eq!(auth["password"], REDACTED);
        assert_eq!(auth["registry_token"], "");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    #[test]
    fn the_metrics_address_is_off_loopback_or_given() {
        let at = |a: &str| MetricsConfig { address: a.into() }.socket_addr();
        assert_eq!(at(""), None);
        assert_eq!(
            at("9101"),
            Some(Ok("127.0.0.1:9101".parse().expect("addr")))
        );
        assert_eq!(
            at("0.0.0.0:9101"),
            Some(Ok("0.0.0.0:9101".parse().expect("addr")))
        );
        assert_eq!(at("[::1]:9"), Some(Ok("[::1]:9".parse().expect("addr"))));
        let problems = invalid("[metrics]\naddress = \"localhost:9101\"\n");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("metrics.address: \"localhost:9101\"")),
            "{problems:?}"
        );
    }

    #[test]
    fn default_toml_is_the_default() {
        assert_eq!(
            Config::parse(DEFAULT_TOML).expect("default parses"),
            Config::default()
        );
        assert_eq!(Config::parse("").expect("empty parses"), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("frobnicate = 1", "frobnicate"),
            ("[containerd]\nadress = \"/x\"", "adress"),
            (
                "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nbogus = true",
                "bogus",
            ),
            ("[runtimes.runc.options]\nBinaryName = \"x\"", "BinaryName"),
        ] {
            match Config::parse(text) {
                Err(ConfigError::Parse(msg)) => assert!(msg.contains(key), "{msg}"),
                other => panic!("{text}: expected parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_types_and_enums_are_refused() {
        for text in [
            "shutdown_timeout_secs = \"ten\"",
            "cgroup_driver = \"cgroupv3\"",
            "[log]\nlevel = \"loud\"",
            "[log]\nformat = \"xml\"",
        ] {
            assert!(
                matches!(Config::parse(text), Err(ConfigError::Parse(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let p = invalid("socket = \"relative.sock\"\n[containerd]\nnamespace = \"Bad Ns\"");
        assert!(p.iter().any(|m| m.starts_with("socket:")), "{p:?}");
        assert!(
            p.iter().any(|m| m.starts_with("containerd.namespace:")),
            "{p:?}"
        );
        let p = invalid("shutdown_timeout_secs = 0");
        assert!(p[0].starts_with("shutdown_timeout_secs:"), "{p:?}");
        let p = invalid("[cni]\nbin_dirs = []");
        assert!(p[0].starts_with("cni.bin_dirs:"), "{p:?}");
        let p = invalid("[runtimes.kata]\nruntime_type = \"/usr/bin/containerd-shim-kata-v2\"");
        assert!(p[0].starts_with("runtimes.kata.runtime_type:"), "{p:?}");
        let p = invalid("[runtimes.Bad_Name]\nruntime_type = \"io.containerd.runc.v2\"");
        assert!(p[0].starts_with("runtimes.Bad_Name:"), "{p:?}");
        // Only the runc family joins namespaces by path.
        let p = invalid(
            "[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\nsandbox_mode = \"pinned\"",
        );
        assert!(p[0].starts_with("runtimes.kata.sandbox_mode:"), "{p:?}");
        let unknown = Config::parse(
            "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nsandbox_mode = \"never\"",
        );
        assert!(
            matches!(&unknown, Err(ConfigError::Parse(m)) if m.contains("`auto`, `pause`, `pinned`")),
            "{unknown:?}"
        );
        let p =
            invalid("[images]\nmax_concurrent_downloads = 0\nplain_http_hosts = [\"http://x\"]");
        assert!(
            p.iter()
                .any(|m| m.starts_with("images.max_concurrent_downloads:")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with("images.plain_http_hosts:")),
            "{p:?}"
        );
        let p = invalid("default_runtime = \"nope\"");
        assert!(p[0].starts_with("default_runtime:"), "{p:?}");
        for path in [
            "containerd-shim-kata-v2",
            "/opt/kata/../../bin/sh",
            "./shim",
        ] {
            let p = invalid(&format!(
                "[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\nruntime_path = \"{path}\""
            ));
            assert!(p[0].starts_with("runtimes.kata.runtime_path:"), "{p:?}");
        }
        let p = invalid(
            "[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\nsnapshotter = \"a/b\"",
        );
        assert!(p[0].starts_with("runtimes.kata.snapshotter:"), "{p:?}");
    }

    #[test]
    fn handler_options_reach_the_selection() {
        let c = Config::parse(
            "default_runtime = \"kata\"\n[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n\
             runtime_path = \"/opt/kata/bin/containerd-shim-kata-v2\"\nsnapshotter = \"devmapper\"\n\
             sandbox_image = \"registry.local/pause:3\"\nprivileged_without_host_devices = true\n",
        )
        .expect("valid");
        let s = crate::runtime::select(&c, crate::runtime::PodTraits::default()).expect("selected");
        assert_eq!(s.handler, "kata");
        assert_eq!(
            s.runtime_path.as_deref(),
            Some("/opt/kata/bin/containerd-shim-kata-v2")
        );
        assert_eq!(s.snapshotter.as_deref(), Some("devmapper"));
        assert_eq!(s.sandbox_image.as_deref(), Some("registry.local/pause:3"));
        assert!(s.privileged_without_host_devices);
        // A bare shim name carries none of it.
        let s = crate::runtime::select(
            &c,
            crate::runtime::PodTraits {
                requested: "io.containerd.runc.v2",
                ..Default::default()
            },
        )
        .expect("selected");
        assert_eq!(
            (s.runtime_path, s.snapshotter, s.sandbox_image),
            (None, None, None)
        );
    }

    #[test]
    fn default_runtime_may_be_a_shim_name() {
        let c = Config::parse("default_runtime = \"io.containerd.kata.v2\"").expect("valid");
        assert_eq!(c.default_runtime_type(), "io.containerd.kata.v2");
        assert_eq!(
            Config::default().default_runtime_type(),
            "io.containerd.runc.v2"
        );
    }

    #[test]
    fn overrides_win_and_are_validated() {
        let o = Overrides {
            socket: Some(PathBuf::from("/tmp/x.sock")),
            containerd_namespace: Some("other".into()),
            log_level: Some(LogLevel::Debug),
            ..Default::default()
        };
        let c = Config::parse_with("socket = \"/a.sock\"", &o).expect("valid");
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.containerd.namespace, "other");
        assert_eq!(c.log.level, LogLevel::Debug);
        let bad = Overrides {
            containerd_namespace: Some("no/slash".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::parse_with("", &bad),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn the_streaming_server_defaults_to_loopback_and_checks_its_values() {
        let c = Config::parse("").expect("defaults");
        assert_eq!(
            (c.streaming.address.as_str(), c.streaming.port),
            ("127.0.0.1", 0)
        );
        assert_eq!(c.streaming.token_ttl_secs, 60);
        let node = Config::parse("[streaming]\naddress = \"::\"\nport = 10010\n").expect("v6");
        assert_eq!(
            (node.streaming.address.as_str(), node.streaming.port),
            ("::", 10010)
        );
        assert_eq!(
            invalid("[streaming]\naddress = \"node\"\ntoken_ttl_secs = 0\nmax_sessions = 0\n"),
            [
                "streaming.address: \"node\" is not an IP address",
                "streaming.token_ttl_secs: 0 is outside 1..=3600",
                "streaming.max_sessions: 0 is outside 1..=65536",
            ]
        );
    }

    #[test]
    fn streaming_tls_is_off_by_default_and_its_files_go_together() {
        let c = Config::parse("").expect("defaults");
        assert!(!c.streaming.tls);
        assert_eq!(c.streaming.tls_cert_file, PathBuf::new());
        let self_signed = Config::parse("[streaming]\ntls = true\n").expect("self-signed");
        assert!(self_signed.streaming.tls);
        let files = Config::parse(
            "[streaming]\ntls = true\ntls_cert_file = \"/etc/crius/s.crt\"\n\
             tls_key_file = \"/etc/crius/s.key\"\n",
        )
        .expect("files");
        assert_eq!(
            files.streaming.tls_key_file,
            PathBuf::from("/etc/crius/s.key")
        );
        assert_eq!(
            invalid("[streaming]\ntls = true\ntls_cert_file = \"/c.pem\"\n"),
            ["streaming.tls_key_file: must be set with streaming.tls_cert_file (both or neither)"]
        );
        assert_eq!(
            invalid("[streaming]\ntls = true\ntls_key_file = \"k.pem\"\n"),
            [
                "streaming.tls_key_file: \"k.pem\" must be an absolute path",
                "streaming.tls_cert_file: must be set with streaming.tls_key_file (both or neither)",
            ]
        );
        assert_eq!(
            invalid("[streaming]\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n"),
            [
                "streaming.tls_cert_file: \"/c\" is set but streaming.tls is false",
                "streaming.tls_key_file: \"/k\" is set but streaming.tls is false",
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_in_order() {
        let p = invalid(
            "root_dir = \"var\"\nshutdown_timeout_secs = 301\ntrusted_runtime = \"kata\"\n\
             default_runtime = \"nope\"\n\
             [containerd]\nsnapshotter = \"\"\n[cni]\nbin_dirs = []\n\
             [images]\nregistry_config_dir = \"certs\"\nprogress_timeout_secs = 0\n\
             plain_http_hosts = [\"\", \"a b\", \"ok:5000\"]\n\
             [runtimes.kata]\nruntime_type = \"kata\"\nprivileged = false\n\
             pod_annotations = [\"io.kata.*\", \"a*b\", \"\"]\ncontainer_annotations = [\"**\"]\n\
             runtime_path = \"/x/../y\"\nsnapshotter = \"a b\"\n",
        );
        assert_eq!(
            p,
            [
                "root_dir: \"var\" must be an absolute path",
                "images.registry_config_dir: \"certs\" must be an absolute path",
                "cni.bin_dirs: must list at least one directory",
                "shutdown_timeout_secs: 301 is outside 1..=300",
                "images.progress_timeout_secs: 0 is outside 1..=3600",
                "images.plain_http_hosts: \"\" is not a host[:port]",
                "images.plain_http_hosts: \"a b\" is not a host[:port]",
                "containerd.snapshotter: \"\" is not a snapshotter name",
                "runtimes.kata.pod_annotations: \"a*b\" is not a key or a key prefix ending in *",
                "runtimes.kata.pod_annotations: \"\" is not a key or a key prefix ending in *",
                "runtimes.kata.container_annotations: \"**\" is not a key or a key prefix ending in *",
                "runtimes.kata.runtime_path: \"/x/../y\" is not an absolute path without '..'",
                "runtimes.kata.snapshotter: \"a b\" is not a snapshotter name",
                &p[13],
                "trusted_runtime: handler \"kata\" has privileged = false",
                &p[15],
            ]
        );
        assert!(
            p[13].starts_with(
                "runtimes.kata.runtime_type: \"kata\" is not a containerd shim name: "
            ),
            "{p:?}"
        );
        assert!(p[15].starts_with("default_runtime: \"nope\" is neither a configured handler ([runtimes.*]) nor a shim name: "), "{p:?}");
        let p = invalid("trusted_runtime = \"gvisor\"");
        assert_eq!(
            p,
            ["trusted_runtime: \"gvisor\" is not a configured handler ([runtimes.*])"]
        );
    }

    #[test]
    fn annotation_patterns_and_shim_paths() {
        for p in ["io.katacontainers.*", "io.kubernetes.cri.x", "*"] {
            assert!(is_annotation_pattern(p), "{p}");
        }
        for p in ["", "a*b", "**", "*a"] {
            assert!(!is_annotation_pattern(p), "{p}");
        }
        assert!(is_clean_absolute_path("/opt/kata/bin/shim"));
        for p in ["shim", "./shim", "/opt/../bin/sh", "/opt/kata/.."] {
            assert!(!is_clean_absolute_path(p), "{p}");
        }
    }
}
