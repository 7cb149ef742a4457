//! `crius doctor`: checks a node the way an operator would before pointing
//! kubelet at it. Each check is one line, ok, warn or FAIL, with what to do.
//! What criusd knows comes from its verbose `Status`; the rest (CNI files,
//! the socket, free space) is read on this node.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_cri_api::v1;
use serde_json::{Value, json};

use crate::{Cli, client};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub level: Level,
    /// What was found.
    pub found: String,
    /// What to do (empty when nothing).
    pub fix: String,
}

fn check(name: &str, level: Level, found: impl Into<String>, fix: &str) -> Check {
    Check {
        name: name.to_string(),
        level,
        found: found.into(),
        fix: fix.to_string(),
    }
}

/// Runs every check and prints them; exit code 1 when one failed.
pub async fn run(cli: &Cli, kubelet_config: Option<&Path>) -> anyhow::Result<i32> {
    let checks = gather(cli, kubelet_config).await;
    if cli.output.machine() {
        let lines: Vec<Value> = checks.iter().map(check_json).collect();
        crate::print_doc(&lines)?;
    } else {
        for c in &checks {
            println!("{}", line(c));
        }
    }
    Ok(i32::from(checks.iter().any(|c| c.level == Level::Fail)))
}

fn check_json(c: &Check) -> Value {
    let level = match c.level {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "fail",
    };
    json!({ "check": c.name, "level": level, "found": c.found, "fix": c.fix })
}

/// `ok    name          found`, with `: fix` after a warning or failure.
pub fn line(c: &Check) -> String {
    let level = match c.level {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "FAIL",
    };
    let mut s = format!("{level:<5} {:<22} {}", c.name, c.found);
    if !c.fix.is_empty() {
        s.push_str("; ");
        s.push_str(&c.fix);
    }
    s
}

async fn gather(cli: &Cli, kubelet_config: Option<&Path>) -> Vec<Check> {
    let socket = cli.socket_path();
    let mut checks = vec![socket_check(&socket, std::fs::metadata(&socket).ok())];
    let timeout = Duration::from_secs(cli.timeout);
    let status = match client::connect(&socket, timeout).await {
        Ok(mut cri) => cri
            .runtime
            .status(v1::StatusRequest { verbose: true })
            .await
            .map(|r| (r.into_inner(), cri))
            .map_err(|e| e.message().to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    let (status, mut cri) = match status {
        Ok(s) => s,
        Err(e) => {
            checks.push(check(
                "criusd",
                Level::Fail,
                format!("not answering at {}: {e}", socket.display()),
                "start criusd, or pass its socket with --endpoint",
            ));
            return checks;
        }
    };
    let info = |key: &str| -> Value {
        status
            .info
            .get(key)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null)
    };
    let (config, containerd) = (info("config"), info("containerd"));
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    checks.push(containerd_check(&conditions, &containerd));
    checks.extend(cni_checks(&conditions, &config));
    checks.extend(handler_checks(
        &info("runtimeHandlers"),
        &status.runtime_handlers,
    ));
    let driver = cri
        .runtime
        .runtime_config(v1::RuntimeConfigRequest {})
        .await
        .ok()
        .and_then(|r| r.into_inner().linux)
        .map(|l| v1::CgroupDriver::try_from(l.cgroup_driver).unwrap_or(v1::CgroupDriver::Cgroupfs));
    let kubelet = kubelet_config.map(|p| {
        std::fs::read_to_string(p)
            .map(|t| kubelet_cgroup_driver(&t))
            .map_err(|e| format!("{}: {e}", p.display()))
    });
    checks.push(cgroup_check(driver, kubelet));
    checks.push(seccomp_check(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
    ));
    checks.push(apparmor_check(&info("apparmor")));
    checks.extend(registry_checks(&config));
    let fs = cri.image.image_fs_info(v1::ImageFsInfoRequest {}).await;
    let snapshotter = config["containerd"]["snapshotter"].as_str().unwrap_or("-");
    if let Err(e) = &fs {
        checks.push(check(
            "snapshotter",
            Level::Fail,
            format!("{snapshotter}: ImageFsInfo failed: {}", e.message()),
            "check containerd's snapshotter plugins (ctr plugins ls)",
        ));
    }
    let mountpoint = fs
        .ok()
        .and_then(|r| r.into_inner().image_filesystems.into_iter().next())
        .and_then(|f| f.fs_id)
        .map(|f| PathBuf::from(f.mountpoint));
    checks.push(space_check(mountpoint.as_deref()));
    checks
}

/// The socket: a unix socket no one but root and its group can use.
/// Anyone who can connect runs containers as root.
fn socket_check(path: &Path, meta: Option<std::fs::Metadata>) -> Check {
    let Some(meta) = meta else {
        return check(
            "socket",
            Level::Fail,
            format!("{} does not exist", path.display()),
            "start criusd, or pass its socket with --endpoint",
        );
    };
    let mode = meta.permissions().mode() & 0o777;
    let found = format!("{} mode {mode:o}, owner uid {}", path.display(), meta.uid());
    if mode & 0o007 != 0 {
        return check(
            "socket",
            Level::Fail,
            found,
            "anyone on the node can run containers as root through it: chmod 660",
        );
    }
    if meta.uid() != 0 {
        return check("socket", Level::Warn, found, "it is usually root's");
    }
    check("socket", Level::Ok, found, "")
}

fn condition<'a>(
    conditions: &'a [v1::RuntimeCondition],
    name: &str,
) -> Option<&'a v1::RuntimeCondition> {
    conditions.iter().find(|c| c.r#type == name)
}

fn containerd_check(conditions: &[v1::RuntimeCondition], containerd: &Value) -> Check {
    let address = containerd["address"].as_str().unwrap_or("-");
    let namespace = containerd["namespace"].as_str().unwrap_or("-");
    match condition(conditions, "RuntimeReady") {
        Some(c) if c.status => check(
            "containerd",
            Level::Ok,
            format!(
                "{} at {address}, namespace {namespace}",
                containerd["version"].as_str().unwrap_or("version unknown")
            ),
            "",
        ),
        c => check(
            "containerd",
            Level::Fail,
            format!(
                "not ready at {address}: {}",
                c.map(|c| format!("{}: {}", c.reason, c.message))
                    .unwrap_or_else(|| "no RuntimeReady condition".into())
            ),
            "start containerd, or set [containerd] address to its socket",
        ),
    }
}

/// The network condition, then the CNI config criusd loads (the first in
/// name order, as CNI's libraries take it) and whether its plugins exist.
fn cni_checks(conditions: &[v1::RuntimeCondition], config: &Value) -> Vec<Check> {
    let conf_dir = PathBuf::from(
        config["cni"]["conf_dir"]
            .as_str()
            .unwrap_or("/etc/cni/net.d"),
    );
    let bin_dirs: Vec<PathBuf> = config["cni"]["bin_dirs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(c) = condition(conditions, "NetworkReady").filter(|c| !c.status) {
        out.push(check(
            "network",
            Level::Fail,
            format!("not ready: {}: {}", c.reason, c.message),
            &format!("put a CNI network config in {}", conf_dir.display()),
        ));
    }
    out.push(cni_config_check(&conf_dir, &bin_dirs));
    out
}

fn cni_config_check(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Check {
    let name = "cni config";
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("conf" | "conflist" | "json")
        )
    });
    files.sort();
    let Some(file) = files.first() else {
        return check(
            name,
            Level::Fail,
            format!("no *.conflist, *.conf or *.json in {}", conf_dir.display()),
            "install a CNI network config there (or set [cni] conf_dir)",
        );
    };
    let parsed = std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
    let conf = match parsed {
        Ok(c) => c,
        Err(e) => {
            return check(
                name,
                Level::Fail,
                format!("{} does not parse: {e}", file.display()),
                "fix the file: it must be a CNI network config in JSON",
            );
        }
    };
    let plugins = plugin_types(&conf);
    let missing: Vec<&String> = plugins
        .iter()
        .filter(|p| !bin_dirs.iter().any(|d| is_executable(&d.join(p))))
        .collect();
    let dirs = bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let list = plugins.iter().cloned().collect::<Vec<_>>().join(", ");
    if missing.is_empty() {
        return check(
            name,
            Level::Ok,
            format!(
                "{}: network {}, plugins {list} (in {dirs})",
                file.display(),
                conf["name"].as_str().unwrap_or("-")
            ),
            "",
        );
    }
    let missing = missing
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    check(
        name,
        Level::Fail,
        format!("{}: plugin {missing} not found in {dirs}", file.display()),
        "install the plugins (Debian: containernetworking-plugins) or add their directory to [cni] bin_dirs",
    )
}

/// The plugin types a network config runs (a conflist's, or a single
/// config's), IPAM plugins included.
pub fn plugin_types(conf: &Value) -> BTreeSet<String> {
    let single = [conf.clone()];
    let plugins = conf["plugins"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&single);
    let mut out = BTreeSet::new();
    for p in plugins {
        for t in [&p["type"], &p["ipam"]["type"]] {
            if let Some(t) = t.as_str().filter(|t| !t.is_empty()) {
                out.insert(t.to_string());
            }
        }
    }
    out
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Each configured handler: its shim found (as containerd would look it
/// up), and what Status says it supports.
fn handler_checks(handlers: &Value, features: &[v1::RuntimeHandler]) -> Vec<Check> {
    let list = handlers["handlers"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|h| {
            let name = h["name"].as_str().unwrap_or("-");
            let kind = h["runtime_type"].as_str().unwrap_or("-");
            let check_name = format!("runtime {name}");
            if h["shim_found"] != Value::Bool(true) {
                return check(
                    &check_name,
                    Level::Fail,
                    format!("shim of {kind} not found"),
                    "install it on containerd's PATH, or set the handler's runtime_path",
                );
            }
            let f = features
                .iter()
                .find(|f| {
                    f.name == name || (f.name.is_empty() && h["default"] == Value::Bool(true))
                })
                .and_then(|f| f.features);
            let said = f.map_or("features unknown".to_string(), |f| {
                format!(
                    "rro mounts {}, user namespaces {}",
                    yes(f.recursive_read_only_mounts),
                    yes(f.user_namespaces)
                )
            });
            check(
                &check_name,
                Level::Ok,
                format!(
                    "{kind} at {}; {said}",
                    h["shim_binary"].as_str().unwrap_or("-")
                ),
                "",
            )
        })
        .collect()
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `cgroupDriver` of a kubelet config file (YAML); `None` when it sets none.
pub fn kubelet_cgroup_driver(text: &str) -> Option<String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
    v.get("cgroupDriver")?.as_str().map(str::to_string)
}

fn cgroup_check(
    crius: Option<v1::CgroupDriver>,
    kubelet: Option<Result<Option<String>, String>>,
) -> Check {
    let name = "cgroup driver";
    let ours = match crius {
        Some(v1::CgroupDriver::Systemd) => "systemd",
        Some(v1::CgroupDriver::Cgroupfs) => "cgroupfs",
        None => {
            return check(
                name,
                Level::Warn,
                "criusd did not say (RuntimeConfig)",
                "update criusd",
            );
        }
    };
    match kubelet {
        None => check(
            name,
            Level::Ok,
            format!("{ours} (kubelet 1.28+ asks crius for it; --kubelet-config to compare)"),
            "",
        ),
        Some(Err(e)) => check(
            name,
            Level::Warn,
            format!("{ours}; kubelet config unreadable: {e}"),
            "pass the file kubelet runs with",
        ),
        Some(Ok(None)) => check(
            name,
            Level::Ok,
            format!("{ours}; kubelet's config sets none (it asks crius)"),
            "",
        ),
        Some(Ok(Some(k))) if k == ours => {
            check(name, Level::Ok, format!("{ours}, as kubelet's config"), "")
        }
        Some(Ok(Some(k))) => check(
            name,
            Level::Fail,
            format!("crius uses {ours}, kubelet's config says {k}"),
            &format!(
                "set cgroup_driver = \"{k}\" in crius' config, or cgroupDriver: {ours} in kubelet's"
            ),
        ),
    }
}

/// From `/proc/self/status`: the kernel has seccomp when it shows the field.
fn seccomp_check(proc_status: &str) -> Check {
    if proc_status.lines().any(|l| l.starts_with("Seccomp:")) {
        check("seccomp", Level::Ok, "the kernel filters system calls", "")
    } else {
        check(
            "seccomp",
            Level::Warn,
            "the kernel has no seccomp: RuntimeDefault profiles cannot apply",
            "use a kernel built with CONFIG_SECCOMP_FILTER",
        )
    }
}

fn apparmor_check(apparmor: &Value) -> Check {
    if apparmor["enabled"] == Value::Bool(true) {
        let profile = apparmor["defaultProfile"].as_str().unwrap_or("none");
        return check(
            "apparmor",
            Level::Ok,
            format!("enabled, default profile {profile}"),
            "",
        );
    }
    let why = apparmor["unconfinedReason"]
        .as_str()
        .unwrap_or("not enabled on this node");
    check(
        "apparmor",
        Level::Warn,
        format!("containers run without AppArmor: {why}"),
        "nothing to do unless pods ask for AppArmor profiles",
    )
}

/// Each `<registry_config_dir>/<host>/hosts.toml` must parse.
fn registry_checks(config: &Value) -> Vec<Check> {
    let Some(dir) = config["images"]["registry_config_dir"]
        .as_str()
        .filter(|d| !d.is_empty())
    else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("hosts.toml"))
                .collect()
        })
        .unwrap_or_default();
    files.retain(|f| f.is_file());
    files.sort();
    let bad: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| e.to_string());
            let parsed = text.and_then(|t| {
                t.parse::<toml::Table>()
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
            parsed
                .err()
                .map(|e| format!("{}: {}", f.display(), e.lines().next().unwrap_or("")))
        })
        .collect();
    if bad.is_empty() {
        return vec![check(
            "registry hosts",
            Level::Ok,
            format!("{} hosts.toml under {dir} parse", files.len()),
            "",
        )];
    }
    vec![check(
        "registry hosts",
        Level::Fail,
        bad.join("; "),
        "fix the file (containerd's hosts.toml format); pulls from that registry fail until then",
    )]
}

/// Free space of the image filesystem.
fn space_check(mountpoint: Option<&Path>) -> Check {
    let name = "image filesystem";
    let Some(dir) = mountpoint else {
        return check(
            name,
            Level::Warn,
            "criusd did not name it (ImageFsInfo)",
            "check containerd",
        );
    };
    let Ok(vfs) = nix::sys::statvfs::statvfs(dir) else {
        return check(
            name,
            Level::Warn,
            format!("{}: cannot read its size", dir.display()),
            "",
        );
    };
    let block = vfs.fragment_size();
    let (free, total) = (vfs.blocks_available() * block, vfs.blocks() * block);
    space_level(dir, free, total)
}

fn space_level(dir: &Path, free: u64, total: u64) -> Check {
    let name = "image filesystem";
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let pct = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    let found = format!(
        "{}: {:.1} GiB free of {:.1} GiB ({pct:.0}%)",
        dir.display(),
        gib(free),
        gib(total)
    );
    let fix = "remove unused images (crius rmi) or grow the filesystem: kubelet evicts pods below its thresholds";
    if pct < 5.0 {
        check(name, Level::Fail, found, fix)
    } else if pct < 15.0 {
        check(name, Level::Warn, found, fix)
    } else {
        check(name, Level::Ok, found, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(name: &str, status: bool) -> v1::RuntimeCondition {
        v1::RuntimeCondition {
            r#type: name.into(),
            status,
            reason: "Why".into(),
            message: "because".into(),
        }
    }

    #[test]
    fn containerd_down_fails_with_the_fix() {
        let c = containerd_check(
            &[cond("RuntimeReady", false)],
            &json!({"address": "/run/c.sock"}),
        );
        assert_eq!(c.level, Level::Fail);
        assert!(line(&c).starts_with("FAIL  containerd"), "{}", line(&c));
        assert!(line(&c).contains("/run/c.sock") && line(&c).contains("start containerd"));
        let ok = containerd_check(&[cond("RuntimeReady", true)], &json!({"version": "1.6.20"}));
        assert_eq!(ok.level, Level::Ok);
        assert!(ok.found.starts_with("1.6.20"));
    }

    #[test]
    fn cni_plugins_of_conflists_and_single_configs() {
        let list = json!({"plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}, {"type": "portmap"}]});
        assert_eq!(
            plugin_types(&list).into_iter().collect::<Vec<_>>(),
            ["bridge", "host-local", "portmap"]
        );
        assert_eq!(plugin_types(&json!({"type": "ptp"})).len(), 1);
    }

    #[test]
    fn a_missing_cni_plugin_fails_naming_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (conf, bin) = (dir.path().join("net.d"), dir.path().join("bin"));
        std::fs::create_dir_all(&conf)?;
        std::fs::create_dir_all(&bin)?;
        assert_eq!(
            cni_config_check(&conf, std::slice::from_ref(&bin)).level,
            Level::Fail,
            "no config"
        );
        std::fs::write(
            conf.join("10-a.conflist"),
            json!({"name": "n", "plugins": [{"type": "bridge"}, {"type": "loopback"}]}).to_string(),
        )?;
        std::fs::write(bin.join("bridge"), "")?;
        std::fs::set_permissions(bin.join("bridge"), std::fs::Permissions::from_mode(0o755))?;
        let c = cni_config_check(&conf, std::slice::from_ref(&bin));
        assert_eq!(c.level, Level::Fail);
        assert!(c.found.contains("plugin loopback not found"), "{c:?}");
        std::fs::write(bin.join("loopback"), "")?;
        std::fs::set_permissions(bin.join("loopback"), std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(cni_config_check(&conf, &[bin]).level, Level::Ok);
        Ok(())
    }

    #[test]
    fn handlers_without_shims_fail() {
        let handlers = json!({"handlers": [
            {"name": "runc", "runtime_type": "io.containerd.runc.v2", "shim_found": true, "shim_binary": "/usr/bin/containerd-shim-runc-v2", "default": true},
            {"name": "kata", "runtime_type": "io.containerd.kata.v2", "shim_found": false},
        ]});
        let features = [v1::RuntimeHandler {
            name: String::new(),
            features: Some(v1::RuntimeHandlerFeatures {
                recursive_read_only_mounts: true,
                user_namespaces: true,
            }),
        }];
        let c = handler_checks(&handlers, &features);
        assert_eq!(c[0].level, Level::Ok);
        assert!(c[0].found.contains("user namespaces yes"), "{c:?}");
        assert_eq!(
            (c[1].level, c[1].name.as_str()),
            (Level::Fail, "runtime kata")
        );
        assert!(c[1].fix.contains("runtime_path"));
    }

    #[test]
    fn cgroup_drivers_are_compared_with_kubelets() {
        assert_eq!(
            kubelet_cgroup_driver("kind: KubeletConfiguration\ncgroupDriver: systemd\n"),
            Some("systemd".into())
        );
        assert_eq!(kubelet_cgroup_driver("kind: KubeletConfiguration\n"), None);
        let fs = Some(v1::CgroupDriver::Cgroupfs);
        assert_eq!(cgroup_check(fs, None).level, Level::Ok);
        assert_eq!(
            cgroup_check(fs, Some(Ok(Some("cgroupfs".into())))).level,
            Level::Ok
        );
        let bad = cgroup_check(fs, Some(Ok(Some("systemd".into()))));
        assert_eq!(bad.level, Level::Fail);
        assert!(bad.fix.contains("cgroup_driver = \"systemd\""), "{bad:?}");
    }

    #[test]
    fn open_sockets_and_full_disks() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("sock");
        std::fs::write(&f, "")?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666))?;
        assert_eq!(
            socket_check(&f, std::fs::metadata(&f).ok()).level,
            Level::Fail
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o660))?;
        let uid_root = nix::unistd::geteuid().is_root();
        let want = if uid_root { Level::Ok } else { Level::Warn };
        assert_eq!(socket_check(&f, std::fs::metadata(&f).ok()).level, want);
        assert_eq!(socket_check(&f, None).level, Level::Fail);
        let gib = 1u64 << 30;
        assert_eq!(
            space_level(dir.path(), 50 * gib, 100 * gib).level,
            Level::Ok
        );
        assert_eq!(
            space_level(dir.path(), 10 * gib, 100 * gib).level,
            Level::Warn
        );
        assert_eq!(space_level(dir.path(), gib, 100 * gib).level, Level::Fail);
        Ok(())
    }

    #[test]
    fn seccomp_and_apparmor() {
        assert_eq!(seccomp_check("Name: x\nSeccomp:\t0\n").level, Level::Ok);
        assert_eq!(seccomp_check("Name: x\n").level, Level::Warn);
        assert_eq!(
            apparmor_check(&json!({"enabled": false})).level,
            Level::Warn
        );
        assert_eq!(
            apparmor_check(&json!({"enabled": true, "defaultProfile": "crius-default"})).level,
            Level::Ok
        );
    }
}
