//! `ContainerConfig` from JSON or YAML with CRI's field names (as crictl
//! takes them), for `crius create`. Unknown fields are refused, naming them.

use std::collections::HashMap;

use crius_cri_api::v1;
use serde::Deserialize;

use crate::podspec::{document, enum_value, mode};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    metadata: Metadata,
    image: Image,
    command: Vec<String>,
    args: Vec<String>,
    working_dir: String,
    envs: Vec<KeyValue>,
    mounts: Vec<Mount>,
    devices: Vec<Device>,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    log_path: String,
    stdin: bool,
    stdin_once: bool,
    tty: bool,
    linux: Linux,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Metadata {
    name: String,
    attempt: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Image {
    image: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct KeyValue {
    key: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Mount {
    container_path: String,
    host_path: String,
    readonly: bool,
    selinux_relabel: bool,
    /// "PROPAGATION_PRIVATE", "PROPAGATION_HOST_TO_CONTAINER",
    /// "PROPAGATION_BIDIRECTIONAL" or the enum number.
    propagation: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Device {
    container_path: String,
    host_path: String,
    permissions: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Linux {
    resources: Option<Resources>,
    security_context: SecurityContext,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Resources {
    cpu_period: i64,
    cpu_quota: i64,
    cpu_shares: i64,
    memory_limit_in_bytes: i64,
    oom_score_adj: i64,
    cpuset_cpus: String,
    cpuset_mems: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SecurityContext {
    capabilities: Option<Capabilities>,
    privileged: bool,
    namespace_options: NamespaceOptions,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_username: String,
    readonly_rootfs: bool,
    supplemental_groups: Vec<i64>,
    no_new_privs: bool,
    masked_paths: Vec<String>,
    readonly_paths: Vec<String>,
    seccomp: Option<Profile>,
    apparmor: Option<Profile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Capabilities {
    add_capabilities: Vec<String>,
    drop_capabilities: Vec<String>,
    add_ambient_capabilities: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NamespaceOptions {
    /// "POD", "CONTAINER", "NODE", "TARGET" or the enum number.
    network: Option<serde_json::Value>,
    pid: Option<serde_json::Value>,
    ipc: Option<serde_json::Value>,
    target_id: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Profile {
    /// "RuntimeDefault", "Unconfined", "Localhost" or the enum number.
    profile_type: Option<serde_json::Value>,
    localhost_ref: String,
}

fn propagation(s: &str) -> Option<i32> {
    let s = s.to_uppercase();
    let s = if s.starts_with("PROPAGATION_") {
        s
    } else {
        format!("PROPAGATION_{s}")
    };
    v1::MountPropagation::from_str_name(&s).map(|m| m as i32)
}

fn profile_type(s: &str) -> Option<i32> {
    let lower = s.to_ascii_lowercase();
    v1::security_profile::ProfileType::from_str_name(match lower.as_str() {
        "runtimedefault" | "runtime_default" => "RuntimeDefault",
        "unconfined" => "Unconfined",
        "localhost" => "Localhost",
        _ => s,
    })
    .map(|t| t as i32)
}

fn profile(p: &Option<Profile>) -> anyhow::Result<Option<v1::SecurityProfile>> {
    p.as_ref()
        .map(|p| {
            Ok(v1::SecurityProfile {
                profile_type: enum_value(&p.profile_type, profile_type)?,
                localhost_ref: p.localhost_ref.clone(),
            })
        })
        .transpose()
}

/// Parses a ContainerConfig document: JSON, or YAML when it is not JSON.
pub fn parse(text: &str) -> anyhow::Result<v1::ContainerConfig> {
    let c: Config = document(text)?;
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: c.metadata.name,
            attempt: c.metadata.attempt,
        }),
        image: Some(v1::ImageSpec {
            image: c.image.image,
            ..Default::default()
        }),
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs: c
            .envs
            .into_iter()
            .map(|e| v1::KeyValue {
                key: e.key,
                value: e.value.into(),
            })
            .collect(),
        mounts: c
            .mounts
            .iter()
            .map(Mount::to_cri)
            .collect::<anyhow::Result<_>>()?,
        devices: c
            .devices
            .into_iter()
            .map(|d| v1::Device {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        labels: c.labels,
        annotations: c.annotations,
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        linux: Some(v1::LinuxContainerConfig {
            resources: c.linux.resources.map(Resources::into_cri),
            security_context: Some(c.linux.security_context.to_cri()?),
        }),
        ..Default::default()
    })
}

impl Mount {
    fn to_cri(&self) -> anyhow::Result<v1::Mount> {
        Ok(v1::Mount {
            container_path: self.container_path.clone(),
            host_path: self.host_path.clone(),
            readonly: self.readonly,
            selinux_relabel: self.selinux_relabel,
            propagation: enum_value(&self.propagation, propagation)?,
            ..Default::default()
        })
    }
}

impl Resources {
    fn into_cri(self) -> v1::LinuxContainerResources {
        v1::LinuxContainerResources {
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_shares: self.cpu_shares,
            memory_limit_in_bytes: self.memory_limit_in_bytes,
            oom_score_adj: self.oom_score_adj,
            cpuset_cpus: self.cpuset_cpus,
            cpuset_mems: self.cpuset_mems,
            ..Default::default()
        }
    }
}

impl SecurityContext {
    /// The namespace modes and profile types by name or number.
    fn to_cri(&self) -> anyhow::Result<v1::LinuxContainerSecurityContext> {
        let ns = &self.namespace_options;
        Ok(v1::LinuxContainerSecurityContext {
            capabilities: self.capabilities.as_ref().map(|c| v1::Capability {
                add_capabilities: c.add_capabilities.clone(),
                drop_capabilities: c.drop_capabilities.clone(),
                add_ambient_capabilities: c.add_ambient_capabilities.clone(),
            }),
            privileged: self.privileged,
            namespace_options: Some(v1::NamespaceOption {
                network: enum_value(&ns.network, mode)?,
                pid: enum_value(&ns.pid, mode)?,
                ipc: enum_value(&ns.ipc, mode)?,
                target_id: ns.target_id.clone(),
                ..Default::default()
            }),
            run_as_user: self.run_as_user.map(|value| v1::Int64Value { value }),
            run_as_group: self.run_as_group.map(|value| v1::Int64Value { value }),
            run_as_username: self.run_as_username.clone(),
            readonly_rootfs: self.readonly_rootfs,
            supplemental_groups: self.supplemental_groups.clone(),
            no_new_privs: self.no_new_privs,
            masked_paths: self.masked_paths.clone(),
            readonly_paths: self.readonly_paths.clone(),
            seccomp: profile(&self.seccomp)?,
            apparmor: profile(&self.apparmor)?,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crictl_style_json() {
        let c = parse(
            r#"{
              "metadata": {"name": "app", "attempt": 1},
              "image": {"image": "busybox"},
              "command": ["sleep", "60"],
              "envs": [{"key": "A", "value": "1"}],
              "mounts": [{"container_path": "/data", "host_path": "/tmp/d", "propagation": "PROPAGATION_HOST_TO_CONTAINER"}],
              "devices": [{"container_path": "/dev/x", "host_path": "/dev/null", "permissions": "rw"}],
              "log_path": "app/1.log",
              "linux": {
                "resources": {"memory_limit_in_bytes": 67108864},
                "security_context": {
                  "capabilities": {"add_capabilities": ["NET_ADMIN"]},
                  "namespace_options": {"pid": "CONTAINER"},
                  "run_as_user": 1000,
                  "seccomp": {"profile_type": "Localhost", "localhost_ref": "/p.json"}
                }
              }
            }"#,
        )
        .expect("parses");
        assert_eq!(c.metadata.as_ref().map(|m| m.attempt), Some(1));
        assert_eq!(c.command, ["sleep", "60"]);
        assert_eq!(
            c.mounts[0].propagation,
            v1::MountPropagation::PropagationHostToContainer as i32
        );
        assert_eq!(c.devices[0].permissions, "rw");
        let linux = c.linux.expect("linux");
        assert_eq!(
            linux.resources.map(|r| r.memory_limit_in_bytes),
            Some(64 << 20)
        );
        let sc = linux.security_context.expect("sc");
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        assert_eq!(
            sc.namespace_options.map(|n| n.pid),
            Some(v1::NamespaceMode::Container as i32)
        );
        let seccomp = sc.seccomp.expect("seccomp");
        assert_eq!(
            (seccomp.profile_type, seccomp.localhost_ref.as_str()),
            (
                v1::security_profile::ProfileType::Localhost as i32,
                "/p.json"
            )
        );
    }

    #[test]
    fn yaml_and_unknown_fields() {
        let c =
            parse("metadata:\n  name: app\nimage:\n  image: busybox\ntty: true\n").expect("yaml");
        assert!(c.tty);
        let err =
            parse("{\"metadata\": {\"name\": \"x\"}, \"comand\": []}").expect_err("typo refused");
        assert!(err.to_string().contains("comand"), "{err}");
    }

    #[test]
    fn enum_names_in_several_spellings() {
        use v1::security_profile::ProfileType;
        for name in ["RuntimeDefault", "runtime_default", "RUNTIMEDEFAULT"] {
            assert_eq!(
                profile_type(name),
                Some(ProfileType::RuntimeDefault as i32),
                "{name}"
            );
        }
        assert_eq!(
            profile_type("localhost"),
            Some(ProfileType::Localhost as i32)
        );
        assert_eq!(profile_type("apparmor"), None);
        assert_eq!(
            propagation("bidirectional"),
            Some(v1::MountPropagation::PropagationBidirectional as i32)
        );
        assert_eq!(
            propagation("PROPAGATION_PRIVATE"),
            Some(v1::MountPropagation::PropagationPrivate as i32)
        );
        assert_eq!(propagation("shared"), None);
        for bad in [
            r#"{"mounts": [{"propagation": "SHARED"}]}"#,
            r#"{"linux": {"security_context": {"namespace_options": {"ipc": "MOON"}}}}"#,
            r#"{"linux": {"security_context": {"apparmor": {"profile_type": 1.5}}}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
