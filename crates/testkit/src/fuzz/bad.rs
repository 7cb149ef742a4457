//! Malformed values: what a careless or hostile client sends. Each comes
//! with a short description for the report (a huge string is described by
//! its length, never shown).

use super::rng::Gen;

/// A malformed value and what it is.
pub struct Bad<T> {
    /// The value sent.
    pub value: T,
    /// What it is, for the report (`huge(1048576)`, `NUL`, …).
    pub what: String,
}

fn bad<T>(value: T, what: impl Into<String>) -> Bad<T> {
    Bad {
        value,
        what: what.into(),
    }
}

/// Sizes of huge strings: 100 KB to 1 MB (gRPC's limit is 4 MiB).
const HUGE: [usize; 3] = [100_000, 300_000, 1_000_000];

/// A huge string of `n` bytes: one character repeated, or a pattern.
pub fn huge(g: &mut Gen) -> Bad<String> {
    let n = g.pick(&HUGE);
    let value = if g.chance(0.5) {
        "x".repeat(n)
    } else {
        "ab/".repeat(n / 3)
    };
    let len = value.len();
    bad(value, format!("huge({len})"))
}

/// Any malformed string.
pub fn string(g: &mut Gen) -> Bad<String> {
    match g.below(15) {
        0 => bad(String::new(), "empty"),
        1 | 2 => huge(g),
        3 => bad("ünïcødé-名前-🚀".to_owned(), "unicode"),
        4 => bad("a\tb\nc\r\u{1b}[31m\u{7f}".to_owned(), "control characters"),
        5 => bad("a\0b".to_owned(), "NUL"),
        6 => bad("../../../../etc/passwd".to_owned(), "traversal"),
        7 => bad("a".repeat(300), "300 characters"),
        8 => bad(" leading and trailing ".to_owned(), "spaces"),
        9 => bad(
            "a;b|c&&d$(e)`f`%s%n".to_owned(),
            "shell and format characters",
        ),
        10 => bad("\u{202e}evil\u{200b}".to_owned(), "bidi and zero-width"),
        11 => bad(g.pick(&[".", ".."]).to_owned(), "dots"),
        12 => bad("UPPER_Case".to_owned(), "upper case and underscore"),
        13 => bad("/".to_owned(), "a slash"),
        _ => bad("-".repeat(64), "dashes"),
    }
}

/// A malformed object id: empty, huge, NUL, traversal, a glob, or a
/// string of the right length that is not hex.
pub fn id(g: &mut Gen) -> Bad<String> {
    match g.below(8) {
        0 => bad(String::new(), "empty id"),
        1 => huge(g),
        2 => bad(format!("{}\0", g.hex(63)), "NUL in id"),
        3 => bad("../../../../etc".to_owned(), "traversal id"),
        4 => bad("*".to_owned(), "glob id"),
        5 => bad("Z".repeat(64), "not hex"),
        6 => bad("ïd-ünïcødé".to_owned(), "unicode id"),
        _ => string(g),
    }
}

/// A malformed absolute-or-not path below `base` (never outside the
/// fuzzer's scratch directory's parent, so nothing lands elsewhere).
pub fn path(g: &mut Gen, base: &str) -> Bad<String> {
    match g.below(9) {
        0 => bad("relative/dir".to_owned(), "relative path"),
        1 => bad(format!("{base}/a/../../{}-escape", leaf(base)), "traversal"),
        2 => bad(format!("{base}/{}", "d".repeat(300)), "300-character name"),
        3 => bad(
            format!("{base}/{}", "abc/".repeat(1200)),
            "4800-character path",
        ),
        4 => bad(format!("{base}/a\0b"), "NUL"),
        5 => bad(format!("{base}/a\nb"), "line break"),
        6 => bad(format!("{base}/ünï/名前"), "unicode"),
        7 => bad(format!("{base}/missing/a/b"), "missing directories"),
        _ => bad(String::new(), "empty"),
    }
}

/// The last component of `path`.
pub fn leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// An absurd integer: negative, zero, one, or far too large.
pub fn int(g: &mut Gen) -> Bad<i64> {
    let v = g.pick(&[
        -1,
        -1_000_000_000_000_000_000,
        0,
        1,
        2,
        999,
        1_000_000_000_000_000_000,
        i64::MAX,
        i64::MIN,
        1 << 31,
        (1 << 32) + 1,
    ]);
    bad(v, v.to_string())
}

/// A garbage cpuset list.
pub fn cpuset(g: &mut Gen) -> Bad<String> {
    let v = g.pick(&[
        "abc", "0-", "-1", "1000000", "0-1023", "0,,1", "1-0", "0-1-2", " 0", "0\n", "٣",
    ]);
    bad(v.to_owned(), format!("cpuset {v:?}"))
}
