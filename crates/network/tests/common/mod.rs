//! Helpers for the root-only integration tests: a throw-away CNI network
//! (unique bridge, subnet and host-local store per test) that cleans up after
//! itself even when the test panics.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crius_network::cni::NetworkConfig;
use crius_network::{Attachment, Cni, netns};
use ipnet::Ipv4Net;
use serde_json::{Value, json};

pub const PLUGIN_DIR: &str = "/usr/lib/cni";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A number unique to this call within the test process (< 40).
pub fn unique() -> u32 {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    assert!(n < 40, "too many test networks for the subnet scheme");
    n
}

/// Runs a command, returning (success, stdout + stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} {args:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs a command inside the network namespace pinned at `ns`.
pub fn nsenter(ns: &Path, args: &[&str]) -> (bool, String) {
    let net = format!("--net={}", ns.display());
    let mut all = vec![net.as_str()];
    all.extend_from_slice(args);
    run("nsenter", &all)
}

pub fn ping(ip: IpAddr) -> bool {
    run("busybox", &["ping", "-c1", "-W2", &ip.to_string()]).0
}

/// All rules (every table) mentioning `needle`.
pub fn iptables_lines_with(needle: &str) -> Vec<String> {
    let (ok, text) = run("iptables-save", &[]);
    assert!(ok, "iptables-save: {text}");
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Mount points (5th field of mountinfo) and their optional fields.
pub fn mounts() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some((PathBuf::from(f.get(4)?), f[6..dash].join(" ")))
        })
        .collect()
}

/// Unmounts the netns directory's self bind mount(s) (test clean-up).
pub fn unmount_dir(dir: &Path) {
    while nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

/// A CNI network on its own bridge, subnet and host-local store, in a
/// temporary directory.
pub struct TestNet {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub netns_dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: NetworkConfig,
    pub cni: Cni,
    attachments: Mutex<Vec<Attachment>>,
    // Last: dropped after `Drop::drop` cleaned up what lives in it.
    pub tmp: tempfile::TempDir,
}

impl TestNet {
    /// `plugins` gets the standard bridge plugin (isGateway, no ipMasq,
    /// host-local on the test subnet and store) and returns the plugin list.
    pub fn new(cni_version: &str, plugins: impl FnOnce(Value) -> Vec<Value>) -> TestNet {
        Self::with_bin_dirs(cni_version, vec![PathBuf::from(PLUGIN_DIR)], plugins)
    }

    pub fn with_bin_dirs(
        cni_version: &str,
        bin_dirs: Vec<PathBuf>,
        plugins: impl FnOnce(Value) -> Vec<Value>,
    ) -> TestNet {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (network namespaces, bridges, iptables)"
        );
        let n = unique();
        let pid = std::process::id();
        let name = format!("crt-{pid}-{n}");
        let bridge = format!("crt{}{n}", pid % 100_000);
        let third = u8::try_from((pid % 5) * 40 + n).expect("subnet octet");
        let subnet = Ipv4Net::new(Ipv4Addr::new(10, 231, third, 0), 24).expect("subnet");
        let gateway = Ipv4Addr::new(10, 231, third, 1);
        let tmp = tempfile::tempdir().expect("tempdir");
        let netns_dir = tmp.path().join("netns");
        let data_dir = tmp.path().join("ipam");
        let bridge_plugin = json!({
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": data_dir,
            }
        });
        let plugins = plugins(bridge_plugin);
        let raw = json!({"cniVersion": cni_version, "name": name, "plugins": plugins});
        let file = tmp.path().join("10-test.conflist");
        let raw = serde_json::to_vec_pretty(&raw).expect("json");
        std::fs::write(&file, &raw).expect("write conflist");
        let config = NetworkConfig {
            name: name.clone(),
            file,
            plugins: plugins
                .iter()
                .map(|p| p["type"].as_str().unwrap_or_default().to_string())
                .collect(),
            raw,
        };
        let cni = Cni::new(bin_dirs, tmp.path().join("cache"));
        TestNet {
            name,
            bridge,
            subnet,
            gateway,
            netns_dir,
            data_dir,
            config,
            cni,
            attachments: Mutex::new(Vec::new()),
            tmp,
        }
    }

    /// A fresh pinned netns and an attachment for `container_id` on eth0,
    /// remembered for clean-up.
    pub fn attachment(&self, container_id: &str) -> Attachment {
        let ns = netns::create(&self.netns_dir, container_id).expect("create netns");
        let att = Attachment {
            container_id: container_id.to_string(),
            netns: ns,
            ifname: "eth0".into(),
            args: Attachment::kubernetes_args("default", container_id, "uid", container_id),
            capabilities: Default::default(),
        };
        self.remember(&att);
        att
    }

    pub fn remember(&self, att: &Attachment) {
        self.attachments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(att.clone());
    }

    /// Addresses host-local has on file for this network.
    pub fn reserved_ips(&self) -> Vec<IpAddr> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join(&self.name)) else {
            return Vec::new();
        };
        let mut ips: Vec<IpAddr> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ips.sort();
        ips
    }

    /// Interfaces enslaved to the bridge (the host ends of the pods' veths).
    pub fn bridge_ports(&self) -> Vec<String> {
        let (ok, text) = run("ip", &["-o", "link", "show", "master", &self.bridge]);
        if !ok {
            return Vec::new();
        }
        text.lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or_default().to_string())
            .collect()
    }

    pub fn cache_file(&self, container_id: &str) -> PathBuf {
        self.tmp
            .path()
            .join("cache")
            .join(format!("{}-{container_id}-eth0.json", self.name))
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // DEL whatever a failed test left attached (iptables rules, IPs), on
        // a thread of its own: this may run inside the test's runtime.
        let attachments =
            std::mem::take(&mut *self.attachments.lock().unwrap_or_else(|p| p.into_inner()));
        let cni = self.cni.clone();
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            for att in attachments {
                let _ = rt.block_on(cni.del(&config, &att));
                let _ = netns::remove(&att.netns);
            }
        });
        let _ = cleanup.join();
        if let Ok(entries) = std::fs::read_dir(&self.netns_dir) {
            for e in entries.flatten() {
                let _ = netns::remove(&e.path());
            }
        }
        unmount_dir(&self.netns_dir);
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}
