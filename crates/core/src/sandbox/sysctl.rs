//! Pod sysctls: only namespaced ones, only in a namespace the pod owns.
//!
//! Allowed (the set runc accepts; anything else runc refuses as "not in a
//! separate kernel namespace", so refusing early is impossible, not policy):
//! - IPC namespace: `kernel.shmall`, `kernel.shmmax`, `kernel.shmmni`,
//!   `kernel.shm_rmid_forced`, `kernel.msgmax`, `kernel.msgmnb`,
//!   `kernel.msgmni`, `kernel.sem`, `fs.mqueue.*`; not with host IPC.
//! - network namespace: `net.*`; not with host networking.
//! - UTS namespace: `kernel.domainname`; not with host networking (a pod
//!   has its own UTS namespace exactly when it has its own network).
//!
//! Names and values are otherwise taken as containerd takes them. runc
//! writes each value into the sysctl's own `/proc/sys` file, with no
//! delimiter between one sysctl and the next, so no value can smuggle a
//! second assignment: the CVE-2022-0811 class (`1+kernel.core_pattern=|/evil`)
//! came from CRI-O packing all of them into one `pinns` argument
//! (`k=v+k=v`), which crius and containerd never do. `,` (the safe sysctl
//! `net.ipv4.ip_local_reserved_ports=8080,9148`), `=`, `+`, line breaks and
//! an empty value reach the kernel, which decides.

use std::collections::BTreeMap;

use super::{NamespaceMode, NamespaceOptions};
use crate::{Error, Result};

/// Longest sysctl name (Kubernetes' limit): no `/proc/sys` entry has a
/// longer one (interface names, the only free part, are at most 15 bytes).
const MAX_NAME_LEN: usize = 253;

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
pub enum Owner {
    Ipc,
    Net,
    Uts,
}

/// Validates `sysctls` for a pod with `namespaces` and returns them with
/// normalized (dot-separated) names. One sysctl given twice (dotted and
/// slashed) is accepted when both say the same.
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
            // impossible: both spellings name one /proc/sys file and runc
            // writes them in map order, so which value would win is chance.
            if out.get(&normalized) != Some(value) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "names the same sysctl as config.linux.sysctls[{first:?}], \
                         with a different value"
                    ),
                ));
            }
            continue;
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
/// Any character but control ones: interface names in
/// `net.ipv4.conf.<if>.*` may hold upper case, `@`, `+`...
fn normalize_name(name: &str) -> Result<String, String> {
    // impossible: names no /proc/sys file.
    if name.is_empty() {
        return Err("the name must not be empty".into());
    }
    // impossible: no /proc/sys entry has a longer name.
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    // impossible: NUL is in no path, and the line breaks and tabs are in
    // no interface name (the kernel's dev_valid_name), the only free part
    // of a sysctl name; the other control characters go with them, as no
    // real interface is named so.
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("character {c:?} is not allowed in a sysctl name"));
    }
    // security: runc turns the separators into a path under /proc/sys; an
    // empty component (`..` among them) would climb out of the sysctl's
    // directory (traversal under /proc/sys).
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

/// `(name, value)` pairs.
pub(crate) type Sysctls = Vec<(String, String)>;

/// Splits validated, normalized sysctls into those of the IPC and UTS
/// namespaces and those of the network namespace (`net.*`).
pub(crate) fn split_net(sysctls: BTreeMap<String, String>) -> (Sysctls, Sysctls) {
    sysctls
        .into_iter()
        .partition(|(name, _)| owner(name) != Some(Owner::Net))
}

/// The namespace of sysctl `name` (dotted), when it is one a pod may set.
pub fn owner(name: &str) -> Option<Owner> {
    if IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(Owner::Ipc)
    } else if name.starts_with("net.") {
        Some(Owner::Net)
    } else if name == "kernel.domainname" {
        Some(Owner::Uts)
    } else {
        None
    }
}

/// impossible, all of them: runc refuses a sysctl that is not namespaced
/// ("not in a separate kernel namespace") and one of a namespace the pod
/// shares with the host ("not allowed in host network namespace"...).
fn check_owner(name: &str, namespaces: &NamespaceOptions) -> Result<(), String> {
    match owner(name) {
        None => Err(format!(
            "{name} is not a namespaced sysctl a pod may set: only kernel.shm*, kernel.msg*, \
             kernel.sem, fs.mqueue.* (IPC namespace), net.* (network namespace) and \
             kernel.domainname (UTS namespace) are allowed"
        )),
        Some(Owner::Ipc) if namespaces.ipc == NamespaceMode::Node => Err(format!(
            "{name} belongs to the IPC namespace and the pod uses the host's"
        )),
        Some(Owner::Net) if namespaces.network == NamespaceMode::Node => Err(format!(
            "{name} belongs to the network namespace and the pod uses the host's"
        )),
        Some(Owner::Uts) if namespaces.network == NamespaceMode::Node => Err(format!(
            "{name} belongs to the UTS namespace and the pod uses the host's \
             (it has host networking)"
        )),
        Some(_) => Ok(()),
    }
}

/// Any value but one holding NUL: the kernel decides what it takes.
fn check_value(value: &str) -> Result<(), String> {
    // impossible: the kernel reads a /proc/sys write as a C string, so
    // nothing after a NUL could be set.
    if value.contains('\0') {
        return Err("NUL is not allowed in a sysctl value".into());
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
            // A Kubernetes safe sysctl, a list.
            ("net.ipv4.ip_local_reserved_ports", "8080,9148"),
            ("net.ipv4.ip_local_reserved_ports", ""),
            ("net.ipv4.conf.ETH0@if3.rp_filter", "1"),
            ("net.ipv4.conf.br+x.forwarding", "1\n"),
            ("kernel.domainname", "example.com"),
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
    fn both_spellings_of_one_sysctl_must_agree() -> Result<()> {
        let both = |a: &str, b: &str| {
            let sysctls = BTreeMap::from([
                ("kernel.shmmax".to_string(), a.to_string()),
                ("kernel/shmmax".to_string(), b.to_string()),
            ]);
            validate(&sysctls, &pod())
        };
        assert_eq!(
            both("1", "1")?,
            BTreeMap::from([("kernel.shmmax".to_string(), "1".to_string())])
        );
        let err = both("1", "2");
        assert!(
            matches!(&err, Err(Error::InvalidArgument { reason, .. }) if reason.contains("same sysctl")),
            "{err:?}"
        );
        Ok(())
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
        // No UTS namespace of its own with host networking.
        assert!(refused("kernel.domainname", "x", host_net).contains("UTS"));
        // Each host namespace only forbids its own sysctls.
        assert!(one("net.ipv4.ip_forward", "1", host_ipc).is_ok());
        assert!(one("kernel.sem", "1 2 3 4", host_net).is_ok());
    }

    #[test]
    fn non_namespaced_sysctls_are_refused() {
        for name in [
            "kernel.core_pattern",
            "kernel.hostname",
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
            "net.ipv4.conf.../../kernel.core_pattern",
            "net/ipv4//x",
            "net.ipv4.x\n",
            "net.ipv4.x\t",
            "net.ipv4.x\0",
            long.as_str(),
        ] {
            assert!(one(name, "1", pod()).is_err(), "{name:?} should be refused");
        }
        // Characters runc passes on: only the namespace decides.
        for name in [
            "net.ipv4.x y",
            "net.ipv4.x=1",
            "net.ipv4.*",
            "net.ipv4.conf.Eth0.x",
        ] {
            assert!(one(name, "1", pod()).is_ok(), "{name:?} should be accepted");
        }
        // Upper case outside an interface name is simply not namespaced.
        assert!(refused("Net.ipv4.x", "1", pod()).contains("not a namespaced"));
    }

    #[test]
    fn values_go_to_the_kernel_as_given() -> Result<()> {
        // Each value is written to its own /proc/sys file: the CVE-2022-0811
        // smuggling (CRI-O's pinns split "k=v+k=v") has nothing to split.
        for value in [
            "1+kernel.core_pattern=|/evil",
            "1\nkernel.core_pattern=|/evil",
            "1\r",
            "1=2",
            "1;2",
            "1,2",
            "|/evil",
            "$(reboot)",
            "a\"b",
            " 1",
            "1\t",
            "",
            "é",
        ] {
            let got = one("kernel.shm_rmid_forced", value, pod())?;
            assert_eq!(got["kernel.shm_rmid_forced"], value);
        }
        // ip_local_reserved_ports takes lists far longer than a page.
        let long = (1..20_000)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(one("net.ipv4.ip_local_reserved_ports", &long, pod()).is_ok());
        assert!(refused("kernel.shm_rmid_forced", "1\0", pod()).contains("NUL"));
        Ok(())
    }
}
