//! One record of the CRI log format:
//! `<timestamp> <stream> <tag> <content>\n`.
//!
//! The tag is `F` (the content is a full line; its `\n` is the record's own)
//! or `P` (a piece of a longer line, or the last bytes of the output when
//! they did not end with `\n`). Kubelet keeps the tag forward compatible:
//! tags are `:`-separated and only the first one counts, `P` meaning partial
//! and anything else full; [`parse_line`] does the same.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::timestamp::{format_timestamp, parse_timestamp};

/// Which of the container's output streams a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output (all of the output when the container has a tty).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in the log format: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stream {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            _ => Err(()),
        }
    }
}

/// A parsed log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When crius wrote the record.
    pub timestamp: SystemTime,
    /// The stream the content came from.
    pub stream: Stream,
    /// `P` (a piece of a line) rather than `F` (a full line).
    pub partial: bool,
    /// The content, without the record's terminating `\n`: the container
    /// wrote `content` followed by `\n` when the record is full, `content`
    /// alone when it is partial. Bytes that are not UTF-8 are replaced (see
    /// [`RawRecord`] for the bytes).
    pub content: String,
}

impl Record {
    /// The record as one line of the log file, with its `\n`.
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            format_timestamp(self.timestamp),
            self.stream,
            if self.partial { "P" } else { "F" },
            self.content
        )
    }
}

/// A parsed log record borrowing its content from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// When crius wrote the record.
    pub timestamp: SystemTime,
    /// The stream the content came from.
    pub stream: Stream,
    /// `P` rather than `F`.
    pub partial: bool,
    /// The content, without the record's terminating `\n`.
    pub content: &'a [u8],
}

impl RawRecord<'_> {
    /// An owned [`Record`], the content decoded as UTF-8 (lossily).
    pub fn to_record(&self) -> Record {
        Record {
            timestamp: self.timestamp,
            stream: self.stream,
            partial: self.partial,
            content: String::from_utf8_lossy(self.content).into_owned(),
        }
    }
}

/// Parses one line of a CRI log file (with or without its `\n`) as kubelet
/// does; `None` if it is not a record.
pub fn parse_line(line: &str) -> Option<Record> {
    parse_line_bytes(line.as_bytes()).map(|r| r.to_record())
}

/// [`parse_line`] on bytes: log content need not be UTF-8.
pub fn parse_line_bytes(line: &[u8]) -> Option<RawRecord<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (ts, rest) = split_field(line)?;
    let (stream, rest) = split_field(rest)?;
    let (tag, content) = split_field(rest)?;
    let timestamp = parse_timestamp(std::str::from_utf8(ts).ok()?)?;
    let stream = std::str::from_utf8(stream).ok()?.parse().ok()?;
    let first_tag = tag.split(|&c| c == b':').next().unwrap_or_default();
    if first_tag.is_empty() {
        return None;
    }
    Some(RawRecord {
        timestamp,
        stream,
        partial: first_tag == b"P",
        content,
    })
}

/// The bytes before the first space and those after it.
fn split_field(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b' ', b)?;
    Some((&b[..i], &b[i + 1..]))
}

/// Appends one record to `out`; `ts` is the formatted timestamp.
pub(crate) fn encode(out: &mut Vec<u8>, ts: &[u8], stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn parses_kubelet_examples() {
        let r =
            parse_line("2016-10-06T00:17:09.669794202Z stdout F The content of the log entry 1")
                .expect("record");
        assert_eq!(
            r.timestamp,
            UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202)
        );
        assert_eq!(r.stream, Stream::Stdout);
        assert!(!r.partial);
        assert_eq!(r.content, "The content of the log entry 1");

        let r = parse_line("2016-10-06T00:17:09.669794203Z stderr P First line of log entry 2\n")
            .expect("record");
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.content, "First line of log entry 2");

        // containerd's trimmed timestamps; forward-compatible tags.
        let r = parse_line("2016-10-06T00:17:10.1Z stdout P:x:y more").expect("record");
        assert!(r.partial);
        assert_eq!(r.content, "more");
        let r = parse_line("2016-10-06T00:17:10.1Z stdout F:x more").expect("record");
        assert!(!r.partial);
    }

    #[test]
    fn empty_and_spacey_content() {
        let r = parse_line("2016-10-06T00:17:09.669794202Z stdout F \n").expect("record");
        assert_eq!(r.content, "");
        let r = parse_line("2016-10-06T00:17:09.669794202Z stdout F  a  b \r").expect("record");
        assert_eq!(r.content, " a  b \r");
    }

    #[test]
    fn refuses_non_records() {
        for bad in [
            "",
            "\n",
            "2016-10-06T00:17:09.669794202Z",
            "2016-10-06T00:17:09.669794202Z stdout",
            "2016-10-06T00:17:09.669794202Z stdout F",
            "2016-10-06T00:17:09.669794202Z stdin F x",
            "2016-10-06T00:17:09.669794202Z stdout  x",
            "yesterday stdout F x",
            "{\"log\":\"docker json\"}",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encode_then_parse() {
        let ts = UNIX_EPOCH + Duration::new(1_700_000_000, 42);
        let mut out = Vec::new();
        let mut tsb = Vec::new();
        crate::timestamp::write_timestamp(ts, &mut tsb);
        encode(&mut out, &tsb, Stream::Stderr, true, b"a\r");
        assert_eq!(out, b"2023-11-14T22:13:20.000000042Z stderr P a\r\n");
        let r = parse_line_bytes(&out).expect("record");
        assert_eq!(
            r,
            RawRecord {
                timestamp: ts,
                stream: Stream::Stderr,
                partial: true,
                content: b"a\r"
            }
        );
        assert_eq!(r.to_record().to_line().as_bytes(), &out[..]);
    }
}
