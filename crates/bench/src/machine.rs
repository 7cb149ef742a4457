//! What the benchmark ran on.

use std::process::Command;

use serde::Serialize;

/// The machine and the containerd installed on it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs (`processor` entries of /proc/cpuinfo).
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    /// `containerd --version` of the containerd on PATH ("" if none).
    pub containerd_version: String,
    /// /proc/loadavg (1, 5, 15 min) when the benchmark started and ended:
    /// well above 0 means something else competed for the CPUs.
    pub load_average_start: [f64; 3],
    pub load_average_end: [f64; 3],
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        let cores = if cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cores
        };
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpu_model,
            cores,
            memory_mib,
            kernel,
            containerd_version: containerd_version(),
            load_average_start: load_average(),
            load_average_end: [0.0; 3],
        }
    }

    /// Records the load average at the end of the benchmark.
    pub fn finish(mut self) -> Machine {
        self.load_average_end = load_average();
        self
    }

    /// One line for the text report.
    pub fn line(&self) -> String {
        format!(
            "{}, {} cores, {} MiB RAM, kernel {}, containerd {}, load average {:.2} at start, {:.2} at end",
            self.cpu_model,
            self.cores,
            self.memory_mib,
            self.kernel,
            if self.containerd_version.is_empty() {
                "?"
            } else {
                &self.containerd_version
            },
            self.load_average_start[0],
            self.load_average_end[0],
        )
    }
}

/// `1.6.20~ds1` from `containerd github.com/containerd/containerd 1.6.20~ds1 <rev>`.
fn containerd_version() -> String {
    Command::new("containerd")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, v) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = v.parse().unwrap_or(0.0);
    }
    out
}
