//! Capability names, the full list, and the sets a container gets.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::CapabilityChanges;
use crate::sandbox::spec::DEFAULT_CAPABILITIES;
use crate::{Error, Result};

/// Every capability Linux defines (up to `CAP_CHECKPOINT_RESTORE`, 5.9), in
/// the kernel's numbering: `ALL_CAPABILITIES[n]` is capability number `n`.
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Names of [`ALL_CAPABILITIES`], without `CAP_`, same order.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The kernel's number of `cap`.
fn number(cap: Capability) -> usize {
    ALL_CAPABILITIES
        .iter()
        .position(|c| *c == cap)
        .unwrap_or(usize::MAX)
}

/// `CAP_CHOWN` for [`Capability::Chown`]...
pub fn capability_name(cap: Capability) -> String {
    NAMES
        .get(number(cap))
        .map_or_else(|| format!("{cap:?}"), |n| format!("CAP_{n}"))
}

/// A capability by name: `CAP_` optional, any case (`net_admin`,
/// `CAP_NET_ADMIN`). `None` for unknown names and for `ALL`.
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|i| ALL_CAPABILITIES[i])
}

/// Whether `name` is `ALL` (any case).
pub(crate) fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// The capabilities of a mask as in `/proc/self/status` (`CapEff:` parsed
/// from hex), in kernel order; bits beyond the known ones are ignored.
///
/// The caller passes the daemon's effective set as
/// [`super::HostFacts::capabilities`]: runc cannot grant more than it has
/// (on hosts where `CAP_SYS_RESOURCE` is missing from every bounding set,
/// a spec asking for it fails at `capset`).
pub fn capabilities_from_mask(mask: u64) -> Vec<Capability> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The capability set of a container, sorted in kernel order.
///
/// - privileged: everything the host can grant (`CapabilityChanges` are
///   ignored, as containerd does unless `privileged_without_host_devices`);
/// - else containerd's order: Docker's defaults (those the host has), all
///   of the host's if `add` holds `ALL`, none if `drop` holds `ALL`, then the
///   named additions, then the named drops (a name both added and dropped is
///   dropped).
///
/// Unknown names (see [`unknown_capabilities`]) are ignored, as runc
/// ignores them with a warning: an unknown addition grants nothing, an
/// unknown drop removes nothing.
///
/// An added capability the host lacks is a
/// [`Error::FailedPrecondition`]: runc would fail at `capset` with an
/// obscure message.
pub(crate) fn container_capabilities(
    changes: &CapabilityChanges,
    privileged: bool,
    host: &[Capability],
) -> Result<Vec<Capability>> {
    let mut set: Vec<Capability> = if privileged {
        host.to_vec()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| host.contains(c))
            .copied()
            .collect()
    };
    if !privileged {
        if changes.add.iter().any(|c| is_all(c)) {
            set = host.to_vec();
        }
        if changes.drop.iter().any(|c| is_all(c)) {
            set.clear();
        }
        for (i, name) in changes.add.iter().enumerate() {
            if is_all(name) {
                continue;
            }
            let Some(cap) = parse_capability(name) else {
                continue;
            };
            // impossible: runc cannot grant what criusd itself lacks (capset
            // fails with EPERM at start); refusing early names the field.
            if !host.contains(&cap) {
                return Err(Error::FailedPrecondition(format!(
                    "capability {} (config.linux.security_context.capabilities.\
                     add_capabilities[{i}]) is not in crius' own capability set, so runc \
                     cannot grant it on this node",
                    capability_name(cap)
                )));
            }
            if !set.contains(&cap) {
                set.push(cap);
            }
        }
        for cap in changes
            .drop
            .iter()
            .filter_map(|name| parse_capability(name))
        {
            set.retain(|c| *c != cap);
        }
    }
    set.sort_by_key(|c| number(*c));
    set.dedup();
    Ok(set)
}

/// The capability names of `changes` that are neither a Linux capability
/// nor `ALL`, with their fields (`config.linux.security_context.
/// capabilities.add_capabilities[1]`), for the caller to warn about: they
/// are ignored, as runc does (the core does not log).
pub fn unknown_capabilities(changes: &CapabilityChanges) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (list, names) in [
        ("add_capabilities", &changes.add),
        ("drop_capabilities", &changes.drop),
    ] {
        for (i, name) in names.iter().enumerate() {
            if !is_all(name) && parse_capability(name).is_none() {
                out.push((
                    format!("config.linux.security_context.capabilities.{list}[{i}]"),
                    name.clone(),
                ));
            }
        }
    }
    out
}

/// `set` as bounding, effective and permitted; none inheritable or ambient
/// (containerd clears both since CVE-2022-24769).
pub(crate) fn linux_capabilities(set: &[Capability]) -> LinuxCapabilities {
    let caps: Capabilities = set.iter().copied().collect();
    let mut out = LinuxCapabilities::default();
    out.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(add: &[&str], drop: &[&str]) -> CapabilityChanges {
        CapabilityChanges {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(set: &[Capability]) -> Vec<String> {
        set.iter().map(|c| capability_name(*c)).collect()
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for cap in ALL_CAPABILITIES {
            let name = capability_name(cap);
            assert_eq!(parse_capability(&name), Some(cap));
            let json = serde_json::to_string(&cap).expect("serializes");
            assert_eq!(json, format!("\"{name}\""));
        }
        assert_eq!(parse_capability("net_admin"), Some(Capability::NetAdmin));
        assert_eq!(
            parse_capability("Cap_Sys_Admin"),
            Some(Capability::SysAdmin)
        );
        assert_eq!(parse_capability("ALL"), None);
        assert_eq!(parse_capability("CAP_CAP_CHOWN"), None);
        assert_eq!(parse_capability("NET_ADMINX"), None);
    }

    #[test]
    fn mask_decoding() {
        // CapEff on a host without CAP_SYS_RESOURCE.
        let host = capabilities_from_mask(0x0000_01ff_feff_ffff);
        assert_eq!(host.len(), 40);
        assert!(!host.contains(&Capability::SysResource));
        assert!(host.contains(&Capability::CheckpointRestore));
        assert_eq!(capabilities_from_mask(u64::MAX).len(), 41);
        assert_eq!(
            capabilities_from_mask(0b101),
            vec![Capability::Chown, Capability::DacReadSearch]
        );
    }

    #[test]
    fn containerd_order_of_add_and_drop() -> Result<()> {
        let host = ALL_CAPABILITIES.to_vec();
        let set =
            |add: &[&str], drop: &[&str]| container_capabilities(&changes(add, drop), false, &host);
        assert_eq!(set(&[], &[])?.len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(set(&["ALL"], &[])?.len(), 41);
        assert_eq!(set(&["all"], &["CHOWN"])?.len(), 40);
        assert_eq!(names(&set(&["NET_ADMIN"], &["ALL"])?), ["CAP_NET_ADMIN"]);
        assert!(set(&[], &["ALL"])?.is_empty());
        // Drops come after additions.
        assert!(!set(&["CAP_SYS_TIME"], &["sys_time"])?.contains(&Capability::SysTime));
        let s = set(&["SYS_PTRACE"], &["KILL", "mknod"])?;
        assert!(s.contains(&Capability::SysPtrace));
        assert!(!s.contains(&Capability::Kill));
        assert!(!s.contains(&Capability::Mknod));
        Ok(())
    }

    #[test]
    fn unknown_names_and_missing_host_capabilities() -> Result<()> {
        let host = capabilities_from_mask(0x0000_01ff_feff_ffff);
        // Unknown names are ignored, as runc does: they grant and remove
        // nothing; the caller is told which they were.
        let changes_ = changes(&["CHOWN", "FLY", "NET_ADMIN"], &["NOPE", ""]);
        let set = container_capabilities(&changes_, false, &host)?;
        let mut expected = container_capabilities(&changes(&["NET_ADMIN"], &[]), false, &host)?;
        expected.sort_by_key(|c| number(*c));
        assert_eq!(set, expected);
        assert_eq!(
            unknown_capabilities(&changes_),
            [
                (
                    "config.linux.security_context.capabilities.add_capabilities[1]".to_string(),
                    "FLY".to_string()
                ),
                (
                    "config.linux.security_context.capabilities.drop_capabilities[0]".to_string(),
                    "NOPE".to_string()
                ),
                (
                    "config.linux.security_context.capabilities.drop_capabilities[1]".to_string(),
                    String::new()
                ),
            ]
        );
        assert!(unknown_capabilities(&changes(&["all", "cap_chown"], &["ALL"])).is_empty());
        assert!(matches!(
            container_capabilities(&changes(&["SYS_RESOURCE"], &[]), false, &host),
            Err(Error::FailedPrecondition(_))
        ));
        // ALL means all the host has; privileged likewise, changes ignored.
        let all = container_capabilities(&changes(&["ALL"], &[]), false, &host);
        assert_eq!(all.map(|s| s.len()).ok(), Some(40));
        let privileged = container_capabilities(&changes(&[], &["ALL"]), true, &host);
        assert_eq!(privileged.map(|s| s.len()).ok(), Some(40));
        Ok(())
    }
}
