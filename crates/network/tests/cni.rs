//! CNI ADD/DEL with the real plugins in /usr/lib/cni, and with scripted fake
//! plugins for the protocol details (needs root).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestNet, iptables_lines_with, nsenter, ping};
use crius_network::CniError;
use crius_network::{Attachment, PortMapping, RuntimeConfig, cni, netns};
use serde_json::{Value, json};

fn portmap() -> Value {
    json!({"type": "portmap", "capabilities": {"portMappings": true}})
}

fn loopback() -> Value {
    json!({"type": "loopback"})
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Connects to 127.0.0.1:`port` until a listener answers with a line.
fn read_line_from(port: u16, deadline: Duration) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let until = Instant::now() + deadline;
    let mut last = String::new();
    while Instant::now() < until {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let mut line = String::new();
                match BufReader::new(stream).read_line(&mut line) {
                    Ok(n) if n > 0 => return Ok(line),
                    Ok(_) => last = "connection closed without data".into(),
                    Err(e) => last = format!("read: {e}"),
                }
            }
            Err(e) => last = format!("connect: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_chain_reaches_the_pod_and_del_releases_everything() {
    let net = TestNet::new("1.0.0", |bridge| vec![bridge, portmap(), loopback()]);
    // The configuration loads through discovery as the server does it.
    let conf_dir = net.config.file.parent().expect("dir");
    let loaded = cni::load(conf_dir, &[PathBuf::from(common::PLUGIN_DIR)]).expect("load");
    assert_eq!(loaded, net.config);

    let cid = format!("{}full", net.bridge);
    let mut att = net.attachment(&cid);
    let host_port = free_port();
    att.capabilities = RuntimeConfig {
        port_mappings: vec![PortMapping {
            host_port,
            container_port: 8080,
            protocol: "TCP".into(),
            host_ip: String::new(),
        }],
    };
    net.remember(&att);

    let result = net.cni.add(&net.config, &att).await.expect("ADD");
    assert_eq!(result.cni_version, "1.0.0");
    let ips = result.pod_ips();
    assert_eq!(ips.len(), 1, "{result:?}");
    let IpAddr::V4(ip) = ips[0] else {
        panic!("not IPv4: {ips:?}")
    };
    assert!(net.subnet.contains(&ip), "{ip} not in {}", net.subnet);
    assert_ne!(ip, net.gateway);
    let on_eth0 = result
        .ips
        .iter()
        .find(|c| c.ip() == Some(IpAddr::V4(ip)))
        .expect("ip config");
    assert_eq!(on_eth0.gateway.as_deref(), Some(&*net.gateway.to_string()));
    let eth0 = &result.interfaces[on_eth0.interface.expect("interface index")];
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.sandbox, att.netns.display().to_string());
    assert!(result.interfaces.iter().any(|i| i.name == net.bridge));

    // Inside the namespace: eth0 with the address, lo up.
    let (ok, addrs) = nsenter(&att.netns, &["ip", "-o", "addr"]);
    assert!(ok, "{addrs}");
    assert!(
        addrs
            .lines()
            .any(|l| l.contains(" eth0 ") && l.contains(&format!("inet {ip}/24"))),
        "{addrs}"
    );
    assert!(addrs.contains("inet 127.0.0.1/8"), "lo not up: {addrs}");
    assert_eq!(net.bridge_ports().len(), 1);
    assert_eq!(net.reserved_ips(), vec![IpAddr::V4(ip)]);
    assert!(ping(IpAddr::V4(ip)), "pod {ip} does not answer pings");

    // The host port on 127.0.0.1 reaches a listener in the pod.
    assert!(
        !iptables_lines_with(&cid).is_empty(),
        "portmap made no rules for the container"
    );
    let mut listener = Command::new("nsenter")
        .arg(format!("--net={}", att.netns.display()))
        .args(["busybox", "sh", "-c", "echo pong | busybox nc -l -p 8080"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start listener");
    let answer =
        tokio::task::spawn_blocking(move || read_line_from(host_port, Duration::from_secs(10)))
            .await
            .expect("join");
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(answer.as_deref(), Ok("pong\n"), "via 127.0.0.1:{host_port}");

    // The cache holds what DEL needs.
    let cache: Value =
        serde_json::from_slice(&std::fs::read(net.cache_file(&cid)).expect("cache file"))
            .expect("cache json");
    assert_eq!(cache["result"], result.raw);
    assert_eq!(
        cache["capabilityArgs"]["portMappings"][0]["hostPort"],
        host_port
    );
    assert_eq!(
        net.cni.cached_result(&net.name, &att).await.as_ref(),
        Some(&result)
    );

    // DEL: address released, rules and veth gone, cache dropped.
    net.cni.del(&net.config, &att).await.expect("DEL");
    assert_eq!(net.reserved_ips(), Vec::<IpAddr>::new());
    assert_eq!(iptables_lines_with(&cid), Vec::<String>::new());
    assert_eq!(net.bridge_ports(), Vec::<String>::new());
    assert!(!net.cache_file(&cid).exists());
    let (_, links) = nsenter(&att.netns, &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(!ping(IpAddr::V4(ip)));

    // A second DEL is fine, and so is one after the namespace is gone.
    net.cni.del(&net.config, &att).await.expect("second DEL");
    netns::remove(&att.netns).expect("remove netns");
    net.cni
        .del(&net.config, &att)
        .await
        .expect("DEL without netns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_after_the_namespace_is_gone_cleans_up_0_4_0() {
    let net = TestNet::new("0.4.0", |bridge| vec![bridge, portmap(), loopback()]);
    let cid = format!("{}gone", net.bridge);
    let mut att = net.attachment(&cid);
    att.capabilities.port_mappings.push(PortMapping {
        host_port: free_port(),
        container_port: 80,
        protocol: "udp".into(),
        host_ip: "127.0.0.1".into(),
    });
    net.remember(&att);
    let result = net.cni.add(&net.config, &att).await.expect("ADD");
    assert_eq!(result.cni_version, "0.4.0");
    let ip = result.pod_ips()[0];
    assert_eq!(net.reserved_ips(), vec![ip]);
    assert!(!iptables_lines_with(&cid).is_empty());

    // The pod's namespace disappears first (the veth pair goes with it).
    netns::remove(&att.netns).expect("remove netns");
    // The server forgot the port mappings: DEL takes them from the cache.
    let mut forgetful = att.clone();
    forgetful.capabilities = RuntimeConfig::default();
    forgetful.args.clear();
    net.cni.del(&net.config, &forgetful).await.expect("DEL");
    assert_eq!(net.reserved_ips(), Vec::<IpAddr>::new());
    assert_eq!(iptables_lines_with(&cid), Vec::<String>::new());
    assert_eq!(net.bridge_ports(), Vec::<String>::new());
    assert!(!net.cache_file(&cid).exists());
    net.cni
        .del(&net.config, &forgetful)
        .await
        .expect("DEL again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_add_with_a_missing_plugin_rolls_back() {
    let net = TestNet::new("1.0.0", |bridge| {
        vec![bridge, json!({"type": "crius-no-such-plugin"}), loopback()]
    });
    let cid = format!("{}miss", net.bridge);
    let att = net.attachment(&cid);
    let err = net
        .cni
        .add(&net.config, &att)
        .await
        .expect_err("ADD must fail");
    let text = err.to_string();
    assert!(matches!(err, CniError::NoPlugin { .. }), "{err:?}");
    assert!(
        text.contains("crius-no-such-plugin") && text.contains(common::PLUGIN_DIR),
        "{text}"
    );
    assert_eq!(
        net.reserved_ips(),
        Vec::<IpAddr>::new(),
        "IP left allocated"
    );
    assert_eq!(
        net.bridge_ports(),
        Vec::<String>::new(),
        "veth left on the bridge"
    );
    let (_, links) = nsenter(&att.netns, &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(!net.cache_file(&cid).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_add_with_an_exhausted_range_rolls_back() {
    let net = TestNet::new("1.0.0", |mut bridge| {
        // A range of exactly one address.
        let subnet = bridge["ipam"]["ranges"][0][0]["subnet"]
            .as_str()
            .expect("subnet")
            .to_string();
        let only = subnet.replace(".0/24", ".10");
        bridge["ipam"]["ranges"][0][0]["rangeStart"] = json!(only);
        bridge["ipam"]["ranges"][0][0]["rangeEnd"] = json!(only);
        vec![bridge, portmap(), loopback()]
    });
    let first = net.attachment(&format!("{}one", net.bridge));
    let ok = net.cni.add(&net.config, &first).await.expect("first ADD");
    let taken = ok.pod_ips()[0];
    assert!(taken.to_string().ends_with(".10"), "{taken}");
    let ports = net.bridge_ports();
    assert_eq!(ports.len(), 1);

    let second = net.attachment(&format!("{}two", net.bridge));
    let err = net
        .cni
        .add(&net.config, &second)
        .await
        .expect_err("range is full");
    let text = err.to_string();
    assert!(matches!(err, CniError::Failed { .. }), "{err:?}");
    assert!(
        text.contains("bridge") && text.contains("no IP addresses available"),
        "{text}"
    );
    assert_eq!(
        net.reserved_ips(),
        vec![taken],
        "the failed ADD holds an IP"
    );
    assert_eq!(net.bridge_ports(), ports, "the failed ADD left a veth");
    let (_, links) = nsenter(&second.netns, &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");

    net.cni.del(&net.config, &first).await.expect("DEL");
    assert_eq!(net.reserved_ips(), Vec::<IpAddr>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_on_one_bridge() {
    let net = TestNet::new("1.0.0", |bridge| vec![bridge, portmap(), loopback()]);
    let atts: Vec<Attachment> = (0..4)
        .map(|i| net.attachment(&format!("{}c{i}", net.bridge)))
        .collect();
    let adds: Vec<_> = atts
        .iter()
        .map(|a| {
            let (cni, config, a) = (net.cni.clone(), net.config.clone(), a.clone());
            tokio::spawn(async move { cni.add(&config, &a).await })
        })
        .collect();
    let mut ips = Vec::new();
    for add in adds {
        ips.push(add.await.expect("join").expect("ADD").pod_ips()[0]);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "{ips:?}");
    assert_eq!(net.reserved_ips(), ips);
    assert_eq!(net.bridge_ports().len(), 4);
    for ip in &ips {
        assert!(ping(*ip), "{ip}");
    }
    let dels: Vec<_> = atts
        .iter()
        .map(|a| {
            let (cni, config, a) = (net.cni.clone(), net.config.clone(), a.clone());
            tokio::spawn(async move { cni.del(&config, &a).await })
        })
        .collect();
    for del in dels {
        del.await.expect("join").expect("DEL");
    }
    assert_eq!(net.reserved_ips(), Vec::<IpAddr>::new());
    assert_eq!(net.bridge_ports(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_into_a_missing_namespace_fails_without_running_plugins() {
    let net = TestNet::new("1.0.0", |bridge| vec![bridge, loopback()]);
    let att = Attachment {
        container_id: format!("{}nons", net.bridge),
        netns: net.tmp.path().join("no-such-netns"),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let err = net.cni.add(&net.config, &att).await.expect_err("no netns");
    assert!(matches!(err, CniError::NoNetns { .. }), "{err:?}");
    assert!(net.bridge_ports().is_empty());
    assert_eq!(net.reserved_ips(), Vec::<IpAddr>::new());
}

// ---- scripted fake plugins: protocol details ----

/// Writes an executable `#!/bin/sh` plugin into `dir`.
fn fake_plugin(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create plugin");
    writeln!(f, "#!/bin/sh\n{body}").expect("write plugin");
    f.sync_all().expect("sync");
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A plugin that records its stdin and CNI_* environment in `log` (one file
/// pair per call, numbered in call order) and prints `result` on ADD.
fn recording_plugin(dir: &Path, log: &Path, name: &str, result: &Value) {
    fake_plugin(
        dir,
        name,
        &format!(
            r#"n=$(ls {log} | wc -l)
n=$(printf %03d $((n / 2)))
cat > {log}/$n-$CNI_COMMAND-{name}.json
env | grep ^CNI_ | sort > {log}/$n-$CNI_COMMAND-{name}.env
if [ "$CNI_COMMAND" = ADD ]; then echo '{result}'; fi"#,
            log = log.display(),
        ),
    );
}

/// (command-plugin, stdin, env) for each recorded call, in order.
fn calls(log: &Path) -> Vec<(String, Value, String)> {
    let mut names: Vec<String> = std::fs::read_dir(log)
        .expect("log dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let stem = n.trim_end_matches(".json").to_string();
            let stdin = serde_json::from_slice(&std::fs::read(log.join(&n)).expect("stdin"))
                .expect("stdin json");
            let env = std::fs::read_to_string(log.join(format!("{stem}.env"))).expect("env");
            (stem.split_once('-').expect("n-").1.to_string(), stdin, env)
        })
        .collect()
}

fn result_with_ip(ip: &str, netns: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": netns}],
        "ips": [{"address": ip, "interface": 0}]
    })
}

struct Fake {
    net: TestNet,
    bin: PathBuf,
    log: PathBuf,
}

fn fake_net(plugins: Vec<Value>) -> Fake {
    let tmp_bin = tempfile::tempdir().expect("tempdir").keep();
    let log = tmp_bin.join("log");
    std::fs::create_dir(&log).expect("log dir");
    let net = TestNet::with_bin_dirs("1.0.0", vec![tmp_bin.clone()], |_| plugins);
    Fake {
        net,
        bin: tmp_bin,
        log,
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bin);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_get_chained_results_env_and_only_declared_capabilities() {
    let f = fake_net(vec![
        json!({"type": "one", "x": 1}),
        json!({"type": "two", "capabilities": {"portMappings": true}}),
        json!({"type": "three", "capabilities": {"portMappings": false}}),
    ]);
    let mut att = f.net.attachment("c1");
    let r1 = result_with_ip("10.0.0.1/24", &att.netns);
    let r2 = result_with_ip("10.0.0.2/24", &att.netns);
    let r3 = result_with_ip("10.0.0.3/24", &att.netns);
    recording_plugin(&f.bin, &f.log, "one", &r1);
    recording_plugin(&f.bin, &f.log, "two", &r2);
    recording_plugin(&f.bin, &f.log, "three", &r3);
    att.capabilities.port_mappings.push(PortMapping {
        host_port: 80,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: String::new(),
    });

    let result = f.net.cni.add(&f.net.config, &att).await.expect("ADD");
    assert_eq!(result.raw, r3);
    let c = calls(&f.log);
    let order: Vec<&str> = c.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(order, ["ADD-one", "ADD-two", "ADD-three"]);
    let (_, s1, env1) = &c[0];
    assert_eq!(
        *s1,
        json!({"type": "one", "x": 1, "name": f.net.name, "cniVersion": "1.0.0"})
    );
    let netns = att.netns.display().to_string();
    for line in [
        "CNI_COMMAND=ADD".to_string(),
        "CNI_CONTAINERID=c1".into(),
        format!("CNI_NETNS={netns}"),
        "CNI_IFNAME=eth0".into(),
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=c1;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid".into(),
        format!("CNI_PATH={}", f.bin.display()),
    ] {
        assert!(env1.lines().any(|l| l == line), "{line} missing from\n{env1}");
    }
    assert_eq!(c[1].1["prevResult"], r1);
    assert_eq!(
        c[1].1["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]})
    );
    assert_eq!(c[2].1["prevResult"], r2);
    assert!(c[2].1.get("runtimeConfig").is_none());

    // DEL: reverse order, the cached final result as prevResult everywhere,
    // empty CNI_NETNS once the namespace is gone.
    netns::remove(&att.netns).expect("remove netns");
    f.net.cni.del(&f.net.config, &att).await.expect("DEL");
    let c = calls(&f.log);
    let order: Vec<&str> = c.iter().skip(3).map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(order, ["DEL-three", "DEL-two", "DEL-one"]);
    for (_, stdin, env) in &c[3..] {
        assert_eq!(stdin["prevResult"], r3);
        assert!(env.lines().any(|l| l == "CNI_NETNS="), "{env}");
        assert!(env.lines().any(|l| l == "CNI_COMMAND=DEL"), "{env}");
    }
    assert!(
        c[4].1.get("runtimeConfig").is_some(),
        "two lost its capabilities"
    );
    assert!(!f.net.cache_file("c1").exists());

    // Without a cache there is no prevResult.
    f.net.cni.del(&f.net.config, &att).await.expect("DEL again");
    let c = calls(&f.log);
    assert_eq!(c.len(), 9);
    assert!(c[6..].iter().all(|(_, s, _)| s.get("prevResult").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_is_reported_and_the_chain_rolled_back() {
    let f = fake_net(vec![
        json!({"type": "one"}),
        json!({"type": "bad"}),
        json!({"type": "three"}),
    ]);
    let att = f.net.attachment("c2");
    let r1 = result_with_ip("10.0.0.1/24", &att.netns);
    recording_plugin(&f.bin, &f.log, "one", &r1);
    recording_plugin(&f.bin, &f.log, "three", &r1);
    fake_plugin(
        &f.bin,
        "bad",
        &format!(
            r#"cat > /dev/null
echo "$CNI_COMMAND" >> {log}/bad.calls
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"cannot frobnicate","details":"widget 7 is busy"}}'
  echo 'some diagnostics' >&2
  exit 1
fi"#,
            log = f.bin.display()
        ),
    );
    let err = f
        .net
        .cni
        .add(&f.net.config, &att)
        .await
        .expect_err("ADD fails");
    let text = err.to_string();
    assert!(
        matches!(err, CniError::Failed { code: Some(11), .. }),
        "{err:?}"
    );
    assert!(
        text.contains("bad") && text.contains("cannot frobnicate: widget 7 is busy (code 11)"),
        "{text}"
    );
    let order: Vec<String> = calls(&f.log).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(order, ["ADD-one", "DEL-one"], "three must not run");
    let bad_calls = std::fs::read_to_string(f.bin.join("bad.calls")).expect("bad calls");
    assert_eq!(bad_calls, "ADD\nDEL\n", "the failing plugin gets a DEL too");
    assert!(!f.net.cache_file("c2").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_plugin_is_killed_after_the_timeout() {
    let mut f = fake_net(vec![json!({"type": "hang"})]);
    f.net.cni = f
        .net
        .cni
        .clone()
        .with_plugin_timeout(Duration::from_millis(500));
    let pid_file = f.bin.join("hang.pid");
    fake_plugin(
        &f.bin,
        "hang",
        &format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then sleep 60 & echo $! > {}.child; echo $$ > {}; exec sleep 60; fi",
            pid_file.display(),
            pid_file.display()
        ),
    );
    let att = f.net.attachment("c3");
    let started = Instant::now();
    let err = f
        .net
        .cni
        .add(&f.net.config, &att)
        .await
        .expect_err("timeout");
    assert!(matches!(err, CniError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("hang"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The plugin and the child it started are gone, or at least dead
    // (zombies until reaped).
    for file in [pid_file.clone(), pid_file.with_extension("pid.child")] {
        let pid = std::fs::read_to_string(&file).expect("pid");
        let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
        let alive = || std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
        let until = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive(), "{} still runs", file.display());
    }
}
