//! Pinned IPC and UTS namespaces for pods without a pause process, and work
//! inside a pinned network namespace.
//!
//! A pod of a runc-family handler runs no pause process: [`pin`] creates the
//! pod's IPC and UTS namespaces, sets its hostname and namespaced sysctls in
//! them, and pins them by bind-mounting their nsfs inodes onto empty files,
//! `dir/<name>.ipc` and `dir/<name>.uts`, as [`netns::create`] pins network
//! namespaces (same directory set-up, same shared propagation). Containers
//! join them by path; [`netns::remove`] unpins and deletes them, and
//! [`netns::is_pinned`] tells whether a pin is live.
//!
//! Nothing here switches the calling thread into another namespace: every
//! `unshare` and `setns` happens on a dedicated OS thread that exits right
//! after, so the threads of the async runtime stay in the host's namespaces.
//! Sysctls are written from that thread, because the kernel resolves the
//! IPC, UTS and network entries of `/proc/sys` against the namespaces of the
//! writing thread (not the process's), and namespace files are taken from
//! `/proc/thread-self` (`/proc/self` is the main thread's, the host's).
//!
//! All functions block (a thread spawn, `unshare`/`setns`, a few mounts and
//! writes: about a millisecond); async callers use `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crius_core::sandbox::{SysctlNamespace, sysctl_namespace};
use crius_core::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

use crate::netns;

/// What to pin for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinPlan {
    /// A new IPC namespace, pinned at `dir/<name>.ipc`.
    pub ipc: bool,
    /// A new UTS namespace, pinned at `dir/<name>.uts`.
    pub uts: bool,
    /// Set with `sethostname` inside the new UTS namespace (only with `uts`).
    pub hostname: Option<String>,
    /// Sysctls written inside the new namespaces, as (dotted name, value),
    /// validated and normalized by crius-core: the IPC ones (`kernel.shm*`,
    /// `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`) need `ipc`,
    /// `kernel.domainname` needs `uts`.
    pub sysctls: Vec<(String, String)>,
}

/// The pins [`pin`] made, one per namespace asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

/// Creates the namespaces of `plan`, sets its hostname and sysctls in them
/// and pins them at `dir/<name>.ipc` and `dir/<name>.uts`; `dir` is created
/// (0755) if needed and made a shared mount point, like [`netns::create`]
/// does. Fails with `AlreadyExists` if a pin exists, with `InvalidArgument`
/// for a bad `name` (before touching anything) or a sysctl value or
/// hostname the kernel refuses, and with `Internal` for a sysctl or hostname
/// of a namespace `plan` does not create. On failure everything made is
/// removed first. A plan that asks for nothing returns empty [`Pins`].
pub fn pin(dir: &Path, name: &str, plan: &PinPlan) -> Result<Pins> {
    netns::check_name("namespace pin name", name)?;
    let sysctls = plan_sysctls(plan)?;
    if !plan.ipc && !plan.uts {
        return Ok(Pins::default());
    }
    netns::make_pin_dir(dir)?;
    let pins = Pins {
        ipc: plan.ipc.then(|| dir.join(format!("{name}.ipc"))),
        uts: plan.uts.then(|| dir.join(format!("{name}.uts"))),
    };
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWIPC, plan.ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, plan.uts);
    let mut made: Vec<&Path> = Vec::new();
    let result = (|| {
        for (path, kind) in [(&pins.ipc, "IPC namespace"), (&pins.uts, "UTS namespace")] {
            if let Some(path) = path {
                netns::make_pin_file(path, kind)?;
                made.push(path);
            }
        }
        on_thread("crius-pins", || {
            new_namespaces(flags, plan.hostname.as_deref(), &sysctls, &pins)
        })
    })();
    if let Err(e) = result {
        for path in made {
            if let Err(rm) = netns::remove(path) {
                tracing::warn!(pin = %path.display(), error = %rm, "cannot remove a namespace pin after a failed pin");
            }
        }
        return Err(e);
    }
    tracing::debug!(?pins, "pinned pod namespaces");
    Ok(pins)
}

/// The sysctls of `plan`, checked against the namespaces it creates.
fn plan_sysctls(plan: &PinPlan) -> Result<Vec<Sysctl<'_>>> {
    if plan.hostname.is_some() && !plan.uts {
        return Err(Error::Internal(
            "a pod hostname without a new UTS namespace to set it in".into(),
        ));
    }
    plan.sysctls
        .iter()
        .map(|(name, value)| {
            let sysctl = Sysctl::new(name, value)?;
            let refused = match sysctl_namespace(name) {
                Some(SysctlNamespace::Ipc) if plan.ipc => None,
                Some(SysctlNamespace::Uts) if plan.uts => None,
                Some(SysctlNamespace::Ipc) => {
                    Some("needs a new IPC namespace, which the plan lacks")
                }
                Some(SysctlNamespace::Uts) => {
                    Some("needs a new UTS namespace, which the plan lacks")
                }
                Some(SysctlNamespace::Net) => {
                    Some("belongs to the network namespace (net_sysctls)")
                }
                None => Some("is not a namespaced sysctl"),
            };
            if let Some(why) = refused {
                return Err(Error::Internal(format!("sysctl {name} {why}")));
            }
            Ok(sysctl)
        })
        .collect()
}

/// Body of the dedicated thread of [`pin`]: moves this thread (only) into
/// new namespaces, configures them and pins them on the empty files of
/// `pins`. The thread exits right after.
fn new_namespaces(
    flags: CloneFlags,
    hostname: Option<&str>,
    sysctls: &[Sysctl],
    pins: &Pins,
) -> Result<()> {
    nix::sched::unshare(flags).map_err(|e| {
        Error::io(
            format!("unshare({flags:?}) for new pod namespaces"),
            io::Error::from(e),
        )
    })?;
    if let Some(hostname) = hostname {
        nix::unistd::sethostname(hostname).map_err(|e| match e {
            Errno::EINVAL => Error::invalid(
                "config.hostname",
                format!("the kernel refused {hostname:?}: {e}"),
            ),
            _ => Error::io(
                format!("sethostname({hostname:?}) in the pod's UTS namespace"),
                io::Error::from(e),
            ),
        })?;
    }
    sysctls.iter().try_for_each(Sysctl::write)?;
    for (pin, ns) in [(&pins.ipc, "ipc"), (&pins.uts, "uts")] {
        if let Some(pin) = pin {
            let source = format!("/proc/thread-self/ns/{ns}");
            nix::mount::mount(
                Some(source.as_str()),
                pin,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                Error::io(
                    format!("bind-mount {source} onto {}", pin.display()),
                    io::Error::from(e),
                )
            })?;
        }
    }
    Ok(())
}

/// Writes `sysctls` (`net.*` names, validated and normalized by crius-core)
/// inside the network namespace pinned at `netns`, from a dedicated thread
/// that joins it. Errors as for [`pin`]; an empty list does nothing.
pub fn net_sysctls(netns: &Path, sysctls: &[(String, String)]) -> Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let sysctls = sysctls
        .iter()
        .map(|(name, value)| match sysctl_namespace(name) {
            Some(SysctlNamespace::Net) => Sysctl::new(name, value),
            _ => Err(Error::Internal(format!(
                "sysctl {name} does not belong to the network namespace"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let ns = File::open(netns)
        .map_err(|e| Error::io(format!("open network namespace {}", netns.display()), e))?;
    on_thread("crius-netns-sysctl", || {
        enter(&ns, netns, CloneFlags::CLONE_NEWNET)?;
        sysctls.iter().try_for_each(Sysctl::write)
    })
}

/// Reads `file` as seen from inside the network namespace at `netns` (for
/// `/proc/thread-self/net/dev`: `/proc/net` is the main thread's), from a
/// dedicated thread that joins it. `None` when `netns` cannot be opened or
/// is not a namespace (e.g. a pin already removed).
pub fn read_in_netns(netns: &Path, file: &Path) -> Result<Option<String>> {
    read_in(netns, CloneFlags::CLONE_NEWNET, file)
}

/// [`read_in_netns`] for a namespace of type `kind`.
fn read_in(ns_path: &Path, kind: CloneFlags, file: &Path) -> Result<Option<String>> {
    let Ok(ns) = File::open(ns_path) else {
        return Ok(None);
    };
    // On the open file: the pin may be removed between a check and an open.
    if !fstatfs(&ns).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC) {
        return Ok(None);
    }
    on_thread("crius-ns-read", || {
        enter(&ns, ns_path, kind)?;
        std::fs::read_to_string(file).map(Some).map_err(|e| {
            Error::io(
                format!("read {} in namespace {}", file.display(), ns_path.display()),
                e,
            )
        })
    })
}

/// Moves the calling thread into the namespace `ns` (opened from `path`).
/// Only for the dedicated threads of this module.
fn enter(ns: &File, path: &Path, kind: CloneFlags) -> Result<()> {
    nix::sched::setns(ns, kind).map_err(|e| {
        Error::io(
            format!("setns({kind:?}) into {}", path.display()),
            io::Error::from(e),
        )
    })
}

/// Runs `f` on a new OS thread named `name` and returns its result; the
/// thread has exited when this returns, taking any namespace it entered.
fn on_thread<T: Send>(name: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, f)
            .map_err(|e| Error::io(format!("spawn thread {name}"), e))?
            .join()
            .map_err(|_| Error::Internal(format!("thread {name} panicked")))?
    })
}

/// One sysctl to write, with its `/proc/sys` file.
#[derive(Debug)]
struct Sysctl<'a> {
    name: &'a str,
    value: &'a str,
    path: PathBuf,
}

impl<'a> Sysctl<'a> {
    /// Maps the dotted `name` to its file like runc does: dots become
    /// slashes and slashes (a dot inside a component, in the dotted form)
    /// become dots. Refuses a name that would leave its directory (an empty,
    /// `.` or `..` component), a second line of defence behind crius-core.
    fn new(name: &'a str, value: &'a str) -> Result<Self> {
        let rel: String = name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect();
        if name.contains('\0')
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::invalid(
                format!("config.linux.sysctls[{name:?}]"),
                "not a sysctl name: an empty, `.` or `..` component",
            ));
        }
        Ok(Sysctl {
            name,
            value,
            path: Path::new("/proc/sys").join(rel),
        })
    }

    /// Writes the value, from the calling thread's namespaces.
    fn write(&self) -> Result<()> {
        let (name, value) = (self.name, self.value);
        let fail = |e: io::Error| match e.raw_os_error().map(Errno::from_raw) {
            Some(errno @ (Errno::EINVAL | Errno::ERANGE | Errno::ENOENT)) => Error::invalid(
                format!("config.linux.sysctls[{name:?}]"),
                format!("the kernel refused the value {value:?}: {errno}"),
            ),
            _ => Error::io(format!("write sysctl {name} ({})", self.path.display()), e),
        };
        OpenOptions::new()
            .write(true)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&self.path)
            .map_err(fail)?
            .write_all(value.as_bytes())
            .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// A temporary pin directory: unpins and deletes whatever is in it, and
    /// unmounts its self bind mount, when dropped (even after a failure).
    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            assert!(nix::unistd::geteuid().is_root(), "needs root");
            Dir(tempfile::tempdir().expect("tempdir"))
        }
        fn path(&self) -> PathBuf {
            self.0.path().join("ns")
        }
        fn entries(&self) -> Vec<PathBuf> {
            std::fs::read_dir(self.path())
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            for pin in self.entries() {
                let _ = netns::remove(&pin);
            }
            while nix::mount::umount2(&self.path(), nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        }
    }

    fn ino(path: impl AsRef<Path>) -> u64 {
        std::fs::metadata(path).expect("stat").ino()
    }

    fn host(file: &str) -> String {
        std::fs::read_to_string(file)
            .expect(file)
            .trim()
            .to_string()
    }

    /// `file` read from inside the namespace pinned at `pin`.
    fn inside(pin: &Path, kind: CloneFlags, file: &str) -> String {
        read_in(pin, kind, Path::new(file))
            .expect("read")
            .expect("pinned")
            .trim()
            .to_string()
    }

    fn sysctls(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn plan(sysctl_list: &[(&str, &str)]) -> PinPlan {
        PinPlan {
            ipc: true,
            uts: true,
            hostname: Some("pinned-test".into()),
            sysctls: sysctls(sysctl_list),
        }
    }

    fn field_of(err: &Error) -> &str {
        match err {
            Error::InvalidArgument { field, .. } => field,
            _ => panic!("not INVALID_ARGUMENT: {err}"),
        }
    }

    #[test]
    fn pin_makes_configured_namespaces_and_leaves_the_host_alone() {
        let d = Dir::new();
        let host_files = [
            "/proc/sys/kernel/hostname",
            "/proc/sys/kernel/domainname",
            "/proc/sys/kernel/shmmni",
        ];
        let before = host_files.map(host);
        let own = ["ipc", "uts"].map(|ns| ino(format!("/proc/thread-self/ns/{ns}")));
        assert_ne!(before[2], "1234", "pick another test value");

        let p = plan(&[
            ("kernel.shmmni", "1234"),
            ("kernel.domainname", "example.test"),
        ]);
        let pins = pin(&d.path(), "pod-a", &p).expect("pin");
        assert_eq!(
            pins,
            Pins {
                ipc: Some(d.path().join("pod-a.ipc")),
                uts: Some(d.path().join("pod-a.uts")),
            }
        );
        let (ipc, uts) = (pins.ipc.expect("ipc"), pins.uts.expect("uts"));
        for (pin, ns) in [(&ipc, "ipc"), (&uts, "uts")] {
            assert!(netns::is_pinned(pin), "{ns}");
            assert_ne!(ino(pin), ino(format!("/proc/self/ns/{ns}")), "{ns}: new");
        }
        assert_ne!(ino(&ipc), ino(&uts));

        let hostname = inside(&uts, CloneFlags::CLONE_NEWUTS, "/proc/sys/kernel/hostname");
        assert_eq!(hostname, "pinned-test");
        let domain = inside(
            &uts,
            CloneFlags::CLONE_NEWUTS,
            "/proc/sys/kernel/domainname",
        );
        assert_eq!(domain, "example.test");
        let shmmni = inside(&ipc, CloneFlags::CLONE_NEWIPC, "/proc/sys/kernel/shmmni");
        assert_eq!(shmmni, "1234");

        assert_eq!(host_files.map(host), before, "the host's values changed");
        let now = ["ipc", "uts"].map(|ns| ino(format!("/proc/thread-self/ns/{ns}")));
        assert_eq!(now, own, "the calling thread moved");

        netns::remove(&ipc).expect("remove ipc");
        netns::remove(&uts).expect("remove uts");
        assert!(!ipc.exists() && !uts.exists());
        assert_eq!(
            read_in(&uts, CloneFlags::CLONE_NEWUTS, Path::new("/")).ok(),
            Some(None)
        );
    }

    #[test]
    fn values_the_kernel_refuses_are_invalid_argument_and_leave_nothing() {
        let d = Dir::new();
        for (name, value) in [
            ("kernel.shmmni", "not-a-number"),
            ("fs.mqueue.no_such_sysctl", "1"),
        ] {
            let p = plan(&[("kernel.domainname", "example.test"), (name, value)]);
            let err = pin(&d.path(), "pod-b", &p).expect_err(name);
            assert_eq!(field_of(&err), format!("config.linux.sysctls[{name:?}]"));
            assert!(err.to_string().contains(value), "{err}");
            assert_eq!(d.entries(), Vec::<PathBuf>::new(), "{name}");
        }
        let long = PinPlan {
            hostname: Some("h".repeat(65)),
            ..plan(&[])
        };
        let err = pin(&d.path(), "pod-b", &long).expect_err("long hostname");
        assert_eq!(field_of(&err), "config.hostname");
        assert_eq!(d.entries(), Vec::<PathBuf>::new());
    }

    #[test]
    fn bad_names_and_plans_are_refused_before_touching_anything() {
        let d = Dir::new();
        for name in ["", ".", "..", "a/b"] {
            let err = pin(&d.path(), name, &plan(&[])).expect_err(name);
            assert_eq!(field_of(&err), "namespace pin name", "{name:?}");
        }
        // `/` is a dot inside a component: these are `.`, `..` and empty.
        for name in [
            "fs.mqueue./",
            "fs.mqueue.//",
            "kernel..shmmni",
            "fs.mqueue.msg_max.",
        ] {
            let err = pin(&d.path(), "pod-c", &plan(&[(name, "1")])).expect_err(name);
            assert_eq!(field_of(&err), format!("config.linux.sysctls[{name:?}]"));
        }
        let internal = [
            PinPlan {
                ipc: false,
                ..plan(&[("kernel.shmmax", "1")])
            },
            PinPlan {
                uts: false,
                hostname: None,
                ..plan(&[("kernel.domainname", "x")])
            },
            plan(&[("net.ipv4.ping_group_range", "0 0")]),
            plan(&[("kernel.core_pattern", "x")]),
            PinPlan {
                uts: false,
                ..plan(&[])
            },
        ];
        for p in internal {
            let err = pin(&d.path(), "pod-c", &p).expect_err("internal");
            assert!(matches!(err, Error::Internal(_)), "{p:?}: {err}");
        }
        assert!(!d.path().exists());
    }

    #[test]
    fn an_empty_plan_pins_nothing() {
        let d = Dir::new();
        let pins = pin(&d.path(), "pod-d", &PinPlan::default()).expect("pin");
        assert_eq!(pins, Pins::default());
        assert!(!d.path().exists());
        net_sysctls(&d.path().join("missing"), &[]).expect("no sysctls");
    }

    #[test]
    fn an_existing_pin_is_kept_and_the_new_ones_undone() {
        let d = Dir::new();
        let first = PinPlan {
            uts: true,
            ..PinPlan::default()
        };
        let pins = pin(&d.path(), "pod-e", &first).expect("pin");
        let uts = pins.uts.expect("uts");
        let err = pin(&d.path(), "pod-e", &plan(&[])).expect_err("exists");
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(d.entries(), vec![uts.clone()]);
        assert!(netns::is_pinned(&uts));
        netns::remove(&uts).expect("remove");
    }

    #[test]
    fn net_sysctls_and_reads_happen_inside_the_network_namespace() {
        let d = Dir::new();
        let port_start = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
        let host_port_start = host(port_start);
        let host_dev = host("/proc/thread-self/net/dev");
        let ns = netns::create(&d.path(), "net-a").expect("netns");
        let read = |file: &str| {
            read_in_netns(&ns, Path::new(file))
                .expect("read")
                .expect("pinned")
        };
        assert_eq!(read(port_start).trim(), "1024");

        let list = sysctls(&[
            ("net.ipv4.ip_unprivileged_port_start", "1000"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ]);
        net_sysctls(&ns, &list).expect("net sysctls");
        assert_eq!(read(port_start).trim(), "1000");
        let range = read("/proc/sys/net/ipv4/ping_group_range");
        assert_eq!(
            range.split_whitespace().collect::<Vec<_>>(),
            ["0", "2147483647"]
        );
        assert_eq!(
            host(port_start),
            host_port_start,
            "the host's value changed"
        );

        // Only a loopback device inside, none of the host's.
        let devices = |table: &str| -> Vec<String> {
            let names = table.lines().skip(2).filter_map(|l| l.split(':').next());
            names.map(|n| n.trim().to_string()).collect()
        };
        let host_devices = devices(&host_dev);
        assert!(host_devices.iter().any(|n| n != "lo"), "{host_dev}");
        assert_eq!(devices(&read("/proc/thread-self/net/dev")), ["lo"]);

        for (name, value) in [
            ("net.ipv4.ip_unprivileged_port_start", "not-a-number"),
            ("net.ipv4.no_such_sysctl", "1"),
        ] {
            let err = net_sysctls(&ns, &sysctls(&[(name, value)])).expect_err(name);
            assert_eq!(field_of(&err), format!("config.linux.sysctls[{name:?}]"));
        }
        let err = net_sysctls(&ns, &sysctls(&[("kernel.shmmax", "1")])).expect_err("ipc");
        assert!(matches!(err, Error::Internal(_)), "{err}");

        netns::remove(&ns).expect("remove");
        assert_eq!(read_in_netns(&ns, Path::new("/")).ok(), Some(None));
        assert!(net_sysctls(&ns, &list).is_err());
        let plain = d.0.path().join("plain");
        std::fs::write(&plain, "").expect("write");
        assert_eq!(read_in_netns(&plain, Path::new("/")).ok(), Some(None));
    }
}
