#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests, and the integration tests
# against a real containerd, runc, CNI plugins and a local registry (each test
# binary starts its own private containerd and criusd). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run as root: the integration tests run containerd" >&2; exit 1; }

hack/deps.sh --test
rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
hack/deny.sh
cargo test --workspace
