//! Test support: the shared test-image registry, a docker-registry with
//! htpasswd auth, and a scriptable fake HTTP server.

use std::io::Write as _;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use crius_core::Error;
use crius_registry::{Credentials, Fetcher, Platform, RegistryConfig, Resolved, parse_reference};
use crius_testkit::images::TestImages;
use futures::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

/// The test images, started once per test binary (never written to; tests
/// that tamper start their own).
pub fn images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(|| TestImages::start_default().expect("starting the test image registry"))
}

pub fn amd64() -> Platform {
    Platform::new("linux", "amd64", None)
}

pub async fn resolve(config: &RegistryConfig, reference: &str) -> crius_core::Result<Resolved> {
    resolve_with(config, reference, None).await
}

pub async fn resolve_with(
    config: &RegistryConfig,
    reference: &str,
    creds: Option<Credentials>,
) -> crius_core::Result<Resolved> {
    let r = parse_reference(reference)?;
    Fetcher::new(config, &r, creds)?.resolve(&amd64()).await
}

/// Every item of a blob stream: the bytes received and the error that ended
/// it, if any.
pub async fn drain(
    mut stream: impl futures::Stream<Item = crius_core::Result<Bytes>> + Unpin,
) -> (Vec<u8>, Option<Error>) {
    let mut data = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(e) => {
                assert!(stream.next().await.is_none(), "items after the error {e}");
                return (data, Some(e));
            }
        }
    }
    (data, None)
}

/// A port nothing listens on (a moment ago).
pub fn dead_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A `docker-registry` of our own serving an existing storage directory
/// read-only, with htpasswd auth (`AUTH_USER` / `AUTH_PASSWORD`) and/or TLS.
pub struct AuthRegistry {
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    pub addr: String,
    /// With TLS: the CA that signed the registry's certificate (PEM).
    pub ca: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

pub const AUTH_USER: &str = "alice";
pub const AUTH_PASSWORD: &str = "s3cret-pass";

impl AuthRegistry {
    /// htpasswd auth over plain HTTP.
    pub fn start(storage: &Path) -> Result<AuthRegistry> {
        Self::spawn(storage, true, false)
    }

    /// TLS with a certificate for 127.0.0.1 from a fresh CA, no auth.
    pub fn start_tls(storage: &Path) -> Result<AuthRegistry> {
        Self::spawn(storage, false, true)
    }

    fn spawn(storage: &Path, htpasswd: bool, tls: bool) -> Result<AuthRegistry> {
        let binary = crius_testkit::require_binary("docker-registry", "docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("crius-authreg-")
            .tempdir()?;
        let port = dead_port();
        let addr = format!("127.0.0.1:{port}");
        let mut extra = String::new();
        if htpasswd {
            let hash = bcrypt::hash_with_result(AUTH_PASSWORD, 4)?
                .format_for_version(bcrypt::Version::TwoY);
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{AUTH_USER}:{hash}\n"))?;
            extra.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: crius-test\n    path: {file:?}\n"
            ));
        }
        let mut ca = None;
        let mut tls_config = String::new();
        if tls {
            let (ca_pem, cert, key) = make_certificates(dir.path())?;
            ca = Some(ca_pem);
            tls_config = format!("  tls:\n    certificate: {cert:?}\n    key: {key:?}\n");
        }
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage:?}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: \"{addr}\"
  secret: crius-registry-tests
{tls_config}{extra}"
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd.spawn().context("starting docker-registry")?;
        // Kills the registry when this process goes away without dropping us.
        let mut watchdog = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read _ignored; kill -9 {} 2>/dev/null", child.id()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the watchdog")?;
        let stdin = watchdog.stdin.take().context("watchdog stdin")?;
        let mut this = AuthRegistry {
            child,
            watchdog: Some((watchdog, stdin)),
            addr,
            ca,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(&this.addr).is_ok() {
                return Ok(this);
            }
            if let Some(status) = this.child.try_wait()? {
                bail!("docker-registry exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not start on {}", this.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the
/// `openssl` command: (ca.pem, cert.pem, key.pem).
fn make_certificates(
    dir: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let openssl = crius_testkit::require_binary("openssl", "openssl")?;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    ca_args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=crius-test-ca",
    ]);
    run(&ca_args)?;
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend([
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&csr_args)?;
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])?;
    Ok((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        if let Some((mut watchdog, mut stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the fake server received.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

/// What the fake server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, headers and body (a Content-Length is added unless the
    /// headers have one, or `close_delimited`).
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        close_delimited: bool,
    },
    /// Sends the status, headers and `prefix` of the body, then nothing.
    Stall {
        headers: Vec<(String, String)>,
        prefix: Vec<u8>,
    },
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close_delimited: false,
        }
    }

    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(200)
            .header("Content-Type", content_type)
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        match &mut self {
            Reply::Full { headers, .. } | Reply::Stall { headers, .. } => {
                headers.push((name.to_owned(), value.to_owned()))
            }
        }
        self
    }

    pub fn body(mut self, data: impl Into<Vec<u8>>) -> Reply {
        if let Reply::Full { body, .. } = &mut self {
            *body = data.into();
        }
        self
    }

    pub fn close_delimited(mut self) -> Reply {
        if let Reply::Full {
            close_delimited, ..
        } = &mut self
        {
            *close_delimited = true;
        }
        self
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 whose answers
/// come from a (blocking) handler; it records every request.
pub struct FakeServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let requests: Arc<Mutex<Vec<Req>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, handler, recorded).await;
                });
            }
        });
        FakeServer {
            addr,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Req>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await?;
    let req = Req {
        method,
        target,
        headers,
        body,
    };
    recorded.lock().expect("lock").push(req.clone());
    let reply = tokio::task::spawn_blocking(move || handler(&req))
        .await
        .unwrap_or_else(|_| Reply::status(500));
    let mut stream = reader.into_inner();
    let head = |status: u16, headers: &[(String, String)], length: Option<usize>| {
        let mut h = format!("HTTP/1.1 {status} Fake\r\nConnection: close\r\n");
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(n) = length
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            h.push_str(&format!("Content-Length: {n}\r\n"));
        }
        h.push_str("\r\n");
        h
    };
    match reply {
        Reply::Full {
            status,
            headers,
            body,
            close_delimited,
        } => {
            let length = (!close_delimited).then_some(body.len());
            stream
                .write_all(head(status, &headers, length).as_bytes())
                .await?;
            stream.write_all(&body).await?;
            stream.shutdown().await?;
        }
        Reply::Stall { headers, prefix } => {
            stream
                .write_all(head(200, &headers, None).as_bytes())
                .await?;
            stream.write_all(&prefix).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
    }
    Ok(())
}

/// Forwards a request to the real registry at `addr` (GETs only).
pub fn proxy(addr: &str, req: &Req) -> Reply {
    let accept = req.header("accept").unwrap_or("").to_owned();
    let headers: Vec<(&str, &str)> = if accept.is_empty() {
        Vec::new()
    } else {
        vec![("Accept", accept.as_str())]
    };
    match crius_testkit::registry::http_request(addr, &req.method, &req.target, &headers, &[]) {
        Ok(resp) => {
            let mut reply = Reply::status(resp.status).body(resp.body.clone());
            for name in ["Content-Type", "Docker-Content-Digest"] {
                if let Some(v) = resp.header(name) {
                    reply = reply.header(name, v);
                }
            }
            reply
        }
        Err(_) => Reply::status(502),
    }
}
