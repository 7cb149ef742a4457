use super::*;

const GPU_JSON: &str = r#"{
  "cdiVersion": "0.6.0",
  "kind": "vendor.com/gpu",
  "containerEdits": { "env": ["VENDOR_DRIVER=1"] },
  "devices": [
    { "name": "0",
      "containerEdits": {
        "env": ["GPU=0"],
        "deviceNodes": [{ "path": "/dev/gpu0", "hostPath": "/dev/null", "permissions": "rw" }],
        "mounts": [{ "hostPath": "/opt/vendor/lib", "containerPath": "/usr/lib/vendor", "options": ["ro", "bind"] }],
        "hooks": [{ "hookName": "createContainer", "path": "/opt/vendor/hook", "args": ["hook", "x"] }],
        "additionalGIDs": [44]
      } }
  ]
}"#;

const GPU_YAML_OVERRIDE: &str = "cdiVersion: 0.5.0\nkind: vendor.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits:\n    env: [GPU=override]\n";

fn null_device(p: &Path) -> Option<HostDevice> {
    (p == Path::new("/dev/null")).then(|| HostDevice {
        path: "/dev/null".into(),
        kind: HostDeviceKind::Char,
        major: 1,
        minor: 3,
        file_mode: 0o666,
        uid: 0,
        gid: 0,
    })
}

fn names(list: &[&str]) -> Vec<(String, String)> {
    list.iter()
        .enumerate()
        .map(|(i, n)| (format!("config.CDI_devices[{i}].name"), n.to_string()))
        .collect()
}

fn spec() -> Spec {
    let mut s = Spec::default();
    s.set_hooks(None);
    s.set_mounts(Some(vec![]));
    s
}

#[test]
fn names_are_checked_as_cdi_qualifies_them() {
    assert_eq!(parse_name("vendor.com/gpu=0"), Ok(("vendor.com/gpu", "0")));
    assert_eq!(
        parse_name("nvidia.com/gpu=all"),
        Ok(("nvidia.com/gpu", "all"))
    );
    for bad in [
        "gpu0",
        "vendor.com=0",
        "vendor.com/gpu=",
        "/gpu=0",
        "vendor.com/g pu=0",
        "vendor.com/gpu=0/1",
    ] {
        assert!(parse_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_device_brings_its_nodes_mounts_env_hooks_and_groups() -> Result<()> {
    let r = Registry::new(vec![(0, "/etc/cdi/gpu.json".into(), GPU_JSON.into())]);
    assert!(r.broken.is_empty(), "{:?}", r.broken);
    let edits = r.resolve(&names(&["vendor.com/gpu=0"]))?;
    let mut s = spec();
    apply(&mut s, &edits, &null_device)?;
    let env = s
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    assert!(
        env.contains(&"VENDOR_DRIVER=1".to_string()) && env.contains(&"GPU=0".to_string()),
        "{env:?}"
    );
    let linux = s.linux().as_ref().expect("linux");
    let dev = &linux.devices().as_ref().expect("devices")[0];
    assert_eq!(
        (dev.path().as_path(), dev.major(), dev.minor()),
        (Path::new("/dev/gpu0"), 1, 3)
    );
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let rule = rules.last().expect("a cgroup rule");
    assert!(rule.allow() && rule.major() == Some(1) && rule.minor() == Some(3));
    assert_eq!(rule.access().as_deref(), Some("rw"));
    let mounts = s.mounts().clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.destination() == Path::new("/usr/lib/vendor"))
    );
    let hooks = s
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
        .unwrap_or_default();
    assert_eq!(hooks[0].path(), Path::new("/opt/vendor/hook"));
    let gids = s
        .process()
        .as_ref()
        .and_then(|p| p.user().additional_gids().clone())
        .unwrap_or_default();
    assert!(gids.contains(&44), "{gids:?}");
    Ok(())
}

#[test]
fn a_later_directory_wins_and_one_directory_twice_is_a_conflict() {
    let r = Registry::new(vec![
        (0, "/etc/cdi/gpu.json".into(), GPU_JSON.into()),
        (1, "/var/run/cdi/gpu.yaml".into(), GPU_YAML_OVERRIDE.into()),
    ]);
    let edits = r.resolve(&names(&["vendor.com/gpu=0"])).expect("resolves");
    assert!(edits.iter().any(|e| e.env == ["GPU=override"]), "{edits:?}");
    let r = Registry::new(vec![
        (1, "/var/run/cdi/a.yaml".into(), GPU_YAML_OVERRIDE.into()),
        (1, "/var/run/cdi/b.yaml".into(), GPU_YAML_OVERRIDE.into()),
    ]);
    let e = r
        .resolve(&names(&["vendor.com/gpu=0"]))
        .expect_err("a conflict");
    assert!(e.to_string().contains("defined twice"), "{e}");
}

#[test]
fn unknown_devices_and_broken_specs_are_named() {
    let r = Registry::new(vec![
        (0, "/etc/cdi/gpu.json".into(), GPU_JSON.into()),
        (0, "/etc/cdi/broken.json".into(), "{ not json".into()),
        (
            0,
            "/etc/cdi/future.json".into(),
            GPU_JSON.replace("0.6.0", "9.0.0"),
        ),
    ]);
    assert_eq!(r.broken.len(), 2, "{:?}", r.broken);
    let e = r
        .resolve(&names(&["vendor.com/gpu=0", "vendor.com/gpu=7"]))
        .expect_err("unknown");
    let m = e.to_string();
    assert!(
        m.contains("config.CDI_devices[1].name") && m.contains("vendor.com/gpu=7"),
        "{m}"
    );
    assert!(
        m.contains("broken.json") && m.contains("future.json"),
        "{m}"
    );
    let e = r.resolve(&names(&["not-a-name"])).expect_err("invalid");
    assert!(e.to_string().contains("qualified CDI name"), "{e}");
}

#[test]
fn a_node_that_is_not_there_without_numbers_is_refused() {
    let text = GPU_JSON.replace(
        "\"hostPath\": \"/dev/null\", ",
        "\"hostPath\": \"/dev/nope\", ",
    );
    let r = Registry::new(vec![(0, "/etc/cdi/gpu.json".into(), text)]);
    let edits = r.resolve(&names(&["vendor.com/gpu=0"])).expect("resolves");
    let e = apply(&mut spec(), &edits, &null_device).expect_err("no such node");
    assert!(e.to_string().contains("/dev/nope"), "{e}");
}

#[test]
fn edits_crius_cannot_apply_refuse_the_device() {
    let text = GPU_JSON.replace("\"env\": [\"GPU=0\"],", "\"env\": [\"GPU=0\"], \"netDevices\": [{\"hostInterfaceName\": \"eth9\", \"name\": \"eth0\"}],");
    let r = Registry::new(vec![(0, "/etc/cdi/gpu.json".into(), text)]);
    let e = r
        .resolve(&names(&["vendor.com/gpu=0"]))
        .expect_err("refused");
    assert!(e.to_string().contains("netDevices"), "{e}");
}
