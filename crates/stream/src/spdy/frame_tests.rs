//! Frame codec tests: byte layouts from the SPDY/3 draft, round trips,
//! shared compression contexts and malformed input.

use bytes::{Bytes, BytesMut};

use super::FrameError;
use super::frame::*;
use super::headers::{HeaderCompressor, HeaderDecompressor, Headers};

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    FrameEncoder::new()
        .and_then(|mut e| e.encode(frame, &mut out))
        .expect("encodes");
    out
}

fn decode_all(mut buf: BytesMut) -> Result<Vec<Decoded>, FrameError> {
    let mut decoder = FrameDecoder::new(1 << 20, 64 * 1024);
    let mut out = Vec::new();
    while let Some(decoded) = decoder.decode(&mut buf)? {
        out.push(decoded);
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(out)
}

fn round_trip(frame: Frame) {
    let decoded = decode_all(encode(&frame)).expect("decodes");
    assert_eq!(decoded, vec![Decoded::Frame(frame)]);
}

fn exec_headers() -> Headers {
    Headers::new()
        .with("streamType", "stdout")
        .with("x-multi", "a")
        .with("x-multi", "b")
}

#[test]
fn fixed_frames_have_the_drafts_layout() {
    let cases: Vec<(Frame, Vec<u8>)> = vec![
        (
            Frame::Ping { id: 1 },
            vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
        ),
        (
            Frame::RstStream {
                stream_id: 3,
                status: RstStatus::CANCEL,
            },
            vec![0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5],
        ),
        (
            Frame::GoAway {
                last_good_stream_id: 7,
                status: GoAwayStatus::PROTOCOL_ERROR,
            },
            vec![0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 1],
        ),
        (
            Frame::WindowUpdate {
                stream_id: 5,
                delta: 0x1_0000,
            },
            vec![0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 5, 0, 1, 0, 0],
        ),
        (
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: setting::INITIAL_WINDOW_SIZE,
                    value: 0x10000,
                }],
            },
            // flags(1) | id(24) then the value, after a 32-bit count.
            vec![
                0x80, 3, 0, 4, 1, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 7, 0, 1, 0, 0,
            ],
        ),
        (
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hi"),
            },
            vec![0, 0, 0, 1, 1, 0, 0, 2, b'h', b'i'],
        ),
    ];
    for (frame, bytes) in cases {
        assert_eq!(&encode(&frame)[..], &bytes[..], "{}", frame.kind());
        round_trip(frame);
    }
}

#[test]
fn header_frames_have_the_drafts_fixed_fields() {
    let frame = Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 7,
        slot: 0,
        fin: true,
        unidirectional: true,
        headers: exec_headers(),
    };
    let bytes = encode(&frame);
    // Control bit + version 3, type 1, flags FIN|UNIDIRECTIONAL.
    assert_eq!(&bytes[..5], &[0x80, 3, 0, 1, 3]);
    let len = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]) as usize;
    assert_eq!(len, bytes.len() - 8);
    // Stream id, associated stream id, priority in the top 3 bits, slot.
    assert_eq!(&bytes[8..18], &[0, 0, 0, 1, 0, 0, 0, 0, 0xe0, 0]);
    // A zlib stream with a preset dictionary (FDICT) whose id is SPDY/3's.
    assert_eq!(bytes[18] & 0x0f, 8, "deflate");
    assert_ne!(bytes[19] & 0x20, 0, "FDICT");
    assert_eq!(&bytes[20..24], &0xe3c6_a7c2u32.to_be_bytes());

    let reply = encode(&Frame::SynReply {
        stream_id: 2,
        fin: false,
        headers: Headers::new(),
    });
    assert_eq!(&reply[..5], &[0x80, 3, 0, 2, 0]);
    assert_eq!(&reply[8..12], &[0, 0, 0, 2]);
    let headers = encode(&Frame::Headers {
        stream_id: 9,
        fin: true,
        headers: Headers::new(),
    });
    assert_eq!(&headers[..5], &[0x80, 3, 0, 8, 1]);
}

#[test]
fn every_frame_type_round_trips() {
    round_trip(Frame::SynStream {
        stream_id: 0x7fff_ffff,
        associated_to: 5,
        priority: 3,
        slot: 9,
        fin: false,
        unidirectional: false,
        headers: exec_headers(),
    });
    round_trip(Frame::SynReply {
        stream_id: 4,
        fin: true,
        headers: exec_headers(),
    });
    round_trip(Frame::Headers {
        stream_id: 4,
        fin: false,
        headers: Headers::new(),
    });
    round_trip(Frame::RstStream {
        stream_id: 1,
        status: RstStatus::FLOW_CONTROL_ERROR,
    });
    round_trip(Frame::Settings {
        clear: false,
        entries: vec![],
    });
    round_trip(Frame::Ping { id: 0xffff_fffe });
    round_trip(Frame::GoAway {
        last_good_stream_id: 0,
        status: GoAwayStatus::OK,
    });
    round_trip(Frame::WindowUpdate {
        stream_id: 0,
        delta: 0x7fff_ffff,
    });
    round_trip(Frame::Data {
        stream_id: 3,
        fin: false,
        data: Bytes::from(vec![7u8; 70_000]),
    });
    round_trip(Frame::Data {
        stream_id: 3,
        fin: true,
        data: Bytes::new(),
    });
}

#[test]
fn header_blocks_share_one_context_across_frames() {
    let mut encoder = FrameEncoder::new().expect("encoder");
    let mut wire = BytesMut::new();
    let frames: Vec<Frame> = (1..=5u32)
        .map(|i| Frame::SynStream {
            stream_id: 2 * i - 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::new()
                .with("streamtype", "stdin")
                .with("requestid", &i.to_string()),
        })
        .collect();
    let mut sizes = Vec::new();
    for frame in &frames {
        let before = wire.len();
        encoder.encode(frame, &mut wire).expect("encodes");
        sizes.push(wire.len() - before);
    }
    // Later blocks refer back to earlier ones: they are smaller.
    assert!(sizes[4] < sizes[0], "sizes {sizes:?}");
    let decoded = decode_all(wire.clone()).expect("decodes");
    assert_eq!(
        decoded,
        frames.into_iter().map(Decoded::Frame).collect::<Vec<_>>()
    );

    // A fresh decoder cannot start in the middle: the second frame depends
    // on the first one's context.
    let first = 8 + u32::from_be_bytes([0, wire[5], wire[6], wire[7]]) as usize;
    let mut rest = wire.split_off(first);
    let mut fresh = FrameDecoder::new(1 << 20, 64 * 1024);
    assert!(fresh.decode(&mut rest).is_err());
}

#[test]
fn header_names_are_lowercased_and_values_joined_by_nul() {
    let block = exec_headers().encode_block();
    let parsed = Headers::decode_block(&block).expect("parses");
    assert_eq!(parsed.get("STREAMTYPE"), Some("stdout"));
    assert_eq!(
        parsed.get_all("x-multi").collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    // Two names on the wire, the second with "a\0b".
    assert_eq!(&block[..4], &[0, 0, 0, 2]);
    assert!(block.windows(3).any(|w| w == b"a\0b"));
}

#[test]
fn bad_header_blocks_are_refused_with_reasons() {
    let pair = |name: &[u8], value: &[u8]| {
        let mut b = Vec::new();
        b.extend_from_slice(&(name.len() as u32).to_be_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&(value.len() as u32).to_be_bytes());
        b.extend_from_slice(value);
        b
    };
    let block = |count: u32, pairs: &[Vec<u8>]| {
        let mut b = count.to_be_bytes().to_vec();
        for p in pairs {
            b.extend_from_slice(p);
        }
        b
    };
    let cases = [
        (block(1, &[pair(b"Upper", b"x")]), "lowercase"),
        (block(2, &[pair(b"a", b"x"), pair(b"a", b"y")]), "twice"),
        (block(1, &[pair(b"", b"x")]), "empty"),
        (block(1000, &[pair(b"a", b"x")]), "announced"),
        (block(1, &[pair(b"a", b"x"), vec![1]]), "after the last"),
        (block(1, &[pair(b"a", &[0xff, 0xfe])]), "UTF-8"),
        (vec![0, 0], "inside a length"),
    ];
    for (bytes, reason) in cases {
        match Headers::decode_block(&bytes) {
            Err(FrameError::BadHeaderBlock(msg)) => assert!(msg.contains(reason), "{msg}"),
            other => panic!("{reason}: {other:?}"),
        }
    }
    let mut truncated = block(1, &[pair(b"abc", b"xyz")]);
    truncated.truncate(10);
    assert!(Headers::decode_block(&truncated).is_err());
}

#[test]
fn a_bad_block_resets_only_its_stream() {
    // A block that inflates fine but has a duplicate name: the decoder says
    // which stream, and the context stays usable for the next frame.
    let mut compressor = HeaderCompressor::new().expect("compressor");
    let mut decompressor = HeaderDecompressor::new(1024);
    let good = compressor
        .compress(&Headers::new().with("a", "1"))
        .expect("compresses");
    assert_eq!(
        decompressor.decompress(&good).expect("inflates").get("a"),
        Some("1")
    );
    let mut raw = Vec::new();
    raw.extend_from_slice(&2u32.to_be_bytes());
    for _ in 0..2 {
        raw.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'x']);
    }
    let mut zlib = flate2::Compress::new(flate2::Compression::default(), true);
    zlib.set_dictionary(super::dictionary())
        .expect("dictionary");
    let mut bad = Vec::with_capacity(256);
    zlib.compress_vec(&raw, &mut bad, flate2::FlushCompress::Sync)
        .expect("compresses");
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0x80, 3, 0, 2, 0]);
    frame.extend_from_slice(&((4 + bad.len()) as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[0, 0, 0, 6]);
    frame.extend_from_slice(&bad);
    let decoded = decode_all(frame).expect("the session survives");
    assert!(
        matches!(decoded[..], [Decoded::BadHeaders { stream_id: 6, .. }]),
        "{decoded:?}"
    );
}

#[test]
fn header_blocks_that_inflate_too_far_are_refused() {
    let mut compressor = HeaderCompressor::new().expect("compressor");
    let big = Headers::new().with("big", &"x".repeat(10_000));
    let compressed = compressor.compress(&big).expect("compresses");
    assert!(compressed.len() < 1000, "compresses well");
    let mut decompressor = HeaderDecompressor::new(4096);
    assert_eq!(
        decompressor.decompress(&compressed),
        Err(FrameError::HeaderBlockTooLarge { max: 4096 })
    );
}

#[test]
fn garbage_where_a_compressed_block_belongs_ends_the_session() {
    let mut frame = BytesMut::from(&[0x80, 3, 0, 2, 0, 0, 0, 12, 0, 0, 0, 1][..]);
    frame.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
    let err = decode_all(frame).expect_err("refused");
    assert!(matches!(err, FrameError::Compression(_)), "{err:?}");
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1], "version 2"),
        (vec![0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1], "PING"),
        (vec![0x80, 3, 0, 6, 1, 0, 0, 4, 0, 0, 0, 1], "flags"),
        (
            vec![0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
            "stream id or status 0",
        ),
        (vec![0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1], "RST_STREAM"),
        (
            vec![0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
            "delta of 0",
        ),
        (
            vec![0x80, 3, 0, 4, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0],
            "entries announced",
        ),
        (
            vec![0x80, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0],
            "shorter than 10",
        ),
        (vec![0x80, 3, 0, 2, 0, 0, 0, 2, 0, 0], "shorter than 4"),
        (vec![0, 0, 0, 0, 0, 0, 0, 1, 9], "stream id 0"),
        (vec![0x80, 3, 0, 6, 0, 0x10, 0, 1], "limit"),
    ];
    for (bytes, what) in cases {
        let err = decode_all(BytesMut::from(&bytes[..])).expect_err(what);
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
}

#[test]
fn truncated_frames_wait_for_more_bytes() {
    let whole = encode(&Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: exec_headers(),
    });
    let mut decoder = FrameDecoder::new(1 << 20, 64 * 1024);
    let mut buf = BytesMut::new();
    for (i, byte) in whole.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let got = decoder
            .decode(&mut buf)
            .expect("no error on a partial frame");
        assert_eq!(got.is_some(), i == whole.len() - 1, "byte {i}");
    }
}

#[test]
fn oversized_frames_are_refused_before_they_are_buffered() {
    let mut decoder = FrameDecoder::new(1024, 1024);
    // Only the 8-byte header of a 1025-byte DATA frame has arrived.
    let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 0, 4, 1][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(FrameError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    );
    let mut encoder = FrameEncoder::new().expect("encoder");
    let huge = Frame::Data {
        stream_id: 1,
        fin: false,
        data: Bytes::from(vec![0; MAX_LENGTH + 1]),
    };
    assert!(matches!(
        encoder.encode(&huge, &mut BytesMut::new()),
        Err(FrameError::FrameTooLarge { .. })
    ));
}

#[test]
fn unknown_control_frames_are_skipped() {
    let mut buf = BytesMut::from(&[0x80, 3, 0, 10, 0, 0, 0, 2, 0xaa, 0xbb][..]);
    buf.extend_from_slice(&encode(&Frame::Ping { id: 2 }));
    let decoded = decode_all(buf).expect("decodes");
    assert_eq!(
        decoded,
        vec![Decoded::Skipped(10), Decoded::Frame(Frame::Ping { id: 2 })]
    );
}

#[test]
fn status_names_read_as_the_draft_spells_them() {
    assert_eq!(RstStatus::REFUSED_STREAM.to_string(), "REFUSED_STREAM");
    assert_eq!(RstStatus::FRAME_TOO_LARGE.to_string(), "FRAME_TOO_LARGE");
    assert_eq!(RstStatus(99).to_string(), "status 99");
    assert_eq!(RstStatus(0).to_string(), "status 0");
}
