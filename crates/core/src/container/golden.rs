//! Golden tests of the container spec: four representative requests, their
//! specs serialized (pretty JSON, keys and capability sets sorted, by the
//! sandbox golden tests' helpers) and compared with `testdata/<case>.json`.
//! The `RuntimeDefault` seccomp profile is long: it has its own golden file
//! (`testdata/seccomp_runtime_default.json`) and the spec's file shows a
//! placeholder instead (that file is compared on x86_64 only).
//!
//! After an intended change, regenerate the files and review the diff:
//! `CRIUS_BLESS=1 cargo test -p crius-core container::golden`.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::Spec;
use serde_json::Value;

use super::{
    CapabilityChanges, ContainerNamespaces, ContainerProcess, ContainerRequest, ContainerResources,
    ContainerSpecInput, Device, HostDevice, HostDeviceKind, HostFacts, HostPath, HostPropagation,
    ImageConfig, Mount, NamespaceMode, PodFiles, PodNamespaces, Propagation, SecurityContext,
    SecurityProfile, User, capabilities_from_mask, container_spec, image_process, resolve_user,
    seccomp,
};
use crate::cgroup::CgroupDriver;
use crate::sandbox::golden::{canonicalize, compare};
use crate::sandbox::{LinuxSandbox, NamespaceOptions, PodSandboxRequest};

const ID: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const SANDBOX_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "8d3c6a0e-5b7f-4c1d-9e2a-3f4b5c6d7e8f";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                      www-data:x:33:33:www-data:/var/www:/bin/false\n\
                      nobody:x:65534:65534:nobody:/home:/bin/false\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:root\nwww-data:x:33:\nnogroup:x:65534:\n";

/// busybox as docker.io/library/busybox:1.36 describes itself.
fn busybox() -> ImageConfig {
    ImageConfig {
        cmd: vec!["sh".into()],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        ..Default::default()
    }
}

fn pod() -> PodSandboxRequest {
    PodSandboxRequest {
        name: "web-0".into(),
        uid: UID.into(),
        namespace: "default".into(),
        hostname: "web-0".into(),
        log_directory: format!("/var/log/pods/default_web-0_{UID}"),
        linux: LinuxSandbox {
            cgroup_parent: format!("/kubepods/besteffort/pod{UID}"),
            namespaces: NamespaceOptions {
                pid: NamespaceMode::Container,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn request() -> ContainerRequest {
    ContainerRequest {
        name: "app".into(),
        image: "docker.io/library/busybox:1.36".into(),
        envs: vec![("GREETING".into(), "hello".into())],
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        log_path: "app/0.log".into(),
        linux: super::LinuxContainer {
            resources: Some(ContainerResources {
                cpu_shares: 2,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security: SecurityContext {
                namespace_options: ContainerNamespaces {
                    pid: NamespaceMode::Container,
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

/// This machine: cgroup v1 without hugetlb, with swap accounting
/// (`memory.memsw.*`), no AppArmor, CAP_SYS_RESOURCE missing.
fn host(daemon_oom_score_adj: i32) -> HostFacts {
    HostFacts {
        daemon_oom_score_adj,
        capabilities: capabilities_from_mask(0x0000_01ff_feff_ffff),
        cgroup_controllers: ["cpu", "cpuacct", "cpuset", "memory", "devices", "pids"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>(),
        memory_swap: true,
        cgroup_unified: false,
        apparmor: crate::apparmor::Mode::Disabled,
        kernel_version: Some((6, 1)),
    }
}

fn files(shm: bool) -> PodFiles {
    let dir = format!("/run/crius/sandboxes/{SANDBOX_ID}");
    PodFiles {
        hostname: Some(format!("{dir}/hostname")),
        hosts: format!("{dir}/hosts"),
        resolv_conf: format!("{dir}/resolv.conf"),
        shm: shm.then(|| format!("{dir}/shm")),
    }
}

fn process(image: &ImageConfig, req: &ContainerRequest) -> (ContainerProcess, User) {
    let process = image_process(image, req).expect("image process");
    let user = resolve_user(req, &image.user, Some(PASSWD), Some(GROUP)).expect("user");
    (process, user)
}

fn input<'a>(
    req: &'a ContainerRequest,
    sandbox: &'a PodSandboxRequest,
    image: &ImageConfig,
    host: &'a HostFacts,
) -> ContainerSpecInput<'a> {
    let (process, user) = process(image, req);
    ContainerSpecInput {
        id: ID.into(),
        sandbox_id: SANDBOX_ID.into(),
        request: req,
        sandbox,
        pod_namespaces: PodNamespaces::Pause(4242),
        netns_path: Some("/var/run/netns/cni-4f1b2c3d-0000-4000-8000-000000000001".into()),
        target_pid: None,
        process,
        user,
        hostname: sandbox.hostname.clone(),
        files: files(true),
        image_name: "docker.io/library/busybox:1.36".into(),
        cgroup_driver: CgroupDriver::Cgroupfs,
        host,
        host_devices: vec![],
        privileged_without_host_devices: false,
        device_nodes: BTreeMap::new(),
        host_paths: BTreeMap::new(),
        annotations: BTreeMap::new(),
        localhost_seccomp: None,
        apparmor_profiles: None,
        image_volumes: BTreeMap::new(),
    }
}

#[test]
fn default_busybox() {
    let (req, sandbox, host) = (request(), pod(), host(-999));
    check(
        "default_busybox",
        &spec(&input(&req, &sandbox, &busybox(), &host)),
    );
}

#[test]
fn readonly_user_caps() {
    let mut req = request();
    req.name = "web".into();
    req.command = vec!["/bin/httpd".into()];
    req.args = vec!["-f".into(), "-p".into(), "8080".into()];
    req.working_dir = "/var/www".into();
    let sc = &mut req.linux.security;
    sc.readonly_rootfs = true;
    sc.run_as_user = Some(33);
    sc.run_as_group = Some(3000);
    sc.supplemental_groups = vec![2000];
    sc.no_new_privs = true;
    sc.capabilities = CapabilityChanges {
        add: vec!["NET_BIND_SERVICE".into(), "sys_time".into()],
        drop: vec!["ALL".into()],
    };
    sc.apparmor = Some(SecurityProfile::RuntimeDefault);
    sc.seccomp = Some(SecurityProfile::Unconfined);
    sc.masked_paths = Some(vec!["/proc/kcore".into()]);
    req.linux.resources = Some(ContainerResources {
        cpu_shares: 102,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: -997,
        ..Default::default()
    });
    let sandbox = pod();
    let host = host(0);
    let image = ImageConfig {
        user: "nobody".into(),
        ..busybox()
    };
    check(
        "readonly_user_caps",
        &spec(&input(&req, &sandbox, &image, &host)),
    );
}

#[test]
fn privileged() {
    let mut sandbox = pod();
    sandbox.name = "kube-proxy-x7k2p".into();
    sandbox.namespace = "kube-system".into();
    sandbox.hostname = String::new();
    sandbox.linux.privileged = true;
    sandbox.linux.namespaces = NamespaceOptions {
        network: NamespaceMode::Node,
        pid: NamespaceMode::Node,
        ipc: NamespaceMode::Node,
    };
    let mut req = request();
    req.name = "kube-proxy".into();
    req.command = vec!["/usr/local/bin/kube-proxy".into()];
    req.linux.security.privileged = true;
    req.linux.security.namespace_options = ContainerNamespaces {
        network: NamespaceMode::Node,
        pid: NamespaceMode::Node,
        ipc: NamespaceMode::Node,
        target_id: String::new(),
    };
    // Ignored for privileged containers.
    req.linux.security.capabilities.drop = vec!["ALL".into()];
    req.linux.security.seccomp = Some(SecurityProfile::RuntimeDefault);
    req.devices = vec![Device {
        container_path: "/dev/gpu0".into(),
        host_path: "/dev/nvidia0".into(),
        permissions: "rw".into(),
    }];
    let host = host(-999);
    let mut i = input(&req, &sandbox, &busybox(), &host);
    i.netns_path = None;
    i.files = files(false);
    i.files.hostname = None;
    i.hostname = "node-1".into();
    let null = HostDevice {
        path: "/dev/null".into(),
        kind: HostDeviceKind::Char,
        major: 1,
        minor: 3,
        file_mode: 0o20666,
        uid: 0,
        gid: 0,
    };
    let gpu = HostDevice {
        path: "/dev/nvidia0".into(),
        kind: HostDeviceKind::Char,
        major: 195,
        minor: 0,
        file_mode: 0o660,
        uid: 0,
        gid: 44,
    };
    i.host_devices = vec![null, gpu.clone()];
    i.device_nodes = BTreeMap::from([("/dev/nvidia0".to_string(), vec![gpu])]);
    check("privileged", &spec(&i));
}

#[test]
fn resources_mounts_seccomp() {
    let mut sandbox = pod();
    sandbox.linux.cgroup_parent = format!("/kubepods/burstable/pod{UID}");
    let mut req = request();
    req.linux.resources = Some(ContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 << 20,
        oom_score_adj: 969,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        // No hugetlb controller here: dropped.
        hugepage_limits: vec![("2MB".into(), 0)],
        ..Default::default()
    });
    req.linux.security.seccomp = Some(SecurityProfile::RuntimeDefault);
    req.mounts = vec![
        Mount {
            container_path: "/data/cache".into(),
            host_path: "/srv/cache".into(),
            readonly: false,
            propagation: Propagation::Private,
            selinux_relabel: false,
            ..Default::default()
        },
        Mount {
            container_path: "/data".into(),
            host_path: "/var/lib/kubelet/pods/x/volumes/data".into(),
            readonly: true,
            propagation: Propagation::HostToContainer,
            selinux_relabel: false,
            ..Default::default()
        },
        Mount {
            container_path: "/var/lib/csi".into(),
            host_path: "/var/lib/kubelet/plugins".into(),
            readonly: false,
            propagation: Propagation::Bidirectional,
            selinux_relabel: false,
            ..Default::default()
        },
        Mount {
            container_path: "/etc/hosts".into(),
            host_path: "/var/lib/kubelet/pods/x/etc-hosts".into(),
            readonly: false,
            propagation: Propagation::Private,
            selinux_relabel: false,
            ..Default::default()
        },
    ];
    req.devices = vec![Device {
        container_path: "/dev/fuse".into(),
        host_path: "/dev/fuse".into(),
        permissions: "mrw".into(),
    }];
    let host = host(-999);
    let mut i = input(&req, &sandbox, &busybox(), &host);
    i.host_paths = BTreeMap::from([
        (
            "/srv/cache".to_string(),
            HostPath {
                resolved: Some("/mnt/disk1/cache".into()),
                propagation: HostPropagation::Private,
            },
        ),
        (
            "/var/lib/kubelet/pods/x/volumes/data".to_string(),
            HostPath {
                resolved: None,
                propagation: HostPropagation::Slave,
            },
        ),
        (
            "/var/lib/kubelet/plugins".to_string(),
            HostPath {
                resolved: None,
                propagation: HostPropagation::Shared,
            },
        ),
    ]);
    i.device_nodes = BTreeMap::from([(
        "/dev/fuse".to_string(),
        vec![HostDevice {
            path: "/dev/fuse".into(),
            kind: HostDeviceKind::Char,
            major: 10,
            minor: 229,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        }],
    )]);
    i.annotations = BTreeMap::from([(
        "io.katacontainers.config.hypervisor.default_vcpus".to_string(),
        "2".to_string(),
    )]);
    let spec = spec(&i);
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .expect("RuntimeDefault sets a profile");
    assert!(!seccomp::allows(&seccomp, "sethostname"));
    assert!(!seccomp::allows(&seccomp, "mount"));
    assert!(seccomp::allows(&seccomp, "execve"));
    // The profile depends on the architecture crius is built for.
    if cfg!(target_arch = "x86_64") {
        let mut value = serde_json::to_value(&seccomp).expect("a profile serializes");
        canonicalize(&mut value);
        compare("container", "seccomp_runtime_default", &value);
    }
    check("resources_mounts_seccomp", &spec);
}

fn spec(input: &ContainerSpecInput<'_>) -> Spec {
    container_spec(input).unwrap_or_else(|e| panic!("{e}"))
}

fn check(case: &str, spec: &Spec) {
    let mut value = serde_json::to_value(spec).expect("a spec serializes");
    if let Some(seccomp) = value.pointer_mut("/linux/seccomp") {
        *seccomp = Value::String("<RuntimeDefault: see seccomp_runtime_default.json>".into());
    }
    canonicalize(&mut value);
    compare("container", case, &value);
}
