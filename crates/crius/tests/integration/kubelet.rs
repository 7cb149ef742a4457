//! A replay of what a real kubelet 1.36 asked of its CRI runtime.
//!
//! `tests/fixtures/kubelet-1.36/calls.jsonl` records the CRI calls a kubelet
//! v1.36.2 made to containerd 1.6's CRI plugin while it ran the four static
//! pods of `manifests.yaml` beside it (its `README.md` says how it was made).
//! This test sends the same calls to `criusd` over its socket and checks that
//! each one answers with the recorded gRPC code and a response that agrees
//! with the recorded one, and that the pods ran as they did there.
//!
//! How the recording is replayed:
//! - Requests are built from their proto3 JSON by reflection (prost-reflect
//!   on cri-api's descriptor set), so every field kubelet sent is sent, with
//!   its presence (`run_as_user: {}` is uid 0, not "unset"); a field this
//!   proto does not know fails the test. Responses are turned back into the
//!   same JSON form to be compared with the recorded ones.
//! - Rewritten in requests and recorded responses alike: `$ROOT` (a temp
//!   dir), the recorded ids (to those crius answered), the two images
//!   (busybox to `crius-test/busybox`, nginx to `crius-test/distinct-a`, with
//!   their image ids and repo digests), the web pod's host port (a free one,
//!   not 18080) and the web container's command: it had none (nginx's own);
//!   here busybox `httpd` serves a page on port 80, and exits on SIGTERM as
//!   nginx does.
//! - The state before the first call is rebuilt: the four sandboxes the
//!   kubelet's previous run left (the answer of ListPodSandbox #2: three
//!   ready, one not; their configs are not in the recording, so they get
//!   their metadata, labels and annotations only), busybox present and nginx
//!   not.
//! - What kubelet does besides CRI is done here: before CreateContainer it
//!   creates what the container mounts (`etc-hosts`, the termination-log
//!   file, emptyDir volume directories; the hostPath volume with the
//!   `from-host` file it held). The pod log directory is NOT created: crius
//!   must create a missing one itself, as containerd does.
//! - Timing: a call starts once every call that had ended before it started
//!   in the recording has ended here, so calls that overlapped there (four
//!   RunPodSandbox, three 30 s StopContainer) overlap here. The recorded
//!   gaps are not slept through; where an outcome depended on time passing,
//!   the replay waits for that outcome, with a bound: a ContainerStatus that
//!   was EXITED polls until it is, a probe's ExecSync is retried (kubelet
//!   retries its probes) until it answers as recorded, a restart
//!   (CreateContainer of attempt N) waits for attempt N-1 to have exited,
//!   RemoveContainer (kubelet's garbage collector removes only exited
//!   containers) waits for its container to have exited, and StopPodSandbox
//!   waits for the pod's containers that exit by themselves (the recording
//!   stopped the crashing pod 27 s after its last start).
//! - Beyond the calls, the pods are checked: exit codes of the crashing and
//!   init containers, the log files kubelet named (`prepared-by-init` in the
//!   init pod's app), and the web pod answering HTTP on its host port.
//! - Skipped: `Exec` and `PortForward`. They hand out a URL of the streaming
//!   server, which is a later issue.
//! - Where crius does better than containerd 1.6, said here and accepted:
//!   RuntimeConfig answered UNIMPLEMENTED there; crius may answer OK, with
//!   the cgroupfs driver (what the kubelet was using).
//!
//! Every difference is collected; the test fails at the end with the list.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use crius_testkit::images as ti;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Value, json};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::Env;
use crate::pods::PodEnv;

crate::tests![kubelet_1_36_replay];

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubelet-1.36");

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const NGINX: &str = "registry.k8s.io/e2e-test-images/nginx:1.14-2";
/// The recorded images and the test images that stand in for them.
const IMAGES: &[(&str, &str)] = &[(BUSYBOX, ti::BUSYBOX), (NGINX, ti::DISTINCT_A)];
const RECORDED_HOST_PORT: u64 = 18080;

/// What the web container serves in nginx's place.
const WEB_PAGE: &str = "hello-from-web";
const WEB_COMMAND: &str = "trap 'exit 0' TERM; mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 80 -h /www & wait";

/// Calls not replayed (see the module doc).
const SKIPPED: &[&str] = &["Exec", "PortForward"];

/// Exit codes of the containers that exit by themselves (manifests.yaml).
const EXIT_CODES: &[(&str, i64)] = &[("crash", 3), ("prep", 0)];
/// Lines each container writes to stdout (manifests.yaml).
const LOG_LINES: &[(&str, &[&str])] = &[
    ("crash", &["crashing"]),
    ("main", &["hello-from-e2e", "line 0"]),
    ("app", &["prepared-by-init"]),
];

/// How long the replay waits for an outcome that takes time.
const WAIT: Duration = Duration::from_secs(30);
/// How long a probe's ExecSync is retried.
const PROBE_WAIT: Duration = Duration::from_secs(10);

async fn kubelet_1_36_replay(env: Arc<Env>) -> anyhow::Result<()> {
    let calls = load()?;
    let mut pods = PodEnv::start(&env).await?;
    let root = tempfile::Builder::new()
        .prefix("crius-kubelet-")
        .tempdir_in("/tmp")?;
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let channel = crius_testkit::client::channel(pods.daemon().socket()).await?;
    let mut replay = Replay::new(&env, &calls, channel, root.path(), host_port)?;
    let result = replay.run(&calls).await;
    // Whatever happened, take everything down and check nothing is left.
    let cleanup = pods.remove_all_and_check().await;
    result?;
    if !replay.failures.is_empty() {
        bail!(
            "{} of {} calls differ from the recording:\n  {}\n\ntranscript:\n  {}",
            replay.failures.len(),
            calls.len(),
            replay.failures.join("\n  "),
            replay.transcript.join("\n  ")
        );
    }
    cleanup
}

// ---------------------------------------------------------------------------
// The recording

#[derive(Debug, Clone)]
struct Call {
    index: usize,
    /// When it started, in seconds since the first call.
    t: f64,
    /// When it ended.
    end: f64,
    method: String,
    code: String,
    request: Value,
    response: Value,
}

impl Call {
    fn name(&self) -> &str {
        self.method.rsplit('/').next().unwrap_or_default()
    }
}

fn load() -> anyhow::Result<Vec<Call>> {
    let path = Path::new(FIXTURE_DIR).join("calls.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line)?;
            let t = v["t"].as_f64().context("t")?;
            Ok(Call {
                index: v["index"].as_u64().context("index")? as usize,
                t,
                end: t + v["ms"].as_f64().context("ms")? / 1000.0,
                method: v["method"].as_str().context("method")?.to_string(),
                code: v["code"].as_str().context("code")?.to_string(),
                request: v["request"].clone(),
                response: v["response"].clone(),
            })
        })
        .collect()
}

/// A container as kubelet created it in the recording.
#[derive(Debug, Clone)]
struct Container {
    sandbox: String,
    name: String,
    attempt: u64,
    /// The log file: the sandbox's log directory joined with the log path.
    log: String,
}

// ---------------------------------------------------------------------------
// CRI calls by reflection

/// Any CRI method, with requests and responses as proto3 JSON.
#[derive(Clone)]
struct Rpc {
    grpc: tonic::client::Grpc<Channel>,
    pool: DescriptorPool,
}

type Answer = Result<Value, tonic::Status>;

/// `request` with each `config.envs[].value` in the proto3 JSON form of
/// bytes (base64): the recording's cri-api had them as strings (the same
/// bytes on the wire), crius' v0.36 has them as bytes.
fn env_values_as_bytes(request: &Value) -> Value {
    use base64::Engine as _;
    let mut request = request.clone();
    if let Some(envs) = request
        .pointer_mut("/config/envs")
        .and_then(Value::as_array_mut)
    {
        for kv in envs {
            if let Some(v) = kv.get("value").and_then(Value::as_str) {
                let b = base64::engine::general_purpose::STANDARD.encode(v);
                kv["value"] = Value::String(b);
            }
        }
    }
    request
}

impl Rpc {
    fn new(channel: Channel) -> anyhow::Result<Rpc> {
        Ok(Rpc {
            grpc: tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20),
            pool: DescriptorPool::decode(crius_cri_api::FILE_DESCRIPTOR_SET)?,
        })
    }

    /// Calls `method` (`/runtime.v1.RuntimeService/Version`) with `request`;
    /// an error if the request does not convert, else crius' answer.
    async fn call(&self, method: &str, request: &Value) -> anyhow::Result<Answer> {
        let (service, name) = method
            .trim_start_matches('/')
            .split_once('/')
            .with_context(|| format!("method {method}"))?;
        let desc = self
            .pool
            .get_service_by_name(service)
            .with_context(|| format!("no service {service}"))?
            .methods()
            .find(|m| m.name() == name)
            .with_context(|| format!("no method {method}"))?;
        let message = DynamicMessage::deserialize(desc.input(), env_values_as_bytes(request))
            .with_context(|| format!("{method}: the request is no {}", desc.input().full_name()))?;
        let mut grpc = self.grpc.clone();
        grpc.ready().await.context("the CRI channel")?;
        let path = method.parse().context("method path")?;
        match grpc
            .unary(tonic::Request::new(message), path, DynCodec(desc.output()))
            .await
        {
            Ok(resp) => Ok(Ok(resp.into_inner().serialize_with_options(
                serde_json::value::Serializer,
                &SerializeOptions::new().use_proto_field_name(true),
            )?)),
            Err(status) => Ok(Err(status)),
        }
    }

    async fn container_status(&self, id: &str) -> anyhow::Result<Value> {
        let answer = self
            .call(
                "/runtime.v1.RuntimeService/ContainerStatus",
                &json!({ "container_id": id }),
            )
            .await?;
        Ok(answer.map_err(|s| anyhow::anyhow!("ContainerStatus {id}: {s}"))?["status"].clone())
    }

    /// Polls until `done` holds of the container's status, for up to [`WAIT`].
    async fn wait_container(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.container_status(id).await?;
            if done(state(&status, "CONTAINER_CREATED")) {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "{id} is not {what} after {WAIT:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The state of a status, `default` (enum value 0) if left out.
fn state<'a>(status: &'a Value, default: &'a str) -> &'a str {
    status["state"].as_str().unwrap_or(default)
}

/// A codec of dynamic messages: encodes any, decodes one type.
struct DynCodec(MessageDescriptor);

impl Codec for DynCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynEncoder;
    type Decoder = DynDecoder;

    fn encoder(&mut self) -> DynEncoder {
        DynEncoder
    }

    fn decoder(&mut self) -> DynDecoder {
        DynDecoder(self.0.clone())
    }
}

struct DynEncoder;

impl Encoder for DynEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding: {e}")))
    }
}

struct DynDecoder(MessageDescriptor);

impl Decoder for DynDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Self::Error> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding: {e}")))
    }
}

/// `NOT_FOUND` for [`tonic::Code::NotFound`]: the name the recording uses.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

// ---------------------------------------------------------------------------
// Rewriting

/// What changes between the recording and this machine.
struct Rewrite {
    /// Replaced wherever they occur in a string.
    subs: Vec<(String, String)>,
    host_port: u16,
}

impl Rewrite {
    fn new(env: &Env, calls: &[Call], root: &Path, host_port: u16) -> Rewrite {
        let mut subs = vec![
            ("$ROOT".to_string(), root.display().to_string()),
            (
                format!("\"hostPort\":{RECORDED_HOST_PORT}"),
                format!("\"hostPort\":{host_port}"),
            ),
        ];
        for (recorded, test) in IMAGES {
            subs.push((recorded.to_string(), env.images.reference(test)));
            // Its id and repo digests, as the recording answered them.
            for image in calls.iter().flat_map(recorded_images) {
                if image["repo_tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == recorded))
                {
                    if let Some(id) = image["id"].as_str() {
                        subs.push((id.to_string(), env.images.image_id(test)));
                    }
                    for digest in image["repo_digests"].as_array().into_iter().flatten() {
                        if let Some(d) = digest.as_str() {
                            subs.push((d.to_string(), env.images.repo_digest(test)));
                        }
                    }
                }
            }
        }
        subs.sort();
        subs.dedup();
        Rewrite { subs, host_port }
    }

    /// `v` with the substitutions made and the recorded ids in `ids`
    /// replaced by crius' ones.
    fn apply(&self, v: &Value, ids: &HashMap<String, String>) -> Value {
        match v {
            Value::String(s) => {
                if let Some(id) = ids.get(s) {
                    return Value::String(id.clone());
                }
                let mut s = s.clone();
                for (from, to) in &self.subs {
                    if s.contains(from.as_str()) {
                        s = s.replace(from.as_str(), to);
                    }
                }
                Value::String(s)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.apply(x, ids)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let x = if k == "host_port" && x.as_u64() == Some(RECORDED_HOST_PORT) {
                            json!(self.host_port)
                        } else {
                            self.apply(x, ids)
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// The images a recorded response describes (ImageStatus, ListImages).
fn recorded_images(call: &Call) -> Vec<Value> {
    let r = &call.response;
    match call.name() {
        "ImageStatus" if r["image"].is_object() => vec![r["image"].clone()],
        "ListImages" => r["images"].as_array().cloned().unwrap_or_default(),
        _ => vec![],
    }
}

// ---------------------------------------------------------------------------
// The replay

struct Flight {
    call: Call,
    expected: Value,
    handle: tokio::task::JoinHandle<(anyhow::Result<Answer>, Duration)>,
}

struct Replay {
    rpc: Rpc,
    rewrite: Rewrite,
    root: PathBuf,
    host_port: u16,
    /// Recorded id → crius' id.
    ids: HashMap<String, String>,
    /// Recorded id → the call that answered it (0: the state before).
    producers: HashMap<String, usize>,
    /// Recorded container id → what kubelet created.
    containers: HashMap<String, Container>,
    failures: Vec<String>,
    transcript: Vec<String>,
    /// Recorded ids of the containers removed.
    removed: HashSet<String>,
    /// The web pod was checked over HTTP.
    web_checked: bool,
}

impl Replay {
    fn new(
        env: &Env,
        calls: &[Call],
        channel: Channel,
        root: &Path,
        host_port: u16,
    ) -> anyhow::Result<Replay> {
        let mut producers = HashMap::new();
        let mut containers = HashMap::new();
        for call in calls {
            match call.name() {
                "RunPodSandbox" if call.code == "OK" => {
                    let id = call.response["pod_sandbox_id"]
                        .as_str()
                        .context("sandbox id")?;
                    producers.insert(id.to_string(), call.index);
                }
                "CreateContainer" if call.code == "OK" => {
                    let id = call.response["container_id"]
                        .as_str()
                        .context("container id")?;
                    producers.insert(id.to_string(), call.index);
                    let r = &call.request;
                    let config = &r["config"];
                    containers.insert(
                        id.to_string(),
                        Container {
                            sandbox: r["pod_sandbox_id"].as_str().context("sandbox")?.to_string(),
                            name: config["metadata"]["name"]
                                .as_str()
                                .context("name")?
                                .to_string(),
                            attempt: config["metadata"]["attempt"].as_u64().unwrap_or(0),
                            log: format!(
                                "{}/{}",
                                r["sandbox_config"]["log_directory"]
                                    .as_str()
                                    .context("log directory")?,
                                config["log_path"].as_str().context("log path")?
                            ),
                        },
                    );
                }
                _ => {}
            }
        }
        Ok(Replay {
            rpc: Rpc::new(channel)?,
            rewrite: Rewrite::new(env, calls, root, host_port),
            root: root.to_path_buf(),
            host_port,
            ids: HashMap::new(),
            producers,
            containers,
            failures: vec![],
            transcript: vec![],
            removed: HashSet::new(),
            web_checked: false,
        })
    }

    async fn run(&mut self, calls: &[Call]) -> anyhow::Result<()> {
        self.state_before(calls).await?;
        let mut order: Vec<&Call> = calls.iter().collect();
        order.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.index.cmp(&b.index)));
        let mut flying: Vec<Flight> = vec![];
        for call in order {
            // Every call that had ended when this one started.
            let (done, still): (Vec<Flight>, Vec<Flight>) =
                flying.into_iter().partition(|f| f.call.end <= call.t);
            flying = still;
            self.land(done).await;
            if SKIPPED.contains(&call.name()) {
                self.transcript.push(format!(
                    "#{} {}: skipped (streaming)",
                    call.index,
                    call.name()
                ));
                continue;
            }
            if let Some((id, producer)) = self.unanswered_id(&call.request) {
                self.fail(
                    call,
                    format!("(follows from #{producer}) not sent: it names {id}, which #{producer} did not answer"),
                );
                continue;
            }
            let request = match self.prepare(call) {
                Ok(r) => r,
                Err(e) => {
                    self.fail(call, format!("not sent: {e:#}"));
                    continue;
                }
            };
            if let Err(e) = self.before(call).await {
                self.fail(call, format!("before it: {e:#}"));
            }
            let expected = self.rewrite.apply(&call.response, &self.ids);
            let (rpc, c, exp) = (self.rpc.clone(), call.clone(), expected.clone());
            let handle = tokio::spawn(async move {
                let start = Instant::now();
                let answer = send(&rpc, &c, &request, &exp).await;
                (answer, start.elapsed())
            });
            flying.push(Flight {
                call: call.clone(),
                expected,
                handle,
            });
        }
        self.land(flying).await;
        if !self.web_checked {
            self.failures
                .push("the web pod was never checked over HTTP".to_string());
        }
        // Nothing is left.
        for (method, field) in [
            ("/runtime.v1.RuntimeService/ListPodSandbox", "items"),
            ("/runtime.v1.RuntimeService/ListContainers", "containers"),
        ] {
            let left = self.rpc.call(method, &json!({})).await??;
            if left[field].as_array().is_some_and(|a| !a.is_empty()) {
                self.failures
                    .push(format!("after the replay, {method} lists {}", left[field]));
            }
        }
        Ok(())
    }

    /// The state the recording starts from: busybox pulled, nginx not; the
    /// sandboxes of ListPodSandbox #2, stopped where not ready.
    async fn state_before(&mut self, calls: &[Call]) -> anyhow::Result<()> {
        let rpc = self.rpc.clone();
        let busybox = self.rewrite.apply(&json!(BUSYBOX), &self.ids);
        rpc.call(
            "/runtime.v1.ImageService/PullImage",
            &json!({ "image": { "image": busybox } }),
        )
        .await?
        .context("pulling busybox")?;
        let first = calls
            .iter()
            .find(|c| c.name() == "ListPodSandbox")
            .context("no ListPodSandbox")?;
        for item in first.response["items"].as_array().into_iter().flatten() {
            let recorded = item["id"].as_str().context("id")?;
            // The namespaces its PodSandboxStatus reports.
            let namespaces = calls
                .iter()
                .find(|c| {
                    c.name() == "PodSandboxStatus" && c.request["pod_sandbox_id"] == item["id"]
                })
                .map(|c| c.response["status"]["linux"]["namespaces"]["options"].clone())
                .unwrap_or_default();
            let config = json!({ "config": {
                "metadata": item["metadata"],
                "hostname": item["metadata"]["name"],
                "labels": item["labels"],
                "annotations": item["annotations"],
                "linux": { "security_context": { "namespace_options": namespaces } },
            }});
            let id =
                rpc.call("/runtime.v1.RuntimeService/RunPodSandbox", &config)
                    .await?
                    .with_context(|| {
                        format!("re-creating sandbox {recorded} of the previous run")
                    })?["pod_sandbox_id"]
                    .as_str()
                    .context("no id")?
                    .to_string();
            if state(item, "SANDBOX_READY") == "SANDBOX_NOTREADY" {
                rpc.call(
                    "/runtime.v1.RuntimeService/StopPodSandbox",
                    &json!({ "pod_sandbox_id": id }),
                )
                .await?
                .context("stopping it")?;
            }
            self.ids.insert(recorded.to_string(), id);
            self.producers.insert(recorded.to_string(), 0);
        }
        // The hostPath volume, as the recording had it (ExecSync #78).
        let host = self.root.join("kube-hostpath");
        std::fs::create_dir_all(&host)?;
        std::fs::write(host.join("from-host"), "")?;
        Ok(())
    }

    /// A recorded id in `v` that crius never answered (its call failed).
    fn unanswered_id(&self, v: &Value) -> Option<(String, usize)> {
        match v {
            Value::String(s) => match self.producers.get(s) {
                Some(p) if !self.ids.contains_key(s) => Some((s.clone(), *p)),
                _ => None,
            },
            Value::Array(a) => a.iter().find_map(|x| self.unanswered_id(x)),
            Value::Object(m) => m.values().find_map(|x| self.unanswered_id(x)),
            _ => None,
        }
    }

    /// The request to send, and what kubelet did before sending it.
    fn prepare(&self, call: &Call) -> anyhow::Result<Value> {
        let mut request = self.rewrite.apply(&call.request, &self.ids);
        if call.name() == "CreateContainer" {
            let config = &mut request["config"];
            for mount in config["mounts"].as_array().into_iter().flatten() {
                let host = Path::new(mount["host_path"].as_str().context("host_path")?);
                match mount["container_path"].as_str() {
                    Some("/etc/hosts") => write_new(host, ETC_HOSTS)?,
                    Some("/dev/termination-log") => write_new(host, "")?,
                    _ => std::fs::create_dir_all(host)?,
                }
            }
            let recorded_image = &call.request["config"]["image"]["user_specified_image"];
            if recorded_image == NGINX && config["command"].is_null() {
                config["command"] = json!(["sh", "-c", WEB_COMMAND]);
            }
        }
        Ok(request)
    }

    /// Waits for what the call's outcome depended on, and checks what it
    /// ends (a container's run, the web pod).
    async fn before(&mut self, call: &Call) -> anyhow::Result<()> {
        let recorded = call.request["container_id"].as_str().unwrap_or_default();
        match call.name() {
            // A restart: the previous attempt has exited.
            "CreateContainer" => {
                let r = &call.request;
                let attempt = r["config"]["metadata"]["attempt"].as_u64().unwrap_or(0);
                let name = r["config"]["metadata"]["name"].as_str().unwrap_or_default();
                let sandbox = r["pod_sandbox_id"].as_str().unwrap_or_default();
                let previous = self
                    .containers
                    .iter()
                    .find(|(_, c)| {
                        c.sandbox == sandbox && c.name == name && c.attempt + 1 == attempt
                    })
                    .map(|(id, _)| id.clone());
                if let Some(previous) = previous {
                    self.exited(&previous).await?;
                }
            }
            // kubelet removes only containers that have exited.
            "RemoveContainer" => {
                self.exited(recorded).await?;
                self.check_log(recorded)?;
            }
            // The recording stopped pods long after their containers that
            // exit by themselves had exited (the last crash ran at 54 s, the
            // pod was stopped at 81 s): here too.
            "StopPodSandbox" => {
                let sandbox = call.request["pod_sandbox_id"].as_str().unwrap_or_default();
                let own: Vec<String> = self
                    .containers
                    .iter()
                    .filter(|(id, c)| {
                        c.sandbox == sandbox
                            && EXIT_CODES.iter().any(|(n, _)| *n == c.name)
                            && !self.removed.contains(*id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in own {
                    self.exited(&id).await?;
                }
            }
            "StopContainer" if self.container(recorded)?.name == "web" && !self.web_checked => {
                self.web_checked = true;
                self.check_web().await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn container(&self, recorded: &str) -> anyhow::Result<&Container> {
        self.containers
            .get(recorded)
            .with_context(|| format!("{recorded} is no container of the recording"))
    }

    /// Waits for a container to exit; checks its exit code if it exits by
    /// itself.
    async fn exited(&self, recorded: &str) -> anyhow::Result<()> {
        let c = self.container(recorded)?;
        let Some(id) = self.ids.get(recorded) else {
            return Ok(()); // its CreateContainer failed, and says so
        };
        let status = self
            .rpc
            .wait_container(id, "exited", |s| s != "CONTAINER_RUNNING")
            .await
            .with_context(|| format!("{} (attempt {})", c.name, c.attempt))?;
        if state(&status, "CONTAINER_CREATED") != "CONTAINER_EXITED" {
            return Ok(()); // never started: its StartContainer says why
        }
        if let Some((_, code)) = EXIT_CODES.iter().find(|(n, _)| *n == c.name) {
            let got = status["exit_code"].as_i64().unwrap_or(0);
            ensure!(
                got == *code,
                "{} (attempt {}) exited with {got}, not {code}: {status}",
                c.name,
                c.attempt
            );
        }
        Ok(())
    }

    /// The container's log file is where kubelet said, with its lines.
    fn check_log(&self, recorded: &str) -> anyhow::Result<()> {
        let c = self.container(recorded)?;
        if !self.ids.contains_key(recorded) {
            return Ok(());
        }
        let path = self.rewrite.apply(&json!(c.log), &self.ids);
        let path = path.as_str().unwrap_or_default();
        let log = std::fs::read_to_string(path)
            .with_context(|| format!("the log of {} (attempt {}): {path}", c.name, c.attempt))?;
        for (_, lines) in LOG_LINES.iter().filter(|(n, _)| *n == c.name) {
            for line in *lines {
                ensure!(
                    log.lines()
                        .any(|l| l.ends_with(&format!(" stdout F {line}"))),
                    "the log of {} (attempt {}) has no {line:?}: {log:?}",
                    c.name,
                    c.attempt
                );
            }
        }
        Ok(())
    }

    /// The web pod answers HTTP on its host port.
    async fn check_web(&self) -> anyhow::Result<()> {
        let port = self.host_port;
        let deadline = Instant::now() + PROBE_WAIT;
        loop {
            let answer = tokio::task::spawn_blocking(move || http_get(port)).await?;
            match answer {
                Ok(body) if body.contains(WEB_PAGE) => return Ok(()),
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => bail!("GET http://127.0.0.1:{port}/ (the web pod): {other:?}"),
            }
        }
    }

    async fn land(&mut self, mut flights: Vec<Flight>) {
        flights.sort_by_key(|f| f.call.index);
        for f in flights {
            match f.handle.await {
                Ok((answer, took)) => self.settle(&f.call, &f.expected, answer, took),
                Err(e) => self.fail(&f.call, format!("the call's task: {e}")),
            }
        }
    }

    /// Checks an answer against the recording; learns the ids it hands out.
    fn settle(
        &mut self,
        call: &Call,
        expected: &Value,
        answer: anyhow::Result<Answer>,
        took: Duration,
    ) {
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return self.fail(call, format!("not sent: {e:#}")),
        };
        let code = match &answer {
            Ok(_) => "OK".to_string(),
            Err(s) => code_name(s.code()),
        };
        self.transcript.push(format!(
            "#{} {} {code} ({} ms; recorded {})",
            call.index,
            call.name(),
            took.as_millis(),
            call.code
        ));
        let response = match (&answer, call.code.as_str()) {
            (Ok(r), "OK") => r,
            (Err(_), recorded) if recorded == code => return,
            (Ok(r), "UNIMPLEMENTED") if call.name() == "RuntimeConfig" => {
                // crius does better: it implements RuntimeConfig. Then it
                // must name the driver the kubelet was using.
                let driver = r["linux"]["cgroup_driver"].as_str().unwrap_or("SYSTEMD");
                if driver != "CGROUPFS" {
                    self.fail(call, format!("cgroup driver {driver}, not CGROUPFS: {r}"));
                }
                return;
            }
            (Ok(r), recorded) => {
                return self.fail(call, format!("answered OK ({r}), recorded {recorded}"));
            }
            (Err(s), recorded) => {
                return self.fail(
                    call,
                    format!("answered {code}: {:?}, recorded {recorded}", s.message()),
                );
            }
        };
        match call.name() {
            "RunPodSandbox" => self.learn(call, "pod_sandbox_id", response),
            "CreateContainer" => self.learn(call, "container_id", response),
            "RemoveContainer" => {
                let id = call.request["container_id"].as_str().unwrap_or_default();
                self.removed.insert(id.to_string());
            }
            _ => {}
        }
        let problems = compare(call.name(), expected, response);
        // What differs because a call before failed.
        let cause = match self.unanswered_id(expected) {
            Some((_, producer)) => format!("(follows from #{producer}) "),
            None => String::new(),
        };
        for problem in problems {
            self.fail(call, format!("{cause}{problem}"));
        }
    }

    fn learn(&mut self, call: &Call, field: &str, response: &Value) {
        match (call.response[field].as_str(), response[field].as_str()) {
            (Some(recorded), Some(id)) if !id.is_empty() => {
                self.ids.insert(recorded.to_string(), id.to_string());
            }
            _ => self.fail(call, format!("no {field} in {response}")),
        }
    }

    fn fail(&mut self, call: &Call, problem: String) {
        let line = format!("#{} {}: {problem}", call.index, call.name());
        self.transcript.push(line.clone());
        self.failures.push(line);
    }
}

/// Sends a call; for the calls whose outcome took time in the recording,
/// again until it answers as recorded (or a bound passes).
async fn send(rpc: &Rpc, call: &Call, request: &Value, expected: &Value) -> anyhow::Result<Answer> {
    let retry = match call.name() {
        // A probe: kubelet retries it.
        "ExecSync" if call.code == "OK" => Some(PROBE_WAIT),
        // Recorded after the container had exited.
        "ContainerStatus"
            if call.code == "OK" && state(&expected["status"], "") == "CONTAINER_EXITED" =>
        {
            Some(WAIT)
        }
        _ => None,
    };
    let deadline = Instant::now() + retry.unwrap_or_default();
    loop {
        let answer = rpc.call(&call.method, request).await?;
        let done = match (&answer, call.name()) {
            (Ok(r), "ContainerStatus") => state(&r["status"], "") == "CONTAINER_EXITED",
            (Ok(r), _) => compare(call.name(), expected, r).is_empty(),
            (Err(_), _) => false,
        };
        if retry.is_none() || done || Instant::now() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How crius' response differs from the (rewritten) recorded one, in what
/// kubelet relies on.
fn compare(method: &str, exp: &Value, act: &Value) -> Vec<String> {
    let mut p = vec![];
    match method {
        "Version" => {
            for k in ["version", "runtime_api_version"] {
                eq(&mut p, k, &exp[k], &act[k]);
            }
        }
        "Status" => {
            for c in exp["status"]["conditions"].as_array().into_iter().flatten() {
                let got = act["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == c["type"]);
                eq(
                    &mut p,
                    &format!("condition {}", c["type"]),
                    &c["status"],
                    got.map_or(&Value::Null, |g| &g["status"]),
                );
            }
        }
        "ImageFsInfo" => {
            let fs = act["image_filesystems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let complete = |f: &Value| {
                !f["fs_id"]["mountpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty()
                    && !f["used_bytes"].is_null()
                    && !f["inodes_used"].is_null()
            };
            if fs.is_empty() || !fs.iter().all(complete) {
                p.push(format!(
                    "image filesystems: crius answered {act}, recorded {exp}"
                ));
            }
        }
        "ListImages" => eq(&mut p, "images", &image_tags(exp), &image_tags(act)),
        "ImageStatus" => {
            let (e, a) = (&exp["image"], &act["image"]);
            if e.is_null() || a.is_null() {
                eq(&mut p, "image", e, a);
            } else {
                eq(&mut p, "image id", &e["id"], &a["id"]);
                for k in ["repo_tags", "repo_digests"] {
                    let have = a[k].as_array().cloned().unwrap_or_default();
                    if e[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| !have.contains(x))
                    {
                        p.push(format!("{k}: crius answered {}, recorded {}", a[k], e[k]));
                    }
                }
            }
        }
        "PullImage" => eq(&mut p, "image_ref", &exp["image_ref"], &act["image_ref"]),
        "ListPodSandbox" => eq(
            &mut p,
            "sandboxes",
            &ids_and_states(&exp["items"], "SANDBOX_READY"),
            &ids_and_states(&act["items"], "SANDBOX_READY"),
        ),
        "ListContainers" => eq(
            &mut p,
            "containers",
            &ids_and_states(&exp["containers"], "CONTAINER_CREATED"),
            &ids_and_states(&act["containers"], "CONTAINER_CREATED"),
        ),
        "ListContainerStats" => {
            let ids = |v: &Value| -> Value {
                let set: BTreeSet<String> = v["stats"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| format!("{} {}", s["attributes"]["id"], s["attributes"]["metadata"]))
                    .collect();
                json!(set)
            };
            eq(&mut p, "containers with stats", &ids(exp), &ids(act));
        }
        "PodSandboxStatus" => {
            let (e, a) = (&exp["status"], &act["status"]);
            let state = |v: &Value| json!(state(v, "SANDBOX_READY"));
            eq(&mut p, "state", &state(e), &state(a));
            subset("status", e, a, &["created_at", "ip"], &mut p);
        }
        "ContainerStatus" => {
            let (mut e, a) = (exp["status"].clone(), &act["status"]);
            let state = |v: &Value| json!(state(v, "CONTAINER_CREATED"));
            let exit_code = |v: &Value| json!(v["exit_code"].as_i64().unwrap_or(0));
            // Asked within the second the crashing container lives, in the
            // recording: here it may have lived it already, and exited as
            // it does.
            let name = e["metadata"]["name"].as_str().unwrap_or_default();
            if state(&e) == json!("CONTAINER_RUNNING")
                && state(a) == json!("CONTAINER_EXITED")
                && EXIT_CODES
                    .iter()
                    .any(|(n, code)| *n == name && exit_code(a) == json!(code))
            {
                e["state"] = a["state"].clone();
                e["exit_code"] = a["exit_code"].clone();
            }
            eq(&mut p, "state", &state(&e), &state(a));
            eq(&mut p, "exit_code", &exit_code(&e), &exit_code(a));
            let times = ["created_at", "started_at", "finished_at"];
            subset("status", &e, a, &times, &mut p);
        }
        "ExecSync" => {
            for k in ["stdout", "stderr", "exit_code"] {
                eq(&mut p, k, &exp[k], &act[k]);
            }
        }
        _ => {}
    }
    p
}

fn eq(p: &mut Vec<String>, what: &str, exp: &Value, act: &Value) {
    if exp != act {
        p.push(format!("{what}: crius answered {act}, recorded {exp}"));
    }
}

/// Every value of `exp` is in `act`, at the same place; of the keys in
/// `present`, only that they are there.
fn subset(path: &str, exp: &Value, act: &Value, present: &[&str], p: &mut Vec<String>) {
    match exp {
        Value::Object(m) => {
            for (k, e) in m {
                let a = &act[k];
                let here = format!("{path}.{k}");
                if present.contains(&k.as_str()) {
                    if a.is_null() {
                        p.push(format!("{here}: crius answered none, recorded {e}"));
                    }
                } else {
                    subset(&here, e, a, present, p);
                }
            }
        }
        Value::Array(es) => match act.as_array() {
            Some(acts) if acts.len() == es.len() => {
                for (i, (e, a)) in es.iter().zip(acts).enumerate() {
                    subset(&format!("{path}[{i}]"), e, a, present, p);
                }
            }
            _ => p.push(format!("{path}: crius answered {act}, recorded {exp}")),
        },
        _ if exp != act => p.push(format!("{path}: crius answered {act}, recorded {exp}")),
        _ => {}
    }
}

/// The tags of the listed images, but the sandbox (pause) image's.
fn image_tags(v: &Value) -> Value {
    let tags: BTreeSet<String> = v["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["pinned"] != json!(true))
        .flat_map(|i| i["repo_tags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_string))
        .filter(|t| !t.contains("/pause:"))
        .collect();
    json!(tags)
}

fn ids_and_states(items: &Value, default: &str) -> Value {
    let set: BTreeSet<String> = items
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| format!("{} {}", i["id"], state(i, default)))
        .collect();
    json!(set)
}

/// The hosts file kubelet writes for a pod (without the pod's own line).
const ETC_HOSTS: &str = "# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
";

/// Writes `content` to `path` unless it exists, creating its directory.
fn write_new(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !path.exists() {
        std::fs::write(path, content)?;
    }
    Ok(())
}

/// The body of `GET /` on 127.0.0.1:`port`.
fn http_get(port: u16) -> anyhow::Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}
