//! The seam between the streaming server and the runtime: what a cached
//! Exec, Attach or PortForward request says, the client's side of a session
//! whatever its protocol, and what the server asks the runtime to do.
//!
//! The server ([`crate::server`]) owns tokens, HTTP, SPDY and WebSocket; the
//! runtime (crius' pods, over containerd) implements [`Backend`] and never
//! sees a protocol.

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::channel::{ExitStatus, TerminalSize};

/// An Exec the RPC answered with a URL: run `cmd` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// An Attach the RPC answered with a URL: join the container's main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A PortForward the RPC answered with a URL: TCP to ports of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    pub pod_sandbox_id: String,
    /// The ports the request named (a client may name others in its
    /// streams; kubelet lets it).
    pub ports: Vec<u16>,
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// A byte source of the client (its stdin).
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// A byte sink to the client (its stdout or stderr).
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The client's side of an exec or attach, whatever the protocol. A stream
/// the client did not ask for is `None`; with a tty there is no stderr
/// (the terminal merges it into stdout).
pub struct Io {
    /// Ends (EOF) when the client closes its stdin.
    pub stdin: Option<Reader>,
    pub stdout: Option<Writer>,
    pub stderr: Option<Writer>,
    /// Terminal sizes as the client sends them (tty only); the first one
    /// may come before the process starts.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// A TCP connection into a pod, as the backend opened it.
pub type Connection = Pin<Box<dyn AsyncReadWrite>>;

/// A duplex byte stream.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncReadWrite for T {}

/// What the streaming server asks of the runtime.
///
/// Each future may be dropped at any time (the client went away): the
/// implementation must then leave nothing behind (an exec process is
/// killed and reaped, an attach detaches).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs the exec with `io` until the process exits and its output is
    /// drained; how it ended. A process that cannot be started is
    /// [`ExitStatus::Failure`].
    async fn exec(&self, req: ExecRequest, io: Io) -> ExitStatus;

    /// Attaches `io` to the container's main process until the client
    /// detaches (its stdin ends, with `stdin_once`) or the process exits.
    async fn attach(&self, req: AttachRequest, io: Io) -> ExitStatus;

    /// A TCP connection to `port` on the loopback of the pod's network
    /// namespace (no host port, no iptables); the error says why not.
    async fn connect(&self, pod_sandbox_id: &str, port: u16) -> std::io::Result<Connection>;
}
