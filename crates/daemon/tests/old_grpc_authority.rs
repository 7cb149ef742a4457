//! Old grpc-go clients (crictl, kubelet up to about 1.29) that dial the unix
//! socket with a custom dialer send the socket *path* as `:authority`. h2
//! resets such a stream with PROTOCOL_ERROR; behind `authority::incoming`
//! the request is served.
//!
//! The client here speaks raw HTTP/2 the way grpc-go does (h2's own client
//! refuses a path authority): Huffman-coded literals with incremental
//! indexing, so the second request sends `:authority` by dynamic index.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_cri_api::v1;
use crius_cri_api::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use crius_daemon::authority;
use httlib_hpack::Encoder;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;

/// grpc-go's encoder: indexed when in the table, else a Huffman-coded
/// literal with incremental indexing.
const GRPC_GO: u8 =
    Encoder::BEST_FORMAT | Encoder::WITH_INDEXING | Encoder::HUFFMAN_NAME | Encoder::HUFFMAN_VALUE;

fn version_response() -> v1::VersionResponse {
    v1::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "crius-test".into(),
        runtime_version: "1.2.3".into(),
        runtime_api_version: "v1".into(),
    }
}

/// A RuntimeService that only answers `Version`.
struct TestRuntime;

macro_rules! test_runtime {
    (
        unary { $($method:ident($request:ident) -> $response:ident;)* }
        streams { $($smethod:ident($srequest:ident) -> $stype:ident($sresponse:ident);)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for TestRuntime {
            async fn version(
                &self,
                _: Request<v1::VersionRequest>,
            ) -> Result<Response<v1::VersionResponse>, Status> {
                Ok(Response::new(version_response()))
            }

            type GetContainerEventsStream =
                tokio_stream::Empty<Result<v1::ContainerEventResponse, Status>>;

            async fn get_container_events(
                &self,
                _: Request<v1::GetEventsRequest>,
            ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
                Err(Status::unimplemented("get_container_events"))
            }

            $(
                async fn $method(
                    &self,
                    _: Request<v1::$request>,
                ) -> Result<Response<v1::$response>, Status> {
                    Err(Status::unimplemented(stringify!($method)))
                }
            )*

            $(
                type $stype = tokio_stream::Empty<Result<v1::$sresponse, Status>>;

                async fn $smethod(
                    &self,
                    _: Request<v1::$srequest>,
                ) -> Result<Response<Self::$stype>, Status> {
                    Err(Status::unimplemented(stringify!($smethod)))
                }
            )*
        }
    };
}

test_runtime! {
    unary {
    run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    create_container(CreateContainerRequest) -> CreateContainerResponse;
    start_container(StartContainerRequest) -> StartContainerResponse;
    stop_container(StopContainerRequest) -> StopContainerResponse;
    remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    list_containers(ListContainersRequest) -> ListContainersResponse;
    container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    exec(ExecRequest) -> ExecResponse;
    attach(AttachRequest) -> AttachResponse;
    port_forward(PortForwardRequest) -> PortForwardResponse;
    container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    status(StatusRequest) -> StatusResponse;
    checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
    list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
    list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
    }
    streams {
        stream_pod_sandboxes(StreamPodSandboxesRequest) -> StreamPodSandboxesStream(StreamPodSandboxesResponse);
        stream_containers(StreamContainersRequest) -> StreamContainersStream(StreamContainersResponse);
        stream_container_stats(StreamContainerStatsRequest) -> StreamContainerStatsStream(StreamContainerStatsResponse);
        stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsStream(StreamPodSandboxStatsResponse);
        stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsStream(StreamPodSandboxMetricsResponse);
    }
}

/// A tonic server on a unix socket in a temporary directory.
struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    /// Serves [`TestRuntime`], through the authority fix or not.
    fn start(with_fix: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("crius.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let router =
            tonic::transport::Server::builder().add_service(RuntimeServiceServer::new(TestRuntime));
        let task = if with_fix {
            tokio::spawn(
                router.serve_with_incoming_shutdown(authority::incoming(listener), shutdown),
            )
        } else {
            tokio::spawn(
                router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown),
            )
        };
        Self {
            _dir: dir,
            socket,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        match result {
            Ok(Ok(Ok(()))) => {}
            other => panic!("server did not stop cleanly: {other:?}"),
        }
    }
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// How the server ended a request.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Response headers, the message bytes and the trailers.
    Answered {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
    },
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
}

/// An HTTP/2 client that behaves like grpc-go before it sent `localhost`.
struct OldGrpcGo {
    conn: UnixStream,
    encoder: Encoder<'static>,
    decoder: loona_hpack::Decoder<'static>,
    authority: String,
}

impl OldGrpcGo {
    /// Connects and sends the preface, its SETTINGS and a connection
    /// WINDOW_UPDATE, as grpc-go does; `:authority` will be the socket path.
    async fn connect(socket: &Path) -> Self {
        let mut conn = UnixStream::connect(socket).await.expect("connect");
        let mut hello = PREFACE.to_vec();
        // SETTINGS_MAX_HEADER_LIST_SIZE = 16 MiB.
        hello.extend(frame(SETTINGS, 0, 0, &[0, 6, 1, 0, 0, 0]));
        hello.extend(frame(WINDOW_UPDATE, 0, 0, &0x0e_ffffu32.to_be_bytes()));
        conn.write_all(&hello).await.expect("write preface");
        Self {
            conn,
            encoder: Encoder::default(),
            decoder: loona_hpack::Decoder::new(),
            authority: socket.display().to_string(),
        }
    }

    /// Sends RuntimeService/Version on `stream`; returns the bytes the
    /// `:authority` field was encoded as.
    async fn send_version(&mut self, stream: u32) -> Vec<u8> {
        let fields: [(&str, &str); 7] = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", &self.authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.58.3"),
            ("te", "trailers"),
        ];
        let mut block = Vec::new();
        let mut authority = Vec::new();
        for (name, value) in fields {
            let mut field = Vec::new();
            let encoded = self.encoder.encode(
                (name.as_bytes().to_vec(), value.as_bytes().to_vec(), GRPC_GO),
                &mut field,
            );
            assert!(encoded.is_ok(), "encoding {name}: {encoded:?}");
            if name == ":authority" {
                authority = field.clone();
            }
            block.extend(field);
        }
        let message = v1::VersionRequest {
            version: "v1alpha2".into(),
        }
        .encode_to_vec();
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend(message);
        let mut out = frame(HEADERS, END_HEADERS, stream, &block);
        out.extend(frame(DATA, END_STREAM, stream, &body));
        self.conn.write_all(&out).await.expect("write request");
        authority
    }

    async fn read_frame(&mut self) -> Frame {
        let mut head = [0u8; 9];
        self.conn
            .read_exact(&mut head)
            .await
            .expect("read frame header");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.conn
            .read_exact(&mut payload)
            .await
            .expect("read frame");
        Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        }
    }

    /// Reads a header block starting with `first` and decodes it.
    async fn header_block(&mut self, first: Frame) -> Vec<(String, String)> {
        assert_eq!(first.flags & 0x28, 0, "no padding or priority from h2");
        let mut block = first.payload;
        let mut flags = first.flags;
        while flags & END_HEADERS == 0 {
            let next = self.read_frame().await;
            assert_eq!(next.kind, CONTINUATION);
            flags = next.flags;
            block.extend(next.payload);
        }
        match self.decoder.decode(&block) {
            Ok(list) => list
                .into_iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(&n).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect(),
            Err(e) => panic!("decoding the server's headers: {e:?}"),
        }
    }

    /// Reads frames (answering SETTINGS and PING) until `stream` ends.
    async fn outcome(&mut self, stream: u32) -> Outcome {
        let mut headers = None;
        let mut body = Vec::new();
        loop {
            let f = self.read_frame().await;
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => {
                    let ack = frame(SETTINGS, ACK, 0, &[]);
                    self.conn.write_all(&ack).await.expect("write");
                }
                PING if f.flags & ACK == 0 => {
                    let pong = frame(PING, ACK, 0, &f.payload);
                    self.conn.write_all(&pong).await.expect("write");
                }
                GOAWAY => {
                    let code = f.payload.get(4..8).map(|c| [c[0], c[1], c[2], c[3]]);
                    return Outcome::GoAway(u32::from_be_bytes(code.unwrap_or_default()));
                }
                RST_STREAM if f.stream == stream => {
                    let code = f.payload.get(..4).map(|c| [c[0], c[1], c[2], c[3]]);
                    return Outcome::Reset(u32::from_be_bytes(code.unwrap_or_default()));
                }
                HEADERS => {
                    let (of_stream, end) = (f.stream, f.flags & END_STREAM != 0);
                    // Decoded whatever stream it is for: the table must follow.
                    let list = self.header_block(f).await;
                    if of_stream != stream {
                        continue;
                    }
                    match headers.take() {
                        None if !end => headers = Some(list),
                        None => {
                            // Trailers-only response.
                            return Outcome::Answered {
                                headers: Vec::new(),
                                body,
                                trailers: list,
                            };
                        }
                        Some(h) => {
                            assert!(end, "trailers end the stream");
                            return Outcome::Answered {
                                headers: h,
                                body,
                                trailers: list,
                            };
                        }
                    }
                }
                DATA if f.stream == stream => body.extend(f.payload),
                _ => {}
            }
        }
    }

    async fn call_version(&mut self, stream: u32) -> (Vec<u8>, Outcome) {
        let authority = self.send_version(stream).await;
        let outcome = tokio::time::timeout(Duration::from_secs(10), self.outcome(stream))
            .await
            .expect("no answer within 10 s");
        (authority, outcome)
    }
}

fn header<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn assert_version_answer(outcome: Outcome) {
    let Outcome::Answered {
        headers,
        body,
        trailers,
    } = outcome
    else {
        panic!("no answer: {outcome:?}");
    };
    assert_eq!(header(&headers, ":status"), Some("200"), "{headers:?}");
    assert_eq!(header(&trailers, "grpc-status"), Some("0"), "{trailers:?}");
    assert!(body.len() >= 5, "body {body:?}");
    assert_eq!(body[0], 0, "uncompressed");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + len);
    let response = v1::VersionResponse::decode(&body[5..]).expect("VersionResponse");
    assert_eq!(response, version_response());
}

#[tokio::test]
async fn old_grpc_go_with_socket_path_authority_is_served() {
    let server = Server::start(true);
    let mut client = OldGrpcGo::connect(&server.socket).await;
    assert!(client.authority.starts_with('/'));

    let (authority, outcome) = client.call_version(1).await;
    // A Huffman-coded literal with incremental indexing of static name 1.
    assert_eq!(authority[0], 0x41, "{authority:x?}");
    assert_ne!(authority[1] & 0x80, 0, "{authority:x?}");
    assert_version_answer(outcome);

    // Again on the same connection: now `:authority` goes by dynamic index.
    let (authority, outcome) = client.call_version(3).await;
    assert_eq!(authority.len(), 1, "{authority:x?}");
    assert!(authority[0] >= 0x80 | 62, "{authority:x?}");
    assert_version_answer(outcome);

    // And a third time on a second connection.
    let mut other = OldGrpcGo::connect(&server.socket).await;
    assert_version_answer(other.call_version(1).await.1);
    drop((client, other));
    server.stop().await;
}

#[tokio::test]
async fn without_the_fix_h2_resets_the_stream() {
    let server = Server::start(false);
    let mut client = OldGrpcGo::connect(&server.socket).await;
    let (_, outcome) = client.call_version(1).await;
    assert_eq!(outcome, Outcome::Reset(PROTOCOL_ERROR));
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn current_clients_still_work_through_the_fix() {
    let server = Server::start(true);
    let channel =
        tonic::transport::Endpoint::from_shared(format!("unix://{}", server.socket.display()))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
    let mut client = v1::runtime_service_client::RuntimeServiceClient::new(channel);
    for _ in 0..3 {
        let response = client
            .version(v1::VersionRequest {
                version: "v1".into(),
            })
            .await
            .expect("Version");
        assert_eq!(response.into_inner(), version_response());
    }
    let status = client
        .status(v1::StatusRequest { verbose: false })
        .await
        .expect_err("Status is unimplemented here");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    drop(client);
    server.stop().await;
}
