//! Validation of a [`PodSandboxRequest`]: every refusal is an
//! [`Error::InvalidArgument`] naming the CRI field (`config.metadata.name`,
//! `config.linux.sysctls["kernel.foo"]`, ...).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{
    DnsConfig, LinuxSandbox, NamespaceMode, PodSandboxRequest, PortMapping, SecurityProfile, sysctl,
};
use crate::{Error, Result};

/// Longest name, namespace or UID of a pod or container: each becomes a
/// containerd label value, and containerd refuses a label whose key and
/// value exceed 4096 bytes (crius' keys are shorter than 96).
const MAX_NAME_LEN: usize = 4000;
/// Longest hostname the kernel takes (`__NEW_UTS_LEN`).
const MAX_HOSTNAME_LEN: usize = 64;
/// containerd's limit on a label's key plus value.
const MAX_LABEL_SIZE: usize = 4096;
/// The most bytes of annotations (keys and values) a pod or container may
/// carry. containerd has no limit but the message size (16 MiB); crius
/// keeps them in memory and in every record write, so a client could make
/// each pod cost megabytes. Kubernetes caps a pod's annotations at 256 KiB
/// (`TotalAnnotationSizeLimitB`) and kubelet adds a few of its own: this
/// never refuses what kubelet sends.
pub(crate) const MAX_ANNOTATIONS_SIZE: usize = 1 << 20;

/// Checks `req` before anything is created. Host networking makes the
/// hostname irrelevant (it is ignored, not checked).
pub fn validate(req: &PodSandboxRequest) -> Result<()> {
    for (field, value) in [
        ("config.metadata.name", &req.name),
        ("config.metadata.uid", &req.uid),
        ("config.metadata.namespace", &req.namespace),
    ] {
        check_object_name(value).map_err(|r| Error::invalid(field, r))?;
    }
    if req.linux.namespaces.network != NamespaceMode::Node && !req.hostname.is_empty() {
        check_hostname(&req.hostname).map_err(|r| Error::invalid("config.hostname", r))?;
    }
    check_absolute_path(&req.log_directory)
        .map_err(|r| Error::invalid("config.log_directory", r))?;
    if let Some(dns) = &req.dns {
        validate_dns(dns)?;
    }
    validate_port_mappings(&req.port_mappings)?;
    validate_labels(&req.labels)?;
    validate_annotations(&req.annotations)?;
    validate_linux(&req.linux)
}

/// A pod or container name, namespace or UID: any string, as containerd
/// takes it (Kubernetes' own rules are kubelet's business), even an empty
/// one: crius finds pods and containers by id and keeps their metadata in
/// its own record, so the empty label value containerd drops loses
/// nothing.
pub(crate) fn check_object_name(value: &str) -> Result<(), String> {
    // containerd refuses it too: the value becomes a containerd label, and
    // containerd refuses a label whose key and value exceed 4096 bytes.
    if value.len() > MAX_NAME_LEN {
        return Err(format!(
            "longer than {MAX_NAME_LEN} bytes (containerd's label limit)"
        ));
    }
    // NUL: impossible (the names go into CNI_ARGS, an environment
    // variable). Other control characters: security, names are written as
    // they are into criusd's log lines and the CLI's terminal output, where
    // they would forge lines or escapes. `/`: security, clients lay out
    // files by these names (kubelet's `<namespace>_<name>_<uid>` pod log
    // directories and `<name>/` container log directories, `crius run`'s
    // `/var/log/crius/pods/<name>`) and crius reports them back (List*,
    // *Status) to agents that may do the same: a `/` would reach into
    // another's directory. crius itself derives no path from a name.
    match value.chars().find(|c| *c == '/' || c.is_control()) {
        Some(c) => Err(format!("character {c:?} is not allowed")),
        None => Ok(()),
    }
}

/// Any hostname the kernel takes, as containerd passes it on unchecked
/// (`crictl_host`, upper case, a leading `-` are all fine).
pub(crate) fn check_hostname(hostname: &str) -> Result<(), String> {
    // impossible: sethostname(2) refuses more than __NEW_UTS_LEN bytes;
    // refusing early names the field and leaves nothing half-made.
    if hostname.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "longer than {MAX_HOSTNAME_LEN} bytes (the kernel's limit)"
        ));
    }
    // security: the name is written line by line into the pod's /etc/hosts
    // and /etc/hostname; a line break (or NUL, or another control
    // character) would forge entries there.
    match hostname.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("character {c:?} is not allowed in a hostname")),
        None => Ok(()),
    }
}

/// Empty, or an absolute path. `.` and `..` components are cleaned
/// lexically by [`normalized`] (trusted fields: any absolute path may be
/// named directly, so there is no boundary to keep).
fn check_absolute_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    // impossible: a relative path would resolve against criusd's working
    // directory, which no client can mean.
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    // impossible: no path holds NUL.
    if path.contains('\0') {
        return Err("NUL is not allowed in a path".into());
    }
    check_name_lengths(path)
}

/// The longest name of a file or directory (Linux' NAME_MAX, in bytes).
pub(crate) const NAME_MAX: usize = 255;

/// impossible: the kernel refuses a longer component, or a longer path
/// (ENAMETOOLONG) when the directory or file is made or opened, at
/// StartContainer; refused here instead.
pub(crate) fn check_name_lengths(path: &str) -> Result<(), String> {
    crate::container::validate::check_path_len(path)?;
    match path.split('/').find(|c| c.len() > NAME_MAX) {
        Some(c) => Err(format!(
            "a name in the path is {} bytes long, more than the {NAME_MAX} a file name may have: {:?}...",
            c.len(),
            c.chars().take(16).collect::<String>()
        )),
        None => Ok(()),
    }
}

/// `path` cleaned lexically, as Go's `path.Clean`: `//` squeezed, `.`
/// dropped, `..` resolved against the component before it (at the root it
/// stays at the root), no trailing `/`; empty becomes `.`.
pub(crate) fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    match (rooted, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }
}

/// `req` as crius uses it once it passed [`validate`]: the trusted paths
/// cleaned lexically (`log_directory`, `cgroup_parent`, a `Localhost`
/// seccomp profile), so that everything after sees one spelling; a label
/// with an empty key and value dropped.
pub fn normalized(mut req: PodSandboxRequest) -> PodSandboxRequest {
    if !req.log_directory.is_empty() {
        req.log_directory = clean_path(&req.log_directory);
    }
    if !req.linux.cgroup_parent.is_empty() {
        req.linux.cgroup_parent = clean_path(&req.linux.cgroup_parent);
    }
    if let Some(SecurityProfile::Localhost(path)) = &mut req.linux.seccomp
        && !path.is_empty()
    {
        *path = clean_path(path);
    }
    req.labels.retain(|k, v| !(k.is_empty() && v.is_empty()));
    req
}

fn validate_dns(dns: &DnsConfig) -> Result<()> {
    for (list, entries) in [
        ("servers", &dns.servers),
        ("searches", &dns.searches),
        ("options", &dns.options),
    ] {
        for (i, entry) in entries.iter().enumerate() {
            check_resolv_entry(entry)
                .map_err(|r| Error::invalid(format!("config.dns_config.{list}[{i}]"), r))?;
        }
    }
    Ok(())
}

/// An entry of resolv.conf, written as containerd writes it (one line per
/// list, or per server). Empty entries are dropped when the file is
/// written ([`super::files::resolv_conf`]).
///
/// Blanks inside an entry are accepted, as containerd writes them as is:
/// resolv.conf is whitespace-separated, so `a b` in `searches` or
/// `options` is just two words on the line (what the client could have
/// sent as two entries), and in a server the resolver reads the first word
/// of its `nameserver` line and ignores the rest. Nothing can reach another
/// line, so nothing is forged; the file is the pod's own.
fn check_resolv_entry(entry: &str) -> Result<(), String> {
    // security: a line break (or another control character) would smuggle
    // lines into the pod's resolv.conf (containerd is exposed there).
    match entry
        .chars()
        .find(|c| c.is_control() && !matches!(c, ' ' | '\t'))
    {
        Some(c) => Err(format!(
            "character {c:?} is not allowed (the entry is written to resolv.conf)"
        )),
        None => Ok(()),
    }
}

/// containerd's `toCNIPortMappings`: an entry without a host port
/// (`host_port <= 0`, kubelet sends one per container port) is dropped
/// whatever else it says; the others must be mappings the CNI portmap
/// plugin can install. The same host port mapped twice is accepted, as
/// containerd passes both on (portmap installs both rules, the first wins;
/// Kubernetes refuses such pods upstream).
fn validate_port_mappings(ports: &[PortMapping]) -> Result<()> {
    for (i, port) in ports.iter().enumerate() {
        if port.host_port <= 0 {
            continue;
        }
        let field = |name: &str| format!("config.port_mappings[{i}].{name}");
        // impossible: no such port; iptables/nftables refuse it.
        if u16::try_from(port.host_port).is_err() {
            return Err(Error::invalid(field("host_port"), "must be in 0..=65535"));
        }
        // impossible: the portmap plugin refuses it ("Invalid container
        // port number").
        if u16::try_from(port.container_port).map_or(true, |p| p == 0) {
            return Err(Error::invalid(
                field("container_port"),
                "must be in 1..=65535 when a host port is given",
            ));
        }
        // impossible (in effect): portmap would take a name for an IPv6
        // address (ip6tables then resolves it through DNS, and IPv4 gets no
        // mapping at all), and crius' CNI layer refuses it too; no client
        // can mean that.
        if !port.host_ip.is_empty() && port.host_ip.parse::<IpAddr>().is_err() {
            return Err(Error::invalid(
                field("host_ip"),
                format!("{:?} is not an IP address", port.host_ip),
            ));
        }
    }
    Ok(())
}

/// Labels become containerd labels: what containerd refuses is refused.
/// An empty key with an empty value is accepted and dropped, as containerd
/// drops labels with empty values (see [`normalized`]).
pub(crate) fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in labels {
        let field = || format!("config.labels[{key:?}]");
        // containerd refuses it too (bolt: "key required").
        if key.is_empty() && !value.is_empty() {
            return Err(Error::invalid(field(), "the key must not be empty"));
        }
        // containerd refuses it too (labels.Validate).
        if key.len() + value.len() > MAX_LABEL_SIZE {
            return Err(Error::invalid(
                field(),
                format!(
                    "key and value are longer than {MAX_LABEL_SIZE} bytes (containerd's limit)"
                ),
            ));
        }
    }
    Ok(())
}

/// Annotations: any key and value, up to [`MAX_ANNOTATIONS_SIZE`] in all.
pub(crate) fn validate_annotations(annotations: &BTreeMap<String, String>) -> Result<()> {
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATIONS_SIZE {
        return Err(Error::invalid(
            "config.annotations",
            format!("{size} bytes of keys and values; at most {MAX_ANNOTATIONS_SIZE} are taken"),
        ));
    }
    Ok(())
}

fn validate_linux(linux: &LinuxSandbox) -> Result<()> {
    // Namespace modes: only NODE is special, as in containerd (a pod's
    // CONTAINER or TARGET network/IPC and TARGET PID behave as POD: the pod
    // gets its own), so there is nothing to refuse.
    check_userns(linux)?;
    check_cgroup_parent(&linux.cgroup_parent)
        .map_err(|r| Error::invalid("config.linux.cgroup_parent", r))?;
    sysctl::validate(&linux.sysctls, &linux.namespaces)?;
    validate_ids(linux)?;
    // `resources` and `overhead` are never refused: containerd only
    // records the pod's resources in annotations (the containers carry
    // the limits) and ignores the overhead, and so does crius.
    validate_seccomp(linux.seccomp.as_ref())
}

/// The pod's user namespace (see [`crate::userns::pod_maps`]). One with
/// a host namespace is refused (impossible: a network, IPC or PID namespace
/// the host's user namespace owns cannot be set up from inside the pod's;
/// kubelet refuses these pods too).
fn check_userns(linux: &LinuxSandbox) -> Result<()> {
    let sc = "config.linux.security_context.namespace_options";
    let maps = crate::userns::pod_maps(sc, linux.user_namespace, &linux.userns_ids)?;
    let ns = &linux.namespaces;
    let host = [("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)]
        .into_iter()
        .find(|(_, m)| *m == NamespaceMode::Node);
    if let (Some(_), Some((name, _))) = (maps, host) {
        return Err(Error::invalid(
            format!("{sc}.userns_options.mode"),
            format!("a user namespace cannot go with the host's {name} namespace"),
        ));
    }
    Ok(())
}

/// Driver-independent checks; [`super::spec::cgroups_path`] checks the form
/// the driver needs. `.` and `..` are cleaned by [`normalized`] (trusted
/// field; runc confines a cgroupfs path to the hierarchy anyway).
fn check_cgroup_parent(parent: &str) -> Result<(), String> {
    // security: the kernel prints cgroup paths unescaped in the
    // line-oriented /proc/<pid>/cgroup, which runc and node agents parse; a
    // line break (or NUL, or another control character) would forge
    // entries there.
    if parent.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    Ok(())
}

/// A uid or gid as the kernel takes it (`(uid_t)-1` is not one).
pub(crate) fn to_id(value: i64) -> Option<u32> {
    u32::try_from(value).ok().filter(|id| *id != u32::MAX)
}

/// security, all of them: an id outside the kernel's range would be
/// truncated on the way to runc (containerd casts supplemental groups to
/// uint32 unchecked: 2^32 becomes gid 0, root's group).
fn validate_ids(linux: &LinuxSandbox) -> Result<()> {
    let field = |name: &str| format!("config.linux.security_context.{name}");
    let bad = |value: i64| format!("{value} is not a valid id (0..=4294967294)");
    if let Some(uid) = linux.run_as_user.filter(|v| to_id(*v).is_none()) {
        return Err(Error::invalid(field("run_as_user"), bad(uid)));
    }
    if let Some(gid) = linux.run_as_group {
        // containerd refuses it too ("user group is specified without
        // user").
        if linux.run_as_user.is_none() {
            return Err(Error::invalid(
                field("run_as_group"),
                "is set without run_as_user",
            ));
        }
        if to_id(gid).is_none() {
            return Err(Error::invalid(field("run_as_group"), bad(gid)));
        }
    }
    for (i, gid) in linux.supplemental_groups.iter().enumerate() {
        if to_id(*gid).is_none() {
            return Err(Error::invalid(
                field(&format!("supplemental_groups[{i}]")),
                bad(*gid),
            ));
        }
    }
    Ok(())
}

/// A `Localhost` profile names an absolute file. containerd reads any path
/// it is given; a relative one would resolve against criusd's working
/// directory, a file no client can mean, so it is refused (impossible);
/// `..` is cleaned (see [`normalized`]).
fn validate_seccomp(profile: Option<&SecurityProfile>) -> Result<()> {
    const FIELD: &str = "config.linux.security_context.seccomp.localhost_ref";
    match profile {
        // containerd refuses it too (seccomp.WithProfile("") cannot read
        // the file).
        Some(SecurityProfile::Localhost(path)) if path.is_empty() => Err(Error::invalid(
            FIELD,
            "a Localhost profile needs the profile's path",
        )),
        Some(SecurityProfile::Localhost(path)) => {
            check_absolute_path(path).map_err(|r| Error::invalid(FIELD, r))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Protocol;
    use super::*;

    fn request() -> PodSandboxRequest {
        PodSandboxRequest {
            name: "web-0".into(),
            uid: "6f1c3d9e-0000-4000-8000-000000000001".into(),
            namespace: "default".into(),
            hostname: "web-0".into(),
            log_directory: "/var/log/pods/default_web-0_6f1c3d9e".into(),
            ..Default::default()
        }
    }

    /// The field of the InvalidArgument `req` is refused with.
    fn refused_field(req: &PodSandboxRequest) -> String {
        match validate(req) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_pod_is_valid() -> Result<()> {
        validate(&request())?;
        validate(&PodSandboxRequest {
            hostname: String::new(),
            log_directory: String::new(),
            ..request()
        })
    }

    #[test]
    fn names_containerd_takes() {
        for (field, edit) in [
            (
                "config.metadata.name",
                (|r| r.name = "a/b".into()) as fn(&mut PodSandboxRequest),
            ),
            ("config.metadata.name", |r| r.name = "a\0b".into()),
            ("config.metadata.name", |r| r.name = "a\nb".into()),
            ("config.metadata.namespace", |r| {
                r.namespace = "x".repeat(4001)
            }),
            ("config.metadata.uid", |r| r.uid = "../x".into()),
        ] {
            let mut req = request();
            edit(&mut req);
            assert_eq!(refused_field(&req), field, "{req:?}");
        }
        // Longer than a DNS label or subdomain, with characters Kubernetes
        // would not take, or empty: containerd accepts them, so does crius.
        for name in [
            "x".repeat(254),
            "a b_c.D:e".into(),
            "ünï".into(),
            String::new(),
        ] {
            let mut req = request();
            req.name = name;
            assert!(validate(&req).is_ok(), "{req:?}");
        }
        let mut req = request();
        req.uid.clear();
        req.namespace.clear();
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn hostnames() {
        // containerd (and the kernel) take anything up to 64 bytes: CRI-O's
        // own test config uses `crictl_host`.
        let long_label = format!("{}.{}", "a".repeat(40), "b".repeat(23));
        for ok in [
            "a",
            "web-0",
            "a.b-c.d",
            "A1",
            "0a",
            "crictl_host",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a b",
            "ünï",
            &"a".repeat(64),
            &long_label,
        ] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["a\n", "a\rb", "a\0", "a\tb", "\u{7f}", &"a".repeat(65)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
        let mut req = request();
        req.hostname = "crictl_host".into();
        assert!(validate(&req).is_ok());
        req.hostname = "bad\nhost".into();
        assert_eq!(refused_field(&req), "config.hostname");
        // With host networking the hostname is ignored, as containerd (and
        // kubelet, which never sends one then) does.
        req.linux.namespaces.network = NamespaceMode::Node;
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn log_directory_fits_a_path() {
        let mut req = request();
        req.log_directory = "/abc".repeat(1200);
        assert_eq!(refused_field(&req), "config.log_directory");
        req.log_directory = "/abc".repeat(1000);
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn log_directory_is_absolute() {
        let too_long = format!("/var/log/pods/{}", "x".repeat(256));
        for bad in ["var/log", "./var/log", "/var/log\0", too_long.as_str()] {
            let mut req = request();
            req.log_directory = bad.into();
            assert_eq!(refused_field(&req), "config.log_directory", "{bad:?}");
        }
        // Long as a whole is fine; only a name over 255 bytes cannot be.
        let mut req = request();
        req.log_directory = format!("/var/log/{}/{}", "a".repeat(255), "b".repeat(255));
        assert!(validate(&req).is_ok());
        for (ok, clean) in [
            ("/var/log/../log/pods/x", "/var/log/pods/x"),
            ("/var/log/./pods//x/", "/var/log/pods/x"),
            ("/var/log/pods/a\nb", "/var/log/pods/a\nb"),
        ] {
            let mut req = request();
            req.log_directory = ok.into();
            assert!(validate(&req).is_ok(), "{ok:?}");
            assert_eq!(normalized(req).log_directory, clean);
        }
    }

    #[test]
    fn paths_are_cleaned_like_go() {
        for (path, clean) in [
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("/../..", "/"),
            ("/a/b/../../..", "/"),
            ("a/../..", ".."),
            ("a/./b", "a/b"),
            ("kubepods.slice", "kubepods.slice"),
            ("", "."),
            ("./", "."),
        ] {
            assert_eq!(clean_path(path), clean, "{path:?}");
        }
    }

    #[test]
    fn dns_entries_stay_on_their_line() {
        for (field, dns) in [
            (
                "config.dns_config.servers[1]",
                DnsConfig {
                    servers: vec!["10.0.0.10".into(), "1.1.1.1\nnameserver 6.6.6.6".into()],
                    ..Default::default()
                },
            ),
            (
                "config.dns_config.searches[0]",
                DnsConfig {
                    searches: vec!["a\rb".into()],
                    ..Default::default()
                },
            ),
            (
                "config.dns_config.options[0]",
                DnsConfig {
                    options: vec!["ndots:5\0".into()],
                    ..Default::default()
                },
            ),
            (
                "config.dns_config.options[0]",
                DnsConfig {
                    options: vec!["ndots:5\u{b}".into()],
                    ..Default::default()
                },
            ),
        ] {
            let req = PodSandboxRequest {
                dns: Some(dns),
                ..request()
            };
            assert_eq!(refused_field(&req), field);
        }
        // Empty entries (dropped when written) and blanks inside one (words
        // on the same line) are accepted, as containerd writes them.
        let req = PodSandboxRequest {
            dns: Some(DnsConfig {
                servers: vec![String::new(), "10.0.0.10 ".into()],
                searches: vec!["a.svc b.svc".into(), String::new()],
                options: vec!["ndots:5\trotate".into(), String::new()],
            }),
            ..request()
        };
        assert!(validate(&req).is_ok());
    }

    fn mapping(
        protocol: Protocol,
        container_port: i32,
        host_port: i32,
        host_ip: &str,
    ) -> PortMapping {
        PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn port_mappings() {
        let with = |ports: Vec<PortMapping>| PodSandboxRequest {
            port_mappings: ports,
            ..request()
        };
        let ok = with(vec![
            mapping(Protocol::Tcp, 80, 8080, ""),
            mapping(Protocol::Udp, 80, 8080, ""),
            mapping(Protocol::Tcp, 81, 8080, "127.0.0.1"),
            mapping(Protocol::Tcp, 443, 0, ""),
            mapping(Protocol::Tcp, 444, 0, ""),
            mapping(Protocol::Sctp, 9, 9, "::1"),
            // Without a host port an entry is dropped, whatever it says
            // (containerd's toCNIPortMappings).
            mapping(Protocol::Tcp, 0, 0, ""),
            mapping(Protocol::Tcp, 65536, 0, ""),
            mapping(Protocol::Tcp, -3, -1, "localhost"),
            // The same host port twice: both go to CNI, as in containerd.
            mapping(Protocol::Tcp, 82, 8080, ""),
            mapping(Protocol::Tcp, 83, 8080, "0:0::1"),
            mapping(Protocol::Tcp, 84, 8080, "::1"),
        ]);
        assert!(validate(&ok).is_ok());
        for (field, ports) in [
            (
                "config.port_mappings[0].container_port",
                vec![mapping(Protocol::Tcp, 0, 80, "")],
            ),
            (
                "config.port_mappings[1].container_port",
                vec![
                    mapping(Protocol::Tcp, 80, 0, ""),
                    mapping(Protocol::Tcp, 65536, 80, ""),
                ],
            ),
            (
                "config.port_mappings[0].host_port",
                vec![mapping(Protocol::Tcp, 80, 70000, "")],
            ),
            (
                "config.port_mappings[0].host_ip",
                vec![mapping(Protocol::Tcp, 80, 80, "localhost")],
            ),
        ] {
            assert_eq!(refused_field(&with(ports)), field);
        }
    }

    #[test]
    fn labels_fit_containerd() {
        let mut req = request();
        req.labels.insert("k".into(), "v".repeat(4095));
        assert!(validate(&req).is_ok());
        req.labels.insert("k".into(), "v".repeat(4096));
        assert_eq!(refused_field(&req), "config.labels[\"k\"]");
        let mut req = request();
        req.labels.insert(String::new(), "v".into());
        assert_eq!(refused_field(&req), "config.labels[\"\"]");
        // Empty key and value: what containerd drops is dropped.
        let mut req = request();
        req.labels.insert(String::new(), String::new());
        req.labels.insert("k\tx".into(), String::new());
        assert!(validate(&req).is_ok());
        assert_eq!(normalized(req).labels.keys().collect::<Vec<_>>(), ["k\tx"]);
    }

    #[test]
    fn annotations_are_bounded_in_all() {
        let mut req = request();
        // What Kubernetes lets a pod have (256 KiB) and more is taken.
        req.annotations
            .insert("big".into(), "x".repeat(MAX_ANNOTATIONS_SIZE - 3));
        assert!(validate(&req).is_ok());
        req.annotations.insert("b".into(), String::new());
        assert_eq!(refused_field(&req), "config.annotations");
    }

    #[test]
    fn namespace_modes_other_than_node_are_the_pods_own() -> Result<()> {
        use super::super::NamespaceOptions;
        for mode in [
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Target,
        ] {
            let mut req = request();
            req.linux.namespaces = NamespaceOptions {
                network: mode,
                pid: mode,
                ipc: mode,
            };
            validate(&req)?;
        }
        Ok(())
    }

    #[test]
    fn cgroup_parent() {
        for (ok, clean) in [
            ("", ""),
            ("/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1"),
            (
                "kubepods-besteffort-pod1.slice",
                "kubepods-besteffort-pod1.slice",
            ),
            ("/kubepods/../x", "/x"),
            ("/kubepods/./x/", "/kubepods/x"),
        ] {
            let mut req = request();
            req.linux.cgroup_parent = ok.into();
            assert!(validate(&req).is_ok(), "{ok}");
            assert_eq!(normalized(req).linux.cgroup_parent, clean);
        }
        for bad in ["/kubepods\n", "/kubepods\0", "/kube\rpods"] {
            let mut req = request();
            req.linux.cgroup_parent = bad.into();
            assert_eq!(refused_field(&req), "config.linux.cgroup_parent", "{bad:?}");
        }
    }

    #[test]
    fn users_and_groups() {
        let sc = "config.linux.security_context";
        type Edit = fn(&mut LinuxSandbox);
        let cases: [(&str, Edit); 5] = [
            ("run_as_user", |l| l.run_as_user = Some(-1)),
            ("run_as_user", |l| l.run_as_user = Some(4_294_967_295)),
            ("run_as_group", |l| l.run_as_group = Some(1000)),
            ("run_as_group", |l| {
                l.run_as_user = Some(1000);
                l.run_as_group = Some(-5);
            }),
            ("supplemental_groups[1]", |l| {
                l.supplemental_groups = vec![1, 1 << 40]
            }),
        ];
        for (field, edit) in cases {
            let mut req = request();
            edit(&mut req.linux);
            assert_eq!(refused_field(&req), format!("{sc}.{field}"));
        }
        let mut req = request();
        req.linux.run_as_user = Some(65535);
        req.linux.run_as_group = Some(65535);
        req.linux.supplemental_groups = vec![0, 4_294_967_294];
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn user_namespaces_of_pods() {
        let ns = "config.linux.security_context.namespace_options.userns_options";
        let mut req = request();
        req.linux.user_namespace = Some(NamespaceMode::Node);
        assert!(validate(&req).is_ok());
        // POD without mappings is refused, with one mapping each it passes.
        req.linux.user_namespace = Some(NamespaceMode::Pod);
        assert_eq!(refused_field(&req), format!("{ns}.uids"));
        let m = crate::userns::IdMapping {
            container_id: 0,
            host_id: 100_000,
            length: 65536,
        };
        req.linux.userns_ids = crate::userns::Asked {
            uids: vec![m],
            gids: vec![m],
        };
        assert!(validate(&req).is_ok());
        // Not with a host namespace.
        let mut host = req.clone();
        host.linux.namespaces.pid = NamespaceMode::Node;
        assert_eq!(refused_field(&host), format!("{ns}.mode"));
        req.linux.user_namespace = Some(NamespaceMode::Target);
        assert_eq!(refused_field(&req), format!("{ns}.mode"));
        // Strict is done (the pause process has no image groups to merge).
        let mut req = request();
        req.linux.strict_supplemental_groups = true;
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn seccomp_profiles() {
        let mut req = request();
        for profile in [
            SecurityProfile::Unconfined,
            SecurityProfile::RuntimeDefault,
            SecurityProfile::Localhost("/var/lib/kubelet/seccomp/x.json".into()),
        ] {
            req.linux.seccomp = Some(profile);
            assert!(validate(&req).is_ok(), "{req:?}");
        }
        for path in ["", "x.json", "./x.json", "/x\0.json"] {
            req.linux.seccomp = Some(SecurityProfile::Localhost(path.into()));
            assert_eq!(
                refused_field(&req),
                "config.linux.security_context.seccomp.localhost_ref"
            );
        }
        // Trusted and absolute: `..` is cleaned, not refused.
        req.linux.seccomp = Some(SecurityProfile::Localhost(
            "/var/lib/kubelet/seccomp/../seccomp/./x.json".into(),
        ));
        assert!(validate(&req).is_ok());
        assert_eq!(
            normalized(req).linux.seccomp,
            Some(SecurityProfile::Localhost(
                "/var/lib/kubelet/seccomp/x.json".into()
            ))
        );
    }

    #[test]
    fn pod_resources_and_overhead_are_never_refused() -> Result<()> {
        use super::super::Resources;
        let odd = Resources {
            cpu_period: 10,
            cpu_quota: -2,
            cpu_shares: -1,
            memory_limit_in_bytes: -1,
        };
        let mut req = request();
        req.linux.resources = Some(odd);
        req.linux.overhead = Some(odd);
        validate(&req)?;
        req.linux.resources = Some(Resources {
            cpu_quota: 1,
            ..Default::default()
        });
        validate(&req)
    }

    #[test]
    fn sysctls_are_checked_with_the_pod_namespaces() {
        let mut req = request();
        req.linux.sysctls.insert(
            "net.ipv4.ip_local_reserved_ports".into(),
            "8080,9148".into(),
        );
        assert!(validate(&req).is_ok());
        req.linux
            .sysctls
            .insert("kernel.core_pattern".into(), "|/evil".into());
        assert_eq!(
            refused_field(&req),
            "config.linux.sysctls[\"kernel.core_pattern\"]"
        );
        let mut req = request();
        req.linux.namespaces.network = NamespaceMode::Node;
        req.linux
            .sysctls
            .insert("net.ipv4.ip_forward".into(), "1".into());
        assert_eq!(
            refused_field(&req),
            "config.linux.sysctls[\"net.ipv4.ip_forward\"]"
        );
    }
}
