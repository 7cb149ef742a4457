//! cgroup driver choice.

use serde::{Deserialize, Serialize};

/// The cgroup driver setting in the config: a fixed driver or detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriverSetting {
    /// systemd when the host runs systemd as init, else cgroupfs.
    #[default]
    Auto,
    Cgroupfs,
    Systemd,
}

/// The cgroup driver in force, reported to kubelet by `RuntimeConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl CgroupDriverSetting {
    /// Resolve the setting; `systemd_booted` is whether the host was booted by
    /// systemd (the caller checks `/run/systemd/system`).
    pub fn resolve(self, systemd_booted: bool) -> CgroupDriver {
        match self {
            CgroupDriverSetting::Cgroupfs => CgroupDriver::Cgroupfs,
            CgroupDriverSetting::Systemd => CgroupDriver::Systemd,
            CgroupDriverSetting::Auto if systemd_booted => CgroupDriver::Systemd,
            CgroupDriverSetting::Auto => CgroupDriver::Cgroupfs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_init_system() {
        assert_eq!(
            CgroupDriverSetting::Auto.resolve(false),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            CgroupDriverSetting::Auto.resolve(true),
            CgroupDriver::Systemd
        );
        assert_eq!(
            CgroupDriverSetting::Cgroupfs.resolve(true),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            CgroupDriverSetting::Systemd.resolve(false),
            CgroupDriver::Systemd
        );
    }
}
