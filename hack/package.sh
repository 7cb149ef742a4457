#!/usr/bin/env bash
# Builds the Debian package of crius: release binaries, man pages and
# completions from the clap definitions, the default config from the
# binary itself, then `cargo deb` (metadata in crates/crius/Cargo.toml).
# Prints the .deb's path on its last line. hack/check-package.sh checks it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
[[ $CARGO_TARGET_DIR == /* ]] || CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"

if [[ "$(cargo deb --version 2>/dev/null || true)" != *"$CARGO_DEB_VERSION"* ]]; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

cargo build --release --locked -p crius --bins

# Generated files go where cargo-deb's target/release/ assets point.
out="$CARGO_TARGET_DIR/release/package"
rm -rf "$out"
mkdir -p "$out"
cargo run --locked -q -p crius --example crius-docs -- "$out"
gzip -9n "$out"/man/*
"$CARGO_TARGET_DIR/release/criusd" config default > "$out/config.toml"

mkdir -p "$CARGO_TARGET_DIR/debian"
# cargo deb prints the package's path last.
deb=$(cargo deb --locked -p crius --no-build --output "$CARGO_TARGET_DIR/debian/" | tail -n 1)
[[ -f $deb ]] || { echo "cargo deb made no package (it said: $deb)" >&2; exit 1; }
echo "$deb"
