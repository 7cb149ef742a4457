//! `crius`: the command line for people. It speaks CRI to `criusd` over the
//! socket, exactly as kubelet does.

mod checkpoint;
mod client;
mod commands;
mod containers;
mod containerspec;
pub mod docs;
mod doctor;
mod events;
mod interactive;
mod podspec;
mod portforward;
mod progress;
mod session;
mod stats;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// crius: inspect and drive a crius node runtime over CRI.
#[derive(Debug, Parser)]
#[command(name = "crius", version, about)]
pub struct Cli {
    /// CRI endpoint: a socket path or unix:///path.
    #[arg(
        long,
        global = true,
        env = "CRIUS_ENDPOINT",
        default_value = "unix:///run/crius/crius.sock"
    )]
    pub endpoint: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For scripts.
    Json,
    /// For scripts and people.
    Yaml,
}

impl Output {
    /// JSON or YAML: a document rather than text.
    pub fn machine(self) -> bool {
        self != Output::Text
    }
}

/// The output format of this run, for [`print_doc`].
static FORMAT: std::sync::OnceLock<Output> = std::sync::OnceLock::new();

/// Prints `v` as this run's document format (JSON unless `-o yaml`).
pub(crate) fn print_doc<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    match FORMAT.get() {
        Some(Output::Yaml) => print!("{}", serde_yaml_ng::to_string(v)?),
        _ => println!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Versions of crius, its CRI API and the endpoint's runtime.
    Version,
    /// Runtime conditions, containerd and runtime handlers.
    Info,
    /// Check this node before pointing kubelet at it: one line per check
    /// (ok, warn, FAIL) with what to do; exit code 1 when one fails.
    Doctor {
        /// kubelet's config file, to compare its cgroup driver.
        #[arg(long)]
        kubelet_config: Option<PathBuf>,
    },
    /// Print a shell completion script, e.g.
    /// `crius completion bash > /etc/bash_completion.d/crius`.
    Completion {
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Follow container and pod events (GetContainerEvents): first what is
    /// there now, then each transition, until interrupted; `-o json`: one
    /// object per line.
    Events,
    /// Pull an image from its registry.
    Pull {
        /// Image reference, e.g. busybox or registry.example.com/app:1.0.
        image: String,
        /// Registry credentials, user:password.
        #[arg(long)]
        creds: Option<String>,
    },
    /// List images.
    Images {
        /// Only this image.
        image: Option<String>,
        /// Show only image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Show each image's digest too.
        #[arg(long)]
        digests: bool,
    },
    /// Remove images (by tag, digest or id).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Image commands.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// List pod sandboxes.
    Pods {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Only pods with this label (key=value), repeatable.
        #[arg(short, long)]
        label: Vec<String>,
    },
    /// Pod sandbox commands.
    Pod {
        #[command(subcommand)]
        command: PodCommand,
    },
    /// List containers (running ones; -a for all).
    Ps {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        quiet: bool,
        /// Only the containers of this pod.
        #[arg(long)]
        pod: Option<String>,
        /// Only containers in this state: created, running, exited, unknown
        /// (any state, like -a, otherwise).
        #[arg(long, value_parser = ["created", "running", "exited", "unknown"])]
        state: Option<String>,
        /// Only containers with this label (key=value; repeat to AND them).
        #[arg(short, long)]
        label: Vec<String>,
    },
    /// Show a container's status (verbose).
    Inspect { id: String },
    /// Live resource usage of containers, like `docker stats`: CPU % (of
    /// one core, between two samples), memory (working set) and its limit,
    /// the writable layer; redrawn every --interval until Ctrl-C. Running
    /// containers, -a for all, or those named (in any state). `-o json`:
    /// one object per sample per line, raw numbers.
    Stats {
        /// Containers: ids or unique prefixes (all when none).
        ids: Vec<String>,
        /// Stopped containers too (no CPU or memory: their writable layer).
        #[arg(short, long)]
        all: bool,
        #[command(flatten)]
        how: stats::StatsArgs,
    },
    /// Print a container's log (CRI log file), optionally following it.
    Logs {
        id: String,
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its timestamp.
        #[arg(short, long)]
        timestamps: bool,
        /// Only lines since this time: RFC 3339 (2026-12-02T21:00:00Z) or
        /// an age (90s, 10m, 1h30m), as docker's `--since`.
        #[arg(long, value_parser = crate::containers::parse_since)]
        since: Option<std::time::SystemTime>,
    },
    /// Run a command in a running container: with -i or -t interactively
    /// over the streaming server (Exec), else its output at its end
    /// (ExecSync). Exits with the command's exit code.
    Exec {
        /// Forward stdin to the command.
        #[arg(short, long)]
        interactive: bool,
        /// A terminal for the command (ours made raw while it runs).
        #[arg(short, long)]
        tty: bool,
        /// Streaming protocol (with -i or -t).
        #[arg(long, value_enum, default_value_t)]
        transport: session::TransportArg,
        id: String,
        /// Seconds before the command is killed (0: no limit; ExecSync only).
        #[arg(long = "cmd-timeout", default_value_t = 0)]
        cmd_timeout: i64,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Attach to a running container's main process: its output, our stdin
    /// (if it was created with one), its tty (if it has one). Exits with
    /// its exit code when it ends, 0 when detached (our stdin ended).
    Attach {
        /// Do not forward stdin.
        #[arg(long)]
        no_stdin: bool,
        /// Streaming protocol.
        #[arg(long, value_enum, default_value_t)]
        transport: session::TransportArg,
        id: String,
    },
    /// Forward local ports to a pod: [LOCAL:]REMOTE, as kubectl's
    /// (`:REMOTE` or `0:REMOTE` picks a free local port); until Ctrl-C.
    PortForward {
        /// The pod sandbox's id.
        pod: String,
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// Create a container in a pod from a ContainerConfig (JSON or YAML,
    /// CRI field names, as crictl takes them); prints its id.
    Create {
        /// The pod sandbox's id (or a unique prefix of it).
        pod: String,
        file: PathBuf,
    },
    /// Start created containers.
    Start {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop containers (stop signal, then SIGKILL after --time seconds).
    Stop {
        #[arg(short = 't', long = "time", default_value_t = 10)]
        grace: i64,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers (-f: running ones too, killed first).
    Rm {
        /// Remove running containers too (they are killed first); without
        /// it a running container is refused, as docker refuses it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Checkpoint a running container (CheckpointContainer) into a tar
    /// archive on this node, written by criusd; prints its path.
    Checkpoint {
        id: String,
        /// The archive to write (made absolute against the current
        /// directory); default ./checkpoint-<name>-<UTC time>.tar.
        #[arg(long, value_name = "PATH")]
        export: Option<PathBuf>,
        /// Seconds the checkpoint may take (a dump takes about as long as
        /// writing the container's memory out); crius waits 5 s more for
        /// the answer.
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        wait: u64,
    },
    /// Daemon configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run IMAGE [CMD...] in a new pod, like `docker run`.
    Run {
        /// Return at once, leaving it running.
        #[arg(short, long)]
        detach: bool,
        /// Keep stdin open: the container gets ours (then attached).
        #[arg(short, long)]
        interactive: bool,
        /// A terminal for the container (ours made raw while attached).
        #[arg(short, long)]
        tty: bool,
        /// Remove the pod when the command exits.
        #[arg(long)]
        rm: bool,
        /// Environment variables, KEY=VALUE.
        #[arg(short, long)]
        env: Vec<String>,
        /// Bind mounts, HOST:CONTAINER[:ro].
        #[arg(short, long)]
        volume: Vec<String>,
        /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp].
        #[arg(short, long)]
        publish: Vec<String>,
        /// Container (and pod) name.
        #[arg(long)]
        name: Option<String>,
        /// Run as this user (uid or name).
        #[arg(short, long)]
        user: Option<String>,
        /// Read-only root filesystem.
        #[arg(long)]
        read_only: bool,
        /// Privileged pod and container.
        #[arg(long)]
        privileged: bool,
        /// Runtime handler for the pod.
        #[arg(long, default_value = "")]
        runtime: String,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Make criusd re-read its config file (like SIGHUP); an invalid file is
    /// refused with the reason and the running config stays.
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Run a pod sandbox from a PodSandboxConfig (JSON or YAML, CRI field names).
    Run {
        file: PathBuf,
        /// Runtime handler (RuntimeClass handler) to run it with.
        #[arg(long, default_value = "")]
        runtime: String,
    },
    /// Show a pod's status (verbose).
    Inspect { id: String },
    /// Stop pods (kill their processes, tear their network down).
    Stop {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove pods (-f: ready ones too, stopped first).
    Rm {
        /// Remove ready pods too (stopped first); without it a ready pod is
        /// refused, as crictl's `rmp` refuses it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List pods.
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Live resource usage of pods: CPU %, memory (working set), running
    /// containers, processes, bytes received and sent on the default
    /// interface; redrawn every --interval until Ctrl-C. Ready pods, or
    /// those named. `-o json`: one object per sample per line.
    Stats {
        /// Pods: ids or unique prefixes (all ready ones when none).
        ids: Vec<String>,
        #[command(flatten)]
        how: stats::StatsArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show an image's status and config.
    Inspect { image: String },
    /// List images.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Show each image's digest too.
        #[arg(long)]
        digests: bool,
    },
    /// Remove images.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Pull an image.
    Pull {
        image: String,
        #[arg(long)]
        creds: Option<String>,
    },
    /// Load images from an archive on this node (OCI image layout or `docker save` tar).
    Import { file: PathBuf },
}

impl Cli {
    fn socket_path(&self) -> PathBuf {
        PathBuf::from(
            self.endpoint
                .strip_prefix("unix://")
                .unwrap_or(&self.endpoint),
        )
    }
}

/// Entry point of the `crius` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = FORMAT.set(cli.output);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crius: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(&cli));
    // Nothing left to wait for (a read of stdin on the blocking pool).
    runtime.shutdown_background();
    match result {
        Ok(code) => exit_code(code),
        Err(e) => {
            eprintln!("crius: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A process exit code for a command's: 0 is success, any other code
/// clamped into 1..=255 (never a false success).
fn exit_code(code: i32) -> ExitCode {
    match code {
        0 => ExitCode::SUCCESS,
        // The clamp makes it fit.
        c => ExitCode::from(u8::try_from(c.clamp(1, 255)).unwrap_or(1)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        super::Cli::command().debug_assert();
        // Global flags and subcommand flags of the same name must not clash.
        for args in [
            vec!["crius", "exec", "x", "--cmd-timeout", "5", "--", "true"],
            vec!["crius", "exec", "-it", "x", "--", "sh"],
            vec!["crius", "exec", "-i", "--transport", "websocket", "x", "sh"],
            vec!["crius", "attach", "--no-stdin", "x"],
            vec!["crius", "port-forward", "pod", "8080", ":80", "9000:90"],
            vec!["crius", "run", "-it", "--rm", "busybox", "sh"],
            vec!["crius", "stop", "-t", "0", "x"],
            vec!["crius", "--timeout", "3", "ps", "-a"],
            vec![
                "crius",
                "stats",
                "-a",
                "--no-stream",
                "--interval",
                "0.5",
                "c1",
                "c2",
            ],
            vec![
                "crius",
                "-o",
                "json",
                "pod",
                "stats",
                "--interval",
                "2",
                "p1",
            ],
            vec![
                "crius",
                "checkpoint",
                "c1",
                "--export",
                "x.tar",
                "--timeout",
                "60",
            ],
            vec![
                "crius", "run", "-d", "--rm", "-e", "A=b", "busybox", "sh", "-c", "true",
            ],
        ] {
            let m = super::Cli::command().try_get_matches_from(&args);
            assert!(m.is_ok(), "{args:?}: {m:?}");
            <super::Cli as clap::FromArgMatches>::from_arg_matches(&m.expect("parsed"))
                .expect("typed");
        }
    }

    #[test]
    fn streaming_flags() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "crius",
            "exec",
            "-it",
            "--transport",
            "websocket",
            "c1",
            "--",
            "sh",
            "-c",
            "x -i",
        ])
        .expect("exec");
        let super::Command::Exec {
            interactive,
            tty,
            transport,
            id,
            cmd,
            ..
        } = cli.command
        else {
            panic!("not exec: {:?}", cli.command);
        };
        assert!(interactive && tty);
        assert_eq!(transport, crate::session::TransportArg::Websocket);
        assert_eq!(
            (id.as_str(), cmd),
            ("c1", vec!["sh".into(), "-c".into(), "x -i".into()])
        );
        // Flags of the command stay the command's.
        let cli = super::Cli::try_parse_from(["crius", "exec", "c1", "ls", "-t"]).expect("exec");
        let super::Command::Exec { tty, cmd, .. } = cli.command else {
            panic!("not exec");
        };
        assert!(!tty);
        assert_eq!(cmd, vec!["ls".to_string(), "-t".into()]);
        let cli =
            super::Cli::try_parse_from(["crius", "run", "-i", "busybox", "cat"]).expect("run");
        let super::Command::Run {
            interactive, tty, ..
        } = cli.command
        else {
            panic!("not run");
        };
        assert!(interactive && !tty);
        assert!(super::Cli::try_parse_from(["crius", "port-forward", "pod"]).is_err());
    }

    #[test]
    fn stats_and_checkpoint_flags() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from(["crius", "stats", "--interval", "0.5", "c1"])
            .expect("stats");
        let super::Command::Stats { ids, all, how } = cli.command else {
            panic!("not stats: {:?}", cli.command);
        };
        assert_eq!((ids, all), (vec!["c1".to_string()], false));
        assert_eq!(how.interval, std::time::Duration::from_millis(500));
        assert!(!how.no_stream);
        for bad in ["0", "-1", "abc", "3601", "NaN"] {
            let args = ["crius", "stats", "--interval", bad];
            assert!(super::Cli::try_parse_from(args).is_err(), "{bad}");
        }
        // A checkpoint has its own time limit, not the answer's --timeout.
        let cli = super::Cli::try_parse_from(["crius", "checkpoint", "c1", "--wait", "60"])
            .expect("checkpoint");
        let super::Command::Checkpoint { id, export, wait } = cli.command else {
            panic!("not checkpoint");
        };
        assert_eq!((id.as_str(), export, wait), ("c1", None, 60));
        let cli = super::Cli::try_parse_from(["crius", "checkpoint", "c1"]).expect("checkpoint");
        assert!(matches!(
            cli.command,
            super::Command::Checkpoint { wait: 600, .. }
        ));
    }

    #[test]
    fn exit_codes() {
        use std::process::ExitCode;
        assert_eq!(super::exit_code(0), ExitCode::SUCCESS);
        assert_eq!(super::exit_code(7), ExitCode::from(7));
        assert_eq!(super::exit_code(256), ExitCode::from(255));
        assert_eq!(super::exit_code(-1), ExitCode::from(1));
    }
}
