//! `criusd`: loads the config, binds the CRI socket, connects to containerd
//! in the background and serves until SIGTERM/SIGINT.

mod apparmor;
mod args;
pub mod authority;
mod deadline;
mod logging;
mod notify;
mod serve;
mod socket;
mod streaming_tls;

use std::process::ExitCode;

use clap::Parser;

pub use args::Args;

/// Entry point of the `criusd` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(args::Command::Config {
        command: args::ConfigCommand::Default,
    }) = args.command
    {
        print!("{}", crius_core::config::DEFAULT_TOML);
        return ExitCode::SUCCESS;
    }
    if let Some(args::Command::Config {
        command: args::ConfigCommand::Show,
    }) = args.command
    {
        return match args
            .load_layered()
            .map_err(|e| format!("{e:#}"))
            .and_then(|l| crius_core::config_files::annotated(&l).map_err(|e| e.to_string()))
        {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("criusd: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match args.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("criusd: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(args::Command::Config {
        command: args::ConfigCommand::Check,
    }) = args.command
    {
        match toml::to_string(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("criusd: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    logging::init(&config.log);
    match serve::run(config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("criusd failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
