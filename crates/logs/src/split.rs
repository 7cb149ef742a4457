//! Cutting a stream's bytes into records, as containerd's `redirectLogs`
//! does: a line (its `\n` dropped) is one `F` record when it is at most
//! `max_line` bytes; a longer one is `P` records of `max_line` bytes then an
//! `F` record with the rest (never an empty one: a line of exactly
//! `k * max_line` bytes ends with an `F` of `max_line` bytes). Bytes left at
//! EOF without a `\n` are one `P` record.

use std::ops::Range;

/// One record's content: a range of the buffer it was cut from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub partial: bool,
    pub range: Range<usize>,
}

/// Cuts the complete records out of `buf`, appending them to `pieces`, and
/// returns where the incomplete rest starts (it is at most `max_line`
/// bytes). `clean` is how many bytes at the start of `buf` are known to hold
/// no `\n` (the rest carried over from the previous call), so they are not
/// scanned again. `max_line` must be positive.
pub(crate) fn split(buf: &[u8], max_line: usize, clean: usize, pieces: &mut Vec<Piece>) -> usize {
    debug_assert!(max_line > 0);
    let mut start: usize = 0;
    let mut pos = clean.min(buf.len());
    loop {
        // A line may hold max_line bytes and then its '\n'.
        let limit = buf
            .len()
            .min(start.saturating_add(max_line).saturating_add(1));
        match memchr::memchr(b'\n', &buf[pos.min(limit)..limit]) {
            Some(i) => {
                let nl = pos.min(limit) + i;
                pieces.push(Piece {
                    partial: false,
                    range: start..nl,
                });
                start = nl + 1;
                pos = start;
            }
            None if limit - start > max_line => {
                // max_line bytes and more of the same line follow.
                pieces.push(Piece {
                    partial: true,
                    range: start..start + max_line,
                });
                start += max_line;
                pos = limit;
            }
            None => return start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after the other as the reader does, then EOF;
    /// returns the records as (partial, content).
    fn run(chunks: &[&[u8]], max_line: usize) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut clean = 0;
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            let mut pieces = Vec::new();
            let rest = split(&buf, max_line, clean, &mut pieces);
            assert!(buf.len() - rest <= max_line);
            for p in pieces {
                out.push((p.partial, buf[p.range].to_vec()));
            }
            buf.drain(..rest);
            clean = buf.len();
        }
        if !buf.is_empty() {
            out.push((true, buf));
        }
        out
    }

    fn full(s: &str) -> (bool, Vec<u8>) {
        (false, s.as_bytes().to_vec())
    }

    fn part(s: &str) -> (bool, Vec<u8>) {
        (true, s.as_bytes().to_vec())
    }

    #[test]
    fn full_lines_and_empty_lines() {
        assert_eq!(
            run(&[b"a\n\nbc\r\n"], 16),
            vec![full("a"), full(""), full("bc\r")]
        );
    }

    #[test]
    fn final_bytes_without_newline_are_partial() {
        assert_eq!(run(&[b"a\nbc"], 16), vec![full("a"), part("bc")]);
        assert_eq!(run(&[b"a\n"], 16), vec![full("a")]);
    }

    #[test]
    fn long_lines_split_at_max_line() {
        assert_eq!(run(&[b"abcd\n"], 4), vec![full("abcd")]);
        assert_eq!(run(&[b"abcde\n"], 4), vec![part("abcd"), full("e")]);
        assert_eq!(
            run(&[b"abcdefgh\nx\n"], 4),
            vec![part("abcd"), full("efgh"), full("x")]
        );
        assert_eq!(
            run(&[b"abcdefghij"], 4),
            vec![part("abcd"), part("efgh"), part("ij")]
        );
        assert_eq!(run(&[b"abcdefgh"], 4), vec![part("abcd"), part("efgh")]);
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let input = b"hello world\n\nthis line is long enough to split\r\nend\nno newline";
        for max in [1, 2, 3, 5, 7, 16, 100] {
            let whole = run(&[input], max);
            for cut in 0..input.len() {
                let (a, b) = input.split_at(cut);
                assert_eq!(run(&[a, b], max), whole, "max {max} cut {cut}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(run(&bytes, max), whole, "max {max} bytewise");
            // Content is never lost or reordered.
            let mut back = Vec::new();
            for (partial, c) in &whole {
                back.extend_from_slice(c);
                if !partial {
                    back.push(b'\n');
                }
            }
            assert_eq!(back, input, "max {max}");
            assert!(whole.iter().all(|(_, c)| c.len() <= max));
        }
    }

    #[test]
    fn a_max_line_piece_waits_for_the_next_byte() {
        // "abcd" then "\n" in the next read: one F record, not P + empty F.
        assert_eq!(run(&[b"abcd", b"\n"], 4), vec![full("abcd")]);
        assert_eq!(run(&[b"abcd", b"e\n"], 4), vec![part("abcd"), full("e")]);
    }
}
