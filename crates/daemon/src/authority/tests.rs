use std::collections::VecDeque;

use httlib_hpack::Encoder;
use tokio::io::AsyncReadExt;

use super::frames::*;
use super::hpack::REPLACEMENT;
use super::*;

const SOCKET: &[u8] = b"/run/crius/crius.sock";
/// How grpc-go's encoder writes new fields: indexed when in the table,
/// else a literal with incremental indexing, Huffman-coded.
const GRPC_GO: u8 =
    Encoder::BEST_FORMAT | Encoder::WITH_INDEXING | Encoder::HUFFMAN_NAME | Encoder::HUFFMAN_VALUE;

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn headers(list: &[(&str, &[u8])]) -> Headers {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
        .collect()
}

fn request(authority: &[u8]) -> Headers {
    headers(&[
        (":method", b"POST"),
        (":scheme", b"http"),
        (":path", b"/runtime.v1.RuntimeService/Version"),
        (":authority", authority),
        ("content-type", b"application/grpc"),
        ("user-agent", b"grpc-go/1.58.3"),
        ("te", b"trailers"),
    ])
}

fn encode(encoder: &mut Encoder<'_>, headers: &Headers, flags: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let r = encoder.encode((name.clone(), value.clone(), flags), &mut out);
        assert!(r.is_ok(), "encoding {name:?}: {r:?}");
    }
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn settings() -> Vec<u8> {
    // SETTINGS_ENABLE_PUSH = 0, SETTINGS_INITIAL_WINDOW_SIZE = 4 MiB.
    frame(4, 0, 0, &[0, 2, 0, 0, 0, 0, 0, 4, 0, 0x40, 0, 0])
}

fn data(stream: u32, payload: &[u8]) -> Vec<u8> {
    frame(0, FLAG_END_STREAM, stream, payload)
}

fn headers_frame(stream: u32, block: &[u8]) -> Vec<u8> {
    frame(TYPE_HEADERS, FLAG_END_HEADERS, stream, block)
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

/// Hands out its input in the given pieces, one piece (or what fits) per
/// read, answering every other read with `Pending` first.
struct Pieces {
    pieces: VecDeque<Vec<u8>>,
    stall: bool,
}

impl AsyncRead for Pieces {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.stall = !this.stall;
        if this.stall {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(piece) = this.pieces.front_mut() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                this.pieces.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Runs `input`, cut in `piece`-byte pieces, through the fix, reading
/// `read`-byte buffers at a time.
async fn run_with(
    input: &[u8],
    piece: usize,
    read: usize,
    max_block: usize,
) -> io::Result<Vec<u8>> {
    let pieces = input.chunks(piece).map(<[u8]>::to_vec).collect();
    let mut fix = AuthorityFix::with_max_header_block(
        Pieces {
            pieces,
            stall: false,
        },
        max_block,
    );
    let mut out = Vec::new();
    let mut buf = vec![0u8; read];
    loop {
        let n = fix.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

async fn run(input: &[u8]) -> Vec<u8> {
    match run_with(input, usize::MAX, 8192, DEFAULT_MAX_HEADER_BLOCK).await {
        Ok(out) => out,
        Err(e) => panic!("rewriting failed: {e}"),
    }
}

async fn run_err(input: &[u8], max_block: usize) -> io::Error {
    match run_with(input, 7, 8192, max_block).await {
        Ok(out) => panic!("expected an error, got {} bytes", out.len()),
        Err(e) => e,
    }
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    assert_eq!(bytes.get(..PREFACE.len()), Some(PREFACE), "preface");
    let mut rest = &bytes[PREFACE.len()..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        assert!(rest.len() >= FRAME_HEADER_LEN, "cut frame header");
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        assert!(len <= OUT_FRAME_MAX, "frame of {len} bytes");
        let end = FRAME_HEADER_LEN + len;
        assert!(rest.len() >= end, "cut frame");
        out.push(Frame {
            kind: rest[3],
            flags: rest[4],
            stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
            payload: rest[FRAME_HEADER_LEN..end].to_vec(),
        });
        rest = &rest[end..];
    }
    out
}

/// Decodes the header blocks of `bytes` (in order) with one fresh
/// decoder, checking the framing this module promises.
fn decode_blocks(bytes: &[u8]) -> Vec<(u32, Headers)> {
    let mut decoder = loona_hpack::Decoder::new();
    let mut out = Vec::new();
    let mut open: Option<(u32, Vec<u8>)> = None;
    for f in frames(bytes) {
        match f.kind {
            TYPE_HEADERS => {
                assert!(open.is_none(), "HEADERS inside a block");
                assert_eq!(f.flags & FLAG_PADDED, 0, "padding left");
                let skip = if f.flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
                open = Some((f.stream, f.payload[skip..].to_vec()));
            }
            TYPE_CONTINUATION => match &mut open {
                Some((stream, block)) => {
                    assert_eq!(*stream, f.stream);
                    block.extend_from_slice(&f.payload);
                }
                None => panic!("CONTINUATION outside a block"),
            },
            _ => assert!(open.is_none(), "frame inside a block"),
        }
        if matches!(f.kind, TYPE_HEADERS | TYPE_CONTINUATION)
            && f.flags & FLAG_END_HEADERS != 0
            && let Some((stream, block)) = open.take()
        {
            match decoder.decode(&block) {
                Ok(list) => out.push((stream, list)),
                Err(e) => panic!("decoding the rewritten block: {e:?}"),
            }
        }
    }
    assert!(open.is_none(), "unterminated block");
    out
}

fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `headers` as the server should see them.
fn fixed(mut headers: Headers) -> Headers {
    for (name, value) in &mut headers {
        if name == b":authority" && !is_authority(value) {
            *value = REPLACEMENT.to_vec();
        }
    }
    headers
}

/// Whether the server got `sent` as it should: the same fields, a refused
/// `:authority` fixed (inserted into the table, a short one becomes as many
/// bytes of `localhost`, an empty one stays).
fn served_as(sent: &Headers, got: &Headers) -> bool {
    sent.len() == got.len()
        && sent.iter().zip(got).all(|((n, v), (name, value))| {
            let fixes = [v.as_slice(), REPLACEMENT, &REPLACEMENT[..v.len().min(9)]];
            n == name
                && match &n[..] {
                    b":authority" if !is_authority(v) => fixes[1..].contains(&&value[..]),
                    _ => v == value,
                }
        })
}

/// Two grpc-go style requests, the second one all indexed; returns the
/// connection bytes and the encoded blocks.
fn two_requests(authority: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut encoder = Encoder::default();
    let first = encode(&mut encoder, &request(authority), GRPC_GO);
    let second = encode(&mut encoder, &request(authority), GRPC_GO);
    let input = connection(&[
        settings(),
        headers_frame(1, &first),
        data(1, b"\0\0\0\0\x04\x0a\x02v1"),
        frame(4, 1, 0, &[]),
        headers_frame(3, &second),
        data(3, b"\0\0\0\0\x04\x0a\x02v1"),
    ]);
    (input, first, second)
}

#[test]
fn static_table_as_rfc_7541_has_it() {
    // What the rewriting assumes of the static table: 61 entries, index 1
    // is `:authority` with an empty value, and no other `:authority`.
    let table = httlib_hpack::table::Table::with_dynamic_size(4096);
    let entry = |i: u32| table.get(i).map(|(n, v)| (n.to_vec(), v.to_vec()));
    assert_eq!(entry(1), Some((b":authority".to_vec(), Vec::new())));
    for i in 2..=61 {
        let (name, _) = entry(i).expect("static entry");
        assert_ne!(name, b":authority", "index {i}");
    }
    assert!(table.get(62).is_none());
    let decoded = loona_hpack::Decoder::new().decode(&[0x81, 0x01, 0x09]);
    assert!(decoded.is_err(), "a cut literal");
    let decoded = loona_hpack::Decoder::new().decode(b"\x81\x01\x09localhost");
    assert_eq!(
        decoded.ok(),
        Some(headers(&[(":authority", b""), (":authority", REPLACEMENT)]))
    );
}

#[tokio::test]
async fn socket_path_authority_becomes_localhost_and_stays_indexed() {
    let (input, first, second) = two_requests(SOCKET);
    // The client sent what grpc-go sends: `:authority` as a Huffman-coded
    // literal with incremental indexing of static name 1, then by index.
    let at = encode(
        &mut Encoder::default(),
        &request(SOCKET)[..3].to_vec(),
        GRPC_GO,
    )
    .len();
    assert_eq!(first[at], 0x41, "{first:x?}");
    assert_ne!(first[at + 1] & 0x80, 0, "Huffman-coded: {first:x?}");
    assert_eq!(second.len(), 7, "all indexed: {second:x?}");
    assert!(second.iter().all(|&b| b & 0x80 != 0));
    assert!(second[3] >= 0x80 | 62, "authority by dynamic index");
    // h2's view of the original: the socket path.
    let original = decode_blocks(&input);
    assert_eq!(original[1].1, request(SOCKET));

    let output = run(&input).await;
    let blocks = decode_blocks(&output);
    assert_eq!(
        blocks,
        vec![(1, request(b"localhost")), (3, request(b"localhost"))]
    );
    // Everything else passed byte for byte.
    let (before, after) = (frames(&input), frames(&output));
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((a.kind, a.stream), (b.kind, b.stream));
        if a.kind != TYPE_HEADERS {
            assert_eq!((a.flags, &a.payload), (b.flags, &b.payload));
        }
    }
    // The second block is copied: it still references the entry.
    assert_eq!(after[4].payload, second);
}

#[tokio::test]
async fn valid_authorities_pass_unchanged() {
    for authority in [
        &b"localhost"[..],
        b"localhost:1234",
        b"crius.sock",
        b"10.0.0.1:10010",
        b"[::1]:80",
    ] {
        let (input, _, _) = two_requests(authority);
        assert_eq!(run(&input).await, input, "{authority:?}");
    }
}

#[tokio::test]
async fn odd_authorities_are_replaced() {
    for authority in [
        &b"unix:///run/crius/crius.sock"[..],
        b"/",
        b"",
        b"a b",
        b"\xff",
    ] {
        let (input, _, _) = two_requests(authority);
        let blocks = decode_blocks(&run(&input).await);
        // A value shorter than `localhost`, inserted into the table by the
        // first request, is as long there: a prefix of `localhost`. The
        // second request, by index, is given `localhost` itself.
        let first = match authority.len() {
            1..9 => &REPLACEMENT[..authority.len()],
            _ => REPLACEMENT,
        };
        assert_eq!(blocks[0].1, request(first), "{authority:?}");
        assert_eq!(blocks[1].1, request(b"localhost"), "{authority:?}");
    }
    // The static entry (`:authority`, empty) sent by index.
    let mut block = vec![0x83, 0x86, 0x81];
    block.extend_from_slice(&[0x44, 1, b'/']);
    let input = connection(&[headers_frame(1, &block)]);
    let blocks = decode_blocks(&run(&input).await);
    assert_eq!(
        blocks[0].1,
        headers(&[
            (":method", b"POST"),
            (":scheme", b"http"),
            (":authority", b"localhost"),
            (":path", b"/")
        ])
    );
}

#[tokio::test]
async fn reads_split_anywhere() {
    let (input, _, _) = two_requests(SOCKET);
    let whole = run(&input).await;
    for piece in [1, 2, 3, 5, 9, 10, 24, 25, 33, 100] {
        for read in [1, 3, 9, 64, 8192] {
            let out = run_with(&input, piece, read, DEFAULT_MAX_HEADER_BLOCK).await;
            assert_eq!(out.ok().as_ref(), Some(&whole), "piece {piece} read {read}");
        }
    }
}

#[tokio::test]
async fn continuation_frames_in_and_out() {
    let mut encoder = Encoder::default();
    let first = encode(&mut encoder, &request(SOCKET), GRPC_GO);
    // A large header, not indexed, makes the rewritten block need
    // CONTINUATION frames too.
    let big = headers(&[("x-big", &[b'x'; 40_000][..])]);
    // Literals without indexing, to be rewritten.
    let mut second = encode(&mut encoder, &request(SOCKET), Encoder::HUFFMAN_VALUE);
    second.extend(encode(&mut encoder, &big, 0));
    let pieces: Vec<&[u8]> = first.chunks(first.len() / 3 + 1).collect();
    assert_eq!(pieces.len(), 3);
    let mut frames_in = vec![
        settings(),
        frame(TYPE_HEADERS, 0, 1, pieces[0]),
        frame(TYPE_CONTINUATION, 0, 1, pieces[1]),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, pieces[2]),
        data(1, b"\0\0\0\0\0"),
    ];
    let (a, b) = second.split_at(10);
    frames_in.push(frame(TYPE_HEADERS, FLAG_END_STREAM, 3, a));
    frames_in.push(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, b));
    let output = run(&connection(&frames_in)).await;
    let mut expected = request(b"localhost");
    expected.extend(big);
    assert_eq!(
        decode_blocks(&output),
        vec![(1, request(b"localhost")), (3, expected)]
    );
    let out = frames(&output);
    let kinds: Vec<(u8, u8, u32)> = out.iter().map(|f| (f.kind, f.flags, f.stream)).collect();
    assert_eq!(
        kinds,
        vec![
            (4, 0, 0),
            (TYPE_HEADERS, FLAG_END_HEADERS, 1),
            (0, FLAG_END_STREAM, 1),
            (TYPE_HEADERS, FLAG_END_STREAM, 3),
            (TYPE_CONTINUATION, 0, 3),
            (TYPE_CONTINUATION, FLAG_END_HEADERS, 3),
        ]
    );
    assert_eq!(out[3].payload.len(), OUT_FRAME_MAX);
}

#[tokio::test]
async fn padding_is_dropped_and_priority_kept() {
    let mut encoder = Encoder::default();
    let block = encode(&mut encoder, &request(SOCKET), GRPC_GO);
    let priority = [0x80, 0, 0, 0, 0x10];
    let mut payload = vec![7];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0; 7]);
    let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
    let padded_only = {
        let mut p = vec![3];
        p.extend_from_slice(&block[..5]);
        p.extend_from_slice(&[0; 3]);
        p
    };
    let input = connection(&[
        frame(TYPE_HEADERS, flags, 1, &payload),
        frame(TYPE_HEADERS, FLAG_PADDED, 3, &padded_only),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &block[5..]),
    ]);
    let output = run(&input).await;
    let out = frames(&output);
    assert_eq!(
        out[0].flags,
        FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM
    );
    assert_eq!(out[0].payload[..5], priority);
    assert_eq!(out[1].flags, FLAG_END_HEADERS);
    // The second block re-sends the literals: its `:authority` is a
    // literal with indexing again, rewritten again.
    assert_eq!(
        decode_blocks(&output),
        vec![(1, request(b"localhost")), (3, request(b"localhost"))]
    );
}

#[tokio::test]
async fn every_literal_kind_and_name_form() {
    let mut encoder = Encoder::default();
    let mut block = Vec::new();
    for flags in [
        Encoder::WITH_INDEXING,
        Encoder::WITH_INDEXING | Encoder::HUFFMAN_VALUE,
        0,
        Encoder::HUFFMAN_VALUE,
        Encoder::NEVER_INDEXED,
        Encoder::NEVER_INDEXED | Encoder::HUFFMAN_VALUE | Encoder::HUFFMAN_NAME,
    ] {
        // Name by static index, then as a literal.
        let r = encoder.encode((1u32, SOCKET.to_vec(), flags), &mut block);
        assert!(r.is_ok());
        let r = encoder.encode((b":authority".to_vec(), SOCKET.to_vec(), flags), &mut block);
        assert!(r.is_ok());
    }
    // Name by dynamic index (the `:authority` literal inserted above),
    // then the entries themselves.
    let r = encoder.encode((62u32, b"/x".to_vec(), Encoder::WITH_INDEXING), &mut block);
    assert!(r.is_ok());
    for index in [62u32, 63, 64, 65] {
        let r = encoder.encode(index, &mut block);
        assert!(r.is_ok());
    }
    let input = connection(&[headers_frame(1, &block)]);
    let blocks = decode_blocks(&run(&input).await);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].1.len(), 17);
    for (i, (name, value)) in blocks[0].1.iter().enumerate() {
        // `/x`, inserted, is as long in the server's table; by index (62)
        // it is `localhost` again.
        let want = if i == 12 { b"lo" } else { REPLACEMENT };
        assert_eq!((&name[..], &value[..]), (&b":authority"[..], want), "{i}");
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Random blocks with small tables (many evictions) and size updates:
/// what the server decodes is what the client sent, authorities fixed.
#[tokio::test]
async fn tables_stay_in_sync_under_evictions() {
    let names: [&[u8]; 6] = [
        b":authority",
        b":path",
        b"content-type",
        b"x-custom",
        b"grpc-timeout",
        b":authority",
    ];
    let values: [&[u8]; 8] = [
        SOCKET,
        b"/var/run/containerd/containerd.sock",
        b"localhost",
        b"example.com:8080",
        b"/",
        b"application/grpc",
        b"a-rather-long-value-that-fills-the-table-quickly-0123456789",
        b"",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    for round in 0..40 {
        let mut encoder = Encoder::default();
        let mut frames_in = Vec::new();
        let mut expected = Vec::new();
        for i in 0..12u32 {
            let stream = 2 * i + 1;
            let mut block = Vec::new();
            if rng.below(4) == 0 {
                let size = [0usize, 40, 64, 100, 150, 256, 4096][rng.below(7)];
                let r = encoder.update_max_dynamic_size(size as u32, &mut block);
                assert!(r.is_ok());
            }
            let mut list = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let name = names[rng.below(names.len())].to_vec();
                let value = values[rng.below(values.len())].to_vec();
                let flags = [
                    GRPC_GO,
                    Encoder::BEST_FORMAT | Encoder::WITH_INDEXING,
                    Encoder::WITH_INDEXING | Encoder::HUFFMAN_NAME,
                    Encoder::HUFFMAN_VALUE,
                    Encoder::NEVER_INDEXED,
                    Encoder::BEST_FORMAT | Encoder::HUFFMAN_VALUE,
                ][rng.below(6)];
                let r = encoder.encode((name.clone(), value.clone(), flags), &mut block);
                assert!(r.is_ok(), "{r:?}");
                list.push((name, value));
            }
            expected.push((stream, list));
            frames_in.push(headers_frame(stream, &block));
        }
        let input = connection(&frames_in);
        let piece = 1 + rng.below(40);
        let output = match run_with(&input, piece, 64, DEFAULT_MAX_HEADER_BLOCK).await {
            Ok(out) => out,
            Err(e) => panic!("round {round}: {e}"),
        };
        let got = decode_blocks(&output);
        assert_eq!(got.len(), expected.len(), "round {round}");
        for ((stream, sent), (at, got)) in expected.iter().zip(&got) {
            assert_eq!(stream, at, "round {round}");
            assert!(
                served_as(sent, got),
                "round {round}: {sent:?} became {got:?}"
            );
        }
    }
}

/// `:method: POST`, `:scheme: http`, `:path: /`, all static.
const PSEUDO: [u8; 3] = [0x83, 0x86, 0x84];

fn block(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The desynchronisation the rewriting must not cause: an `:authority`
/// shorter than `localhost` inserted into a nearly full table. Were its
/// entry `localhost` on the server, 8 bytes larger, the server would evict
/// it where the client keeps it, and the client's next reference to it
/// would be out of the server's range.
#[tokio::test]
async fn short_inserted_authority_keeps_tables_in_step() {
    let value = [b'v'; 40];
    // A table of 120 bytes; `:authority: /` inserted: 10 + 1 + 32 = 43.
    let first = block(&[&[0x3f, 0x59], &PSEUDO, &[0x41, 1, b'/']]);
    // `x-a`, inserted: 3 + 40 + 32 = 75; 43 + 75 = 118 fits, 51 + 75 not.
    let second = block(&[&PSEUDO, &[0x81, 0x40, 3], b"x-a", &[40], &value]);
    // Both entries by index: `:authority` (63), `x-a` (62).
    let third = block(&[&PSEUDO, &[0x80 | 63, 0x80 | 62]]);
    let input = connection(&[
        settings(),
        headers_frame(1, &first),
        headers_frame(3, &second),
        headers_frame(5, &third),
    ]);
    let pseudo = [
        (":method", &b"POST"[..]),
        (":scheme", b"http"),
        (":path", b"/"),
    ];
    let with = |extra: &[(&str, &[u8])]| headers(&[&pseudo[..], extra].concat());
    assert_eq!(
        decode_blocks(&run(&input).await),
        vec![
            (1, with(&[(":authority", b"l")])),
            (3, with(&[(":authority", b"localhost"), ("x-a", &value)])),
            (5, with(&[(":authority", b"localhost"), ("x-a", &value)])),
        ]
    );
}

/// An empty `:authority` inserted into the table has no replacement as
/// small: it passes for h2 to refuse; references to it are fixed.
#[tokio::test]
async fn empty_inserted_authority_is_left_to_h2() {
    let first = block(&[&PSEUDO, &[0x41, 0]]);
    let second = block(&[&PSEUDO, &[0x80 | 62]]);
    let input = connection(&[headers_frame(1, &first), headers_frame(3, &second)]);
    let output = run(&input).await;
    let out = frames(&output);
    assert_eq!(out[0].payload, first);
    let blocks = decode_blocks(&output);
    assert_eq!(blocks[0].1[3], (b":authority".to_vec(), Vec::new()));
    assert_eq!(
        blocks[1].1[3],
        (b":authority".to_vec(), REPLACEMENT.to_vec())
    );
}

/// SETTINGS pass unread: the client's SETTINGS_HEADER_TABLE_SIZE sizes the
/// server's encoder, not the table the client's requests use.
#[tokio::test]
async fn client_header_table_size_is_not_ours() {
    let table_size = |size: u32| {
        let mut payload = vec![0, 1];
        payload.extend_from_slice(&size.to_be_bytes());
        frame(4, 0, 0, &payload)
    };
    for authority in [SOCKET, b"localhost"] {
        let (two, _, _) = two_requests(authority);
        let frames_in = frames(&two);
        let mut input = connection(&[table_size(0)]);
        for (i, f) in frames_in.iter().enumerate() {
            if i == 3 {
                input.extend(table_size(65_536));
            }
            input.extend(frame(f.kind, f.flags, f.stream, &f.payload));
        }
        let output = run(&input).await;
        let blocks = decode_blocks(&output);
        assert_eq!(blocks[1].1, fixed(request(authority)), "{authority:?}");
        let settings: Vec<Vec<u8>> = frames(&output)
            .into_iter()
            .filter(|f| f.kind == 4 && f.payload.get(..2) == Some(&[0, 1]))
            .map(|f| f.payload)
            .collect();
        assert_eq!(settings.len(), 2);
        assert_eq!(settings[0], [0, 1, 0, 0, 0, 0]);
    }
}

/// A block of size updates alone is valid HPACK (loona-hpack refuses it,
/// h2 takes it): it passes, and the table follows it.
#[tokio::test]
async fn block_of_size_updates_alone() {
    let first = block(&[&PSEUDO, &[0x41, 9], b"localhost"]);
    let trailers = [0x20, 0x3f, 0xe1, 0x1f];
    let input = connection(&[
        headers_frame(1, &first),
        frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &trailers,
        ),
    ]);
    assert_eq!(run(&input).await, input);
    // The table was emptied: the entry inserted first is gone.
    let mut input = input;
    input.extend(headers_frame(3, &block(&[&PSEUDO, &[0x80 | 62]])));
    let e = run_err(&input, DEFAULT_MAX_HEADER_BLOCK).await;
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
}

/// A HEADERS frame that depends on its own stream: h2 resets the stream
/// without decoding the block (bad HPACK and all), so the fix passes it
/// undecoded and its table, like the server's, never sees it. Found by
/// tests/authority_fuzz.rs.
#[tokio::test]
async fn self_dependent_headers_pass_undecoded() {
    let mut encoder = Encoder::default();
    let good = encode(&mut encoder, &request(SOCKET), GRPC_GO);
    // Index 0, which no decoder takes; after it, an insertion neither
    // table may see.
    let bad = block(&[&[0x80], &[0x41, 1, b'/']]);
    let flags = FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
    let mut priority = vec![0, 0, 0, 1, 16];
    priority.extend_from_slice(&bad);
    // Padded too, with a pad length too large: h2 looks at the
    // dependency first.
    let mut padded = vec![200, 0x80, 0, 0, 3, 16];
    padded.extend_from_slice(&bad);
    let resets = [
        frame(TYPE_HEADERS, flags, 1, &priority),
        frame(TYPE_HEADERS, flags | FLAG_PADDED, 3, &padded),
    ];
    let input = connection(&[settings(), resets[0].clone(), resets[1].clone()]);
    assert_eq!(run(&input).await, input);
    // The table is as before them: the next request is fixed as usual.
    let mut then = input.clone();
    then.extend(headers_frame(5, &good));
    let output = run(&then).await;
    assert_eq!(output.get(..input.len()), Some(&input[..]));
    let last = frames(&output).pop().map(|f| f.payload);
    let decoded = last.map(|b| loona_hpack::Decoder::new().decode(&b));
    assert_eq!(decoded, Some(Ok(fixed(request(SOCKET)))));
    // Without END_HEADERS no block opens: a CONTINUATION is refused.
    let open = frame(TYPE_HEADERS, FLAG_PRIORITY, 1, &priority);
    let cont = frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &good);
    let e = run_err(&connection(&[open, cont]), DEFAULT_MAX_HEADER_BLOCK).await;
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
}

/// A CONTINUATION whose stream identifier has the reserved bit set
/// continues the block: receivers ignore that bit (RFC 7540 §4.1), and h2
/// does. Found by the cargo-fuzz target.
#[tokio::test]
async fn reserved_bit_of_the_stream_is_ignored() {
    let mut encoder = Encoder::default();
    let block = encode(&mut encoder, &request(SOCKET), GRPC_GO);
    let (a, b) = block.split_at(block.len() / 2);
    let input = connection(&[
        frame(TYPE_HEADERS, 0, 1, a),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 0x8000_0001, b),
    ]);
    let output = run(&input).await;
    assert_eq!(decode_blocks(&output), vec![(1, fixed(request(SOCKET)))]);
}

#[tokio::test]
async fn non_http2_passes_through() {
    let input = b"GET / HTTP/1.1\r\nHost: /run/crius/crius.sock\r\n\r\n".to_vec();
    assert_eq!(run(&input).await, input);
    let short = PREFACE[..10].to_vec();
    assert_eq!(run(&short).await, short);
}

#[tokio::test]
async fn malformed_input_closes_the_connection() {
    let mut encoder = Encoder::default();
    let block = encode(&mut encoder, &request(SOCKET), GRPC_GO);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut integer", headers_frame(1, &[0x3f])),
        ("cut string", headers_frame(1, &[0x41, 0x05, b'a'])),
        ("index 0", headers_frame(1, &[0x80])),
        ("dynamic index out of range", headers_frame(1, &[0x80 | 62])),
        ("name index out of range", headers_frame(1, &[0x40 | 63, 0])),
        ("bad huffman", headers_frame(1, &[0x41, 0x81, 0x00])),
        (
            "huge integer",
            headers_frame(1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        ),
        (
            "huge table",
            headers_frame(1, &[0x3f, 0xff, 0xff, 0xff, 0x7f]),
        ),
        (
            "continuation without headers",
            frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &block),
        ),
        (
            "push promise",
            frame(TYPE_PUSH_PROMISE, FLAG_END_HEADERS, 1, &[0, 0, 0, 2]),
        ),
        (
            "padding too long",
            frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[5, 0x82]),
        ),
        (
            "priority cut",
            frame(TYPE_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1, &[0, 0]),
        ),
    ];
    for (what, bad) in cases {
        let e = run_err(&connection(&[settings(), bad]), DEFAULT_MAX_HEADER_BLOCK).await;
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
    }
    // Another frame where a CONTINUATION must come.
    for interloper in [
        data(1, b""),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &block),
    ] {
        let input = connection(&[frame(TYPE_HEADERS, 0, 1, &block[..4]), interloper]);
        let e = run_err(&input, DEFAULT_MAX_HEADER_BLOCK).await;
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
    // Too large: one frame, then a block of several.
    let input = connection(&[headers_frame(1, &block)]);
    let e = run_err(&input, block.len() - 1).await;
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let (a, b) = block.split_at(block.len() / 2);
    let input = connection(&[
        frame(TYPE_HEADERS, 0, 1, a),
        frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b),
    ]);
    let e = run_err(&input, block.len() - 1).await;
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert!(run_with(&input, 7, 8192, block.len()).await.is_ok());
}

/// What came before a rejected frame reaches the server first; then every
/// read fails alike.
#[tokio::test]
async fn rejected_connection_stays_rejected() {
    let mut encoder = Encoder::default();
    let block = encode(&mut encoder, &request(SOCKET), GRPC_GO);
    let input = connection(&[headers_frame(1, &[0x80]), headers_frame(3, &block)]);
    let mut fix = AuthorityFix::new(Pieces {
        pieces: VecDeque::from([input]),
        stall: false,
    });
    let mut buf = [0u8; 4096];
    let mut before = Vec::new();
    let first = loop {
        match fix.read(&mut buf).await {
            Ok(0) => panic!("EOF instead of an error"),
            Ok(n) => before.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(before, PREFACE);
    assert_eq!(first.kind(), io::ErrorKind::InvalidData);
    let again = fix.read(&mut buf).await.expect_err("rejected again");
    assert_eq!(again.to_string(), first.to_string());
}
