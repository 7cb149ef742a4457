//! A real `docker-registry` (the Debian package `docker-registry`, i.e. the
//! CNCF distribution registry v2) serving plain HTTP on `127.0.0.1`.
//!
//! Each [`Registry`] has its own temporary directory holding its config file
//! (`config.yml`), its log (`registry.log`) and, unless it serves an existing
//! storage directory ([`Registry::start_with_storage`]), its storage.
//!
//! The process is killed and reaped on [`Drop`]. Because fixtures are often
//! kept in a `static` (which is never dropped), each registry also gets a tiny
//! watchdog (`/bin/sh`) that kills it as soon as the test process goes away,
//! however it goes away: the watchdog blocks reading a pipe whose only writer
//! is the test process.
//!
//! The module also holds the minimal HTTP/1.1 client ([`http_request`]) used to
//! talk to the registry: plain `http` to `127.0.0.1` only, one request per
//! connection.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

/// The program started by [`Registry`].
pub const REGISTRY_BINARY: &str = "docker-registry";
/// The Debian package that ships [`REGISTRY_BINARY`].
pub const REGISTRY_PACKAGE: &str = "docker-registry";

/// How long [`Registry::start`] waits for `GET /v2/` to answer 200.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports are tried before giving up (another process may take
/// the port between our probe and the registry's bind).
const PORT_ATTEMPTS: usize = 5;
/// Connect timeout of [`http_request`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read/write timeout of [`http_request`].
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `docker-registry` on `127.0.0.1:PORT`, without TLS nor auth,
/// with deletes enabled.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// Kills the registry when the test process dies without dropping us.
    watchdog: Option<Child>,
    addr: String,
    storage: PathBuf,
    /// config.yml, registry.log and (for [`Registry::start`]) storage/.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with fresh, empty storage in its own tempdir.
    pub fn start() -> Result<Registry> {
        let dir = registry_tempdir()?;
        let storage = dir.path().join("storage");
        fs::create_dir(&storage)
            .with_context(|| format!("creating registry storage {}", storage.display()))?;
        Self::spawn(dir, storage)
    }

    /// Starts a registry serving an existing storage directory (the
    /// `rootdirectory` of the filesystem storage driver; it holds `docker/`
    /// once something was pushed). The directory is not removed on drop.
    ///
    /// Several registries may serve the same directory as long as none of
    /// them writes to it.
    pub fn start_with_storage(dir: &Path) -> Result<Registry> {
        if !dir.is_dir() {
            bail!(
                "registry storage directory {} does not exist",
                dir.display()
            );
        }
        let storage = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        Self::spawn(registry_tempdir()?, storage)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The storage driver's root directory.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The registry's log file (stdout and stderr of the process).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The config file the registry was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// The registry process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the filesystem driver keeps the content of blob `digest`
    /// (`sha256:...`); overwrite it to serve a tampered blob.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let prefix = hex.get(..2).unwrap_or(hex);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(prefix)
            .join(hex)
            .join("data")
    }

    /// One HTTP request to this registry; `path` starts with `/`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        http_request(&self.addr, method, path, headers, body)
    }

    /// `GET path` with an `Accept` header listing `accept` (none when empty).
    pub fn get(&self, path: &str, accept: &[&str]) -> Result<HttpResponse> {
        let accept = accept.join(", ");
        let headers: Vec<(&str, &str)> = if accept.is_empty() {
            Vec::new()
        } else {
            vec![("Accept", accept.as_str())]
        };
        self.request("GET", path, &headers, &[])
    }

    /// Fetches a manifest (or index) by tag or digest, accepting every
    /// manifest media type. Fails unless the registry answers 200.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<HttpResponse> {
        let resp = self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            ALL_MANIFEST_MEDIA_TYPES,
        )?;
        resp.expect_status(200, &format!("GET manifest {repo}:{reference}"))?;
        Ok(resp)
    }

    /// Fetches a blob; fails unless the registry answers 200.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let resp = self.get(&format!("/v2/{repo}/blobs/{digest}"), &[])?;
        resp.expect_status(200, &format!("GET blob {repo}@{digest}"))?;
        Ok(resp.body)
    }

    /// The tags of `repo` (`GET /v2/<repo>/tags/list`), sorted.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let resp = self.get(&format!("/v2/{repo}/tags/list"), &[])?;
        resp.expect_status(200, &format!("GET tags of {repo}"))?;
        let v: serde_json::Value = resp.json()?;
        let mut tags: Vec<String> = v
            .get("tags")
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// Whether `repo` has blob `digest` (`HEAD /v2/<repo>/blobs/<digest>`).
    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let resp = self.request("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], &[])?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            s => bail!("HEAD blob {repo}@{digest}: unexpected status {s}"),
        }
    }

    /// Uploads `data` as a blob of `repo` (POST + PUT, monolithic) unless the
    /// repository already has it. Returns its digest (`sha256:...`).
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        if self.has_blob(repo, &digest)? {
            return Ok(digest);
        }
        let resp = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])?;
        resp.expect_status(202, &format!("starting blob upload to {repo}"))?;
        let location = resp
            .header("Location")
            .ok_or_else(|| anyhow!("blob upload to {repo}: 202 without a Location header"))?;
        let mut path = location_path(location);
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("digest=");
        path.push_str(&digest.replace(':', "%3A"));
        let resp = self.request(
            "PUT",
            &path,
            &[("Content-Type", "application/octet-stream")],
            data,
        )?;
        resp.expect_status(201, &format!("uploading blob {digest} to {repo}"))?;
        Ok(digest)
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type: media_type`.
    /// Returns the digest the registry reports (`Docker-Content-Digest`).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String> {
        let resp = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )?;
        resp.expect_status(201, &format!("PUT manifest {repo}:{reference}"))?;
        Ok(resp
            .header("Docker-Content-Digest")
            .map(str::to_owned)
            .unwrap_or_else(|| sha256_digest(body)))
    }

    fn spawn(dir: tempfile::TempDir, storage: PathBuf) -> Result<Registry> {
        let binary = require_binary(REGISTRY_BINARY, REGISTRY_PACKAGE)?;
        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let addr = format!("127.0.0.1:{port}");
            fs::write(&config_path, config_yaml(&storage, &addr)?)
                .with_context(|| format!("writing {}", config_path.display()))?;
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .with_context(|| format!("opening {}", log_path.display()))?;
            let log_err = log.try_clone().context("duplicating the registry log fd")?;
            let mut cmd = Command::new(&binary);
            cmd.arg("serve")
                .arg(&config_path)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err);
            // REGISTRY_* variables override the config file: keep the
            // caller's environment out of it.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(key);
                }
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            match wait_ready(&mut child, &addr, &log_path) {
                Ok(()) => {}
                Err(Startup::AddrInUse) => {
                    // Exited already; reap it and try another port.
                    let _ = child.wait();
                    last_error = Some(anyhow!("port {port} was taken"));
                    continue;
                }
                Err(Startup::Failed(e)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
            let watchdog = match spawn_watchdog(child.id())
                .and_then(|mut w| watch_path(&mut w, dir.path()).map(|()| w))
            {
                Ok(w) => w,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            };
            return Ok(Registry {
                child,
                watchdog: Some(watchdog),
                addr,
                storage,
                dir,
            });
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "{REGISTRY_BINARY} could not bind a free port in {PORT_ATTEMPTS} attempts (log: {})",
                log_path.display()
            )))
    }
}

impl Registry {
    /// Removes `path` also when this registry is never dropped (it lives in
    /// a `static`): the watchdog removes it when the test process ends.
    pub fn remove_on_exit(&mut self, path: &Path) -> Result<()> {
        match self.watchdog.as_mut() {
            Some(w) => watch_path(w, path),
            None => bail!("the registry has no watchdog"),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The watchdog first: once it is gone it cannot kill a recycled pid.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every manifest media type a registry may serve.
pub const ALL_MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Finds `name` in `PATH` (then `/usr/bin`, `/usr/sbin`, `/bin`, `/sbin`), or
/// fails naming the Debian `package` to install.
pub fn require_binary(name: &str, package: &str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var).chain(
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "`{name}` is not installed (not found in PATH nor /usr/bin): install the Debian package \
         {package} (`apt-get install -y {package}`)"
    )
}

fn registry_tempdir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("crius-registry-")
        .tempdir()
        .context("creating the registry tempdir")
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr().context("local_addr")?.port())
}

/// The registry config. `version: 0.1` is the only config version the
/// distribution registry knows; quoted values are JSON strings, which are
/// valid YAML.
fn config_yaml(storage: &Path, addr: &str) -> Result<String> {
    let storage = storage
        .to_str()
        .ok_or_else(|| anyhow!("storage path {} is not UTF-8", storage.display()))?;
    let storage = serde_json::to_string(storage).context("quoting the storage path")?;
    Ok(format!(
        "version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: crius-test-registry
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: \"{addr}\"
  secret: crius-testkit-not-a-secret
"
    ))
}

enum Startup {
    AddrInUse,
    Failed(anyhow::Error),
}

/// Waits until `GET /v2/` answers 200 or the process dies.
fn wait_ready(child: &mut Child, addr: &str, log_path: &Path) -> Result<(), Startup> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = fs::read_to_string(log_path).unwrap_or_default();
                if log.contains("address already in use") {
                    return Err(Startup::AddrInUse);
                }
                return Err(Startup::Failed(anyhow!(
                    "{REGISTRY_BINARY} exited at startup ({status}); log {}:\n{}",
                    log_path.display(),
                    tail(&log, 40)
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(Startup::Failed(anyhow!(e).context("waiting for registry"))),
        }
        if let Ok(resp) = http_request(addr, "GET", "/v2/", &[], &[])
            && resp.status == 200
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            return Err(Startup::Failed(anyhow!(
                "{REGISTRY_BINARY} did not answer GET http://{addr}/v2/ with 200 within {:?}; log {}:\n{}",
                START_TIMEOUT,
                log_path.display(),
                tail(&log, 40)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `/bin/sh` blocked on a pipe only we write to: at EOF (we closed it or we
/// died) it kills `pid`, then removes each path written to it, one per line
/// ([`watch_path`]): a registry that lives in a `static` is never dropped,
/// and its temporary directories must not outlive the test process.
fn spawn_watchdog(pid: u32) -> Result<Child> {
    // The paths are kept in numbered variables and only ever expanded as
    // words, never evaluated.
    let script = r#"n=0
while IFS= read -r p; do n=$((n+1)); eval "p$n=\$p"; done
kill -KILL "$1" 2>/dev/null
i=1
while [ "$i" -le "$n" ]; do eval "rm -rf -- \"\$p$i\""; i=$((i+1)); done"#;
    Command::new("/bin/sh")
        .args(["-c", script, "crius-registry-watchdog", &pid.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the registry watchdog (/bin/sh)")
}

/// Tells `watchdog` to remove `path` when it fires.
fn watch_path(watchdog: &mut Child, path: &Path) -> Result<()> {
    let stdin = watchdog
        .stdin
        .as_mut()
        .ok_or_else(|| anyhow!("the watchdog has no stdin"))?;
    let line = path
        .to_str()
        .filter(|p| !p.contains('\n'))
        .ok_or_else(|| anyhow!("{} cannot be handed to the watchdog", path.display()))?;
    writeln!(stdin, "{line}").context("writing to the registry watchdog")
}

/// The path and query of a `Location` header, which may be absolute
/// (`http://host:port/v2/...`) or relative (`/v2/...`).
fn location_path(location: &str) -> String {
    if let Some(rest) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        }
    } else {
        location.to_owned()
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("parsing JSON body: {}", self.text()))
    }

    /// Fails with the body in the message unless the status is `status`.
    pub fn expect_status(&self, status: u16, what: &str) -> Result<()> {
        if self.status != status {
            bail!(
                "{what}: expected HTTP {status}, got {}: {}",
                self.status,
                self.text()
            );
        }
        Ok(())
    }
}

/// One plain-HTTP/1.1 request to `addr` (`host:port`) on a fresh connection
/// (`Connection: close`). `path` is the request target (`/v2/...?...`).
/// Handles `Content-Length` and chunked responses; no redirects, no TLS.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let sockaddr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr} is not an IP:port address"))?;
    let mut stream = TcpStream::connect_timeout(&sockaddr, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: crius-testkit\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .with_context(|| format!("sending {method} {path} to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response to {method} {path} from {addr}"))?;
    parse_response(&raw, method == "HEAD").with_context(|| format!("{method} http://{addr}{path}"))
}

fn parse_response(raw: &[u8], head: bool) -> Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("truncated HTTP response ({} bytes)", raw.len()))?;
    let head_text = std::str::from_utf8(&raw[..end]).context("non-UTF-8 HTTP header")?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    resp.body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = resp.header("Content-Length") {
        let len: usize = len
            .parse()
            .with_context(|| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            bail!("truncated body: {} of {len} bytes", rest.len());
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_text = std::str::from_utf8(&data[..line_end]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry; a zombie is not "alive" either.
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    #[test]
    fn the_watchdog_kills_and_removes_what_it_was_given_when_its_pipe_closes() -> Result<()> {
        let mut victim = Command::new("sleep").arg("60").spawn()?;
        let tmp = tempfile::tempdir()?;
        let odd = tmp.path().join("with space $(touch x) 'q'");
        let plain = tmp.path().join("plain");
        for d in [&odd, &plain] {
            fs::create_dir(d)?;
            fs::write(d.join("f"), b"x")?;
        }
        let mut watchdog = spawn_watchdog(victim.id())?;
        watch_path(&mut watchdog, &odd)?;
        watch_path(&mut watchdog, &plain)?;
        // The pipe stays open: nothing happens yet.
        std::thread::sleep(Duration::from_millis(100));
        assert!(victim.try_wait()?.is_none() && odd.is_dir());
        drop(watchdog.stdin.take());
        watchdog.wait()?;
        let status = victim.wait()?;
        assert!(!status.success(), "killed: {status}");
        assert!(!odd.exists() && !plain.exists(), "both removed");
        assert!(!tmp.path().join("x").exists(), "a path is never evaluated");
        assert!(tmp.path().is_dir(), "nothing else removed");
        Ok(())
    }

    #[test]
    fn starts_answers_and_is_reaped_on_drop() -> Result<()> {
        let registry = Registry::start()?;
        let addr = registry.addr();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let resp = registry.get("/v2/", &[])?;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            resp.header("Docker-Distribution-Api-Version"),
            Some("registry/2.0")
        );
        let config = fs::read_to_string(registry.config_path())?;
        assert!(config.contains(&addr), "{config}");
        assert!(registry.storage_dir().is_dir());
        let pid = registry.pid();
        let watchdog = registry
            .watchdog
            .as_ref()
            .map(Child::id)
            .expect("a watchdog");
        assert!(alive(pid));
        drop(registry);
        assert!(!alive(pid), "registry {pid} survived drop");
        assert!(!alive(watchdog), "watchdog {watchdog} survived drop");
        assert!(
            http_request(&addr, "GET", "/v2/", &[], &[]).is_err(),
            "something still answers on {addr}"
        );
        Ok(())
    }

    #[test]
    fn push_blob_then_fetch_it() -> Result<()> {
        let registry = Registry::start()?;
        let data = b"hello crius\n".repeat(1000);
        let digest = registry.push_blob("crius-test/blobs", &data)?;
        assert_eq!(digest, sha256_digest(&data));
        assert!(registry.has_blob("crius-test/blobs", &digest)?);
        assert!(!registry.has_blob("crius-test/blobs", &sha256_digest(b"nope"))?);
        assert_eq!(registry.get_blob("crius-test/blobs", &digest)?, data);
        assert_eq!(fs::read(registry.blob_data_path(&digest))?, data);
        // Pushing again is a no-op.
        assert_eq!(registry.push_blob("crius-test/blobs", &data)?, digest);
        Ok(())
    }

    #[test]
    fn serves_an_existing_storage_dir() -> Result<()> {
        let storage = tempfile::tempdir()?;
        let data = b"shared storage".to_vec();
        let digest = {
            let writer = Registry::start_with_storage(storage.path())?;
            writer.push_blob("crius-test/shared", &data)?
        };
        let a = Registry::start_with_storage(storage.path())?;
        let b = Registry::start_with_storage(storage.path())?;
        assert_ne!(a.addr(), b.addr());
        assert_eq!(a.get_blob("crius-test/shared", &digest)?, data);
        assert_eq!(b.get_blob("crius-test/shared", &digest)?, data);
        assert!(storage.path().join("docker").is_dir());
        Ok(())
    }

    #[test]
    fn missing_storage_dir_is_an_error() {
        let err = Registry::start_with_storage(Path::new("/nonexistent/crius-storage"))
            .expect_err("must fail");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn watchdog_kills_the_registry_when_its_owner_goes_away() -> Result<()> {
        let mut registry = Registry::start()?;
        let pid = registry.pid();
        // What happens when the test process dies: the pipe's writer closes.
        let mut watchdog = registry.watchdog.take().expect("a watchdog");
        drop(watchdog.stdin.take());
        watchdog.wait()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            // Reap it ourselves: we are still its parent in this test.
            let _ = registry.child.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "registry {pid} outlived its watchdog");
        Ok(())
    }

    #[test]
    fn missing_binary_names_the_package() {
        let err = require_binary("crius-no-such-program", "crius-no-such-package")
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("crius-no-such-program"), "{msg}");
        assert!(
            msg.contains("apt-get install -y crius-no-such-package"),
            "{msg}"
        );
    }

    #[test]
    fn parses_chunked_and_sized_responses() -> Result<()> {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        let resp = parse_response(raw, false)?;
        assert_eq!(resp.body, b"hello world");
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef";
        let resp = parse_response(raw, false)?;
        assert_eq!((resp.status, resp.body.as_slice()), (404, &b"abc"[..]));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert!(parse_response(raw, true)?.body.is_empty());
        assert_eq!(
            location_path("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=y"),
            "/v2/a/blobs/uploads/x?_state=y"
        );
        assert_eq!(location_path("/v2/a"), "/v2/a");
        Ok(())
    }
}
