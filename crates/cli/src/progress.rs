//! Pull progress for people: a bar per layer on a terminal, plain lines
//! (one per finished layer) otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;

use crius_cri_api::admin::PullImageProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How a pull is shown.
pub struct PullView {
    /// `None`: not shown at all (JSON output).
    mode: Option<Mode>,
    phase: String,
}

enum Mode {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Lines {
        reported: HashMap<String, String>,
    },
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

impl PullView {
    /// `show`: text output; bars when stderr is a terminal.
    pub fn new(show: bool) -> Self {
        let mode = show.then(|| {
            if std::io::stderr().is_terminal() {
                Mode::Bars {
                    multi: MultiProgress::new(),
                    bars: HashMap::new(),
                }
            } else {
                Mode::Lines {
                    reported: HashMap::new(),
                }
            }
        });
        PullView {
            mode,
            phase: String::new(),
        }
    }

    pub fn update(&mut self, p: &PullImageProgress) {
        let Some(mode) = &mut self.mode else { return };
        match mode {
            Mode::Bars { multi, bars } => {
                let style = ProgressStyle::with_template(
                    "{prefix} {wide_bar} {bytes:>10}/{total_bytes:<10} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                for l in &p.layers {
                    let bar = bars.entry(l.digest.clone()).or_insert_with(|| {
                        let b = multi.add(ProgressBar::new(l.size));
                        b.set_style(style.clone());
                        b.set_prefix(short(&l.digest).to_string());
                        b
                    });
                    bar.set_position(l.done.min(l.size));
                    bar.set_message(l.state.clone());
                    if matches!(l.state.as_str(), "done" | "exists") && !bar.is_finished() {
                        bar.set_position(l.size);
                        bar.finish();
                    }
                }
            }
            Mode::Lines { reported } => {
                if p.phase != self.phase && !p.phase.is_empty() {
                    eprintln!("{}: {}", p.name, p.phase);
                }
                for l in &p.layers {
                    let state = l.state.as_str();
                    if matches!(state, "done" | "exists")
                        && reported.get(&l.digest).map(String::as_str) != Some(state)
                    {
                        eprintln!("  {}: {state} ({} bytes)", short(&l.digest), l.size);
                        reported.insert(l.digest.clone(), state.to_string());
                    }
                }
            }
        }
        self.phase = p.phase.clone();
    }

    pub fn finish(&mut self) {
        if let Some(Mode::Bars { bars, .. }) = &self.mode {
            for b in bars.values() {
                if !b.is_finished() {
                    b.abandon();
                }
            }
        }
    }
}
