//! Port-forward sessions. Over SPDY the client opens a data and an error
//! stream per connection, paired by `requestID`; each complete pair gets
//! a connection from the backend and bytes are copied both ways until
//! both sides end (a failed connect is reported on the error stream).
//! Over WebSocket the ports come from the query, each with a data and an
//! error channel, every channel opening with the port.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Ctx;
use crate::backend::{Backend, Connection, PortForwardRequest};
use crate::channel::portforward::{
    PortStream, PortStreamType, ws_channel_port, ws_channels, ws_port_prefix,
};
use crate::channel::wire::ChannelMessage;
use crate::spdy::{Role, RstStatus, Session, Stream};
use crate::upgrade::WsProtocol;
use crate::ws::{WsChannels, WsReceiver};
use crate::wsio::{self, Out};

/// A pair being opened: when its first stream came, and its streams.
struct Pending {
    since: Instant,
    port: u16,
    data: Option<Stream>,
    error: Option<Stream>,
}

/// What kubelet says when a port cannot be reached.
fn forward_error(port: u16, pod: &str, e: &std::io::Error) -> String {
    format!("error forwarding port {port} to pod {pod}: {e}")
}

/// Port-forward over SPDY: pairs are served concurrently until the
/// session ends.
pub(super) async fn spdy<T>(ctx: &Arc<Ctx>, io: T, request: PortForwardRequest)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let session = Session::spawn(io, Role::Server, ctx.config.spdy.clone());
    let timeout = ctx.config.stream_creation_timeout;
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut pairs = JoinSet::new();
    loop {
        while pairs.try_join_next().is_some() {}
        pending.retain(|id, p| {
            let fresh = p.since.elapsed() < timeout;
            if !fresh {
                tracing::info!(request = %id, "port-forward: a stream pair was not completed in time");
            }
            fresh
        });
        let stream = match tokio::time::timeout(timeout, session.accept()).await {
            Ok(Some(stream)) => stream,
            Ok(None) => break,
            Err(_) => continue,
        };
        if let Some((port, data, error)) = pair_up(&mut pending, stream) {
            let backend = ctx.backend.clone();
            let pod = request.pod_sandbox_id.clone();
            pairs.spawn(async move { forward(&*backend, &pod, port, data, error).await });
        }
    }
    while pairs.join_next().await.is_some() {}
    session.close();
}

/// Files `stream` under its request id; answers the pair once complete.
fn pair_up(
    pending: &mut HashMap<String, Pending>,
    mut stream: Stream,
) -> Option<(u16, Stream, Stream)> {
    let info = match PortStream::from_headers(stream.headers(), stream.id()) {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "port-forward: stream refused");
            stream.send.reset(RstStatus::PROTOCOL_ERROR);
            return None;
        }
    };
    let entry = pending
        .entry(info.request_id.clone())
        .or_insert_with(|| Pending {
            since: Instant::now(),
            port: info.port,
            data: None,
            error: None,
        });
    let slot = match info.kind {
        PortStreamType::Data => &mut entry.data,
        PortStreamType::Error => &mut entry.error,
    };
    if slot.is_some() || entry.port != info.port {
        tracing::debug!(request = %info.request_id, "port-forward: duplicate stream reset");
        stream.send.reset(RstStatus::PROTOCOL_ERROR);
        return None;
    }
    *slot = Some(stream);
    if entry.data.is_some() && entry.error.is_some() {
        let done = pending.remove(&info.request_id)?;
        return Some((done.port, done.data?, done.error?));
    }
    None
}

/// One connection: connect, then copy both ways until both ends finish.
async fn forward(backend: &dyn Backend, pod: &str, port: u16, data: Stream, error: Stream) {
    let (_, mut error_send) = error.split();
    let (mut data_recv, mut data_send) = data.split();
    let conn = match backend.connect(pod, port).await {
        Ok(conn) => conn,
        Err(e) => {
            let message = forward_error(port, pod, &e);
            tracing::info!(%message, "port-forward failed");
            let _ = error_send.write_all(message.as_bytes()).await;
            let _ = error_send.finish();
            let _ = data_send.finish();
            return;
        }
    };
    let (mut conn_read, mut conn_write) = tokio::io::split(conn);
    let up = async {
        tokio::io::copy(&mut data_recv, &mut conn_write).await?;
        conn_write.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut conn_read, &mut data_send).await?;
        data_send.finish().map_err(std::io::Error::from)
    };
    if let Err(e) = tokio::try_join!(up, down) {
        tracing::debug!(port, error = %e, "port-forward: connection ended with an error");
        data_send.reset(RstStatus::CANCEL);
    }
    let _ = error_send.finish();
}

/// Port-forward over WebSocket: one connection per port of the query.
pub(super) async fn ws<T>(
    ctx: &Arc<Ctx>,
    io: T,
    protocol: WsProtocol,
    request: PortForwardRequest,
    ports: Vec<u16>,
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, receiver) = WsChannels::server(io, protocol).await.split();
    let (out, out_rx) = mpsc::channel(wsio::QUEUE);
    let mut inputs = Vec::new();
    let mut conns = JoinSet::new();
    for (index, port) in ports.iter().copied().enumerate() {
        let Some((data_ch, error_ch)) = ws_channels(index) else {
            break;
        };
        let prefix = ws_port_prefix(port).to_vec();
        let _ = out.send(Out::Data(data_ch, prefix.clone())).await;
        let _ = out.send(Out::Data(error_ch, prefix)).await;
        let (tx, rx) = mpsc::channel::<Vec<u8>>(wsio::QUEUE);
        inputs.push(tx);
        let channels = (data_ch, error_ch);
        let (backend, pod, out) = (
            ctx.backend.clone(),
            request.pod_sandbox_id.clone(),
            out.clone(),
        );
        conns.spawn(async move { ws_forward(&*backend, &pod, port, channels, rx, out).await });
    }
    drop(out);
    let main = async {
        tokio::join!(
            async { while conns.join_next().await.is_some() {} },
            wsio::pump(sender, out_rx)
        )
    };
    let mut demux = std::pin::pin!(ws_demux(receiver, inputs));
    tokio::select! {
        _ = main => {
            let _ = tokio::time::timeout(ctx.config.linger, demux).await;
        }
        () = &mut demux => tracing::debug!("port-forward: the client went away"),
    }
}

/// One port of a WebSocket port-forward.
async fn ws_forward(
    backend: &dyn Backend,
    pod: &str,
    port: u16,
    (data_ch, error_ch): (u8, u8),
    mut input: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Out>,
) {
    let conn: Connection = match backend.connect(pod, port).await {
        Ok(conn) => conn,
        Err(e) => {
            let message = forward_error(port, pod, &e);
            let _ = out.send(Out::Data(error_ch, message.into_bytes())).await;
            return;
        }
    };
    let (mut conn_read, mut conn_write) = tokio::io::split(conn);
    let up = async {
        while let Some(bytes) = input.recv().await {
            conn_write.write_all(&bytes).await?;
        }
        conn_write.shutdown().await
    };
    let down = async {
        let mut buf = vec![0u8; wsio::MAX_MESSAGE];
        loop {
            let n = conn_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if out
                .send(Out::Data(data_ch, buf[..n].to_vec()))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    };
    if let Err(e) = tokio::try_join!(up, down) {
        let _ = out
            .send(Out::Data(
                error_ch,
                forward_error(port, pod, &e).into_bytes(),
            ))
            .await;
    }
}

/// Hands data channels' bytes to their port's connection.
async fn ws_demux<T>(mut receiver: WsReceiver<T>, mut inputs: Vec<mpsc::Sender<Vec<u8>>>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    while let Ok(Some(message)) = receiver.recv().await {
        let ChannelMessage::Data { channel, data } = message else {
            continue;
        };
        let (index, kind) = ws_channel_port(channel);
        if kind != PortStreamType::Data {
            continue;
        }
        if let Some(tx) = inputs.get(index) {
            // A connection that ended drops what comes later for it.
            let _ = tx.send(data).await;
        }
    }
    inputs.clear();
}
