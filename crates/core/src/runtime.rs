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
/// kubelet gates pod features on these, so each says what works end to
/// end on the handler, not what the runtime underneath might do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandlerFeatures {
    /// Recursive read-only mounts (`rro`): the handler's OCI runtime says
    /// it knows the option and the kernel has `mount_setattr` (5.12).
    pub recursive_read_only_mounts: bool,
    /// User namespaces (mode POD): the handler's OCI runtime knows the
    /// `user` namespace, and its pods have a pause process to hold it.
    /// Root filesystems are remapped copies (no idmapped mounts needed);
    /// volumes are not remapped.
    pub user_namespaces: bool,
}

/// The first kernel with `mount_setattr(2)`, which `rro` needs.
pub const RRO_MIN_KERNEL: (u32, u32) = (5, 12);

/// What an OCI runtime said about itself (`<runtime> features`, the OCI
/// runtime-spec's features document), as far as crius reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciFeatures {
    /// The mount options it recognizes (`None`: it did not say).
    pub mount_options: Option<std::collections::BTreeSet<String>>,
    /// Whether it lists the `user` namespace.
    pub user_namespace: bool,
}

impl OciFeatures {
    /// Parses the features document a runtime printed.
    pub fn parse(json: &[u8]) -> Result<Self> {
        let f: oci_spec::runtime::Features = serde_json::from_slice(json)
            .map_err(|e| Error::Internal(format!("the runtime's features document: {e}")))?;
        Ok(OciFeatures {
            mount_options: f
                .mount_options()
                .as_ref()
                .map(|o| o.iter().cloned().collect()),
            user_namespace: f
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().as_ref())
                .is_some_and(|n| n.contains(&oci_spec::runtime::LinuxNamespaceType::User)),
        })
    }

    fn knows_mount_option(&self, option: &str) -> bool {
        self.mount_options
            .as_ref()
            .is_some_and(|o| o.contains(option))
    }
}

/// The OCI runtime a shim runs, when crius can ask it what it supports:
/// the runc family's shims run `binary_name` (default `runc`, looked up on
/// PATH as the shim does). Other shims (VM runtimes) run a runtime crius
/// cannot ask through containerd 1.6, so their features stay off.
pub fn oci_runtime_binary(runtime_type: &str, binary_name: &str) -> Option<String> {
    if !is_runc_family(runtime_type) {
        return None;
    }
    Some(match binary_name {
        "" => "runc".to_string(),
        name => name.to_string(),
    })
}

/// The features of a handler whose OCI runtime said `oci` (`None`: it
/// could not be asked, or did not answer) on a kernel of `kernel`; a
/// handler whose pods are `pinned` (no pause) has no user namespaces.
pub fn handler_features(
    oci: Option<&OciFeatures>,
    kernel: Option<(u32, u32)>,
    pinned: bool,
) -> HandlerFeatures {
    HandlerFeatures {
        recursive_read_only_mounts: oci.is_some_and(|f| f.knows_mount_option("rro"))
            && kernel.is_some_and(|k| k >= RRO_MIN_KERNEL),
        user_namespaces: oci.is_some_and(|f| f.user_namespace) && !pinned,
    }
}

/// What crius supports whatever the handler (CRI `RuntimeFeatures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// `SupplementalGroupsPolicy` (`Merge` and `Strict`) and the
    /// container's user (uid, gid, groups) in `ContainerStatus`.
    pub supplemental_groups_policy: bool,
}

/// The features of crius itself.
pub const RUNTIME_FEATURES: RuntimeFeatures = RuntimeFeatures {
    supplemental_groups_policy: true,
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
    fn rro_needs_the_runtime_to_say_so_and_a_kernel_with_mount_setattr() {
        let runc = OciFeatures::parse(br#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2-dev","mountOptions":["ro","rro","rbind"]}"#)
            .expect("runc 1.1's document");
        let old = OciFeatures::parse(
            br#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2","mountOptions":["ro","rbind"]}"#,
        )
        .expect("a runtime without rro");
        let silent = OciFeatures::parse(br#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2"}"#)
            .expect("a runtime that lists no options");
        let rro = |oci: Option<&OciFeatures>, k| {
            handler_features(oci, k, false).recursive_read_only_mounts
        };
        assert!(rro(Some(&runc), Some((6, 1))));
        assert!(rro(Some(&runc), Some((5, 12))));
        assert!(!rro(Some(&runc), Some((5, 11))), "no mount_setattr");
        assert!(!rro(Some(&runc), None), "kernel unknown");
        assert!(!rro(Some(&old), Some((6, 1))));
        assert!(!rro(Some(&silent), Some((6, 1))), "unknown is not support");
        assert!(!rro(None, Some((6, 1))), "not asked");
        assert!(OciFeatures::parse(b"runc: unknown command").is_err());
    }

    #[test]
    fn user_namespaces_need_the_runtime_to_know_them_and_a_pause() {
        let runc = OciFeatures::parse(
            br#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2-dev","linux":{"namespaces":["cgroup","ipc","mount","network","pid","user","uts"]}}"#,
        )
        .expect("runc 1.1's document");
        let without = OciFeatures::parse(
            br#"{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2","linux":{"namespaces":["mount","pid"]}}"#,
        )
        .expect("a runtime without user namespaces");
        assert!(handler_features(Some(&runc), Some((6, 1)), false).user_namespaces);
        assert!(
            !handler_features(Some(&runc), Some((6, 1)), true).user_namespaces,
            "pinned"
        );
        assert!(!handler_features(Some(&without), Some((6, 1)), false).user_namespaces);
        assert!(
            !handler_features(None, Some((6, 1)), false).user_namespaces,
            "not asked"
        );
    }

    #[test]
    fn only_runc_family_runtimes_are_asked() {
        assert_eq!(
            oci_runtime_binary("io.containerd.runc.v2", ""),
            Some("runc".into())
        );
        assert_eq!(
            oci_runtime_binary("io.containerd.runc.v2", "/usr/local/bin/crun"),
            Some("/usr/local/bin/crun".into())
        );
        assert_eq!(
            oci_runtime_binary("io.containerd.runc.v1", ""),
            Some("runc".into())
        );
        assert_eq!(oci_runtime_binary("io.containerd.kata.v2", ""), None);
        assert_eq!(oci_runtime_binary("io.containerd.runsc.v1", "runsc"), None);
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
