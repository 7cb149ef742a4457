//! Compiles pause.c into a static executable in OUT_DIR (gcc and the static
//! C library: Debian packages gcc and libc6-dev).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=pause.c");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("pause");
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".to_string());
    let version = format!(
        "-DCRIUS_VERSION=\"{}\"",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&version)
        .arg("pause.c")
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {cc} to build pause (install gcc and libc6-dev): {e}")
        });
    assert!(
        status.success(),
        "{cc} failed to build pause.c (install gcc and libc6-dev)"
    );
}
