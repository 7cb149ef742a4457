//! Which runtime a pod runs on: the handler it asked for, the legacy
//! untrusted-workload annotation, the default, and the trusted runtime for
//! privileged pods; and which names may reach containerd at all.

use crate::config::{Config, RuncOptions, SandboxMode, is_runc_family};
use crate::names::ShimName;
use crate::{Error, Result};

/// The legacy annotation marking a pod as untrusted.
pub const UNTRUSTED_WORKLOAD: &str = "io.kubernetes.cri.untrusted-workload";
/// The handler such pods run on, when configured.
pub const UNTRUSTED_HANDLER: &str = "untrusted";

/// Whether `key` matches one of `patterns` (exact, or a prefix ending in `*`).
pub fn allowed(patterns: &[String], key: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => key == p,
    })
}

/// The annotations of `all` that `patterns` let through.
pub fn filter_annotations(
    patterns: &[String],
    all: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    all.iter()
        .filter(|(k, _)| allowed(patterns, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What crius supports on a runtime handler (CRI `RuntimeHandlerFeatures`).
/// kubelet gates pod features on these, so each says what crius does,
/// not what the runtime underneath could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerFeatures {
    /// Recursive read-only mounts: crius does not implement them (it
    /// refuses such mounts) on any handler.
    pub recursive_read_only_mounts: bool,
    /// User namespaces with idmapped mounts, as Kubernetes uses them:
    /// crius does not implement them on any handler.
    pub user_namespaces: bool,
}

/// The features of a handler (`None`: a shim name passed through, or the
/// default handler when `default_runtime` is one).
pub fn handler_features(_handler: Option<&crate::config::RuntimeHandler>) -> HandlerFeatures {
    HandlerFeatures {
        recursive_read_only_mounts: false,
        user_namespaces: false,
    }
}

/// What crius supports whatever the handler (CRI `RuntimeFeatures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// `SupplementalGroupsPolicy` `Strict` and the container's user in
    /// `ContainerStatus`: not implemented (crius merges the image's groups,
    /// the `Merge` policy).
    pub supplemental_groups_policy: bool,
}

/// The features of crius itself.
pub const RUNTIME_FEATURES: RuntimeFeatures = RuntimeFeatures {
    supplemental_groups_policy: false,
};

/// The runtime a pod runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The handler name reported in CRI (a configured name or the shim name).
    pub handler: String,
    /// The containerd shim name.
    pub runtime_type: String,
    /// runc shim options (configured handlers of the runc family only).
    pub options: Option<RuncOptions>,
    /// Chosen instead of the pod's handler because the pod is privileged.
    pub trusted: bool,
    /// The shim binary's absolute path (configured handlers only).
    pub runtime_path: Option<String>,
    /// The handler's own snapshotter, if it names one.
    pub snapshotter: Option<String>,
    /// The handler's own pause image, if it names one.
    pub sandbox_image: Option<String>,
    /// Privileged containers get no host devices.
    pub privileged_without_host_devices: bool,
    /// The handler's `sandbox_mode` (a bare shim name: a pause task, as
    /// nothing says the shim can join namespaces by path).
    pub sandbox_mode: SandboxMode,
}

impl Selection {
    /// A bare shim name: no configuration.
    fn bare(runtime_type: String) -> Selection {
        Selection {
            handler: String::new(),
            runtime_type,
            options: None,
            trusted: false,
            runtime_path: None,
            snapshotter: None,
            sandbox_image: None,
            privileged_without_host_devices: false,
            sandbox_mode: SandboxMode::Pause,
        }
    }
}

/// What the selection needs of the pod.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodTraits<'a> {
    /// `RunPodSandboxRequest.runtime_handler`.
    pub requested: &'a str,
    /// Privileged security context, or host network, PID or IPC.
    pub privileged: bool,
    /// The untrusted-workload annotation is "true".
    pub untrusted: bool,
}

fn configured(config: &Config, name: &str) -> Option<Selection> {
    config.runtimes.get(name).map(|h| Selection {
        handler: name.to_string(),
        runtime_type: h.runtime_type.clone(),
        options: is_runc_family(&h.runtime_type).then(|| h.options.clone()),
        trusted: false,
        runtime_path: non_empty(&h.runtime_path),
        snapshotter: non_empty(&h.snapshotter),
        sandbox_image: non_empty(&h.sandbox_image),
        privileged_without_host_devices: h.privileged_without_host_devices,
        sandbox_mode: h.effective_sandbox_mode(),
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn can_run_privileged(config: &Config, s: &Selection) -> bool {
    // A bare shim name carries no configuration: assumed capable.
    config.runtimes.get(&s.handler).is_none_or(|h| h.privileged)
}

/// An untrusted workload runs on the `untrusted` handler or not at all,
/// as containerd decides: with host namespaces refused (containerd too),
/// with an explicit other handler refused (containerd too), without an
/// `untrusted` handler refused (containerd too: falling back to the default
/// runtime would run it with less isolation than it asked for). A
/// privileged one is refused as well (security: containerd leaves that to
/// the runtime, but a workload that asks to be isolated from the node and
/// for the node's privileges at once is a contradiction crius does not
/// guess about).
fn check_untrusted(config: &Config, pod: &PodTraits<'_>) -> Result<()> {
    let field = format!("config.annotations[{UNTRUSTED_WORKLOAD}]");
    if pod.privileged {
        return Err(Error::invalid(
            field,
            "a privileged pod (or one using host namespaces) cannot be an untrusted workload",
        ));
    }
    if !pod.requested.is_empty() && pod.requested != UNTRUSTED_HANDLER {
        return Err(Error::invalid(
            field,
            format!(
                "an untrusted workload runs on the {UNTRUSTED_HANDLER:?} handler, not {:?}",
                pod.requested
            ),
        ));
    }
    if !config.runtimes.contains_key(UNTRUSTED_HANDLER) {
        return Err(Error::FailedPrecondition(format!(
            "the pod is an untrusted workload ({UNTRUSTED_WORKLOAD}) and no {UNTRUSTED_HANDLER:?} \
             runtime handler is configured"
        )));
    }
    Ok(())
}

/// Selects the runtime of a pod; refuses, before anything is created,
/// every name containerd could take as a path.
pub fn select(config: &Config, pod: PodTraits<'_>) -> Result<Selection> {
    if pod.untrusted {
        check_untrusted(config, &pod)?;
    }
    let chosen = if !pod.requested.is_empty() {
        requested(config, pod.requested)?
    } else if let Some(s) = pod
        .untrusted
        .then(|| configured(config, UNTRUSTED_HANDLER))
        .flatten()
    {
        s
    } else {
        default_runtime(config)?
    };
    if !pod.privileged || can_run_privileged(config, &chosen) {
        return Ok(chosen);
    }
    trusted_instead_of(config, &chosen)
}

/// The handler the pod names: a configured one, or else a shim name passed
/// through (unless the operator turned passthrough off).
fn requested(config: &Config, requested: &str) -> Result<Selection> {
    if let Some(s) = configured(config, requested) {
        return Ok(s);
    }
    let shim = ShimName::parse(requested)
        .map_err(|why| Error::invalid("runtime_handler", format!("{requested:?}: {why}")))?;
    // The operator turned passthrough off: only the handlers
    // of the config may run (containerd too refuses a handler
    // it has no runtime for).
    if !config.shim_passthrough {
        return Err(Error::invalid(
            "runtime_handler",
            format!("{requested:?} is not a configured handler (shim passthrough is off)"),
        ));
    }
    Ok(Selection {
        handler: shim.to_string(),
        ..Selection::bare(shim.to_string())
    })
}

/// `default_runtime`: a configured handler, or else a shim name.
fn default_runtime(config: &Config) -> Result<Selection> {
    match configured(config, &config.default_runtime) {
        Some(s) => Ok(s),
        None => {
            // Validated at load: a shim name.
            let shim = ShimName::parse(&config.default_runtime)
                .map_err(|why| Error::Internal(format!("default_runtime: {why}")))?;
            Ok(Selection::bare(shim.to_string()))
        }
    }
}

/// The `trusted_runtime` that runs a privileged pod `chosen` cannot run.
fn trusted_instead_of(config: &Config, chosen: &Selection) -> Result<Selection> {
    match configured(config, &config.trusted_runtime) {
        Some(mut t) if !config.trusted_runtime.is_empty() => {
            t.trusted = true;
            Ok(t)
        }
        // Impossible: the handler says it cannot do privileged work (a VM
        // runtime) and there is no trusted one to hand the pod to;
        // containerd has no trusted runtime and would start it unprivileged.
        _ => Err(Error::FailedPrecondition(format!(
            "runtime handler {:?} cannot run privileged pods and no trusted_runtime is configured",
            chosen.handler
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).expect("valid config")
    }

    #[test]
    fn features_are_only_what_crius_implements() {
        // Neither rro mounts nor user namespaces, on runc or a VM runtime.
        let c = config(
            "[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\
             [runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
        );
        for handler in [c.runtimes.get("runc"), c.runtimes.get("kata"), None] {
            let f = handler_features(handler);
            assert!(!f.recursive_read_only_mounts, "{handler:?}");
            assert!(!f.user_namespaces, "{handler:?}");
        }
        const { assert!(!RUNTIME_FEATURES.supplemental_groups_policy) };
    }

    fn pick(c: &Config, requested: &str, privileged: bool, untrusted: bool) -> Result<Selection> {
        select(
            c,
            PodTraits {
                requested,
                privileged,
                untrusted,
            },
        )
    }

    const VM: &str = r#"
default_runtime = "kata"
trusted_runtime = "runc"
[runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[runtimes.kata]
runtime_type = "io.containerd.kata.v2"
privileged = false
[runtimes.untrusted]
runtime_type = "io.containerd.runsc.v1"
privileged = false
"#;

    #[test]
    fn selection_table() {
        let c = config(VM);
        // (requested, privileged, untrusted) -> handler, shim, trusted
        let cases: &[(&str, bool, bool, &str, &str, bool)] = &[
            ("", false, false, "kata", "io.containerd.kata.v2", false),
            ("", true, false, "runc", "io.containerd.runc.v2", true),
            (
                "",
                false,
                true,
                "untrusted",
                "io.containerd.runsc.v1",
                false,
            ),
            ("runc", false, false, "runc", "io.containerd.runc.v2", false),
            ("runc", true, false, "runc", "io.containerd.runc.v2", false),
            ("kata", true, false, "runc", "io.containerd.runc.v2", true),
            (
                "io.containerd.runc-alias.v2",
                false,
                false,
                "io.containerd.runc-alias.v2",
                "io.containerd.runc-alias.v2",
                false,
            ),
            (
                "io.containerd.runc-alias.v2",
                true,
                false,
                "io.containerd.runc-alias.v2",
                "io.containerd.runc-alias.v2",
                false,
            ),
            (
                "untrusted",
                false,
                true,
                "untrusted",
                "io.containerd.runsc.v1",
                false,
            ),
        ];
        for (req, privileged, untrusted, handler, shim, trusted) in cases {
            let s = pick(&c, req, *privileged, *untrusted)
                .unwrap_or_else(|e| panic!("{req} {privileged} {untrusted}: {e}"));
            assert_eq!(
                (s.handler.as_str(), s.runtime_type.as_str(), s.trusted),
                (*handler, *shim, *trusted),
                "{req} {privileged} {untrusted}"
            );
        }
        // untrusted annotation on a privileged pod, or with another handler
        for (req, privileged) in [("", true), ("runc", false), ("kata", false)] {
            assert!(
                matches!(
                    pick(&c, req, privileged, true),
                    Err(Error::InvalidArgument { .. })
                ),
                "{req} {privileged}"
            );
        }
        // No untrusted handler: refused, never the default runtime.
        let plain = config("[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n");
        assert!(matches!(
            pick(&plain, "", false, true),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[test]
    fn no_trusted_runtime_refuses_privileged_pods() {
        let c = config(
            "default_runtime = \"kata\"\n[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\nprivileged = false\n",
        );
        assert!(matches!(
            pick(&c, "", true, false),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(pick(&c, "", false, false).is_ok());
    }

    #[test]
    fn paths_are_refused_and_passthrough_can_be_off() {
        let c = config("");
        let long = "x".repeat(10_000);
        for bad in [
            "/usr/bin/containerd-shim-runc-v2",
            "../x",
            "./x",
            "io.containerd/../x",
            "a/b",
            "io",
            "io.containerd.ruｎc.v2",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    pick(&c, bad, false, false),
                    Err(Error::InvalidArgument { .. })
                ),
                "{bad:?}"
            );
        }
        let off = config("shim_passthrough = false");
        assert!(matches!(
            pick(&off, "io.containerd.kata.v2", false, false),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(pick(&c, "io.containerd.kata.v2", false, false).is_ok());
        // The default may be a bare shim name.
        let bare = config("default_runtime = \"io.containerd.runc.v2\"\n[runtimes]\n");
        let s = pick(&bare, "", false, false).expect("default shim");
        assert_eq!(s.runtime_type, "io.containerd.runc.v2");
    }

    #[test]
    fn annotation_allow_lists() {
        let p = vec!["io.katacontainers.*".to_string(), "exact.key".to_string()];
        assert!(allowed(&p, "io.katacontainers.config.hypervisor.kernel"));
        assert!(allowed(&p, "exact.key"));
        assert!(!allowed(&p, "exact.key.more"));
        assert!(!allowed(&p, "run.oci.handler"));
        assert!(!allowed(&[], "anything"));
        assert!(Config::parse("[runtimes.k]\nruntime_type = \"io.containerd.kata.v2\"\npod_annotations = [\"a*b\"]").is_err());
    }

    #[test]
    fn trusted_runtime_must_be_capable() {
        assert!(Config::parse("trusted_runtime = \"nope\"").is_err());
        assert!(Config::parse("trusted_runtime = \"vm\"\n[runtimes.vm]\nruntime_type = \"io.containerd.kata.v2\"\nprivileged = false").is_err());
    }
}
