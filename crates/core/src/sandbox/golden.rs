//! Golden tests of the sandbox spec: three representative requests, their
//! specs serialized (pretty JSON, keys and capability sets sorted) and
//! compared with `testdata/<case>.json`.
//!
//! After an intended change, regenerate the files and review the diff:
//! `CRIUS_BLESS=1 cargo test -p crius-core sandbox::golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::spec::{DEFAULT_SANDBOX_OOM_SCORE_ADJ, ImageProcess, SandboxSpecInput, sandbox_spec};
use super::{
    DnsConfig, NamespaceMode, NamespaceOptions, PodSandboxRequest, PortMapping, Protocol, Resources,
};
use crate::cgroup::CgroupDriver;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "8d3c6a0e-5b7f-4c1d-9e2a-3f4b5c6d7e8f";

/// The pause image as registry.k8s.io/pause:3.9 describes itself.
fn pause_image() -> ImageProcess {
    ImageProcess {
        entrypoint: vec!["/pause".into()],
        cmd: vec![],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        working_dir: "/".into(),
        user: "65535:65535".into(),
    }
}

fn base_request() -> PodSandboxRequest {
    PodSandboxRequest {
        name: "web-0".into(),
        uid: UID.into(),
        namespace: "default".into(),
        attempt: 0,
        hostname: "web-0".into(),
        log_directory: format!("/var/log/pods/default_web-0_{UID}"),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        linux: super::LinuxSandbox {
            cgroup_parent: format!("/kubepods/besteffort/pod{UID}"),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn base_input(request: &PodSandboxRequest) -> SandboxSpecInput<'_> {
    SandboxSpecInput {
        id: ID.into(),
        request,
        image_config: pause_image(),
        netns_path: Some("/var/run/netns/cni-4f1b2c3d-0000-4000-8000-000000000001".into()),
        pod_shm: Some(format!("/run/crius/sandboxes/{ID}/shm")),
        hostname: request.hostname.clone(),
        cgroup_driver: CgroupDriver::Cgroupfs,
        // containerd's systemd unit runs it at -999.
        daemon_oom_score_adj: -999,
        sandbox_oom_score_adj: DEFAULT_SANDBOX_OOM_SCORE_ADJ,
        annotations: BTreeMap::new(),
        localhost_seccomp: None,
        kernel_version: None,
        pinned: None,
    }
}

#[test]
fn pod_network_defaults() {
    let request = base_request();
    check("pod_network_defaults", &base_input(&request));
}

#[test]
fn host_namespaces() {
    let request = PodSandboxRequest {
        name: "kube-proxy-x7k2p".into(),
        namespace: "kube-system".into(),
        // kubelet sends none for host-network pods; one sent anyway is ignored.
        hostname: "ignored".into(),
        linux: super::LinuxSandbox {
            cgroup_parent: format!("kubepods-besteffort-pod{}.slice", UID.replace('-', "_")),
            namespaces: NamespaceOptions {
                network: NamespaceMode::Node,
                pid: NamespaceMode::Node,
                ipc: NamespaceMode::Node,
            },
            privileged: true,
            ..Default::default()
        },
        ..base_request()
    };
    let input = SandboxSpecInput {
        netns_path: None,
        pod_shm: None,
        hostname: "node-1".into(),
        cgroup_driver: CgroupDriver::Systemd,
        ..base_input(&request)
    };
    check("host_namespaces", &input);
}

#[test]
fn sysctls_resources_dns() {
    let mut request = base_request();
    request.dns = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    });
    request.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port: 8080,
        host_ip: String::new(),
    }];
    request.linux.cgroup_parent = format!("/kubepods/burstable/pod{UID}");
    request.linux.sysctls = BTreeMap::from([
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ("kernel/sem".to_string(), "250 32000 32 128".to_string()),
        (
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        ),
        (
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        ),
    ]);
    request.linux.run_as_user = Some(1000);
    request.linux.run_as_group = Some(3000);
    request.linux.supplemental_groups = vec![2000];
    request.linux.resources = Some(Resources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 268_435_456,
    });
    let input = SandboxSpecInput {
        // The daemon here runs at 0 (no CAP_SYS_RESOURCE): the clamp wins.
        daemon_oom_score_adj: 0,
        annotations: BTreeMap::from([(
            "io.katacontainers.config.hypervisor.default_vcpus".to_string(),
            "2".to_string(),
        )]),
        ..base_input(&request)
    };
    check("sysctls_resources_dns", &input);
}

fn check(case: &str, input: &SandboxSpecInput<'_>) {
    let spec = sandbox_spec(input).unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut value = serde_json::to_value(&spec).expect("a spec serializes");
    canonicalize(&mut value);
    compare("sandbox", case, &value);
}

/// Compares `value` with `src/<module>/testdata/<case>.json`, or writes it
/// there with `CRIUS_BLESS=1`.
pub(crate) fn compare(module: &str, case: &str, value: &Value) {
    let actual = serde_json::to_string_pretty(value).expect("a value serializes") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("src/{module}/testdata"))
        .join(format!("{case}.json"));
    if std::env::var_os("CRIUS_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nCreate it with: CRIUS_BLESS=1 cargo test -p crius-core {module}::golden",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the spec built now (- golden, + now):\n{}\n\
             If the change is intended: CRIUS_BLESS=1 cargo test -p crius-core {module}::golden",
            path.display(),
            line_diff(&expected, &actual)
        );
    }
}

/// Sorts object keys and the capability sets (serialized from hash sets,
/// so in random order).
pub(crate) fn canonicalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut v) in entries {
                canonicalize(&mut v);
                let capability_set = matches!(
                    key.as_str(),
                    "bounding" | "effective" | "inheritable" | "permitted" | "ambient"
                );
                if let (true, Value::Array(items)) = (capability_set, &mut v) {
                    items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
                map.insert(key, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalize),
        _ => {}
    }
}

/// A line diff (longest common subsequence) with two lines of context.
pub(crate) fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if j == b.len() || (i < a.len() && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', j + 1, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = (0..ops.len()).filter(|k| ops[*k].0 != ' ').collect();
    let near = |k: usize| changed.iter().any(|c| c.abs_diff(k) <= CONTEXT);
    let mut out = String::new();
    let mut skipped = false;
    for (k, (tag, line_no, line)) in ops.iter().enumerate() {
        if near(k) {
            out.push_str(&format!("{tag} {line_no:4} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("  ...\n");
            skipped = true;
        }
    }
    out
}

#[test]
fn diff_shows_changes_with_context() {
    let diff = line_diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n");
    assert_eq!(
        diff,
        "  ...\n     2 b\n     3 c\n-    4 d\n+    4 D\n     5 e\n     6 f\n  ...\n"
    );
}
