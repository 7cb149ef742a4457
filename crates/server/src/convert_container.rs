//! CRI `ContainerConfig` → [`ContainerRequest`]. Unknown enum values (and
//! unknown deprecated profile strings) become errors naming the CRI field;
//! nothing else is judged here (the core validates, see
//! [`crius_core::container::validate`]).

use crius_core::Error;
use crius_core::container::{
    CapabilityChanges, ContainerNamespaces, ContainerRequest, ContainerResources, Device,
    LinuxContainer, Mount, Propagation, SecurityContext, SecurityProfile,
};
use crius_core::stats::Psi;
use crius_cri_api::v1;

use crius_pod::container::MountRecord;

use crate::convert::namespace_mode;

const SC: &str = "config.linux.security_context";

fn propagation(field: &str, v: i32) -> Result<Propagation, Error> {
    match v1::MountPropagation::try_from(v) {
        Ok(v1::MountPropagation::PropagationPrivate) => Ok(Propagation::Private),
        Ok(v1::MountPropagation::PropagationHostToContainer) => Ok(Propagation::HostToContainer),
        Ok(v1::MountPropagation::PropagationBidirectional) => Ok(Propagation::Bidirectional),
        // containerd reads an unknown propagation as private (with a
        // warning): the mount then reaches neither way, the safe reading.
        Err(_) => {
            tracing::warn!(
                field,
                value = v,
                "unknown mount propagation, read as private"
            );
            Ok(Propagation::Private)
        }
    }
}

/// The structured profile (`seccomp`, `apparmor`).
pub(crate) fn profile(field: &str, p: &v1::SecurityProfile) -> Result<SecurityProfile, Error> {
    match v1::security_profile::ProfileType::try_from(p.profile_type) {
        Ok(v1::security_profile::ProfileType::RuntimeDefault) => {
            Ok(SecurityProfile::RuntimeDefault)
        }
        Ok(v1::security_profile::ProfileType::Unconfined) => Ok(SecurityProfile::Unconfined),
        // A `localhost/` prefix is trimmed, as containerd does "just in
        // case" (the structured field should not need it).
        Ok(v1::security_profile::ProfileType::Localhost) => Ok(SecurityProfile::Localhost(
            p.localhost_ref
                .strip_prefix("localhost/")
                .unwrap_or(&p.localhost_ref)
                .to_string(),
        )),
        // containerd refuses it too ("unsupported profile type"): no
        // profile would be a guess at what confines the process.
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown profile type {}", p.profile_type),
        )),
    }
}

/// A deprecated profile string (`seccomp_profile_path`, `apparmor_profile`),
/// read as containerd's `generateSecurityProfile` reads both: `""` is none,
/// `runtime/default` and `docker/default` the runtime's default,
/// `unconfined`, or `localhost/<path or name>`; anything else containerd
/// refuses too ("invalid profile").
fn legacy_profile(field: &str, value: &str) -> Result<Option<SecurityProfile>, Error> {
    match value {
        "" => Ok(None),
        "runtime/default" | "docker/default" => Ok(Some(SecurityProfile::RuntimeDefault)),
        "unconfined" => Ok(Some(SecurityProfile::Unconfined)),
        _ => match value.strip_prefix("localhost/") {
            Some(rest) => Ok(Some(SecurityProfile::Localhost(rest.to_string()))),
            None => Err(Error::invalid(field, format!("unknown profile {value:?}"))),
        },
    }
}

/// The structured field if set, else the deprecated string.
pub(crate) fn either_profile(
    name: &str,
    structured: Option<&v1::SecurityProfile>,
    legacy_name: &str,
    legacy: &str,
) -> Result<Option<SecurityProfile>, Error> {
    match structured {
        Some(p) => profile(&format!("{SC}.{name}.profile_type"), p).map(Some),
        None => legacy_profile(&format!("{SC}.{legacy_name}"), legacy),
    }
}

/// CRI `LinuxContainerResources` as the core sees them (also for
/// `UpdateContainerResources`).
pub fn resources(r: &v1::LinuxContainerResources) -> ContainerResources {
    ContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| (h.page_size.clone(), h.limit))
            .collect(),
        unified: r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// The CRI form of resources (for `ContainerStatus`).
pub fn cri_resources(r: &ContainerResources) -> v1::LinuxContainerResources {
    v1::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(page_size, limit)| v1::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: r.unified.clone().into_iter().collect(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// CRI sends an unset list as an empty one; the core reads `None` as
/// crius' defaults.
fn path_list(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

#[allow(deprecated)] // `apparmor_profile`, `seccomp_profile_path`
fn security(sc: v1::LinuxContainerSecurityContext) -> Result<SecurityContext, Error> {
    let caps = sc.capabilities.unwrap_or_default();
    let ns = sc.namespace_options.unwrap_or_default();
    let user_namespace = crate::convert::user_namespace(&format!("{SC}.namespace_options"), &ns)?;
    let userns_ids = crate::convert::userns_ids(&ns);
    let seccomp = either_profile(
        "seccomp",
        sc.seccomp.as_ref(),
        "seccomp_profile_path",
        &sc.seccomp_profile_path,
    )?;
    let apparmor = either_profile(
        "apparmor",
        sc.apparmor.as_ref(),
        "apparmor_profile",
        &sc.apparmor_profile,
    )?;
    Ok(SecurityContext {
        capabilities: CapabilityChanges {
            add: caps.add_capabilities,
            drop: caps.drop_capabilities,
        },
        privileged: sc.privileged,
        namespace_options: ContainerNamespaces {
            network: namespace_mode(&format!("{SC}.namespace_options.network"), ns.network)?,
            pid: namespace_mode(&format!("{SC}.namespace_options.pid"), ns.pid)?,
            ipc: namespace_mode(&format!("{SC}.namespace_options.ipc"), ns.ipc)?,
            target_id: ns.target_id,
        },
        run_as_user: sc.run_as_user.map(|v| v.value),
        run_as_username: sc.run_as_username,
        run_as_group: sc.run_as_group.map(|v| v.value),
        supplemental_groups: sc.supplemental_groups,
        readonly_rootfs: sc.readonly_rootfs,
        no_new_privs: sc.no_new_privs,
        masked_paths: path_list(sc.masked_paths),
        readonly_paths: path_list(sc.readonly_paths),
        seccomp,
        apparmor,
        user_namespace,
        userns_ids,
        strict_supplemental_groups: crate::convert::strict_supplemental_groups(
            &format!("{SC}.supplemental_groups_policy"),
            sc.supplemental_groups_policy,
        )?,
    })
}

/// A `CreateContainerRequest`'s config as the core sees it.
pub fn container_request(config: Option<v1::ContainerConfig>) -> Result<ContainerRequest, Error> {
    // containerd refuses these too (a container config must name its
    // metadata and image): there is nothing to create without them.
    let c = config.ok_or_else(|| Error::invalid("config", "is required"))?;
    let meta = c
        .metadata
        .ok_or_else(|| Error::invalid("config.metadata", "is required"))?;
    let image = c
        .image
        .ok_or_else(|| Error::invalid("config.image", "is required"))?;
    let linux = c.linux.unwrap_or_default();
    let mounts = c
        .mounts
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(Mount {
                propagation: propagation(
                    &format!("config.mounts[{i}].propagation"),
                    m.propagation,
                )?,
                container_path: m.container_path,
                host_path: m.host_path,
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                recursive_read_only: m.recursive_read_only,
                image: m.image.map(|i| i.image).unwrap_or_default(),
                image_sub_path: m.image_sub_path,
                id_mappings: crate::convert::id_mappings(&m.uid_mappings, &m.gid_mappings),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(ContainerRequest {
        name: meta.name,
        attempt: meta.attempt,
        image: image.image,
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        stop_signal: stop_signal(c.stop_signal)?,
        envs: envs(c.envs)?,
        mounts,
        devices: c
            .devices
            .into_iter()
            .map(|d| Device {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        labels: c.labels.into_iter().collect(),
        annotations: c.annotations.into_iter().collect(),
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        cdi_devices: c.cdi_devices.into_iter().map(|d| d.name).collect(),
        linux: LinuxContainer {
            resources: linux.resources.as_ref().map(resources),
            security: security(linux.security_context.unwrap_or_default())?,
        },
    })
}

/// A mount as `ContainerStatus` gives it back: every field as requested.
pub(crate) fn mount(m: &MountRecord) -> v1::Mount {
    v1::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: match m.propagation {
            Propagation::Private => v1::MountPropagation::PropagationPrivate,
            Propagation::HostToContainer => v1::MountPropagation::PropagationHostToContainer,
            Propagation::Bidirectional => v1::MountPropagation::PropagationBidirectional,
        } as i32,
        recursive_read_only: m.recursive_read_only,
        // An image volume: the image as asked and the one mounted.
        image: (!m.image.is_empty()).then(|| v1::ImageSpec {
            image: m.image.clone(),
            image_ref: m.image_ref.clone(),
            ..Default::default()
        }),
        image_sub_path: m.image_sub_path.clone(),
        ..Default::default()
    }
}

/// `config.stop_signal` by name (`SIGUSR1`); empty for the runtime's
/// default. A number outside the enum names no signal: refused.
fn stop_signal(n: i32) -> Result<String, Error> {
    match v1::Signal::try_from(n) {
        Ok(v1::Signal::RuntimeDefault) => Ok(String::new()),
        Ok(s) => Ok(s.as_str_name().to_string()),
        Err(_) => Err(Error::invalid(
            "config.stop_signal",
            format!("{n} is not a signal"),
        )),
    }
}

/// The environment. A value that is not UTF-8 is refused: impossible, the
/// runtime spec is JSON, whose strings are UTF-8 (containerd's encoder
/// would replace the bytes without a word, changing the value).
fn envs(kvs: Vec<v1::KeyValue>) -> Result<Vec<(String, String)>, Error> {
    kvs.into_iter()
        .enumerate()
        .map(|(i, kv)| {
            let value = String::from_utf8(kv.value).map_err(|_| {
                Error::invalid(
                    format!("config.envs[{i}].value"),
                    "not UTF-8: the runtime spec (JSON) cannot carry it",
                )
            })?;
            Ok((kv.key, value))
        })
        .collect()
}

fn uint64(value: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value })
}

/// CRI `CpuUsage` of a cumulative CPU time and rate, when there is one.
fn cpu_usage(
    timestamp: i64,
    (cpu_ns, nano_cores): (Option<u64>, Option<u64>),
    psi: Option<Psi>,
) -> Option<v1::CpuUsage> {
    cpu_ns.map(|ns| v1::CpuUsage {
        timestamp,
        usage_core_nano_seconds: uint64(ns),
        usage_nano_cores: nano_cores.and_then(uint64),
        psi: psi.map(|p| psi_stats(&p)),
    })
}

/// CRI `MemoryUsage` of a cgroup's memory.
fn memory_usage(
    timestamp: i64,
    m: &crius_core::stats::Memory,
    psi: Option<Psi>,
) -> v1::MemoryUsage {
    v1::MemoryUsage {
        timestamp,
        working_set_bytes: uint64(m.working_set),
        available_bytes: m.available.and_then(uint64),
        usage_bytes: uint64(m.usage),
        rss_bytes: uint64(m.rss),
        page_faults: uint64(m.page_faults),
        major_page_faults: uint64(m.major_page_faults),
        psi: psi.map(|p| psi_stats(&p)),
    }
}

/// CRI `IoUsage`: the I/O pressure, where the kernel has PSI.
fn io_usage(timestamp: i64, psi: Option<Psi>) -> Option<v1::IoUsage> {
    psi.map(|p| v1::IoUsage {
        timestamp,
        psi: Some(psi_stats(&p)),
    })
}

/// CRI `PsiStats` (a `full` line the kernel lacks is left out).
fn psi_stats(p: &Psi) -> v1::PsiStats {
    let data = |l: &crius_core::stats::PsiLine| v1::PsiData {
        total: l.total_ns,
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    v1::PsiStats {
        full: p.full.as_ref().map(data),
        some: Some(data(&p.some)),
    }
}

/// CRI `ContainerStats` of a container's usage; `fs_mountpoint` names the
/// filesystem of its writable layer (the snapshotter's root).
pub fn container_stats(u: &crius_pod::ContainerUsage, fs_mountpoint: &str) -> v1::ContainerStats {
    let m = &u.container.meta;
    v1::ContainerStats {
        attributes: Some(v1::ContainerAttributes {
            id: m.id.clone(),
            metadata: Some(v1::ContainerMetadata {
                name: m.name.clone(),
                attempt: m.attempt,
            }),
            labels: m.labels.clone().into_iter().collect(),
            annotations: m.annotations.clone().into_iter().collect(),
        }),
        cpu: cpu_usage(u.timestamp, (u.cpu_ns, u.nano_cores), u.pressure.cpu),
        memory: u
            .memory
            .map(|m| memory_usage(u.timestamp, &m, u.pressure.memory)),
        writable_layer: u.writable_layer.map(|(bytes, inodes)| v1::FilesystemUsage {
            timestamp: u.timestamp,
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: fs_mountpoint.to_string(),
            }),
            used_bytes: uint64(bytes),
            inodes_used: uint64(inodes),
        }),
        swap: None,
        io: io_usage(u.timestamp, u.pressure.io),
    }
}

/// CRI `PodSandboxStats` of a pod's usage; `roots` gives each container's
/// writable-layer filesystem (in the order of `u.containers`).
pub fn pod_sandbox_stats(u: &crius_pod::PodUsage, roots: &[String]) -> v1::PodSandboxStats {
    let m = &u.sandbox.meta;
    let interfaces: Vec<v1::NetworkInterfaceUsage> = u
        .interfaces
        .iter()
        .map(|i| v1::NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: uint64(i.rx_bytes),
            rx_errors: uint64(i.rx_errors),
            tx_bytes: uint64(i.tx_bytes),
            tx_errors: uint64(i.tx_errors),
        })
        .collect();
    v1::PodSandboxStats {
        attributes: Some(v1::PodSandboxAttributes {
            id: m.id.clone(),
            metadata: Some(v1::PodSandboxMetadata {
                name: m.name.clone(),
                uid: m.uid.clone(),
                namespace: m.namespace.clone(),
                attempt: m.attempt,
            }),
            labels: m.labels.clone().into_iter().collect(),
            annotations: m.annotations.clone().into_iter().collect(),
        }),
        linux: Some(v1::LinuxPodSandboxStats {
            io: io_usage(u.timestamp, u.pressure.io),
            cpu: cpu_usage(u.timestamp, (u.cpu_ns, u.nano_cores), u.pressure.cpu),
            memory: u
                .memory
                .map(|m| memory_usage(u.timestamp, &m, u.pressure.memory)),
            network: (!interfaces.is_empty()).then(|| v1::NetworkUsage {
                timestamp: u.timestamp,
                // kubelet's default interface name.
                default_interface: interfaces
                    .iter()
                    .find(|i| i.name == "eth0")
                    .or(interfaces.first())
                    .cloned(),
                interfaces: interfaces.clone(),
            }),
            process: u.processes.map(|n| v1::ProcessUsage {
                timestamp: u.timestamp,
                process_count: uint64(n),
            }),
            containers: u
                .containers
                .iter()
                .zip(roots)
                .map(|(c, root)| container_stats(c, root))
                .collect(),
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crius_core::container::NamespaceMode;

    fn kv(k: &str, v: &str) -> v1::KeyValue {
        v1::KeyValue {
            key: k.into(),
            value: v.into(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn map(v: &[(&str, &str)]) -> HashMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn bmap(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn invalid_field(r: Result<ContainerRequest, Error>) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    const MASKED: &[&str] = &["/proc/asound", "/proc/acpi", "/proc/kcore"];
    const READONLY: &[&str] = &["/proc/bus", "/proc/fs"];

    /// Roughly what kubelet sends for a container with a volume, a device,
    /// limits and a restricted security context.
    #[allow(deprecated)]
    fn kubelet_config() -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            image: Some(v1::ImageSpec {
                image: "sha256:0123".into(),
                user_specified_image: "docker.io/library/nginx:1.27".into(),
                ..Default::default()
            }),
            command: strings(&["/bin/sh", "-c"]),
            args: strings(&["exec nginx"]),
            working_dir: "/srv".into(),
            envs: vec![kv("B", "2"), kv("A", "1"), kv("B", "3")],
            mounts: vec![
                v1::Mount {
                    container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                    host_path: "/var/lib/kubelet/pods/uid/volumes/token".into(),
                    readonly: true,
                    selinux_relabel: true,
                    propagation: v1::MountPropagation::PropagationPrivate as i32,
                    ..Default::default()
                },
                v1::Mount {
                    container_path: "/dev/termination-log".into(),
                    host_path: "/var/lib/kubelet/pods/uid/containers/app/abc".into(),
                    propagation: v1::MountPropagation::PropagationHostToContainer as i32,
                    ..Default::default()
                },
                v1::Mount {
                    container_path: "/mnt/shared".into(),
                    host_path: "/mnt/shared".into(),
                    propagation: v1::MountPropagation::PropagationBidirectional as i32,
                    ..Default::default()
                },
            ],
            devices: vec![v1::Device {
                container_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rwm".into(),
            }],
            labels: map(&[
                ("io.kubernetes.container.name", "app"),
                ("io.kubernetes.pod.name", "web"),
            ]),
            annotations: map(&[("io.kubernetes.container.hash", "abc")]),
            log_path: "app/2.log".into(),
            stdin: true,
            stdin_once: true,
            tty: true,
            linux: Some(v1::LinuxContainerConfig {
                resources: Some(v1::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 256 << 20,
                    oom_score_adj: 999,
                    cpuset_cpus: "0-1".into(),
                    cpuset_mems: "0".into(),
                    hugepage_limits: vec![v1::HugepageLimit {
                        page_size: "2MB".into(),
                        limit: 1 << 30,
                    }],
                    unified: map(&[("memory.high", "200000000")]),
                    memory_swap_limit_in_bytes: 256 << 20,
                }),
                security_context: Some(v1::LinuxContainerSecurityContext {
                    capabilities: Some(v1::Capability {
                        add_capabilities: strings(&["NET_ADMIN"]),
                        drop_capabilities: strings(&["ALL"]),
                        add_ambient_capabilities: vec![],
                    }),
                    privileged: false,
                    namespace_options: Some(v1::NamespaceOption {
                        network: v1::NamespaceMode::Pod as i32,
                        pid: v1::NamespaceMode::Target as i32,
                        ipc: v1::NamespaceMode::Node as i32,
                        target_id: "0123abcd".into(),
                        userns_options: None,
                    }),
                    run_as_user: Some(v1::Int64Value { value: 1000 }),
                    run_as_group: Some(v1::Int64Value { value: 3000 }),
                    run_as_username: "nginx".into(),
                    readonly_rootfs: true,
                    supplemental_groups: vec![2000, 4000],
                    no_new_privs: true,
                    masked_paths: strings(MASKED),
                    readonly_paths: strings(READONLY),
                    seccomp: Some(v1::SecurityProfile {
                        profile_type: v1::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: "/var/lib/kubelet/seccomp/audit.json".into(),
                    }),
                    apparmor: Some(v1::SecurityProfile {
                        profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    // The structured fields win over these.
                    seccomp_profile_path: "unconfined".into(),
                    apparmor_profile: "unconfined".into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubelet_config_translates_field_by_field() {
        let r = container_request(Some(kubelet_config())).expect("translates");
        assert_eq!(r.name, "app");
        assert_eq!(r.attempt, 2);
        assert_eq!(r.image, "sha256:0123");
        assert_eq!(r.command, strings(&["/bin/sh", "-c"]));
        assert_eq!(r.args, strings(&["exec nginx"]));
        assert_eq!(r.working_dir, "/srv");
        assert_eq!(
            r.envs,
            vec![
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "3".to_string()),
            ]
        );
        assert_eq!(
            r.mounts,
            vec![
                Mount {
                    container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                    host_path: "/var/lib/kubelet/pods/uid/volumes/token".into(),
                    readonly: true,
                    propagation: Propagation::Private,
                    selinux_relabel: true,
                    ..Default::default()
                },
                Mount {
                    container_path: "/dev/termination-log".into(),
                    host_path: "/var/lib/kubelet/pods/uid/containers/app/abc".into(),
                    readonly: false,
                    propagation: Propagation::HostToContainer,
                    selinux_relabel: false,
                    ..Default::default()
                },
                Mount {
                    container_path: "/mnt/shared".into(),
                    host_path: "/mnt/shared".into(),
                    readonly: false,
                    propagation: Propagation::Bidirectional,
                    selinux_relabel: false,
                    ..Default::default()
                },
            ]
        );
        assert_eq!(
            r.devices,
            vec![Device {
                container_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rwm".into(),
            }]
        );
        assert_eq!(
            r.labels,
            bmap(&[
                ("io.kubernetes.container.name", "app"),
                ("io.kubernetes.pod.name", "web"),
            ])
        );
        assert_eq!(
            r.annotations,
            bmap(&[("io.kubernetes.container.hash", "abc")])
        );
        assert_eq!(r.log_path, "app/2.log");
        assert!(r.stdin && r.stdin_once && r.tty);
        assert_eq!(
            r.linux.resources,
            Some(ContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 256 << 20,
                oom_score_adj: 999,
                cpuset_cpus: "0-1".into(),
                cpuset_mems: "0".into(),
                hugepage_limits: vec![("2MB".to_string(), 1 << 30)],
                unified: bmap(&[("memory.high", "200000000")]),
                memory_swap_limit_in_bytes: 256 << 20,
            })
        );
        assert_eq!(
            r.linux.security,
            SecurityContext {
                capabilities: CapabilityChanges {
                    add: strings(&["NET_ADMIN"]),
                    drop: strings(&["ALL"]),
                },
                privileged: false,
                namespace_options: ContainerNamespaces {
                    network: NamespaceMode::Pod,
                    pid: NamespaceMode::Target,
                    ipc: NamespaceMode::Node,
                    target_id: "0123abcd".into(),
                },
                run_as_user: Some(1000),
                run_as_username: "nginx".into(),
                run_as_group: Some(3000),
                supplemental_groups: vec![2000, 4000],
                readonly_rootfs: true,
                no_new_privs: true,
                masked_paths: Some(strings(MASKED)),
                readonly_paths: Some(strings(READONLY)),
                seccomp: Some(SecurityProfile::Localhost(
                    "/var/lib/kubelet/seccomp/audit.json".into()
                )),
                apparmor: Some(SecurityProfile::RuntimeDefault),
                user_namespace: None,
                userns_ids: Default::default(),
                strict_supplemental_groups: false,
            }
        );
    }

    #[test]
    fn resources_go_back_to_cri_unchanged() {
        let r = ContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 2,
            memory_limit_in_bytes: 1 << 30,
            oom_score_adj: 1000,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![("2MB".into(), 0)],
            unified: bmap(&[("memory.high", "1")]),
            memory_swap_limit_in_bytes: 1 << 31,
        };
        assert_eq!(resources(&cri_resources(&r)), r);
    }

    #[test]
    fn features_crius_lacks_reach_the_core_to_be_judged() {
        let r = container_request(Some(v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            mounts: vec![v1::Mount {
                container_path: "/img".into(),
                recursive_read_only: true,
                image: Some(v1::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                gid_mappings: vec![v1::IdMapping {
                    host_id: 1000,
                    container_id: 0,
                    length: 1,
                }],
                ..Default::default()
            }],
            cdi_devices: vec![v1::CdiDevice {
                name: "vendor.com/gpu=0".into(),
            }],
            linux: Some(v1::LinuxContainerConfig {
                security_context: Some(v1::LinuxContainerSecurityContext {
                    namespace_options: Some(v1::NamespaceOption {
                        userns_options: Some(v1::UserNamespace {
                            mode: v1::NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .expect("translates");
        let m = &r.mounts[0];
        assert!(m.recursive_read_only && m.id_mappings.gids.len() == 1 && m.image == "busybox");
        assert_eq!(r.cdi_devices, ["vendor.com/gpu=0"]);
        assert_eq!(r.linux.security.user_namespace, Some(NamespaceMode::Pod));
        assert!(r.linux.security.strict_supplemental_groups);
        // Each is then refused by the core, naming its field.
        assert!(matches!(
            crius_core::container::validate(&r),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn minimal_config_gives_defaults() {
        let r = container_request(Some(v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .expect("translates");
        assert_eq!(
            r,
            ContainerRequest {
                name: "c".into(),
                image: "busybox".into(),
                ..Default::default()
            }
        );
        // No resources message: none, not zeroes.
        assert_eq!(r.linux.resources, None);
        // Empty lists (what CRI sends when unset): crius' defaults.
        assert_eq!(r.linux.security.masked_paths, None);
        assert_eq!(r.linux.security.readonly_paths, None);
        assert_eq!(r.linux.security.seccomp, None);
        assert_eq!(r.linux.security.apparmor, None);
    }

    #[test]
    fn resources_translates_and_unified_is_sorted() {
        let r = resources(&v1::LinuxContainerResources {
            cpu_quota: -1,
            memory_swap_limit_in_bytes: -1,
            hugepage_limits: vec![
                v1::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
                v1::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 4 << 20,
                },
            ],
            unified: map(&[("pids.max", "100"), ("memory.high", "max")]),
            ..Default::default()
        });
        assert_eq!(r.cpu_quota, -1);
        assert_eq!(r.memory_swap_limit_in_bytes, -1);
        assert_eq!(
            r.hugepage_limits,
            vec![("1GB".to_string(), 0), ("2MB".to_string(), 4 << 20)]
        );
        assert_eq!(
            r.unified,
            bmap(&[("memory.high", "max"), ("pids.max", "100")])
        );
    }

    #[test]
    fn missing_config_metadata_or_image_is_refused() {
        assert_eq!(invalid_field(container_request(None)), "config");
        let mut c = kubelet_config();
        c.metadata = None;
        assert_eq!(invalid_field(container_request(Some(c))), "config.metadata");
        let mut c = kubelet_config();
        c.image = None;
        assert_eq!(invalid_field(container_request(Some(c))), "config.image");
    }

    fn with_sc(f: impl FnOnce(&mut v1::LinuxContainerSecurityContext)) -> v1::ContainerConfig {
        let mut c = kubelet_config();
        let sc = c
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .expect("has a security context");
        f(sc);
        c
    }

    #[test]
    fn unknown_enum_values_are_read_as_containerd_reads_them() {
        // Safe readings: the most isolated one.
        let mut c = kubelet_config();
        c.mounts[2].propagation = 7;
        let r = container_request(Some(c)).expect("unknown propagation accepted");
        assert_eq!(r.mounts[2].propagation, Propagation::Private);
        let r = container_request(Some(with_sc(|sc| {
            let ns = sc.namespace_options.get_or_insert_default();
            (ns.network, ns.pid, ns.ipc) = (9, -1, 4);
        })))
        .expect("unknown namespace modes accepted");
        let ns = &r.linux.security.namespace_options;
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod)
        );
        // No safe reading: refused, naming the field.
        type Case = (&'static str, fn(&mut v1::LinuxContainerSecurityContext));
        let cases: [Case; 4] = [
            ("config.linux.security_context.seccomp.profile_type", |sc| {
                sc.seccomp.get_or_insert_default().profile_type = 3
            }),
            (
                "config.linux.security_context.apparmor.profile_type",
                |sc| sc.apparmor.get_or_insert_default().profile_type = 42,
            ),
            (
                "config.linux.security_context.supplemental_groups_policy",
                |sc| sc.supplemental_groups_policy = 5,
            ),
            (
                "config.linux.security_context.namespace_options.userns_options.mode",
                |sc| {
                    sc.namespace_options
                        .get_or_insert_default()
                        .userns_options
                        .get_or_insert_default()
                        .mode = 8
                },
            ),
        ];
        for (field, f) in cases {
            assert_eq!(invalid_field(container_request(Some(with_sc(f)))), field);
        }
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_profile_strings_map() {
        let seccomp = |s: &str| {
            container_request(Some(with_sc(|sc| {
                sc.seccomp = None;
                sc.seccomp_profile_path = s.into();
            })))
            .map(|r| r.linux.security.seccomp)
        };
        let apparmor = |s: &str| {
            container_request(Some(with_sc(|sc| {
                sc.apparmor = None;
                sc.apparmor_profile = s.into();
            })))
            .map(|r| r.linux.security.apparmor)
        };
        for (value, want) in [
            ("", None),
            ("runtime/default", Some(SecurityProfile::RuntimeDefault)),
            ("docker/default", Some(SecurityProfile::RuntimeDefault)),
            ("unconfined", Some(SecurityProfile::Unconfined)),
            (
                "localhost//var/lib/kubelet/seccomp/audit.json",
                Some(SecurityProfile::Localhost(
                    "/var/lib/kubelet/seccomp/audit.json".into(),
                )),
            ),
        ] {
            assert_eq!(seccomp(value).expect(value), want, "seccomp {value:?}");
        }
        for (value, want) in [
            ("", None),
            ("runtime/default", Some(SecurityProfile::RuntimeDefault)),
            ("docker/default", Some(SecurityProfile::RuntimeDefault)),
            ("unconfined", Some(SecurityProfile::Unconfined)),
            (
                "localhost/k8s-nginx",
                Some(SecurityProfile::Localhost("k8s-nginx".into())),
            ),
        ] {
            assert_eq!(apparmor(value).expect(value), want, "apparmor {value:?}");
        }
        for (what, field) in [
            (
                seccomp("bogus"),
                "config.linux.security_context.seccomp_profile_path",
            ),
            (
                apparmor("docker/bogus"),
                "config.linux.security_context.apparmor_profile",
            ),
        ] {
            match what {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidArgument for {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn structured_localhost_refs_lose_a_localhost_prefix() {
        let r = container_request(Some(with_sc(|sc| {
            sc.seccomp = Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "localhost//var/lib/kubelet/seccomp/a.json".into(),
            });
            sc.apparmor = Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "localhost/k8s-nginx".into(),
            });
        })))
        .expect("translates");
        assert_eq!(
            r.linux.security.seccomp,
            Some(SecurityProfile::Localhost(
                "/var/lib/kubelet/seccomp/a.json".into()
            ))
        );
        assert_eq!(
            r.linux.security.apparmor,
            Some(SecurityProfile::Localhost("k8s-nginx".into()))
        );
    }

    #[test]
    #[allow(deprecated)]
    fn structured_profile_wins_over_deprecated_string() {
        // Even a deprecated string crius does not know is not looked at.
        let r = container_request(Some(with_sc(|sc| {
            sc.seccomp_profile_path = "bogus".into();
            sc.apparmor_profile = "bogus".into();
        })))
        .expect("translates");
        assert_eq!(
            r.linux.security.seccomp,
            Some(SecurityProfile::Localhost(
                "/var/lib/kubelet/seccomp/audit.json".into()
            ))
        );
        assert_eq!(
            r.linux.security.apparmor,
            Some(SecurityProfile::RuntimeDefault)
        );
    }
}
