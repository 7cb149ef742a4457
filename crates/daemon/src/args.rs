//! Command-line flags of `criusd`; they override the config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crius_core::config::{Config, DEFAULT_CONFIG_PATH, LogFormat, LogLevel, Overrides};

/// criusd: a Kubernetes container runtime (CRI v1) on containerd.
#[derive(Debug, Parser)]
#[command(name = "criusd", version, about)]
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

    /// Reads the config file, applies the flags and validates the result.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let (path, explicit) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading config {}", path.display())),
        };
        Config::parse_with(&text, &self.overrides())
            .with_context(|| format!("config {}", path.display()))
    }
}
