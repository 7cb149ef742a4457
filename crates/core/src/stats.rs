//! Container resource usage from cgroup file contents, as CRI reports it
//! (`ContainerStats`): pure functions over the text the caller read.
//!
//! cgroup v1: `cpuacct.usage` (ns), `memory.usage_in_bytes`,
//! `memory.limit_in_bytes`, `memory.stat`; cgroup v2: `cpu.stat`
//! (`usage_usec`), `memory.current`, `memory.max`, `memory.stat`.
//! The working set is usage minus inactive file pages, as kubelet and
//! containerd compute it.

use std::collections::HashMap;

/// Memory usage of a container, bytes (faults are counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    /// Limit minus working set; `None` without a limit.
    pub available: Option<u64>,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// `key value` lines (`memory.stat`, `cpu.stat`).
pub fn parse_flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// A cgroup v1 memory limit file's value; the "unlimited" page-counter
/// maximum (and anything near it) is no limit.
fn limit_v1(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|l| *l < (1u64 << 62))
}

/// Memory from cgroup v1 files.
pub fn memory_v1(usage_in_bytes: &str, limit_in_bytes: &str, stat: &str) -> Option<Memory> {
    let usage: u64 = usage_in_bytes.trim().parse().ok()?;
    let stat = parse_flat_keyed(stat);
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let working_set = usage.saturating_sub(get("total_inactive_file"));
    Some(Memory {
        usage,
        working_set,
        available: limit_v1(limit_in_bytes).map(|l| l.saturating_sub(working_set)),
        rss: get("total_rss"),
        page_faults: get("total_pgfault"),
        major_page_faults: get("total_pgmajfault"),
    })
}

/// Memory from cgroup v2 files (`memory.max` is `max` without a limit).
pub fn memory_v2(current: &str, max: &str, stat: &str) -> Option<Memory> {
    let usage: u64 = current.trim().parse().ok()?;
    let stat = parse_flat_keyed(stat);
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let working_set = usage.saturating_sub(get("inactive_file"));
    Some(Memory {
        usage,
        working_set,
        available: max
            .trim()
            .parse::<u64>()
            .ok()
            .map(|l| l.saturating_sub(working_set)),
        rss: get("anon"),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
    })
}

/// Cumulative CPU time, ns, from cgroup v1 `cpuacct.usage`.
pub fn cpu_v1(cpuacct_usage: &str) -> Option<u64> {
    cpuacct_usage.trim().parse().ok()
}

/// Cumulative CPU time, ns, from cgroup v2 `cpu.stat`.
pub fn cpu_v2(cpu_stat: &str) -> Option<u64> {
    parse_flat_keyed(cpu_stat)
        .get("usage_usec")
        .map(|us| us.saturating_mul(1000))
}

/// CPU use between two samples `(timestamp ns, cumulative usage ns)`, in
/// core-nanoseconds per second (1e9 = one core busy); `None` without a
/// later sample or when the counter went back (a new cgroup).
pub fn nano_cores(earlier: (i64, u64), later: (i64, u64)) -> Option<u64> {
    let elapsed = u64::try_from(later.0.checked_sub(earlier.0)?).ok()?;
    if elapsed == 0 || later.1 < earlier.1 {
        return None;
    }
    let used = u128::from(later.1 - earlier.1);
    u64::try_from(used * 1_000_000_000 / u128::from(elapsed)).ok()
}

/// One network interface's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// The interfaces of a `/proc/<pid>/net/dev`, loopback left out.
pub fn net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, counters) = l.split_once(':')?;
            let name = name.trim();
            let n: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (name != "lo" && n.len() >= 11).then(|| Interface {
                name: name.to_string(),
                rx_bytes: n[0],
                rx_errors: n[2],
                tx_bytes: n[8],
                tx_errors: n[10],
            })
        })
        .collect()
}

/// Pressure stall information of one resource (`cpu.pressure`,
/// `memory.pressure`, `io.pressure`): the share of time some, or all,
/// tasks of the cgroup waited for it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    /// `None` where the kernel has no `full` line (CPU before 5.13).
    pub full: Option<PsiLine>,
}

/// One line of a pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiLine {
    /// Stalled time, ns (the file counts microseconds).
    pub total_ns: u64,
    /// Percentages over 10, 60 and 300 seconds.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// The cgroup's pressure of each resource, where the kernel has PSI
/// (cgroup v2 files; on a v1 host, those of its unified hierarchy).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub cpu: Option<Psi>,
    pub memory: Option<Psi>,
    pub io: Option<Psi>,
}

/// A pressure file (`some avg10=0.00 avg60=0.00 avg300=0.00 total=12`).
pub fn psi(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let kind = words.next()?;
        let mut l = PsiLine::default();
        for w in words {
            let (k, v) = w.split_once('=')?;
            match k {
                "avg10" => l.avg10 = v.parse().ok()?,
                "avg60" => l.avg60 = v.parse().ok()?,
                "avg300" => l.avg300 = v.parse().ok()?,
                "total" => l.total_ns = v.parse::<u64>().ok()?.saturating_mul(1000),
                _ => {}
            }
        }
        match kind {
            "some" => some = Some(l),
            "full" => full = Some(l),
            _ => {}
        }
    }
    Some(Psi { some: some?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_V1: &str = "cache 4096\nrss 100\ntotal_rss 8192\ntotal_inactive_file 1024\ntotal_pgfault 42\ntotal_pgmajfault 3\n";

    #[test]
    fn memory_from_v1_files() {
        let m = memory_v1("10240\n", "9223372036854771712\n", STAT_V1).expect("parsed");
        assert_eq!(
            m,
            Memory {
                usage: 10240,
                working_set: 9216,
                available: None,
                rss: 8192,
                page_faults: 42,
                major_page_faults: 3,
            }
        );
        let limited = memory_v1("10240", "16384", STAT_V1).expect("parsed");
        assert_eq!(limited.available, Some(16384 - 9216));
        assert_eq!(memory_v1("", "0", STAT_V1), None);
    }

    #[test]
    fn memory_from_v2_files() {
        let stat = "anon 700\nfile 300\ninactive_file 200\npgfault 9\npgmajfault 1\n";
        let m = memory_v2("1000\n", "max\n", stat).expect("parsed");
        assert_eq!((m.working_set, m.available, m.rss), (800, None, 700));
        let m = memory_v2("1000", "4096", stat).expect("parsed");
        assert_eq!(m.available, Some(4096 - 800));
    }

    #[test]
    fn cpu_counters_and_rates() {
        assert_eq!(cpu_v1("123456789\n"), Some(123_456_789));
        assert_eq!(cpu_v2("usage_usec 1500\nuser_usec 1000\n"), Some(1_500_000));
        // Half a core over one second.
        assert_eq!(
            nano_cores((1_000_000_000, 0), (2_000_000_000, 500_000_000)),
            Some(500_000_000)
        );
        assert_eq!(nano_cores((5, 10), (5, 20)), None, "no time passed");
        assert_eq!(nano_cores((1, 20), (2, 10)), None, "counter went back");
    }

    #[test]
    fn interfaces_from_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    0    0     0          0         0     7000      50    1    0    0     0       0          0
";
        assert_eq!(
            net_dev(text),
            vec![Interface {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_errors: 2,
                tx_bytes: 7000,
                tx_errors: 1,
            }]
        );
    }

    #[test]
    fn pressure_files_in_nanoseconds() {
        let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=46141\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=45146\n";
        let p = psi(text).expect("parsed");
        assert_eq!(p.some.total_ns, 46_141_000);
        assert_eq!((p.some.avg10, p.some.avg60), (1.5, 0.25));
        assert_eq!(p.full.map(|f| f.total_ns), Some(45_146_000));
        let cpu_only = psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").expect("some");
        assert_eq!(cpu_only.full, None);
        assert_eq!(psi(""), None);
        assert_eq!(psi("some avg10=x"), None);
    }
}
