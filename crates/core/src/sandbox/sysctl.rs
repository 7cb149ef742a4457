//! Pod sysctls: only namespaced ones, only in a namespace the pod owns, with
//! names and values that cannot be misread.
//!
//! Allowed (the set runc accepts, minus `kernel.domainname`, which
//! Kubernetes does not allow):
//! - IPC namespace: `kernel.shmall`, `kernel.shmmax`, `kernel.shmmni`,
//!   `kernel.shm_rmid_forced`, `kernel.msgmax`, `kernel.msgmnb`,
//!   `kernel.msgmni`, `kernel.sem`, `fs.mqueue.*`; not with host IPC.
//! - network namespace: `net.*`; not with host networking.
//!
//! Values are checked against an allow-list of characters so that nothing
//! can smuggle a second assignment (CVE-2022-0811 used
//! `1+kernel.core_pattern=|/evil` against CRI-O's `pinns`).

use std::collections::BTreeMap;

use super::{NamespaceMode, NamespaceOptions};
use crate::{Error, Result};

/// Longest sysctl name (Kubernetes' limit).
const MAX_NAME_LEN: usize = 253;
/// Longest sysctl value.
const MAX_VALUE_LEN: usize = 4096;

/// Sysctls of the IPC namespace, besides `fs.mqueue.*`.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
];

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Ipc,
    Net,
}

/// Validates `sysctls` for a pod with `namespaces` and returns them with
/// normalized (dot-separated) names.
pub(crate) fn validate(
    sysctls: &BTreeMap<String, String>,
    namespaces: &NamespaceOptions,
) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut origin: BTreeMap<String, &str> = BTreeMap::new();
    for (name, value) in sysctls {
        let field = format!("config.linux.sysctls[{name:?}]");
        let normalized = normalize_name(name).map_err(|r| Error::invalid(&field, r))?;
        check_owner(&normalized, namespaces).map_err(|r| Error::invalid(&field, r))?;
        check_value(value).map_err(|r| Error::invalid(&field, r))?;
        if let Some(first) = origin.get(&normalized) {
            return Err(Error::invalid(
                field,
                format!("names the same sysctl as config.linux.sysctls[{first:?}]"),
            ));
        }
        origin.insert(normalized.clone(), name);
        out.insert(normalized, value.clone());
    }
    Ok(out)
}

/// The dot-separated form of `name`, which may be written with `/` as
/// separator like sysctl(8) accepts (`net/ipv4/conf/eth0.100/rp_filter`);
/// the conversion is kubelet's and runc's: when the first separator is a
/// `/`, dots and slashes swap (a dot inside a component becomes a `/`).
fn normalize_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the name must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '/' | '-'))
    {
        return Err(format!(
            "character {c:?} is not allowed in a sysctl name (use [a-z0-9_./-])"
        ));
    }
    if name.split(['.', '/']).any(str::is_empty) {
        return Err("empty component (a leading, trailing or doubled separator, or `..`)".into());
    }
    if name
        .find(['.', '/'])
        .is_some_and(|i| name[i..].starts_with('/'))
    {
        return Ok(name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect());
    }
    Ok(name.to_string())
}

fn owner(name: &str) -> Option<Owner> {
    if IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(Owner::Ipc)
    } else if name.starts_with("net.") {
        Some(Owner::Net)
    } else {
        None
    }
}

fn check_owner(name: &str, namespaces: &NamespaceOptions) -> Result<(), String> {
    match owner(name) {
        None => Err(format!(
            "{name} is not a namespaced sysctl a pod may set: only kernel.shm*, kernel.msg*, \
             kernel.sem, fs.mqueue.* (IPC namespace) and net.* (network namespace) are allowed"
        )),
        Some(Owner::Ipc) if namespaces.ipc == NamespaceMode::Node => Err(format!(
            "{name} belongs to the IPC namespace and the pod uses the host's"
        )),
        Some(Owner::Net) if namespaces.network == NamespaceMode::Node => Err(format!(
            "{name} belongs to the network namespace and the pod uses the host's"
        )),
        Some(_) => Ok(()),
    }
}

/// Letters, digits, `-._/:` and inner blanks (`kernel.sem` takes
/// `"250 32000 32 128"`); nothing that could separate or assign.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the value must not be empty".into());
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "the value is longer than {MAX_VALUE_LEN} characters"
        ));
    }
    if let Some(c) = value.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '\t' | '-' | '.' | '/' | '_' | ':'))
    }) {
        return Err(format!(
            "character {c:?} is not allowed in a sysctl value \
             (use letters, digits, blanks between words and -._/:)"
        ));
    }
    let blank = [' ', '\t'];
    if value.starts_with(blank) || value.ends_with(blank) {
        return Err("the value has leading or trailing whitespace".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> NamespaceOptions {
        NamespaceOptions::default()
    }

    fn one(name: &str, value: &str, ns: NamespaceOptions) -> Result<BTreeMap<String, String>> {
        validate(&BTreeMap::from([(name.into(), value.into())]), &ns)
    }

    fn refused(name: &str, value: &str, ns: NamespaceOptions) -> String {
        match one(name, value, ns) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, format!("config.linux.sysctls[{name:?}]"));
                reason
            }
            other => panic!("{name}={value:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn namespaced_sysctls_are_accepted() -> Result<()> {
        for (name, value) in [
            ("kernel.shm_rmid_forced", "1"),
            ("kernel.shmmax", "68719476736"),
            ("kernel.shmall", "4294967296"),
            ("kernel.shmmni", "4096"),
            ("kernel.msgmax", "8192"),
            ("kernel.msgmnb", "16384"),
            ("kernel.msgmni", "32000"),
            ("kernel.sem", "250 32000 32 128"),
            ("kernel.sem", "250\t32000\t32\t128"),
            ("fs.mqueue.msg_max", "10"),
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
            ("net.ipv4.ip_local_port_range", "1024 65000"),
            ("net.ipv4.tcp_congestion_control", "bbr"),
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv4.conf.all.rp_filter", "-1"),
        ] {
            assert_eq!(one(name, value, pod())?[name], value, "{name}");
        }
        Ok(())
    }

    #[test]
    fn slash_separated_names_are_normalized() -> Result<()> {
        let got = one("kernel/shm_rmid_forced", "1", pod())?;
        assert_eq!(got.keys().collect::<Vec<_>>(), ["kernel.shm_rmid_forced"]);
        // A dot inside a component (a VLAN interface) survives as a slash.
        let got = one("net/ipv4/conf/eno2.100/rp_filter", "1", pod())?;
        assert!(got.contains_key("net.ipv4.conf.eno2/100.rp_filter"));
        let got = one("net.ipv4.conf.eno2/100.rp_filter", "1", pod())?;
        assert!(got.contains_key("net.ipv4.conf.eno2/100.rp_filter"));
        Ok(())
    }

    #[test]
    fn both_spellings_of_one_sysctl_are_refused() {
        let sysctls = BTreeMap::from([
            ("kernel.shmmax".to_string(), "1".to_string()),
            ("kernel/shmmax".to_string(), "2".to_string()),
        ]);
        let err = validate(&sysctls, &pod());
        assert!(
            matches!(&err, Err(Error::InvalidArgument { reason, .. }) if reason.contains("same sysctl")),
            "{err:?}"
        );
    }

    #[test]
    fn host_namespaces_forbid_their_sysctls() {
        let host_ipc = NamespaceOptions {
            ipc: NamespaceMode::Node,
            ..pod()
        };
        let host_net = NamespaceOptions {
            network: NamespaceMode::Node,
            ..pod()
        };
        assert!(refused("kernel.shmmax", "1", host_ipc).contains("IPC"));
        assert!(refused("fs.mqueue.queues_max", "1", host_ipc).contains("IPC"));
        assert!(refused("net.ipv4.ip_forward", "1", host_net).contains("network"));
        // Each host namespace only forbids its own sysctls.
        assert!(one("net.ipv4.ip_forward", "1", host_ipc).is_ok());
        assert!(one("kernel.sem", "1 2 3 4", host_net).is_ok());
    }

    #[test]
    fn non_namespaced_sysctls_are_refused() {
        for name in [
            "kernel.core_pattern",
            "kernel.hostname",
            "kernel.domainname",
            "kernel.shm_next_id",
            "kernel.msg",
            "kernel.shm",
            "kernel.modprobe",
            "vm.overcommit_memory",
            "fs.file-max",
            "fs.mqueue",
            "fs.mqueuex.a",
            "net",
            "netx.core.somaxconn",
            "user.max_user_namespaces",
        ] {
            let reason = refused(name, "1", pod());
            assert!(
                reason.contains("not a namespaced sysctl"),
                "{name}: {reason}"
            );
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        let long = format!("net.{}", "a".repeat(250));
        for name in [
            "",
            ".",
            "net..ipv4.x",
            "net.ipv4.",
            ".net.ipv4.x",
            "net/../kernel/core_pattern",
            "net/ipv4//x",
            "Net.ipv4.x",
            "net.ipv4.x y",
            "net.ipv4.x=1",
            "net.ipv4.x\n",
            "net.ipv4.x\0",
            "net.ipv4.*",
            long.as_str(),
        ] {
            assert!(one(name, "1", pod()).is_err(), "{name:?} should be refused");
        }
    }

    #[test]
    fn values_cannot_smuggle_a_second_sysctl() {
        for value in [
            // CVE-2022-0811 (CRI-O's pinns split on '+' and '=').
            "1+kernel.core_pattern=|/evil",
            "1+kernel.core_pattern=/tmp/x",
            "1\nkernel.core_pattern=|/evil",
            "1\rkernel.core_pattern=|/evil",
            "1\0",
            "1=2",
            "1;2",
            "1,2",
            "|/evil",
            "$(reboot)",
            "1`id`",
            "a\"b",
            "a'b",
            "a\\b",
            " 1",
            "1 ",
            "\t1",
            "1\t",
            "",
            "é",
        ] {
            let reason = refused("kernel.shm_rmid_forced", value, pod());
            assert!(!reason.is_empty(), "{value:?}");
        }
        let long = "1".repeat(MAX_VALUE_LEN + 1);
        refused("kernel.shm_rmid_forced", &long, pod());
        assert!(one("kernel.shm_rmid_forced", &"1".repeat(MAX_VALUE_LEN), pod()).is_ok());
    }

    #[test]
    fn cve_2022_0811_names_the_offending_character() {
        let reason = refused(
            "kernel.shm_rmid_forced",
            "1+kernel.core_pattern=|/evil",
            pod(),
        );
        assert!(reason.contains("'+'"), "{reason}");
    }
}
