//! RFC 3339 timestamps as the CRI log format uses them.
//!
//! crius writes UTC with all nine fractional digits
//! (`2016-10-06T00:17:09.669794202Z`, Go's `RFC3339NanoFixed` as CRI-O and
//! Docker write it): every timestamp has the same width, so the log sorts
//! and greps cleanly. Go's `time.RFC3339Nano` (what containerd writes) trims
//! trailing zeros instead; kubelet parses with `time.Parse(time.RFC3339Nano,
//! ..)`, which accepts any number of fractional digits, so it reads both.
//! [`parse_timestamp`] accepts what that `time.Parse` accepts: 0 or more
//! fractional digits (only the first nine count), `Z` or a `±hh:mm` offset.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crius_core::time::{civil_from_days, days_from_civil};

const NANOS_PER_SEC: u32 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// The length of a timestamp as [`format_timestamp`] writes it.
pub const TIMESTAMP_LEN: usize = "2016-10-06T00:17:09.669794202Z".len();

/// `t` in UTC as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always nine fractional
/// digits).
pub fn format_timestamp(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(TIMESTAMP_LEN);
    write_timestamp(t, &mut out);
    // Only ASCII digits and punctuation are written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends [`format_timestamp`]'s text to `out`.
pub(crate) fn write_timestamp(t: SystemTime, out: &mut Vec<u8>) {
    let (secs, nanos) = to_unix(t);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if (0..=9999).contains(&y) {
        push_digits(out, u64::try_from(y).unwrap_or(0), 4);
    } else {
        // Out of RFC 3339's range; never happens with a sane clock. Written
        // the way Go's formatter would, for the record.
        out.extend_from_slice(y.to_string().as_bytes());
    }
    out.push(b'-');
    push_digits(out, u64::from(m), 2);
    out.push(b'-');
    push_digits(out, u64::from(d), 2);
    out.push(b'T');
    push_digits(out, u64::try_from(hh).unwrap_or(0), 2);
    out.push(b':');
    push_digits(out, u64::try_from(mm).unwrap_or(0), 2);
    out.push(b':');
    push_digits(out, u64::try_from(ss).unwrap_or(0), 2);
    out.push(b'.');
    push_digits(out, u64::from(nanos), 9);
    out.push(b'Z');
}

fn push_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        // `v % 10` is below 10.
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses an RFC 3339 timestamp as Go's `time.Parse(time.RFC3339Nano, s)`
/// does: `YYYY-MM-DDTHH:MM:SS`, an optional `.` with fractional digits, then
/// `Z` or `±HH:MM`. `None` if `s` is not one.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < "2006-01-02T15:04:05Z".len()
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, &c) in frac[..n].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(c - b'0');
            }
        }
        for _ in n..9 {
            nanos *= 10;
        }
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = i64::from(digits(&[*h1, *h2])?);
            let om = i64::from(digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset;
    from_unix(secs, nanos)
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds and nanoseconds since the Unix epoch; the seconds are negative
/// before it, the nanoseconds always count forward.
fn to_unix(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nanos = d.subsec_nanos();
            if nanos > 0 {
                secs -= 1;
                nanos = NANOS_PER_SEC - nanos;
            }
            (secs, nanos)
        }
    }
}

fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
    } else {
        let back = Duration::new(secs.unsigned_abs(), 0);
        UNIX_EPOCH
            .checked_sub(back)?
            .checked_add(Duration::new(0, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_kubelet_example() {
        assert_eq!(
            format_timestamp(at(1_475_713_029, 669_794_202)),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(format_timestamp(at(0, 0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_timestamp(at(951_782_400, 5)),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            format_timestamp(UNIX_EPOCH - Duration::new(1, 0) + Duration::new(0, 1)),
            "1969-12-31T23:59:59.000000001Z"
        );
        assert_eq!(format_timestamp(SystemTime::now()).len(), TIMESTAMP_LEN);
    }

    #[test]
    fn parses_what_go_rfc3339nano_parses() {
        let want = at(1_475_713_029, 669_794_202);
        // Fixed width (crius, CRI-O), trimmed (containerd), and offsets.
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09.669794202Z"),
            Some(want)
        );
        assert_eq!(
            parse_timestamp("2016-10-06T02:17:09.669794202+02:00"),
            Some(want)
        );
        assert_eq!(
            parse_timestamp("2016-10-05T21:47:09.669794202-02:30"),
            Some(want)
        );
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09.6697942Z"),
            Some(at(1_475_713_029, 669_794_200))
        );
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09Z"),
            Some(at(1_475_713_029, 0))
        );
        // More than nine digits: the rest is ignored, as Go does.
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09.6697942021234Z"),
            Some(want)
        );
        for bad in [
            "",
            "2016-10-06 00:17:09Z",
            "2016-10-06T00:17:09",
            "2016-10-06T00:17:09.Z",
            "2016-13-06T00:17:09Z",
            "2015-02-29T00:17:09Z",
            "2016-10-06T24:00:00Z",
            "2016-10-06T00:17:60Z",
            "2016-10-06T00:17:09z",
            "2016-10-06T00:17:09+0200",
            "2016-10-06T00:17:09Zjunk",
            "２016-10-06T00:17:09Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        assert!(parse_timestamp("2016-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn round_trips_across_the_calendar() {
        // Every ~13 days over 1900..2200, with varying nanoseconds.
        let mut secs: i64 = -2_208_988_800;
        let mut nanos: u32 = 1;
        while secs < 7_258_118_400 {
            let t = from_unix(secs, nanos).expect("in range");
            let s = format_timestamp(t);
            assert_eq!(parse_timestamp(&s), Some(t), "{s}");
            assert_eq!(to_unix(t), (secs, nanos));
            secs += 1_123_457;
            nanos = ((u64::from(nanos) * 7 + 13) % u64::from(NANOS_PER_SEC)) as u32;
        }
    }
}
