//! Byte streams over WebSocket channels, for the server and the client:
//! [`ChannelWriter`] is an `AsyncWrite` whose writes become channel
//! messages, queued in a bounded mpsc that [`pump`] sends on the
//! WebSocket in order (so a peer that does not read holds the writers
//! back: at most the queue's few messages wait in memory).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::ws::WsSender;

/// Messages queued for the WebSocket.
pub(crate) const QUEUE: usize = 8;
/// The largest write one message carries.
pub(crate) const MAX_MESSAGE: usize = 32 * 1024;

/// A message for the WebSocket.
#[derive(Debug)]
pub(crate) enum Out {
    /// Data on a channel.
    Data(u8, Vec<u8>),
    /// v5: nothing more on a channel.
    Close(u8),
}

/// Writes become [`Out::Data`] on one channel.
pub(crate) struct ChannelWriter {
    tx: PollSender<Out>,
    channel: u8,
    /// Send [`Out::Close`] on shutdown (v5).
    close_signal: bool,
    shut: bool,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<Out>, channel: u8, close_signal: bool) -> Self {
        Self {
            tx: PollSender::new(tx),
            channel,
            close_signal,
            shut: false,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.shut {
            return Poll::Ready(Err(gone()));
        }
        ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
        let n = buf.len().min(MAX_MESSAGE);
        let message = Out::Data(self.channel, buf[..n].to_vec());
        self.tx.send_item(message).map_err(|_| gone())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        if self.close_signal {
            ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
            let channel = self.channel;
            self.tx.send_item(Out::Close(channel)).map_err(|_| gone())?;
        }
        self.shut = true;
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// Sends what the writers queue, in order, until every sender is gone,
/// then closes the WebSocket.
pub(crate) async fn pump<T>(mut sender: WsSender<T>, mut rx: mpsc::Receiver<Out>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(out) = rx.recv().await {
        let sent = match out {
            Out::Data(channel, data) => sender.send(channel, &data).await,
            Out::Close(channel) => sender.close_channel(channel).await,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "WebSocket send failed");
            return;
        }
    }
    if let Err(e) = sender.close().await {
        tracing::debug!(error = %e, "WebSocket close failed");
    }
}
