//! CRI messages ↔ domain types. An unknown enum value is read as containerd
//! reads it where that is safe (namespace modes as POD, propagation as
//! private) and is otherwise an error naming the field; nothing else is
//! judged here (the core validates).

use crius_core::Error;
use crius_core::sandbox::{
    DnsConfig, LinuxSandbox, NamespaceMode, NamespaceOptions, PodSandboxRequest, PortMapping,
    Protocol, Resources,
};
use crius_cri_api::v1;

fn known_namespace_mode(v: i32) -> Option<NamespaceMode> {
    match v1::NamespaceMode::try_from(v).ok()? {
        v1::NamespaceMode::Pod => Some(NamespaceMode::Pod),
        v1::NamespaceMode::Container => Some(NamespaceMode::Container),
        v1::NamespaceMode::Node => Some(NamespaceMode::Node),
        v1::NamespaceMode::Target => Some(NamespaceMode::Target),
    }
}

/// A network, PID or IPC namespace mode. A value this CRI version does not
/// define is read as POD, the pod's own namespace, as containerd's checks
/// (for NODE, CONTAINER, TARGET) fall through to it: the most isolated
/// reading is safe.
pub(crate) fn namespace_mode(field: &str, v: i32) -> Result<NamespaceMode, Error> {
    Ok(known_namespace_mode(v).unwrap_or_else(|| {
        tracing::warn!(field, value = v, "unknown namespace mode, read as POD");
        NamespaceMode::Pod
    }))
}

/// The user namespace mode of `ns`, when it names one. An unknown one is
/// refused, as containerd refuses it ("unsupported user namespace mode"):
/// each mode maps ids differently, none can stand in for another.
pub(crate) fn user_namespace(
    field: &str,
    ns: &v1::NamespaceOption,
) -> Result<Option<NamespaceMode>, Error> {
    ns.userns_options
        .as_ref()
        .map(|u| {
            known_namespace_mode(u.mode).ok_or_else(|| {
                Error::invalid(
                    format!("{field}.userns_options.mode"),
                    format!("unknown user namespace mode {}", u.mode),
                )
            })
        })
        .transpose()
}

/// The id mappings of `ns`'s user namespace (checked by the core).
pub(crate) fn userns_ids(ns: &v1::NamespaceOption) -> crius_core::userns::Asked {
    ns.userns_options
        .as_ref()
        .map(|u| id_mappings(&u.uids, &u.gids))
        .unwrap_or_default()
}

/// CRI id mappings as the core sees them.
pub(crate) fn id_mappings(
    uids: &[v1::IdMapping],
    gids: &[v1::IdMapping],
) -> crius_core::userns::Asked {
    let list = |l: &[v1::IdMapping]| {
        l.iter()
            .map(|m| crius_core::userns::IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    crius_core::userns::Asked {
        uids: list(uids),
        gids: list(gids),
    }
}

/// Whether `policy` is `Strict`. Unknown values are refused (security:
/// reading one as Merge could give the process groups a stricter policy
/// would not).
pub(crate) fn strict_supplemental_groups(field: &str, policy: i32) -> Result<bool, Error> {
    match v1::SupplementalGroupsPolicy::try_from(policy) {
        Ok(v1::SupplementalGroupsPolicy::Merge) => Ok(false),
        Ok(v1::SupplementalGroupsPolicy::Strict) => Ok(true),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown supplemental groups policy {policy}"),
        )),
    }
}

fn protocol(field: &str, v: i32) -> Result<Protocol, Error> {
    match v1::Protocol::try_from(v) {
        Ok(v1::Protocol::Tcp) => Ok(Protocol::Tcp),
        Ok(v1::Protocol::Udp) => Ok(Protocol::Udp),
        Ok(v1::Protocol::Sctp) => Ok(Protocol::Sctp),
        // Impossible: containerd would hand CNI's portmap a protocol it
        // does not know, which fails the pod's network anyway.
        Err(_) => Err(Error::invalid(field, format!("unknown protocol {v}"))),
    }
}

/// UpdatePodSandboxResources' overhead and totals.
pub(crate) fn pod_resources(req: &v1::UpdatePodSandboxResourcesRequest) -> crius_pod::PodResources {
    crius_pod::PodResources {
        overhead: resources(req.overhead.as_ref()),
        resources: resources(req.resources.as_ref()),
    }
}

fn resources(r: Option<&v1::LinuxContainerResources>) -> Option<Resources> {
    r.map(|r| Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
    })
}

fn port_mappings(mappings: &[v1::PortMapping]) -> Result<Vec<PortMapping>, Error> {
    mappings
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(PortMapping {
                protocol: protocol(&format!("config.port_mappings[{i}].protocol"), p.protocol)?,
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
        })
        .collect()
}

/// The pod's namespace modes.
fn namespaces(ns: &v1::NamespaceOption) -> Result<NamespaceOptions, Error> {
    const NS: &str = "config.linux.security_context.namespace_options";
    Ok(NamespaceOptions {
        network: namespace_mode(&format!("{NS}.network"), ns.network)?,
        pid: namespace_mode(&format!("{NS}.pid"), ns.pid)?,
        ipc: namespace_mode(&format!("{NS}.ipc"), ns.ipc)?,
    })
}

/// A `RunPodSandboxRequest` as the core sees it.
pub fn pod_sandbox_request(
    config: Option<v1::PodSandboxConfig>,
    runtime_handler: String,
) -> Result<PodSandboxRequest, Error> {
    // containerd refuses these too ("sandbox config must include metadata").
    let c = config.ok_or_else(|| Error::invalid("config", "is required"))?;
    let meta = c
        .metadata
        .ok_or_else(|| Error::invalid("config.metadata", "is required"))?;
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let ns = sc.namespace_options.unwrap_or_default();
    const SC: &str = "config.linux.security_context";
    #[allow(deprecated)] // `seccomp_profile_path`: still honoured, as containerd does
    let seccomp = crate::convert_container::either_profile(
        "seccomp",
        sc.seccomp.as_ref(),
        "seccomp_profile_path",
        &sc.seccomp_profile_path,
    )?;
    let port_mappings = port_mappings(&c.port_mappings)?;
    Ok(PodSandboxRequest {
        name: meta.name,
        uid: meta.uid,
        namespace: meta.namespace,
        attempt: meta.attempt,
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns: c.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: c.labels.into_iter().collect(),
        annotations: c.annotations.into_iter().collect(),
        runtime_handler,
        linux: LinuxSandbox {
            cgroup_parent: linux.cgroup_parent,
            sysctls: linux.sysctls.into_iter().collect(),
            namespaces: namespaces(&ns)?,
            privileged: sc.privileged,
            run_as_user: sc.run_as_user.map(|v| v.value),
            run_as_group: sc.run_as_group.map(|v| v.value),
            supplemental_groups: sc.supplemental_groups,
            readonly_rootfs: sc.readonly_rootfs,
            seccomp,
            overhead: resources(linux.overhead.as_ref()),
            resources: resources(linux.resources.as_ref()),
            user_namespace: user_namespace(&format!("{SC}.namespace_options"), &ns)?,
            userns_ids: userns_ids(&ns),
            strict_supplemental_groups: strict_supplemental_groups(
                &format!("{SC}.supplemental_groups_policy"),
                sc.supplemental_groups_policy,
            )?,
        },
    })
}
