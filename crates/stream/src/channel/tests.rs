//! Tests of the channel protocols' facts.

use super::portforward::*;
use super::wire::*;
use super::*;
use crate::spdy::Headers;

#[test]
fn stream_types_map_to_headers_and_channels() {
    for (i, t) in StreamType::ALL.into_iter().enumerate() {
        assert_eq!(usize::from(t.channel()), i);
        assert_eq!(StreamType::from_channel(t.channel()), Some(t));
        assert_eq!(StreamType::from_header(t.header_value()), Some(t));
    }
    assert_eq!(StreamType::Resize.header_value(), "resize");
    assert_eq!(StreamType::from_channel(5), None);
    assert_eq!(StreamType::from_header("STDIN"), None);
}

#[test]
fn versions_differ_in_resize_and_status() {
    assert_eq!(
        ExecVersion::from_name("v4.channel.k8s.io"),
        Some(ExecVersion::V4)
    );
    assert_eq!(
        ExecVersion::from_name("channel.k8s.io"),
        Some(ExecVersion::V1)
    );
    assert_eq!(ExecVersion::from_name("v6.channel.k8s.io"), None);
    // error + stdin + stdout, and resize only with a tty from v3 on.
    assert_eq!(ExecVersion::V2.expected_streams(true, true, false, true), 3);
    assert_eq!(ExecVersion::V3.expected_streams(true, true, false, true), 4);
    assert_eq!(
        ExecVersion::V5.expected_streams(false, true, true, false),
        3
    );
    let failed = ExitStatus::from_code(2, "exit status 2");
    assert_eq!(
        ExecVersion::V3.error_stream_bytes(&ExitStatus::Success),
        b""
    );
    assert_eq!(
        ExecVersion::V3.error_stream_bytes(&failed),
        b"command terminated with non-zero exit code: exit status 2"
    );
    assert_eq!(
        ExecVersion::V4.error_stream_bytes(&failed),
        failed.to_json()
    );
}

#[test]
fn the_status_json_is_kubelets() {
    assert_eq!(
        String::from_utf8(ExitStatus::Success.to_json()).expect("utf-8"),
        r#"{"metadata":{},"status":"Success"}"#
    );
    assert_eq!(
        String::from_utf8(ExitStatus::from_code(3, "exit status 3").to_json()).expect("utf-8"),
        concat!(
            r#"{"metadata":{},"status":"Failure","#,
            r#""message":"command terminated with non-zero exit code: exit status 3","#,
            r#""reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        )
    );
    let internal = ExitStatus::Failure {
        message: "no such container".into(),
        reason: Some("InternalError".into()),
    };
    let json: serde_json::Value = serde_json::from_slice(&internal.to_json()).expect("json");
    assert_eq!(json["code"], 500);
    assert_eq!(json["reason"], "InternalError");
    assert_eq!(ExitStatus::from_code(0, "ignored"), ExitStatus::Success);
}

#[test]
fn statuses_parse_as_client_go_reads_them() {
    for status in [
        ExitStatus::Success,
        ExitStatus::from_code(137, "exit status 137"),
        ExitStatus::Failure {
            message: "boom".into(),
            reason: None,
        },
    ] {
        assert_eq!(ExitStatus::from_json(&status.to_json()), Ok(status));
    }
    // As the API server sends it, with kind and apiVersion.
    let full = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"x","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}"#;
    assert!(matches!(
        ExitStatus::from_json(full),
        Ok(ExitStatus::ExitCode { code: 42, .. })
    ));
    let bad: [&[u8]; 4] = [
        b"not json",
        br#"{"status":"Maybe"}"#,
        br#"{"status":"Failure","reason":"NonZeroExitCode"}"#,
        br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}"#,
    ];
    for bytes in bad {
        assert!(
            matches!(
                ExitStatus::from_json(bytes),
                Err(ChannelError::BadStatus(_))
            ),
            "{bytes:?}"
        );
    }
}

#[test]
fn resizes_are_cut_out_of_any_pieces() {
    let mut decoder = ResizeDecoder::default();
    let wire = [
        TerminalSize {
            width: 80,
            height: 24,
        }
        .to_json(),
        TerminalSize {
            width: 120,
            height: 40,
        }
        .to_json(),
    ]
    .concat();
    assert_eq!(&wire[..24], br#"{"Width":80,"Height":24}"#);
    let mut sizes = Vec::new();
    for piece in wire.chunks(5) {
        sizes.extend(decoder.push(piece).expect("valid"));
    }
    assert_eq!(
        sizes,
        vec![
            TerminalSize {
                width: 80,
                height: 24
            },
            TerminalSize {
                width: 120,
                height: 40
            }
        ]
    );
    assert!(decoder.push(b"{\"Width\":\"wide\"}").is_err());
    let mut endless = ResizeDecoder::default();
    let mut err = None;
    for _ in 0..1000 {
        if let Err(e) = endless.push(b"{\"Width\":1, \"x\": \"aaaaaaaaaa") {
            err = Some(e);
            break;
        }
    }
    assert!(
        matches!(err, Some(ChannelError::BadResize(_))),
        "an endless message is refused"
    );
}

#[test]
fn binary_channels_prefix_the_channel_byte() {
    assert_eq!(
        encode(Encoding::Binary, 1, b"\n"),
        Payload::Binary(vec![1, 10])
    );
    assert_eq!(
        decode(Encoding::Binary, false, &[0, 102, 111, 111, 10]),
        Ok(Some(ChannelMessage::Data {
            channel: 0,
            data: b"foo\n".to_vec()
        }))
    );
    assert_eq!(decode(Encoding::Binary, true, &[]), Ok(None));
}

#[test]
fn base64_channels_use_an_ascii_digit() {
    assert_eq!(
        encode(Encoding::Base64, 0, b"foo\n"),
        Payload::Text("0Zm9vCg==".into())
    );
    assert_eq!(
        decode(Encoding::Base64, false, b"1Cg=="),
        Ok(Some(ChannelMessage::Data {
            channel: 1,
            data: b"\n".to_vec()
        }))
    );
    assert!(matches!(
        decode(Encoding::Base64, false, b"1***"),
        Err(ChannelError::BadMessage(_))
    ));
}

#[test]
fn v5_closes_channels_with_255() {
    assert_eq!(encode_close(0), Payload::Binary(vec![255, 0]));
    assert_eq!(
        decode(Encoding::Binary, true, &[255, 0]),
        Ok(Some(ChannelMessage::Close { channel: 0 }))
    );
    // Before v5, 255 is just a channel number nobody uses.
    assert_eq!(
        decode(Encoding::Binary, false, &[255, 0]),
        Ok(Some(ChannelMessage::Data {
            channel: 255,
            data: vec![0]
        }))
    );
    assert!(decode(Encoding::Binary, true, &[255]).is_err());
    assert!(decode(Encoding::Binary, true, &[255, 0, 1]).is_err());
}

#[test]
fn port_forward_streams_read_their_headers() {
    let data = PortStream {
        kind: PortStreamType::Data,
        port: 8080,
        request_id: "7".into(),
    };
    assert_eq!(
        PortStream::from_headers(&data.headers(), 9),
        Ok(data.clone())
    );
    assert_eq!(data.headers().get("requestid"), Some("7"));
    // Old clients: no requestID; the error stream comes first.
    let old_error = Headers::new()
        .with("streamType", "error")
        .with("port", "80");
    let old_data = Headers::new().with("streamType", "data").with("port", "80");
    assert_eq!(
        PortStream::from_headers(&old_error, 5)
            .expect("error")
            .request_id,
        "5"
    );
    assert_eq!(
        PortStream::from_headers(&old_data, 7)
            .expect("data")
            .request_id,
        "5"
    );
    for (headers, what) in [
        (Headers::new().with("streamType", "data"), "no port"),
        (
            Headers::new().with("streamType", "data").with("port", "0"),
            "> 0",
        ),
        (
            Headers::new()
                .with("streamType", "data")
                .with("port", "70000"),
            "unable to parse",
        ),
        (
            Headers::new()
                .with("streamType", "stdin")
                .with("port", "80"),
            "stream type",
        ),
    ] {
        let err = PortStream::from_headers(&headers, 1).expect_err(what);
        assert!(err.to_string().contains(what), "{err}");
    }
}

#[test]
fn websocket_port_forward_pairs_channels_per_port() {
    assert_eq!(
        ports_from_query(["80,443", "8080"]),
        Ok(vec![80, 443, 8080])
    );
    assert!(ports_from_query([]).is_err());
    assert!(ports_from_query([""]).is_err());
    assert!(ports_from_query(["80,x"]).is_err());
    assert_eq!(ws_channels(0), Some((0, 1)));
    assert_eq!(ws_channels(2), Some((4, 5)));
    assert_eq!(ws_channels(128), None);
    assert_eq!(ws_channel_port(5), (2, PortStreamType::Error));
    assert_eq!(ws_channel_port(4), (2, PortStreamType::Data));
    assert_eq!(ws_port_prefix(8080), [0x90, 0x1f]);
}
