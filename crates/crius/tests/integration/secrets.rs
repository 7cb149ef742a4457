//! Issue 11: registry secrets reach the registry and nothing else: not
//! `Status`, not `criusd config check`, not criusd's (debug) log; issue 18:
//! not any file crius writes (its state and root directories) nor
//! containerd's metadata, where crius' records go.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, ensure};
use crius_cri_api::v1;
use crius_testkit::client;
use crius_testkit::criusd::Criusd;

use crate::{CRIUSD, Env};

crate::tests![registry_secrets_stay_out_of_status_config_check_and_log];

const CONFIG_PASSWORD: &str = "cfg-pw-7f3a91";
const REQUEST_PASSWORD: &str = "req-pw-2c8e44";
const AUTH_PASSWORD: &str = "auth-pw-5d1b07";

async fn registry_secrets_stay_out_of_status_config_check_and_log(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let registry = Refuser::start()?;
    let mut opts = env.options();
    opts.namespace = format!("crius-test-{}-secrets", std::process::id());
    opts.extra_config.push_str(&format!(
        "[images.auths.{:?}]\nusername = \"carol\"\npassword = {CONFIG_PASSWORD:?}\n",
        registry.addr
    ));
    let daemon = Criusd::start(&opts)?;
    daemon
        .wait_runtime_ready(std::time::Duration::from_secs(30))
        .await?;
    let mut cri = client::connect(daemon.socket()).await?;
    status_redacts(&mut cri).await?;
    config_check_redacts(&daemon)?;

    // Request credentials (user and password, then `auth`), then the
    // config's: each reaches the registry, which refuses it.
    let image = format!("{}/crius-test/busybox:latest", registry.addr);
    let by_password = v1::AuthConfig {
        username: "alice".into(),
        password: REQUEST_PASSWORD.into(),
        ..Default::default()
    };
    let by_auth = v1::AuthConfig {
        auth: base64(&format!("bob:{AUTH_PASSWORD}")),
        ..Default::default()
    };
    for auth in [Some(by_password), Some(by_auth), None] {
        let err = pull(&mut cri, &image, auth)
            .await
            .expect_err("the registry refuses everyone");
        ensure!(err.code() == tonic::Code::Unauthenticated, "{err:?}");
        ensure!(!has_secret(err.message()), "{err:?}");
    }
    let seen = registry.authorizations();
    for (user, password) in [
        ("alice", REQUEST_PASSWORD),
        ("bob", AUTH_PASSWORD),
        ("carol", CONFIG_PASSWORD),
    ] {
        let sent = format!("Basic {}", base64(&format!("{user}:{password}")));
        ensure!(
            seen.contains(&sent),
            "{user}'s credentials never sent: {seen:?}"
        );
    }
    let log = daemon.log();
    ensure!(
        log.contains("PullImage"),
        "no debug log of the pulls: {log}"
    );
    ensure!(!has_secret(&log), "a secret in criusd's log:\n{log}");
    // A pod (host network: this daemon has no CNI config) and a container
    // of an image from the real test registry, so that crius writes state.
    let mut pod = crate::pinned::pinned_config("secrets");
    if let Some(ns) = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = v1::NamespaceMode::Node as i32;
    }
    if let Some(l) = pod.linux.as_mut() {
        l.sysctls.clear();
    }
    let logs = tempfile::tempdir_in(daemon.dir())?;
    pod.log_directory = logs.path().display().to_string();
    let pod = crate::pods::run(&mut cri, pod).await?;
    let busybox = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut cri, &busybox).await?;
    let c = crate::containers::container("c", &busybox, &["echo", "hello"]);
    let id = crate::containers::create(&mut cri, &pod, c).await?;
    crate::containers::start(&mut cri, &id).await?;
    crate::containers::wait_exited(&mut cri, &id).await?;
    // Every file crius wrote, but the operator's own config file.
    let config = daemon.dir().join("config.toml");
    // The check sees a secret where one is: in the operator's file.
    ensure!(has_secret(&std::fs::read_to_string(&config)?));
    let mut files = files_under(daemon.dir());
    files.retain(|f| *f != config);
    ensure!(files.len() > 3, "too few files to look at: {files:?}");
    // containerd's metadata holds crius' records (images, leases, pods).
    files.extend(files_under(
        &env.containerd.root().join("io.containerd.metadata.v1.bolt"),
    ));
    ensure!(
        files.iter().any(|f| f.ends_with("meta.db")),
        "no meta.db in {files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        ensure!(
            !has_secret(&String::from_utf8_lossy(&bytes)),
            "a secret in {}",
            file.display()
        );
    }
    cri.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    Ok(())
}

/// Every regular file below `dir` (no symlink followed).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

async fn status_redacts(cri: &mut crius_testkit::client::Cri) -> anyhow::Result<()> {
    let s = cri
        .runtime
        .status(v1::StatusRequest { verbose: true })
        .await?
        .into_inner();
    for (key, value) in &s.info {
        ensure!(!has_secret(value), "a secret in Status info {key}: {value}");
    }
    let config: serde_json::Value =
        serde_json::from_str(s.info.get("config").context("no config in Status info")?)?;
    let auths = &config["images"]["auths"];
    let auth = auths
        .as_object()
        .and_then(|a| a.values().next())
        .with_context(|| format!("no auths in {config}"))?;
    ensure!(
        auth["username"] == "carol" && auth["password"] == "<redacted>",
        "{auth}"
    );
    Ok(())
}

fn config_check_redacts(daemon: &Criusd) -> anyhow::Result<()> {
    let out = Command::new(CRIUSD)
        .arg("--config")
        .arg(daemon.dir().join("config.toml"))
        .args(["config", "check"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "config check: {out:?}");
    ensure!(!has_secret(&stdout), "a secret in config check:\n{stdout}");
    ensure!(
        stdout.contains("password = \"<redacted>\""),
        "config check:\n{stdout}"
    );
    Ok(())
}

/// Whether `text` holds any of the passwords, plain or in a Basic header.
fn has_secret(text: &str) -> bool {
    [
        ("alice", REQUEST_PASSWORD),
        ("bob", AUTH_PASSWORD),
        ("carol", CONFIG_PASSWORD),
    ]
    .iter()
    .any(|(user, password)| {
        text.contains(password) || text.contains(&base64(&format!("{user}:{password}")))
    })
}

async fn pull(
    cri: &mut crius_testkit::client::Cri,
    image: &str,
    auth: Option<v1::AuthConfig>,
) -> Result<String, tonic::Status> {
    cri.image
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// A registry that answers every request with a Basic challenge and keeps
/// the `Authorization` headers it was sent.
struct Refuser {
    addr: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Refuser {
    fn start() -> anyhow::Result<Refuser> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        // The thread ends with the test binary.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = refuse(stream, &keep);
            }
        });
        Ok(Refuser { addr, seen })
    }

    fn authorizations(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Reads one request's head and answers 401 with a Basic challenge.
fn refuse(stream: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line != "\r\n" {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
            && let Ok(mut s) = seen.lock()
        {
            s.push(value.trim().to_string());
        }
        line.clear();
    }
    (&stream).write_all(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"crius-test\"\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
}

/// Standard base64 with padding.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
