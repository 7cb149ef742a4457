//! Counting calls and answers, grouping findings, and the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use tonic::Code;

use super::verdict::{Finding, Kind};

/// Findings kept per run (a fault hit in a loop would fill memory).
const MAX_FINDINGS: usize = 5000;

/// What a run (or one worker) did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Workers.
    pub workers: usize,
    /// How long the calls ran (cleanup not included).
    pub elapsed: Duration,
    /// Calls made (liveness probes not counted).
    pub calls: u64,
    /// Calls with malformed input.
    pub malformed: u64,
    /// Calls per RPC and answer (`OK`, a gRPC code's name, `HANG`).
    pub by_rpc: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Everything found, in the order found (at most 5000).
    pub findings: Vec<Finding>,
    /// Findings not kept (beyond the limit).
    pub dropped: u64,
    /// Pods and containers the cleanup removed.
    pub removed: (usize, usize),
}

/// A gRPC code's name as in the gRPC spec (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Report {
    /// Counts one call of `rpc` answered `answer`.
    pub fn count(&mut self, rpc: &'static str, answer: &'static str, malformed: bool) {
        self.calls += 1;
        self.malformed += u64::from(malformed);
        *self
            .by_rpc
            .entry(rpc)
            .or_default()
            .entry(answer)
            .or_default() += 1;
    }

    /// Records a finding (counted only, past the limit).
    pub fn find(&mut self, f: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        } else {
            self.dropped += 1;
        }
    }

    /// Adds another worker's counts and findings.
    pub fn merge(&mut self, other: Report) {
        self.calls += other.calls;
        self.malformed += other.malformed;
        for (rpc, answers) in other.by_rpc {
            let mine = self.by_rpc.entry(rpc).or_default();
            for (a, n) in answers {
                *mine.entry(a).or_default() += n;
            }
        }
        self.dropped += other.dropped;
        for f in other.findings {
            self.find(f);
        }
    }

    /// Calls per answer, over every RPC.
    pub fn by_answer(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for answers in self.by_rpc.values() {
            for (a, n) in answers {
                *out.entry(*a).or_default() += n;
            }
        }
        out
    }

    /// Adds a finding for every line of `log` that tells of a panic (Rust's
    /// `panicked`, Go's `panic: ` at the start of a line).
    pub fn check_log(&mut self, log: &str) {
        let panics: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("panicked") || l.starts_with("panic: "))
            .collect();
        for line in panics {
            self.find(Finding::of_run(Kind::Panic, self.seed, line));
        }
    }

    /// Findings grouped by kind, RPC, code and message (ids and numbers
    /// in the message made alike), most frequent first.
    pub fn groups(&self) -> Vec<Group<'_>> {
        let mut map: BTreeMap<(Kind, &str, String, String), Group<'_>> = BTreeMap::new();
        for f in &self.findings {
            let code = f.code.map(code_name).unwrap_or("").to_owned();
            let key = (f.kind, f.rpc, code, normalize(&f.message));
            let g = map
                .entry(key)
                .or_insert_with(|| Group { count: 0, first: f });
            g.count += 1;
        }
        let mut groups: Vec<Group<'_>> = map.into_values().collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.count));
        groups
    }

    /// The summary: totals, per RPC and answer, and the findings grouped.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "crius fuzz: seed {} workers {} for {:.0} s: {} calls ({:.0}/s), {} with malformed input (theirs or their target's); removed {} pods, {} containers",
            self.seed,
            self.workers,
            self.elapsed.as_secs_f64(),
            self.calls,
            self.calls as f64 / self.elapsed.as_secs_f64().max(0.001),
            self.malformed,
            self.removed.0,
            self.removed.1
        );
        let _ = writeln!(s, "answers: {}", counts(&self.by_answer()));
        for (rpc, answers) in &self.by_rpc {
            let _ = writeln!(s, "  {rpc:<26} {}", counts(answers));
        }
        s.push_str(&self.findings_text());
        s
    }

    /// The findings, grouped, each with its first occurrence.
    pub fn findings_text(&self) -> String {
        let mut s = String::new();
        let groups = self.groups();
        let _ = writeln!(
            s,
            "findings: {} in {} groups{}",
            self.findings.len() as u64 + self.dropped,
            groups.len(),
            if self.dropped > 0 {
                format!(" ({} not kept)", self.dropped)
            } else {
                String::new()
            }
        );
        for (i, g) in groups.iter().enumerate() {
            let _ = writeln!(s, "{}. [{}x] {}", i + 1, g.count, g.first.describe());
        }
        s
    }
}

fn counts(answers: &BTreeMap<&'static str, u64>) -> String {
    let mut v: Vec<(&&str, &u64)> = answers.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(a, n)| format!("{a} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Findings alike: one group, its size and its first member.
#[derive(Debug)]
pub struct Group<'a> {
    /// How many.
    pub count: usize,
    /// The first found.
    pub first: &'a Finding,
}

impl Finding {
    /// The finding in a few lines: what, where, how to make it again.
    pub fn describe(&self) -> String {
        let mut s = format!("{}: {}", self.kind.name(), self.rpc);
        if let Some(c) = self.code {
            let _ = write!(s, " -> {}", code_name(c));
        }
        let _ = write!(s, " {:?}", self.message);
        if let Some((w, i)) = self.at {
            let _ = write!(
                s,
                "\n     reproduce: seed {} worker {w} call {i}",
                self.seed
            );
        }
        if !self.flaws.is_empty() {
            let _ = write!(s, "\n     malformed: {}", self.flaws.join("; "));
        }
        if let Some(d) = self.deadline {
            let _ = write!(s, "\n     sent with a deadline of {d:?}");
        }
        if !self.concurrent.is_empty() {
            let _ = write!(s, "\n     concurrent: {}", self.concurrent.join("; "));
        }
        if !self.request.is_empty() {
            let _ = write!(s, "\n     request: {}", self.request);
        }
        s
    }
}

/// `s` with runs of one character longer than 16 shortened to `c×N`, then
/// cut at `max` characters.
pub fn abbreviate(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let mut n = 1;
        while chars.peek() == Some(&c) {
            chars.next();
            n += 1;
        }
        if n > 16 {
            let _ = write!(out, "{c}×{n}");
        } else {
            out.extend(std::iter::repeat_n(c, n));
        }
    }
    if out.chars().count() > max {
        let cut: String = out.chars().take(max).collect();
        return format!("{cut}…");
    }
    out
}

/// Debug output with every string literal longer than `keep` characters
/// cut to its first `keep` and its length.
pub fn shorten_strings(debug: &str, keep: usize) -> String {
    let mut out = String::new();
    let mut chars = debug.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        let mut lit = String::new();
        let mut n = 0;
        while let Some(c) = chars.next() {
            if c == '"' {
                break;
            }
            n += 1;
            if n <= keep {
                lit.push(c);
            }
            if c == '\\'
                && let Some(e) = chars.next()
                && n <= keep
            {
                lit.push(e);
            }
        }
        out.push_str(&lit);
        if n > keep {
            let _ = write!(out, "…({n} chars)");
        }
        out.push('"');
    }
    out
}

/// A message with what differs between occurrences of one fault (ids,
/// pids, numbers, paths of temporary directories) made alike.
pub fn normalize(message: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 && run.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
        } else if !run.is_empty() && run.chars().all(|c| c.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    let tmp = out.find("/tmp/").map(|i| i + 5);
    if let Some(i) = tmp {
        // crius-d-AbC123/... -> one spelling for every temporary directory.
        let end = out[i..].find('/').map_or(out.len(), |j| i + j);
        out.replace_range(i..end, "<tmp>");
    }
    out.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviate_shortens_runs_and_cuts() {
        assert_eq!(abbreviate("abc", 10), "abc");
        assert_eq!(abbreviate(&"x".repeat(1_000_000), 100), "x×1000000");
        assert_eq!(abbreviate(&format!("a{}b", "y".repeat(17)), 100), "ay×17b");
        assert_eq!(abbreviate("abcdef", 3), "abc…");
    }

    #[test]
    fn shorten_strings_cuts_long_literals_only() {
        let d = format!("{:?}", ("ab/".repeat(100), "short", "q\"uote"));
        assert_eq!(
            shorten_strings(&d, 6),
            "(\"ab/ab/…(300 chars)\", \"short\", \"q\\\"uote\")"
        );
    }

    #[test]
    fn normalize_makes_ids_and_numbers_alike() {
        let a = normalize("lstat /proc/1234/ns/ipc: no such file (container 0123456789abcdef)");
        let b = normalize("lstat /proc/99/ns/ipc: no such file (container fedcba9876543210)");
        assert_eq!(a, b);
        assert_eq!(a, "lstat /proc/N/ns/ipc: no such file (container <id>)");
        assert_eq!(
            normalize("/tmp/crius-d-AbC/x"),
            normalize("/tmp/crius-d-XyZ/x")
        );
    }

    #[test]
    fn groups_count_alike_findings_once() {
        let mut r = Report::default();
        for pid in [1, 2, 3] {
            let mut f = Finding::of_run(Kind::Leak, 7, &format!("shim {pid} left"));
            f.rpc = "RemovePodSandbox";
            r.find(f);
        }
        r.find(Finding::of_run(
            Kind::Panic,
            7,
            "thread 'x' panicked at a.rs",
        ));
        let groups = r.groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].count, 3);
        assert!(r.findings_text().contains("[3x] left behind"));
    }

    #[test]
    fn panics_in_the_log_are_findings() {
        let mut r = Report::default();
        r.check_log("INFO fine\nthread 'tokio-runtime-worker' panicked at src/x.rs:1:2:\nboom\n");
        r.check_log("level=info msg=panic: in a message\npanic: runtime error: nil\n");
        assert_eq!(r.findings.len(), 2);
        assert_eq!(r.findings[0].kind, Kind::Panic);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Report::default();
        a.count("Version", "OK", false);
        let mut b = Report::default();
        b.count("Version", "OK", true);
        b.count("Version", "INTERNAL", false);
        a.merge(b);
        assert_eq!(a.calls, 3);
        assert_eq!(a.malformed, 1);
        assert_eq!(a.by_rpc["Version"]["OK"], 2);
        assert_eq!(a.by_answer()["INTERNAL"], 1);
    }
}
