//! `PodSandboxConfig` from JSON or YAML with CRI's field names (as crictl
//! takes them), for `crius pod run`. Unknown fields are refused, naming them.

use std::collections::HashMap;

use crius_cri_api::v1;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    metadata: Metadata,
    hostname: String,
    log_directory: String,
    dns_config: Option<Dns>,
    port_mappings: Vec<Port>,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    linux: Linux,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Metadata {
    name: String,
    uid: String,
    namespace: String,
    attempt: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Dns {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Port {
    /// "TCP", "UDP", "SCTP" or the enum number.
    protocol: Option<serde_json::Value>,
    container_port: i32,
    host_port: i32,
    host_ip: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Linux {
    cgroup_parent: String,
    sysctls: HashMap<String, String>,
    security_context: SecurityContext,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SecurityContext {
    namespace_options: NamespaceOptions,
    privileged: bool,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    supplemental_groups: Vec<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NamespaceOptions {
    /// "POD", "CONTAINER", "NODE" or the enum number.
    network: Option<serde_json::Value>,
    pid: Option<serde_json::Value>,
    ipc: Option<serde_json::Value>,
}

/// A CRI enum given by name (`parse` takes the name as written) or number;
/// absent is 0. Shared with [`crate::containerspec`].
pub(crate) fn enum_value(
    v: &Option<serde_json::Value>,
    parse: fn(&str) -> Option<i32>,
) -> anyhow::Result<i32> {
    match v {
        None => Ok(0),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| anyhow::anyhow!("bad enum value {n}")),
        Some(serde_json::Value::String(s)) => {
            parse(s).ok_or_else(|| anyhow::anyhow!("unknown value {s:?}"))
        }
        Some(other) => anyhow::bail!("bad enum value {other}"),
    }
}

/// A namespace mode by name, any case.
pub(crate) fn mode(s: &str) -> Option<i32> {
    v1::NamespaceMode::from_str_name(&s.to_uppercase()).map(|m| m as i32)
}

fn protocol(s: &str) -> Option<i32> {
    v1::Protocol::from_str_name(&s.to_uppercase()).map(|p| p as i32)
}

/// A CRI document: JSON, or YAML when it is not JSON.
pub(crate) fn document<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    Ok(if text.trim_start().starts_with('{') {
        serde_json::from_str(text)?
    } else {
        serde_yaml_ng::from_str(text)?
    })
}

/// Parses a PodSandboxConfig document: JSON, or YAML when it is not JSON.
pub fn parse(text: &str) -> anyhow::Result<v1::PodSandboxConfig> {
    let c: Config = document(text)?;
    let ns = &c.linux.security_context.namespace_options;
    let sc = &c.linux.security_context;
    Ok(v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: c.metadata.name,
            uid: c.metadata.uid,
            namespace: c.metadata.namespace,
            attempt: c.metadata.attempt,
        }),
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns_config: c.dns_config.map(|d| v1::DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .map(|p| {
                Ok(v1::PortMapping {
                    protocol: enum_value(&p.protocol, protocol)?,
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        labels: c.labels,
        annotations: c.annotations,
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: c.linux.cgroup_parent,
            sysctls: c.linux.sysctls,
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: enum_value(&ns.network, mode)?,
                    pid: enum_value(&ns.pid, mode)?,
                    ipc: enum_value(&ns.ipc, mode)?,
                    ..Default::default()
                }),
                privileged: sc.privileged,
                run_as_user: sc.run_as_user.map(|value| v1::Int64Value { value }),
                run_as_group: sc.run_as_group.map(|value| v1::Int64Value { value }),
                supplemental_groups: sc.supplemental_groups.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crictl_style_json() {
        let c = parse(
            r#"{"metadata":{"name":"web","uid":"u1","namespace":"default"},
                "hostname":"web","port_mappings":[{"protocol":"TCP","container_port":80,"host_port":8080}],
                "linux":{"security_context":{"namespace_options":{"network":"NODE","pid":1}}}}"#,
        )
        .expect("valid");
        assert_eq!(c.metadata.as_ref().map(|m| m.name.as_str()), Some("web"));
        assert_eq!(c.port_mappings[0].host_port, 8080);
        let ns = c
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("ns");
        assert_eq!(ns.network, v1::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, v1::NamespaceMode::Container as i32);
        assert!(parse(r#"{"metadata":{"name":"x"},"bogus":1}"#).is_err());
        let y = parse(
            "metadata:\n  name: web\n  uid: u1\n  namespace: default\nlinux:\n  security_context:\n    namespace_options:\n      network: NODE\n",
        )
        .expect("yaml");
        assert_eq!(y.metadata.map(|m| m.uid), Some("u1".to_string()));
        assert!(parse("metadata:\n  name: x\nbogus: 1\n").is_err());
        assert!(
            parse(r#"{"linux":{"security_context":{"namespace_options":{"network":"MOON"}}}}"#)
                .is_err()
        );
    }
}
