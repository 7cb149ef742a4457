//! Contents of the files crius writes for a sandbox and bind-mounts into its
//! containers: resolv.conf, hosts and hostname.
//!
//! The inputs must have passed [`super::validate`] (no line breaks in DNS
//! entries or hostnames); these functions only format.

use std::net::IpAddr;

use super::DnsConfig;

/// resolv.conf for `dns`, in containerd's layout: one `search` line, one
/// `nameserver` line per server, one `options` line; empty parts are left
/// out.
///
/// An empty result (all lists empty) means "no DNS config": the caller then
/// copies the node's resolv.conf, as containerd does. The lists are written
/// as given, without glibc's old limits (6 search domains, 256 characters;
/// gone since glibc 2.26): kubelet already caps them (3 servers; 32 search
/// domains, 2048 characters).
///
/// Entries that are empty (or blank) are dropped: they would write nothing
/// or an empty `nameserver` line.
pub fn resolv_conf(dns: &DnsConfig) -> String {
    let words = |list: &[String]| -> Vec<String> {
        list.iter()
            .filter(|e| !e.trim().is_empty())
            .cloned()
            .collect()
    };
    let (searches, servers, options) = (
        words(&dns.searches),
        words(&dns.servers),
        words(&dns.options),
    );
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for server in &servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// /etc/hosts for a pod: the loopback entries kubelet writes, then
/// `<ip>\t<hostname>` for each pod IP (none when `hostname` is empty).
///
/// For host-network pods the caller copies the node's /etc/hosts instead.
pub fn hosts(hostname: &str, pod_ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "# crius-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        for ip in pod_ips {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    out
}

/// /etc/hostname: the name and a newline.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolv_conf_like_containerd() {
        let dns = DnsConfig {
            servers: strings(&["10.96.0.10", "fd00::10"]),
            searches: strings(&["default.svc.cluster.local", "svc.cluster.local"]),
            options: strings(&["ndots:5", "timeout:2"]),
        };
        assert_eq!(
            resolv_conf(&dns),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\n\
             nameserver fd00::10\n\
             options ndots:5 timeout:2\n"
        );
        let only_server = DnsConfig {
            servers: strings(&["1.1.1.1"]),
            ..Default::default()
        };
        assert_eq!(resolv_conf(&only_server), "nameserver 1.1.1.1\n");
        assert_eq!(resolv_conf(&DnsConfig::default()), "");
        let with_empty = DnsConfig {
            servers: strings(&["", "1.1.1.1", " "]),
            searches: strings(&["", "a b"]),
            options: strings(&[""]),
        };
        assert_eq!(resolv_conf(&with_empty), "search a b\nnameserver 1.1.1.1\n");
    }

    #[test]
    fn hosts_file() {
        let ips: Vec<IpAddr> = vec![
            IpAddr::from([10, 88, 0, 5]),
            "fd00::5".parse().expect("valid IPv6"),
        ];
        let hosts = hosts("web-0", &ips);
        assert!(hosts.starts_with("# crius-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(hosts.ends_with("fe00::2\tip6-allrouters\n10.88.0.5\tweb-0\nfd00::5\tweb-0\n"));
        assert!(!super::hosts("", &ips).contains("10.88.0.5"));
    }

    #[test]
    fn hostname_has_a_newline() {
        assert_eq!(hostname_file("web-0"), "web-0\n");
    }
}
