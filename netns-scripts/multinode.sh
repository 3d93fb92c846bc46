#!/usr/bin/env bash
# podswitch multi-node harness: three podswitchd nodes forming one cluster over a real etcd,
# one plain-Linux node whose pods sit behind the kernel's own VXLAN device, and an outside
# client, all in network namespaces this script creates. Nothing is added to the root
# namespace, there is no route out, and `down` removes exactly what `up` made, by the name or
# PID recorded in the run directory.
#
#   multinode.sh up    [-p PREFIX] [-d RUNDIR] [-b BINDIR] [-m afxdp|afpacket|auto] [-t TTL]
#   multinode.sh down  [-p PREFIX] [-d RUNDIR]           stop and delete (safe to repeat)
#   multinode.sh exec  [-p ...] NS CMD...                run CMD in namespace PREFIX-NS
#                                                        (n1 n2 n3 k1 k1p out br)
#   multinode.sh ctl   [-p ...] NODE ARGS...             podswitchctl against NODE's daemon
#   multinode.sh pm    [-p ...] NODE ARGS...             podman of NODE (private state)
#   multinode.sh run   [-p ...] NODE NAME SCRIPT         a busybox container on the podswitch
#                                                        CNI network of NODE, running SCRIPT
#   multinode.sh stop  [-p ...] NODE [SIGNAL]            signal NODE's podswitchd (KILL)
#   multinode.sh start [-p ...] NODE                     start NODE's podswitchd again
#   multinode.sh etcd  [-p ...] stop|cont|pid            SIGSTOP / SIGCONT etcd, or its PID
#   multinode.sh etcdctl [-p ...] ARGS...                etcdctl (API v3) against the etcd
#   multinode.sh k1-sync [-p ...]                        program the kernel node's VXLAN
#                                                        (FDB, routes, neighbours) from etcd
#
# Layout (PREFIX default psm):
#   PREFIX-br   two bridges: `ul`, the underlay 192.168.100.0/24, and `cl`, the control
#               network 192.168.200.0/24 whose address 192.168.200.1 is etcd's (etcd runs
#               in this namespace)
#   PREFIX-n1..n3  podswitchd (uplink `up0` = 192.168.100.11-13, the whole interface is the
#               switch's; `ctl0` = 192.168.200.11-13, a kernel address used only to reach
#               etcd), `--etcd`, no pod_cidrs: each node leases a /24 of 10.244.0.0/16.
#               Containers are started by podman through podswitch-cni.
#   PREFIX-k1   a Linux node: `eth0` 192.168.100.21, `vxlan0` (VNI 1, port 4789), pod CIDR
#               10.245.9.0/24 on `kp0`; its pod is PREFIX-k1p (10.245.9.2, busybox httpd on
#               8080). Every podswitch node lists it as a static [[nodes]] entry.
#   PREFIX-out  an outside client, 192.168.100.50. LoadBalancer addresses come from
#               192.168.100.240/28 on the underlay: the client finds them by ARP, answered by
#               the node that announces each (layer 2 mode).
set -euo pipefail

PREFIX=psm
RUNDIR=
BINDIR=
MODE=auto
TTL=3
cmd=${1:-}
shift || true
while getopts "p:d:b:m:t:" o; do
  case $o in
    p) PREFIX=$OPTARG ;;
    d) RUNDIR=$OPTARG ;;
    b) BINDIR=$OPTARG ;;
    m) MODE=$OPTARG ;;
    t) TTL=$OPTARG ;;
    *) echo "usage: see the header of $0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pidfile.sh
. "$here/pidfile.sh"
RUNDIR=${RUNDIR:-/tmp/$PREFIX-run}
if [ -z "$BINDIR" ] && [ -f "$RUNDIR/bindir" ]; then BINDIR=$(cat "$RUNDIR/bindir"); fi
BINDIR=${BINDIR:-${CARGO_TARGET_DIR:-$here/../target}/debug}

NODES=(n1 n2 n3)
declare -A UL_IP=([n1]=192.168.100.11 [n2]=192.168.100.12 [n3]=192.168.100.13 [k1]=192.168.100.21 [out]=192.168.100.50)
declare -A UL_MAC=([n1]=02:00:00:64:00:11 [n2]=02:00:00:64:00:12 [n3]=02:00:00:64:00:13 [k1]=02:00:00:64:00:21 [out]=02:00:00:64:00:50)
declare -A CTL_IP=([n1]=192.168.200.11 [n2]=192.168.200.12 [n3]=192.168.200.13)
ETCD_IP=192.168.200.1
ETCD=http://$ETCD_IP:2379
K1_VTEP_MAC=02:00:00:99:00:21
K1_CIDR=10.245.9.0/24
K1_POD_IP=10.245.9.2
LB_POOL=192.168.100.240/28
ROUTER_MAC=02:00:00:00:00:01
APPLETS=(sh ip ping wget httpd nc sleep cat mkdir timeout seq echo env hostname)

ns() { echo "$PREFIX-$1"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

need() {
  [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 3; }
  # shellcheck source=install-tools.sh
  . "$here/install-tools.sh"
  install_tools ip:iproute2 ethtool:ethtool jq:jq iperf3:iperf3 curl:curl nsenter:util-linux etcd:etcd-server etcdctl:etcd-client \
    podman:podman runc:runc busybox:busybox-static /usr/lib/cni/loopback:containernetworking-plugins || exit 3
  for b in podswitchd podswitchctl podswitch-cni; do
    [ -x "$BINDIR/$b" ] || { echo "$BINDIR/$b missing (cargo build -p control -p podswitch-cni)" >&2; exit 3; }
  done
}

record() { echo "$2" >> "$RUNDIR/$1"; }

add_ns() {
  ip netns add "$(ns "$1")"
  record namespaces "$(ns "$1")"
  in_ns "$1" ip link set lo up
}

# A veth from namespace $1 (interface $2) to the bridge $4 of PREFIX-br (port name $3).
to_bridge() {
  local n=$1 dev=$2 port=$3 br=$4
  ip -n "$(ns br)" link add "$port" type veth peer name "$dev" netns "$(ns "$n")"
  ip -n "$(ns br)" link set "$port" master "$br" up
  ip netns exec "$(ns br)" ethtool -K "$port" tx off >/dev/null 2>&1 || true
}

etcdctl_() { ETCDCTL_API=3 ip netns exec "$(ns br)" etcdctl --endpoints "$ETCD" --dial-timeout 2s "$@"; }

start_etcd() {
  local d=$RUNDIR/etcd
  mkdir -p "$d"
  ip netns exec "$(ns br)" etcd --name "$PREFIX" --data-dir "$d/data" \
    --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$PREFIX=http://127.0.0.1:2380" --initial-cluster-state new \
    --logger zap --log-outputs stderr --log-level warn > /dev/null 2> "$d/etcd.log" &
  echo $! > "$d/etcd.pid"
  for _ in $(seq 100); do
    etcdctl_ endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "etcd did not become healthy:" >&2; cat "$d/etcd.log" >&2; exit 1
}

write_node_config() {
  local n=$1 f=$RUNDIR/$1/node.toml
  cat > "$f" <<TOML
# Generated by netns-scripts/multinode.sh for $PREFIX: node $n of the cluster.
[node]
name = "$n"
ipv4 = "${UL_IP[$n]}"
router_mac = "$ROUTER_MAC"
uplink_mac = "${UL_MAC[$n]}"

[datapath]
conntrack_flows = 65536
policy_denied = "reject"
service_cidrs = ["10.0.0.0/16"]
load_balancer_pools = ["$LB_POOL"]

[cluster]
lease_ttl_s = $TTL
cluster_cidrs = ["10.244.0.0/16"]

[[ports]]
name = "uplink"
kind = "uplink"
backend = "$MODE"
interface = "up0"

# The Linux node: the kernel's vxlan device, not a podswitch node.
# Its underlay MAC is learned from its ARP (the daemon asks for it); its VXLAN device's MAC
# is what inner frames go to.
[[nodes]]
name = "k1"
ip = "${UL_IP[k1]}"
vtep_mac = "$K1_VTEP_MAC"
pod_cidrs = ["$K1_CIDR"]

# The outside client's MAC (hosts that are not nodes are not learned on the uplink).
[[routes]]
prefix = "${UL_IP[out]}/32"
via = "uplink"
mac = "${UL_MAC[out]}"
TOML
}

start_daemon() {
  local n=$1 d=$RUNDIR/$1
  rm -f "$d/stats.txt"
  ip netns exec "$(ns "$n")" "$BINDIR/podswitchd" --config "$d/node.toml" --etcd "$ETCD" \
    --socket "$d/podswitch.sock" --state-dir "$d/state" --stats-file "$d/stats.txt" \
    --pid-file "$d/podswitchd.pid" --busy-polls 200 > "$d/podswitchd.out" 2>> "$d/podswitchd.log" &
  echo $! > "$d/daemon.pid"
  for _ in $(seq 150); do
    "$BINDIR/podswitchctl" --socket "$d/podswitch.sock" version >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$d/daemon.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "podswitchd of $n did not start:" >&2; tail -30 "$d/podswitchd.log" >&2; exit 1
}

# podman of node $1 with its private state and CNI config.
pm() {
  local n=$1 d=$RUNDIR/$1; shift
  CONTAINERS_CONF=$d/containers.conf TMPDIR=$d/tmp nsenter --net="/run/netns/$(ns "$n")" \
    podman --root "$d/root" --runroot "$d/runroot" --tmpdir "$d/libpod" --storage-driver overlay "$@"
}

setup_podman() {
  local n=$1 d=$RUNDIR/$1
  mkdir -p "$d/bin" "$d/conf" "$d/root" "$d/runroot" "$d/libpod" "$d/tmp"
  sed "s|/run/podswitch/podswitch.sock|$d/podswitch.sock|" "$here/../configs/cni/10-podswitch.conflist" \
    > "$d/conf/10-podswitch.conflist"
  cp "$BINDIR/podswitch-cni" "$d/bin/podswitch-cni"
  cp /usr/lib/cni/loopback "$d/bin/loopback"
  cat > "$d/containers.conf" <<CONF
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
  pm "$n" import --change 'CMD ["/bin/sh"]' "$RUNDIR/rootfs.tar" "localhost/$PREFIX-bb:1" >/dev/null 2>&1
}

make_image() {
  local r=$RUNDIR/rootfs
  mkdir -p "$r/bin" "$r/tmp" "$r/www/cgi-bin"
  cp /bin/busybox "$r/bin/busybox"
  for a in "${APPLETS[@]}"; do ln -sf busybox "$r/bin/$a"; done
  # The web pods' CGI: the client address the server sees (externalTrafficPolicy checks).
  # shellcheck disable=SC2016 # expanded by the CGI's shell, not this one
  printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n' > "$r/www/cgi-bin/ip"
  chmod +x "$r/www/cgi-bin/ip"
  # iperf3 with the shared libraries it needs (busybox's nc has no UDP in Debian's build).
  local lib
  mkdir -p "$r/usr/bin"
  cp "$(command -v iperf3)" "$r/usr/bin/iperf3"
  for lib in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
  tar -C "$r" -cf "$RUNDIR/rootfs.tar" .
}

# Container NAME on node N running SCRIPT; its id and sandbox recorded for `down`.
run_container() {
  local n=$1 name=$2 script=$3 id sk
  id=$(pm "$n" run -d --name "$name" --network podswitch "localhost/$PREFIX-bb:1" sh -c "$script")
  record containers "$n $id"
  sk=$(pm "$n" inspect -f '{{.NetworkSettings.SandboxKey}}' "$name")
  record sandboxes "${sk#/run/netns/}"
  echo "$id"
}

# The kernel node's side of the overlay, as flannel's vxlan backend programs it: for every
# podswitch node registered in etcd, an FDB entry (its VTEP MAC -> its underlay address), a
# route to its pod CIDRs through the first address of the block, on-link, and a permanent
# neighbour entry giving that address the VTEP MAC.
k1_sync() {
  local rec name ip mac cidr gw
  while read -r rec; do
    [ -n "$rec" ] || continue
    name=$(jq -r .name <<<"$rec")
    ip=$(jq -r .ipv4 <<<"$rec")
    mac=$(jq -r '.vtepMac // .mac' <<<"$rec")
    in_ns k1 bridge fdb replace "$mac" dev vxlan0 dst "$ip" self permanent
    for cidr in $(jq -r '.podCidrs[]' <<<"$rec"); do
      case $cidr in *:*) continue ;; esac
      gw=${cidr%/*}
      in_ns k1 ip neigh replace "$gw" lladdr "$mac" dev vxlan0 nud permanent
      in_ns k1 ip route replace "$cidr" via "$gw" dev vxlan0 onlink
      echo "k1: $cidr via $name ($ip, $mac)"
    done
  done < <(etcdctl_ get --prefix /podswitch/nodes/ --print-value-only | jq -c .)
}

up() {
  need
  down_quiet
  mkdir -p "$RUNDIR"
  echo "$BINDIR" > "$RUNDIR/bindir"
  echo "$MODE" > "$RUNDIR/mode"
  # Directories podman writes outside its private state that did not exist before.
  for g in /run/runc /var/lib/containers /var/lib/cni; do [ -e "$g" ] || record made "$g"; done

  add_ns br
  ip -n "$(ns br)" link add ul type bridge
  ip -n "$(ns br)" link add cl type bridge
  ip -n "$(ns br)" link set ul up
  ip -n "$(ns br)" link set cl up
  ip -n "$(ns br)" addr add "$ETCD_IP/24" dev cl
  start_etcd

  make_image
  for n in "${NODES[@]}"; do
    add_ns "$n"
    mkdir -p "$RUNDIR/$n"
    to_bridge "$n" up0 "$n-u" ul
    to_bridge "$n" ctl0 "$n-c" cl
    in_ns "$n" sysctl -qw net.ipv6.conf.up0.disable_ipv6=1
    in_ns "$n" ip link set up0 address "${UL_MAC[$n]}" up
    in_ns "$n" ethtool -K up0 gro off tx off >/dev/null 2>&1 || true
    in_ns "$n" ip addr add "${CTL_IP[$n]}/24" dev ctl0
    in_ns "$n" ip link set ctl0 up
    write_node_config "$n"
    start_daemon "$n"
    setup_podman "$n"
  done

  # The Linux node and its pod.
  add_ns k1
  add_ns k1p
  to_bridge k1 eth0 k1-u ul
  in_ns k1 ip link set eth0 address "${UL_MAC[k1]}" up
  in_ns k1 ethtool -K eth0 tx off >/dev/null 2>&1 || true
  in_ns k1 ip addr add "${UL_IP[k1]}/24" dev eth0
  in_ns k1 ip link add vxlan0 type vxlan id 1 dstport 4789 local "${UL_IP[k1]}" dev eth0 nolearning
  in_ns k1 ip link set vxlan0 address "$K1_VTEP_MAC" mtu 1450 up
  in_ns k1 ethtool -K vxlan0 tx off >/dev/null 2>&1 || true
  in_ns k1 ip addr add "${K1_CIDR%/*}/32" dev vxlan0
  in_ns k1 ip link add kp0 type veth peer name eth0 netns "$(ns k1p)"
  in_ns k1 ip addr add 10.245.9.1/24 dev kp0
  in_ns k1 ip link set kp0 up
  in_ns k1 sysctl -qw net.ipv4.ip_forward=1
  in_ns k1 sysctl -qw net.ipv4.conf.all.rp_filter=0
  in_ns k1p ip link set eth0 mtu 1450 up
  in_ns k1p ethtool -K eth0 tx off >/dev/null 2>&1 || true
  in_ns k1p ip addr add "$K1_POD_IP/24" dev eth0
  in_ns k1p ip route add default via 10.245.9.1
  mkdir -p "$RUNDIR/k1p/www"
  echo k1p > "$RUNDIR/k1p/www/index.html"
  ip netns exec "$(ns k1p)" busybox httpd -f -p 8080 -h "$RUNDIR/k1p/www" > "$RUNDIR/k1p/httpd.log" 2>&1 &
  echo $! > "$RUNDIR/k1p/httpd.pid"

  # The outside client.
  add_ns out
  to_bridge out eth0 out-u ul
  in_ns out ip link set eth0 address "${UL_MAC[out]}" up
  in_ns out ethtool -K eth0 tx off >/dev/null 2>&1 || true
  in_ns out ip addr add "${UL_IP[out]}/24" dev eth0

  # Every podswitch node registered: program the kernel node from etcd.
  for _ in $(seq 100); do
    [ "$(etcdctl_ get --prefix /podswitch/nodes/ --keys-only | grep -c .)" -ge 3 ] && break
    sleep 0.1
  done
  k1_sync
  echo "up: $PREFIX: ${NODES[*]} (podswitchd, $MODE), k1 (kernel vxlan), out; etcd $ETCD; run dir $RUNDIR"
}

down_quiet() {
  local n line id
  for n in "${NODES[@]}"; do
    # Containers first, while the daemon still answers the plugin's DEL.
    if [ -f "$RUNDIR/$n/containers.conf" ] && ns_exists "$(ns "$n")"; then
      pm "$n" rm -a -f -t 0 >/dev/null 2>&1 || true
      pm "$n" rmi -a -f >/dev/null 2>&1 || true
    fi
    kill_pidfile "$RUNDIR/$n/daemon.pid"
  done
  kill_pidfile "$RUNDIR/k1p/httpd.pid"
  kill_pidfile "$RUNDIR/etcd/etcd.pid"
  if [ -f "$RUNDIR/sandboxes" ]; then
    while read -r line; do
      if [ -n "$line" ] && [ -e "/run/netns/$line" ]; then ip netns delete "$line" 2>/dev/null || true; fi
    done < "$RUNDIR/sandboxes"
  fi
  if [ -f "$RUNDIR/namespaces" ]; then
    while read -r line; do
      if [ -n "$line" ] && ns_exists "$line"; then ip netns delete "$line"; fi
    done < <(tac "$RUNDIR/namespaces")
  fi
  if [ -f "$RUNDIR/containers" ]; then
    while read -r _ id; do
      [ -n "$id" ] || continue
      rm -f "/var/lib/cni/results/podswitch-$id-eth0"
      rm -rf "/run/runc/$id"
    done < "$RUNDIR/containers"
  fi
  # What podman's overlay driver left mounted under the run directory (its storage home stays
  # mounted when a container's network teardown failed, e.g. on a node whose daemon was killed).
  if [ -d "$RUNDIR" ]; then
    { grep -o " $RUNDIR/[^ ]*" /proc/mounts || true; } | sort -r | while read -r line; do
      umount -l "$line" 2>/dev/null || true
    done
  fi
  if [ -f "$RUNDIR/made" ]; then
    while read -r line; do
      rm -f "$line/cache/blob-info-cache-v1.boltdb"
      rmdir "$line/cache" "$line/results" "$line" 2>/dev/null || true
    done < "$RUNDIR/made"
  fi
}

down() {
  [ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 3; }
  down_quiet
  rm -rf "$RUNDIR"
  echo "down: $PREFIX"
}

case $cmd in
  up) up ;;
  down) down ;;
  exec) n=$1; shift; in_ns "$n" "$@" ;;
  ctl) n=$1; shift; "$BINDIR/podswitchctl" --socket "$RUNDIR/$n/podswitch.sock" "$@" ;;
  pm) n=$1; shift; pm "$n" "$@" ;;
  run) run_container "$1" "$2" "$3" ;;
  stop) kill_pidfile "$RUNDIR/$1/daemon.pid" "${2:-KILL}" ;;
  start) MODE=$(cat "$RUNDIR/mode"); start_daemon "$1" ;;
  etcd)
    case ${1:-} in
      stop) kill -STOP "$(cat "$RUNDIR/etcd/etcd.pid")" ;;
      cont) kill -CONT "$(cat "$RUNDIR/etcd/etcd.pid")" ;;
      pid) cat "$RUNDIR/etcd/etcd.pid" ;;
      *) echo "usage: $0 etcd stop|cont|pid" >&2; exit 2 ;;
    esac ;;
  etcdctl) etcdctl_ "$@" ;;
  k1-sync) k1_sync ;;
  *) echo "usage: $0 up|down|exec|ctl|pm|run|stop|start|etcd|etcdctl|k1-sync (see the header)" >&2; exit 2 ;;
esac
