//! What the runtime says about itself (`Status`, `UpdateRuntimeConfig`) and
//! the rules of the status RPCs that are not plain translation: conditions
//! and their reasons, the handlers kubelet is told about, the verbose
//! report, which snapshotter holds a container's writable layer, and the
//! image a container status names. Facts gathered by the adapters come in
//! as inputs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::json;

use crate::apparmor::Mode as AppArmor;
use crate::config::Config;
use crate::runtime::{
    HandlerFeatures, OciFeatures, RUNTIME_FEATURES, RuntimeFeatures, handler_features,
    oci_runtime_binary,
};
use crate::{Error, RUNTIME_NAME, RUNTIME_VERSION, Result};

/// The condition kubelet reads to decide whether the runtime works.
pub const RUNTIME_READY: &str = "RuntimeReady";
/// The condition kubelet reads to decide whether pods can get a network.
pub const NETWORK_READY: &str = "NetworkReady";

/// A runtime condition: it holds, or not with a reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    /// `None` when the condition holds; else (reason, message).
    pub failure: Option<(&'static str, String)>,
}

impl Condition {
    fn holds(kind: &'static str) -> Self {
        Condition {
            kind,
            failure: None,
        }
    }

    fn fails(kind: &'static str, reason: &'static str, message: String) -> Self {
        Condition {
            kind,
            failure: Some((reason, message)),
        }
    }
}

/// Why containerd cannot serve now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeProblem {
    /// Start-up is not finished (the message says what it waits for).
    Starting(String),
    /// containerd did not answer, or answered with an error.
    Containerd(String),
}

/// `RuntimeReady`: containerd answers, or why it does not.
pub fn runtime_condition(problem: Option<RuntimeProblem>) -> Condition {
    match problem {
        None => Condition::holds(RUNTIME_READY),
        Some(RuntimeProblem::Starting(m)) => Condition::fails(RUNTIME_READY, "CriusStarting", m),
        Some(RuntimeProblem::Containerd(m)) => {
            Condition::fails(RUNTIME_READY, "ContainerdUnavailable", m)
        }
    }
}

/// `NetworkReady`: a usable CNI network configuration, or why there is none.
pub fn network_condition(not_ready: Option<String>) -> Condition {
    match not_ready {
        None => Condition::holds(NETWORK_READY),
        Some(m) => Condition::fails(NETWORK_READY, "NetworkPluginNotReady", m),
    }
}

/// The OCI runtime binary the handler `name` runs, when crius can ask it
/// (see [`crate::runtime::oci_runtime_binary`]); `name` may be the default
/// runtime's bare shim name.
pub fn handler_runtime_binary(config: &Config, name: &str) -> Option<String> {
    match config.runtimes.get(name) {
        Some(h) => oci_runtime_binary(&h.runtime_type, &h.options.binary_name),
        None => oci_runtime_binary(name, ""),
    }
}

/// The OCI runtimes to ask for their features before [`advertised_handlers`].
pub fn runtimes_to_ask(config: &Config) -> std::collections::BTreeSet<String> {
    std::iter::once(config.default_runtime.as_str())
        .chain(config.runtimes.keys().map(String::as_str))
        .filter_map(|name| handler_runtime_binary(config, name))
        .collect()
}

/// The handlers `Status` tells kubelet about: the default handler first,
/// under the empty name as kubelet looks it up, then every configured
/// handler (in the config's order); each with what works on it, from what
/// its OCI runtime said (`oci`, by binary) and the kernel.
pub fn advertised_handlers(
    config: &Config,
    oci: &HashMap<String, OciFeatures>,
    kernel: Option<(u32, u32)>,
) -> Vec<(String, HandlerFeatures)> {
    let features = |name: &str| {
        let said = handler_runtime_binary(config, name).and_then(|b| oci.get(&b));
        let pinned = config
            .runtimes
            .get(name)
            .is_some_and(|h| h.effective_sandbox_mode() == crate::config::SandboxMode::Pinned);
        handler_features(said, kernel, pinned)
    };
    std::iter::once((String::new(), features(&config.default_runtime)))
        .chain(
            config
                .runtimes
                .keys()
                .map(|name| (name.clone(), features(name))),
        )
        .collect()
}

/// containerd's own version, when it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerdVersion {
    pub version: String,
    pub revision: String,
}

/// What the adapters found for the verbose report.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// containerd's version, if it answered.
    pub containerd: Option<ContainerdVersion>,
    /// The shim binary containerd would run for each configured handler,
    /// by handler name (absent or `None`: not found).
    pub shims: HashMap<String, Option<PathBuf>>,
    /// The pod CIDR kubelet last sent.
    pub pod_cidr: String,
    /// The CRI API version served.
    pub cri_api_version: &'static str,
    /// What start-up recovery did and still does.
    pub recovery: RecoveryReport,
}

/// Where start-up recovery is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryPhase {
    #[default]
    Waiting,
    Running,
    Done,
}

/// What start-up recovery did (the verbose report's `recovery`): how long
/// it took, what it found, and the objects whose shim had not answered
/// when it ended (asked again in the background until they do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub phase: RecoveryPhase,
    /// Milliseconds from its start to serving, once done.
    pub took_ms: Option<u64>,
    pub sandboxes: usize,
    pub containers: usize,
    /// Ids of sandboxes and containers whose task state is still unknown.
    pub waiting_for_shims: Vec<String>,
}

/// Everything `Status` answers.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    pub conditions: Vec<Condition>,
    pub handlers: Vec<(String, HandlerFeatures)>,
    pub features: RuntimeFeatures,
    /// The verbose report: JSON documents by key (empty unless asked for).
    pub info: HashMap<String, String>,
}

/// The `Status` answer from its conditions and the handlers'
/// features ([`advertised_handlers`]); `verbose` carries the facts of the
/// report when one was asked for.
pub fn runtime_status(
    config: &Config,
    [runtime, network]: [Condition; 2],
    handlers: Vec<(String, HandlerFeatures)>,
    verbose: Option<(&Facts, &AppArmor)>,
) -> Result<RuntimeStatus> {
    let info = match verbose {
        Some((facts, apparmor)) => verbose_info(config, facts, apparmor)?,
        None => HashMap::new(),
    };
    Ok(RuntimeStatus {
        conditions: vec![runtime, network],
        handlers,
        features: RUNTIME_FEATURES,
        info,
    })
}

/// `Status` verbose info: JSON documents by key. Secrets in the config
/// serialize as `<redacted>`.
pub fn verbose_info(
    config: &Config,
    facts: &Facts,
    apparmor: &AppArmor,
) -> Result<HashMap<String, String>> {
    let mut info = HashMap::new();
    let mut config_value =
        serde_json::to_value(config).map_err(|e| Error::Internal(e.to_string()))?;
    // containerd's names too: the validation suite reads `stateDir`.
    if let Some(o) = config_value.as_object_mut() {
        o.insert("stateDir".into(), json!(config.state_dir));
        o.insert("rootDir".into(), json!(config.root_dir));
    }
    info.insert("config".to_string(), config_value.to_string());
    let v = facts.containerd.as_ref();
    let containerd = json!({
        "address": config.containerd.address,
        "namespace": config.containerd.namespace,
        "version": v.map(|v| &v.version),
        "revision": v.map(|v| &v.revision),
    });
    info.insert("containerd".to_string(), containerd.to_string());
    info.insert(
        "runtimeHandlers".to_string(),
        handlers_info(config, &facts.shims).to_string(),
    );
    let version = json!({
        "runtimeName": RUNTIME_NAME,
        "runtimeVersion": RUNTIME_VERSION,
        "runtimeApiVersion": facts.cri_api_version,
    });
    info.insert("version".to_string(), version.to_string());
    info.insert("podCIDR".to_string(), facts.pod_cidr.clone());
    info.insert("apparmor".to_string(), apparmor_info(apparmor).to_string());
    let recovery =
        serde_json::to_string(&facts.recovery).map_err(|e| Error::Internal(e.to_string()))?;
    info.insert("recovery".to_string(), recovery);
    Ok(info)
}

/// The configured handlers, with whether containerd finds their shims.
fn handlers_info(config: &Config, shims: &HashMap<String, Option<PathBuf>>) -> serde_json::Value {
    let handlers: Vec<serde_json::Value> = config
        .runtimes
        .iter()
        .map(|(name, h)| {
            let shim = shims.get(name).and_then(Option::as_ref);
            json!({
                "name": name,
                "runtime_type": h.runtime_type,
                "runtime_path": h.runtime_path,
                "options": h.options,
                "privileged": h.privileged,
                "privileged_without_host_devices": h.privileged_without_host_devices,
                "snapshotter": h.snapshotter,
                "sandbox_image": h.sandbox_image,
                "sandbox_mode": h.effective_sandbox_mode().as_str(),
                "default": *name == config.default_runtime,
                "trusted": *name == config.trusted_runtime,
                "shim_found": shim.is_some(),
                "shim_binary": shim.map(|p| p.display().to_string()),
            })
        })
        .collect();
    json!({
        "default": config.default_runtime,
        "trusted": config.trusted_runtime,
        "shimPassthrough": config.shim_passthrough,
        "handlers": handlers,
    })
}

/// What start-up found of AppArmor: on or not, the profile `RuntimeDefault`
/// stands for, and why containers run unconfined if they do.
fn apparmor_info(mode: &AppArmor) -> serde_json::Value {
    json!({
        "enabled": mode.enabled(),
        "defaultProfile": mode.default_profile(),
        "unconfinedReason": mode.unconfined_reason(),
    })
}

/// The field `UpdateRuntimeConfig` carries the pod CIDR in.
const POD_CIDR_FIELD: &str = "runtime_config.network_config.pod_cidr";

/// Checks a pod CIDR as kubelet sends it: one or more `address/prefix`,
/// comma-separated (dual stack). containerd refuses a malformed one too
/// where it uses it (`net.ParseCIDR` for its CNI config template).
pub fn validate_pod_cidr(cidrs: &str) -> Result<()> {
    cidrs.split(',').try_for_each(|c| validate_cidr(c.trim()))
}

/// Checks one `address/prefix` of a pod CIDR.
fn validate_cidr(cidr: &str) -> Result<()> {
    let bad = || Error::invalid(POD_CIDR_FIELD, format!("{cidr:?} is not an address/prefix"));
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(())
}

/// The snapshotter holding a container's writable layer: the one recorded
/// with it (its pod's handler's), else the daemon's default.
pub fn container_snapshotter<'a>(recorded: &'a str, config: &'a Config) -> &'a str {
    if recorded.is_empty() {
        &config.containerd.snapshotter
    } else {
        recorded
    }
}

/// The snapshotters `ImageFsInfo` reports: the default first (kubelet
/// reads the first entry), then each handler's own, once each.
pub fn snapshotters_in_use(config: &Config) -> Vec<String> {
    let mut out = vec![config.containerd.snapshotter.clone()];
    for h in config.runtimes.values() {
        if !h.snapshotter.is_empty() && !out.contains(&h.snapshotter) {
            out.push(h.snapshotter.clone());
        }
    }
    out
}

/// The image a container status names: the tag the container was created
/// from when it named one (kubelet compares it with the pod spec), else
/// the image as requested.
pub fn reported_image<'a>(tag: &'a str, image: &'a str) -> &'a str {
    if tag.is_empty() { image } else { tag }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).expect("valid config")
    }

    #[test]
    fn cidrs() {
        for ok in ["10.88.0.0/16", "fd00::/64", "0.0.0.0/0"] {
            assert!(validate_cidr(ok).is_ok(), "{ok}");
        }
        for bad in ["10.88.0.0", "10.88.0.0/33", "x/8", "10.88.0.0/-1", ""] {
            assert!(validate_cidr(bad).is_err(), "{bad}");
        }
        assert!(validate_pod_cidr("10.88.0.0/16, fd00::/64").is_ok());
        match validate_pod_cidr("10.88.0.0/16,fd00::/129") {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, POD_CIDR_FIELD);
                assert!(reason.contains("fd00::/129"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conditions_carry_kubelets_reasons() {
        assert_eq!(runtime_condition(None).failure, None);
        let starting = runtime_condition(Some(RuntimeProblem::Starting("waiting".into())));
        assert_eq!(starting.kind, RUNTIME_READY);
        assert_eq!(starting.failure, Some(("CriusStarting", "waiting".into())));
        let down = runtime_condition(Some(RuntimeProblem::Containerd("gone".into())));
        assert_eq!(down.failure, Some(("ContainerdUnavailable", "gone".into())));
        let net = network_condition(Some("no network config".into()));
        assert_eq!(net.kind, NETWORK_READY);
        assert_eq!(
            net.failure,
            Some(("NetworkPluginNotReady", "no network config".into()))
        );
    }

    #[test]
    fn image_filesystems_are_the_default_snapshotter_then_the_handlers() {
        let c = config(
            "[containerd]\nsnapshotter = \"overlayfs\"\n\
             [runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.a]\nruntime_type = \"io.containerd.runc.v2\"\nsnapshotter = \"native\"\n\
             [runtimes.b]\nruntime_type = \"io.containerd.kata.v2\"\nsnapshotter = \"native\"\n\
             [runtimes.c]\nruntime_type = \"io.containerd.runc.v2\"\nsnapshotter = \"overlayfs\"\n",
        );
        assert_eq!(snapshotters_in_use(&c), ["overlayfs", "native"]);
    }

    #[test]
    fn the_default_handler_comes_first_under_the_empty_name() {
        let c = config(
            "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
        );
        let names: Vec<String> = advertised_handlers(&c, &HashMap::new(), Some((6, 1)))
            .into_iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(names, ["", "kata", "runc"]);
    }

    #[test]
    fn each_handler_has_the_features_of_the_runtime_it_runs() {
        let c = config(
            "default_runtime = \"io.containerd.runc.v2\"\n\
             [runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.old]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.old.options]\nbinary_name = \"/opt/old-runc\"\n\
             [runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
        );
        assert_eq!(
            runtimes_to_ask(&c).into_iter().collect::<Vec<_>>(),
            ["/opt/old-runc", "runc"]
        );
        let rro = OciFeatures {
            mount_options: Some(["ro".to_string(), "rro".to_string()].into()),
            user_namespace: false,
        };
        let oci = HashMap::from([
            ("runc".to_string(), rro),
            ("/opt/old-runc".to_string(), OciFeatures::default()),
        ]);
        let got: Vec<(String, bool)> = advertised_handlers(&c, &oci, Some((6, 1)))
            .into_iter()
            .map(|(n, f)| (n, f.recursive_read_only_mounts))
            .collect();
        let want = [("", true), ("kata", false), ("old", false), ("runc", true)];
        assert_eq!(got, want.map(|(n, b)| (n.to_string(), b)));
        // A kernel without mount_setattr: nowhere.
        assert!(
            advertised_handlers(&c, &oci, Some((5, 10)))
                .iter()
                .all(|(_, f)| !f.recursive_read_only_mounts)
        );
    }

    #[test]
    fn the_report_names_shims_found_and_not_found() {
        let c = config(
            "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
        );
        let facts = Facts {
            shims: HashMap::from([(
                "runc".to_string(),
                Some(PathBuf::from("/usr/bin/containerd-shim-runc-v2")),
            )]),
            pod_cidr: "10.88.0.0/16".into(),
            cri_api_version: "v1",
            ..Default::default()
        };
        let info = verbose_info(&c, &facts, &AppArmor::Disabled).expect("report");
        let handlers: serde_json::Value =
            serde_json::from_str(&info["runtimeHandlers"]).expect("JSON");
        let by_name = |n: &str| {
            handlers["handlers"]
                .as_array()
                .and_then(|a| a.iter().find(|h| h["name"] == n).cloned())
                .unwrap_or_default()
        };
        assert_eq!(by_name("runc")["shim_found"], true);
        assert_eq!(
            by_name("runc")["shim_binary"],
            "/usr/bin/containerd-shim-runc-v2"
        );
        assert_eq!(by_name("kata")["shim_found"], false);
        // The mode in force: a VM runtime's pods always have a pause task.
        assert_eq!(by_name("runc")["sandbox_mode"], "auto");
        assert_eq!(by_name("kata")["sandbox_mode"], "pause");
        assert_eq!(info["podCIDR"], "10.88.0.0/16");
        let containerd: serde_json::Value =
            serde_json::from_str(&info["containerd"]).expect("JSON");
        assert_eq!(containerd["version"], serde_json::Value::Null);
    }

    #[test]
    fn writable_layers_default_to_the_daemons_snapshotter() {
        let c = config("[containerd]\nsnapshotter = \"native\"\n");
        assert_eq!(container_snapshotter("", &c), "native");
        assert_eq!(container_snapshotter("overlayfs", &c), "overlayfs");
    }

    #[test]
    fn a_status_names_the_tag_when_there_is_one() {
        assert_eq!(reported_image("busybox:1", "sha256:ab"), "busybox:1");
        assert_eq!(reported_image("", "sha256:ab"), "sha256:ab");
    }
}
