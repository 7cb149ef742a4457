//! Shell completions (`crius completion SHELL`) and man pages, both made
//! from the clap definitions so they cannot drift from the flags.

use std::io::Write;

use clap::CommandFactory;
pub use clap_complete::Shell;

/// Writes the completion script of `crius` for `shell`.
pub fn completion(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut crate::Cli::command(), "crius", out);
}

/// One man page: its file name (`crius-pod-run.1`) and its roff text.
#[derive(Debug)]
pub struct ManPage {
    pub file_name: String,
    pub roff: Vec<u8>,
}

/// The man pages of `cmd` and of each of its visible subcommands, in
/// manual `section` ("1" for `crius`, "8" for `criusd`).
pub fn man_pages(mut cmd: clap::Command, section: &str) -> std::io::Result<Vec<ManPage>> {
    // Gives subcommands their full names (crius-pod-run).
    cmd.build();
    // Subcommands have no version of their own: every page names the program's.
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    collect(&cmd, section, &source, &mut pages)?;
    Ok(pages)
}

fn collect(
    cmd: &clap::Command,
    section: &str,
    source: &str,
    pages: &mut Vec<ManPage>,
) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .source(source);
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    pages.push(ManPage {
        file_name: man.get_filename(),
        roff,
    });
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        collect(sub, section, source, pages)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        completion(shell, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn completions_name_real_subcommands_and_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell);
            for word in [
                "doctor",
                "port-forward",
                "pod",
                "inspect",
                "completion",
                "endpoint",
            ] {
                assert!(text.contains(word), "{shell}: no {word:?} in\n{text}");
            }
        }
        assert!(script(Shell::Bash).contains("complete -F _crius"));
        assert!(script(Shell::Zsh).starts_with("#compdef crius"));
        assert!(script(Shell::Fish).contains("complete -c crius"));
    }

    #[test]
    fn man_pages_cover_every_subcommand() {
        let pages = man_pages(crate::Cli::command(), "1").expect("rendered");
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        for name in [
            "crius.1",
            "crius-pod.1",
            "crius-pod-run.1",
            "crius-doctor.1",
            "crius-completion.1",
            "crius-stats.1",
            "crius-pod-stats.1",
            "crius-checkpoint.1",
        ] {
            assert!(names.contains(&name), "no {name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let main = String::from_utf8(pages[0].roff.clone()).expect("utf-8");
        let run = pages.iter().find(|p| p.file_name == "crius-pod-run.1");
        let run = String::from_utf8(run.expect("pod run").roff.clone()).expect("utf-8");
        let version = env!("CARGO_PKG_VERSION");
        assert!(run.contains(&format!("\"crius {version}\"")), "{run}");
        assert!(main.contains(".TH crius 1"), "{main}");
        assert!(main.contains("port\\-forward"), "{main}");
        let endpoint = crate::Cli::command()
            .get_arguments()
            .any(|a| a.get_long() == Some("endpoint"));
        assert!(endpoint && main.contains("endpoint"), "{main}");
    }
}
