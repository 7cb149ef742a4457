//! AppArmor: crius' default profile, what the kernel says is loaded, the
//! start-up decision and the profile each container gets.
//!
//! containerd's CRI plugin is the model: on a node whose kernel has
//! AppArmor enabled, containers that ask for nothing or for the runtime
//! default run under a default profile the runtime generates and loads
//! with `apparmor_parser`; `unconfined` means no profile; a `localhost/`
//! profile must already be loaded. One difference: when the default
//! profile cannot be loaded (no parser, or the parser fails) crius runs
//! such containers unconfined and says so, where containerd fails every
//! container creation.
//!
//! Nothing here does I/O: the daemon reads the files named below and hands
//! their contents in.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::sandbox::SecurityProfile;
use crate::{Error, Result};

/// The name of crius' default profile (`RuntimeDefault`).
pub const DEFAULT_PROFILE: &str = "crius-default";
/// Reads `Y` when the kernel's AppArmor is enabled.
pub const ENABLED_PARAMETER: &str = "/sys/module/apparmor/parameters/enabled";
/// One line per loaded profile: `<name> (<mode>)`.
pub const PROFILES_FILE: &str = "/sys/kernel/security/apparmor/profiles";
/// The program that compiles and loads a profile.
pub const PARSER: &str = "apparmor_parser";
/// Where the distribution keeps its policy (abi, tunables, abstractions).
pub const POLICY_DIR: &str = "/etc/apparmor.d";
/// The policy files the default profile uses when [`POLICY_DIR`] has them.
pub const ABI_3_0: &str = "abi/3.0";
pub const TUNABLES_GLOBAL: &str = "tunables/global";
pub const ABSTRACTIONS_BASE: &str = "abstractions/base";

/// The CRI field a refused AppArmor profile is reported under.
const FIELD: &str = "config.linux.security_context.apparmor";

/// AppArmor on this node, as start-up found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// The kernel has no AppArmor, or it is off: no container gets a profile.
    #[default]
    Disabled,
    /// Enabled, and crius' default profile is loaded under this name.
    Enabled { default_profile: String },
    /// Enabled, but crius' default profile is not loaded (the reason):
    /// containers that would get it run unconfined; `localhost/` profiles
    /// still apply.
    WithoutDefault { reason: String },
}

impl Mode {
    /// Whether the kernel confines with AppArmor.
    pub fn enabled(&self) -> bool {
        !matches!(self, Mode::Disabled)
    }

    /// The profile `RuntimeDefault` stands for, when there is one.
    pub fn default_profile(&self) -> Option<&str> {
        match self {
            Mode::Enabled { default_profile } => Some(default_profile),
            _ => None,
        }
    }

    /// Why containers run unconfined where they would get the default
    /// profile, if they do.
    pub fn unconfined_reason(&self) -> Option<&str> {
        match self {
            Mode::WithoutDefault { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Whether the kernel parameter [`ENABLED_PARAMETER`] says AppArmor is on
/// (`None`: the file is missing, so the module is not there).
pub fn is_enabled(parameter: Option<&str>) -> bool {
    parameter.is_some_and(|p| p.trim_start().starts_with('Y'))
}

/// The names of the profiles listed in [`PROFILES_FILE`]. A profile name
/// may contain spaces, so the mode is cut at the last ` (`.
pub fn loaded_profiles(profiles: &str) -> impl Iterator<Item = &str> {
    profiles.lines().filter_map(|line| {
        let line = line.trim_end();
        let name = match line.rsplit_once(" (") {
            Some((name, mode)) if mode.ends_with(')') => name,
            _ => line,
        };
        (!name.is_empty()).then_some(name)
    })
}

/// Whether `name` is among the profiles listed in [`PROFILES_FILE`].
pub fn is_loaded(profiles: &str, name: &str) -> bool {
    loaded_profiles(profiles).any(|p| p == name)
}

/// The profile name in the label a process runs under
/// (`/proc/self/attr/current`: `name (mode)`, or a bare `unconfined`).
pub fn label_name(attr_current: &str) -> String {
    let label = attr_current.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let name = match label.rsplit_once(" (") {
        Some((name, mode)) if mode.ends_with(')') => name,
        _ => label,
    };
    if name.is_empty() {
        "unconfined".into()
    } else {
        name.into()
    }
}

/// What start-up reads before deciding anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The contents of [`ENABLED_PARAMETER`]; `None` when it is missing.
    pub enabled_parameter: Option<String>,
    /// The contents of [`PROFILES_FILE`], or why it cannot be read.
    pub profiles: std::result::Result<String, String>,
    /// Where [`PARSER`] is, if it is anywhere.
    pub parser: Option<PathBuf>,
}

/// What start-up does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to load: this is the mode.
    Settled(Mode),
    /// Load [`DEFAULT_PROFILE`] with this parser, then [`after_load`].
    Load { parser: PathBuf },
}

/// containerd's order: AppArmor off means nothing to do; a default profile
/// already loaded (by an earlier daemon) is used as it is; else it is loaded.
pub fn plan(probe: &Probe) -> Plan {
    if !is_enabled(probe.enabled_parameter.as_deref()) {
        return Plan::Settled(Mode::Disabled);
    }
    let profiles = match &probe.profiles {
        Ok(p) => p,
        Err(why) => {
            return Plan::Settled(without_default(format!(
                "cannot read {PROFILES_FILE}: {why}"
            )));
        }
    };
    if is_loaded(profiles, DEFAULT_PROFILE) {
        return Plan::Settled(enabled());
    }
    match &probe.parser {
        Some(parser) => Plan::Load {
            parser: parser.clone(),
        },
        None => Plan::Settled(without_default(format!(
            "{PARSER} is not installed, so the default profile {DEFAULT_PROFILE:?} cannot be loaded"
        ))),
    }
}

/// The mode once the parser ran: `Err` holds what it said.
pub fn after_load(result: std::result::Result<(), String>) -> Mode {
    match result {
        Ok(()) => enabled(),
        Err(why) => without_default(format!(
            "loading the default profile {DEFAULT_PROFILE:?} failed: {why}"
        )),
    }
}

fn enabled() -> Mode {
    Mode::Enabled {
        default_profile: DEFAULT_PROFILE.into(),
    }
}

fn without_default(reason: String) -> Mode {
    Mode::WithoutDefault {
        reason: format!("{reason}; containers run without an AppArmor profile"),
    }
}

/// Whether the profile of a container requesting `requested` depends on
/// what is loaded: the caller must then read [`PROFILES_FILE`] for
/// [`container_profile`].
pub fn needs_loaded_profiles(mode: &Mode, requested: Option<&SecurityProfile>) -> bool {
    mode.enabled() && matches!(requested, Some(SecurityProfile::Localhost(_)))
}

/// The AppArmor profile of a container (`None`: none), by containerd's
/// rules with one leniency: on a node without AppArmor `RuntimeDefault`
/// means no profile (there is nothing to confine with) instead of an
/// error; a `Localhost` profile is still refused there.
///
/// With AppArmor: no profile or `RuntimeDefault` give the default profile
/// (none for privileged containers, or when it is not loaded);
/// `Unconfined` none; `Localhost` the named profile (`localhost/`
/// stripped), which must be listed in `loaded` (the contents of
/// [`PROFILES_FILE`], see [`needs_loaded_profiles`]).
pub fn container_profile(
    mode: &Mode,
    requested: Option<&SecurityProfile>,
    privileged: bool,
    loaded: Option<&str>,
) -> Result<Option<String>> {
    match (mode, requested) {
        (Mode::Disabled, Some(SecurityProfile::Localhost(name))) => {
            Err(Error::FailedPrecondition(format!(
                "AppArmor profile {name:?} requested, but AppArmor is not enabled on this node"
            )))
        }
        (Mode::Disabled, _) | (_, Some(SecurityProfile::Unconfined)) => Ok(None),
        (_, None | Some(SecurityProfile::RuntimeDefault)) if privileged => Ok(None),
        (_, None | Some(SecurityProfile::RuntimeDefault)) => {
            Ok(mode.default_profile().map(String::from))
        }
        (_, Some(SecurityProfile::Localhost(name))) => {
            let name = name.strip_prefix("localhost/").unwrap_or(name);
            let loaded = loaded.ok_or_else(|| {
                Error::Internal(format!(
                    "the loaded AppArmor profiles were not read for {name:?}"
                ))
            })?;
            if !is_loaded(loaded, name) {
                return Err(Error::invalid(
                    FIELD,
                    format!(
                        "AppArmor profile {name:?} is not loaded on this node ({PROFILES_FILE})"
                    ),
                ));
            }
            Ok(Some(name.to_string()))
        }
    }
}

/// What the default profile adapts to on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFacts {
    /// [`POLICY_DIR`] has [`ABI_3_0`].
    pub abi_3_0: bool,
    /// [`POLICY_DIR`] has [`TUNABLES_GLOBAL`] (else `@{PROC}` is defined here).
    pub tunables_global: bool,
    /// [`POLICY_DIR`] has [`ABSTRACTIONS_BASE`].
    pub abstractions_base: bool,
    /// The profile criusd itself runs under ([`label_name`]).
    pub daemon_profile: String,
}

/// The text of the default profile `name`, for `apparmor_parser`.
///
/// The rules are those of containerd's (and Docker's) default container
/// profile: everything is allowed broadly, then writes to the kernel's
/// knobs under `/proc` and `/sys`, mounting and reading firmware or
/// security state are denied; signals and ptrace are limited to peers.
pub fn default_profile(name: &str, facts: &PolicyFacts) -> String {
    let name = quoted(name);
    let mut text =
        String::from("# crius' default AppArmor profile for containers, written by criusd.\n");
    if facts.abi_3_0 {
        let _ = writeln!(text, "abi <{ABI_3_0}>,");
    }
    if facts.tunables_global {
        let _ = writeln!(text, "#include <{TUNABLES_GLOBAL}>");
    } else {
        text.push_str("@{PROC}=/proc/\n");
    }
    let _ = writeln!(
        text,
        "\nprofile {name} flags=(attach_disconnected,mediate_deleted) {{"
    );
    if facts.abstractions_base {
        let _ = writeln!(text, "  #include <{ABSTRACTIONS_BASE}>\n");
    }
    for (comment, rules) in rule_groups(&name, facts) {
        let _ = writeln!(text, "  # {comment}");
        for rule in rules {
            let _ = writeln!(text, "  {rule},");
        }
        text.push('\n');
    }
    text.truncate(text.trim_end().len());
    text.push_str("\n}\n");
    text
}

/// The body of the profile: groups of rules, each with what it is for.
fn rule_groups(name: &str, facts: &PolicyFacts) -> Vec<(&'static str, Vec<String>)> {
    let owned = |rules: &[&str]| rules.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let mut senders = owned(&[
        "signal (receive) peer=unconfined",
        "signal (receive) peer=runc",
        "signal (receive) peer=crun",
    ]);
    if facts.daemon_profile != "unconfined" && !facts.daemon_profile.is_empty() {
        senders.push(format!(
            "signal (receive) peer={}",
            quoted(&facts.daemon_profile)
        ));
    }
    senders.push(format!("signal (send,receive) peer={name}"));
    vec![
        (
            "Broad grants; the denials below take back what a container must not do.",
            owned(&["network", "capability", "file", "umount"]),
        ),
        (
            "Signals from host processes, the OCI runtimes and criusd; and among the container's processes.",
            senders,
        ),
        (
            "Writable in /proc: a process's own files, and /proc/sys/kernel/shm*.",
            owned(&PROC_DENIALS),
        ),
        ("No mounts.", owned(&["deny mount"])),
        (
            "Writable in /sys: the cgroup tree only; firmware, power capping and LSM state are out of reach.",
            owned(&SYS_DENIALS),
        ),
        (
            "ptrace only among the container's processes (where capabilities and Yama allow it).",
            vec![format!("ptrace (trace,tracedby,read,readby) peer={name}")],
        ),
    ]
}

/// Denials under `/proc`: writes to files directly in it and in any
/// directory but a pid's and `sys`, to `sys` but `sys/kernel`, to
/// `sys/kernel` but `shm*`; any access to `sysrq-trigger` and `kcore`.
const PROC_DENIALS: [&str; 6] = [
    "deny @{PROC}/* w",
    "deny @{PROC}/{[^1-9/],[^1-9/][^0-9/],[^1-9s/][^0-9y/][^0-9s/],[^1-9/][^0-9/][^0-9/][^0-9/]*}/** w",
    "deny @{PROC}/sys/[^k]** w",
    "deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w",
    "deny @{PROC}/sysrq-trigger rwklx",
    "deny @{PROC}/kcore rwklx",
];

/// Denials under `/sys`: writes anywhere but `/sys/fs/cgroup`; any access
/// to firmware, power capping and the security filesystem.
const SYS_DENIALS: [&str; 8] = [
    "deny /sys/[^f]*/** wklx",
    "deny /sys/f[^s]*/** wklx",
    "deny /sys/fs/[^c]*/** wklx",
    "deny /sys/fs/c[^g]*/** wklx",
    "deny /sys/fs/cg[^r]*/** wklx",
    "deny /sys/firmware/** rwklx",
    "deny /sys/devices/virtual/powercap/** rwklx",
    "deny /sys/kernel/security/** rwklx",
];

/// A profile name as an AppArmor string: quoted, `\` and `"` escaped.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILES: &str = "/usr/bin/man (enforce)\n\
                            crius-default (enforce)\n\
                            my profile (complain)\n\
                            lsb_release (enforce)\n";

    #[test]
    fn loaded_profiles_are_named_without_their_mode() {
        let names: Vec<&str> = loaded_profiles(PROFILES).collect();
        assert_eq!(
            names,
            ["/usr/bin/man", "crius-default", "my profile", "lsb_release"]
        );
        assert!(is_loaded(PROFILES, "crius-default"));
        assert!(is_loaded(PROFILES, "my profile"));
        // Whole names only: no prefix, no mode.
        for absent in ["crius", "crius-default (enforce)", "man", ""] {
            assert!(!is_loaded(PROFILES, absent), "{absent:?}");
        }
        assert!(!is_loaded("", DEFAULT_PROFILE));
    }

    #[test]
    fn enabled_parameter() {
        assert!(is_enabled(Some("Y\n")));
        for off in [None, Some("N\n"), Some(""), Some("y")] {
            assert!(!is_enabled(off), "{off:?}");
        }
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name("unconfined\n"), "unconfined");
        assert_eq!(label_name("criusd (enforce)\n"), "criusd");
        assert_eq!(label_name("my daemon (complain)"), "my daemon");
        assert_eq!(label_name(""), "unconfined");
    }

    fn probe(enabled: &str, profiles: &str, parser: bool) -> Probe {
        Probe {
            enabled_parameter: Some(enabled.into()),
            profiles: Ok(profiles.into()),
            parser: parser.then(|| PathBuf::from("/sbin/apparmor_parser")),
        }
    }

    #[test]
    fn start_up_decision() {
        let disabled = Plan::Settled(Mode::Disabled);
        let missing = Probe {
            enabled_parameter: None,
            ..probe("", "", true)
        };
        assert_eq!(plan(&missing), disabled);
        assert_eq!(plan(&probe("N\n", "", true)), disabled);
        // Loaded already (an earlier daemon): used, parser or not.
        for parser in [true, false] {
            assert_eq!(
                plan(&probe("Y\n", PROFILES, parser)),
                Plan::Settled(enabled())
            );
        }
        assert_eq!(
            plan(&probe("Y\n", "other (enforce)\n", true)),
            Plan::Load {
                parser: "/sbin/apparmor_parser".into()
            }
        );
        let no_parser = plan(&probe("Y\n", "", false));
        let Plan::Settled(Mode::WithoutDefault { reason }) = no_parser else {
            panic!("{no_parser:?}");
        };
        assert!(
            reason.contains("apparmor_parser is not installed"),
            "{reason}"
        );
        let unreadable = Probe {
            profiles: Err("permission denied".into()),
            ..probe("Y\n", "", true)
        };
        let Plan::Settled(Mode::WithoutDefault { reason }) = plan(&unreadable) else {
            panic!("{:?}", plan(&unreadable));
        };
        assert!(reason.contains("permission denied"), "{reason}");
    }

    #[test]
    fn after_loading() {
        assert_eq!(after_load(Ok(())), enabled());
        assert_eq!(after_load(Ok(())).default_profile(), Some(DEFAULT_PROFILE));
        let failed = after_load(Err("syntax error at line 3".into()));
        assert!(failed.enabled());
        assert_eq!(failed.default_profile(), None);
        let reason = failed.unconfined_reason().unwrap_or_default();
        assert!(reason.contains("syntax error at line 3"), "{reason}");
        assert!(reason.contains("without an AppArmor profile"), "{reason}");
    }

    fn localhost(name: &str) -> SecurityProfile {
        SecurityProfile::Localhost(name.into())
    }

    #[test]
    fn container_profiles_with_the_default_loaded() -> Result<()> {
        let mode = enabled();
        let profile = |req: Option<&SecurityProfile>, privileged| {
            container_profile(&mode, req, privileged, Some(PROFILES))
        };
        let default = Some(DEFAULT_PROFILE.to_string());
        assert_eq!(profile(None, false)?, default);
        assert_eq!(
            profile(Some(&SecurityProfile::RuntimeDefault), false)?,
            default
        );
        assert_eq!(profile(Some(&SecurityProfile::RuntimeDefault), true)?, None);
        assert_eq!(profile(None, true)?, None);
        assert_eq!(profile(Some(&SecurityProfile::Unconfined), false)?, None);
        for name in ["my profile", "localhost/my profile"] {
            assert_eq!(
                profile(Some(&localhost(name)), false)?.as_deref(),
                Some("my profile")
            );
        }
        // A privileged container gets the Localhost profile it asks for.
        assert_eq!(
            profile(Some(&localhost("lsb_release")), true)?.as_deref(),
            Some("lsb_release")
        );
        Ok(())
    }

    #[test]
    fn a_localhost_profile_must_be_loaded() {
        let mode = enabled();
        match container_profile(
            &mode,
            Some(&localhost("localhost/k8s-x")),
            false,
            Some(PROFILES),
        ) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "config.linux.security_context.apparmor");
                assert!(reason.contains("\"k8s-x\" is not loaded"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(needs_loaded_profiles(&mode, Some(&localhost("x"))));
        assert!(!needs_loaded_profiles(&mode, None));
        assert!(!needs_loaded_profiles(
            &Mode::Disabled,
            Some(&localhost("x"))
        ));
        // The caller forgot to read the list.
        assert!(matches!(
            container_profile(&mode, Some(&localhost("x")), false, None),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn container_profiles_without_the_default() -> Result<()> {
        let mode = after_load(Err("no".into()));
        assert_eq!(container_profile(&mode, None, false, None)?, None);
        assert_eq!(
            container_profile(&mode, Some(&SecurityProfile::RuntimeDefault), false, None)?,
            None
        );
        assert_eq!(
            container_profile(&mode, Some(&localhost("my profile")), false, Some(PROFILES))?
                .as_deref(),
            Some("my profile")
        );
        Ok(())
    }

    #[test]
    fn container_profiles_without_apparmor() -> Result<()> {
        let mode = Mode::Disabled;
        for req in [
            None,
            Some(SecurityProfile::RuntimeDefault),
            Some(SecurityProfile::Unconfined),
        ] {
            assert_eq!(container_profile(&mode, req.as_ref(), false, None)?, None);
        }
        assert!(matches!(
            container_profile(&mode, Some(&localhost("x")), false, None),
            Err(Error::FailedPrecondition(_))
        ));
        Ok(())
    }

    /// The profile on a host without distribution policy files, with
    /// criusd unconfined.
    const BARE: &str = r#"# crius' default AppArmor profile for containers, written by criusd.
@{PROC}=/proc/

profile "crius-default" flags=(attach_disconnected,mediate_deleted) {
  # Broad grants; the denials below take back what a container must not do.
  network,
  capability,
  file,
  umount,

  # Signals from host processes, the OCI runtimes and criusd; and among the container's processes.
  signal (receive) peer=unconfined,
  signal (receive) peer=runc,
  signal (receive) peer=crun,
  signal (send,receive) peer="crius-default",

  # Writable in /proc: a process's own files, and /proc/sys/kernel/shm*.
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9/],[^1-9/][^0-9/],[^1-9s/][^0-9y/][^0-9s/],[^1-9/][^0-9/][^0-9/][^0-9/]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,

  # No mounts.
  deny mount,

  # Writable in /sys: the cgroup tree only; firmware, power capping and LSM state are out of reach.
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,

  # ptrace only among the container's processes (where capabilities and Yama allow it).
  ptrace (trace,tracedby,read,readby) peer="crius-default",
}
"#;

    #[test]
    fn default_profile_text() {
        let bare = PolicyFacts {
            daemon_profile: "unconfined".into(),
            ..Default::default()
        };
        assert_eq!(default_profile(DEFAULT_PROFILE, &bare), BARE);
    }

    #[test]
    fn default_profile_uses_the_hosts_policy_and_the_daemons_label() {
        let text = default_profile(
            DEFAULT_PROFILE,
            &PolicyFacts {
                abi_3_0: true,
                tunables_global: true,
                abstractions_base: true,
                daemon_profile: "criusd \"x\"".into(),
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "abi <abi/3.0>,");
        assert_eq!(lines[2], "#include <tunables/global>");
        assert!(!text.contains("@{PROC}=/proc/"), "{text}");
        assert_eq!(
            lines[4],
            "profile \"crius-default\" flags=(attach_disconnected,mediate_deleted) {"
        );
        assert_eq!(lines[5], "  #include <abstractions/base>");
        assert!(
            text.contains("  signal (receive) peer=\"criusd \\\"x\\\"\",\n"),
            "{text}"
        );
        // Every rule ends with a comma; the profile closes once.
        let body = &lines[5..lines.len() - 1];
        for line in body.iter().map(|l| l.trim()) {
            assert!(
                line.is_empty() || line.starts_with('#') || line.ends_with(','),
                "{line:?}"
            );
        }
        assert_eq!(
            text.matches('{').count(),
            text.matches('}').count(),
            "{text}"
        );
        assert!(text.ends_with(",\n}\n"), "{text}");
    }
}
