//! Command-line flags of `criusd`; they override the config file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use crius_core::config::{Config, DEFAULT_CONFIG_PATH, LogFormat, LogLevel, Overrides};
use crius_core::config_files::{Layer, Layered, parse_layers};

/// criusd: a Kubernetes container runtime (CRI v1) on containerd.
#[derive(Debug, Parser)]
// Not the crate's description (`criusd --help`, criusd(8)).
#[command(
    name = "criusd",
    version,
    about = "Kubernetes container runtime (CRI v1) on containerd",
    long_about = None
)]
pub struct Args {
    /// Config file (TOML). A missing default file means all defaults.
    #[arg(long, env = "CRIUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// CRI socket path.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Persistent state directory.
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// Volatile state directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// containerd's gRPC socket.
    #[arg(long)]
    pub containerd_address: Option<PathBuf>,
    /// containerd namespace for crius' objects.
    #[arg(long)]
    pub containerd_namespace: Option<String>,
    /// CNI configuration directory.
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, value_parser = parse_level)]
    pub log_level: Option<LogLevel>,
    /// Log format: text or json.
    #[arg(long, value_parser = parse_format)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration, with comments.
    Default,
    /// Validate the configuration (file + flags) and print it in full
    /// (passwords and tokens as "<redacted>").
    Check,
    /// Print the configuration in force (the file, its drop-ins in
    /// config.d/, the flags), each value with the file that set it.
    Show,
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    serde_plain(s)
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    serde_plain(s)
}

/// Parses a lowercase enum value the way the config file spells it.
fn serde_plain<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    #[derive(serde::Deserialize)]
    struct W<T> {
        v: T,
    }
    toml::from_str::<W<T>>(&format!("v = {s:?}"))
        .map(|w| w.v)
        .map_err(|_| format!("{s:?} is not one of the accepted values"))
}

impl Args {
    fn overrides(&self) -> Overrides {
        Overrides {
            socket: self.socket.clone(),
            root_dir: self.root_dir.clone(),
            state_dir: self.state_dir.clone(),
            containerd_address: self.containerd_address.clone(),
            containerd_namespace: self.containerd_namespace.clone(),
            cni_conf_dir: self.cni_conf_dir.clone(),
            log_level: self.log_level,
            log_format: self.log_format,
        }
    }

    /// Reads the config file and its drop-ins, applies the flags and
    /// validates the result.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        Ok(self.load_layered()?.config)
    }

    /// [`Args::load_config`] with each value's source file.
    pub fn load_layered(&self) -> anyhow::Result<Layered> {
        let (path, explicit) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let main = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading config {}", path.display())),
        };
        let mut files = vec![(path.display().to_string(), main)];
        files.extend(drop_ins(&path)?);
        let layers: Vec<Layer<'_>> = files
            .iter()
            .map(|(source, text)| Layer { source, text })
            .collect();
        parse_layers(&layers, &self.overrides())
            .with_context(|| format!("config {}", path.display()))
    }
}

/// The drop-ins of the config file at `main`: `config.d/*.toml` beside it,
/// in name order (none when the directory does not exist).
fn drop_ins(main: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let dir = main.parent().unwrap_or(Path::new("/")).join("config.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}
