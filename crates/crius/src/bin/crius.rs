//! The crius command line; everything lives in `crius-cli`.
fn main() -> std::process::ExitCode {
    crius_cli::main()
}
