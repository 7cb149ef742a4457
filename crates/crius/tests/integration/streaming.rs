//! Issue 12: Exec, Attach and PortForward through criusd's streaming
//! server, driven with crius' own client (crius-stream) over SPDY and
//! WebSocket, as kubelet's proxy and kubectl reach it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use crius_cri_api::v1;
use crius_stream::channel::ExitStatus;
use crius_stream::client::{self, ExecOptions, Transport};
use crius_testkit::client::Cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Env;
use crate::containers::{container, create, pod, start};
use crate::pods::{PodEnv, config, run};

crate::tests![
    exec_over_spdy_and_websocket_passes_streams_and_exit_codes,
    exec_with_a_tty_and_a_lost_client,
    port_forward_reaches_a_server_in_the_pod,
    streaming_requests_are_checked_before_a_url,
    attach_with_stdin_once_feeds_the_main_process,
    port_forward_reaches_a_host_network_pod_and_exec_without_stdin,
    exec_over_tls_with_a_self_signed_certificate,
];

const SLEEPER: &[&str] = &["sh", "-c", "sleep 1000"];
/// A PortForward URL for `port` of `pod`.
async fn port_forward_url(cri: &mut Cri, pod: &str, port: u16) -> anyhow::Result<String> {
    let request = v1::PortForwardRequest {
        pod_sandbox_id: pod.into(),
        port: vec![i32::from(port)],
    };
    Ok(cri.runtime.port_forward(request).await?.into_inner().url)
}

/// An HTTP/1.0 request: the server answers and closes.
const HTTP_GET: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

async fn exec_url(cri: &mut Cri, id: &str, cmd: &[&str], tty: bool) -> anyhow::Result<String> {
    let url = cri
        .runtime
        .exec(v1::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin: true,
            stdout: true,
            stderr: !tty,
        })
        .await?
        .into_inner()
        .url;
    ensure!(
        url.starts_with("http://127.0.0.1:") && url.contains("/exec/"),
        "{url}"
    );
    Ok(url)
}

async fn read_all(r: Option<crius_stream::backend::Reader>) -> anyhow::Result<String> {
    let mut out = Vec::new();
    if let Some(mut r) = r {
        tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut out)).await??;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn exec_over_spdy_and_websocket_passes_streams_and_exit_codes(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = pod(&env, "stream-exec").await?;
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("app", &p.image, SLEEPER)).await?;
    start(cri, &id).await?;
    let script = ["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 3"];
    let options = ExecOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = exec_url(cri, &id, &script, false).await?;
        let mut s = client::exec(&url, options, transport).await?;
        let mut stdin = s.stdin.take().context("stdin")?;
        stdin.write_all(b"hello\n").await?;
        stdin.shutdown().await?;
        let (out, err) = tokio::join!(read_all(s.stdout.take()), read_all(s.stderr.take()));
        let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
        ensure!(out? == "got-hello\n", "{transport:?} stdout");
        ensure!(err? == "oops\n", "{transport:?} stderr");
        ensure!(
            matches!(status, ExitStatus::ExitCode { code: 3, .. }),
            "{transport:?}: {status:?}"
        );
        // A token is good for one session.
        let again = client::exec(&url, options, transport).await;
        ensure!(again.is_err(), "{transport:?}: a token was used twice");
    }
    let url = exec_url(cri, &id, &["true"], false).await?;
    let s = client::exec(&url, options, Transport::Spdy).await?;
    let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
    ensure!(status == ExitStatus::Success, "{status:?}");
    p.env.remove_all_and_check().await
}

async fn exec_with_a_tty_and_a_lost_client(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stream-tty").await?;
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("app", &p.image, SLEEPER)).await?;
    start(cri, &id).await?;
    let options = ExecOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    // The size may arrive just after the process started: it polls.
    let script = "[ -t 0 ] && echo a-tty; for i in $(seq 100); do \
                  s=$(stty size 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != '0 0' ] && break; \
                  sleep 0.05; done; echo \"size $s\"";
    let url = exec_url(cri, &id, &["sh", "-c", script], true).await?;
    let mut s = client::exec(&url, options, Transport::Spdy).await?;
    if let Some(resize) = &s.resize {
        resize
            .send(crius_stream::channel::TerminalSize {
                width: 123,
                height: 45,
            })
            .await?;
    }
    let out = read_all(s.stdout.take()).await?;
    let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
    ensure!(out.contains("a-tty"), "{out:?}");
    ensure!(
        out.contains("size 45 123"),
        "the resize reached the terminal: {out:?}"
    );
    ensure!(status == ExitStatus::Success, "{status:?}");

    // A client that goes away mid-exec: the exec process is killed soon after.
    let marker = "crius-lost-client-marker";
    // The shell is the exec process (the marker is in its command line).
    let cmd = ["sh", "-c", &format!("while :; do sleep 1; done # {marker}")];
    let url = exec_url(cri, &id, &cmd, true).await?;
    let s = client::exec(&url, options, Transport::WebSocket).await?;
    let found = wait_for_process(marker, true).await;
    ensure!(found, "the exec process never ran");
    drop(s);
    if !wait_for_process(marker, false).await {
        let log = p.env.daemon.as_ref().map(|d| d.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("exec")).collect();
        bail!(
            "the exec process outlived its client; criusd said:\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
    p.env.remove_all_and_check().await
}

/// Waits up to 10 s for a process whose command line holds `marker` to be
/// there (`present`) or gone.
async fn wait_for_process(marker: &str, present: bool) -> bool {
    for _ in 0..200 {
        let seen = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(marker))
                    .unwrap_or(false)
            });
        if seen == present {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn port_forward_reaches_a_server_in_the_pod(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stream-pf").await?;
    let cri = &mut p.env.cri;
    // An HTTP server on the pod's port 8080 (busybox httpd).
    let server = [
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo hello-from-the-pod > /tmp/www/index.html && \
         exec httpd -f -p 8080 -h /tmp/www",
    ];
    let id = create(cri, &p.id, container("web", &p.image, &server)).await?;
    start(cri, &id).await?;
    let url = port_forward_url(cri, &p.id, 8080).await?;
    ensure!(url.contains("/portforward/"), "{url}");
    let forwarder = client::PortForwarder::open(&url).await?;
    let mut answer = String::new();
    for _ in 0..50 {
        let mut conn = forwarder.connect(8080).await?;
        let _ = conn.write_all(HTTP_GET).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        answer = String::from_utf8_lossy(&buf).into_owned();
        if answer.contains("hello-from-the-pod") {
            break;
        }
        // httpd not listening yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        answer.starts_with("HTTP/1.")
            && answer.contains(" 200 ")
            && answer.contains("hello-from-the-pod"),
        "{answer:?}"
    );
    // The same over WebSocket, with a URL of its own.
    let url = port_forward_url(cri, &p.id, 8080).await?;
    let mut ws = client::port_forward_ws(&url, 8080, None).await?;
    ws.write_all(HTTP_GET).await?;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 256];
        while !String::from_utf8_lossy(&buf).contains("hello-from-the-pod") {
            match ws.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    ensure!(
        String::from_utf8_lossy(&buf).contains("hello-from-the-pod"),
        "over WebSocket: {buf:?}"
    );
    drop(ws);
    // Nobody listens on 9: the error stream says so.
    let mut closed = forwarder.connect(9).await?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), closed.read_to_end(&mut buf)).await;
    let error = tokio::time::timeout(Duration::from_secs(5), closed.error()).await??;
    ensure!(
        error
            .as_deref()
            .is_some_and(|e| e.contains('9') && e.contains("refused")),
        "{error:?}"
    );
    drop(forwarder);
    p.env.remove_all_and_check().await
}

async fn streaming_requests_are_checked_before_a_url(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stream-bad").await?;
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("app", &p.image, SLEEPER)).await?;
    let code = |r: Result<tonic::Response<v1::ExecResponse>, tonic::Status>| {
        r.map(|_| tonic::Code::Ok).unwrap_or_else(|s| s.code())
    };
    let exec = |id: &str, tty: bool, stderr: bool, cmd: &[&str]| v1::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: false,
        stdout: true,
        stderr,
    };
    // Created, not running.
    let r = cri.runtime.exec(exec(&id, false, true, &["true"])).await;
    ensure!(
        code(r) == tonic::Code::FailedPrecondition,
        "exec of a created container"
    );
    start(cri, &id).await?;
    for (req, want) in [
        (
            exec(&id, true, true, &["true"]),
            tonic::Code::InvalidArgument,
        ),
        (exec(&id, false, true, &[]), tonic::Code::InvalidArgument),
        (
            exec("no-such-container", false, true, &["true"]),
            tonic::Code::NotFound,
        ),
        (exec(&id, false, true, &["true"]), tonic::Code::Ok),
    ] {
        let got = code(cri.runtime.exec(req.clone()).await);
        ensure!(got == want, "{req:?}: {got:?}, want {want:?}");
    }
    let pf = cri
        .runtime
        .port_forward(v1::PortForwardRequest {
            pod_sandbox_id: "no-such-pod".into(),
            port: vec![80],
        })
        .await;
    ensure!(
        pf.as_ref().err().map(|s| s.code()) == Some(tonic::Code::NotFound),
        "{pf:?}"
    );
    let pf = cri
        .runtime
        .port_forward(v1::PortForwardRequest {
            pod_sandbox_id: p.id.clone(),
            port: vec![70000],
        })
        .await;
    ensure!(
        pf.as_ref().err().map(|s| s.code()) == Some(tonic::Code::InvalidArgument),
        "{pf:?}"
    );
    p.env.remove_all_and_check().await
}

async fn attach_with_stdin_once_feeds_the_main_process(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "stream-attach").await?;
    let cri = &mut p.env.cri;
    let mut c = container(
        "reader",
        &p.image,
        &["sh", "-c", "read x; echo got-$x; exit 4"],
    );
    c.stdin = true;
    c.stdin_once = true;
    let id = create(cri, &p.id, c).await?;
    start(cri, &id).await?;
    let url = cri
        .runtime
        .attach(v1::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await?
        .into_inner()
        .url;
    ensure!(url.contains("/attach/"), "{url}");
    let options = ExecOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut s = client::exec(&url, options, Transport::Spdy).await?;
    let mut stdin = s.stdin.take().context("stdin")?;
    stdin.write_all(b"attached\n").await?;
    stdin.shutdown().await?;
    let out = read_all(s.stdout.take()).await?;
    let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
    ensure!(out.contains("got-attached"), "{out:?}");
    ensure!(
        matches!(status, ExitStatus::ExitCode { code: 4, .. }),
        "the attach ends with the container's exit: {status:?}"
    );
    // The CRI log got the output too.
    let log = std::fs::read_to_string(p.logs.path().join("reader.log")).unwrap_or_default();
    ensure!(log.contains("got-attached"), "{log:?}");
    p.env.remove_all_and_check().await
}

async fn port_forward_reaches_a_host_network_pod_and_exec_without_stdin(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let c = crate::runtimes::host_network(config("stream-hostnet"));
    let pod_id = run(&mut p.cri, c).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    // A free port of the host, which is the pod's.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let serve = format!("while true; do nc -l -p {port} -e echo hello-from-the-host-net; done");
    let id = create(
        &mut p.cri,
        &pod_id,
        container("web", &image, &["sh", "-c", &serve]),
    )
    .await?;
    start(&mut p.cri, &id).await?;
    // An exec with stdout only (no stdin, no stderr).
    let url = p
        .cri
        .runtime
        .exec(v1::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["echo".into(), "only-out".into()],
            stdout: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    let options = ExecOptions {
        stdout: true,
        ..Default::default()
    };
    let mut s = client::exec(&url, options, Transport::WebSocket).await?;
    ensure!(
        s.stdin.is_none() && s.stderr.is_none(),
        "streams not asked for"
    );
    let out = read_all(s.stdout.take()).await?;
    let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
    ensure!(
        out == "only-out\n" && status == ExitStatus::Success,
        "{out:?} {status:?}"
    );

    let url = port_forward_url(&mut p.cri, &pod_id, port).await?;
    let forwarder = client::PortForwarder::open(&url).await?;
    let mut answer = String::new();
    for _ in 0..50 {
        let mut conn = forwarder.connect(port).await?;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
        answer = String::from_utf8_lossy(&buf).into_owned();
        if answer.contains("hello-from-the-host-net") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(answer.contains("hello-from-the-host-net"), "{answer:?}");
    drop(forwarder);
    p.remove_all_and_check().await
}

async fn exec_over_tls_with_a_self_signed_certificate(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start_with(&env, None, "", "[streaming]\ntls = true\n").await?;
    let pod_id = run(&mut p.cri, config("stream-tls")).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let id = create(&mut p.cri, &pod_id, container("app", &image, SLEEPER)).await?;
    start(&mut p.cri, &id).await?;
    let exec = v1::ExecRequest {
        container_id: id.clone(),
        cmd: vec!["sh".into(), "-c".into(), "echo over-tls; exit 2".into()],
        stdout: true,
        ..Default::default()
    };
    let url = p.cri.runtime.exec(exec.clone()).await?.into_inner().url;
    ensure!(url.starts_with("https://"), "{url}");
    let options = ExecOptions {
        stdout: true,
        ..Default::default()
    };
    // A plain client is told the URL needs TLS; one that skips the check
    // of the self-signed certificate (as crictl does) runs the exec.
    ensure!(
        client::exec(&url, options, Transport::Spdy).await.is_err(),
        "plain on https"
    );
    let url = p.cri.runtime.exec(exec).await?.into_inner().url;
    let tls = crius_stream::tls::ClientTls::insecure()?;
    let mut s = client::exec_tls(&url, options, Transport::Spdy, &tls).await?;
    let out = read_all(s.stdout.take()).await?;
    let status = tokio::time::timeout(Duration::from_secs(20), s.wait()).await??;
    ensure!(out == "over-tls\n", "{out:?}");
    ensure!(
        matches!(status, ExitStatus::ExitCode { code: 2, .. }),
        "{status:?}"
    );
    p.remove_all_and_check().await
}
