//! Image references with Docker Hub-style normalization.
//!
//! The grammar is the distribution project's (its `reference` package,
//! which containerd and Docker parse with, and which oci-spec ports), read
//! here by hand: oci-spec compiles it into one regex with bounded
//! repetitions, which took 14.7 MB to build and kept ~4.4 MB for the life
//! of the daemon, most of its idle memory.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component { "/" path-component }
//! domain     := host [ ":" port ]
//! host       := domain-component { "." domain-component } | "[" [a-fA-F0-9:]+ "]"
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port       := [0-9]+
//! path-component := [a-z0-9]+ { separator [a-z0-9]+ }
//! separator  := "." | "_" | "__" | "-"+
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" [0-9a-fA-F]{32,}, of which crius takes sha256 only
//! ```
//!
//! Normalization is Docker's: the first component is the registry only
//! when there is a `/` after it and it has a `.` or a `:`, is `localhost`
//! or has upper case; otherwise the registry is `docker.io`, where a
//! single-component repository is in `library/`. `index.docker.io` is
//! `docker.io`. Without a tag or a digest the tag is `latest`. On top of
//! the grammar crius accepts only `sha256` digests in lowercase hex and
//! limits the name as written to 255 characters, as Docker does.

use std::fmt;
use std::str::FromStr;

use crius_core::{Error, Result};

/// The request field every reference error names.
pub const IMAGE_FIELD: &str = "image";

/// Longest name (registry and repository, as written) Docker accepts.
const NAME_MAX: usize = 255;

/// Longest tag the grammar accepts.
const TAG_MAX: usize = 128;

const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy name, normalized to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Where Docker Hub's single-component repositories are.
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";

/// A parsed, normalized image reference ([`parse_reference`]): a registry,
/// a repository, and a tag, a digest or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// The registry: `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`,
    /// `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The registry under the name Docker's v1 index gives it:
    /// `index.docker.io` for `docker.io`, any other registry itself (as
    /// oci-spec's `Reference::resolve_registry`, without mirrors). Images
    /// are stored and looked up under [`Reference::registry`].
    pub fn resolve_registry(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_LEGACY
        } else {
            &self.registry
        }
    }

    /// The repository: `library/busybox`, `x/y`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any; `latest` when the reference had neither a tag nor
    /// a digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The whole normalized reference: `registry/repository`, then
    /// `:tag` and `@digest` when present.
    pub fn whole(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    /// [`parse_reference`].
    fn from_str(s: &str) -> Result<Reference> {
        parse_reference(s)
    }
}

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
    parse(s).map_err(|reason| Error::invalid(IMAGE_FIELD, format!("{s:?}: {reason}")))
}

/// [`parse_reference`], failing with the reason only.
fn parse(s: &str) -> std::result::Result<Reference, String> {
    if s.is_empty() {
        return Err("empty image reference".into());
    }
    let Written { name, tag, digest } = Written::split(s);
    if name.len() > NAME_MAX {
        return Err(format!(
            "the name is {} characters long, more than {NAME_MAX}",
            name.len()
        ));
    }
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    let (registry, repository) = split_name(name)?;
    if repository.len() > NAME_MAX {
        return Err(format!(
            "the repository name is longer than {NAME_MAX} characters"
        ));
    }
    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG),
        (tag, _) => tag,
    };
    Ok(Reference {
        registry,
        repository,
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

/// A reference cut at its delimiters, nothing checked yet.
struct Written<'a> {
    /// `[domain/]path`.
    name: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> Written<'a> {
    /// The digest is after the first `@` (no other part has one); the tag
    /// after the first `:` of the last `/`-separated component (the one
    /// place a name has a `:` is the port of a domain, which a `/`
    /// follows).
    fn split(s: &'a str) -> Written<'a> {
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        let last = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last..].find(':') {
            Some(i) => {
                let (name, colon_tag) = name_and_tag.split_at(last + i);
                (name, Some(&colon_tag[1..]))
            }
            None => (name_and_tag, None),
        };
        Written { name, tag, digest }
    }
}

/// Splits a name into its registry and repository, normalized for Docker
/// Hub, or says why it is not a name.
fn split_name(name: &str) -> std::result::Result<(String, String), String> {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if names_a_registry(first) => {
            check_registry(first)?;
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    check_path(path)?;
    let registry = match registry {
        DOCKER_HUB_LEGACY => DOCKER_HUB,
        r => r,
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path.to_owned()
    };
    Ok((registry.to_owned(), repository))
}

/// Whether the first of several components is a registry, as Docker
/// decides: it has a `.` or a `:`, is `localhost`, or has upper case
/// (which a repository cannot have).
fn names_a_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// A registry is a domain; or, as for Docker and oci-spec (whose grammar
/// reads the name as all path when its first component is no domain, and
/// whose normalization then takes that component for the registry all
/// the same), a path component with a `.`, such as `foo_bar.com`.
fn check_registry(registry: &str) -> std::result::Result<(), String> {
    if is_domain(registry) || is_path_component(registry) {
        Ok(())
    } else {
        Err(format!("{registry:?} is not a valid registry host"))
    }
}

/// `host[:port]`: a host of domain components joined by `.`, or an IPv6
/// address in brackets; a port of digits.
fn is_domain(s: &str) -> bool {
    let (host_ok, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let Some((address, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (is_ipv6_literal(address), port)
        }
        None => {
            let (host, port) = match s.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            };
            (host.split('.').all(is_domain_component), port)
        }
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What the grammar takes between the brackets: `[a-fA-F0-9:]+` (the
/// address itself is the registry's business).
fn is_ipv6_literal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
}

/// `[a-zA-Z0-9]`, or `[a-zA-Z0-9-]*` between two of them.
fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    matches!((b.first(), b.last()), (Some(first), Some(last))
        if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// The repository as written: path components joined by `/`.
fn check_path(path: &str) -> std::result::Result<(), String> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err("the repository name has an empty component".into());
        }
        if !is_path_component(component) {
            if is_path_component(&component.to_ascii_lowercase()) {
                return Err("repository names must be lowercase".into());
            }
            return Err(format!(
                "{component:?} is not a valid repository name component"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by one separator each: `.`, `_`, `__`, or one
/// or more `-`.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let mut i = 0;
    loop {
        if !alnum(i) {
            return false;
        }
        while alnum(i) {
            i += 1;
        }
        match b.get(i) {
            None => return true,
            Some(b'.') => i += 1,
            Some(b'_') => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            Some(b'-') => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            Some(_) => return false,
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (`\w` is ASCII, as in Go).
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if tag.len() > TAG_MAX {
        return Err(format!(
            "the tag is {} characters long, more than {TAG_MAX}",
            tag.len()
        ));
    }
    if !tag.bytes().next().is_some_and(word)
        || !tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
    {
        return Err(format!(
            "tag {tag:?} is not letters, digits, '_', '.' and '-', after a letter, digit or '_'"
        ));
    }
    Ok(())
}

/// `sha256:` and 64 lowercase hex digits, or why not. Stricter than the
/// grammar's `algorithm:hex` (`[A-Za-z][A-Za-z0-9]*` components joined by
/// one of `+.-_`, then 32 hex digits or more), so that needs no check of
/// its own.
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

    /// Registry, repository, tag, digest.
    type Parts = (String, String, Option<String>, Option<String>);

    fn parts_of(r: &Reference) -> Parts {
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(str::to_owned),
        )
    }

    /// Whether `s` is refused, checking that a refusal is an invalid
    /// `image` argument naming `s`.
    fn refused(s: &str) -> bool {
        match parse_reference(s) {
            Ok(_) => false,
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, IMAGE_FIELD, "{s:?}");
                assert!(reason.contains(&format!("{s:?}")), "{s:?}: {reason}");
                true
            }
            Err(e) => panic!("{s:?}: {e:?}"),
        }
    }

    #[test]
    fn path_component_separators() {
        for ok in [
            "a__b",
            "a---b",
            "a_b",
            "a.b",
            "a-b",
            "0",
            "a.b_c__d-e--f0",
            "x/a__b/c---d",
        ] {
            assert!(!refused(ok), "{ok}");
        }
        for bad in [
            "a___b", "a-", "-a", "a..b", "a._b", "a_-b", "a-_b", "_a", "a_", ".a", "a.", "x/a-",
            "x/-a", "x/a..b", "x/a___b", "x/A", "a/", "/a", "x/a b", "a+b", "é",
        ] {
            assert!(refused(bad), "{bad}");
        }
        match parse_reference("x/aB") {
            Err(Error::InvalidArgument { reason, .. }) => {
                assert!(reason.contains("lowercase"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn domains_and_ports() -> Result<()> {
        for (input, registry, repository) in [
            ("localhost:5000/x", "localhost:5000", "x"),
            ("localhost/x", "localhost", "x"),
            ("[::1]:5000/x", "[::1]:5000", "x"),
            ("[::1]/x/y", "[::1]", "x/y"),
            ("[2001:db8::1]:443/a/b", "[2001:db8::1]:443", "a/b"),
            ("sub-dom1.foo.com/bar", "sub-dom1.foo.com", "bar"),
            ("a.b-c.d:1/e", "a.b-c.d:1", "e"),
            ("xn--n3h.com/img", "xn--n3h.com", "img"),
            ("Example.COM/app", "Example.COM", "app"),
            // Upper case makes the first component a registry, as for
            // Docker (oci-spec took it for a repository, which crius
            // then refused for its upper case).
            ("Foo/bar", "Foo", "bar"),
            // No domain, but a path component with a '.': a registry for
            // Docker and oci-spec too.
            ("foo_bar.com/x", "foo_bar.com", "x"),
            // Without a '/' after it, the first component is the
            // repository (and the port a tag).
            ("localhost:5000", "docker.io", "library/localhost"),
            ("test.com", "docker.io", "library/test.com"),
            ("localhostx/y", "docker.io", "localhostx/y"),
        ] {
            let r = parse_reference(input)?;
            assert_eq!(
                (r.registry(), r.repository()),
                (registry, repository),
                "{input}"
            );
        }
        for bad in [
            "[::1/x",
            "[::1]:/x",
            "[::1]x/y",
            "[]/x",
            "[::g]/x",
            "[::1]:5000:1/x",
            "a-.com/x",
            "-a.com/x",
            "a..com/x",
            ".com/x",
            "a.com./x",
            "host:port/x",
            "host:/x",
            ":5000/x",
            "a.com:5000a/x",
            "Foo_bar/x",
            "a b.com/x",
            "a.com/x:5000/y",
            "a.com/",
        ] {
            assert!(refused(bad), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn tags() -> Result<()> {
        let longest = "t".repeat(TAG_MAX);
        let r = parse_reference(&format!("x:{longest}"))?;
        assert_eq!(r.tag(), Some(longest.as_str()));
        assert!(refused(&format!("x:{longest}t")));
        for (input, tag) in [
            ("x:_", "_"),
            ("x:0", "0"),
            ("x:A.b-C_d", "A.b-C_d"),
            ("x:v1.2.3-rc.1", "v1.2.3-rc.1"),
            ("localhost:5000/x:__", "__"),
        ] {
            assert_eq!(parse_reference(input)?.tag(), Some(tag), "{input}");
        }
        for bad in [
            "x:", "x:.a", "x:-a", "x:a+b", "x:a b", "x:café", "x:a:b", ":t", "x:t@", "x:a/b",
        ] {
            assert!(refused(bad), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn whole_with_a_digest_a_tag_or_both() -> Result<()> {
        let d = format!("sha256:{HEX}");
        let r = parse_reference(&format!("busybox@{d}"))?;
        assert_eq!(r.tag(), None, "no latest beside a digest");
        assert_eq!(r.whole(), format!("docker.io/library/busybox@{d}"));
        let r = parse_reference(&format!("localhost:5000/a/b:v1@{d}"))?;
        assert_eq!(r.whole(), format!("localhost:5000/a/b:v1@{d}"));
        assert_eq!(r.to_string(), r.whole());
        assert_eq!(parse_reference("a/b:v1")?.whole(), "docker.io/a/b:v1");
        let r: Reference = "busybox".parse()?;
        assert_eq!(r.whole(), "docker.io/library/busybox:latest");
        assert!(matches!(
            "Busybox".parse::<Reference>(),
            Err(Error::InvalidArgument { .. })
        ));
        for bad in [
            format!("x@{d}@{d}"),
            format!("x@{d}:t"),
            format!("x@{}", &d[..70]),
            format!("x@sha256:{HEX}0"),
            format!("x@sha256+x:{HEX}"),
            format!("@{d}"),
            "x@".to_owned(),
        ] {
            assert!(refused(&bad), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn docker_hub() -> Result<()> {
        for (input, whole) in [
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/x/y", "docker.io/x/y:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io", "docker.io/library/docker.io:latest"),
            ("a/b/c", "docker.io/a/b/c:latest"),
            ("docker.io:443/x", "docker.io:443/x:latest"),
        ] {
            assert_eq!(parse_reference(input)?.whole(), whole, "{input}");
        }
        let r = parse_reference("index.docker.io/x/y")?;
        assert_eq!((r.registry(), r.repository()), ("docker.io", "x/y"));
        assert_eq!(r.resolve_registry(), "index.docker.io");
        assert_eq!(
            parse_reference("busybox")?.resolve_registry(),
            "index.docker.io"
        );
        assert_eq!(
            parse_reference("quay.io/x/y")?.resolve_registry(),
            "quay.io"
        );
        Ok(())
    }

    /// crius' parser before this one: its own checks, then oci-spec's.
    fn with_oci_spec(s: &str) -> Option<oci_spec::distribution::Reference> {
        if s.is_empty() {
            return None;
        }
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let name = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => &name_and_tag[..last_slash + i],
            None => name_and_tag,
        };
        if name.len() > NAME_MAX || digest.is_some_and(|d| check_digest(d).is_err()) {
            return None;
        }
        let mut components: Vec<&str> = name.split('/').collect();
        if components.len() > 1
            && (components[0].contains(['.', ':']) || components[0] == "localhost")
        {
            components.remove(0);
        }
        if components
            .iter()
            .any(|c| c.contains(|ch: char| ch.is_ascii_uppercase()))
        {
            return None;
        }
        let r = oci_spec::distribution::Reference::try_from(s).ok()?;
        (r.repository().len() <= NAME_MAX).then_some(r)
    }

    /// Compares this parser with oci-spec's on `s`: the same parts, whole
    /// and resolved registry, or a difference made on purpose.
    fn compare(s: &str) {
        let theirs = with_oci_spec(s);
        let ours = if refused(s) {
            None
        } else {
            parse_reference(s).ok()
        };
        match (&ours, &theirs) {
            (Some(ours), Some(theirs)) => {
                let theirs_parts = (
                    theirs.registry().to_owned(),
                    theirs.repository().to_owned(),
                    theirs.tag().map(str::to_owned),
                    theirs.digest().map(str::to_owned),
                );
                assert_eq!(parts_of(ours), theirs_parts, "{s:?}");
                assert_eq!(ours.whole(), theirs.whole(), "{s:?}");
                assert_eq!(ours.resolve_registry(), theirs.resolve_registry(), "{s:?}");
            }
            (None, None) => {}
            // Docker's rules, which oci-spec lacks: upper case marks a
            // registry; IPv6 addresses.
            (Some(ours), None) => assert!(
                ours.registry()
                    .contains(|c: char| c.is_ascii_uppercase() || c == '['),
                "{s:?}: only ours takes it"
            ),
            // oci-spec's `\w` is Unicode's; Go's (Docker's) is ASCII.
            (None, Some(_)) => assert!(!s.is_ascii(), "{s:?}: only oci-spec takes it"),
        }
    }

    /// Chosen strings for the differential test, with those built there.
    const DIFFERENTIAL_CASES: &[&str] = &[
        "busybox",
        "busybox:1.36",
        "user/app",
        "docker.io/busybox",
        "index.docker.io/busybox",
        "index.docker.io/x/y:1",
        "docker.io/library/busybox",
        "docker.io",
        "registry.k8s.io/pause:3.9",
        "127.0.0.1:5000/x/y:tag",
        "localhost/app",
        "localhost:5000/a/b/c",
        "localhost:5000",
        "localhost",
        "Example.COM:5000/app",
        "busybox:Upper_Case.tag-1",
        "test.com:tag",
        "test:5000/repo",
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "xn--n3h.com/myimage:xn--n3h.com",
        "foo_bar.com:8080",
        "foo/foo_bar.com:8080",
        "foo_bar.com/x",
        "a__b",
        "a---b",
        "a_b",
        "a___b",
        "a-",
        "-a",
        "a..b",
        "a.-b",
        "A",
        "Busybox",
        "Foo/bar",
        "docker.io/Library/busybox",
        "x/A",
        "a//b",
        "a/",
        "/a",
        "",
        ":",
        ":tag",
        "busybox:",
        "a/b:t:u",
        "bus box",
        " busybox",
        "busybox ",
        "busybox\n",
        "x:café",
        "café",
        "[::1]:5000/x",
        "[::1]/x",
        "a.com:5000a/x",
        "a-.com/x",
        "host:/x",
        "x:.t",
        "x:-t",
        "x:_t",
        "x@",
        "@",
        "x@sha256:abc",
    ];

    #[test]
    fn differential_against_oci_spec() {
        let d = format!("sha256:{HEX}");
        let mut cases: Vec<String> = DIFFERENTIAL_CASES.iter().map(|s| s.to_string()).collect();
        cases.extend([
            format!("x:{}", "t".repeat(128)),
            format!("x:{}", "t".repeat(129)),
            format!("busybox@{d}"),
            format!("quay.io/a/b:v1@{d}"),
            format!("busybox@{}", d.to_uppercase()),
            format!("busybox@sha256:{}", HEX.to_uppercase()),
            format!("busybox@sha512:{HEX}{HEX}"),
            format!("busybox@md5:{}", &HEX[..32]),
            format!("example.com/{}", "a".repeat(243)),
            format!("example.com/{}", "a".repeat(244)),
            format!("{}:t", "a".repeat(255)),
            "a".repeat(247),
            "a".repeat(248),
            "a".repeat(256),
        ]);
        for case in &cases {
            compare(case);
        }
    }

    /// Every string of up to 5 characters over an alphabet that reaches
    /// each rule of the name and the tag.
    #[test]
    fn differential_against_oci_spec_exhaustive() {
        const ALPHABET: &[u8] = b"a0A._-/:";
        let mut strings = vec![String::new()];
        let mut level = strings.clone();
        for _ in 0..5 {
            level = level
                .iter()
                .flat_map(|s| {
                    ALPHABET
                        .iter()
                        .map(move |&c| format!("{s}{}", char::from(c)))
                })
                .collect();
            strings.extend(level.iter().cloned());
        }
        for s in &strings {
            compare(s);
        }
    }
}
