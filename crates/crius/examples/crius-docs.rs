//! Writes the man pages of `crius` (section 1) and `criusd` (section 8) and
//! the shell completions of `crius` into a directory, for the Debian
//! package (hack/package.sh); never installed itself.
//!
//! `cargo run -p crius --example crius-docs -- DIR`

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use crius_cli::docs::{self, Shell};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: crius-docs DIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius-docs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    for (cmd, section) in [
        (crius_cli::Cli::command(), "1"),
        (crius_daemon::Args::command(), "8"),
    ] {
        for page in docs::man_pages(cmd, section)? {
            write(&man.join(&page.file_name), &page.roff)?;
        }
    }
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    // The names each shell's completion directory expects.
    for (shell, name) in [
        (Shell::Bash, "crius"),
        (Shell::Zsh, "_crius"),
        (Shell::Fish, "crius.fish"),
    ] {
        let mut script = Vec::new();
        docs::completion(shell, &mut script);
        write(&completions.join(name), &script)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
