//! Session tests: two sessions over an in-memory duplex, or one session
//! against a hand-driven peer that writes raw frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::timeout;

use super::frame::{Decoded, FrameDecoder, FrameEncoder};
use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn pair(client: Config, server: Config) -> (Session, Session) {
    let (a, b) = duplex(64 * 1024);
    (
        Session::spawn(a, Role::Client, client),
        Session::spawn(b, Role::Server, server),
    )
}

fn typed(kind: &str) -> Headers {
    Headers::new().with("streamType", kind)
}

/// The other end of a session, driven frame by frame.
struct RawPeer {
    io: DuplexStream,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl RawPeer {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            encoder: FrameEncoder::new().expect("encoder"),
            decoder: FrameDecoder::new(1 << 20, 1 << 16),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.encoder.encode(&frame, &mut out).expect("encodes");
        self.io.write_all(&out).await.expect("writes");
    }

    /// The next frame, or `None` at the end of the connection.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(Decoded::Frame(frame)) = self.decoder.decode(&mut self.buf).expect("valid")
            {
                return Some(frame);
            }
            if self.io.read_buf(&mut self.buf).await.expect("reads") == 0 {
                return None;
            }
        }
    }

    /// The next frame that is not SETTINGS or WINDOW_UPDATE.
    async fn recv_main(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await? {
                Frame::Settings { .. } | Frame::WindowUpdate { .. } => continue,
                other => return Some(other),
            }
        }
    }

    fn syn(id: u32, kind: &str) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: typed(kind),
        }
    }
}

fn raw_server(config: Config) -> (Session, RawPeer) {
    let (a, b) = duplex(16 * 1024);
    (Session::spawn(a, Role::Server, config), RawPeer::new(b))
}

async fn accept(session: &Session) -> Stream {
    timeout(WAIT, session.accept())
        .await
        .expect("in time")
        .expect("a stream")
}

#[tokio::test]
async fn an_exec_shaped_conversation() {
    let (client, server) = pair(Config::default(), Config::default());
    let server_task = tokio::spawn(async move {
        let mut streams = std::collections::HashMap::new();
        for _ in 0..5 {
            let s = accept(&server).await;
            streams.insert(s.headers().get("streamtype").expect("typed").to_owned(), s);
        }
        let mut stdin = streams.remove("stdin").expect("stdin");
        let input = stdin
            .recv
            .read_to_end(1 << 20)
            .await
            .expect("stdin to its end");
        let resize = streams.remove("resize").expect("resize");
        let mut stdout = streams.remove("stdout").expect("stdout");
        stdout.send.write_all(&input).await.expect("echo");
        stdout.send.finish().expect("fin");
        let mut stderr = streams.remove("stderr").expect("stderr");
        stderr.send.write_all(b"warning\n").await.expect("stderr");
        drop(stderr); // dropping finishes it
        let mut error = streams.remove("error").expect("error");
        error
            .send
            .write_all(br#"{"status":"Success"}"#)
            .await
            .expect("status");
        error.send.finish().expect("fin");
        let mut resize_recv = resize.recv;
        let size = resize_recv.read_to_end(1024).await.expect("resize");
        (input, size)
    });
    let mut error = client
        .open(typed("error"), false)
        .await
        .expect("error stream");
    error
        .send
        .finish()
        .expect("the client writes nothing on it");
    let mut stdin = client.open(typed("stdin"), false).await.expect("stdin");
    let mut stdout = client.open(typed("stdout"), true).await.expect("stdout");
    let mut stderr = client.open(typed("stderr"), true).await.expect("stderr");
    let mut resize = client.open(typed("resize"), false).await.expect("resize");
    resize
        .send
        .write_all(br#"{"Width":80,"Height":24}"#)
        .await
        .expect("resize");
    resize.send.finish().expect("fin");
    let input = vec![b'x'; 200_000];
    stdin.send.write_all(&input).await.expect("stdin");
    stdin.send.finish().expect("fin");
    let out = stdout.recv.read_to_end(1 << 20).await.expect("stdout");
    let err = stderr.recv.read_to_end(1024).await.expect("stderr");
    let status = error.recv.read_to_end(1024).await.expect("status");
    assert_eq!(out, input);
    assert_eq!(err, b"warning\n");
    assert_eq!(status, br#"{"status":"Success"}"#);
    let (echoed, size) = timeout(WAIT, server_task)
        .await
        .expect("in time")
        .expect("server");
    assert_eq!(echoed.len(), 200_000);
    assert_eq!(size, br#"{"Width":80,"Height":24}"#);
}

#[tokio::test]
async fn a_reader_that_never_reads_holds_the_writer_within_the_window() {
    let (client, server) = pair(Config::default(), Config::default());
    let accepting = tokio::spawn(async move { (accept(&server).await, server) });
    let mut stream = client.open(typed("stdin"), false).await.expect("open");
    let (mut peer, _server) = accepting.await.expect("accepted");
    let data = vec![1u8; 1 << 20];
    // The peer's window is smaller than the data and it reads nothing:
    // the write stalls.
    let stalled = timeout(Duration::from_millis(300), stream.send.write_all(&data)).await;
    assert!(
        stalled.is_err(),
        "the write finished without the peer reading"
    );
    // Exactly the window went out: not a byte more was queued.
    let window = client.shared.lock().streams[&stream.id()].send_window;
    assert_eq!(window, 0);
    let server_buffered = _server.shared.lock().streams[&peer.id()].recv_len;
    assert!(
        server_buffered <= Config::default().initial_window as usize,
        "{server_buffered} bytes buffered"
    );
    // Once the peer reads, the writer goes on to the end.
    let writer = tokio::spawn(async move {
        stream.send.write_all(&data).await.expect("write");
        stream.send.finish().expect("fin");
        stream
    });
    let got = timeout(WAIT, peer.recv.read_to_end(4 << 20))
        .await
        .expect("in time")
        .expect("read");
    assert!(got.len() >= 1 << 20, "got {}", got.len());
    writer.await.expect("writer");
}

#[tokio::test]
async fn a_peer_that_ignores_windows_is_held_back_by_the_transport() {
    let (server, mut peer) = raw_server(Config::default());
    peer.send(RawPeer::syn(1, "stdin")).await;
    let mut stream = accept(&server).await;
    let flood = tokio::spawn(async move {
        for _ in 0..64 {
            let data = Bytes::from(vec![9u8; 16 * 1024]);
            peer.send(Frame::Data {
                stream_id: 1,
                fin: false,
                data,
            })
            .await;
        }
        peer.send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new(),
        })
        .await;
        peer
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let buffered = server.shared.lock().streams[&1].recv_len;
    assert!(
        buffered <= Config::default().initial_window as usize + 16 * 1024,
        "{buffered} bytes buffered"
    );
    assert!(!flood.is_finished(), "1 MiB went in without anyone reading");
    let got = timeout(WAIT, stream.recv.read_to_end(2 << 20))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(got.len(), 1 << 20);
    flood.await.expect("flood");
}

#[tokio::test]
async fn against_a_peer_without_flow_control_writes_do_not_wait_for_updates() {
    let (server, mut peer) = raw_server(Config::default());
    peer.send(RawPeer::syn(1, "stdout")).await;
    let mut stream = accept(&server).await;
    let writer = tokio::spawn(async move {
        stream
            .send
            .write_all(&vec![3u8; 300_000])
            .await
            .expect("write");
        stream.send.finish().expect("fin");
        stream
    });
    let mut total = 0;
    while let Some(frame) = timeout(WAIT, peer.recv_main()).await.expect("in time") {
        match frame {
            Frame::Data { data, fin, .. } => {
                total += data.len();
                if fin {
                    break;
                }
            }
            Frame::SynReply { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(total, 300_000);
    writer.await.expect("writer");
    // The same with SendWindow::Always: the write stops at 64 KiB.
    let (server, mut peer) = raw_server(Config {
        send_window: SendWindow::Always,
        ..Config::default()
    });
    peer.send(RawPeer::syn(1, "stdout")).await;
    let mut stream = accept(&server).await;
    let counter = tokio::spawn(async move {
        let mut total = 0;
        while let Ok(Some(frame)) = timeout(Duration::from_millis(300), peer.recv_main()).await {
            if let Frame::Data { data, .. } = frame {
                total += data.len();
            }
        }
        total
    });
    let stalled = timeout(
        Duration::from_millis(300),
        stream.send.write_all(&[0u8; 100_000]),
    )
    .await;
    assert!(stalled.is_err());
    assert_eq!(counter.await.expect("counter"), DEFAULT_WINDOW as usize);
}

#[tokio::test]
async fn reusing_a_stream_id_ends_the_session_with_goaway() {
    let (server, mut peer) = raw_server(Config::default());
    peer.send(RawPeer::syn(3, "stdin")).await;
    let _first = accept(&server).await;
    peer.send(RawPeer::syn(1, "stdout")).await;
    let reason = timeout(WAIT, server.closed()).await.expect("in time");
    assert!(
        reason.to_string().contains("SYN_STREAM 1 after 3"),
        "{reason}"
    );
    let mut saw_goaway = false;
    while let Some(frame) = timeout(WAIT, peer.recv_main()).await.expect("in time") {
        if let Frame::GoAway {
            status,
            last_good_stream_id,
        } = frame
        {
            assert_eq!(
                (status, last_good_stream_id),
                (GoAwayStatus::PROTOCOL_ERROR, 3)
            );
            saw_goaway = true;
        }
    }
    assert!(saw_goaway);
    // An even (server-side) id from a client is refused the same way.
    let (server, mut peer) = raw_server(Config::default());
    peer.send(RawPeer::syn(2, "stdin")).await;
    let reason = timeout(WAIT, server.closed()).await.expect("in time");
    assert!(matches!(reason, Error::Protocol(_)), "{reason}");
}

#[tokio::test]
async fn too_many_streams_are_refused_with_a_clear_error() {
    let server_config = Config {
        max_streams: 2,
        ..Config::default()
    };
    let (client, server) = pair(Config::default(), server_config);
    let (refused_tx, refused_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(async move {
        let a = accept(&server).await;
        let _b = accept(&server).await;
        refused_rx.await.expect("signal");
        drop(a);
        accept(&server)
            .await
            .headers()
            .get("streamtype")
            .map(str::to_owned)
    });
    let _a = client.open(typed("stdin"), false).await.expect("first");
    let _b = client.open(typed("stdout"), false).await.expect("second");
    match client.open(typed("stderr"), false).await {
        Err(Error::Reset(RstStatus::REFUSED_STREAM)) => {}
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("a third stream was accepted"),
    }
    refused_tx.send(()).expect("signal");
    // Once the server dropped one, a new one fits again.
    let fourth = timeout(WAIT, async {
        loop {
            match client.open(typed("resize"), false).await {
                Ok(stream) => return stream,
                Err(Error::Reset(RstStatus::REFUSED_STREAM)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await
    .expect("in time");
    assert!(fourth.id() > 5);
    let accepted = timeout(WAIT, server_task)
        .await
        .expect("in time")
        .expect("server");
    assert_eq!(accepted.as_deref(), Some("resize"));
}

#[tokio::test]
async fn a_bad_header_block_resets_that_stream_only() {
    let (server, mut peer) = raw_server(Config::default());
    // A SYN_STREAM whose block names "a" twice, compressed through the
    // peer's one context, so the context stays in step.
    let mut raw = 2u32.to_be_bytes().to_vec();
    for _ in 0..2 {
        raw.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'x']);
    }
    let block = peer
        .encoder
        .compressor()
        .compress_block(&raw)
        .expect("compresses");
    let mut frame = vec![0x80, 3, 0, 1, 0];
    frame.extend_from_slice(&((10 + block.len()) as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&block);
    peer.io.write_all(&frame).await.expect("writes");
    match timeout(WAIT, peer.recv_main()).await.expect("in time") {
        Some(Frame::RstStream {
            stream_id: 1,
            status,
        }) => {
            assert_eq!(status, RstStatus::PROTOCOL_ERROR)
        }
        other => panic!("expected RST_STREAM 1, got {other:?}"),
    }
    // The session goes on, and the next stream's headers decode.
    peer.send(RawPeer::syn(3, "stdout")).await;
    let second = accept(&server).await;
    assert_eq!(
        (second.id(), second.headers().get("streamtype")),
        (3, Some("stdout"))
    );
    // Id 1 counts as used: opening it again is a protocol error.
    peer.send(RawPeer::syn(1, "stdin")).await;
    assert!(matches!(
        timeout(WAIT, server.closed()).await,
        Ok(Error::Protocol(_))
    ));
}

#[tokio::test]
async fn ping_goes_both_ways() {
    let (client, server) = pair(Config::default(), Config::default());
    timeout(WAIT, client.ping())
        .await
        .expect("in time")
        .expect("client ping");
    timeout(WAIT, server.ping())
        .await
        .expect("in time")
        .expect("server ping");
}

#[tokio::test]
async fn goaway_stops_new_streams_but_not_open_ones() {
    let (client, server) = pair(Config::default(), Config::default());
    let opened = tokio::spawn({
        let client = client.clone();
        async move { client.open(typed("stdout"), true).await.expect("open") }
    });
    let mut stdout = accept(&server).await;
    let mut client_stdout = opened.await.expect("opened");
    server.goaway(GoAwayStatus::OK);
    // The client learns of it when the GOAWAY arrives.
    timeout(WAIT, async {
        while client.open(typed("stderr"), true).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("opens fail after GOAWAY");
    assert!(matches!(
        client.open(typed("x"), true).await,
        Err(Error::GoneAway(_))
    ));
    stdout.send.write_all(b"still here").await.expect("write");
    stdout.send.finish().expect("fin");
    let got = client_stdout.recv.read_to_end(100).await.expect("read");
    assert_eq!(got, b"still here");
}

#[tokio::test]
async fn reset_reaches_the_other_side() {
    let (client, server) = pair(Config::default(), Config::default());
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(typed("stdin"), false).await.expect("open") }
    });
    let mut accepted = accept(&server).await;
    let mut opened = opening.await.expect("opened");
    opened.send.reset(RstStatus::CANCEL);
    let got = timeout(WAIT, accepted.recv.chunk()).await.expect("in time");
    assert_eq!(got, Err(Error::Reset(RstStatus::CANCEL)));
    assert_eq!(
        accepted.send.write_all(b"x").await,
        Err(Error::Reset(RstStatus::CANCEL))
    );
    assert_eq!(
        opened.send.write_all(b"x").await,
        Err(Error::Reset(RstStatus::CANCEL))
    );
}

#[tokio::test]
async fn data_sent_before_a_reset_is_still_read() {
    // Go's spdystream ends a session so: the exit status written on the
    // error stream, then RST_STREAM CANCEL instead of a FIN.
    let (client, server) = pair(Config::default(), Config::default());
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(typed("error"), false).await.expect("open") }
    });
    let mut accepted = accept(&server).await;
    let mut opened = opening.await.expect("opened");
    accepted
        .send
        .write_all(b"{\"status\":\"Success\"}")
        .await
        .expect("write");
    accepted.send.flush().await.expect("flush");
    // The data is on its way before the reset is sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    accepted.send.reset(RstStatus::CANCEL);
    let first = timeout(WAIT, opened.recv.chunk()).await.expect("in time");
    assert_eq!(
        first.ok().flatten().as_deref(),
        Some(&b"{\"status\":\"Success\"}"[..])
    );
    let then = timeout(WAIT, opened.recv.chunk()).await.expect("in time");
    assert_eq!(then, Err(Error::Reset(RstStatus::CANCEL)));
}

#[tokio::test]
async fn half_close_leaves_the_other_direction_open() {
    let (client, server) = pair(Config::default(), Config::default());
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(typed("stdin"), false).await.expect("open") }
    });
    let mut accepted = accept(&server).await;
    let mut opened = opening.await.expect("opened");
    opened.send.write_all(b"ping").await.expect("write");
    opened.send.finish().expect("fin");
    assert_eq!(accepted.recv.read_to_end(10).await.expect("read"), b"ping");
    assert_eq!(
        opened.send.write_all(b"more").await,
        Err(Error::AlreadyFinished)
    );
    accepted.send.write_all(b"pong").await.expect("write back");
    accepted.send.finish().expect("fin");
    assert_eq!(opened.recv.read_to_end(10).await.expect("read"), b"pong");
}

#[tokio::test]
async fn a_connection_cut_before_fin_is_an_error_not_an_end() {
    let (server, mut peer) = raw_server(Config::default());
    peer.send(RawPeer::syn(1, "stdin")).await;
    peer.send(Frame::Data {
        stream_id: 1,
        fin: false,
        data: Bytes::from_static(b"part"),
    })
    .await;
    let mut stream = accept(&server).await;
    drop(peer);
    assert_eq!(
        stream.recv.chunk().await.expect("data first"),
        Some(Bytes::from_static(b"part"))
    );
    let end = timeout(WAIT, stream.recv.chunk()).await.expect("in time");
    // Closed (read side) or Io (the write of the SYN_REPLY failed first).
    assert!(
        matches!(end, Err(Error::Closed(_) | Error::Io(_))),
        "{end:?}"
    );
}

#[tokio::test]
async fn the_stream_halves_are_tokio_io() {
    let (client, server) = pair(Config::default(), Config::default());
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open(typed("stdin"), false).await.expect("open") }
    });
    let accepted = accept(&server).await;
    let opened = opening.await.expect("opened");
    let (mut recv, _send) = accepted.split();
    let (_r, mut send) = opened.split();
    send.write_all(b"through AsyncWrite").await.expect("write");
    send.shutdown().await.expect("fin");
    let mut text = String::new();
    recv.read_to_string(&mut text).await.expect("AsyncRead");
    assert_eq!(text, "through AsyncWrite");
}
