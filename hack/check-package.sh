#!/usr/bin/env bash
# Checks a crius .deb (hack/package.sh makes it): control fields, every file
# and its mode, the maintainer scripts, that the binaries run from the
# unpacked tree, that the packaged config is the binary's defaults, the man
# pages, the completions and the systemd unit. Exits non-zero at the first
# failure, naming it.
#
#   hack/check-package.sh target/debian/crius_0.1.0-1_amd64.deb
set -euo pipefail

deb=${1:?usage: check-package.sh CRIUS.deb}
[[ -f $deb ]] || { echo "no such package: $deb" >&2; exit 1; }
for tool in dpkg-deb groff zcat python3; do
    command -v "$tool" >/dev/null || { echo "check-package: $tool is missing" >&2; exit 1; }
done

checks=0
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { checks=$((checks + 1)); }

scratch=$(mktemp -d /tmp/crius-deb-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root
ctrl=$scratch/control
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$ctrl"

# --- control fields -------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == crius ]] || fail "Package is '$(field Package)'"; ok
version=$(field Version)
[[ $version == [0-9]* ]] || fail "Version is '$version'"; ok
depends=$(field Depends)
for dep in containerd runc libc6; do
    [[ ", $depends," == *", $dep"[\ ,]* ]] || fail "Depends lacks $dep: $depends"; ok
done
# CheckpointContainer needs CRIU (Debian 12's cannot run on kernels >= 6.13:
# hack/deps.sh builds a newer one there), so it is recommended, not required.
[[ ", $(field Recommends)," == *", criu,"* ]] || fail "Recommends lacks criu: $(field Recommends)"; ok
[[ -n $(field Description) ]] || fail "no Description"; ok
[[ $(field Architecture) == "$(dpkg --print-architecture)" ]] || fail "Architecture $(field Architecture)"; ok

# --- files and modes ------------------------------------------------------
# The tar listing: every path's mode and owner as dpkg will install them.
listing=$scratch/listing
dpkg-deb -c "$deb" | awk '{ sub(/^\.\//, "", $6); if ($2 == "0/0") $2 = "root/root"; print $1, $2, $6 }' > "$listing"
expect_file() { # path mode
    local path=$1 mode=$2 line
    line=$(awk -v p="$path" '$3 == p' "$listing")
    [[ -n $line ]] || fail "$path is not in the package"
    [[ $line == "$mode root/root $path" ]] || fail "$path: '$line', expected $mode root/root"
    [[ -s $root/$path ]] || fail "$path is empty"
    ok
}
unit=usr/lib/systemd/system/criusd.service
expect_file usr/bin/criusd -rwxr-xr-x
expect_file usr/bin/crius -rwxr-xr-x
expect_file "$unit" -rw-r--r--
expect_file etc/crius/config.toml -rw-r--r--
expect_file usr/share/bash-completion/completions/crius -rw-r--r--
expect_file usr/share/zsh/vendor-completions/_crius -rw-r--r--
expect_file usr/share/fish/vendor_completions.d/crius.fish -rw-r--r--
expect_file usr/share/doc/crius/examples/10-crius-bridge.conflist -rw-r--r--
expect_file usr/share/doc/crius/copyright -rw-r--r--
for page in man1/crius.1 man1/crius-pod-run.1 man1/crius-completion.1 man1/crius-doctor.1 \
        man8/criusd.8 man8/criusd-config.8 man8/criusd-config-default.8; do
    expect_file "usr/share/man/$page.gz" -rw-r--r--
done
# Nothing where kubelet's network setup or the operator owns the files.
! grep -q ' etc/cni' "$listing" || fail "the package ships files under /etc/cni"; ok
writable=$(awk 'substr($1, 6, 1) == "w" || substr($1, 9, 1) == "w"' "$listing")
[[ -z $writable ]] || fail "group- or world-writable paths: $writable"; ok

# --- maintainer scripts ---------------------------------------------------
grep -qx /etc/crius/config.toml "$ctrl/conffiles" || fail "/etc/crius/config.toml is not a conffile"; ok
grep -q 'deb-systemd-helper' "$ctrl/postinst" && grep -q 'criusd.service' "$ctrl/postinst" \
    || fail "postinst does not register criusd.service"; ok
# Not enabled or started at install (enable only re-applies an earlier
# choice on a reinstall); restarted on upgrade only if running.
grep -q 'deb-systemd-helper debian-installed criusd.service' "$ctrl/postinst" \
    || fail "postinst enables criusd on a first install"; ok
! grep -Eq '(deb-systemd-invoke|systemctl) (start|restart) ' "$ctrl/postinst" || fail "postinst starts criusd"; ok
grep -q 'try-restart' "$ctrl/postinst" || fail "postinst does not try-restart criusd on upgrade"; ok
grep -q 'stop' "$ctrl/prerm" && grep -q criusd.service "$ctrl/prerm" \
    || fail "prerm does not stop criusd on removal"; ok

# --- the binaries run from the unpacked tree -------------------------------
criusd=$root/usr/bin/criusd
crius=$root/usr/bin/crius
[[ $("$criusd" --version) == "criusd ${version%%-*}" ]] \
    || fail "criusd --version says '$("$criusd" --version)', the package is $version"; ok
"$crius" --help | grep -q completion || fail "crius --help has no completion command"; ok
for shell_file in bash:usr/share/bash-completion/completions/crius \
        zsh:usr/share/zsh/vendor-completions/_crius \
        fish:usr/share/fish/vendor_completions.d/crius.fish; do
    "$crius" completion "${shell_file%%:*}" | cmp -s - "$root/${shell_file#*:}" \
        || fail "${shell_file#*:} differs from \`crius completion ${shell_file%%:*}\`"
    ok
done
bash -n "$root/usr/share/bash-completion/completions/crius" || fail "bash completion has a syntax error"; ok
grep -q 'port-forward' "$root/usr/share/bash-completion/completions/crius" || fail "bash completion lacks port-forward"; ok

# --- the config is the binary's own defaults --------------------------------
"$criusd" config default | cmp -s - "$root/etc/crius/config.toml" \
    || fail "etc/crius/config.toml differs from \`criusd config default\`"; ok
grep -q '^# ' "$root/etc/crius/config.toml" || fail "the config has no comments"; ok
: > "$scratch/empty.toml"
"$criusd" --config "$scratch/empty.toml" config check > "$scratch/defaults.toml"
"$criusd" --config "$root/etc/crius/config.toml" config check > "$scratch/packaged.toml" \
    || fail "criusd refuses the packaged config"
cmp -s "$scratch/defaults.toml" "$scratch/packaged.toml" \
    || fail "the packaged config, as criusd loads it, is not the defaults: $(diff "$scratch/defaults.toml" "$scratch/packaged.toml")"; ok
grep -qx 'socket = "/run/crius/crius.sock"' "$scratch/packaged.toml" || fail "the socket is not /run/crius/crius.sock"; ok
python3 -c 'import json, sys
net = json.load(open(sys.argv[1]))
types = [p["type"] for p in net["plugins"]]
assert net["cniVersion"] and types[0] == "bridge" and "loopback" in types, types' \
    "$root/usr/share/doc/crius/examples/10-crius-bridge.conflist" || fail "the example CNI config is not valid"; ok

# --- man pages --------------------------------------------------------------
pages=0
for page in "$root"/usr/share/man/man[18]/*.gz; do
    section=${page%.gz}; section=${section##*.}
    name=$(basename "${page%.*.gz}")
    zcat "$page" | grep -q "^\.TH $name $section" || fail "$page has no .TH $name $section"
    warnings=$(zcat "$page" | groff -man -Tutf8 -ww -z 2>&1)
    [[ -z $warnings ]] || fail "groff warns on $page: $warnings"
    pages=$((pages + 1))
done
(( pages >= 10 )) || fail "only $pages man pages"; ok
zcat "$root/usr/share/man/man1/crius.1.gz" | groff -man -Tutf8 2>/dev/null | grep -q doctor \
    || fail "crius(1) does not list the doctor command"; ok
zcat "$root/usr/share/man/man8/criusd.8.gz" | grep -qF -- '\-\-containerd\-address' \
    || fail "criusd(8) does not list --containerd-address"; ok
if command -v man >/dev/null; then
    MANWIDTH=80 man -l "$root/usr/share/man/man8/criusd.8.gz" 2>&1 | grep -q 'CRI' \
        || fail "man -l cannot show criusd(8)"
    ok
fi

# --- the systemd unit -------------------------------------------------------
# "Section.Key=value" per line, comments dropped.
unit_keys() {
    awk '/^[ \t]*[#;]/ || /^[ \t]*$/ { next }
         /^\[.*\]$/ { section = substr($0, 2, length($0) - 2); next }
         { print section "." $0 }' "$1"
}
check_unit() { # file; prints what is wrong, fails when something is
    local keys wrong=0
    keys=$(unit_keys "$1")
    for want in Unit.After=*containerd.service* Unit.Wants=*containerd.service* \
            Service.Type=notify Service.ExecStart=/usr/bin/criusd Service.Restart=on-failure \
            Service.KillMode=process Service.LimitNOFILE=1048576 Service.TasksMax=infinity \
            Service.LimitNPROC=infinity Service.LimitCORE=infinity Install.WantedBy=multi-user.target; do
        local found=0 line
        while IFS= read -r line; do
            # shellcheck disable=SC2053 # $want is a pattern
            [[ $line == $want ]] && found=1
        done <<< "$keys"
        (( found )) || { echo "unit: no $want"; wrong=1; }
    done
    return "$wrong"
}
check_unit "$root/$unit" || fail "the unit lacks required keys"; ok
# The check itself catches a unit that would take containers down with it.
sed 's/^KillMode=process/KillMode=control-group/' "$root/$unit" > "$scratch/broken.service"
! check_unit "$scratch/broken.service" > /dev/null || fail "check_unit passed a unit with KillMode=control-group"; ok
[[ -x $root/$(unit_keys "$root/$unit" | sed -n 's/^Service\.ExecStart=\///p') ]] || fail "ExecStart is not in the package"; ok
if command -v systemd-analyze >/dev/null; then
    # The unit as installed, but ExecStart= in the unpacked tree (the host
    # has no /usr/bin/criusd) and Documentation= against the package's pages.
    sed "s|^ExecStart=/usr/bin/criusd|ExecStart=$root/usr/bin/criusd|" "$root/$unit" \
        > "$scratch/criusd.service"
    if ! out=$(MANPATH=$root/usr/share/man systemd-analyze verify "$scratch/criusd.service" 2>&1); then
        fail "systemd-analyze verify: $out"
    fi
    # Bad values are only warnings to it.
    [[ -z $out ]] || fail "systemd-analyze verify warns: $out"
    ok
    echo "systemd-analyze verify: criusd.service is valid"
else
    echo "systemd-analyze is not installed: the unit was checked by key only, not verified by systemd"
fi

echo "package $(basename "$deb"): $checks checks passed"
