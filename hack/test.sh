#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests, and the integration tests
# against a real containerd, runc, CNI plugins and a local registry (each test
# binary starts its own private containerd and criusd). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run as root: the integration tests run containerd" >&2; exit 1; }

# Disk: a clean build without incremental artefacts is about 2 GiB (with
# them 4 GiB; CI builds once, so they are only weight), the package's
# release build about 1 GiB more, and the tests' own
# containerd roots under /tmp hold a few hundred MiB at a time. A full disk
# fails dozens of tests at once with ENOSPC; say so first.
export CARGO_INCREMENTAL=0
for dir in "${CARGO_TARGET_DIR:-target}" "${TMPDIR:-/tmp}"; do
    mkdir -p "$dir"
    free_mib=$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')
    echo "disk: ${free_mib} MiB free for $dir"
    if (( free_mib < 4096 )); then
        echo "only ${free_mib} MiB free for $dir: the builds and the tests need about 4 GiB" >&2
        exit 1
    fi
done

hack/deps.sh --test
rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
hack/deny.sh
cargo test --workspace

# The Debian package: release binaries, man pages, completions, config and
# unit, unpacked into a scratch directory and checked.
deb=$(hack/package.sh | tail -n 1)
hack/check-package.sh "$deb"
