//! CNI network configuration discovery.
//!
//! The first file (by name) in the configuration directory that holds a valid
//! network configuration list (`.conflist`) or single network configuration
//! (`.conf`, `.json`) is the pod network, as with kubelet-era runtimes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A loaded, checked network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The network's `name`.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Plugin types, in order.
    pub plugins: Vec<String>,
    /// The raw bytes, as plugins receive them.
    pub raw: Vec<u8>,
}

/// Why no network configuration is usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("no network config found in {dir}")]
    NoConfig { dir: PathBuf },
    #[error("cannot read CNI config directory {dir}: {reason}")]
    Unreadable { dir: PathBuf, reason: String },
    #[error("CNI plugin {plugin:?} of network {network:?} ({file}) not found in {dirs}")]
    MissingPlugin {
        network: String,
        file: PathBuf,
        plugin: String,
        dirs: String,
    },
}

#[derive(Deserialize)]
struct ConfList {
    #[serde(rename = "cniVersion", default)]
    _cni_version: String,
    name: String,
    #[serde(default)]
    plugins: Vec<PluginConf>,
}

#[derive(Deserialize)]
struct PluginConf {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SingleConf {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Parses one configuration file's bytes; `None` when it is not a usable
/// network configuration.
fn parse(file: &Path, raw: Vec<u8>) -> Option<NetworkConfig> {
    let ext = file.extension()?.to_str()?;
    let (name, plugins) = match ext {
        "conflist" => {
            let list: ConfList = serde_json::from_slice(&raw).ok()?;
            (
                list.name,
                list.plugins.into_iter().map(|p| p.kind).collect(),
            )
        }
        "conf" | "json" => {
            let single: SingleConf = serde_json::from_slice(&raw).ok()?;
            (single.name, vec![single.kind])
        }
        _ => return None,
    };
    let valid =
        !name.is_empty() && !plugins.is_empty() && plugins.iter().all(|p| is_plugin_name(p));
    valid.then(|| NetworkConfig {
        name,
        file: file.to_path_buf(),
        plugins,
        raw,
    })
}

/// A plugin type is a file name, never a path.
fn is_plugin_name(p: &str) -> bool {
    !p.is_empty() && !p.contains('/') && p != "." && p != ".."
}

/// Finds the pod network in `conf_dir` and checks its plugins exist in one
/// of `bin_dirs`.
pub fn load(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Result<NetworkConfig, NotReady> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NotReady::NoConfig {
                dir: conf_dir.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(NotReady::Unreadable {
                dir: conf_dir.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let config = files
        .into_iter()
        .find_map(|f| std::fs::read(&f).ok().and_then(|raw| parse(&f, raw)))
        .ok_or_else(|| NotReady::NoConfig {
            dir: conf_dir.to_path_buf(),
        })?;
    for plugin in &config.plugins {
        if find_plugin(plugin, bin_dirs).is_none() {
            return Err(NotReady::MissingPlugin {
                network: config.name.clone(),
                file: config.file.clone(),
                plugin: plugin.clone(),
                dirs: bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            });
        }
    }
    Ok(config)
}

/// [`load`] on the blocking pool: it reads a directory and files, which
/// must not stall an async worker (`Status` runs it on every call). The
/// outer error is only a lost blocking task.
pub async fn load_async(
    conf_dir: &Path,
    bin_dirs: &[PathBuf],
) -> crius_core::Result<Result<NetworkConfig, NotReady>> {
    let (conf_dir, bin_dirs) = (conf_dir.to_path_buf(), bin_dirs.to_vec());
    crius_rt::blocking("reading the CNI config", move || {
        Ok(load(&conf_dir, &bin_dirs))
    })
    .await
}

/// The first executable file named `plugin` in `bin_dirs`.
pub fn find_plugin(plugin: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    if !is_plugin_name(plugin) {
        return None;
    }
    bin_dirs
        .iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn missing_or_empty_dir_is_not_ready() {
        let d = tempfile::tempdir().expect("tempdir");
        let gone = d.path().join("nope");
        assert!(matches!(load(&gone, &[]), Err(NotReady::NoConfig { .. })));
        write(d.path(), "junk.conflist", "{not json");
        write(d.path(), "readme.txt", "{}");
        assert!(matches!(
            load(d.path(), &[]),
            Err(NotReady::NoConfig { .. })
        ));
    }

    #[test]
    fn first_valid_file_wins_and_plugins_must_exist() {
        let d = tempfile::tempdir().expect("tempdir");
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        write(
            d.path(),
            "00-bad.conflist",
            r#"{"name":"x","plugins":[{"type":"../evil"}]}"#,
        );
        write(
            d.path(),
            "10-net.conflist",
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        write(
            d.path(),
            "20-other.conf",
            r#"{"name":"other","type":"bridge"}"#,
        );
        let err = load(d.path(), std::slice::from_ref(&bin)).expect_err("no plugins yet");
        assert!(
            matches!(err, NotReady::MissingPlugin { ref plugin, .. } if plugin == "bridge"),
            "{err}"
        );
        write(&bin, "bridge", "");
        write(&bin, "portmap", "");
        let c = load(d.path(), &[bin]).expect("ready");
        assert_eq!(c.name, "pods");
        assert_eq!(c.plugins, vec!["bridge", "portmap"]);
    }

    #[tokio::test]
    async fn load_async_answers_as_load() {
        let d = tempfile::tempdir().expect("tempdir");
        let gone = d.path().join("nope");
        let r = load_async(&gone, &[]).await.expect("the task ran");
        assert_eq!(r, load(&gone, &[]));
        assert!(matches!(r, Err(NotReady::NoConfig { .. })));
    }
}
