//! Issue 5: the security context, mounts and namespaces, each observed from
//! inside a running container (through ExecSync, or the container's own
//! log for its first process).
//!
//! Each test has a daemon of its own ([`PodEnv`]: own containerd namespace,
//! bridge and subnet) and ends with `remove_all_and_check` plus a check that
//! no writable snapshot or creation lease is left. Refused creates are
//! checked to leave nothing behind right away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use crius_containerd::SnapshotKind;
use crius_cri_api::v1;
use crius_testkit::images as ti;

use crate::Env;
use crate::pods::{PodEnv, config, run};

crate::tests![
    capabilities_default_add_drop_and_all,
    privileged_container_has_every_capability_and_nothing_masked,
    privileged_container_sees_the_host_devices,
    masked_and_readonly_paths,
    seccomp_runtime_default_and_unconfined,
    seccomp_localhost_profile,
    apparmor_as_the_node_has_it,
    no_new_privs,
    supplemental_groups,
    run_as_user_takes_the_image_primary_group,
    pid_namespace_modes,
    pid_namespace_of_a_target_container,
    bind_mounts_rw_ro_symlink_and_missing,
    mount_propagation,
    devices_from_the_request,
];

/// containerd's (Docker's) default capabilities as a mask: CHOWN
/// DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
/// NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DEFAULT_CAPS: u64 = 0xa804_25fb;

/// Capability numbers used below.
const CAP_CHOWN: u32 = 0;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_RESOURCE: u32 = 24;

/// Status of a command run in a container.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A daemon of its own with the busybox image pulled, and log directories
/// for its pods.
struct Fixture {
    p: PodEnv,
    image: String,
    logs: tempfile::TempDir,
}

impl Fixture {
    async fn start(env: &Env) -> anyhow::Result<Fixture> {
        let mut p = PodEnv::start(env).await?;
        let image = env.images.reference(ti::BUSYBOX);
        crate::images::pull(&mut p.cri, &image).await?;
        Ok(Fixture {
            p,
            image,
            logs: tempfile::tempdir()?,
        })
    }

    /// Runs a pod named `name` with the security context `sc`.
    async fn pod(
        &mut self,
        name: &str,
        sc: v1::LinuxSandboxSecurityContext,
    ) -> anyhow::Result<String> {
        let mut c = config(name);
        // kubelet creates the pod's log directory.
        let logs = self.logs.path().join(name);
        std::fs::create_dir_all(&logs)?;
        c.log_directory = logs.display().to_string();
        c.linux = Some(v1::LinuxPodSandboxConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        run(&mut self.p.cri, c)
            .await
            .with_context(|| format!("running pod {name}"))
    }

    fn container(
        &self,
        name: &str,
        cmd: &[&str],
        sc: v1::LinuxContainerSecurityContext,
    ) -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: strings(cmd),
            log_path: format!("{name}.log"),
            linux: Some(v1::LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container that sleeps, with the security context `sc`.
    fn sleeper(&self, name: &str, sc: v1::LinuxContainerSecurityContext) -> v1::ContainerConfig {
        self.container(name, &["sleep", "1000"], sc)
    }

    async fn create(&mut self, pod: &str, c: v1::ContainerConfig) -> Result<String, tonic::Status> {
        self.p
            .cri
            .runtime
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(c),
                sandbox_config: Some(config("unused")),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// Creates and starts a container.
    async fn run(&mut self, pod: &str, c: v1::ContainerConfig) -> anyhow::Result<String> {
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let id = self
            .create(pod, c)
            .await
            .with_context(|| format!("creating {name}"))?;
        self.p
            .cri
            .runtime
            .start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("starting {name}"))?;
        Ok(id)
    }

    /// A create that must be refused with `code` and a message holding
    /// `needle`, leaving nothing behind.
    async fn refused(
        &mut self,
        pod: &str,
        c: v1::ContainerConfig,
        codes: &[tonic::Code],
        needle: &str,
    ) -> anyhow::Result<()> {
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let before = self.inventory().await?;
        match self.create(pod, c).await {
            Ok(id) => bail!("{name}: created as {id}, but it must be refused"),
            Err(e) => ensure!(
                codes.contains(&e.code()) && e.message().contains(needle),
                "{name}: want one of {codes:?} naming {needle:?}, got {:?}: {}",
                e.code(),
                e.message()
            ),
        }
        let after = self.inventory().await?;
        ensure!(
            before == after,
            "{name}: a refused create left something behind: before {before:?}, after {after:?}"
        );
        Ok(())
    }

    async fn exec(&mut self, id: &str, cmd: &[&str]) -> anyhow::Result<Out> {
        let r = self
            .p
            .cri
            .runtime
            .exec_sync(v1::ExecSyncRequest {
                container_id: id.into(),
                cmd: strings(cmd),
                timeout: 20,
            })
            .await
            .with_context(|| format!("exec {cmd:?}"))?
            .into_inner();
        Ok(Out {
            code: r.exit_code,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        })
    }

    /// `sh -c script` in the container.
    async fn sh(&mut self, id: &str, script: &str) -> anyhow::Result<Out> {
        self.exec(id, &["sh", "-c", script]).await
    }

    /// `sh -c script`, which must succeed; its stdout.
    async fn sh_ok(&mut self, id: &str, script: &str) -> anyhow::Result<String> {
        let out = self.sh(id, script).await?;
        ensure!(out.code == 0, "{script:?} failed: {out:?}");
        Ok(out.stdout)
    }

    /// The fields of `/proc/self/status` of a process exec'd in `id`.
    async fn proc_status(&mut self, id: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let out = self.exec(id, &["cat", "/proc/self/status"]).await?;
        ensure!(out.code == 0, "{out:?}");
        Ok(status_fields(&out.stdout))
    }

    /// The mounts seen in `id`: mount point → (options, optional fields).
    async fn mounts(&mut self, id: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
        let out = self.exec(id, &["cat", "/proc/self/mountinfo"]).await?;
        ensure!(out.code == 0, "{out:?}");
        Ok(mountinfo(&out.stdout))
    }

    /// The contents (stream and tag stripped) of a container's log once it
    /// holds `needle`.
    async fn log_with(&self, pod: &str, container: &str, needle: &str) -> anyhow::Result<String> {
        let path = self.logs.path().join(pod).join(format!("{container}.log"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let raw = std::fs::read_to_string(&path).unwrap_or_default();
            let text: String = raw
                .lines()
                .filter_map(|l| l.splitn(4, ' ').nth(3))
                .map(|l| format!("{l}\n"))
                .collect();
            if text.contains(needle) {
                return Ok(text);
            }
            ensure!(
                Instant::now() < deadline,
                "{} never held {needle:?}: {raw:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// containerd records, writable snapshots and creation leases.
    async fn inventory(&self) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>, Vec<String>)> {
        let c = &self.p.containerd;
        let records = c
            .container_list(&[])
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let snapshots = c
            .snapshot_list("overlayfs")
            .await?
            .into_iter()
            .filter(|s| s.kind == SnapshotKind::Active)
            .map(|s| s.name)
            .collect();
        let leases = c.lease_list_prefix("crius-sandbox-c-").await?;
        Ok((records, snapshots, leases))
    }

    /// Removes everything and checks nothing is left.
    async fn finish(mut self) -> anyhow::Result<()> {
        self.p.remove_all_and_check().await?;
        let left = self.inventory().await?;
        ensure!(
            left.0.is_empty() && left.1.is_empty() && left.2.is_empty(),
            "left behind: {left:?}"
        );
        Ok(())
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn caps(add: &[&str], drop: &[&str]) -> Option<v1::Capability> {
    Some(v1::Capability {
        add_capabilities: strings(add),
        drop_capabilities: strings(drop),
        ..Default::default()
    })
}

fn profile(
    t: v1::security_profile::ProfileType,
    localhost_ref: &str,
) -> Option<v1::SecurityProfile> {
    Some(v1::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: localhost_ref.into(),
    })
}

fn pid_mode(mode: v1::NamespaceMode, target_id: &str) -> Option<v1::NamespaceOption> {
    Some(v1::NamespaceOption {
        pid: mode as i32,
        target_id: target_id.into(),
        ..Default::default()
    })
}

/// `Key:\tvalue` lines (as in `/proc/<pid>/status`).
fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(s: &'a BTreeMap<String, String>, key: &str) -> anyhow::Result<&'a str> {
    s.get(key)
        .map(String::as_str)
        .with_context(|| format!("no {key} in {s:?}"))
}

fn mask(s: &BTreeMap<String, String>, key: &str) -> anyhow::Result<u64> {
    let v = field(s, key)?;
    u64::from_str_radix(v, 16).with_context(|| format!("{key}: {v:?}"))
}

/// Effective, permitted and bounding sets are `want`; none inheritable or
/// ambient.
fn check_caps(what: &str, s: &BTreeMap<String, String>, want: u64) -> anyhow::Result<()> {
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        let got = mask(s, key)?;
        ensure!(got == want, "{what}: {key} {got:#x}, want {want:#x}");
    }
    for key in ["CapInh", "CapAmb"] {
        let got = mask(s, key)?;
        ensure!(got == 0, "{what}: {key} {got:#x}, want 0");
    }
    Ok(())
}

/// This test process' effective capabilities: what criusd (root, same
/// parent) has, hence what `ALL` and privileged mean.
fn host_caps() -> anyhow::Result<u64> {
    mask(
        &status_fields(&std::fs::read_to_string("/proc/self/status")?),
        "CapEff",
    )
}

/// mountinfo → mount point → (mount options, optional fields); the last
/// mount at a point wins.
fn mountinfo(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = f.get(4)?;
            let options = f.get(5)?;
            let optional: Vec<&str> = f
                .iter()
                .skip(6)
                .take_while(|x| **x != "-")
                .copied()
                .collect();
            Some((point.to_string(), (options.to_string(), optional.join(" "))))
        })
        .collect()
}

fn read_only(options: &str) -> bool {
    options.split(',').any(|o| o == "ro")
}

/// Runs a host command, which must succeed.
fn host(args: &[&str]) -> anyhow::Result<String> {
    let (cmd, rest) = args.split_first().context("no command")?;
    let out = Command::new(cmd)
        .args(rest)
        .output()
        .with_context(|| format!("{args:?}"))?;
    ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A temporary directory whose mounts are undone (lazily, deepest first)
/// whatever happens, before the directory is removed.
pub(crate) struct HostDir {
    dir: tempfile::TempDir,
}

impl HostDir {
    pub(crate) fn new() -> anyhow::Result<HostDir> {
        Ok(HostDir {
            dir: tempfile::tempdir()?,
        })
    }

    pub(crate) fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A tmpfs at `name` (created) with propagation `make` (`--make-shared`...).
    pub(crate) fn tmpfs(&self, name: &str, make: &str) -> anyhow::Result<String> {
        let p = self.join(name);
        std::fs::create_dir_all(&p)?;
        let s = p.display().to_string();
        host(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "crius-sec-test",
            &s,
        ])?;
        host(&["mount", make, &s])?;
        Ok(s)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        crius_testkit::unmount_under(self.dir.path());
    }
}

pub(crate) async fn pause_pid(
    cri: &mut crius_testkit::client::Cri,
    pod: &str,
) -> anyhow::Result<u64> {
    let resp = cri
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(resp.info.get("info").context("no verbose info")?)?;
    info["pid"].as_u64().context("no pid")
}

async fn capabilities_default_add_drop_and_all(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("caps", Default::default()).await?;
    let all = host_caps()?;
    let bit = |n: u32| 1u64 << n;
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], u64);
    let cases: [Case<'_>; 8] = [
        ("default", &[], &[], DEFAULT_CAPS),
        // Unknown names are ignored, as runc does (a warning in the log).
        ("unknown-cap", &["CHOWN", "FLY"], &["NOPE"], DEFAULT_CAPS),
        (
            "add-net-admin",
            &["NET_ADMIN"],
            &[],
            DEFAULT_CAPS | bit(CAP_NET_ADMIN),
        ),
        (
            "drop-chown",
            &[],
            &["CHOWN"],
            DEFAULT_CAPS & !bit(CAP_CHOWN),
        ),
        ("drop-all", &[], &["ALL"], 0),
        ("add-all", &["ALL"], &[], all),
        (
            "only-bind",
            &["cap_net_bind_service"],
            &["all"],
            bit(CAP_NET_BIND_SERVICE),
        ),
        (
            "all-but-kill",
            &["ALL"],
            &["CAP_KILL"],
            all & !bit(CAP_KILL),
        ),
    ];
    let mut ids = Vec::new();
    for (name, add, drop, _) in &cases {
        let c = f.container(
            name,
            &["sh", "-c", "grep Cap /proc/$$/status; exec sleep 1000"],
            v1::LinuxContainerSecurityContext {
                capabilities: caps(add, drop),
                ..Default::default()
            },
        );
        ids.push(f.run(&pod, c).await?);
    }
    for ((name, _, _, want), id) in cases.iter().zip(&ids) {
        // The container's own process...
        let log = f.log_with("caps", name, "CapAmb").await?;
        check_caps(name, &status_fields(&log), *want)?;
        // ...and a process exec'd in it.
        let s = f.proc_status(id).await?;
        check_caps(&format!("{name} (exec)"), &s, *want)?;
    }
    // A capability crius itself lacks cannot be granted: a clear refusal
    // rather than runc's capset failure.
    if all & bit(CAP_SYS_RESOURCE) == 0 {
        let c = f.sleeper(
            "sys-resource",
            v1::LinuxContainerSecurityContext {
                capabilities: caps(&["SYS_RESOURCE"], &[]),
                ..Default::default()
            },
        );
        f.refused(
            &pod,
            c,
            &[tonic::Code::FailedPrecondition],
            "CAP_SYS_RESOURCE",
        )
        .await?;
    }
    f.finish().await
}

/// A privileged pod's privileged container: every capability crius has, no
/// seccomp even when asked for, nothing masked or read-only; an unprivileged
/// container beside it stays confined; a privileged container needs a
/// privileged pod.
async fn privileged_container_has_every_capability_and_nothing_masked(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let all = host_caps()?;
    let pod = f
        .pod(
            "priv",
            v1::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            },
        )
        .await?;
    let plain_pod = f.pod("plain", Default::default()).await?;

    let c = f.container(
        "privileged",
        &[
            "sh",
            "-c",
            "grep -E '^(Cap|Seccomp)' /proc/$$/status; exec sleep 1000",
        ],
        v1::LinuxContainerSecurityContext {
            privileged: true,
            seccomp: profile(v1::security_profile::ProfileType::RuntimeDefault, ""),
            ..Default::default()
        },
    );
    let privileged = f.run(&pod, c).await?;
    let c = f.sleeper("confined", Default::default());
    let confined = f.run(&pod, c).await?;

    let log = f.log_with("priv", "privileged", "Seccomp:").await?;
    let s = status_fields(&log);
    check_caps("privileged", &s, all)?;
    ensure!(
        field(&s, "Seccomp")? == "0",
        "privileged has seccomp: {log}"
    );
    let s = f.proc_status(&privileged).await?;
    check_caps("privileged (exec)", &s, all)?;
    ensure!(field(&s, "Seccomp")? == "0", "{s:?}");

    let m = f.mounts(&privileged).await?;
    for p in [
        "/proc/timer_list",
        "/proc/keys",
        "/sys/firmware",
        "/proc/sys",
        "/proc/irq",
    ] {
        ensure!(
            !m.contains_key(p),
            "{p} is masked or read-only in a privileged container: {m:?}"
        );
    }
    let (sys, _) = m.get("/sys").context("no /sys")?;
    ensure!(
        !read_only(sys),
        "/sys is read-only in a privileged container: {sys}"
    );
    let n = f.sh_ok(&privileged, "wc -c < /proc/timer_list").await?;
    ensure!(
        n.trim().parse::<u64>()? > 0,
        "/proc/timer_list is empty: {n}"
    );

    // The unprivileged container of the privileged pod.
    let s = f.proc_status(&confined).await?;
    check_caps("confined", &s, DEFAULT_CAPS)?;
    let n = f.sh_ok(&confined, "wc -c < /proc/timer_list").await?;
    ensure!(n.trim() == "0", "/proc/timer_list readable: {n}");
    let m = f.mounts(&confined).await?;
    let (sys, _) = m.get("/sys").context("no /sys")?;
    ensure!(
        read_only(sys),
        "/sys is writable in an unprivileged container: {sys}"
    );

    let c = f.sleeper(
        "escalate",
        v1::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    f.refused(
        &plain_pod,
        c,
        &[tonic::Code::InvalidArgument],
        "security_context.privileged",
    )
    .await?;
    f.finish().await
}

/// A character or block device of the host that runc does not create in
/// every container: (path, `major:minor` in hex as `stat -c %t:%T` prints).
fn a_host_device() -> anyhow::Result<(String, String)> {
    const RUNC_DEFAULTS: &[&str] = &[
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    for name in ["loop-control", "kmsg", "fuse", "net/tun", "vda", "loop0"] {
        let path = format!("/dev/{name}");
        if RUNC_DEFAULTS.contains(&name) || !Path::new(&path).exists() {
            continue;
        }
        let out = host(&["stat", "-c", "%F %t:%T", &path])?;
        if let Some(rest) = out
            .trim()
            .strip_prefix("character special file ")
            .or_else(|| out.trim().strip_prefix("block special file "))
        {
            return Ok((path, rest.to_string()));
        }
    }
    bail!("no host device to look for")
}

async fn privileged_container_sees_the_host_devices(env: Arc<Env>) -> anyhow::Result<()> {
    let (device, numbers) = a_host_device()?;
    let mut f = Fixture::start(&env).await?;
    let pod = f
        .pod(
            "priv-dev",
            v1::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            },
        )
        .await?;
    let c = f.sleeper("confined", Default::default());
    let confined = f.run(&pod, c).await?;
    let out = f.sh(&confined, &format!("test -e {device}")).await?;
    ensure!(
        out.code == 1,
        "{device} in an unprivileged container: {out:?}"
    );
    let c = f.sleeper(
        "privileged",
        v1::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    let privileged = f.run(&pod, c).await?;
    let out = f
        .sh(&privileged, &format!("stat -c %t:%T {device}"))
        .await?;
    let dev = f.sh_ok(&privileged, "ls /dev").await?;
    ensure!(
        out.code == 0 && out.stdout.trim() == numbers,
        "a privileged container should have the host's {device} ({numbers}): {out:?}; its /dev: {}",
        dev.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    f.finish().await
}

async fn masked_and_readonly_paths(env: Arc<Env>) -> anyhow::Result<()> {
    const MASKED: &[&str] = &[
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
        "/sys/devices/virtual/powercap",
    ];
    const READONLY: &[&str] = &[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    // runc masks only what exists; the container sees this kernel's /proc
    // and /sys.
    let exists = |p: &&str| Path::new(p).exists();
    let masked: Vec<&str> = MASKED.iter().copied().filter(exists).collect();
    let readonly: Vec<&str> = READONLY.iter().copied().filter(exists).collect();
    ensure!(
        masked.contains(&"/proc/timer_list") && masked.contains(&"/sys/firmware"),
        "the host lacks /proc/timer_list or /sys/firmware: {masked:?}"
    );
    ensure!(
        std::fs::read_dir("/sys/firmware")?.count() > 0,
        "the host's /sys/firmware is empty: nothing to hide"
    );

    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("masks", Default::default()).await?;
    let c = f.sleeper("default", Default::default());
    let default = f.run(&pod, c).await?;
    let c = f.sleeper(
        "custom",
        v1::LinuxContainerSecurityContext {
            masked_paths: strings(&["/proc/version"]),
            readonly_paths: strings(&["/proc/fs"]),
            ..Default::default()
        },
    );
    let custom = f.run(&pod, c).await?;

    // Defaults: masked files are /dev/null, masked directories an empty
    // read-only tmpfs; /proc/sys and co. are read-only.
    let m = f.mounts(&default).await?;
    for p in &masked {
        ensure!(m.contains_key(*p), "{p} is not masked: {m:?}");
    }
    for p in &readonly {
        let (options, _) = m
            .get(*p)
            .with_context(|| format!("{p} is not read-only: {m:?}"))?;
        ensure!(read_only(options), "{p} is mounted {options}");
    }
    let out = f
        .sh_ok(
            &default,
            "stat -c %t:%T /proc/timer_list; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; wc -c < /proc/version",
        )
        .await?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    ensure!(lines.len() == 4, "{out:?}");
    ensure!(
        lines[0] == "1:3",
        "/proc/timer_list is not /dev/null: {out:?}"
    );
    ensure!(lines[1] == "0", "/proc/timer_list readable: {out:?}");
    ensure!(lines[2] == "0", "/sys/firmware not empty: {out:?}");
    ensure!(
        lines[3] != "0",
        "/proc/version is masked by default: {out:?}"
    );
    // A write to the pod's own hostname sysctl (never the host's: the pod
    // has its own UTS namespace) meets a read-only mount.
    ensure_own_uts(&mut f, &default).await?;
    let out = f
        .sh(&default, "echo masked > /proc/sys/kernel/hostname")
        .await?;
    ensure!(
        out.code != 0 && out.stderr.contains("Read-only file system"),
        "/proc/sys is not read-only: {out:?}"
    );

    // Custom lists replace the defaults.
    let m = f.mounts(&custom).await?;
    ensure!(
        m.contains_key("/proc/version"),
        "/proc/version is not masked: {m:?}"
    );
    let (options, _) = m.get("/proc/fs").context("/proc/fs is not read-only")?;
    ensure!(read_only(options), "/proc/fs is mounted {options}");
    for p in masked
        .iter()
        .chain(readonly.iter())
        .filter(|p| **p != "/proc/fs")
    {
        ensure!(
            !m.contains_key(*p),
            "{p} still masked or read-only with custom lists: {m:?}"
        );
    }
    let out = f
        .sh_ok(&custom, "wc -c < /proc/version; wc -c < /proc/timer_list")
        .await?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    ensure!(
        lines.len() == 2 && lines[0] == "0" && lines[1] != "0",
        "/proc/version should be masked and /proc/timer_list not: {out:?}"
    );
    // /proc/sys is writable now (root needs no capability to write a UTS
    // sysctl): the pod's hostname changes.
    ensure_own_uts(&mut f, &custom).await?;
    let out = f
        .sh_ok(
            &custom,
            "echo custom > /proc/sys/kernel/hostname && hostname",
        )
        .await?;
    ensure!(out.trim() == "custom", "{out:?}");
    f.finish().await
}

/// Fails unless the container `id` has a UTS namespace other than the
/// host's: checked before anything that changes a hostname.
async fn ensure_own_uts(f: &mut Fixture, id: &str) -> anyhow::Result<()> {
    let host = std::fs::read_link("/proc/self/ns/uts")?
        .display()
        .to_string();
    let inside = f.sh_ok(id, "readlink /proc/self/ns/uts").await?;
    ensure!(
        !inside.trim().is_empty() && inside.trim() != host,
        "the container shares the host's UTS namespace ({host})"
    );
    Ok(())
}

async fn seccomp_runtime_default_and_unconfined(env: Arc<Env>) -> anyhow::Result<()> {
    use v1::security_profile::ProfileType;
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let mut f = Fixture::start(&env).await?;
    // A pod of its own UTS namespace (never the host's): containers below
    // set its hostname.
    let pod = f.pod("seccomp", Default::default()).await?;
    let sc =
        |seccomp: Option<v1::SecurityProfile>, add: &[&str]| v1::LinuxContainerSecurityContext {
            seccomp,
            capabilities: caps(add, &[]),
            ..Default::default()
        };
    let c = f.sleeper("none", sc(None, &[]));
    let none = f.run(&pod, c).await?;
    let c = f.sleeper("default", sc(profile(ProfileType::RuntimeDefault, ""), &[]));
    let default = f.run(&pod, c).await?;
    let c = f.sleeper("unconfined", sc(profile(ProfileType::Unconfined, ""), &[]));
    let unconfined = f.run(&pod, c).await?;
    #[allow(deprecated)]
    let legacy = v1::LinuxContainerSecurityContext {
        seccomp_profile_path: "runtime/default".into(),
        ..Default::default()
    };
    let c = f.sleeper("legacy", legacy);
    let legacy = f.run(&pod, c).await?;
    let c = f.sleeper(
        "admin-unconfined",
        sc(profile(ProfileType::Unconfined, ""), &["SYS_ADMIN"]),
    );
    let admin_unconfined = f.run(&pod, c).await?;
    let c = f.sleeper(
        "admin-default",
        sc(profile(ProfileType::RuntimeDefault, ""), &["SYS_ADMIN"]),
    );
    let admin_default = f.run(&pod, c).await?;

    for (name, id, want) in [
        ("none", &none, "0"),
        ("default", &default, "2"),
        ("unconfined", &unconfined, "0"),
        ("legacy", &legacy, "2"),
        ("admin-unconfined", &admin_unconfined, "0"),
        ("admin-default", &admin_default, "2"),
    ] {
        let s = f.proc_status(id).await?;
        ensure!(
            field(&s, "Seccomp")? == want,
            "{name}: Seccomp {:?}, want {want}",
            s.get("Seccomp")
        );
    }

    // unshare(CLONE_NEWUSER) needs no capability: only the filter refuses it.
    for (name, id) in [("none", &none), ("unconfined", &unconfined)] {
        let out = f.sh(id, "unshare -U true").await?;
        ensure!(
            out.code == 0,
            "{name}: unshare -U refused without seccomp: {out:?}"
        );
    }
    for (name, id) in [("default", &default), ("legacy", &legacy)] {
        let out = f.sh(id, "unshare -U true").await?;
        ensure!(
            out.code != 0 && out.stderr.contains("Operation not permitted"),
            "{name}: unshare -U allowed by RuntimeDefault: {out:?}"
        );
    }
    ensure_own_uts(&mut f, &none).await?;
    // sethostname: refused without CAP_SYS_ADMIN...
    let out = f.sh(&default, "hostname from-default").await?;
    ensure!(out.code != 0, "hostname set without CAP_SYS_ADMIN: {out:?}");
    // ...allowed with it, unconfined or under RuntimeDefault (whose rule for
    // sethostname applies to holders of CAP_SYS_ADMIN).
    for (id, name) in [
        (&admin_unconfined, "sec-unconfined"),
        (&admin_default, "sec-default"),
    ] {
        let out = f.sh_ok(id, &format!("hostname {name} && hostname")).await?;
        ensure!(out.trim() == name, "{out:?}");
    }
    // The pod's containers share its UTS namespace; the host's is untouched.
    let seen = f.sh_ok(&none, "hostname").await?;
    ensure!(seen.trim() == "sec-default", "{seen:?}");
    ensure!(std::fs::read_to_string("/proc/sys/kernel/hostname")? == host_name);

    let mut c = f.sleeper("bad-type", Default::default());
    if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.seccomp = Some(v1::SecurityProfile {
            profile_type: 7,
            localhost_ref: String::new(),
        });
    }
    f.refused(
        &pod,
        c,
        &[tonic::Code::InvalidArgument],
        "seccomp.profile_type",
    )
    .await?;
    f.finish().await
}

async fn seccomp_localhost_profile(env: Arc<Env>) -> anyhow::Result<()> {
    use v1::security_profile::ProfileType;
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    // Everything allowed but mkdir, which fails with EOPNOTSUPP (95): an
    // error neither capabilities nor the default profile give.
    std::fs::write(
        path("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]}"#,
    )?;
    std::fs::write(path("broken.json"), "{")?;
    std::fs::write(
        path("misspelt.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "sycalls": []}"#,
    )?;

    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("local-seccomp", Default::default()).await?;
    let c = f.sleeper(
        "local",
        v1::LinuxContainerSecurityContext {
            seccomp: profile(ProfileType::Localhost, &path("no-mkdir.json")),
            ..Default::default()
        },
    );
    let local = f.run(&pod, c).await?;
    #[allow(deprecated)]
    let legacy = v1::LinuxContainerSecurityContext {
        seccomp_profile_path: format!("localhost/{}", path("no-mkdir.json")),
        ..Default::default()
    };
    let c = f.sleeper("legacy", legacy);
    let legacy = f.run(&pod, c).await?;
    for (name, id) in [("local", &local), ("legacy", &legacy)] {
        let s = f.proc_status(id).await?;
        ensure!(field(&s, "Seccomp")? == "2", "{name}: {s:?}");
        let out = f.sh(id, "mkdir /tmp/blocked").await?;
        ensure!(
            out.code != 0 && out.stderr.to_lowercase().contains("not supported"),
            "{name}: mkdir not refused by the profile: {out:?}"
        );
        let out = f.sh_ok(id, "touch /tmp/allowed && echo ok").await?;
        ensure!(out.trim() == "ok", "{name}: {out:?}");
    }

    let sc = |localhost_ref: String| v1::LinuxContainerSecurityContext {
        seccomp: profile(ProfileType::Localhost, &localhost_ref),
        ..Default::default()
    };
    let absent = path("absent.json");
    let c = f.sleeper("absent", sc(absent.clone()));
    f.refused(&pod, c, &[tonic::Code::InvalidArgument], &absent)
        .await?;
    for (name, localhost_ref) in [
        ("broken", path("broken.json")),
        ("misspelt", path("misspelt.json")),
        ("relative", "no-mkdir.json".to_string()),
        ("empty", String::new()),
    ] {
        let c = f.sleeper(name, sc(localhost_ref));
        f.refused(
            &pod,
            c,
            &[tonic::Code::InvalidArgument],
            "seccomp.localhost_ref",
        )
        .await?;
    }
    f.finish().await
}

/// Without AppArmor (the machines these tests ran on): no profile, and a
/// `Localhost` one refused. With it: crius' default profile, loaded at
/// start-up, for `RuntimeDefault`; a `Localhost` profile that is not loaded
/// refused naming the field.
async fn apparmor_as_the_node_has_it(env: Arc<Env>) -> anyhow::Result<()> {
    use v1::security_profile::ProfileType;
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|p| p.starts_with('Y'));
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("apparmor", Default::default()).await?;
    let sc = |apparmor| v1::LinuxContainerSecurityContext {
        apparmor,
        ..Default::default()
    };
    let c = f.sleeper("default", sc(profile(ProfileType::RuntimeDefault, "")));
    let default = f.run(&pod, c).await?;
    let c = f.sleeper("unconfined", sc(profile(ProfileType::Unconfined, "")));
    let unconfined = f.run(&pod, c).await?;
    let label = "cat /proc/self/attr/current 2>/dev/null; true";
    if enabled {
        let shown = f.sh_ok(&default, label).await?;
        ensure!(shown.starts_with("crius-default"), "default: {shown:?}");
        let shown = f.sh_ok(&unconfined, label).await?;
        ensure!(shown.trim() == "unconfined", "unconfined: {shown:?}");
    }
    let absent = "crius-test-no-such-profile";
    let c = f.sleeper("absent", sc(profile(ProfileType::Localhost, absent)));
    let (code, needle) = if enabled {
        (
            tonic::Code::InvalidArgument,
            "config.linux.security_context.apparmor",
        )
    } else {
        (tonic::Code::FailedPrecondition, "AppArmor is not enabled")
    };
    f.refused(&pod, c, &[code], needle).await?;
    f.finish().await
}

async fn no_new_privs(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("nnp", Default::default()).await?;
    let cmd = [
        "sh",
        "-c",
        "grep NoNewPrivs /proc/$$/status; exec sleep 1000",
    ];
    let mut ids = Vec::new();
    for (name, set) in [("set", true), ("unset", false)] {
        let c = f.container(
            name,
            &cmd,
            v1::LinuxContainerSecurityContext {
                no_new_privs: set,
                ..Default::default()
            },
        );
        ids.push((name, f.run(&pod, c).await?, if set { "1" } else { "0" }));
    }
    for (name, id, want) in &ids {
        let log = f.log_with("nnp", name, "NoNewPrivs").await?;
        let got = status_fields(&log);
        ensure!(field(&got, "NoNewPrivs")? == *want, "{name}: {log}");
        let s = f.proc_status(id).await?;
        ensure!(field(&s, "NoNewPrivs")? == *want, "{name} (exec): {s:?}");
    }
    f.finish().await
}

fn gid_set(text: &str) -> anyhow::Result<BTreeSet<u32>> {
    text.split_whitespace()
        .map(|g| g.parse::<u32>().with_context(|| format!("{text:?}")))
        .collect()
}

async fn supplemental_groups(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("groups", Default::default()).await?;
    let c = f.sleeper(
        "alice",
        v1::LinuxContainerSecurityContext {
            run_as_username: "alice".into(),
            supplemental_groups: vec![4000, 5000, 50],
            ..Default::default()
        },
    );
    let alice = f.run(&pod, c).await?;
    let c = f.sleeper(
        "root",
        v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value { value: 0 }),
            supplemental_groups: vec![4000],
            ..Default::default()
        },
    );
    let root = f.run(&pod, c).await?;
    // alice: uid and primary gid from /etc/passwd, staff (50) from
    // /etc/group, then the requested groups.
    for (name, id, uid, gid, groups) in [
        ("alice", &alice, "1234", "1234", "50 1234 4000 5000"),
        ("root", &root, "0", "0", "0 4000"),
    ] {
        let s = f.proc_status(id).await?;
        ensure!(
            field(&s, "Uid")? == format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{name}: {s:?}"
        );
        ensure!(
            field(&s, "Gid")? == format!("{gid}\t{gid}\t{gid}\t{gid}"),
            "{name}: {s:?}"
        );
        ensure!(
            gid_set(field(&s, "Groups")?)? == gid_set(groups)?,
            "{name}: Groups {:?}, want {groups}",
            s.get("Groups")
        );
        let id_g = f.sh_ok(id, "id -G").await?;
        ensure!(
            gid_set(&id_g)? == gid_set(groups)?,
            "{name}: id -G {id_g:?}"
        );
    }
    let c = f.sleeper(
        "bad-group",
        v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value { value: 1 }),
            supplemental_groups: vec![5, -1],
            ..Default::default()
        },
    );
    f.refused(
        &pod,
        c,
        &[tonic::Code::InvalidArgument],
        "supplemental_groups[1]",
    )
    .await?;
    f.finish().await
}

/// `run_as_user` alone: the primary group and the memberships come from the
/// image's /etc/passwd and /etc/group (containerd's `WithUserID` and
/// `WithAdditionalGIDs`, and what `resolve_user` documents), never gid 0.
async fn run_as_user_takes_the_image_primary_group(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("uid-only", Default::default()).await?;
    let c = f.sleeper(
        "uid-only",
        v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value {
                value: i64::from(ti::ALICE_UID),
            }),
            ..Default::default()
        },
    );
    let id = f.run(&pod, c).await?;
    let s = f.proc_status(&id).await?;
    let gid = ti::ALICE_GID;
    let groups = format!("{} {}", ti::STAFF_GID, ti::ALICE_GID);
    ensure!(
        field(&s, "Uid")?.starts_with(&format!("{}\t", ti::ALICE_UID)),
        "{s:?}"
    );
    ensure!(
        field(&s, "Gid")? == format!("{gid}\t{gid}\t{gid}\t{gid}")
            && gid_set(field(&s, "Groups")?)? == gid_set(&groups)?,
        "run_as_user {} (alice in the image's /etc/passwd): want gid {gid}, groups {groups}; \
         got Gid {:?}, Groups {:?}",
        ti::ALICE_UID,
        s.get("Gid"),
        s.get("Groups")
    );
    f.finish().await
}

/// `readlink /proc/self/ns/pid` in a container.
async fn pid_ns_in(f: &mut Fixture, id: &str) -> anyhow::Result<String> {
    Ok(f.sh_ok(id, "readlink /proc/self/ns/pid")
        .await?
        .trim()
        .to_string())
}

fn pid_ns_of(pid: u64) -> anyhow::Result<String> {
    Ok(std::fs::read_link(format!("/proc/{pid}/ns/pid"))?
        .display()
        .to_string())
}

async fn pid_namespace_modes(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let me = pid_ns_of(u64::from(std::process::id()))?;
    let host_init = std::fs::read("/proc/1/cmdline")?;
    let pod = f.pod("pid-pod", Default::default()).await?;
    let host_pid_pod = f
        .pod(
            "pid-host",
            v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    pid: v1::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    let pause = pid_ns_of(pause_pid(&mut f.p.cri, &pod).await?)?;
    ensure!(pause != me, "the pod shares the host's PID namespace");

    let sc = |mode| v1::LinuxContainerSecurityContext {
        namespace_options: pid_mode(mode, ""),
        ..Default::default()
    };
    let c = f.container("in-pod", &["sleep", "1001"], sc(v1::NamespaceMode::Pod));
    let in_pod = f.run(&pod, c).await?;
    let c = f.container("own", &["sleep", "1002"], sc(v1::NamespaceMode::Container));
    let own = f.run(&pod, c).await?;
    let c = f.container("node", &["sleep", "1003"], sc(v1::NamespaceMode::Node));
    let node = f.run(&host_pid_pod, c).await?;
    let c = f.container(
        "pod-of-host",
        &["sleep", "1004"],
        sc(v1::NamespaceMode::Pod),
    );
    let pod_of_host = f.run(&host_pid_pod, c).await?;

    // POD: the pause process is PID 1.
    let init = f.exec(&in_pod, &["cat", "/proc/1/cmdline"]).await?;
    ensure!(init.code == 0 && init.stdout.contains("pause"), "{init:?}");
    ensure!(pid_ns_in(&mut f, &in_pod).await? == pause);
    // CONTAINER: a namespace of its own, its command is PID 1.
    let init = f.exec(&own, &["cat", "/proc/1/cmdline"]).await?;
    ensure!(init.stdout == "sleep\u{0}1002\u{0}", "{init:?}");
    let ns = pid_ns_in(&mut f, &own).await?;
    ensure!(ns != pause && ns != me, "{ns}");
    // Only its command and the exec'd shell live there.
    let ps = f.sh_ok(&own, "echo /proc/[0-9]*").await?;
    let pids: Vec<&str> = ps.split_whitespace().collect();
    ensure!(
        pids.len() == 2 && pids[0] == "/proc/1",
        "PIDs in its own namespace: {ps}"
    );
    // NODE (and POD in a host-PID pod): the host's namespace and init.
    for (name, id) in [("node", &node), ("pod-of-host", &pod_of_host)] {
        ensure!(pid_ns_in(&mut f, id).await? == me, "{name}");
        let init = f.exec(id, &["cat", "/proc/1/cmdline"]).await?;
        ensure!(
            init.stdout.as_bytes() == host_init.as_slice(),
            "{name}: PID 1 is {init:?}"
        );
    }
    // NODE in a pod with its own PID namespace follows the pod (less
    // access than asked, as containerd gives it).
    let c = f.container(
        "node-in-pod",
        &["sleep", "1005"],
        sc(v1::NamespaceMode::Node),
    );
    let node_in_pod = f.run(&pod, c).await?;
    ensure!(pid_ns_in(&mut f, &node_in_pod).await? == pause);
    f.finish().await
}

/// TARGET (kubectl debug --target): the container joins the PID namespace
/// of another container of the pod.
async fn pid_namespace_of_a_target_container(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("pid-target", Default::default()).await?;
    let c = f.container(
        "target",
        &["sleep", "1001"],
        v1::LinuxContainerSecurityContext {
            namespace_options: pid_mode(v1::NamespaceMode::Container, ""),
            ..Default::default()
        },
    );
    let target = f.run(&pod, c).await?;
    let c = f.container(
        "debugger",
        &["sleep", "1002"],
        v1::LinuxContainerSecurityContext {
            namespace_options: pid_mode(v1::NamespaceMode::Target, &target),
            ..Default::default()
        },
    );
    let debugger = f.run(&pod, c).await?;
    let init = f.exec(&debugger, &["cat", "/proc/1/cmdline"]).await?;
    ensure!(init.stdout == "sleep\u{0}1001\u{0}", "{init:?}");
    ensure!(pid_ns_in(&mut f, &debugger).await? == pid_ns_in(&mut f, &target).await?);
    // An unknown target is the caller's error.
    let c = f.sleeper(
        "no-target",
        v1::LinuxContainerSecurityContext {
            namespace_options: pid_mode(v1::NamespaceMode::Target, "0123456789abcdef"),
            ..Default::default()
        },
    );
    f.refused(
        &pod,
        c,
        &[tonic::Code::NotFound, tonic::Code::InvalidArgument],
        "0123456789abcdef",
    )
    .await?;
    f.finish().await
}

fn bind(container_path: &str, host_path: &Path, readonly: bool) -> v1::Mount {
    v1::Mount {
        container_path: container_path.into(),
        host_path: host_path.display().to_string(),
        readonly,
        ..Default::default()
    }
}

async fn bind_mounts_rw_ro_symlink_and_missing(env: Arc<Env>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = |p: &str| dir.path().join(p);
    for sub in ["rw", "ro", "target"] {
        std::fs::create_dir(d(sub))?;
        std::fs::write(d(sub).join("hello"), format!("{sub}-from-host"))?;
    }
    std::os::unix::fs::symlink(d("target"), d("link"))?;
    std::fs::write(d("file.conf"), "a file")?;
    let missing = d("missing/deeper");

    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("binds", Default::default()).await?;
    let mut c = f.sleeper("binds", Default::default());
    c.mounts = vec![
        bind("/data/rw", &d("rw"), false),
        bind("/data/ro", &d("ro"), true),
        bind("/data/link", &d("link"), false),
        bind("/data/missing", &missing, false),
        bind("/etc/custom.conf", &d("file.conf"), true),
    ];
    let id = f.run(&pod, c).await?;
    ensure!(
        missing.is_dir(),
        "the missing host path was not created as a directory"
    );

    let out = f
        .sh_ok(
            &id,
            "cat /data/rw/hello; echo; cat /data/ro/hello; echo; cat /data/link/hello; echo; cat /etc/custom.conf",
        )
        .await?;
    ensure!(
        out == "rw-from-host\nro-from-host\ntarget-from-host\na file",
        "{out:?}"
    );
    // rw: a write reaches the host.
    f.sh_ok(&id, "echo from-container > /data/rw/new").await?;
    ensure!(std::fs::read_to_string(d("rw/new"))? == "from-container\n");
    // ro: refused.
    for target in ["/data/ro/new", "/etc/custom.conf"] {
        let out = f.sh(&id, &format!("echo x > {target}")).await?;
        ensure!(
            out.code != 0 && out.stderr.contains("Read-only file system"),
            "{target}: {out:?}"
        );
    }
    ensure!(!d("ro/new").exists() && std::fs::read_to_string(d("file.conf"))? == "a file");
    // The symlink was resolved: what the host adds to its target shows, what
    // the container writes lands there.
    std::fs::write(d("target/later"), "later")?;
    ensure!(f.sh_ok(&id, "cat /data/link/later").await? == "later");
    f.sh_ok(&id, "echo via-link > /data/link/back").await?;
    ensure!(std::fs::read_to_string(d("target/back"))? == "via-link\n");
    // The created directory is mounted.
    f.sh_ok(&id, "echo m > /data/missing/m").await?;
    ensure!(std::fs::read_to_string(missing.join("m"))? == "m\n");
    let m = f.mounts(&id).await?;
    for (p, ro) in [
        ("/data/rw", false),
        ("/data/ro", true),
        ("/data/link", false),
        ("/data/missing", false),
        ("/etc/custom.conf", true),
    ] {
        let (options, _) = m
            .get(p)
            .with_context(|| format!("{p} not mounted: {m:?}"))?;
        ensure!(read_only(options) == ro, "{p} mounted {options}");
    }
    f.finish().await
}

async fn mount_propagation(env: Arc<Env>) -> anyhow::Result<()> {
    let hd = HostDir::new()?;
    let shared = hd.tmpfs("shared", "--make-shared")?;
    let private = hd.tmpfs("private", "--make-private")?;
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("propagation", Default::default()).await?;

    let mount = |path: &str, host_path: &str, p: v1::MountPropagation| v1::Mount {
        container_path: path.into(),
        host_path: host_path.into(),
        propagation: p as i32,
        ..Default::default()
    };
    let mut c = f.sleeper("slave", Default::default());
    c.mounts = vec![mount(
        "/prop",
        &shared,
        v1::MountPropagation::PropagationHostToContainer,
    )];
    let slave = f.run(&pod, c).await?;
    let mut c = f.sleeper(
        "bidi",
        v1::LinuxContainerSecurityContext {
            capabilities: caps(&["SYS_ADMIN"], &[]),
            ..Default::default()
        },
    );
    c.mounts = vec![mount(
        "/bidi",
        &shared,
        v1::MountPropagation::PropagationBidirectional,
    )];
    let bidi = f.run(&pod, c).await?;

    let m = f.mounts(&slave).await?;
    let (_, optional) = m.get("/prop").context("/prop not mounted")?;
    ensure!(
        optional.contains("master:"),
        "/prop is not a slave: {optional:?}"
    );
    let m = f.mounts(&bidi).await?;
    let (_, optional) = m.get("/bidi").context("/bidi not mounted")?;
    ensure!(
        optional.contains("shared:"),
        "/bidi is not shared: {optional:?}"
    );

    // Host → container: a mount made on the host later shows in both.
    let late = hd.join("shared/late");
    std::fs::create_dir(&late)?;
    let late_s = late.display().to_string();
    host(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "crius-sec-late",
        &late_s,
    ])?;
    std::fs::write(late.join("f"), "from-host")?;
    for (name, id, at) in [("slave", &slave, "/prop"), ("bidi", &bidi, "/bidi")] {
        let out = f.sh(id, &format!("cat {at}/late/f")).await?;
        ensure!(
            out.code == 0 && out.stdout == "from-host",
            "{name}: {out:?}"
        );
    }
    // Container → host (and on to the slave): a mount made in the
    // bidirectional container.
    f.sh_ok(
        &bidi,
        "mkdir /bidi/inner && mount -t tmpfs -o size=1m crius-sec-inner /bidi/inner && echo from-container > /bidi/inner/f",
    )
    .await?;
    let inner = hd.join("shared/inner");
    let on_host = mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?);
    ensure!(
        on_host.contains_key(&inner.display().to_string()),
        "the container's mount did not reach the host"
    );
    ensure!(std::fs::read_to_string(inner.join("f"))? == "from-container\n");
    let out = f.sh(&slave, "cat /prop/inner/f").await?;
    ensure!(out.code == 0 && out.stdout == "from-container\n", "{out:?}");

    // A private host mount supports neither.
    for (name, p) in [
        (
            "bidi-private",
            v1::MountPropagation::PropagationBidirectional,
        ),
        (
            "slave-private",
            v1::MountPropagation::PropagationHostToContainer,
        ),
    ] {
        let mut c = f.sleeper(name, Default::default());
        c.mounts = vec![mount("/x", &private, p)];
        f.refused(&pod, c, &[tonic::Code::InvalidArgument], &private)
            .await?;
    }
    let result = f.finish().await;
    let root = hd.dir.path().display().to_string();
    drop(hd);
    let left: Vec<String> = mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?)
        .into_keys()
        .filter(|p| p.starts_with(&root))
        .collect();
    ensure!(left.is_empty(), "test mounts left on the host: {left:?}");
    result
}

async fn devices_from_the_request(env: Arc<Env>) -> anyhow::Result<()> {
    let mut f = Fixture::start(&env).await?;
    let pod = f.pod("devices", Default::default()).await?;
    let device = |container_path: &str, host_path: &str, permissions: &str| v1::Device {
        container_path: container_path.into(),
        host_path: host_path.into(),
        permissions: permissions.into(),
    };
    // A missing host device is the caller's error, named, and leaves
    // nothing behind.
    let absent = "/dev/crius-test-no-such-device";
    let mut c = f.sleeper("absent", Default::default());
    c.devices = vec![device("/dev/absent", absent, "rwm")];
    f.refused(
        &pod,
        c,
        &[
            tonic::Code::InvalidArgument,
            tonic::Code::NotFound,
            tonic::Code::FailedPrecondition,
        ],
        absent,
    )
    .await?;

    // A device runc does not allow by default (it allows /dev/null, zero
    // and co. whatever the rules say), harmless to open: read only.
    let (limited, numbers) = ["/dev/loop-control", "/dev/fuse"]
        .iter()
        .find_map(|p| {
            let out = host(&["stat", "-c", "%F %t:%T", p]).ok()?;
            let n = out.trim().strip_prefix("character special file ")?;
            Some((p.to_string(), n.to_string()))
        })
        .context("the host has neither /dev/loop-control nor /dev/fuse")?;
    let mut c = f.sleeper("devices", Default::default());
    c.devices = vec![
        device("/dev/mynull", "/dev/null", "rwm"),
        device("/dev/limited", &limited, "r"),
    ];
    let id = f.run(&pod, c).await?;
    let out = f
        .sh_ok(&id, "stat -c '%F %t:%T' /dev/mynull /dev/limited")
        .await?;
    ensure!(
        out == format!("character special file 1:3\ncharacter special file {numbers}\n"),
        "{out:?}"
    );
    let out = f
        .sh_ok(
            &id,
            "echo hi > /dev/mynull && true < /dev/limited && echo ok",
        )
        .await?;
    ensure!(out.trim() == "ok", "{out:?}");
    // "r" only: the device cgroup refuses an open for writing.
    let out = f.sh(&id, ": > /dev/limited").await?;
    ensure!(
        out.code != 0 && out.stderr.contains("Operation not permitted"),
        "{limited} opened for writing with permissions \"r\": {out:?}"
    );
    f.finish().await
}
