//! The crius daemon; everything lives in `crius-daemon`.
fn main() -> std::process::ExitCode {
    crius_daemon::main()
}
