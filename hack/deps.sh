#!/usr/bin/env bash
# Installs the Debian packages crius needs (and, with --test, those its tests need).
# Packages already present are not reinstalled; apt-get runs only when something is missing.
set -euo pipefail

packages=(containerd runc containernetworking-plugins protobuf-compiler iproute2 iptables gcc libc6-dev)
if [[ "${1:-}" == "--test" ]]; then
  # groff-base: hack/check-package.sh renders the man pages.
  packages+=(docker-registry busybox-static skopeo umoci openssl python3 groff-base)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian containerd package may start the system containerd; crius uses a private one.

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install a Rust toolchain (https://rustup.rs), 1.88 or newer" >&2
  exit 1
fi
