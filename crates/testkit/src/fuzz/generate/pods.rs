//! Pod sandbox requests.

use std::collections::HashMap;

use crius_cri_api::v1::{self, NamespaceMode, security_profile::ProfileType};

use super::super::bad;
use super::{Ctx, Mutator, resources};

/// The namespace every fuzzer pod is in.
pub const NAMESPACE: &str = "crius-fuzz";

/// RunPodSandbox of a new pod (or, one time in ten, of one of a few names
/// every worker uses at once: concurrent duplicates).
pub fn run(cx: &mut Ctx<'_>) -> v1::RunPodSandboxRequest {
    let dup = cx.g.chance(0.1).then(|| cx.g.below(2));
    let mut q = v1::RunPodSandboxRequest {
        config: Some(config(cx, dup)),
        runtime_handler: cx.s.runtime_handler.clone(),
    };
    cx.mutate(&mut q, RUN_MUTATORS);
    q
}

/// A pod config as kubelet makes one; its log directory is made first.
fn config(cx: &mut Ctx<'_>, dup: Option<usize>) -> v1::PodSandboxConfig {
    let (name, uid) = match dup {
        Some(k) => (format!("fz-dup-{k}"), format!("fuzz-{}-dup-{k}", cx.s.seed)),
        None => (
            format!("fz{}-{}", cx.worker, cx.index),
            format!("fuzz-{}-{}-{}", cx.s.seed, cx.worker, cx.index),
        ),
    };
    let log_dir = format!("{}/logs/{NAMESPACE}_{name}_{uid}", cx.scratch());
    cx.mkdirs.push(log_dir.clone());
    let cgroup_parent = match (cx.s.cgroup_parent.as_str(), dup) {
        ("", _) => String::new(),
        (cg, Some(k)) => format!("{cg}/dup{k}"),
        (cg, None) => format!("{cg}/fz{}x{}", cx.worker, cx.index),
    };
    let mut c = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.clone(),
            uid,
            namespace: NAMESPACE.into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: log_dir,
        labels: HashMap::from([("io.kubernetes.pod.name".to_owned(), name)]),
        annotations: HashMap::from([("crius.fuzz/seed".to_owned(), cx.s.seed.to_string())]),
        linux: Some(linux(cx, cgroup_parent, dup.is_none())),
        ..Default::default()
    };
    if dup.is_none() {
        extras(cx, &mut c);
    }
    c
}

/// The Linux part; `varied`: with random choices (duplicates have none, so
/// that every worker sends the same config).
fn linux(cx: &mut Ctx<'_>, cgroup_parent: String, varied: bool) -> v1::LinuxPodSandboxConfig {
    let host_net = varied && cx.g.chance(0.05);
    let privileged = varied && cx.g.chance(0.05);
    // A pod in a user namespace, as kubelet asks for one.
    let userns = (varied && !host_net && cx.g.chance(0.1)).then(|| {
        let m = vec![v1::IdMapping {
            container_id: 0,
            host_id: 3_200_000,
            length: 65536,
        }];
        v1::UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: m.clone(),
            gids: m,
        }
    });
    let seccomp = if varied {
        cx.g.pick(&[ProfileType::Unconfined, ProfileType::RuntimeDefault])
    } else {
        ProfileType::RuntimeDefault
    };
    v1::LinuxPodSandboxConfig {
        cgroup_parent,
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                network: if host_net {
                    NamespaceMode::Node
                } else {
                    NamespaceMode::Pod
                } as i32,
                pid: NamespaceMode::Container as i32,
                ipc: NamespaceMode::Pod as i32,
                userns_options: userns,
                ..Default::default()
            }),
            privileged,
            seccomp: Some(v1::SecurityProfile {
                profile_type: seccomp as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        sysctls: if varied && !host_net && cx.g.chance(0.1) {
            HashMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())])
        } else {
            HashMap::new()
        },
        ..Default::default()
    }
}

/// Optional parts: DNS, a port, pod-level resources, more labels.
fn extras(cx: &mut Ctx<'_>, c: &mut v1::PodSandboxConfig) {
    if cx.g.chance(0.3) {
        c.dns_config = Some(v1::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["crius-fuzz.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
    }
    if cx.g.chance(0.1) {
        c.port_mappings = vec![v1::PortMapping {
            protocol: v1::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 0,
            host_ip: String::new(),
        }];
    }
    if cx.g.chance(0.2)
        && let Some(l) = c.linux.as_mut()
    {
        l.resources = Some(resources::valid(cx));
    }
    for i in 0..cx.g.below(4) {
        c.labels.insert(format!("fuzz/l{i}"), cx.g.hex(8));
    }
}

fn cfg(q: &mut v1::RunPodSandboxRequest) -> &mut v1::PodSandboxConfig {
    q.config.get_or_insert_with(Default::default)
}

fn meta(q: &mut v1::RunPodSandboxRequest) -> &mut v1::PodSandboxMetadata {
    cfg(q).metadata.get_or_insert_with(Default::default)
}

fn linux_of(q: &mut v1::RunPodSandboxRequest) -> &mut v1::LinuxPodSandboxConfig {
    cfg(q).linux.get_or_insert_with(Default::default)
}

fn sc(q: &mut v1::RunPodSandboxRequest) -> &mut v1::LinuxSandboxSecurityContext {
    linux_of(q)
        .security_context
        .get_or_insert_with(Default::default)
}

fn string_into(field: &mut String, cx: &mut Ctx<'_>) -> String {
    let b = bad::string(&mut cx.g);
    *field = b.value;
    b.what
}

const RUN_MUTATORS: &[(&str, Mutator<v1::RunPodSandboxRequest>)] = &[
    ("metadata.name", |q, cx| string_into(&mut meta(q).name, cx)),
    ("metadata.uid", |q, cx| string_into(&mut meta(q).uid, cx)),
    ("metadata.namespace", |q, cx| {
        string_into(&mut meta(q).namespace, cx)
    }),
    ("metadata", |q, _| {
        cfg(q).metadata = None;
        "missing".into()
    }),
    ("hostname", |q, cx| string_into(&mut cfg(q).hostname, cx)),
    ("log_directory", |q, cx| {
        let base = format!("{}/logs", cx.scratch());
        let b = bad::path(&mut cx.g, &base);
        cfg(q).log_directory = b.value;
        b.what
    }),
    ("labels", |q, cx| {
        super::other::bad_map(&mut cfg(q).labels, cx)
    }),
    ("annotations", |q, cx| {
        super::other::bad_map(&mut cfg(q).annotations, cx)
    }),
    ("dns_config", |q, cx| bad_dns(cfg(q), cx)),
    ("port_mappings", |q, cx| bad_ports(cfg(q), cx)),
    ("linux.cgroup_parent", |q, cx| {
        bad_cgroup_parent(linux_of(q), cx)
    }),
    ("linux.sysctls", |q, cx| bad_sysctls(linux_of(q), cx)),
    ("linux.security_context.namespace_options", |q, cx| {
        bad_namespaces(
            sc(q).namespace_options.get_or_insert_with(Default::default),
            cx,
        )
    }),
    ("linux.security_context", |q, cx| {
        bad_sandbox_security(sc(q), cx)
    }),
    ("linux.resources", |q, cx| {
        resources::spoil(
            linux_of(q).resources.get_or_insert_with(Default::default),
            cx,
        )
    }),
    ("linux.overhead", |q, cx| {
        resources::spoil(
            linux_of(q).overhead.get_or_insert_with(Default::default),
            cx,
        )
    }),
    ("linux", |q, _| {
        cfg(q).linux = None;
        "missing".into()
    }),
    ("runtime_handler", |q, cx| {
        if cx.g.chance(0.5) {
            q.runtime_handler = "no-such-handler".into();
            return "unknown handler".into();
        }
        string_into(&mut q.runtime_handler, cx)
    }),
    ("config", |q, _| {
        q.config = None;
        "missing".into()
    }),
    ("windows", |q, _| {
        cfg(q).windows = Some(Default::default());
        "a Windows config on Linux".into()
    }),
];

/// Where malformed cgroup parents point (below the root of each hierarchy,
/// or a sibling `crius-fuzz-…`), for the cleanup to find.
pub const CGROUP: &str = "crius-fuzz";

fn bad_cgroup_parent(l: &mut v1::LinuxPodSandboxConfig, cx: &mut Ctx<'_>) -> String {
    let (v, what) = match cx.g.below(8) {
        0 => (format!("{CGROUP}-relative"), "relative".to_owned()),
        1 => (
            format!("/{CGROUP}/a/../../{CGROUP}-escape"),
            "traversal".to_owned(),
        ),
        2 => (
            format!("/{CGROUP}/{}", "d".repeat(300)),
            "300-character name".to_owned(),
        ),
        3 => (
            format!("/{CGROUP}/{}", "abc/".repeat(1200)),
            "4800-character path".to_owned(),
        ),
        4 => (format!("/{CGROUP}/a\0b"), "NUL".to_owned()),
        5 => (format!("/{CGROUP}/a\nb"), "line break".to_owned()),
        6 => (
            format!("{CGROUP}.slice:crio:x"),
            "systemd form under cgroupfs".to_owned(),
        ),
        _ => (format!("/{CGROUP}/ünï/名前"), "unicode".to_owned()),
    };
    l.cgroup_parent = v;
    what
}

fn bad_dns(c: &mut v1::PodSandboxConfig, cx: &mut Ctx<'_>) -> String {
    let d = c.dns_config.get_or_insert_with(Default::default);
    match cx.g.below(4) {
        0 => {
            let b = bad::string(&mut cx.g);
            d.servers = vec![b.value];
            format!("servers {}", b.what)
        }
        1 => {
            d.searches = (0..1000).map(|i| format!("s{i}.example")).collect();
            "1000 searches".into()
        }
        2 => {
            let b = bad::string(&mut cx.g);
            d.options = vec![b.value];
            format!("options {}", b.what)
        }
        _ => {
            d.servers = vec!["not-an-ip".into(), "999.1.1.1".into()];
            "servers not IPs".into()
        }
    }
}

fn bad_ports(c: &mut v1::PodSandboxConfig, cx: &mut Ctx<'_>) -> String {
    let p = v1::PortMapping {
        protocol: cx.g.pick(&[0, 1, 2, 99, -1]),
        container_port: cx.g.pick(&[-1, 0, 80, 70_000, i32::MAX]),
        host_port: cx.g.pick(&[-5, 0, 70_000, i32::MIN]),
        host_ip: cx.g.pick(&["", "garbage", "::1", "300.1.1.1"]).into(),
    };
    let what = format!(
        "protocol {} container_port {} host_port {} host_ip {:?}",
        p.protocol, p.container_port, p.host_port, p.host_ip
    );
    c.port_mappings = vec![p];
    what
}

fn bad_sysctls(l: &mut v1::LinuxPodSandboxConfig, cx: &mut Ctx<'_>) -> String {
    let (k, v) = cx.g.pick(&[
        ("kernel.nope", "1"),
        ("net.ipv4.ip_forward", "abc"),
        ("../../../proc/sys/kernel/hostname", "x"),
        ("vm.swappiness", "1"),
        ("net.core.somaxconn", "1000000000000"),
        ("", ""),
        ("kernel.shm_rmid_forced", "1\n2"),
        ("net/ipv4/ip_forward", "1"),
    ]);
    l.sysctls = HashMap::from([(k.to_owned(), v.to_owned())]);
    format!("{k:?}={v:?}")
}

/// Bad namespace options (shared with containers' security contexts).
pub fn bad_namespaces(n: &mut v1::NamespaceOption, cx: &mut Ctx<'_>) -> String {
    match cx.g.below(4) {
        0 => {
            n.pid = 99;
            "pid mode 99".into()
        }
        1 => {
            n.network = -1;
            "network mode -1".into()
        }
        2 => {
            n.pid = 3; // TARGET
            n.target_id = cx.bad_id().value;
            "pid TARGET with a bad target id".into()
        }
        _ => {
            n.userns_options = Some(v1::UserNamespace {
                mode: 1, // POD
                uids: vec![v1::IdMapping {
                    host_id: 0,
                    container_id: 0,
                    length: u32::MAX,
                }],
                gids: vec![],
            });
            "user namespace POD, a mapping of 2^32-1 ids".into()
        }
    }
}

fn bad_sandbox_security(s: &mut v1::LinuxSandboxSecurityContext, cx: &mut Ctx<'_>) -> String {
    match cx.g.below(6) {
        0 => {
            s.run_as_user = Some(v1::Int64Value { value: -1 });
            "run_as_user -1".into()
        }
        1 => {
            s.supplemental_groups = vec![-1, i64::MAX];
            "supplemental_groups -1, i64::MAX".into()
        }
        2 => {
            s.seccomp = Some(v1::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "../../../../etc/passwd".into(),
            });
            "seccomp localhost ../../../../etc/passwd".into()
        }
        3 => {
            s.seccomp = Some(v1::SecurityProfile {
                profile_type: 99,
                localhost_ref: String::new(),
            });
            "seccomp profile type 99".into()
        }
        4 => {
            s.apparmor = Some(v1::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "no-such-profile".into(),
            });
            "apparmor localhost no-such-profile".into()
        }
        _ => {
            s.selinux_options = Some(v1::SeLinuxOption {
                user: "\0".into(),
                role: "a:b".into(),
                r#type: "../x".into(),
                level: bad::huge(&mut cx.g).value,
            });
            "selinux options NUL, colon, traversal, huge".into()
        }
    }
}

/// StopPodSandbox.
pub fn stop(cx: &mut Ctx<'_>) -> v1::StopPodSandboxRequest {
    let mut q = v1::StopPodSandboxRequest {
        pod_sandbox_id: cx.pod_id(),
    };
    cx.mutate(
        &mut q,
        &[("pod_sandbox_id", |q, cx| {
            bad_pod_id(&mut q.pod_sandbox_id, cx)
        })],
    );
    q
}

/// RemovePodSandbox: the worker's oldest pod, mostly.
pub fn remove(cx: &mut Ctx<'_>) -> v1::RemovePodSandboxRequest {
    let id = match cx.state.pods.first() {
        Some(p) if cx.g.chance(0.5) => {
            cx.note_target(&p.id);
            p.id.clone()
        }
        _ => cx.pod_id(),
    };
    let mut q = v1::RemovePodSandboxRequest { pod_sandbox_id: id };
    cx.mutate(
        &mut q,
        &[("pod_sandbox_id", |q, cx| {
            bad_pod_id(&mut q.pod_sandbox_id, cx)
        })],
    );
    q
}

fn bad_pod_id(field: &mut String, cx: &mut Ctx<'_>) -> String {
    let b = cx.bad_id();
    *field = b.value;
    b.what
}

/// PodSandboxStatus.
pub fn status(cx: &mut Ctx<'_>) -> v1::PodSandboxStatusRequest {
    let mut q = v1::PodSandboxStatusRequest {
        pod_sandbox_id: cx.pod_id(),
        verbose: cx.g.chance(0.5),
    };
    cx.mutate(
        &mut q,
        &[("pod_sandbox_id", |q, cx| {
            bad_pod_id(&mut q.pod_sandbox_id, cx)
        })],
    );
    q
}

/// ListPodSandbox, sometimes filtered.
pub fn list(cx: &mut Ctx<'_>) -> v1::ListPodSandboxRequest {
    let filter = cx.g.chance(0.5).then(|| v1::PodSandboxFilter {
        id: if cx.g.chance(0.3) {
            cx.pod_id()
        } else {
            String::new()
        },
        state: cx.g.chance(0.3).then(|| v1::PodSandboxStateValue {
            state: cx.g.below(2) as i32,
        }),
        label_selector: HashMap::from([("io.kubernetes.pod.name".into(), "fz0-1".into())]),
    });
    let mut q = v1::ListPodSandboxRequest { filter };
    cx.mutate(
        &mut q,
        &[
            ("filter.state", |q, _| {
                q.filter.get_or_insert_with(Default::default).state =
                    Some(v1::PodSandboxStateValue { state: 99 });
                "state 99".into()
            }),
            ("filter.label_selector", |q, cx| {
                super::other::bad_map(
                    &mut q.filter.get_or_insert_with(Default::default).label_selector,
                    cx,
                )
            }),
            ("filter.id", |q, cx| {
                bad_pod_id(&mut q.filter.get_or_insert_with(Default::default).id, cx)
            }),
        ],
    );
    q
}

/// PodSandboxStats.
pub fn stats(cx: &mut Ctx<'_>) -> v1::PodSandboxStatsRequest {
    let mut q = v1::PodSandboxStatsRequest {
        pod_sandbox_id: cx.pod_id(),
    };
    cx.mutate(
        &mut q,
        &[("pod_sandbox_id", |q, cx| {
            bad_pod_id(&mut q.pod_sandbox_id, cx)
        })],
    );
    q
}

/// UpdatePodSandboxResources: a pod's new totals (as kubelet sends them
/// after a resize) and its overhead.
pub fn update_resources(cx: &mut Ctx<'_>) -> v1::UpdatePodSandboxResourcesRequest {
    let mut q = v1::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: cx.pod_id(),
        overhead: cx.g.chance(0.3).then(|| super::resources::valid(cx)),
        resources: Some(super::resources::valid(cx)),
    };
    cx.mutate(
        &mut q,
        &[
            ("pod_sandbox_id", |q, cx| {
                bad_pod_id(&mut q.pod_sandbox_id, cx)
            }),
            ("resources", |q, cx| {
                super::resources::spoil(q.resources.get_or_insert_with(Default::default), cx)
            }),
        ],
    );
    q
}

/// ListPodSandboxStats, sometimes filtered.
pub fn list_stats(cx: &mut Ctx<'_>) -> v1::ListPodSandboxStatsRequest {
    let filter = cx.g.chance(0.5).then(|| v1::PodSandboxStatsFilter {
        id: cx.pod_id(),
        label_selector: HashMap::new(),
    });
    let mut q = v1::ListPodSandboxStatsRequest { filter };
    cx.mutate(
        &mut q,
        &[
            ("filter.id", |q, cx| {
                bad_pod_id(&mut q.filter.get_or_insert_with(Default::default).id, cx)
            }),
            ("filter.label_selector", |q, cx| {
                super::other::bad_map(
                    &mut q.filter.get_or_insert_with(Default::default).label_selector,
                    cx,
                )
            }),
        ],
    );
    q
}

/// PortForward (the URL only).
pub fn port_forward(cx: &mut Ctx<'_>) -> v1::PortForwardRequest {
    let mut q = v1::PortForwardRequest {
        pod_sandbox_id: cx.pod_id(),
        port: vec![cx.g.pick(&[80, 8080, 443])],
    };
    cx.mutate(
        &mut q,
        &[
            ("pod_sandbox_id", |q, cx| {
                bad_pod_id(&mut q.pod_sandbox_id, cx)
            }),
            ("port", |q, cx| {
                q.port = vec![cx.g.pick(&[-1, 0, 65_536, i32::MAX, i32::MIN])];
                format!("port {}", q.port[0])
            }),
            ("port", |q, _| {
                q.port = (0..10_000).collect();
                "10000 ports".into()
            }),
        ],
    );
    q
}
