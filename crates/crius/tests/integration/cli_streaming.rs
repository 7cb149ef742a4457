//! Issue 12, the CLI's part: the real `crius` binary as a client of
//! criusd's streaming server: `exec -i`, `exec -t` under a
//! pseudo-terminal, `attach`, `port-forward`, `run -i --rm`.

use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use crius_testkit::images as ti;
use nix::sys::signal::{Signal, kill};
use nix::sys::termios::{self, LocalFlags};
use nix::unistd::Pid;

use crate::Env;
use crate::containers::{container, create, pod, start};
use crate::pods::PodEnv;

crate::tests![
    cli_exec_i_passes_stdin_output_and_the_exit_code,
    cli_exec_t_under_a_pseudo_terminal,
    cli_attach_feeds_stdin_and_ends_with_the_exit,
    cli_port_forward_reaches_a_server_in_the_pod,
    cli_run_i_rm_feeds_stdin_and_leaves_nothing,
];

const SLEEPER: &[&str] = &["sh", "-c", "sleep 1000"];
/// The longest any one `crius` may take.
const LIMIT: Duration = Duration::from_secs(60);

/// `crius --endpoint SOCKET ARGS...`.
fn crius(socket: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(crate::CRIUS);
    c.arg("--endpoint").arg(socket).args(args);
    c
}

/// Kills a child still running when dropped, so a hung test leaves no
/// `crius` behind.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd` with `input` as its stdin (then closed); its output, within
/// [`LIMIT`].
async fn with_stdin(mut cmd: Command, input: &[u8]) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(input)?;
    drop(stdin);
    wait_output(child).await
}

/// Waits for `child` (killed after [`LIMIT`]); its output.
async fn wait_output(child: Child) -> anyhow::Result<Output> {
    let pid = Pid::from_raw(i32::try_from(child.id())?);
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(LIMIT, waited).await {
        Ok(out) => Ok(out??),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            anyhow::bail!("crius did not end within {LIMIT:?}")
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn cli_exec_i_passes_stdin_output_and_the_exit_code(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cli-exec-i").await?;
    let socket = p.env.daemon().socket().to_path_buf();
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("app", &p.image, SLEEPER)).await?;
    start(cri, &id).await?;
    let script = "read x; echo got-$x; echo oops >&2; exit 7";
    for transport in ["spdy", "websocket"] {
        let args = [
            "exec",
            "-i",
            "--transport",
            transport,
            &id,
            "--",
            "sh",
            "-c",
            script,
        ];
        let out = with_stdin(crius(&socket, &args), b"hello\n").await?;
        ensure!(out.status.code() == Some(7), "{transport}: {out:?}");
        ensure!(text(&out.stdout) == "got-hello\n", "{transport}: {out:?}");
        ensure!(text(&out.stderr) == "oops\n", "{transport}: {out:?}");
    }
    // Without -i/-t it is ExecSync, as before.
    let out = crius(
        &socket,
        &["exec", &id, "--", "sh", "-c", "echo sync; exit 2"],
    )
    .output()?;
    ensure!(
        out.status.code() == Some(2) && text(&out.stdout) == "sync\n",
        "{out:?}"
    );
    p.env.remove_all_and_check().await
}

async fn cli_exec_t_under_a_pseudo_terminal(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cli-exec-t").await?;
    let socket = p.env.daemon().socket().to_path_buf();
    let cri = &mut p.env.cri;
    let id = create(cri, &p.id, container("app", &p.image, SLEEPER)).await?;
    start(cri, &id).await?;
    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 77,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None)?;
    let before = termios::tcgetattr(&pty.master)?.local_flags;
    ensure!(before.contains(LocalFlags::ICANON | LocalFlags::ECHO));
    // The size may reach the terminal just after the process started.
    let script = "[ -t 0 ] && echo a-tty; for i in $(seq 100); do \
                  s=$(stty size 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != '0 0' ] && break; \
                  sleep 0.05; done; \
                  echo \"size $s\"; exit 3";
    let mut cmd = crius(&socket, &["exec", "-it", &id, "--", "sh", "-c", script]);
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    cmd.stdin(stdio(&pty.slave)?)
        .stdout(stdio(&pty.slave)?)
        .stderr(stdio(&pty.slave)?);
    let mut child = Reaper(Some(cmd.spawn()?));
    // The terminal reads EIO once crius, its only other holder, is gone
    // (the command holds copies of the slave until it is dropped).
    drop(cmd);
    drop(pty.slave);
    let master = std::fs::File::from(pty.master.try_clone()?);
    let reader = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let _ = (&master).read_to_end(&mut out);
        out
    });
    let status = wait_output(child.0.take().context("child")?).await?.status;
    let out = text(&tokio::time::timeout(LIMIT, reader).await??);
    ensure!(status.code() == Some(3), "{status:?}: {out:?}");
    ensure!(out.contains("a-tty"), "{out:?}");
    ensure!(out.contains("size 33 77"), "the size reached it: {out:?}");
    let after = termios::tcgetattr(&pty.master)?.local_flags;
    ensure!(
        after == before,
        "the terminal was restored: {after:?}, was {before:?}"
    );
    p.env.remove_all_and_check().await
}

async fn cli_attach_feeds_stdin_and_ends_with_the_exit(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cli-attach").await?;
    let socket = p.env.daemon().socket().to_path_buf();
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
    let out = with_stdin(crius(&socket, &["attach", &id]), b"attached\n").await?;
    ensure!(out.status.code() == Some(4), "{out:?}");
    ensure!(text(&out.stdout).contains("got-attached"), "{out:?}");
    p.env.remove_all_and_check().await
}

async fn cli_port_forward_reaches_a_server_in_the_pod(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = pod(&env, "cli-pf").await?;
    let socket = p.env.daemon().socket().to_path_buf();
    let cri = &mut p.env.cri;
    let server = ["sh", "-c", "while true; do nc -l -p 8080 -e echo hi; done"];
    let id = create(cri, &p.id, container("web", &p.image, &server)).await?;
    start(cri, &id).await?;
    let mut cmd = crius(&socket, &["port-forward", &p.id, ":8080"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reaper(Some(cmd.spawn()?));
    let running = child.0.as_mut().context("child")?;
    let pid = Pid::from_raw(i32::try_from(running.id())?);
    let stdout = running.stdout.take().context("stdout")?;
    // Only the first line is read: crius goes on forwarding with its
    // stdout closed (as under `| head -1`).
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), first).await???;
    let port = forwarded_port(&line).with_context(|| format!("{line:?}"))?;
    let answers = [answer(port).await, answer(port).await];
    // Ctrl-C ends it, successfully.
    kill(pid, Signal::SIGINT)?;
    let out = wait_output(child.0.take().context("child")?).await?;
    ensure!(
        answers == ["hi\n", "hi\n"],
        "two connections on one session: {answers:?}; {}",
        text(&out.stderr)
    );
    ensure!(out.status.success(), "{out:?}");
    p.env.remove_all_and_check().await
}

/// The local port of `Forwarding from 127.0.0.1:PORT -> 8080`.
fn forwarded_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
    let (port, remote) = rest.split_once(" -> ")?;
    (remote.trim() == "8080").then_some(())?;
    port.parse().ok().filter(|p| *p != 0)
}

/// What a connection to `port` reads, retried while the pod's `nc` is
/// not (yet, again) listening.
async fn answer(port: u16) -> String {
    let mut answer = String::new();
    for _ in 0..50 {
        answer = read_from(port).await.unwrap_or_default();
        if !answer.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answer
}

/// What a connection to 127.0.0.1:`port` reads to its end (5 s at most).
async fn read_from(port: u16) -> anyhow::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    Ok(text(&buf))
}

async fn cli_run_i_rm_feeds_stdin_and_leaves_nothing(env: Arc<Env>) -> anyhow::Result<()> {
    let mut p = PodEnv::start(&env).await?;
    let socket = p.daemon().socket().to_path_buf();
    let image = env.images.reference(ti::BUSYBOX);
    let name = format!("cli-run-i-{}", std::process::id());
    let args = [
        "run",
        "-i",
        "--rm",
        "--name",
        &name,
        &image,
        "sh",
        "-c",
        "read x; echo got-$x; exit 6",
    ];
    let out = with_stdin(crius(&socket, &args), b"piped\n").await?;
    ensure!(out.status.code() == Some(6), "{out:?}");
    ensure!(text(&out.stdout).contains("got-piped"), "{out:?}");
    ensure!(
        crate::pods::list_pods_pub(&mut p.cri).await?.is_empty(),
        "--rm left the pod"
    );
    let logs = PathBuf::from("/var/log/crius/pods").join(&name);
    ensure!(!logs.exists(), "--rm left {}", logs.display());
    p.remove_all_and_check().await
}
