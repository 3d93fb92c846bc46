#!/usr/bin/env bash
# A by-hand trial of podswitch-cni under a real runtime (podman 4.3 with its CNI backend, as
# shared/RUNTIMES.md describes), all inside a network namespace of its own
# (psw-cni-trial-$$) and private podman state under a temporary directory.
# Usage: netns-scripts/cni-podman-trial.sh [SOCKET]
#   SOCKET  a running podswitchd's control socket; without it, the mock daemon of the plugin's
#           tests (cni/tests/mock_daemon) is served for the trial.
# PSW_CNI_VERSION=0.3.1 (or 0.4.0, 1.1.0) runs it with that cniVersion in the conflist.
# Runs a container (ADD, result read by podman, addresses and DNS inside), restarts it (DEL,
# ADD), removes it (DEL) and checks that no host end is left. Needs root; installs podman,
# runc and busybox-static if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/netns-scripts/install-tools.sh"
install_tools podman:podman runc:runc busybox:busybox-static
[ -x /usr/lib/cni/loopback ] || install_tools /usr/lib/cni/loopback:containernetworking-plugins

d=$(mktemp -d /tmp/psw-cni-trial-XXXXXX)
ns=psw-cni-trial-$$
mock_pid=
# podman's state outside --root/--runroot (RUNTIMES.md): removed at the end if this run made it.
made=()
for p in /run/libpod /run/runc /var/lib/containers /var/lib/cni; do [ -e "$p" ] || made+=("$p"); done
cleanup() {
  [ -z "$mock_pid" ] || kill "$mock_pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$d" "${made[@]}"
}
trap cleanup EXIT

socket=${1:-}
if [ -z "$socket" ]; then
  socket=$d/mock.sock
  exe=$(cd "$root" && cargo test -p podswitch-cni --test netns --no-run 2>&1 | sed -n 's/.*Executable tests\/netns.rs (\(.*\))/\1/p' | tail -1)
  PSW_MOCK_SOCKET=$socket "$exe" --ignored serve_mock >"$d/mock.log" 2>&1 &
  mock_pid=$!
  for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
fi
plugin=${CARGO_TARGET_DIR:-$root/target}/debug/podswitch-cni
[ -x "$plugin" ] || (cd "$root" && cargo build -p podswitch-cni)

mkdir -p "$d"/{bin,conf,root,runroot,tmp,rootfs/bin}
cp "$plugin" /usr/lib/cni/loopback "$d/bin/"
sed -e "s|/run/podswitch/podswitch.sock|$socket|" \
  -e "s|\"cniVersion\": \"1.0.0\"|\"cniVersion\": \"${PSW_CNI_VERSION:-1.0.0}\"|" \
  "$root/configs/cni/10-podswitch.conflist" >"$d/conf/10-podswitch.conflist"
cat >"$d/containers.conf" <<CONF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$d/bin"]
network_config_dir = "$d/conf"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
CONF
cp /bin/busybox "$d/rootfs/bin/"
for l in sh ip sleep cat; do ln -sf busybox "$d/rootfs/bin/$l"; done
tar -C "$d/rootfs" -cf "$d/rootfs.tar" .
ip netns add "$ns"

export CONTAINERS_CONF=$d/containers.conf TMPDIR=$d/tmp
pm() { nsenter --net="/run/netns/$ns" podman --root "$d/root" --runroot "$d/runroot" --storage-driver overlay "$@"; }
host_ends() { ip -n "$ns" -br link | grep -c '^psw' || true; }

pm import --change 'CMD ["/bin/sh"]' "$d/rootfs.tar" localhost/psw-trial:1 >/dev/null
pm run -d --stop-timeout 1 --name psw-trial --network podswitch localhost/psw-trial:1 sleep 600 >/dev/null
pm exec psw-trial sh -c 'ip addr show eth0; ip route; cat /etc/resolv.conf'
[ "$(host_ends)" = 1 ] || { echo "FAIL: no host end after run"; exit 1; }
pm restart psw-trial >/dev/null
[ "$(host_ends)" = 1 ] || { echo "FAIL: host ends after restart: $(host_ends)"; exit 1; }
pm rm -f psw-trial >/dev/null
[ "$(host_ends)" = 0 ] || { echo "FAIL: host end left after rm"; exit 1; }
pm rmi -f localhost/psw-trial:1 >/dev/null 2>&1 || true
rm -f /var/lib/cni/results/podswitch-* 2>/dev/null || true
echo "podman trial passed: run (ADD), restart (DEL, ADD), rm (DEL)"
