//! Name rules: containerd namespaces and containerd shim (runtime type) names.

/// Longest containerd namespace containerd accepts.
const MAX_NAMESPACE_LEN: usize = 76;
/// Longest shim name crius accepts. containerd sets no bound of its own,
/// but it looks the shim up as the file `containerd-shim-<name>-<version>`,
/// and no file name is longer than NAME_MAX (255 bytes): a longer handler
/// could never start (impossible), and refusing it here says so at once.
const MAX_SHIM_NAME_LEN: usize = 255;

/// Checks a containerd namespace the way containerd does: alphanumeric
/// components joined by single `.`, `_` or `-`, at most 76 characters.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() {
        return Err("must not be empty".into());
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(format!("longer than {MAX_NAMESPACE_LEN} characters"));
    }
    let mut prev_sep = true;
    for c in ns.chars() {
        let sep = matches!(c, '.' | '_' | '-');
        if !(c.is_ascii_alphanumeric() || sep) {
            return Err(format!(
                "character {c:?} is not allowed (use [A-Za-z0-9._-])"
            ));
        }
        if sep && prev_sep {
            return Err("separators must sit between alphanumeric characters".into());
        }
        prev_sep = sep;
    }
    if prev_sep {
        return Err("must end with an alphanumeric character".into());
    }
    Ok(())
}

/// A well-formed containerd shim name such as `io.containerd.runc.v2`.
///
/// containerd resolves such a name to the binary
/// `containerd-shim-<name>-<version>` on its PATH; anything else (a path)
/// it would execute as given, so only this shape may ever come from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimName(String);

impl ShimName {
    /// Parses `name`, refusing anything containerd could take as a path:
    /// at least three non-empty dot-separated parts (`prefix.name.vN`), only
    /// `[A-Za-z0-9_+-]` inside parts, a version part `v<digits>`.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("an empty runtime name is not a shim name".into());
        }
        if name.len() > MAX_SHIM_NAME_LEN {
            return Err(format!("longer than {MAX_SHIM_NAME_LEN} characters"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
        {
            return Err(format!(
                "character {c:?} is not allowed in a shim name (a path is never accepted)"
            ));
        }
        let parts: Vec<&str> = name.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err("empty part between dots (leading, trailing or double dot)".into());
        }
        if parts.len() < 3 {
            return Err(
                "expected the shape <prefix>.<name>.<version>, e.g. io.containerd.runc.v2".into(),
            );
        }
        let version = parts[parts.len() - 1];
        let valid_version = version.len() > 1
            && version.starts_with('v')
            && version[1..].chars().all(|c| c.is_ascii_digit());
        if !valid_version {
            return Err(format!("version part {version:?} is not v<number>"));
        }
        Ok(ShimName(name.to_string()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The binary containerd looks up on its PATH for this shim.
    pub fn binary_name(&self) -> String {
        let mut parts = self.0.rsplit('.');
        let version = parts.next().unwrap_or_default();
        let name = parts.next().unwrap_or_default();
        format!("containerd-shim-{name}-{version}")
    }
}

impl std::fmt::Display for ShimName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["crius", "k8s.io", "a-b_c.d", "x1"] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "A B", &"x".repeat(77)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shim_names() {
        for ok in [
            "io.containerd.runc.v2",
            "io.containerd.kata.v2",
            "io.containerd.runc-alias.v2",
            "a.b.v10",
            "io.containerd.kata-qemu+x.v2",
        ] {
            assert!(ShimName::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(10_000);
        for bad in [
            "",
            "io",
            "io.containerd",
            "/usr/bin/containerd-shim-runc-v2",
            "../x",
            "./x",
            "io.containerd/../x",
            "a/b",
            ".io.containerd.runc.v2",
            "io..containerd.runc.v2",
            "io.containerd.runc.v2.",
            "io.containerd.runc.2",
            "io.containerd.runc.v",
            "io.containerd.runc.vx",
            "io.containerd.ruｎc.v2",
            "io.containerd.runc.v2 ",
            long.as_str(),
        ] {
            assert!(ShimName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn shim_binary() {
        let s = ShimName::parse("io.containerd.runc-alias.v2").expect("valid");
        assert_eq!(s.binary_name(), "containerd-shim-runc-alias-v2");
    }
}
