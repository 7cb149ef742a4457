//! What a pod sandbox is made of: a pause task, or namespaces pinned
//! without any process (runc-family handlers; the way CRI-O's `pinns`
//! does with `drop_infra_ctr`).
//!
//! A pinned pod's containers join its network, IPC and UTS namespaces by
//! path; each gets a PID namespace of its own (or the host's). A pod that
//! shares one PID namespace among its containers needs a PID 1 for it:
//! the pause process.

use super::{NamespaceMode, PodSandboxRequest, sysctl};
use crate::config::SandboxMode;
use crate::{Error, Result};

/// How a pod sandbox is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A pause task holds the pod's namespaces.
    Pause,
    /// Pinned namespaces, no process.
    Pinned(PinnedPlan),
}

/// The namespaces a pinned pod gets, and what is set inside them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedPlan {
    /// A new IPC namespace (not with host IPC).
    pub ipc: bool,
    /// A new UTS namespace (a pod has its own exactly when it has its own
    /// network).
    pub uts: bool,
    /// The hostname set in the new UTS namespace (none: the node's name
    /// stays, as with a pause task whose spec names none).
    pub hostname: Option<String>,
    /// IPC and UTS sysctls, written in the new namespaces.
    pub sysctls: Vec<(String, String)>,
    /// `net.*` sysctls, written in the pod's network namespace once CNI
    /// has set it up (they may name its interfaces).
    pub net_sysctls: Vec<(String, String)>,
}

/// The pins of a pinned pod's IPC and UTS namespaces; `None` for what the
/// pod shares with the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinPaths {
    pub ipc: Option<String>,
    pub uts: Option<String>,
}

/// The shape of the sandbox of `req` on a handler with `mode` (the
/// selection's: a handler that is not of the runc family is `Pause`).
/// `req` must have passed [`super::validate`].
pub fn shape(mode: SandboxMode, handler: &str, req: &PodSandboxRequest) -> Result<Shape> {
    let ns = req.linux.namespaces;
    let shared_pid = ns.pid == NamespaceMode::Pod;
    // A user namespace is made by the pause process (it needs a process
    // to own it); a pod with one always has a pause.
    let userns = req.linux.userns_maps().is_some();
    match mode {
        SandboxMode::Pause => Ok(Shape::Pause),
        SandboxMode::Auto if shared_pid || userns => Ok(Shape::Pause),
        SandboxMode::Pinned if userns => Err(Error::invalid(
            "config.linux.security_context.namespace_options.userns_options.mode",
            format!(
                "a user namespace needs a pause process to hold it, and runtime handler \
                 {handler:?} has sandbox_mode \"pinned\""
            ),
        )),
        // impossible: a shared PID namespace needs a PID 1, and the
        // operator asked for pods without one.
        SandboxMode::Pinned if shared_pid => Err(Error::invalid(
            "config.linux.security_context.namespace_options.pid",
            format!(
                "POD (a PID namespace shared by the pod's containers) needs a pause process \
                 as its PID 1, and runtime handler {handler:?} has sandbox_mode \"pinned\""
            ),
        )),
        SandboxMode::Auto | SandboxMode::Pinned => pinned_plan(req).map(Shape::Pinned),
    }
}

fn pinned_plan(req: &PodSandboxRequest) -> Result<PinnedPlan> {
    let ns = req.linux.namespaces;
    let uts = ns.network != NamespaceMode::Node;
    let sysctls = sysctl::validate(&req.linux.sysctls, &ns)?;
    let (sysctls, net_sysctls) = sysctl::split_net(sysctls);
    Ok(PinnedPlan {
        ipc: ns.ipc != NamespaceMode::Node,
        uts,
        hostname: (uts && !req.hostname.is_empty()).then(|| req.hostname.clone()),
        sysctls,
        net_sysctls,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn pod(pid: NamespaceMode, net: NamespaceMode, ipc: NamespaceMode) -> PodSandboxRequest {
        let mut req = PodSandboxRequest {
            hostname: "web-0".into(),
            ..Default::default()
        };
        req.linux.namespaces.pid = pid;
        req.linux.namespaces.network = net;
        req.linux.namespaces.ipc = ipc;
        req
    }

    #[test]
    fn auto_pins_unless_the_pid_namespace_is_shared() -> Result<()> {
        use NamespaceMode::*;
        let shared = pod(Pod, Pod, Pod);
        assert_eq!(shape(SandboxMode::Auto, "runc", &shared)?, Shape::Pause);
        assert_eq!(
            shape(SandboxMode::Pause, "runc", &pod(Container, Pod, Pod))?,
            Shape::Pause
        );
        let Shape::Pinned(plan) = shape(SandboxMode::Auto, "runc", &pod(Container, Pod, Pod))?
        else {
            panic!("not pinned");
        };
        assert!(plan.ipc && plan.uts);
        assert_eq!(plan.hostname.as_deref(), Some("web-0"));
        Ok(())
    }

    #[test]
    fn pinned_refuses_a_shared_pid_namespace_naming_the_field() {
        let req = pod(NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod);
        match shape(SandboxMode::Pinned, "fast", &req) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "config.linux.security_context.namespace_options.pid");
                assert!(reason.contains("\"fast\""), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_namespaces_are_not_pinned_and_keep_the_node_name() -> Result<()> {
        use NamespaceMode::*;
        let Shape::Pinned(plan) = shape(SandboxMode::Pinned, "runc", &pod(Node, Node, Node))?
        else {
            panic!("not pinned");
        };
        assert_eq!(plan, PinnedPlan::default());
        let mut req = pod(Container, Pod, Pod);
        req.hostname.clear();
        let Shape::Pinned(plan) = shape(SandboxMode::Auto, "runc", &req)? else {
            panic!("not pinned");
        };
        assert_eq!(plan.hostname, None);
        Ok(())
    }

    #[test]
    fn sysctls_go_to_their_namespaces() -> Result<()> {
        let mut req = pod(
            NamespaceMode::Container,
            NamespaceMode::Pod,
            NamespaceMode::Pod,
        );
        req.linux.sysctls = BTreeMap::from([
            ("kernel.shmmni".to_string(), "1234".to_string()),
            (
                "net/ipv4/conf/eth0.100/rp_filter".to_string(),
                "1".to_string(),
            ),
            ("kernel.domainname".to_string(), "example".to_string()),
        ]);
        let Shape::Pinned(plan) = shape(SandboxMode::Auto, "runc", &req)? else {
            panic!("not pinned");
        };
        assert_eq!(
            plan.sysctls,
            vec![
                ("kernel.domainname".to_string(), "example".to_string()),
                ("kernel.shmmni".to_string(), "1234".to_string()),
            ]
        );
        assert_eq!(
            plan.net_sysctls,
            vec![(
                "net.ipv4.conf.eth0/100.rp_filter".to_string(),
                "1".to_string()
            )]
        );
        Ok(())
    }
}
