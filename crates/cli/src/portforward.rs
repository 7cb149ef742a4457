//! `crius port-forward POD [LOCAL:]REMOTE...`, as kubectl's: a listener on
//! 127.0.0.1 per spec, one PortForward session for all of them, each
//! accepted connection a new stream pair of that session, copied both
//! ways; until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, bail};
use crius_cri_api::v1;
use crius_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use crius_stream::client::{Forwarded, PortForwarder};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::client;

/// One `[LOCAL:]REMOTE`: the local port (0: a free one) and the pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: u16,
}

/// Parses `REMOTE` (the same port locally), `LOCAL:REMOTE`, or `:REMOTE`
/// and `0:REMOTE` (a free local port), as kubectl does.
pub fn parse_port_spec(spec: &str) -> anyhow::Result<PortSpec> {
    let bad = || anyhow::anyhow!("a port is [LOCAL:]REMOTE, not {spec:?}");
    let (local, remote) = match spec.split_once(':') {
        Some(("", remote)) => ("0", remote),
        Some((local, remote)) => (local, remote),
        None => (spec, spec),
    };
    let remote: u16 = remote.parse().map_err(|_| bad())?;
    let local: u16 = local.parse().map_err(|_| bad())?;
    if remote == 0 {
        bail!("the pod's port in {spec:?} must not be 0");
    }
    Ok(PortSpec { local, remote })
}

/// The session every connection opens its streams on; reopened (a new
/// URL) when the server has ended it.
struct Session {
    runtime: RuntimeServiceClient<Channel>,
    pod: String,
    ports: Vec<u16>,
    current: Mutex<Option<Arc<PortForwarder>>>,
}

impl Session {
    /// Asks criusd for a URL and upgrades it.
    async fn open(&self) -> anyhow::Result<Arc<PortForwarder>> {
        let url = self
            .runtime
            .clone()
            .port_forward(v1::PortForwardRequest {
                pod_sandbox_id: self.pod.clone(),
                port: self.ports.iter().map(|p| i32::from(*p)).collect(),
            })
            .await
            .context("PortForward")?
            .into_inner()
            .url;
        let forwarder = PortForwarder::open(&url)
            .await
            .context("opening the port-forward session")?;
        Ok(Arc::new(forwarder))
    }

    /// A new connection to `port`, on the current session or, if that
    /// is gone, on a new one.
    async fn connect(&self, port: u16) -> anyhow::Result<Forwarded> {
        let mut current = self.current.lock().await;
        if let Some(f) = current.as_ref()
            && let Ok(conn) = f.connect(port).await
        {
            return Ok(conn);
        }
        let fresh = self.open().await?;
        let conn = fresh.connect(port).await.context("opening a stream")?;
        *current = Some(fresh);
        Ok(conn)
    }
}

/// Runs `crius port-forward` until Ctrl-C.
pub async fn port_forward(cri: &client::Cri, pod: &str, specs: &[String]) -> anyhow::Result<()> {
    let specs = specs
        .iter()
        .map(|s| parse_port_spec(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let session = Arc::new(Session {
        runtime: cri.runtime.clone(),
        pod: pod.to_string(),
        ports: specs.iter().map(|s| s.remote).collect(),
        current: Mutex::new(None),
    });
    // The pod and ports are checked (and the session opened) before
    // anything listens.
    *session.current.lock().await = Some(session.open().await?);
    let mut listeners = JoinSet::new();
    for spec in specs {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, spec.local));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        say(format_args!("Forwarding from {local} -> {}", spec.remote));
        listeners.spawn(accept_loop(listener, spec.remote, session.clone()));
    }
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        Some(ended) = listeners.join_next() => ended??,
    }
    Ok(())
}

/// Prints a line of progress; a closed stdout (`| head -1`) does not
/// stop the forwarding.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Accepts connections on `listener`, each forwarded to `remote`.
async fn accept_loop(
    listener: TcpListener,
    remote: u16,
    session: Arc<Session>,
) -> anyhow::Result<()> {
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = listener.accept().await.context("accepting")?;
        say(format_args!("Handling connection for {remote}"));
        let session = session.clone();
        conns.spawn(async move {
            if let Err(e) = forward(tcp, remote, &session).await {
                eprintln!("crius: {peer} -> {remote}: {e:#}");
            }
        });
        // Reap the finished ones.
        while conns.try_join_next().is_some() {}
    }
}

/// Copies one local connection both ways, then reports what the server
/// said went wrong, if anything.
async fn forward(mut tcp: TcpStream, remote: u16, session: &Session) -> anyhow::Result<()> {
    let mut conn = session.connect(remote).await?;
    let copied = tokio::io::copy_bidirectional(&mut tcp, &mut conn).await;
    if let Ok(Some(error)) = conn.error().await {
        bail!("{error}");
    }
    copied.context("copying")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        let spec = |local, remote| PortSpec { local, remote };
        for (s, want) in [
            ("8080", spec(8080, 8080)),
            ("9000:80", spec(9000, 80)),
            (":80", spec(0, 80)),
            ("0:80", spec(0, 80)),
            ("65535:1", spec(65535, 1)),
        ] {
            assert_eq!(parse_port_spec(s).expect(s), want, "{s}");
        }
        for bad in [
            "", ":", "0", "80:", "80:0", "a:80", "80:b", "70000:80", "1:2:3", "-1:80",
        ] {
            assert!(parse_port_spec(bad).is_err(), "{bad:?}");
        }
    }
}
