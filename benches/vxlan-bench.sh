#!/usr/bin/env bash
# Pod to pod across two nodes: podswitch's VXLAN against the kernel's vxlan device, between the
# same namespaces, in one run. Two node namespaces joined by a veth (the underlay,
# 192.168.90.1-2), each with one pod namespace behind a veth (10.244.1.10 and 10.244.2.10,
# MTU 1450 in both modes). podswitch mode: podswitchd on AF_XDP in each node (static
# [[nodes]]: no etcd needed for a data path measure). Kernel mode: the same namespaces, the
# nodes forwarding with a `vxlan` device each (VNI 1, port 4789), as flannel's vxlan backend.
# Measures iperf3 TCP throughput (and retransmissions) pod to pod, and 64-byte UDP packets per
# second from trafgen in pod A counted at pod B; prints min / median / max over RUNS and the
# ratios. Everything lives in namespaces named pswv<PID>-*, deleted on exit.
#
#   benches/vxlan-bench.sh [-r RUNS] [-s SECONDS]    (root; installs iperf3, netsniff-ng, ethtool, nftables)
#
# This machine has two cores: the generator, the two nodes' forwarding and the receiver share
# them in both modes (podswitch's workers busy-poll while traffic flows, the kernel's softirqs
# run where the packets are), so the figures compare the two paths under the same contention,
# not their ceilings.
set -euo pipefail

RUNS=3
SECS=3
while getopts "r:s:" o; do
  case $o in
    r) RUNS=$OPTARG ;;
    s) SECS=$OPTARG ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BIN=$root/target/release/podswitchd
P=pswv$$
PA=$P-pa
NA=$P-na
NB=$P-nb
PB=$P-pb
WORK=$(mktemp -d /tmp/$P.XXXX)
ROUTER_MAC=02:00:00:00:00:01
PA_MAC=02:00:00:0a:01:10
PB_MAC=02:00:00:0a:02:10
UPA_MAC=02:00:00:00:90:01
UPB_MAC=02:00:00:00:90:02

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 3; }
# shellcheck source=../netns-scripts/install-tools.sh
. "$root/netns-scripts/install-tools.sh"
install_tools ip:iproute2 ethtool:ethtool iperf3:iperf3 trafgen:netsniff-ng nft:nftables python3:python3 || exit 3

cleanup() {
  set +e
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  for ns in $PA $NA $NB $PB; do ip netns list | awk '{print $1}' | grep -qx "$ns" && ip netns delete "$ns"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

topology() {
  for ns in $PA $NA $NB $PB; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n "$NA" link add pa numrxqueues 1 numtxqueues 1 type veth peer name eth0 numrxqueues 1 numtxqueues 1 netns "$PA"
  ip -n "$NB" link add pb numrxqueues 1 numtxqueues 1 type veth peer name eth0 numrxqueues 1 numtxqueues 1 netns "$PB"
  ip -n "$NA" link add ul numrxqueues 1 numtxqueues 1 type veth peer name ul numrxqueues 1 numtxqueues 1 netns "$NB"
  ip -n "$NA" link set ul address $UPA_MAC up
  ip -n "$NB" link set ul address $UPB_MAC up
  ip -n "$NA" link set pa address $ROUTER_MAC up
  ip -n "$NB" link set pb address $ROUTER_MAC up
  ip -n "$PA" link set eth0 address $PA_MAC mtu 1450 up
  ip -n "$PB" link set eth0 address $PB_MAC mtu 1450 up
  for ns in $PA $NA $NB $PB; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
  # Stacks finish their own checksums: podswitch reads frames, not skbs with offloads.
  for ns in $PA $PB; do ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true; done
  ip netns exec "$NA" ethtool -K pa gro off >/dev/null 2>&1 || true
  ip netns exec "$NB" ethtool -K pb gro off >/dev/null 2>&1 || true
  ip -n "$PA" addr add 10.244.1.10/24 dev eth0
  ip -n "$PA" route add default via 10.244.1.1
  ip -n "$PB" addr add 10.244.2.10/24 dev eth0
  ip -n "$PB" route add default via 10.244.2.1
  # Pod B counts UDP and drops it before any socket; TCP goes to iperf3.
  ip netns exec "$PB" nft add table inet sink
  ip netns exec "$PB" nft add chain inet sink in '{ type filter hook prerouting priority -300; policy accept; }'
  ip netns exec "$PB" nft add rule inet sink in meta l4proto udp drop
  ip netns exec "$PB" iperf3 -s -D -B 10.244.2.10 --pidfile "$WORK/iperf3.pid" >/dev/null
}

node_toml() { # name ip mac pod-cidr pod-port pod-ip pod-mac peer-name peer-ip peer-mac peer-cidr
  cat <<TOML
[node]
name = "$1"
ipv4 = "$2"
pod_cidrs = ["$4"]
router_mac = "$ROUTER_MAC"
uplink_mac = "$3"
uplink_mtu = 1500

[datapath]
conntrack_flows = 65536

[[ports]]
name = "$5"
kind = "pod"
backend = "afxdp"
interface = "$5"

[[ports]]
name = "uplink"
kind = "uplink"
backend = "afxdp"
interface = "ul"

[[nodes]]
name = "$8"
ip = "$9"
mac = "${10}"
pod_cidrs = ["${11}"]

[[pods]]
name = "p"
port = "$5"
mac = "$7"
ips = ["$6"]
TOML
}

psw_start() {
  node_toml node-a 192.168.90.1 $UPA_MAC 10.244.1.0/24 pa 10.244.1.10 $PA_MAC node-b 192.168.90.2 $UPB_MAC 10.244.2.0/24 > "$WORK/a.toml"
  node_toml node-b 192.168.90.2 $UPB_MAC 10.244.2.0/24 pb 10.244.2.10 $PB_MAC node-a 192.168.90.1 $UPA_MAC 10.244.1.0/24 > "$WORK/b.toml"
  local cpu=1
  for n in a b; do
    local ns=$NA
    [ $n = b ] && ns=$NB && cpu=0
    setsid ip netns exec "$ns" "$BIN" --config "$WORK/$n.toml" --no-socket --no-state --cpu $cpu --busy-polls 100 \
      --pid-file "$WORK/psw-$n.pid" --stats-file "$WORK/stats-$n.txt" > "$WORK/psw-$n.out" 2> "$WORK/psw-$n.err" &
  done
  for _ in $(seq 100); do
    [ -s "$WORK/stats-a.txt" ] && [ -s "$WORK/stats-b.txt" ] && break
    sleep 0.1
  done
  [ -s "$WORK/stats-a.txt" ] && [ -s "$WORK/stats-b.txt" ] || { cat "$WORK"/psw-*.err >&2; exit 1; }
}

psw_stop() {
  for n in a b; do
    [ -f "$WORK/psw-$n.pid" ] && kill -TERM "$(cat "$WORK/psw-$n.pid")" 2>/dev/null || true
  done
  for _ in $(seq 50); do [ -f "$WORK/psw-a.pid" ] || [ -f "$WORK/psw-b.pid" ] || break; sleep 0.1; done
  sleep 0.3
}

kernel_start() {
  for side in a b; do
    local ns=$NA pod=pa me=192.168.90.1 peer=192.168.90.2 mine=10.244.1 theirs=10.244.2 vx=10.250.0.1 vpeer=10.250.0.2
    if [ $side = b ]; then ns=$NB pod=pb me=192.168.90.2 peer=192.168.90.1 mine=10.244.2 theirs=10.244.1 vx=10.250.0.2 vpeer=10.250.0.1; fi
    ip -n "$ns" addr add "$me/24" dev ul
    ip -n "$ns" addr add "$mine.1/24" dev "$pod"
    ip -n "$ns" link add vxlan0 type vxlan id 1 dstport 4789 local "$me" remote "$peer" dev ul
    ip -n "$ns" link set vxlan0 mtu 1450 up
    ip -n "$ns" addr add "$vx/24" dev vxlan0
    ip -n "$ns" route add "$theirs.0/24" via "$vpeer" dev vxlan0
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  done
}

kernel_stop() {
  for ns in $NA $NB; do
    ip -n "$ns" link del vxlan0 2>/dev/null || true
    ip -n "$ns" addr flush dev ul
    ip -n "$ns" addr flush dev "$([ "$ns" = "$NA" ] && echo pa || echo pb)"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0
  done
}

tcp() { # Mbit/s and retransmissions of one iperf3 run, A to B
  ip netns exec "$PA" taskset -c 0 iperf3 -c 10.244.2.10 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin)["end"]["sum_sent"]; print(int(d["bits_per_second"]/1e6), d.get("retransmits", 0))'
}

trafgen_conf() { # 64-byte UDP frames, pod A to pod B, 256 source ports
  cat > "$WORK/pkt.cfg" <<CFG
{
  0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
  0x02, 0x00, 0x00, 0x0a, 0x01, 0x10,
  0x08, 0x00,
  0x45, 0x00, const16(46), const16(0), 0x40, 0x00, 64, 17, csumip(14, 33),
  10, 244, 1, 10, 10, 244, 2, 10,
  0x9c, dinc(0, 255), const16(9), const16(26), csumudp(14, 34),
  fill(0x00, 18),
}
CFG
}

rx_b() { ip netns exec "$PB" awk '/eth0:/ {print $3}' /proc/net/dev; }

pps() { # packets per second received by pod B
  local before after tg
  setsid ip netns exec "$PA" taskset -c 0 trafgen --dev eth0 --conf "$WORK/pkt.cfg" --cpus 1 --no-sock-mem -Q -C \
    > /dev/null 2>&1 &
  tg=$!
  sleep 1
  before=$(rx_b)
  sleep "$SECS"
  after=$(rx_b)
  kill -INT -- -"$tg" 2>/dev/null || kill -INT "$tg" 2>/dev/null || true
  wait "$tg" 2>/dev/null || true
  echo $(( (after - before) / SECS ))
}

declare -A RESULT
runs() { # name, command: min median max of RUNS (first field of the command's output)
  local name=$1 what=$2 v=() extra=()
  for _ in $(seq "$RUNS"); do
    local out
    out=$($what)
    v+=("$(echo "$out" | awk '{print $1}')")
    extra+=("$(echo "$out" | awk '{print $2}')")
  done
  IFS=$'\n' read -r -d '' -a sorted < <(printf '%s\n' "${v[@]}" | sort -n && printf '\0')
  RESULT[$name]="${sorted[0]} ${sorted[$(( RUNS / 2 ))]} ${sorted[$(( RUNS - 1 ))]}"
  local note=""
  [ -n "${extra[0]}" ] && note="  retransmits: ${extra[*]}"
  printf '%-44s %10s %10s %10s%s\n' "$name" "${sorted[0]}" "${sorted[$(( RUNS / 2 ))]}" "${sorted[$(( RUNS - 1 ))]}" "$note"
}

median() { echo "${RESULT[$1]}" | awk '{print $2}'; }

echo "pod to pod across two nodes over VXLAN, $(date -u +%F), $(nproc) CPUs, $(uname -r); $RUNS runs of ${SECS}s"
(cd "$root" && cargo build --release -q -p control --bin podswitchd)
topology
trafgen_conf
printf '%-44s %10s %10s %10s\n' "path" min median max

psw_start
runs "podswitch VXLAN, iperf3 TCP (Mbit/s)" tcp
runs "podswitch VXLAN, 64-byte UDP (packets/s)" pps
psw_stop

kernel_start
runs "kernel vxlan, iperf3 TCP (Mbit/s)" tcp
runs "kernel vxlan, 64-byte UDP (packets/s)" pps
kernel_stop

awk -v a="$(median "podswitch VXLAN, iperf3 TCP (Mbit/s)")" -v b="$(median "kernel vxlan, iperf3 TCP (Mbit/s)")" \
  'BEGIN { printf "ratio podswitch / kernel, TCP throughput: %.2f\n", (b > 0 ? a / b : 0) }'
awk -v a="$(median "podswitch VXLAN, 64-byte UDP (packets/s)")" -v b="$(median "kernel vxlan, 64-byte UDP (packets/s)")" \
  'BEGIN { printf "ratio podswitch / kernel, 64-byte packets/s: %.2f\n", (b > 0 ? a / b : 0) }'
