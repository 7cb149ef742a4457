#!/usr/bin/env bash
# Installs the Debian packages crius needs (and, with --test, those its tests need).
# Packages already present are not reinstalled; apt-get runs only when something is missing.
set -euo pipefail

packages=(containerd runc containernetworking-plugins protobuf-compiler iproute2 iptables gcc libc6-dev criu)
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

# CRIU (CheckpointContainer: runc runs the `criu` on its PATH). Debian 12's
# 3.17 cannot run on kernels 6.13 and newer (their vDSO layout, CRIU issue
# 2532: `criu check` fails "Unexpected rt vDSO area bounds"). Then Debian
# 13's CRIU 4.1.1 source package (from deb.debian.org, its checksum checked)
# is built and installed as /usr/local/sbin/criu, ahead of /usr/sbin on PATH.
criu_version=4.1.1
criu_sha256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
if ! criu check >/dev/null 2>&1; then
  echo "the installed CRIU cannot run on this kernel: building CRIU $criu_version"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends make pkgconf curl ca-certificates xz-utils \
    libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnl-3-dev libnftables-dev \
    libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler uuid-dev >/dev/null
  build=$(mktemp -d)
  tarball="criu_${criu_version}.orig.tar.xz"
  curl -fsSL -o "$build/$tarball" "https://deb.debian.org/debian/pool/main/c/criu/$tarball"
  echo "$criu_sha256  $build/$tarball" | sha256sum -c --quiet
  tar -xJf "$build/$tarball" -C "$build"
  make -s -C "$build/criu-$criu_version" -j"$(nproc)" criu >"$build/make.log" 2>&1 ||
    { tail -20 "$build/make.log" >&2; exit 1; }
  install -m 0755 "$build/criu-$criu_version/criu/criu" /usr/local/sbin/criu
  rm -rf "$build"
  hash -r
  criu check >/dev/null || { echo "CRIU $criu_version does not work here either" >&2; exit 1; }
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install a Rust toolchain (https://rustup.rs), 1.88 or newer" >&2
  exit 1
fi
