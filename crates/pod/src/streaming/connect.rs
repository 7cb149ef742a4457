//! PortForward's connections: TCP to the loopback of a pod's network
//! namespace, opened from a dedicated short-lived thread that enters the
//! namespace (`setns` changes the calling thread, so never a tokio worker)
//! and exits once the socket exists; the socket stays in the namespace it
//! was made in.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_stream::backend::Connection;
use nix::sched::CloneFlags;

use super::Streams;

/// How long a connect may take (a pod's loopback answers at once or not
/// at all; the bound is for a namespace in a bad state).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Streams {
    /// A connection to `port` on the pod's loopback (see the module docs).
    pub(super) async fn connect_to(&self, pod: &str, port: u16) -> io::Result<Connection> {
        let netns = self.netns_of(pod)?;
        let stream = match netns {
            Some(path) => connect_in_netns(path, port).await,
            // Host network: the host's loopback is the pod's.
            None => connect_here(port).await,
        }
        .map_err(|e| io::Error::new(e.kind(), format!("pod {pod}: {e}")))?;
        Ok(Box::pin(stream))
    }

    /// The pod's pinned network namespace; `None` with host network.
    fn netns_of(&self, pod: &str) -> io::Result<Option<PathBuf>> {
        let sandbox = self
            .ctx
            .store
            .find(pod)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("pod sandbox {pod} not found"),
                )
            })?;
        Ok(sandbox.meta.netns.as_ref().map(PathBuf::from))
    }
}

/// Connects to `port` on the loopback inside the network namespace at
/// `netns` (127.0.0.1, then ::1), from a thread of its own.
pub async fn connect_in_netns(netns: PathBuf, port: u16) -> io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crius-netns-connect".into())
        .spawn(move || {
            let _ = tx.send(enter_and_connect(&netns, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the connecting thread died"))??;
    to_tokio(stream)
}

/// On the calling (dedicated) thread: enters `netns` and connects.
fn enter_and_connect(netns: &Path, port: u16) -> io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening network namespace {}: {e}", netns.display()),
        )
    })?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("entering network namespace {}: {e}", netns.display()),
        )
    })?;
    connect_loopback(port)
}

/// 127.0.0.1:`port`, else [::1]:`port`; the IPv4 error when both fail.
fn connect_loopback(port: u16) -> io::Result<std::net::TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| {
                let why = match e4.kind() {
                    io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                    _ => e4.to_string(),
                };
                io::Error::new(
                    e4.kind(),
                    format!("{why} to port {port} on the pod's loopback"),
                )
            })
        }
    }
}

/// Host network: the loopback of crius' own namespace (a blocking connect
/// off the async workers, but no namespace change).
async fn connect_here(port: u16) -> io::Result<tokio::net::TcpStream> {
    let stream = tokio::task::spawn_blocking(move || connect_loopback(port))
        .await
        .map_err(io::Error::other)??;
    to_tokio(stream)
}

fn to_tokio(stream: std::net::TcpStream) -> io::Result<tokio::net::TcpStream> {
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}
