//! CDI (Container Device Interface) devices: spec files (JSON or YAML, as
//! device plugins and DRA drivers write them into `/etc/cdi` and
//! `/var/run/cdi`), fully qualified names (`vendor.com/class=name`), and
//! the container edits a device brings (device nodes, mounts, environment,
//! hooks, additional groups) applied to an OCI spec. Pure: the files'
//! texts and the host's device nodes are inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount, Spec};
use serde::Deserialize;

use crate::container::{ContainerRequest, HostDevice, HostDeviceKind};
use crate::{Error, Result};

/// The CDI spec versions crius reads (the CDI specification's, 0.3.0 on).
const VERSIONS: &[&str] = &[
    "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];

/// One spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiSpec {
    pub cdi_version: String,
    /// `vendor.com/class`.
    pub kind: String,
    #[serde(default)]
    pub devices: Vec<CdiDevice>,
    /// Edits every device of the spec brings.
    #[serde(default)]
    pub container_edits: Option<ContainerEdits>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiDevice {
    pub name: String,
    pub container_edits: ContainerEdits,
}

/// What a device changes in a container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub hooks: Vec<CdiHook>,
    #[serde(default)]
    pub mounts: Vec<CdiMount>,
    #[serde(default, rename = "additionalGIDs", alias = "additionalGids")]
    pub additional_gids: Vec<u32>,
    /// Edits crius does not apply: a device that needs them is refused
    /// rather than given half.
    #[serde(default)]
    pub intel_rdt: Option<serde_json::Value>,
    #[serde(default)]
    pub net_devices: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// In the container.
    pub path: String,
    /// On the host (default: `path`).
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// cgroup access, `rwm` by default.
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiMount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiHook {
    /// prestart, createRuntime, createContainer, startContainer,
    /// poststart or poststop.
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// Splits `vendor.com/class=name`, checking each part as CDI does.
pub fn parse_name(qualified: &str) -> std::result::Result<(&str, &str), String> {
    let (kind, name) = qualified.split_once('=').ok_or_else(|| {
        format!("{qualified:?} is not a qualified CDI name (vendor.com/class=name)")
    })?;
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("{qualified:?}: the kind {kind:?} is not vendor.com/class"))?;
    let part = |what: &str, s: &str, extra: &str| {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let ok = edge(s.chars().next())
            && edge(s.chars().last())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
        if ok {
            Ok(())
        } else {
            Err(format!("{qualified:?}: invalid {what} {s:?}"))
        }
    };
    part("vendor", vendor, "-_.")?;
    part("class", class, "-_")?;
    part("device name", name, "-_.:")?;
    Ok((kind, name))
}

/// The devices of a set of spec files: for one name, a file of a later
/// directory wins over an earlier one (`/var/run/cdi` over `/etc/cdi`);
/// two in one directory are a conflict, and the name unusable.
#[derive(Debug, Default)]
pub struct Registry {
    /// Qualified name → (the spec's edits, the device's edits, its file).
    devices: BTreeMap<String, (ContainerEdits, ContainerEdits, PathBuf)>,
    /// Names defined twice at one priority, with the files.
    conflicts: BTreeMap<String, String>,
    /// Files that could not be read, and why.
    pub broken: Vec<(PathBuf, String)>,
}

impl Registry {
    /// `files`: `(priority, path, text)`, the priority being the index of
    /// the file's directory.
    pub fn new(files: Vec<(usize, PathBuf, String)>) -> Self {
        let mut r = Registry::default();
        let mut priority: BTreeMap<String, usize> = BTreeMap::new();
        for (prio, path, text) in files {
            let spec = match parse_spec(&path, &text) {
                Ok(s) => s,
                Err(why) => {
                    r.broken.push((path, why));
                    continue;
                }
            };
            let common = spec.container_edits.clone().unwrap_or_default();
            for d in spec.devices {
                let name = format!("{}={}", spec.kind, d.name);
                match priority.get(&name) {
                    Some(p) if *p > prio => continue,
                    Some(p) if *p == prio => {
                        let other = r.devices.get(&name).map(|x| x.2.display().to_string());
                        r.conflicts.insert(
                            name.clone(),
                            format!("{} and {}", path.display(), other.unwrap_or_default()),
                        );
                    }
                    _ => {
                        r.conflicts.remove(&name);
                    }
                }
                priority.insert(name.clone(), prio);
                r.devices
                    .insert(name, (common.clone(), d.container_edits, path.clone()));
            }
        }
        r
    }

    /// The edits of `names` (`(request field, name)`, in order), or why
    /// one cannot be given.
    pub fn resolve(&self, names: &[(String, String)]) -> Result<Vec<ContainerEdits>> {
        let mut out = Vec::new();
        let mut specs_seen = Vec::new();
        for (field, name) in names {
            let bad = |why: String| Error::invalid(field.clone(), why);
            parse_name(name).map_err(bad)?;
            if let Some(files) = self.conflicts.get(name) {
                return Err(bad(format!(
                    "CDI device {name:?} is defined twice ({files})"
                )));
            }
            let Some((common, own, file)) = self.devices.get(name) else {
                let broken: Vec<String> = self
                    .broken
                    .iter()
                    .map(|(p, w)| format!("{}: {w}", p.display()))
                    .collect();
                let hint = if broken.is_empty() {
                    String::new()
                } else {
                    format!("; unreadable spec files: {}", broken.join("; "))
                };
                return Err(bad(format!("unknown CDI device {name:?}{hint}")));
            };
            for edits in [common, own] {
                if edits.intel_rdt.is_some() || edits.net_devices.is_some() {
                    return Err(bad(format!(
                        "CDI device {name:?} ({}) asks for intelRdt or netDevices edits, which crius does not apply",
                        file.display()
                    )));
                }
            }
            // A spec's own edits once, however many of its devices.
            if !specs_seen.contains(file) {
                specs_seen.push(file.clone());
                out.push(common.clone());
            }
            out.push(own.clone());
        }
        Ok(out)
    }
}

fn parse_spec(path: &Path, text: &str) -> std::result::Result<CdiSpec, String> {
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let spec: CdiSpec = if yaml {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    if !VERSIONS.contains(&spec.cdi_version.as_str()) {
        return Err(format!(
            "cdiVersion {:?} is not one crius reads ({})",
            spec.cdi_version,
            VERSIONS.join(", ")
        ));
    }
    let probe = format!("{}=x", spec.kind);
    parse_name(&probe).map_err(|e| format!("kind: {e}"))?;
    for d in &spec.devices {
        parse_name(&format!("{}={}", spec.kind, d.name))?;
    }
    Ok(spec)
}

/// Applies `edits` to `spec`; `host` answers what a host device node is
/// (`None`: not there).
pub fn apply(
    spec: &mut Spec,
    edits: &[ContainerEdits],
    host: &dyn Fn(&Path) -> Option<HostDevice>,
) -> Result<()> {
    for e in edits {
        apply_env(spec, &e.env);
        for node in &e.device_nodes {
            apply_node(spec, node, host)?;
        }
        apply_mounts(spec, &e.mounts);
        apply_hooks(spec, &e.hooks)?;
        if !e.additional_gids.is_empty()
            && let Some(p) = spec.process_mut()
        {
            let user = p.user_mut();
            let mut gids = user.additional_gids().clone().unwrap_or_default();
            gids.extend(e.additional_gids.iter().filter(|g| **g != 0));
            user.set_additional_gids(Some(gids));
        }
    }
    Ok(())
}

fn apply_env(spec: &mut Spec, env: &[String]) {
    let Some(p) = spec.process_mut() else { return };
    let mut all = p.env().clone().unwrap_or_default();
    for kv in env {
        let key = kv.split('=').next().unwrap_or(kv);
        all.retain(|x| x.split('=').next() != Some(key));
        all.push(kv.clone());
    }
    p.set_env(Some(all));
}

fn apply_node(
    spec: &mut Spec,
    node: &DeviceNode,
    host: &dyn Fn(&Path) -> Option<HostDevice>,
) -> Result<()> {
    let host_path = node.host_path.as_deref().unwrap_or(&node.path);
    let found = host(Path::new(host_path));
    let kind = node
        .kind
        .as_deref()
        .and_then(|k| k.chars().next())
        .or(found.as_ref().map(|f| match f.kind {
            HostDeviceKind::Block => 'b',
            HostDeviceKind::Char => 'c',
        }))
        .unwrap_or('c');
    let (major, minor) = match (node.major, node.minor, &found) {
        (Some(a), Some(b), _) => (a, b),
        (_, _, Some(f)) => (f.major, f.minor),
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "CDI device node {host_path} does not exist on this node and its spec gives no major and minor"
            )));
        }
    };
    let typ = match kind {
        'b' => LinuxDeviceType::B,
        'p' => LinuxDeviceType::P,
        'u' => LinuxDeviceType::U,
        _ => LinuxDeviceType::C,
    };
    let mut dev = LinuxDevice::default();
    dev.set_path(PathBuf::from(&node.path));
    dev.set_typ(typ);
    dev.set_major(major);
    dev.set_minor(minor);
    dev.set_file_mode(node.file_mode.or(found.as_ref().map(|f| f.file_mode)));
    dev.set_uid(node.uid);
    dev.set_gid(node.gid);
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(typ));
    rule.set_major(Some(major));
    rule.set_minor(Some(minor));
    rule.set_access(Some(
        node.permissions.clone().unwrap_or_else(|| "rwm".into()),
    ));
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let mut devices = linux.devices().clone().unwrap_or_default();
    devices.retain(|d| d.path() != Path::new(&node.path));
    devices.push(dev);
    linux.set_devices(Some(devices));
    let resources = linux.resources_mut().get_or_insert_with(Default::default);
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.push(rule);
    resources.set_devices(Some(rules));
    Ok(())
}

fn apply_mounts(spec: &mut Spec, mounts: &[CdiMount]) {
    if mounts.is_empty() {
        return;
    }
    let mut all = spec.mounts().clone().unwrap_or_default();
    for m in mounts {
        let dest = PathBuf::from(&m.container_path);
        all.retain(|x| x.destination() != &dest);
        let mut mount = Mount::default();
        mount.set_destination(dest);
        mount.set_source(Some(PathBuf::from(&m.host_path)));
        mount.set_typ(Some(m.kind.clone().unwrap_or_else(|| "bind".into())));
        let options = if m.options.is_empty() {
            vec!["rbind".into(), "rprivate".into()]
        } else {
            m.options.clone()
        };
        mount.set_options(Some(options));
        all.push(mount);
    }
    spec.set_mounts(Some(all));
}

fn apply_hooks(spec: &mut Spec, hooks: &[CdiHook]) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let mut all = spec.hooks().clone().unwrap_or_default();
    for h in hooks {
        let mut hook = Hook::default();
        hook.set_path(PathBuf::from(&h.path));
        hook.set_args((!h.args.is_empty()).then(|| h.args.clone()));
        hook.set_env((!h.env.is_empty()).then(|| h.env.clone()));
        hook.set_timeout(h.timeout);
        let push = |list: Option<Vec<Hook>>| {
            let mut list = list.unwrap_or_default();
            list.push(hook.clone());
            Some(list)
        };
        match h.hook_name.as_str() {
            "prestart" => all.set_prestart(push(all.prestart().clone())),
            "createRuntime" => all.set_create_runtime(push(all.create_runtime().clone())),
            "createContainer" => all.set_create_container(push(all.create_container().clone())),
            "startContainer" => all.set_start_container(push(all.start_container().clone())),
            "poststart" => all.set_poststart(push(all.poststart().clone())),
            "poststop" => all.set_poststop(push(all.poststop().clone())),
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "CDI hook {:?}: unknown hook name {other:?}",
                    h.path
                )));
            }
        };
    }
    spec.set_hooks(Some(all));
    Ok(())
}

/// The CDI devices a container asks for, with the request field of each:
/// `CDI_devices`, then the `cdi.k8s.io/*` annotations (comma-separated
/// names), as containerd reads both.
pub fn requested(req: &ContainerRequest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = req
        .cdi_devices
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("config.CDI_devices[{i}].name"), n.clone()))
        .collect();
    for (k, v) in &req.annotations {
        if k.starts_with(ANNOTATION_PREFIX) {
            for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                out.push((format!("config.annotations[{k:?}]"), n.to_string()));
            }
        }
    }
    out
}

/// The prefix of annotations that name CDI devices.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

#[cfg(test)]
mod tests;
