//! Container and pod resources: values kubelet sends, and absurd ones.

use std::collections::HashMap;

use crius_cri_api::v1::{HugepageLimit, LinuxContainerResources};

use super::super::bad;
use super::Ctx;

const MIB: i64 = 1 << 20;

/// Resources kubelet could send for a small container: CPU shares, maybe a
/// CFS quota, maybe a memory limit well above what busybox uses.
pub fn valid(cx: &mut Ctx<'_>) -> LinuxContainerResources {
    let g = &mut cx.g;
    let mut r = LinuxContainerResources {
        cpu_shares: g.pick(&[2, 102, 512, 1024]),
        oom_score_adj: g.pick(&[0, 999, 1000]),
        ..Default::default()
    };
    if g.chance(0.5) {
        r.cpu_period = 100_000;
        r.cpu_quota = g.pick(&[10_000, 50_000, 200_000]);
    }
    if g.chance(0.5) {
        r.memory_limit_in_bytes = g.pick(&[64, 128, 256]) * MIB;
    }
    if g.chance(0.2) {
        r.cpuset_cpus = "0".into();
        r.cpuset_mems = "0".into();
    }
    r
}

/// Makes one field of `r` absurd and says which and how.
pub fn spoil(r: &mut LinuxContainerResources, cx: &mut Ctx<'_>) -> String {
    let g = &mut cx.g;
    match g.below(12) {
        0 => set(&mut r.cpu_period, "cpu_period", bad::int(g)),
        1 => set(&mut r.cpu_quota, "cpu_quota", bad::int(g)),
        2 => set(&mut r.cpu_shares, "cpu_shares", bad::int(g)),
        3 => set(
            &mut r.memory_limit_in_bytes,
            "memory_limit_in_bytes",
            bad::int(g),
        ),
        4 => set(&mut r.oom_score_adj, "oom_score_adj", bad::int(g)),
        5 => set(
            &mut r.memory_swap_limit_in_bytes,
            "memory_swap_limit_in_bytes",
            bad::int(g),
        ),
        6 => {
            let b = bad::cpuset(g);
            r.cpuset_cpus = b.value;
            format!("cpuset_cpus: {}", b.what)
        }
        7 => {
            let b = bad::cpuset(g);
            r.cpuset_mems = b.value;
            format!("cpuset_mems: {}", b.what)
        }
        8 => hugepages(r, g),
        9 => {
            r.cpu_period = 100_000;
            r.cpu_quota = 1;
            "cpu_quota 1 of a 100000 period".into()
        }
        10 => {
            r.memory_limit_in_bytes = 1;
            "memory_limit_in_bytes 1".into()
        }
        _ => unified(r, g),
    }
}

fn set(field: &mut i64, name: &str, b: bad::Bad<i64>) -> String {
    *field = b.value;
    format!("{name} {}", b.what)
}

fn hugepages(r: &mut LinuxContainerResources, g: &mut super::Gen) -> String {
    let page = g.pick(&["3MB", "", "2MB", "1GB", "abc", "../x"]);
    r.hugepage_limits = vec![HugepageLimit {
        page_size: page.into(),
        limit: g.pick(&[u64::MAX, 0, 1]),
    }];
    format!("hugepage_limits page_size {page:?}")
}

fn unified(r: &mut LinuxContainerResources, g: &mut super::Gen) -> String {
    let (k, v) = g.pick(&[
        ("memory.max", "abc"),
        ("../../cgroup.procs", "1"),
        ("cpu.weight", "0"),
        ("nonexistent.file", "1"),
        ("memory.max", "-1"),
        ("", ""),
        ("pids.max", "1\n2"),
    ]);
    r.unified = HashMap::from([(k.to_owned(), v.to_owned())]);
    format!("unified {k:?}={v:?}")
}
