//! Seccomp profiles: crius' `RuntimeDefault` and `Localhost` profiles, both
//! read in moby's profile format and turned into the OCI `linux.seccomp`.
//!
//! moby's format is the OCI one (`defaultAction`, `architectures`,
//! `syscalls`...) plus conditions: a rule applies only when the container
//! has all of `includes.caps`, runs on one of `includes.arches`, on a kernel
//! of at least `includes.minKernel`, and has none of `excludes.caps` nor
//! runs on `excludes.arches`; `archMap` lists architectures by native one.
//! The conditions are evaluated here against the container's bounding
//! capability set, the architecture crius was built for and the kernel
//! version. A plain OCI profile (as containerd loads for `Localhost`) has
//! none of them and comes out as written. Unknown fields are refused: a
//! misspelt `includes` must not turn a conditional allow into an
//! unconditional one.
//!
//! The `RuntimeDefault` profile (`profiles/default.json`) is moby's default
//! without the io_uring syscalls. Without `CAP_SYS_ADMIN` it refuses
//! `mount`, `unshare`, `setns`, `sethostname`, `setdomainname`, namespace
//! flags to `clone` and (with ENOSYS) `clone3`.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::caps::capability_name;
use crate::{Error, Result};

/// crius' `RuntimeDefault` profile, in moby's format.
pub const DEFAULT_PROFILE_JSON: &str = include_str!("profiles/default.json");

/// The field of a `Localhost` profile, for errors.
const LOCALHOST_FIELD: &str = "config.linux.security_context.seccomp.localhost_ref";

/// The platform a profile is evaluated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// Go's name of the architecture (`amd64`, `arm64`...), as moby's
    /// `includes.arches` use.
    pub go_arch: &'static str,
    /// The native seccomp architecture, to pick from `archMap`.
    pub native: Option<Arch>,
}

impl Platform {
    /// The platform crius was built for.
    pub fn current() -> Platform {
        let (go_arch, native) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
            "x86" => ("386", Some(Arch::ScmpArchX86)),
            "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
            "arm" => ("arm", Some(Arch::ScmpArchArm)),
            "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
            "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
            "powerpc64" if cfg!(target_endian = "little") => {
                ("ppc64le", Some(Arch::ScmpArchPpc64le))
            }
            "powerpc64" => ("ppc64", Some(Arch::ScmpArchPpc64)),
            "mips64" if cfg!(target_endian = "little") => {
                ("mips64le", Some(Arch::ScmpArchMipsel64))
            }
            "mips64" => ("mips64", Some(Arch::ScmpArchMips64)),
            "loongarch64" => ("loong64", Some(Arch::ScmpArchLoongarch64)),
            other => (other, None),
        };
        Platform { go_arch, native }
    }
}

/// What the conditions of a profile are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Conditions<'a> {
    /// The container's bounding set.
    pub capabilities: &'a [Capability],
    /// `(major, minor)` of the running kernel; `None` when unknown, which
    /// fails every `minKernel` condition (the restrictive choice).
    pub kernel_version: Option<(u32, u32)>,
    pub platform: Platform,
}

/// crius' `RuntimeDefault` profile for a container with `conditions`.
pub fn runtime_default(conditions: &Conditions<'_>) -> Result<LinuxSeccomp> {
    let profile: Profile = serde_json::from_str(DEFAULT_PROFILE_JSON)
        .map_err(|e| Error::Internal(format!("the built-in seccomp profile: {e}")))?;
    evaluate(profile, conditions)
        .map_err(|e| Error::Internal(format!("the built-in seccomp profile: {e}")))
}

/// The `Localhost` profile whose JSON (OCI or moby format) the caller read
/// from the path the request names. Errors are
/// [`Error::InvalidArgument`] on `seccomp.localhost_ref`.
///
/// containerd refuses such a file too (its profile loader fails the create):
/// a profile that does not parse cannot confine anything, and running the
/// container unconfined instead would give less than asked.
pub fn localhost(json: &str, conditions: &Conditions<'_>) -> Result<LinuxSeccomp> {
    let profile: Profile = serde_json::from_str(json).map_err(|e| {
        Error::invalid(
            LOCALHOST_FIELD,
            format!("the profile is not a valid seccomp profile: {e}"),
        )
    })?;
    evaluate(profile, conditions).map_err(|e| {
        Error::invalid(
            LOCALHOST_FIELD,
            format!("the profile is not a valid seccomp profile: {e}"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Syscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// moby's `setupSeccomp`, with the conditions as inputs.
fn evaluate(profile: Profile, c: &Conditions<'_>) -> Result<LinuxSeccomp, String> {
    let caps: Vec<String> = c
        .capabilities
        .iter()
        .map(|cap| capability_name(*cap))
        .collect();
    let architectures = architectures(profile.architectures, profile.arch_map, c.platform.native)?;
    let mut syscalls = Vec::new();
    for (i, call) in profile.syscalls.unwrap_or_default().into_iter().enumerate() {
        if let Some(rule) = syscall_rule(i, call, &caps, c)? {
            syscalls.push(rule);
        }
    }

    let mut out = LinuxSeccompBuilder::default().default_action(profile.default_action);
    if let Some(errno) = profile.default_errno_ret {
        out = out.default_errno_ret(errno);
    }
    if !architectures.is_empty() {
        out = out.architectures(architectures);
    }
    if let Some(flags) = profile.flags.filter(|f| !f.is_empty()) {
        out = out.flags(flags);
    }
    if let Some(path) = profile.listener_path.filter(|p| !p.is_empty()) {
        out = out.listener_path(path);
    }
    if let Some(meta) = profile.listener_metadata.filter(|m| !m.is_empty()) {
        out = out.listener_metadata(meta);
    }
    if !syscalls.is_empty() {
        out = out.syscalls(syscalls);
    }
    out.build().map_err(|e| e.to_string())
}

/// The profile's architectures: `architectures` as written, or the
/// `archMap` entry of the native architecture with its sub-architectures
/// (none when the map has no entry for it); not both.
fn architectures(
    architectures: Option<Vec<Arch>>,
    arch_map: Option<Vec<ArchMap>>,
    native: Option<Arch>,
) -> Result<Vec<Arch>, String> {
    Ok(match (architectures, arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            return Err("both 'architectures' and 'archMap' are set; use one".into());
        }
        (_, Some(map)) if !map.is_empty() => map
            .into_iter()
            .find(|m| Some(m.architecture) == native)
            .map(|m| {
                let mut arches = vec![m.architecture];
                arches.extend(m.sub_architectures.unwrap_or_default());
                arches
            })
            .unwrap_or_default(),
        (a, _) => a.unwrap_or_default(),
    })
}

/// The OCI rule of `syscalls[i]`, or `None` when its conditions leave it
/// out for this container.
fn syscall_rule(
    i: usize,
    call: Syscall,
    caps: &[String],
    c: &Conditions<'_>,
) -> Result<Option<LinuxSyscall>, String> {
    let names = syscall_names(i, call.name, call.names)?;
    let includes = call.includes.unwrap_or_default();
    let excludes = call.excludes.unwrap_or_default();
    if !applies(i, &includes, &excludes, caps, c)? {
        return Ok(None);
    }
    let mut rule = LinuxSyscallBuilder::default()
        .names(names)
        .action(call.action);
    if let Some(errno) = call.errno_ret {
        rule = rule.errno_ret(errno);
    }
    if let Some(args) = call.args.filter(|a| !a.is_empty()) {
        rule = rule.args(args);
    }
    rule.build().map(Some).map_err(|e| e.to_string())
}

/// The syscalls a rule names: `name` or `names`, not both, at least one.
fn syscall_names(
    i: usize,
    name: Option<String>,
    names: Option<Vec<String>>,
) -> Result<Vec<String>, String> {
    let names = match (name, names) {
        (Some(_), Some(names)) if !names.is_empty() => {
            return Err(format!(
                "syscalls[{i}] sets both 'name' and 'names'; use 'names'"
            ));
        }
        (Some(name), _) => vec![name],
        (None, Some(names)) => names,
        (None, None) => vec![],
    };
    if names.is_empty() {
        return Err(format!("syscalls[{i}] names no syscall"));
    }
    Ok(names)
}

/// Whether rule `i` applies to the container: none of the excluded
/// capabilities nor an excluded architecture (checked first, as moby does:
/// an excluded rule's `minKernel` is not looked at), then all the included
/// capabilities, one of the included architectures (if any) and at least
/// the included kernel.
fn applies(
    i: usize,
    includes: &Filter,
    excludes: &Filter,
    caps: &[String],
    c: &Conditions<'_>,
) -> Result<bool, String> {
    let has = |cap: &String| caps.iter().any(|c| c.eq_ignore_ascii_case(cap));
    let on = |arches: &Option<Vec<String>>| {
        arches
            .iter()
            .flatten()
            .any(|a| a.as_str() == c.platform.go_arch)
    };
    if excludes.caps.iter().flatten().any(has) || on(&excludes.arches) {
        return Ok(false);
    }
    if excludes.min_kernel.is_some() {
        return Err(format!(
            "syscalls[{i}]: 'minKernel' is only valid in 'includes'"
        ));
    }
    if !includes.caps.iter().flatten().all(has) {
        return Ok(false);
    }
    if includes.arches.as_ref().is_some_and(|a| !a.is_empty()) && !on(&includes.arches) {
        return Ok(false);
    }
    if let Some(min) = &includes.min_kernel {
        let min = parse_kernel(min)
            .ok_or_else(|| format!("syscalls[{i}]: {min:?} is not a kernel version"))?;
        if c.kernel_version.is_none_or(|k| k < min) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `4.8` or `5.10.0-xyz` as `(major, minor)`.
pub fn parse_kernel(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// Whether `syscall` is allowed unconditionally (no argument filter) by
/// `profile`: for tests and diagnostics.
pub fn allows(profile: &LinuxSeccomp, syscall: &str) -> bool {
    profile.syscalls().iter().flatten().any(|s: &LinuxSyscall| {
        s.action() == LinuxSeccompAction::ScmpActAllow
            && s.args().as_ref().is_none_or(|a| a.is_empty())
            && s.names().iter().any(|n| n == syscall)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::caps::ALL_CAPABILITIES;
    use crate::sandbox::spec::DEFAULT_CAPABILITIES;

    fn conditions(caps: &[Capability]) -> Conditions<'_> {
        Conditions {
            capabilities: caps,
            kernel_version: Some((6, 1)),
            platform: Platform {
                go_arch: "amd64",
                native: Some(Arch::ScmpArchX86_64),
            },
        }
    }

    fn rules_for<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn the_default_profile_without_sys_admin() -> Result<()> {
        let p = runtime_default(&conditions(&DEFAULT_CAPABILITIES))?;
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().clone().unwrap_or_default(),
            [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        for allowed in [
            "read",
            "execve",
            "arch_prctl",
            "modify_ldt",
            "chroot",
            "ptrace",
        ] {
            assert!(allows(&p, allowed), "{allowed}");
        }
        for refused in [
            "sethostname",
            "setdomainname",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "init_module",
            "io_uring_setup",
            "clone3",
            "open_by_handle_at",
            "s390_runtime_instr",
            "set_tls",
        ] {
            assert!(!allows(&p, refused), "{refused}");
        }
        // clone only without namespace flags, clone3 fails with ENOSYS.
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().clone().unwrap_or_default();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].value(), 0x7E02_0000);
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        // socket: anything but AF_VSOCK.
        assert!(!allows(&p, "socket"));
        assert_eq!(rules_for(&p, "socket").len(), 1);
        Ok(())
    }

    #[test]
    fn the_default_profile_follows_capabilities_arch_and_kernel() -> Result<()> {
        let p = runtime_default(&conditions(&ALL_CAPABILITIES))?;
        for allowed in [
            "sethostname",
            "mount",
            "clone",
            "clone3",
            "bpf",
            "reboot",
            "init_module",
            "open_by_handle_at",
            "settimeofday",
            "syslog",
        ] {
            assert!(allows(&p, allowed), "{allowed}");
        }
        assert!(
            rules_for(&p, "clone3")
                .iter()
                .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
        );

        // An unknown kernel fails minKernel: ptrace only with SYS_PTRACE.
        let mut c = conditions(&DEFAULT_CAPABILITIES);
        c.kernel_version = None;
        assert!(!allows(&runtime_default(&c)?, "ptrace"));
        c.kernel_version = Some((4, 7));
        assert!(!allows(&runtime_default(&c)?, "ptrace"));

        // s390x: the other clone rule and its own syscalls.
        c.platform = Platform {
            go_arch: "s390x",
            native: Some(Arch::ScmpArchS390x),
        };
        let p = runtime_default(&c)?;
        assert_eq!(
            p.architectures().clone().unwrap_or_default(),
            [Arch::ScmpArchS390x, Arch::ScmpArchS390]
        );
        assert!(allows(&p, "s390_runtime_instr"));
        assert!(!allows(&p, "arch_prctl"));
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args().clone().unwrap_or_default()[0].index(), 1);
        Ok(())
    }

    #[test]
    fn localhost_profiles() -> Result<()> {
        let caps = DEFAULT_CAPABILITIES;
        let c = conditions(&caps);
        let oci = r#"{
            "defaultAction": "SCMP_ACT_LOG",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }"#;
        let p = localhost(oci, &c)?;
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActLog);
        assert_eq!(rules_for(&p, "mkdir")[0].errno_ret(), Some(13));
        assert_eq!(rules_for(&p, "personality").len(), 1);

        // moby's format: conditions are evaluated.
        let moby = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"name": "mount", "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_CHROOT"]}}
            ]
        }"#;
        let p = localhost(moby, &c)?;
        assert!(!allows(&p, "mount"));
        assert!(allows(&p, "chroot"));

        for bad in [
            "not json",
            "{}",
            r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "include": {"caps": ["CAP_SYS_ADMIN"]}}]}"#,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        ] {
            match localhost(bad, &c) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, LOCALHOST_FIELD),
                other => panic!("{bad}: {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x.y"), None);
        assert!((4, 10) > (4, 8));
    }

    fn filter(caps: &[&str], arches: &[&str], min_kernel: Option<&str>) -> Filter {
        let strings =
            |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
        Filter {
            caps: strings(caps),
            arches: strings(arches),
            min_kernel: min_kernel.map(str::to_string),
        }
    }

    #[test]
    fn conditions_of_a_rule() {
        let caps = ["CAP_CHOWN".to_string(), "CAP_SYS_ADMIN".to_string()];
        let c = conditions(&[]);
        let none = Filter::default();
        let applies = |inc: &Filter, exc: &Filter| applies(3, inc, exc, &caps, &c);
        assert_eq!(applies(&none, &none), Ok(true));
        // Capabilities match without regard to case; all included ones are needed.
        assert_eq!(
            applies(&filter(&["cap_sys_admin"], &[], None), &none),
            Ok(true)
        );
        assert_eq!(
            applies(&filter(&["CAP_SYS_ADMIN", "CAP_BPF"], &[], None), &none),
            Ok(false)
        );
        assert_eq!(
            applies(&none, &filter(&["CAP_CHOWN"], &[], None)),
            Ok(false)
        );
        // Architectures: one included is enough; an excluded one wins.
        assert_eq!(
            applies(&filter(&[], &["arm64", "amd64"], None), &none),
            Ok(true)
        );
        assert_eq!(applies(&filter(&[], &["arm64"], None), &none), Ok(false));
        assert_eq!(applies(&none, &filter(&[], &["amd64"], None)), Ok(false));
        // Kernel: at least minKernel (conditions run 6.1).
        assert_eq!(applies(&filter(&[], &[], Some("6.1")), &none), Ok(true));
        assert_eq!(applies(&filter(&[], &[], Some("6.2")), &none), Ok(false));
        assert_eq!(
            applies(&filter(&[], &[], Some("six")), &none),
            Err("syscalls[3]: \"six\" is not a kernel version".into())
        );
        // minKernel in excludes is refused, unless the rule is excluded first.
        assert_eq!(
            applies(&none, &filter(&[], &[], Some("4.8"))),
            Err("syscalls[3]: 'minKernel' is only valid in 'includes'".into())
        );
        assert_eq!(
            applies(&none, &filter(&["CAP_CHOWN"], &[], Some("4.8"))),
            Ok(false)
        );
    }

    #[test]
    fn a_rule_names_its_syscalls_once() {
        let one = |s: &str| Some(s.to_string());
        let many = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(syscall_names(0, one("read"), None), Ok(vec!["read".into()]));
        assert_eq!(
            syscall_names(0, one("read"), many(&[])),
            Ok(vec!["read".into()])
        );
        assert_eq!(
            syscall_names(0, None, many(&["read", "write"])),
            Ok(vec!["read".into(), "write".into()])
        );
        assert_eq!(
            syscall_names(1, one("read"), many(&["write"])),
            Err("syscalls[1] sets both 'name' and 'names'; use 'names'".into())
        );
        for (name, names) in [(None, None), (None, many(&[]))] {
            assert_eq!(
                syscall_names(2, name, names),
                Err("syscalls[2] names no syscall".into())
            );
        }
    }
}
