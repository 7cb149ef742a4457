//! Registry hosts in containerd's hosts directory layout.
//!
//! `<hosts_dir>/<registry>/hosts.toml` (e.g. `docker.io`, `127.0.0.1:5000`),
//! else `<hosts_dir>/_default/hosts.toml`, lists the hosts tried for one
//! registry: every `[host."<url>"]` table in file order (mirrors), then the
//! `server` (default `https://<registry>`, `https://registry-1.docker.io` for
//! `docker.io`). Keys per host: `capabilities` (`pull`, `resolve`, `push`;
//! default all three), `skip_verify`, `ca` (a path or a list, relative to the
//! host's directory), `override_path` (use the URL's path instead of adding
//! `/v2`), `header` (extra headers, a value or a list). Top-level keys
//! configure the `server`.
//!
//! A host directory without `hosts.toml` contributes its `*.crt` files as CAs
//! of the default server, then reached over https (Docker's `certs.d`
//! layout). Without any file, a
//! registry in [`RegistryConfig::plain_http_hosts`] or on a loopback address
//! is reached over plain HTTP (as containerd does for localhost).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_core::{Error, Result};
use serde::Deserialize;
use url::Url;

use crate::auth::Credentials;

/// Default for [`RegistryConfig::progress_timeout`].
pub const DEFAULT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Where registries are and how to reach them.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// containerd-style hosts directory (`<dir>/<host>/hosts.toml`); `None`
    /// or a missing directory means defaults only.
    pub hosts_dir: Option<PathBuf>,
    /// Registries (`host[:port]`, or a host name matching any port) reached
    /// over plain HTTP when no hosts.toml says otherwise.
    pub plain_http_hosts: Vec<String>,
    /// Credentials by registry host (`docker.io`, `127.0.0.1:5000`), used
    /// when a request carries none. A key may be written as a URL
    /// (`https://index.docker.io/v1/`).
    pub auths: HashMap<String, Credentials>,
    /// A transfer (response headers, or the next bytes of a body) that makes
    /// no progress for this long fails with `DeadlineExceeded`.
    pub progress_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            hosts_dir: None,
            plain_http_hosts: Vec::new(),
            auths: HashMap::new(),
            progress_timeout: DEFAULT_PROGRESS_TIMEOUT,
        }
    }
}

impl RegistryConfig {
    /// Credentials configured for `host` (exact key, or a key that is a URL
    /// of that host; `docker.io` also answers to its aliases).
    pub fn credentials_for(&self, host: &str) -> Option<&Credentials> {
        let wanted = canonical_auth_host(host);
        self.auths
            .iter()
            .find(|(k, _)| canonical_auth_host(k) == wanted)
            .map(|(_, c)| c)
    }

    fn is_plain_http(&self, registry: &str) -> bool {
        let hostname = split_port(registry).0;
        self.plain_http_hosts
            .iter()
            .any(|h| h == registry || (!h.contains(':') && h == hostname))
    }
}

/// What a host may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Fetch blobs and manifests by digest.
    pub pull: bool,
    /// Resolve tags to digests.
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One host to try for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// API root path: `/v2`, or the URL's own path with `override_path`.
    pub path: String,
    pub capabilities: Capabilities,
    pub skip_verify: bool,
    /// CA certificate files (PEM) trusted in addition to the system's.
    pub ca: Vec<PathBuf>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// From a `[host]` table (a mirror), not the registry's `server`.
    pub mirror: bool,
}

impl RegistryHost {
    /// `scheme://host/path`, e.g. `http://127.0.0.1:5000/v2`.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }

    /// The URL of `<kind>/<reference>` (`manifests/latest`, `blobs/sha256:…`)
    /// of `repository` on this host. When this host is not `registry`
    /// itself, the URL carries `?ns=<registry>` as containerd's does; the
    /// repository path is kept.
    pub fn url(
        &self,
        registry: &str,
        repository: &str,
        kind: &str,
        reference: &str,
    ) -> Result<Url> {
        let raw = format!("{}/{repository}/{kind}/{reference}", self.base_url());
        let mut url = Url::parse(&raw)
            .map_err(|e| Error::Internal(format!("building registry URL {raw:?}: {e}")))?;
        if self.host != registry {
            url.query_pairs_mut().append_pair("ns", registry);
        }
        Ok(url)
    }
}

/// The hosts to try for `registry`, in order: the configured mirrors, then
/// the server.
pub fn registry_hosts(config: &RegistryConfig, registry: &str) -> Result<Vec<RegistryHost>> {
    if let Some(dir) = &config.hosts_dir {
        for name in [registry, "_default"] {
            let host_dir = dir.join(name);
            let file = host_dir.join("hosts.toml");
            match std::fs::read_to_string(&file) {
                Ok(text) => return parse_hosts_file(config, registry, &text, &host_dir, &file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
            }
            if name == registry && host_dir.is_dir() {
                // Docker's certs.d layout: *.crt are CAs of the server, which
                // is then reached over https.
                let mut server = default_server(config, registry);
                server.ca = crt_files(&host_dir)?;
                if !server.ca.is_empty() {
                    server.scheme = "https".to_owned();
                }
                return Ok(vec![server]);
            }
        }
    }
    Ok(vec![default_server(config, registry)])
}

/// Parses one hosts.toml for `registry`; `host_dir` anchors relative CA
/// paths and `file` names the file in errors.
pub fn parse_hosts_toml(
    config: &RegistryConfig,
    registry: &str,
    text: &str,
    host_dir: &Path,
) -> Result<Vec<RegistryHost>> {
    parse_hosts_file(
        config,
        registry,
        text,
        host_dir,
        &host_dir.join("hosts.toml"),
    )
}

#[derive(Debug, Deserialize, Default)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    host: BTreeMap<String, toml::Spanned<HostFields>>,
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    client: Option<toml::Value>,
    skip_verify: Option<bool>,
    header: Option<BTreeMap<String, OneOrMany>>,
    override_path: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
struct HostFields {
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    client: Option<toml::Value>,
    skip_verify: Option<bool>,
    header: Option<BTreeMap<String, OneOrMany>>,
    override_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn parse_hosts_file(
    config: &RegistryConfig,
    registry: &str,
    text: &str,
    host_dir: &Path,
    file: &Path,
) -> Result<Vec<RegistryHost>> {
    let bad = |msg: String| Error::FailedPrecondition(format!("{}: {msg}", file.display()));
    let parsed: HostsFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut tables: Vec<(String, toml::Spanned<HostFields>)> = parsed.host.into_iter().collect();
    tables.sort_by_key(|(_, fields)| fields.span().start);
    let mut hosts = Vec::with_capacity(tables.len() + 1);
    for (key, fields) in tables {
        let fields = fields.into_inner();
        let host = host_entry(&key, fields, true, host_dir)
            .map_err(|m| bad(format!("[host.{key:?}]: {m}")))?;
        hosts.push(host);
    }
    let top = HostFields {
        capabilities: parsed.capabilities,
        ca: parsed.ca,
        client: parsed.client,
        skip_verify: parsed.skip_verify,
        header: parsed.header,
        override_path: parsed.override_path,
    };
    let server = match parsed.server.as_deref() {
        Some(url) if !url.is_empty() => {
            host_entry(url, top, false, host_dir).map_err(|m| bad(format!("server: {m}")))?
        }
        _ => {
            let mut server = default_server(config, registry);
            apply_fields(&mut server, top, host_dir).map_err(|m| bad(format!("top level: {m}")))?;
            server
        }
    };
    hosts.push(server);
    Ok(hosts)
}

/// The server used when no file names one.
fn default_server(config: &RegistryConfig, registry: &str) -> RegistryHost {
    let (scheme, host) = if registry == "docker.io" {
        ("https", "registry-1.docker.io")
    } else if config.is_plain_http(registry) || is_loopback(registry) {
        ("http", registry)
    } else {
        ("https", registry)
    };
    RegistryHost {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        path: "/v2".to_owned(),
        capabilities: Capabilities::ALL,
        skip_verify: false,
        ca: Vec::new(),
        headers: Vec::new(),
        mirror: false,
    }
}

fn host_entry(
    url: &str,
    fields: HostFields,
    mirror: bool,
    host_dir: &Path,
) -> std::result::Result<RegistryHost, String> {
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let parsed = Url::parse(&with_scheme).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = parsed.scheme().to_owned();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url:?}: scheme must be http or https"));
    }
    let hostname = parsed
        .host_str()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let host = match parsed.port() {
        Some(port) => format!("{hostname}:{port}"),
        None => hostname.to_owned(),
    };
    let url_path = parsed.path().trim_end_matches('/').to_owned();
    let mut entry = RegistryHost {
        scheme,
        host,
        path: url_path,
        capabilities: Capabilities::ALL,
        skip_verify: false,
        ca: Vec::new(),
        headers: Vec::new(),
        mirror,
    };
    let override_path = fields.override_path.unwrap_or(false);
    apply_fields(&mut entry, fields, host_dir)?;
    if !override_path {
        if entry.path.ends_with("/v2") {
            tracing::warn!(
                url,
                "registry host URL ends with /v2 but override_path is not set: /v2 is added again"
            );
        }
        entry.path.push_str("/v2");
    }
    Ok(entry)
}

fn apply_fields(
    entry: &mut RegistryHost,
    fields: HostFields,
    host_dir: &Path,
) -> std::result::Result<(), String> {
    if let Some(caps) = fields.capabilities {
        let mut c = Capabilities {
            pull: false,
            resolve: false,
            push: false,
        };
        for cap in caps {
            match cap.as_str() {
                "pull" => c.pull = true,
                "resolve" => c.resolve = true,
                "push" => c.push = true,
                other => return Err(format!("unknown capability {other:?}")),
            }
        }
        entry.capabilities = c;
    }
    if let Some(skip) = fields.skip_verify {
        entry.skip_verify = skip;
    }
    if let Some(ca) = fields.ca {
        entry.ca = ca
            .into_vec()
            .into_iter()
            .map(|p| {
                let p = PathBuf::from(p);
                if p.is_absolute() { p } else { host_dir.join(p) }
            })
            .collect();
    }
    if fields.client.is_some() {
        tracing::warn!(
            host = entry.host,
            "client certificates in hosts.toml are not supported by crius; ignored"
        );
    }
    if let Some(headers) = fields.header {
        for (name, values) in headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            for value in values.into_vec() {
                reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| format!("invalid value for header {name:?}"))?;
                entry.headers.push((name.clone(), value));
            }
        }
    }
    Ok(())
}

fn crt_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "crt") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// `host` and `port` of `host[:port]` (IPv6 in brackets).
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    }
}

/// localhost, 127.0.0.0/8 or ::1, with or without a port.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let hostname = split_port(registry).0;
    hostname == "localhost"
        || hostname
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host an `auths` key or a registry host stands for.
fn canonical_auth_host(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        h => h.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(registry: &str, text: &str) -> Vec<RegistryHost> {
        parse_hosts_toml(
            &RegistryConfig::default(),
            registry,
            text,
            Path::new("/etc/certs.d/x"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_without_config() -> Result<()> {
        let config = RegistryConfig {
            plain_http_hosts: vec!["10.1.2.3:5000".into(), "insecure.test".into()],
            ..RegistryConfig::default()
        };
        let base = |r: &str| -> Result<Vec<String>> {
            Ok(registry_hosts(&config, r)?
                .iter()
                .map(|h| h.base_url())
                .collect())
        };
        assert_eq!(base("docker.io")?, ["https://registry-1.docker.io/v2"]);
        assert_eq!(base("quay.io")?, ["https://quay.io/v2"]);
        assert_eq!(base("10.1.2.3:5000")?, ["http://10.1.2.3:5000/v2"]);
        assert_eq!(base("10.1.2.3:5001")?, ["https://10.1.2.3:5001/v2"]);
        assert_eq!(base("insecure.test:443")?, ["http://insecure.test:443/v2"]);
        assert_eq!(base("127.0.0.1:5000")?, ["http://127.0.0.1:5000/v2"]);
        assert_eq!(base("localhost")?, ["http://localhost/v2"]);
        assert_eq!(base("[::1]:5000")?, ["http://[::1]:5000/v2"]);
        let hosts = registry_hosts(&config, "quay.io")?;
        assert_eq!(hosts[0].capabilities, Capabilities::ALL);
        assert!(!hosts[0].mirror);
        Ok(())
    }

    #[test]
    fn mirrors_in_file_order_then_server() {
        let hosts = parse(
            "docker.io",
            r#"
server = "https://registry-1.docker.io"
capabilities = ["pull", "resolve"]

[host."https://z-mirror.example.com"]
  capabilities = ["pull"]

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true

[host."https://a-mirror.example.com:8443/prefix"]
  override_path = true
  ca = "ca.pem"
  [host."https://a-mirror.example.com:8443/prefix".header]
    x-custom = "1"
    x-many = ["a", "b"]

[host."b-mirror.example.com/sub"]
  ca = ["/abs/one.pem", "two.pem"]
"#,
        );
        let urls: Vec<String> = hosts.iter().map(|h| h.base_url()).collect();
        assert_eq!(
            urls,
            [
                "https://z-mirror.example.com/v2",
                "http://127.0.0.1:5000/v2",
                "https://a-mirror.example.com:8443/prefix",
                "https://b-mirror.example.com/sub/v2",
                "https://registry-1.docker.io/v2",
            ]
        );
        assert_eq!(
            hosts[0].capabilities,
            Capabilities {
                pull: true,
                resolve: false,
                push: false
            }
        );
        assert_eq!(
            hosts[1].capabilities,
            Capabilities {
                pull: true,
                resolve: true,
                push: false
            }
        );
        assert!(hosts[1].skip_verify);
        assert!(!hosts[0].skip_verify);
        assert_eq!(hosts[2].capabilities, Capabilities::ALL);
        assert_eq!(hosts[2].ca, [PathBuf::from("/etc/certs.d/x/ca.pem")]);
        assert_eq!(
            hosts[2].headers,
            [
                ("x-custom".to_owned(), "1".to_owned()),
                ("x-many".to_owned(), "a".to_owned()),
                ("x-many".to_owned(), "b".to_owned())
            ]
        );
        assert_eq!(
            hosts[3].ca,
            [
                PathBuf::from("/abs/one.pem"),
                PathBuf::from("/etc/certs.d/x/two.pem")
            ]
        );
        assert!(hosts[..4].iter().all(|h| h.mirror));
        // The top-level keys configure the server.
        let server = &hosts[4];
        assert!(!server.mirror);
        assert_eq!(
            server.capabilities,
            Capabilities {
                pull: true,
                resolve: true,
                push: false
            }
        );
    }

    #[test]
    fn default_server_follows_the_mirrors() {
        let hosts = parse(
            "registry.example.test",
            "[host.\"http://127.0.0.1:5000\"]\n",
        );
        let urls: Vec<String> = hosts.iter().map(|h| h.base_url()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000/v2",
                "https://registry.example.test/v2"
            ]
        );
        let hosts = parse("docker.io", "skip_verify = true\nca = \"/x.pem\"\n");
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].base_url(), "https://registry-1.docker.io/v2");
        assert!(hosts[0].skip_verify);
        assert_eq!(hosts[0].ca, [PathBuf::from("/x.pem")]);
        let hosts = parse(
            "docker.io",
            "server = \"https://mirror.gcr.io/\"\noverride_path = true\n",
        );
        assert_eq!(hosts[0].base_url(), "https://mirror.gcr.io");
    }

    #[test]
    fn bad_files_are_failed_preconditions() {
        for text in [
            "server = 1",
            "[host.\"ftp://x\"]",
            "[host.\"http://x\"]\ncapabilities = [\"fly\"]",
            "[host.\"http://x\".header]\n\"bad name\" = \"v\"",
            "not toml at all =",
        ] {
            match parse_hosts_toml(&RegistryConfig::default(), "r", text, Path::new("/d")) {
                Err(Error::FailedPrecondition(msg)) => {
                    assert!(msg.contains("/d/hosts.toml"), "{msg}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn hosts_dir_lookup_and_default_fallback() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write(
            "127.0.0.1:5000/hosts.toml",
            "server = \"https://127.0.0.1:5000\"\nskip_verify = true\n",
        );
        write(
            "_default/hosts.toml",
            "[host.\"http://mirror.local:5000\"]\ncapabilities = [\"pull\"]\n",
        );
        write("certs.example/ca.crt", "x");
        write("certs.example/client.cert", "x");
        write("127.0.0.1:5443/ca.crt", "x");
        let config = RegistryConfig {
            hosts_dir: Some(dir.path().to_owned()),
            ..RegistryConfig::default()
        };
        let h = registry_hosts(&config, "127.0.0.1:5000")?;
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].base_url(), "https://127.0.0.1:5000/v2");
        assert!(h[0].skip_verify);
        let h = registry_hosts(&config, "quay.io")?;
        let urls: Vec<String> = h.iter().map(|h| h.base_url()).collect();
        assert_eq!(urls, ["http://mirror.local:5000/v2", "https://quay.io/v2"]);
        let h = registry_hosts(&config, "certs.example")?;
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].ca, [dir.path().join("certs.example/ca.crt")]);
        let h = registry_hosts(&config, "127.0.0.1:5443")?;
        assert_eq!(h[0].base_url(), "https://127.0.0.1:5443/v2");
        // A missing hosts directory means defaults.
        let config = RegistryConfig {
            hosts_dir: Some(dir.path().join("missing")),
            ..RegistryConfig::default()
        };
        assert_eq!(
            registry_hosts(&config, "quay.io")?[0].base_url(),
            "https://quay.io/v2"
        );
        Ok(())
    }

    #[test]
    fn mirror_url_keeps_the_repository_and_adds_ns() -> Result<()> {
        let hosts = parse("registry.k8s.io", "[host.\"http://127.0.0.1:5000\"]\n");
        let url = hosts[0].url(
            "registry.k8s.io",
            "e2e-test-images/busybox",
            "manifests",
            "1.29-2",
        )?;
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/v2/e2e-test-images/busybox/manifests/1.29-2?ns=registry.k8s.io"
        );
        // The registry's own server: no ns.
        let url = hosts[1].url("registry.k8s.io", "pause", "blobs", "sha256:00")?;
        assert_eq!(
            url.as_str(),
            "https://registry.k8s.io/v2/pause/blobs/sha256:00"
        );
        let hosts = parse(
            "docker.io",
            "[host.\"https://m.example/base\"]\noverride_path = true\n",
        );
        let url = hosts[0].url("docker.io", "library/busybox", "manifests", "latest")?;
        assert_eq!(
            url.as_str(),
            "https://m.example/base/library/busybox/manifests/latest?ns=docker.io"
        );
        Ok(())
    }

    #[test]
    fn auth_lookup() {
        let mut config = RegistryConfig::default();
        config.auths.insert(
            "https://index.docker.io/v1/".into(),
            Credentials::RegistryToken("t".into()),
        );
        config
            .auths
            .insert("127.0.0.1:5000".into(), Credentials::Anonymous);
        assert_eq!(
            config.credentials_for("docker.io"),
            Some(&Credentials::RegistryToken("t".into()))
        );
        assert_eq!(
            config.credentials_for("registry-1.docker.io"),
            Some(&Credentials::RegistryToken("t".into()))
        );
        assert_eq!(
            config.credentials_for("127.0.0.1:5000"),
            Some(&Credentials::Anonymous)
        );
        assert_eq!(config.credentials_for("127.0.0.1:5001"), None);
    }

    #[test]
    fn loopback() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "localhost.example"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
