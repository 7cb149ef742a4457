#!/usr/bin/env bash
# Installs what is missing, builds crius, starts a PRIVATE containerd (its own
# root, state and socket under crius' directories, never the system one) and
# criusd on /run/crius/crius.sock, then shows `crius info`.
#   hack/up.sh        start (or restart criusd with a fresh build)
#   hack/up.sh stop   stop criusd and the private containerd (containers are killed)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run as root (containerd and CNI need it)" >&2; exit 1; }

CTD_ROOT=/var/lib/crius/containerd
CTD_STATE=/run/crius/containerd
CTD_SOCK=$CTD_STATE/containerd.sock
LOGS=/var/log/crius
CONFIG=/etc/crius/config.toml

stop_pid() { # pidfile
  [[ -f $1 ]] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

if [[ "${1:-}" == "stop" ]]; then
  stop_pid /run/crius/criusd.pid
  pkill -KILL -f -- "-address $CTD_SOCK" 2>/dev/null || true   # shims of the private containerd
  stop_pid /run/crius/containerd.pid
  echo "stopped criusd and the private containerd"
  exit 0
fi

hack/deps.sh
cargo build --release --bin criusd --bin crius
install -m 0755 target/release/criusd target/release/crius /usr/local/bin/

mkdir -p "$CTD_ROOT" "$CTD_STATE" "$LOGS" /etc/crius /run/crius
chmod 0711 /run/crius

# The private containerd: CRI plugin off (crius is the CRI), own socket.
cat > /var/lib/crius/containerd.toml <<TOML
version = 2
root = "$CTD_ROOT"
state = "$CTD_STATE"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
TOML
if ! { [[ -f /run/crius/containerd.pid ]] && kill -0 "$(cat /run/crius/containerd.pid)" 2>/dev/null; }; then
  nohup containerd --config /var/lib/crius/containerd.toml >>"$LOGS/containerd.log" 2>&1 &
  echo $! > /run/crius/containerd.pid
  echo "started private containerd (pid $!, socket $CTD_SOCK, log $LOGS/containerd.log)"
fi

# A default pod network when the node has none: a private bridge, no NAT.
mkdir -p /etc/cni/net.d
if ! ls /etc/cni/net.d/*.conflist /etc/cni/net.d/*.conf /etc/cni/net.d/*.json >/dev/null 2>&1; then
  cat > /etc/cni/net.d/10-crius.conflist <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "crius",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crius0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.85.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
  echo "installed a default CNI network: /etc/cni/net.d/10-crius.conflist (10.85.0.0/16, no NAT)"
fi

# criusd's config: the defaults, pointed at the private containerd.
if [[ ! -f $CONFIG ]]; then
  criusd config default | sed "s|^address = \"/run/containerd/containerd.sock\"|address = \"$CTD_SOCK\"|" > "$CONFIG"
  echo "wrote $CONFIG"
fi
criusd --config "$CONFIG" config check >/dev/null

stop_pid /run/crius/criusd.pid
nohup criusd --config "$CONFIG" >>"$LOGS/criusd.log" 2>&1 &
echo $! > /run/crius/criusd.pid
echo "started criusd (pid $!, log $LOGS/criusd.log)"

# criusd answers at once; RuntimeReady follows once containerd answers.
for _ in $(seq 100); do
  crius info 2>/dev/null | grep -Eq "RuntimeReady +true" && break
  sleep 0.1
done
crius info
