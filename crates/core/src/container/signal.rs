//! Stop signals by name and number (Linux, x86_64 and arm64 alike), as
//! images (`STOPSIGNAL`), CRI (`stop_signal`, the `Signal` enum's names)
//! and StopContainer use them.

/// The standard signals and their aliases, without the `SIG` prefix.
const SIGNALS: [(&str, u32); 34] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// glibc's `SIGRTMIN` and `SIGRTMAX` (the kernel's 32 and 33 are its own).
const RTMIN: u32 = 34;
const RTMAX: u32 = 64;

/// The number of signal `s`: a number (`15`), a name with or without
/// `SIG` (`TERM`, `SIGTERM`), a real-time one as images write them
/// (`RTMIN+3`, `RTMAX-1`) or as CRI's enum names them (`SIGRTMINPLUS3`,
/// `SIGRTMAXMINUS1`). None for anything else.
pub fn signal_number(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(k, _)| *k == name) {
        return Some(n);
    }
    let offset = |rest: &str, plus: &str, minus: &str| -> Option<i64> {
        if rest.is_empty() {
            return Some(0);
        }
        let (sign, n) = if let Some(n) = rest.strip_prefix(plus) {
            (1, n)
        } else {
            (-1, rest.strip_prefix(minus)?)
        };
        n.parse::<i64>().ok().map(|n| sign * n)
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        i64::from(RTMIN) + offset(rest.replace("PLUS", "+").as_str(), "+", "-")?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        i64::from(RTMAX) + offset(rest.replace("MINUS", "-").as_str(), "+", "-")?
    } else {
        return None;
    };
    u32::try_from(n)
        .ok()
        .filter(|n| (RTMIN..=RTMAX).contains(n))
}

/// The name of signal number `n` as CRI's `Signal` enum spells it
/// (`SIGTERM`, `SIGRTMINPLUS3`, `SIGRTMAXMINUS1`); None outside 1-64.
pub fn cri_signal_name(n: u32) -> Option<String> {
    if let Some((name, _)) = SIGNALS.iter().find(|(_, m)| *m == n) {
        return Some(format!("SIG{name}"));
    }
    match n {
        RTMIN => Some("SIGRTMIN".into()),
        RTMAX => Some("SIGRTMAX".into()),
        n if (RTMIN..RTMIN + 16).contains(&n) => Some(format!("SIGRTMINPLUS{}", n - RTMIN)),
        n if (RTMIN + 16..RTMAX).contains(&n) => Some(format!("SIGRTMAXMINUS{}", RTMAX - n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for (s, n) in [
            ("15", 15),
            ("TERM", 15),
            ("SIGTERM", 15),
            ("sigusr1", 10),
            ("SIGCLD", 17),
            ("RTMIN", 34),
            ("RTMIN+3", 37),
            ("SIGRTMINPLUS3", 37),
            ("RTMAX-1", 63),
            ("SIGRTMAXMINUS1", 63),
            ("SIGRTMAX", 64),
        ] {
            assert_eq!(signal_number(s), Some(n), "{s}");
        }
        for bad in [
            "",
            "0",
            "65",
            "TERMINATE",
            "RTMIN+40",
            "RTMAX+1",
            "RTMIN-1",
            "SIG",
        ] {
            assert_eq!(signal_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_number_has_the_name_cri_gives_it() {
        for n in (1..=31).chain(34..=64) {
            let name = cri_signal_name(n).unwrap_or_else(|| panic!("{n}"));
            assert_eq!(signal_number(&name), Some(n), "{name}");
        }
        assert_eq!(cri_signal_name(6).as_deref(), Some("SIGABRT"));
        assert_eq!(cri_signal_name(49).as_deref(), Some("SIGRTMINPLUS15"));
        assert_eq!(cri_signal_name(50).as_deref(), Some("SIGRTMAXMINUS14"));
        assert_eq!(cri_signal_name(65), None);
    }
}
