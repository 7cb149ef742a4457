use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::*;

struct Fixed;

impl Census for Fixed {
    fn pod_states(&self) -> &'static [&'static str] {
        &["ready", "notready"]
    }
    fn container_states(&self) -> &'static [&'static str] {
        &["created", "running", "exited", "unknown"]
    }
    fn handlers(&self) -> Vec<String> {
        vec!["runc".into(), "kata".into()]
    }
    fn pods(&self) -> Vec<Count> {
        vec![Count {
            state: "ready",
            runtime_handler: "runc".into(),
            count: 3,
        }]
    }
    fn containers(&self) -> Vec<Count> {
        vec![
            Count {
                state: "running",
                runtime_handler: "runc".into(),
                count: 2,
            },
            Count {
                state: "exited",
                runtime_handler: "gvisor".into(),
                count: 1,
            },
        ]
    }
}

/// The value of the sample `series` (name and labels as printed) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn each_family_is_named_by_prometheus_conventions_and_counts() {
    let m = Metrics::new("1.2.3");
    m.rpc("RunPodSandbox", "OK", Duration::from_millis(70));
    m.rpc("RunPodSandbox", "OK", Duration::from_millis(90));
    m.rpc(
        "RunPodSandbox",
        "InvalidArgument",
        Duration::from_micros(300),
    );
    m.containerd_call("Tasks/Create", Duration::from_millis(20));
    m.cni(CniOp::Add, true, Duration::from_millis(40));
    m.cni(CniOp::Del, false, Duration::from_millis(5));
    m.image_pull(true, Duration::from_secs(1));
    m.pulled_bytes(1234);
    m.recovery(Duration::from_millis(250));
    let text = m.encode();
    let expect = [
        ("crius_build_info{version=\"1.2.3\"}", 1.0),
        (
            "crius_grpc_requests_total{method=\"RunPodSandbox\",code=\"OK\"}",
            2.0,
        ),
        (
            "crius_grpc_requests_total{method=\"RunPodSandbox\",code=\"InvalidArgument\"}",
            1.0,
        ),
        (
            "crius_grpc_request_duration_seconds_count{method=\"RunPodSandbox\"}",
            3.0,
        ),
        (
            "crius_grpc_request_duration_seconds_bucket{le=\"0.064\",method=\"RunPodSandbox\"}",
            1.0,
        ),
        (
            "crius_containerd_request_duration_seconds_count{method=\"Tasks/Create\"}",
            1.0,
        ),
        ("crius_cni_operations_total{op=\"add\",result=\"ok\"}", 1.0),
        (
            "crius_cni_operations_total{op=\"del\",result=\"failed\"}",
            1.0,
        ),
        ("crius_image_pulls_total{result=\"ok\"}", 1.0),
        ("crius_image_pull_bytes_total", 1234.0),
        ("crius_image_pull_duration_seconds_count", 1.0),
        ("crius_recovery_duration_seconds", 0.25),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn the_census_reports_every_state_of_every_handler() {
    let m = Metrics::new("0");
    assert!(
        !m.encode().contains("crius_pods"),
        "no census yet, no pod gauges"
    );
    m.set_census(Box::new(Fixed));
    let text = m.encode();
    let expect = [
        ("crius_pods{state=\"ready\",runtime_handler=\"runc\"}", 3.0),
        (
            "crius_pods{state=\"notready\",runtime_handler=\"runc\"}",
            0.0,
        ),
        ("crius_pods{state=\"ready\",runtime_handler=\"kata\"}", 0.0),
        (
            "crius_containers{state=\"running\",runtime_handler=\"runc\"}",
            2.0,
        ),
        (
            "crius_containers{state=\"created\",runtime_handler=\"kata\"}",
            0.0,
        ),
        // A handler no longer configured still shows what it runs.
        (
            "crius_containers{state=\"exited\",runtime_handler=\"gvisor\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE crius_pods gauge"),
        "the pod family is typed: {text}"
    );
}

#[test]
fn a_streaming_session_is_open_until_dropped() {
    let m = Metrics::new("0");
    let open = "crius_streaming_sessions_open{kind=\"exec\"}";
    let a = m.session(StreamKind::Exec);
    let b = m.session(StreamKind::Exec);
    let _c = m.session(StreamKind::PortForward);
    assert_eq!(sample(&m.encode(), open), Some(2.0));
    drop(a);
    drop(b);
    let text = m.encode();
    assert_eq!(sample(&text, open), Some(0.0));
    assert_eq!(
        sample(&text, "crius_streaming_sessions_total{kind=\"exec\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "crius_streaming_sessions_open{kind=\"portforward\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_endpoint_answers_get_and_head_on_metrics_only() {
    let m = Metrics::new("9");
    let get = serve::respond(&m, &Method::GET, "/metrics");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(
        get.headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(CONTENT_TYPE.as_bytes())
    );
    let body = get.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("crius_build_info"));
    let head = serve::respond(&m, &Method::HEAD, "/metrics");
    assert_eq!(head.status(), StatusCode::OK);
    let other = serve::respond(&m, &Method::GET, "/");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let post = serve::respond(&m, &Method::POST, "/metrics");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_endpoint_serves_over_tcp_and_stops() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, global(), stop.clone()));
    global().rpc("Version", "OK", Duration::from_millis(1));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("crius_grpc_requests_total{method=\"Version\",code=\"OK\"} "),
        "{answer}"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the endpoint stops")
        .expect("no panic");
}

use tokio_util::sync::CancellationToken;
