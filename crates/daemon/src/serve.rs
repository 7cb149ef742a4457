//! Start-up, serving and graceful shutdown.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crius_containerd::Containerd;
use crius_core::config::Config;
use crius_server::State;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// First and longest pause between attempts to reach containerd.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// RPCs one client connection may have in flight (HTTP/2
/// SETTINGS_MAX_CONCURRENT_STREAMS): one more is refused by the client's
/// own HTTP/2 layer (REFUSED_STREAM, retried by gRPC clients) instead of
/// each taking memory and a task. kubelet multiplexes all its calls over
/// one connection, a few dozen at once even on a full node.
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// Runs the daemon until a termination signal; returns when the socket is gone.
pub fn run(config: Config, args: crate::Args) -> anyhow::Result<()> {
    make_dir(&config.root_dir, 0o700)?;
    make_dir(&config.state_dir, 0o711)?;
    let listener = crate::socket::bind(&config.socket)?;
    let socket = config.socket.clone();
    let driver = config
        .cgroup_driver
        .resolve(Path::new("/run/systemd/system").is_dir());
    let apparmor = crate::apparmor::set_up(&crate::apparmor::RealHost);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let state = State::new(config, driver).with_apparmor(apparmor);
    let result = runtime.block_on(serve(state, listener, args));
    // Leave no socket behind for clients to hang on.
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::warn!(socket = %socket.display(), "cannot remove the socket: {e}");
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("criusd stopped; containers keep running");
    result
}

fn make_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

async fn serve(
    state: State,
    listener: std::os::unix::net::UnixListener,
    args: crate::Args,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let config = state.config();
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout_secs);
    let socket = config.socket.clone();
    let loader: crius_server::state::ConfigLoader =
        Box::new(move || args.load_config().map_err(|e| format!("{e:#}")));
    let state = Arc::new(state.with_loader(loader));
    let background = state.background().clone();
    background.spawn("config reloader", reload_on_sighup(state.clone()));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    background.spawn("containerd connector", connect_containerd(state.clone()));
    start_streaming(&state, &config).await?;
    start_metrics(&state, &config).await?;
    let pods_of = state.clone();

    let services = crius_server::services(state);
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .layer(crate::deadline::DeadlineLayer)
        .add_service(services.runtime)
        .add_service(services.image)
        .add_service(services.admin)
        .serve_with_incoming_shutdown(crate::authority::incoming(listener), async move {
            let _ = stop_rx.changed().await;
        });
    tracing::info!(socket = %socket.display(), version = crius_core::RUNTIME_VERSION, "serving CRI v1");
    if crius_rt::fault::COMPILED_IN {
        tracing::warn!(
            "a test build: fault points are compiled in ({} kills criusd where it names)",
            crius_rt::fault::ENV
        );
    }
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.context("serving the CRI socket"),
        name = termination() => {
            tracing::info!(signal = name, "shutting down: no new requests, waiting for in-flight ones");
            pods_of.begin_shutdown();
            crate::notify::stopping();
            let _ = stop_tx.send(true);
            match tokio::time::timeout(shutdown_timeout, &mut server).await {
                Ok(r) => r.context("serving the CRI socket"),
                Err(_) => {
                    tracing::warn!(?shutdown_timeout, "in-flight requests did not finish in time; closing them");
                    Ok(())
                }
            }
        }
    };
    // The daemon's own tasks (config reloader, containerd connector, pulls
    // a client left), then the pods' exit watchers and event followers
    // stop; containers keep running and a restarted daemon recovers them.
    background.shutdown(BACKGROUND_GRACE).await;
    if let Ok(backend) = pods_of.backend() {
        backend.pods.shutdown(BACKGROUND_GRACE).await;
    }
    result
}

/// Binds the streaming server (Exec, Attach, PortForward URLs) and runs it
/// until shutdown begins; it then ends its sessions (exec processes are
/// killed) and stops.
async fn start_streaming(state: &Arc<State>, config: &Config) -> anyhow::Result<()> {
    let s = &config.streaming;
    let ip: std::net::IpAddr = s
        .address
        .parse()
        .with_context(|| format!("streaming.address {:?}", s.address))?;
    let tls_config = s.clone();
    let tls =
        tokio::task::spawn_blocking(move || crate::streaming_tls::server_tls(&tls_config, ip))
            .await
            .context("setting up streaming TLS")??;
    let server_config = crius_stream::server::ServerConfig {
        addr: std::net::SocketAddr::new(ip, s.port),
        token_ttl: Duration::from_secs(s.token_ttl_secs),
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        max_sessions: s.max_sessions,
        tls,
        ..Default::default()
    };
    let backend = Arc::new(crius_server::streaming::PodsBackend(state.clone()));
    let (server, addr) = crius_stream::server::StreamServer::bind(server_config, backend).await?;
    state.set_streams(Arc::new(server.urls()));
    tracing::info!(%addr, "serving exec, attach and port-forward streams");
    let background = state.background();
    background.spawn_to_end(server.serve(background.stopping()));
    Ok(())
}

/// Serves `GET /metrics` when `[metrics] address` is set, until shutdown.
async fn start_metrics(state: &Arc<State>, config: &Config) -> anyhow::Result<()> {
    let metrics = crius_metrics::global();
    metrics.set_census(Box::new(crius_server::PodCensus(state.clone())));
    let Some(addr) = config.metrics.socket_addr() else {
        return Ok(());
    };
    let addr = addr.map_err(anyhow::Error::msg)?;
    let (listener, bound) = crius_metrics::bind(addr).await?;
    tracing::info!(addr = %bound, "serving metrics at /metrics");
    let background = state.background();
    background.spawn_to_end(crius_metrics::serve(
        listener,
        metrics,
        background.stopping(),
    ));
    Ok(())
}

/// How long shutdown waits for each set of background tasks to stop.
const BACKGROUND_GRACE: Duration = Duration::from_secs(1);

/// SIGHUP re-reads the config (`crius config reload` does the same).
async fn reload_on_sighup(state: Arc<State>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; use `crius config reload`");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        // Refusals are logged by reload itself.
        let _ = state.reload();
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn termination() -> &'static str {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop criusd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Connects to containerd, retrying with backoff until it answers, and
/// keeps the reason it waits in the state (`Status` shows it).
async fn connect_containerd(state: Arc<State>) {
    let mut delay = RETRY_FIRST;
    let mut attempt: u32 = 0;
    loop {
        let config = state.config();
        let address = &config.containerd.address;
        match Containerd::connect(address, &config.containerd.namespace).await {
            Ok(containerd) => {
                match containerd.version().await {
                    Ok(v) => tracing::info!(
                        address = %address.display(),
                        namespace = %config.containerd.namespace,
                        containerd_version = %v.version,
                        "connected to containerd"
                    ),
                    Err(e) => {
                        tracing::warn!("connected to containerd, but its version is unknown: {e}")
                    }
                }
                let backend = crius_server::state::Backend::new(
                    containerd,
                    &config,
                    crius_pause::PAUSE,
                    state.apparmor().clone(),
                );
                waiting(&state, "recovering state from containerd".into());
                let started = std::time::Instant::now();
                match recover(&backend, &config).await {
                    Ok(()) => {
                        crius_metrics::global().recovery(started.elapsed());
                        state.set_ready(backend);
                        // Only now: kubelet's first calls must find it ready.
                        crate::notify::ready();
                        return;
                    }
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(attempt, retry_in = ?delay, "recovery failed: {e}");
                        waiting(
                            &state,
                            format!(
                                "recovering state from containerd failed: {e} (attempt {attempt})"
                            ),
                        );
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(attempt, retry_in = ?delay, "waiting for containerd: {e}");
                waiting(
                    &state,
                    format!(
                        "waiting for containerd: {e} (attempt {attempt}, retrying every {:?} at most)",
                        RETRY_MAX
                    ),
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Records what start-up waits for, in `Status` and for systemd.
fn waiting(state: &State, why: String) {
    crate::notify::status(&why);
    state.set_waiting(why);
}

/// Start-up work before serving: clean up after a previous daemon, make
/// sure the built-in sandbox image is in place, rebuild the pod index.
async fn recover(
    backend: &crius_server::state::Backend,
    config: &Config,
) -> crius_core::Result<()> {
    backend.images.recover().await?;
    backend.pods.recover(config).await
}
