//! Start-up: loads crius' default AppArmor profile when the kernel has
//! AppArmor enabled, as containerd does for its own (the decision and the
//! profile text are `crius_core::apparmor`'s; this is the I/O around them).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crius_core::apparmor::{
    ABI_3_0, ABSTRACTIONS_BASE, DEFAULT_PROFILE, ENABLED_PARAMETER, Mode, PARSER, POLICY_DIR,
    PROFILES_FILE, Plan, PolicyFacts, Probe, TUNABLES_GLOBAL, after_load, default_profile,
    label_name, plan,
};

/// The longest `apparmor_parser` may take to compile and load the profile.
const PARSER_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the parser is looked for after `PATH` (daemons often run with a
/// `PATH` without the sbin directories).
const PARSER_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// What start-up needs of the host; tests play it.
pub(crate) trait Host {
    fn read(&self, path: &Path) -> std::io::Result<String>;
    fn exists(&self, path: &Path) -> bool;
    /// The parser's path, if it is installed.
    fn find_parser(&self) -> Option<PathBuf>;
    /// Runs `parser -Kr` with `profile` on stdin; `Err` says why it failed.
    fn load(&self, parser: &Path, profile: &str) -> Result<(), String>;
}

/// Decides the AppArmor mode of this daemon, loading the default profile
/// if AppArmor is on and it is not loaded yet, and logs the outcome.
pub(crate) fn set_up(host: &impl Host) -> Mode {
    let probe = Probe {
        enabled_parameter: host.read(Path::new(ENABLED_PARAMETER)).ok(),
        profiles: host
            .read(Path::new(PROFILES_FILE))
            .map_err(|e| e.to_string()),
        parser: host.find_parser(),
    };
    let mode = match plan(&probe) {
        Plan::Settled(mode) => mode,
        Plan::Load { parser } => {
            let text = default_profile(DEFAULT_PROFILE, &policy_facts(host));
            after_load(host.load(&parser, &text))
        }
    };
    match &mode {
        Mode::Disabled => {
            tracing::info!("AppArmor is not enabled: containers get no AppArmor profile")
        }
        Mode::Enabled { default_profile } => {
            tracing::info!(profile = %default_profile, "AppArmor: the default profile is loaded")
        }
        Mode::WithoutDefault { reason } => tracing::warn!("AppArmor: {reason}"),
    }
    mode
}

/// What the default profile adapts to: the distribution's policy files and
/// the label criusd runs under.
fn policy_facts(host: &impl Host) -> PolicyFacts {
    let has = |file: &str| host.exists(&Path::new(POLICY_DIR).join(file));
    let label = host
        .read(Path::new("/proc/self/attr/apparmor/current"))
        .or_else(|_| host.read(Path::new("/proc/self/attr/current")))
        .unwrap_or_default();
    PolicyFacts {
        abi_3_0: has(ABI_3_0),
        tunables_global: has(TUNABLES_GLOBAL),
        abstractions_base: has(ABSTRACTIONS_BASE),
        daemon_profile: label_name(&label),
    }
}

/// This machine.
pub(crate) struct RealHost;

impl Host for RealHost {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn find_parser(&self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(PARSER_DIRS.iter().map(PathBuf::from))
            .map(|dir| dir.join(PARSER))
            .find(|p| is_executable(p))
    }

    fn load(&self, parser: &Path, profile: &str) -> Result<(), String> {
        run_parser(parser, profile, PARSER_TIMEOUT)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `parser -Kr` (replace, skip the cache) reading the profile from stdin,
/// killed after `timeout`.
fn run_parser(parser: &Path, profile: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(parser)
        .arg("-Kr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", parser.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A parser that stops reading says why on stderr.
        let _ = stdin.write_all(profile.as_bytes());
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| format!("waiting for {}: {e}", parser.display()))?,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(format!(
                "{} did not finish within {timeout:?}",
                parser.display()
            ));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim();
    let said = if said.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    } else {
        said.to_string()
    };
    Err(format!(
        "{} exited with {}: {said}",
        parser.display(),
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A host of files, an optional parser and its answer.
    #[derive(Default)]
    struct FakeHost {
        files: BTreeMap<String, String>,
        parser: Option<PathBuf>,
        answer: Option<Result<(), String>>,
        loaded: RefCell<Vec<String>>,
    }

    impl FakeHost {
        fn with(mut self, path: &str, text: &str) -> Self {
            self.files.insert(path.into(), text.into());
            self
        }

        fn parser(mut self, answer: Result<(), String>) -> Self {
            self.parser = Some("/usr/sbin/apparmor_parser".into());
            self.answer = Some(answer);
            self
        }
    }

    impl Host for FakeHost {
        fn read(&self, path: &Path) -> std::io::Result<String> {
            self.files
                .get(path.to_str().unwrap_or_default())
                .cloned()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }

        fn exists(&self, path: &Path) -> bool {
            self.files.contains_key(path.to_str().unwrap_or_default())
        }

        fn find_parser(&self) -> Option<PathBuf> {
            self.parser.clone()
        }

        fn load(&self, _parser: &Path, profile: &str) -> Result<(), String> {
            self.loaded.borrow_mut().push(profile.into());
            self.answer.clone().unwrap_or(Err("no parser".into()))
        }
    }

    fn enabled_host() -> FakeHost {
        FakeHost::default()
            .with(ENABLED_PARAMETER, "Y\n")
            .with(PROFILES_FILE, "/usr/bin/man (enforce)\n")
    }

    #[test]
    fn nothing_is_loaded_without_apparmor() {
        let host = FakeHost::default().parser(Ok(()));
        assert_eq!(set_up(&host), Mode::Disabled);
        let host = host.with(ENABLED_PARAMETER, "N\n");
        assert_eq!(set_up(&host), Mode::Disabled);
        assert!(host.loaded.borrow().is_empty());
    }

    #[test]
    fn a_loaded_default_profile_is_kept() {
        let host = enabled_host()
            .with(PROFILES_FILE, "crius-default (enforce)\n")
            .parser(Ok(()));
        assert_eq!(set_up(&host).default_profile(), Some(DEFAULT_PROFILE));
        assert!(host.loaded.borrow().is_empty());
    }

    #[test]
    fn the_default_profile_is_generated_for_this_host_and_loaded() {
        let host = enabled_host()
            .with("/etc/apparmor.d/tunables/global", "")
            .with("/proc/self/attr/current", "criusd (enforce)\n")
            .parser(Ok(()));
        assert_eq!(set_up(&host).default_profile(), Some(DEFAULT_PROFILE));
        let loaded = host.loaded.borrow();
        let text = loaded.first().map(String::as_str).unwrap_or_default();
        assert!(text.contains("#include <tunables/global>\n"), "{text}");
        assert!(!text.contains("abi <"), "{text}");
        assert!(text.contains("profile \"crius-default\" flags="), "{text}");
        assert!(text.contains("signal (receive) peer=\"criusd\","), "{text}");
    }

    #[test]
    fn without_parser_or_after_a_failed_load_containers_run_unconfined() {
        let no_parser = set_up(&enabled_host());
        assert!(no_parser.enabled());
        assert_eq!(no_parser.default_profile(), None);
        let reason = no_parser.unconfined_reason().unwrap_or_default();
        assert!(
            reason.contains("apparmor_parser is not installed"),
            "{reason}"
        );

        let host = enabled_host().parser(Err("exited with 1: syntax error".into()));
        let failed = set_up(&host);
        assert_eq!(failed.default_profile(), None);
        let reason = failed.unconfined_reason().unwrap_or_default();
        assert!(reason.contains("syntax error"), "{reason}");
        assert_eq!(host.loaded.borrow().len(), 1);
    }

    #[test]
    fn the_parser_reads_stdin_and_reports_its_failure() {
        // A stand-in parser: a shell script checking its flag and input.
        let dir = tempfile::tempdir().expect("tmp");
        let script = dir.path().join("parser");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = -Kr ] || { echo \"bad flags $*\" >&2; exit 2; }\n\
             grep -q '^profile ok ' || { echo 'not the profile' >&2; exit 1; }\n",
        )
        .expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        assert_eq!(
            run_parser(&script, "profile ok {\n}\n", PARSER_TIMEOUT),
            Ok(())
        );
        let err = run_parser(&script, "profile other {\n}\n", PARSER_TIMEOUT).expect_err("refused");
        assert!(err.contains("not the profile"), "{err}");
        let slow = dir.path().join("slow");
        std::fs::write(&slow, "#!/bin/sh\nexec sleep 30\n").expect("write");
        std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let err = run_parser(&slow, "", Duration::from_millis(200)).expect_err("slow");
        assert!(err.contains("did not finish"), "{err}");
        let err = run_parser(&dir.path().join("missing"), "", PARSER_TIMEOUT).expect_err("refused");
        assert!(err.contains("cannot run"), "{err}");
    }
}
