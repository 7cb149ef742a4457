//! The result of a CNI ADD, as plugins print it.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// The final result of an ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// `cniVersion` of the result.
    pub cni_version: String,
    pub ips: Vec<IpConfig>,
    pub interfaces: Vec<Interface>,
    /// The result as the last plugin printed it.
    pub raw: Value,
}

/// One entry of a result's `ips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.88.0.5/16`.
    pub address: String,
    pub gateway: Option<String>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// One entry of a result's `interfaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The netns path for interfaces inside the sandbox; empty on the host.
    pub sandbox: String,
}

impl IpConfig {
    /// The address without its prefix length.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next().and_then(|a| a.parse().ok())
    }
}

impl CniResult {
    /// Parses a result printed by a plugin: the 0.3.x / 0.4.0 / 1.0.0 format
    /// (`ips`, `interfaces`) or the legacy 0.1.0 / 0.2.0 one (`ip4`, `ip6`).
    pub fn from_json(raw: Value) -> std::result::Result<Self, String> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "cniVersion", default)]
            cni_version: String,
            #[serde(default)]
            interfaces: Vec<WireInterface>,
            #[serde(default)]
            ips: Vec<WireIp>,
            #[serde(default)]
            ip4: Option<WireLegacy>,
            #[serde(default)]
            ip6: Option<WireLegacy>,
        }
        #[derive(Deserialize)]
        struct WireInterface {
            name: String,
            #[serde(default)]
            mac: String,
            #[serde(default)]
            sandbox: String,
        }
        #[derive(Deserialize)]
        struct WireIp {
            address: String,
            #[serde(default)]
            gateway: Option<String>,
            #[serde(default)]
            interface: Option<usize>,
        }
        #[derive(Deserialize)]
        struct WireLegacy {
            ip: String,
            #[serde(default)]
            gateway: Option<String>,
        }
        if !raw.is_object() {
            return Err("not a JSON object".into());
        }
        let wire: Wire = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        let mut ips: Vec<IpConfig> = wire
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                address: ip.address,
                gateway: ip.gateway.filter(|g| !g.is_empty()),
                interface: ip.interface,
            })
            .collect();
        for legacy in [wire.ip4, wire.ip6].into_iter().flatten() {
            ips.push(IpConfig {
                address: legacy.ip,
                gateway: legacy.gateway.filter(|g| !g.is_empty()),
                interface: None,
            });
        }
        for ip in &ips {
            if ip.ip().is_none() {
                return Err(format!("{:?} is not an IP address", ip.address));
            }
        }
        Ok(CniResult {
            cni_version: wire.cni_version,
            ips,
            interfaces: wire
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: i.mac,
                    sandbox: i.sandbox,
                })
                .collect(),
            raw,
        })
    }

    /// The pod's IPs, IPv4 first: the addresses on interfaces inside the
    /// sandbox (those with a `sandbox` path, i.e. eth0 rather than the
    /// host-side bridge or veth), loopback addresses left out. When no
    /// address names its interface (legacy results), all addresses count.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let any_indexed = self.ips.iter().any(|ip| ip.interface.is_some());
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in &self.ips {
            let in_sandbox = match ip.interface {
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|iface| !iface.sandbox.is_empty()),
                None => !any_indexed,
            };
            if let Some(addr) = ip.ip()
                && in_sandbox
                && !addr.is_loopback()
                && !out.contains(&addr)
            {
                out.push(addr);
            }
        }
        out.sort_by_key(|a| a.is_ipv6());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_1_0_0_and_pod_ips() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "crius0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"},
                {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"address": "10.88.0.1/16", "interface": 0},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "127.0.0.1/8", "interface": 3}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let r = CniResult::from_json(raw.clone()).expect("parse");
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces.len(), 4);
        assert_eq!(r.interfaces[2].sandbox, "/run/netns/x");
        assert_eq!(r.ips[2].gateway.as_deref(), Some("10.88.0.1"));
        assert_eq!(r.ips[2].interface, Some(2));
        assert_eq!(r.raw, raw);
        let ips: Vec<String> = r.pod_ips().iter().map(|a| a.to_string()).collect();
        assert_eq!(ips, ["10.88.0.5", "fd00::5"]);
    }

    #[test]
    fn result_0_4_0_and_legacy() {
        let r = CniResult::from_json(json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "cc", "sandbox": "/ns"}],
            "ips": [{"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}]
        }))
        .expect("0.4.0");
        assert_eq!(r.pod_ips(), vec!["10.1.2.3".parse::<IpAddr>().expect("ip")]);

        let r = CniResult::from_json(json!({
            "cniVersion": "0.2.0",
            "ip6": {"ip": "fd00::2/64"},
            "ip4": {"ip": "10.1.2.4/24", "gateway": "10.1.2.1"}
        }))
        .expect("0.2.0");
        let ips: Vec<String> = r.pod_ips().iter().map(|a| a.to_string()).collect();
        assert_eq!(ips, ["10.1.2.4", "fd00::2"]);

        assert!(CniResult::from_json(json!({"ips": [{"address": "nope"}]})).is_err());
        assert!(CniResult::from_json(json!([])).is_err());
    }
}
