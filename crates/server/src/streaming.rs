//! Exec, Attach and PortForward: the CRI requests as the streaming
//! server's cached requests (checked by `crius_core::streaming` first),
//! and the pods as the streaming server's [`Backend`] (reached through the
//! state, as they exist only once containerd answered).

use std::sync::Arc;

use crius_core::streaming::{check_command, check_streams, tcp_ports};
use crius_core::{Error, Result};
use crius_cri_api::v1;
use crius_stream::backend::{
    AttachRequest, Backend, Connection, ExecRequest, Io, PortForwardRequest, Request,
};
use crius_stream::channel::ExitStatus;

use crate::state::{State, StreamUrls};

/// The streaming server's URLs, as the RPCs hand them out.
impl StreamUrls for crius_stream::server::Urls {
    fn url(&self, request: Request) -> Result<String> {
        crius_stream::server::Urls::url(self, &request)
            .map_err(|e| Error::Unavailable(format!("no streaming URL: {e}")))
    }
}

/// The pods behind the streaming server.
pub struct PodsBackend(pub Arc<State>);

impl PodsBackend {
    fn streams(&self) -> Result<crius_pod::streaming::Streams> {
        Ok(self.0.backend()?.pods.streams())
    }
}

#[crius_stream::async_trait]
impl Backend for PodsBackend {
    async fn exec(&self, req: ExecRequest, io: Io) -> ExitStatus {
        match self.streams() {
            Ok(s) => s.exec(req, io).await,
            Err(e) => crius_pod::streaming::failure(&e),
        }
    }

    async fn attach(&self, req: AttachRequest, io: Io) -> ExitStatus {
        match self.streams() {
            Ok(s) => s.attach(req, io).await,
            Err(e) => crius_pod::streaming::failure(&e),
        }
    }

    async fn connect(&self, pod_sandbox_id: &str, port: u16) -> std::io::Result<Connection> {
        let streams = self.streams().map_err(std::io::Error::other)?;
        streams.connect(pod_sandbox_id, port).await
    }
}

/// An Exec as the streaming server keeps it.
pub(crate) fn exec_request(req: v1::ExecRequest) -> Result<Request> {
    check_streams(
        &req.container_id,
        req.tty,
        req.stdin,
        req.stdout,
        req.stderr,
    )?;
    check_command(&req.cmd)?;
    Ok(Request::Exec(ExecRequest {
        container_id: req.container_id,
        cmd: req.cmd,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    }))
}

/// An Attach as the streaming server keeps it.
pub(crate) fn attach_request(req: v1::AttachRequest) -> Result<Request> {
    check_streams(
        &req.container_id,
        req.tty,
        req.stdin,
        req.stdout,
        req.stderr,
    )?;
    Ok(Request::Attach(AttachRequest {
        container_id: req.container_id,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    }))
}

/// A PortForward as the streaming server keeps it.
pub(crate) fn port_forward_request(req: v1::PortForwardRequest) -> Result<Request> {
    let ports = tcp_ports(&req.pod_sandbox_id, &req.port)?;
    Ok(Request::PortForward(PortForwardRequest {
        pod_sandbox_id: req.pod_sandbox_id,
        ports,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_what_the_client_asked_for() {
        let exec = v1::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        };
        match exec_request(exec) {
            Ok(Request::Exec(e)) => {
                assert!(e.tty && e.stdin && e.stdout && !e.stderr && e.cmd == ["sh"])
            }
            other => panic!("{other:?}"),
        }
        let pf = v1::PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![8080],
        };
        assert!(
            matches!(port_forward_request(pf), Ok(Request::PortForward(p)) if p.ports == [8080])
        );
        let bad = v1::AttachRequest {
            container_id: "c".into(),
            tty: true,
            stderr: true,
            ..Default::default()
        };
        assert!(attach_request(bad).is_err());
    }
}
