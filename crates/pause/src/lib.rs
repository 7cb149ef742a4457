//! The pause program, built from `pause.c` at compile time and embedded, so
//! `criusd` can create its sandbox image locally: pods start on a node that
//! reaches no registry.

/// The static pause executable.
pub const PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

#[cfg(test)]
mod tests {
    #[test]
    fn is_a_static_elf_that_runs() {
        assert_eq!(&super::PAUSE[..4], b"\x7fELF");
        let dir = std::env::temp_dir().join(format!("crius-pause-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tempdir");
        let bin = dir.join("pause");
        std::fs::write(&bin, super::PAUSE).expect("write");
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let out = std::process::Command::new(&bin)
            .arg("-v")
            .output()
            .expect("run pause -v");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("crius-pause "));
    }
}
