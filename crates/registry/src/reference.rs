//! Image references with Docker Hub-style normalization.
//!
//! Parsing is [`oci_spec::distribution::Reference`]'s (a port of the
//! distribution project's grammar, which already normalizes `busybox` to
//! `docker.io/library/busybox:latest`); on top of it crius accepts only
//! `sha256` digests in lowercase hex and limits the name as written to 255
//! characters, as Docker does.

use crius_core::{Error, Result};
pub use oci_spec::distribution::Reference;

/// The request field every reference error names.
pub const IMAGE_FIELD: &str = "image";

/// Longest name (registry and repository, as written) Docker accepts.
const NAME_MAX: usize = 255;

/// Parses and normalizes an image reference: `busybox` ->
/// `docker.io/library/busybox:latest`, `user/app` -> `docker.io/user/app:latest`,
/// `127.0.0.1:5000/x/y:tag`, `name@sha256:<hex>`, `name:tag@sha256:<hex>`.
///
/// Fails with [`Error::InvalidArgument`] on field `image`, naming `s`.
/// Every refusal is one containerd makes too (its reference parser, the
/// one of Docker's distribution: empty, a name over 255 characters, upper
/// case in the repository, a malformed digest), except one noted in
/// [`check_digest`].
pub fn parse_reference(s: &str) -> Result<Reference> {
    let invalid = |reason: &str| Error::invalid(IMAGE_FIELD, format!("{s:?}: {reason}"));
    if s.is_empty() {
        return Err(invalid("empty image reference"));
    }
    let (name_and_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    // The tag is after the last ':' that follows the last '/'.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let name = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => &name_and_tag[..last_slash + i],
        None => name_and_tag,
    };
    if name.len() > NAME_MAX {
        return Err(invalid(&format!(
            "the name is {} characters long, more than {NAME_MAX}",
            name.len()
        )));
    }
    if let Some(digest) = digest {
        check_digest(digest).map_err(|reason| invalid(&reason))?;
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        components.remove(0);
    }
    if components
        .iter()
        .any(|c| c.contains(|ch: char| ch.is_ascii_uppercase()))
    {
        return Err(invalid("repository names must be lowercase"));
    }
    let reference: Reference = s.parse().map_err(|e: oci_spec::distribution::ParseError| {
        invalid(&format!("not a valid image reference ({e})"))
    })?;
    if reference.repository().len() > NAME_MAX {
        return Err(invalid(&format!(
            "the repository name is longer than {NAME_MAX} characters"
        )));
    }
    Ok(reference)
}

/// `sha256:` and 64 lowercase hex digits, or why not.
pub(crate) fn check_digest(digest: &str) -> std::result::Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} has no algorithm"));
    };
    // Not yet: containerd also takes sha384 and sha512 digests; crius
    // verifies blobs with sha256 only, and a digest it cannot check must
    // not pass as checked (security).
    if algorithm != "sha256" {
        return Err(format!(
            "digest {digest:?}: only sha256 digests are supported"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {digest:?} is not 64 lowercase hexadecimal digits"
        ));
    }
    Ok(())
}

/// The full normalized reference: `docker.io/library/busybox:latest`,
/// `docker.io/library/busybox@sha256:…`, or `…:tag@sha256:…`.
pub fn normalized(reference: &Reference) -> String {
    reference.whole()
}

/// `registry/repository`, e.g. `docker.io/library/busybox`.
pub fn repository_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The repo tag (`docker.io/library/busybox:latest`), when the reference
/// has a tag.
pub fn repo_tag(reference: &Reference) -> Option<String> {
    reference
        .tag()
        .map(|tag| format!("{}:{tag}", repository_name(reference)))
}

/// The repo digest `docker.io/library/busybox@sha256:…` of `digest` (the
/// digest the reference resolved to: the index or manifest it points at).
pub fn repo_digest(reference: &Reference, digest: &str) -> String {
    format!("{}@{digest}", repository_name(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        match parse_reference(s) {
            Ok(r) => normalized(&r),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn normalization_table() {
        let digest = format!("sha256:{HEX}");
        let cases: Vec<(String, String)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest".into()),
            (
                "busybox:1.36".into(),
                "docker.io/library/busybox:1.36".into(),
            ),
            ("user/app".into(), "docker.io/user/app:latest".into()),
            (
                "docker.io/busybox".into(),
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/library/busybox:1".into(),
                "docker.io/library/busybox:1".into(),
            ),
            (
                "registry.k8s.io/pause:3.9".into(),
                "registry.k8s.io/pause:3.9".into(),
            ),
            (
                "127.0.0.1:5000/x/y:tag".into(),
                "127.0.0.1:5000/x/y:tag".into(),
            ),
            ("localhost/app".into(), "localhost/app:latest".into()),
            (
                "localhost:5000/a/b/c".into(),
                "localhost:5000/a/b/c:latest".into(),
            ),
            (
                format!("busybox@{digest}"),
                format!("docker.io/library/busybox@{digest}"),
            ),
            (
                format!("quay.io/a/b:v1@{digest}"),
                format!("quay.io/a/b:v1@{digest}"),
            ),
            (
                "Example.COM:5000/app".into(),
                "Example.COM:5000/app:latest".into(),
            ),
            (
                "busybox:Upper_Case.tag-1".into(),
                "docker.io/library/busybox:Upper_Case.tag-1".into(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(norm(&input), want, "{input}");
        }
    }

    #[test]
    fn parts() -> Result<()> {
        let r = parse_reference("busybox")?;
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(
            repo_tag(&r).as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        let d = format!("sha256:{HEX}");
        assert_eq!(
            repo_digest(&r, &d),
            format!("docker.io/library/busybox@{d}")
        );
        let r = parse_reference(&format!("127.0.0.1:5000/x/y@{d}"))?;
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "x/y");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(repo_tag(&r), None);
        let r = parse_reference(&format!("x/y:t@{d}"))?;
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(repo_tag(&r).as_deref(), Some("docker.io/x/y:t"));
        Ok(())
    }

    #[test]
    fn malformed_references_are_invalid_arguments() {
        let long_name = format!("example.com/{}", "a".repeat(250));
        let cases = [
            "".to_owned(),
            "Busybox".to_owned(),
            "docker.io/Library/busybox".to_owned(),
            ":".to_owned(),
            ":tag".to_owned(),
            "busybox:".to_owned(),
            "bus box".to_owned(),
            " busybox".to_owned(),
            "busybox@sha256:abc".to_owned(),
            format!("busybox@sha256:{}", HEX.to_uppercase()),
            format!("busybox@sha512:{HEX}{HEX}"),
            format!("busybox@md5:{HEX}"),
            "busybox@".to_owned(),
            "a//b".to_owned(),
            "a/b:t:u".to_owned(),
            long_name.clone(),
            format!("{long_name}:tag"),
        ];
        for input in cases {
            match parse_reference(&input) {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "image", "{input}");
                    assert!(reason.contains(&format!("{input:?}")), "{input}: {reason}");
                }
                other => panic!("{input:?}: expected InvalidArgument, got {other:?}"),
            }
        }
        match parse_reference("docker.io/Library/busybox") {
            Err(Error::InvalidArgument { reason, .. }) => {
                assert!(reason.contains("lowercase"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // 255 characters exactly is fine.
        let ok = format!("example.com/{}", "a".repeat(255 - 12));
        assert_eq!(ok.len(), 255);
        assert!(parse_reference(&ok).is_ok());
    }
}
