//! Container requests.

use std::collections::HashMap;

use crius_cri_api::v1::{self, NamespaceMode, security_profile::ProfileType};

use super::super::bad;
use super::super::state::Pod;
use super::{CREATED, Ctx, Mutator, RUNNING, resources};

const EXITED: i32 = v1::ContainerState::ContainerExited as i32;

/// Commands of the fuzzer's containers: small, and most of them stay.
const COMMANDS: &[&[&str]] = &[
    &["sleep", "1000"],
    &["sleep", "1000"],
    &["sleep", "1000"],
    &["true"],
    &["echo", "crius-fuzz"],
    &["sh", "-c", "echo out; echo err >&2; sleep 5"],
    &["sh", "-c", "exit 3"],
    &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
];

/// What kubelet masks and makes read-only by default.
const MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/sys/firmware",
];
const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// CreateContainer in one of the worker's ready pods (mostly).
pub fn create(cx: &mut Ctx<'_>) -> v1::CreateContainerRequest {
    let state = cx.state;
    let roomy: Vec<&Pod> = state
        .pods
        .iter()
        .filter(|p| p.ready && p.containers.len() < cx.s.max_containers)
        .collect();
    let pod = if !roomy.is_empty() && cx.g.chance(0.9) {
        Some(roomy[cx.g.below(roomy.len())])
    } else {
        None
    };
    // Never one of the worker's full pods: the bound holds.
    let pod_id = match pod {
        Some(p) => {
            cx.note_target(&p.id);
            p.id.clone()
        }
        None => cx.foreign_pod_id(),
    };
    // The container follows its pod's config (namespaces, privileges, log
    // directory); in a pod not of this worker, it asks for nothing special.
    let config = config(cx, pod.map(|p| &p.config));
    let sandbox = pod.or(state.pods.first()).map(|p| p.config.clone());
    let mut q = v1::CreateContainerRequest {
        pod_sandbox_id: pod_id,
        config: Some(config),
        sandbox_config: Some(sandbox.unwrap_or_default()),
    };
    cx.mutate(&mut q, CREATE_MUTATORS);
    q
}

fn config(cx: &mut Ctx<'_>, pod: Option<&v1::PodSandboxConfig>) -> v1::ContainerConfig {
    let name = format!("c{}", cx.index);
    let log_dir = pod.map(|p| p.log_directory.as_str()).unwrap_or("");
    if log_dir.starts_with('/') && !log_dir.contains('\0') {
        cx.mkdirs.push(format!("{log_dir}/{name}"));
    }
    let mut command = strings(cx.g.pick(COMMANDS));
    if cx.g.chance(0.03) {
        command = vec!["/no/such/binary".into()];
    }
    let mut image = cx.s.image.clone();
    if cx.g.chance(0.02) {
        image = format!("{}/crius-fuzz/no-such-image:1", cx.registry);
    }
    let mut c = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.clone(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image,
            ..Default::default()
        }),
        command,
        envs: vec![v1::KeyValue {
            key: "FUZZ".into(),
            value: cx.s.seed.to_string().into(),
        }],
        labels: HashMap::from([("io.kubernetes.container.name".into(), name.clone())]),
        log_path: format!("{name}/0.log"),
        linux: Some(linux(cx, pod)),
        ..Default::default()
    };
    extras(cx, &mut c);
    c
}

fn linux(cx: &mut Ctx<'_>, pod: Option<&v1::PodSandboxConfig>) -> v1::LinuxContainerConfig {
    let pod_sc = pod
        .and_then(|p| p.linux.as_ref())
        .and_then(|l| l.security_context.as_ref());
    let namespaces =
        pod_sc
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or(v1::NamespaceOption {
                pid: NamespaceMode::Container as i32,
                ..Default::default()
            });
    let privileged = pod_sc.is_some_and(|s| s.privileged) && cx.g.chance(0.5);
    let seccomp =
        cx.g.pick(&[ProfileType::Unconfined, ProfileType::RuntimeDefault]);
    v1::LinuxContainerConfig {
        resources: Some(resources::valid(cx)),
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(namespaces),
            privileged,
            run_as_user: cx.g.chance(0.2).then_some(v1::Int64Value { value: 1000 }),
            readonly_rootfs: cx.g.chance(0.1),
            seccomp: Some(v1::SecurityProfile {
                profile_type: seccomp as i32,
                localhost_ref: String::new(),
            }),
            masked_paths: if privileged { vec![] } else { strings(MASKED) },
            readonly_paths: if privileged {
                vec![]
            } else {
                strings(READONLY)
            },
            ..Default::default()
        }),
    }
}

/// Optional parts: a bind mount, a device, a terminal, stdin.
fn extras(cx: &mut Ctx<'_>, c: &mut v1::ContainerConfig) {
    if cx.g.chance(0.2) {
        let host = format!("{}/mnt/w{}", cx.scratch(), cx.worker);
        cx.mkdirs.push(host.clone());
        c.mounts.push(v1::Mount {
            container_path: "/mnt/fuzz".into(),
            host_path: host,
            readonly: cx.g.chance(0.5),
            ..Default::default()
        });
    }
    if cx.g.chance(0.1) {
        // Recursive read-only (the fuzz node's runc and kernel can).
        let host = format!("{}/mnt/r{}", cx.scratch(), cx.worker);
        cx.mkdirs.push(host.clone());
        c.mounts.push(v1::Mount {
            container_path: "/mnt/fuzz-rro".into(),
            host_path: host,
            readonly: true,
            recursive_read_only: true,
            ..Default::default()
        });
    }
    if cx.g.chance(0.1) {
        // An image volume of the fuzz image, whole or a directory of it.
        c.mounts.push(v1::Mount {
            container_path: "/mnt/fuzz-image".into(),
            readonly: true,
            image: Some(v1::ImageSpec {
                image: cx.s.image.clone(),
                ..Default::default()
            }),
            image_sub_path: cx.g.pick(&["", "etc", "bin", "../..", "/etc/"]).into(),
            ..Default::default()
        });
    }
    if let Some(sc) = c
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .filter(|_| cx.g.chance(0.2))
    {
        sc.supplemental_groups = vec![1234];
        sc.supplemental_groups_policy = v1::SupplementalGroupsPolicy::Strict as i32;
    }
    if cx.g.chance(0.05) {
        c.devices.push(v1::Device {
            container_path: "/dev/fuzz-null".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        });
    }
    c.tty = cx.g.chance(0.1);
    c.stdin = cx.g.chance(0.1);
    c.stdin_once = c.stdin && cx.g.chance(0.5);
    if cx.g.chance(0.2) {
        c.working_dir = "/tmp".into();
    }
}

fn cfg(q: &mut v1::CreateContainerRequest) -> &mut v1::ContainerConfig {
    q.config.get_or_insert_with(Default::default)
}

fn sc(q: &mut v1::CreateContainerRequest) -> &mut v1::LinuxContainerSecurityContext {
    cfg(q)
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

fn string_into(field: &mut String, cx: &mut Ctx<'_>) -> String {
    let b = bad::string(&mut cx.g);
    *field = b.value;
    b.what
}

fn id_into(field: &mut String, cx: &mut Ctx<'_>) -> String {
    let b = cx.bad_id();
    *field = b.value;
    b.what
}

const CREATE_MUTATORS: &[(&str, Mutator<v1::CreateContainerRequest>)] = &[
    ("pod_sandbox_id", |q, cx| id_into(&mut q.pod_sandbox_id, cx)),
    ("metadata.name", |q, cx| {
        string_into(
            &mut cfg(q).metadata.get_or_insert_with(Default::default).name,
            cx,
        )
    }),
    ("metadata", |q, _| {
        cfg(q).metadata = None;
        "missing".into()
    }),
    ("image", |q, cx| {
        let b = bad::string(&mut cx.g);
        cfg(q).image = Some(v1::ImageSpec {
            image: format!("{}/{}", cx.registry, b.value),
            ..Default::default()
        });
        format!("reference <registry>/{}", b.what)
    }),
    ("image", |q, _| {
        cfg(q).image = None;
        "missing".into()
    }),
    ("command", |q, cx| bad_argv(&mut cfg(q).command, cx)),
    ("args", |q, cx| bad_argv(&mut cfg(q).args, cx)),
    ("working_dir", |q, cx| {
        let b = bad::path(&mut cx.g, "/tmp");
        cfg(q).working_dir = b.value;
        b.what
    }),
    ("envs", |q, cx| bad_envs(cfg(q), cx)),
    ("mounts", |q, cx| bad_mount(cfg(q), cx)),
    ("devices", |q, cx| bad_device(cfg(q), cx)),
    ("labels", |q, cx| {
        super::other::bad_map(&mut cfg(q).labels, cx)
    }),
    ("annotations", |q, cx| {
        super::other::bad_map(&mut cfg(q).annotations, cx)
    }),
    ("log_path", |q, cx| bad_log_path(cfg(q), cx)),
    ("linux.resources", |q, cx| {
        let l = cfg(q).linux.get_or_insert_with(Default::default);
        resources::spoil(l.resources.get_or_insert_with(Default::default), cx)
    }),
    ("linux.security_context", |q, cx| bad_security(sc(q), cx)),
    ("linux.security_context.namespace_options", |q, cx| {
        super::pods::bad_namespaces(
            sc(q).namespace_options.get_or_insert_with(Default::default),
            cx,
        )
    }),
    ("cdi_devices", |q, _| {
        cfg(q).cdi_devices = vec![v1::CdiDevice {
            name: "vendor.example/gpu=0".into(),
        }];
        "a CDI device (not supported)".into()
    }),
    ("windows", |q, _| {
        cfg(q).windows = Some(Default::default());
        "a Windows config on Linux".into()
    }),
    ("sandbox_config", |q, _| {
        q.sandbox_config = None;
        "missing".into()
    }),
    ("config", |q, _| {
        q.config = None;
        "missing".into()
    }),
];

/// A malformed argv (shared with ExecSync and Exec).
pub fn bad_argv(argv: &mut Vec<String>, cx: &mut Ctx<'_>) -> String {
    match cx.g.below(5) {
        0 => {
            *argv = vec![String::new()];
            "[\"\"]".into()
        }
        1 => {
            *argv = vec!["echo".into(), "a\0b".into()];
            "NUL in an argument".into()
        }
        2 => {
            let b = bad::huge(&mut cx.g);
            *argv = vec!["echo".into(), b.value];
            format!("an argument {}", b.what)
        }
        3 => {
            *argv = (0..10_000).map(|i| i.to_string()).collect();
            "10000 arguments".into()
        }
        _ => {
            let b = bad::string(&mut cx.g);
            *argv = vec![b.value];
            format!("program {}", b.what)
        }
    }
}

fn bad_envs(c: &mut v1::ContainerConfig, cx: &mut Ctx<'_>) -> String {
    let kv = |k: &str, v: &str| v1::KeyValue {
        key: k.into(),
        value: v.into(),
    };
    match cx.g.below(6) {
        0 => {
            c.envs = vec![kv("", "x")];
            "empty key".into()
        }
        5 => {
            c.envs = vec![v1::KeyValue {
                key: "A".into(),
                value: vec![b'a', 0xff, 0xfe],
            }];
            "a value that is not UTF-8".into()
        }
        1 => {
            c.envs = vec![kv("A=B", "x")];
            "'=' in a key".into()
        }
        2 => {
            c.envs = vec![kv("A", "a\0b")];
            "NUL in a value".into()
        }
        3 => {
            c.envs = (0..10_000).map(|i| kv(&format!("E{i}"), "x")).collect();
            "10000 variables".into()
        }
        _ => {
            let b = bad::string(&mut cx.g);
            c.envs = vec![v1::KeyValue {
                key: b.value,
                value: "x".into(),
            }];
            format!("key {}", b.what)
        }
    }
}

fn bad_mount(c: &mut v1::ContainerConfig, cx: &mut Ctx<'_>) -> String {
    let base = format!("{}/mnt", cx.scratch());
    let mut m = v1::Mount {
        container_path: "/mnt/fuzz".into(),
        host_path: format!("{base}/ok"),
        ..Default::default()
    };
    let what = match cx.g.below(10) {
        6 => {
            m.recursive_read_only = true;
            m.readonly = cx.g.chance(0.5);
            m.propagation = if m.readonly { 2 } else { 0 };
            "recursive read-only, read-write or propagated".into()
        }
        7..=9 => {
            m.host_path.clear();
            m.readonly = true;
            m.image = Some(v1::ImageSpec {
                image: cx.s.image.clone(),
                ..Default::default()
            });
            let (sub, what) = cx.g.pick(&[
                ("no/such/dir", "image_sub_path missing"),
                ("etc/passwd", "image_sub_path a file"),
                ("a\0b", "image_sub_path with NUL"),
                ("", "image volume read-write"),
            ]);
            m.readonly = !sub.is_empty();
            m.image_sub_path = sub.into();
            what.into()
        }
        0 | 1 => {
            let b = bad::path(&mut cx.g, &base);
            m.host_path = b.value;
            format!("host_path {}", b.what)
        }
        2 | 3 => {
            let b = bad::path(&mut cx.g, "/mnt");
            m.container_path = b.value;
            format!("container_path {}", b.what)
        }
        4 => {
            m.container_path =
                cx.g.pick(&["../../../etc", "/proc/self", "/", "/dev/null"])
                    .into();
            format!("container_path {:?}", m.container_path)
        }
        _ => {
            m.propagation = 99;
            "propagation 99".into()
        }
    };
    c.mounts.push(m);
    what
}

fn bad_device(c: &mut v1::ContainerConfig, cx: &mut Ctx<'_>) -> String {
    let mut d = v1::Device {
        container_path: "/dev/fuzz".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    };
    let what = match cx.g.below(4) {
        0 => {
            d.host_path = "/dev/no-such-device".into();
            "host_path /dev/no-such-device".into()
        }
        1 => {
            d.permissions = "xyz".into();
            "permissions xyz".into()
        }
        2 => {
            d.host_path = "/dev/../etc/passwd".into();
            "host_path /dev/../etc/passwd (not a device)".into()
        }
        _ => {
            let b = bad::path(&mut cx.g, "/dev");
            d.container_path = b.value;
            format!("container_path {}", b.what)
        }
    };
    c.devices.push(d);
    what
}

fn bad_log_path(c: &mut v1::ContainerConfig, cx: &mut Ctx<'_>) -> String {
    let v = match cx.g.below(8) {
        0 => "a/b/c.log".to_owned(),
        1 => "../../escape.log".to_owned(),
        2 => "/abs/path.log".to_owned(),
        3 => format!("{}/0.log", "d".repeat(300)),
        4 => "c\0.log".to_owned(),
        5 => ".".to_owned(),
        6 => "dir/".to_owned(),
        _ => return format!("log_path {}", string_into(&mut c.log_path, cx)),
    };
    let what = format!("{:?}", v.chars().take(40).collect::<String>());
    c.log_path = v;
    what
}

fn bad_security(s: &mut v1::LinuxContainerSecurityContext, cx: &mut Ctx<'_>) -> String {
    match cx.g.below(8) {
        0 => {
            s.capabilities = Some(v1::Capability {
                add_capabilities: vec!["CAP_NOPE".into()],
                ..Default::default()
            });
            "add CAP_NOPE".into()
        }
        1 => {
            s.capabilities = Some(v1::Capability {
                drop_capabilities: vec!["\0".into()],
                ..Default::default()
            });
            "drop NUL".into()
        }
        2 => {
            s.run_as_user = Some(v1::Int64Value {
                value: cx.g.pick(&[-1, 1 << 40, i64::MIN]),
            });
            "run_as_user out of range".into()
        }
        3 => {
            s.run_as_username = cx.g.pick(&["no-such-user", "", "root\0"]).into();
            format!("run_as_username {:?}", s.run_as_username)
        }
        4 => {
            s.masked_paths = vec!["../../etc".into(), "relative".into()];
            "masked_paths traversal, relative".into()
        }
        5 => {
            s.seccomp = Some(v1::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: cx
                    .g
                    .pick(&["../../../../etc/passwd", "/no/such/profile.json", ""])
                    .into(),
            });
            "seccomp localhost: a bad profile path".into()
        }
        6 => {
            s.supplemental_groups = vec![-5];
            "supplemental_groups -5".into()
        }
        _ => {
            s.privileged = true;
            "privileged in a pod that may not be".into()
        }
    }
}

/// StartContainer of one of the worker's created containers (mostly).
pub fn start(cx: &mut Ctx<'_>) -> v1::StartContainerRequest {
    let mut q = v1::StartContainerRequest {
        container_id: cx.container_id(Some(CREATED)),
    };
    cx.mutate(
        &mut q,
        &[("container_id", |q, cx| id_into(&mut q.container_id, cx))],
    );
    q
}

/// StopContainer with a short grace period (a long one, malformed, goes
/// with a deadline: busybox's sleep as PID 1 ignores SIGTERM).
pub fn stop(cx: &mut Ctx<'_>) -> v1::StopContainerRequest {
    let mut q = v1::StopContainerRequest {
        container_id: cx.container_id(Some(RUNNING)),
        timeout: cx.g.pick(&[0, 0, 1, 2]),
    };
    cx.mutate(
        &mut q,
        &[
            ("container_id", |q, cx| id_into(&mut q.container_id, cx)),
            ("timeout", |q, cx| {
                q.timeout =
                    cx.g.pick(&[-1, i64::MIN, i64::MAX, 1_000_000_000_000_000_000]);
                cx.deadline = Some(std::time::Duration::from_secs(3));
                format!("timeout {} (deadline 3 s)", q.timeout)
            }),
        ],
    );
    q
}

/// RemoveContainer, preferring exited containers.
pub fn remove(cx: &mut Ctx<'_>) -> v1::RemoveContainerRequest {
    let mut q = v1::RemoveContainerRequest {
        container_id: cx.container_id(Some(EXITED)),
    };
    cx.mutate(
        &mut q,
        &[("container_id", |q, cx| id_into(&mut q.container_id, cx))],
    );
    q
}

/// ContainerStatus.
pub fn status(cx: &mut Ctx<'_>) -> v1::ContainerStatusRequest {
    let mut q = v1::ContainerStatusRequest {
        container_id: cx.container_id(None),
        verbose: cx.g.chance(0.5),
    };
    cx.mutate(
        &mut q,
        &[("container_id", |q, cx| id_into(&mut q.container_id, cx))],
    );
    q
}

/// ListContainers, sometimes filtered.
pub fn list(cx: &mut Ctx<'_>) -> v1::ListContainersRequest {
    let filter = cx.g.chance(0.5).then(|| v1::ContainerFilter {
        pod_sandbox_id: if cx.g.chance(0.5) {
            cx.pod_id()
        } else {
            String::new()
        },
        state: cx.g.chance(0.3).then(|| v1::ContainerStateValue {
            state: cx.g.below(4) as i32,
        }),
        ..Default::default()
    });
    let mut q = v1::ListContainersRequest { filter };
    cx.mutate(
        &mut q,
        &[
            ("filter.state", |q, _| {
                q.filter.get_or_insert_with(Default::default).state =
                    Some(v1::ContainerStateValue { state: -7 });
                "state -7".into()
            }),
            ("filter.id", |q, cx| {
                id_into(&mut q.filter.get_or_insert_with(Default::default).id, cx)
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

const EXEC_COMMANDS: &[&[&str]] = &[
    &["echo", "hi"],
    &["true"],
    &["sh", "-c", "exit 3"],
    &["cat", "/etc/hostname"],
    &["sh", "-c", "echo err >&2"],
    &["sleep", "1"],
];

/// ExecSync of a short command in a running container (mostly).
pub fn exec_sync(cx: &mut Ctx<'_>) -> v1::ExecSyncRequest {
    let mut cmd = strings(cx.g.pick(EXEC_COMMANDS));
    if cx.g.chance(0.05) {
        cmd = vec!["/no/such/binary".into()];
    }
    let mut q = v1::ExecSyncRequest {
        container_id: cx.container_id(Some(RUNNING)),
        cmd,
        timeout: cx.g.pick(&[0, 1, 2, 5]),
    };
    cx.mutate(
        &mut q,
        &[
            ("container_id", |q, cx| id_into(&mut q.container_id, cx)),
            ("cmd", |q, cx| bad_argv(&mut q.cmd, cx)),
            ("cmd", |q, _| {
                q.cmd = vec![];
                "empty".into()
            }),
            ("timeout", |q, cx| {
                q.timeout = cx.g.pick(&[-1, i64::MIN, i64::MAX]);
                format!("timeout {}", q.timeout)
            }),
        ],
    );
    q
}

/// The streams of an Exec or Attach, for their shared mutators.
trait Streams {
    fn flags(&mut self) -> [&mut bool; 4];

    fn no_streams(&mut self) -> String {
        let [stdin, stdout, stderr, _] = self.flags();
        (*stdin, *stdout, *stderr) = (false, false, false);
        "no stream".into()
    }

    /// A terminal and a separate stderr: what a terminal cannot give.
    fn tty_and_stderr(&mut self) -> String {
        let [_, _, stderr, tty] = self.flags();
        (*tty, *stderr) = (true, true);
        "tty and stderr".into()
    }
}

impl Streams for v1::ExecRequest {
    fn flags(&mut self) -> [&mut bool; 4] {
        [
            &mut self.stdin,
            &mut self.stdout,
            &mut self.stderr,
            &mut self.tty,
        ]
    }
}

impl Streams for v1::AttachRequest {
    fn flags(&mut self) -> [&mut bool; 4] {
        [
            &mut self.stdin,
            &mut self.stdout,
            &mut self.stderr,
            &mut self.tty,
        ]
    }
}

/// Exec (the URL only).
pub fn exec(cx: &mut Ctx<'_>) -> v1::ExecRequest {
    let tty = cx.g.chance(0.3);
    let mut q = v1::ExecRequest {
        container_id: cx.container_id(Some(RUNNING)),
        cmd: vec!["sh".into()],
        tty,
        stdin: cx.g.chance(0.5),
        stdout: true,
        stderr: !tty,
    };
    cx.mutate(
        &mut q,
        &[
            ("container_id", |q, cx| id_into(&mut q.container_id, cx)),
            ("cmd", |q, cx| bad_argv(&mut q.cmd, cx)),
            ("streams", |q, _| q.no_streams()),
            ("tty", |q, _| q.tty_and_stderr()),
        ],
    );
    q
}

/// Attach (the URL only).
pub fn attach(cx: &mut Ctx<'_>) -> v1::AttachRequest {
    let mut q = v1::AttachRequest {
        container_id: cx.container_id(Some(RUNNING)),
        stdin: cx.g.chance(0.3),
        tty: false,
        stdout: true,
        stderr: true,
    };
    cx.mutate(
        &mut q,
        &[
            ("container_id", |q, cx| id_into(&mut q.container_id, cx)),
            ("streams", |q, _| q.no_streams()),
            ("tty", |q, _| q.tty_and_stderr()),
        ],
    );
    q
}

/// UpdateContainerResources of a running container (mostly).
pub fn update_resources(cx: &mut Ctx<'_>) -> v1::UpdateContainerResourcesRequest {
    let mut q = v1::UpdateContainerResourcesRequest {
        container_id: cx.container_id(Some(RUNNING)),
        linux: Some(resources::valid(cx)),
        windows: None,
        annotations: HashMap::new(),
    };
    cx.mutate(
        &mut q,
        &[
            ("container_id", |q, cx| id_into(&mut q.container_id, cx)),
            ("linux", |q, cx| {
                resources::spoil(q.linux.get_or_insert_with(Default::default), cx)
            }),
            ("linux", |q, cx| {
                resources::spoil(q.linux.get_or_insert_with(Default::default), cx)
            }),
            ("windows", |q, _| {
                q.windows = Some(v1::WindowsContainerResources {
                    cpu_count: -1,
                    ..Default::default()
                });
                "Windows resources on Linux".into()
            }),
            ("annotations", |q, cx| {
                super::other::bad_map(&mut q.annotations, cx)
            }),
        ],
    );
    q
}

/// ReopenContainerLog.
pub fn reopen_log(cx: &mut Ctx<'_>) -> v1::ReopenContainerLogRequest {
    let mut q = v1::ReopenContainerLogRequest {
        container_id: cx.container_id(Some(RUNNING)),
    };
    cx.mutate(
        &mut q,
        &[("container_id", |q, cx| id_into(&mut q.container_id, cx))],
    );
    q
}

/// ContainerStats.
pub fn stats(cx: &mut Ctx<'_>) -> v1::ContainerStatsRequest {
    let mut q = v1::ContainerStatsRequest {
        container_id: cx.container_id(None),
    };
    cx.mutate(
        &mut q,
        &[("container_id", |q, cx| id_into(&mut q.container_id, cx))],
    );
    q
}

/// ListContainerStats, sometimes filtered.
pub fn list_stats(cx: &mut Ctx<'_>) -> v1::ListContainerStatsRequest {
    let filter = cx.g.chance(0.5).then(|| v1::ContainerStatsFilter {
        id: if cx.g.chance(0.5) {
            cx.container_id(None)
        } else {
            String::new()
        },
        pod_sandbox_id: if cx.g.chance(0.3) {
            cx.pod_id()
        } else {
            String::new()
        },
        label_selector: HashMap::new(),
    });
    let mut q = v1::ListContainerStatsRequest { filter };
    cx.mutate(
        &mut q,
        &[
            ("filter.id", |q, cx| {
                id_into(&mut q.filter.get_or_insert_with(Default::default).id, cx)
            }),
            ("filter.pod_sandbox_id", |q, cx| {
                id_into(
                    &mut q.filter.get_or_insert_with(Default::default).pod_sandbox_id,
                    cx,
                )
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
