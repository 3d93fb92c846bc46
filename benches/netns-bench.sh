#!/usr/bin/env bash
# podswitch against the kernel paths kube-proxy and flannel use, measured in one run on this
# machine: 64-byte UDP frames from trafgen in a generator namespace, through a node namespace
# (podswitch on AF_XDP or AF_PACKET, or the kernel forwarding with iptables / nftables), to a
# sink namespace that counts them. Generator on CPU 0, forwarder on CPU 1; the two-worker runs
# put the second worker on CPU 0 beside the generator (this machine has two cores). Veths have
# two queues, so each AF_XDP worker serves one of every port.
#
#   benches/netns-bench.sh [-r RUNS] [-s SECONDS] [-n SERVICES_LIST] [-o all|pps|conn|tcp]   (root)
#
# Then new TCP connections per second from the generator namespace through a ClusterIP (the
# last of the services) to nginx in the sink namespace, with benches/examples/connrate.
# Prints min / median / max over RUNS and podswitch's ratio to each baseline. Everything lives
# in namespaces named pswb<PID>-*, deleted on exit.
#
# -o tcp (not part of all): one iperf3 TCP stream from the generator namespace to the sink,
# pod to pod and through a ClusterIP, on podswitch (AF_XDP, one worker) and on the kernel
# (forwarding, and iptables DNAT as kube-proxy), same namespaces, same run: throughput and
# TCP retransmissions (issue 13's back-pressure measure: a full TX ring should show as delay,
# not loss). Installs what it needs.
set -euo pipefail

RUNS=3
SECS=3
SERVICES="1 1000 10000"
ONLY=all
while getopts "r:s:n:o:" o; do
  case $o in
    o) ONLY=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    s) SECS=$OPTARG ;;
    n) SERVICES=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BIN=$root/target/release/podswitchd
P=pswb$$
GEN=$P-gen
NODE=$P-node
SINK=$P-sink
WORK=$(mktemp -d /tmp/$P.XXXX)
ROUTER_MAC=02:00:00:00:00:01
GEN_MAC=02:00:00:0a:01:10
SINK_MAC=02:00:00:0a:02:02
MAX_SERVICES=$(echo "$SERVICES" | tr ' ' '\n' | sort -n | tail -1)

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 3; }
# shellcheck source=../netns-scripts/install-tools.sh
. "$(cd "$(dirname "$0")" && pwd)/../netns-scripts/install-tools.sh"
install_tools trafgen:netsniff-ng ip:iproute2 ethtool:ethtool iptables-nft:iptables nft:nftables nginx:nginx-light \
  iperf3:iperf3 conntrack:conntrack || exit 3

cleanup() {
  set +e
  [ -f "$WORK/psw.pid" ] && kill -TERM "$(cat "$WORK/psw.pid")" 2>/dev/null && sleep 0.5
  [ -f "$WORK/nginx.pid" ] && kill -TERM "$(cat "$WORK/nginx.pid")" 2>/dev/null
  [ -f "$WORK/iperf3.pid" ] && kill -TERM "$(cat "$WORK/iperf3.pid")" 2>/dev/null
  for ns in $GEN $NODE $SINK; do ip netns list | awk '{print $1}' | grep -qx "$ns" && ip netns delete "$ns"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

vip() { # the VIP of service $1 (1-based): 10.96.x.y
  local i=$(( $1 - 1 ))
  echo "10.96.$(( i / 250 )).$(( i % 250 + 1 ))"
}

topology() {
  for ns in $GEN $NODE $SINK; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  local q=${QUEUES:-2}
  ip -n "$NODE" link add in0 numrxqueues "$q" numtxqueues "$q" type veth peer name eth0 numrxqueues "$q" numtxqueues "$q" netns "$GEN"
  ip -n "$NODE" link add out0 numrxqueues "$q" numtxqueues "$q" type veth peer name eth0 numrxqueues "$q" numtxqueues "$q" netns "$SINK"
  for i in in0 out0; do
    ip -n "$NODE" link set "$i" address $ROUTER_MAC up
    ip netns exec "$NODE" sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1"
  done
  ip -n "$GEN" link set eth0 address $GEN_MAC up
  ip -n "$SINK" link set eth0 address $SINK_MAC up
  # Stacks must finish their own checksums: podswitch reads frames, not skbs with offloads.
  for ns in $GEN $SINK; do ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true; done
  for i in in0 out0; do ip netns exec "$NODE" ethtool -K "$i" gro off >/dev/null 2>&1 || true; done
  for ns in $GEN $SINK; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
  ip -n "$GEN" addr add 10.244.1.10/24 dev eth0
  ip -n "$GEN" route add default via 10.244.1.1
  ip -n "$GEN" neigh replace 10.244.1.1 lladdr $ROUTER_MAC dev eth0 nud permanent
  ip -n "$SINK" addr add 10.244.2.2/24 dev eth0
  ip -n "$SINK" route add default via 10.244.2.1
  ip -n "$SINK" neigh replace 10.244.2.1 lladdr $ROUTER_MAC dev eth0 nud permanent
  # The sink counts UDP and drops it before any socket or ICMP; TCP goes to nginx.
  ip netns exec "$SINK" nft add table inet sink
  ip netns exec "$SINK" nft add chain inet sink in '{ type filter hook prerouting priority -300; policy accept; }'
  ip netns exec "$SINK" nft add rule inet sink in meta l4proto udp drop
  cat > "$WORK/nginx.conf" <<NGINX
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
worker_processes 1;
user root;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK;
  proxy_temp_path $WORK;
  fastcgi_temp_path $WORK;
  uwsgi_temp_path $WORK;
  scgi_temp_path $WORK;
  server { listen 10.244.2.2:8080 backlog=4096; location / { return 200 "sink\n"; } }
}
NGINX
  ip netns exec "$SINK" taskset -c 0 nginx -c "$WORK/nginx.conf"
}

kernel_mode() { # plain kernel router in the node namespace
  ip -n "$NODE" addr add 10.244.1.1/24 dev in0
  ip -n "$NODE" addr add 10.244.2.1/24 dev out0
  ip -n "$NODE" neigh replace 10.244.2.2 lladdr $SINK_MAC dev out0 nud permanent
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=1
}

kernel_reset() {
  ip netns exec "$NODE" iptables-nft -t nat -F 2>/dev/null || true
  ip netns exec "$NODE" iptables-nft -t nat -X 2>/dev/null || true
  ip netns exec "$NODE" iptables-nft -F 2>/dev/null || true
  ip netns exec "$NODE" nft flush ruleset
  ip netns exec "$NODE" conntrack -F >/dev/null 2>&1 || true
}

iptables_dnat() { # kube-proxy's iptables layout for $1 services of protocol $2 (udp)
  local n=$1 proto=${2:-udp}
  {
    echo "*nat"
    echo ":KUBE-SERVICES - [0:0]"
    for i in $(seq "$n"); do echo ":KUBE-SVC-$i - [0:0]"; echo ":KUBE-SEP-$i - [0:0]"; done
    echo "-A PREROUTING -j KUBE-SERVICES"
    for i in $(seq "$n"); do
      echo "-A KUBE-SERVICES -d $(vip "$i")/32 -p $proto -m $proto --dport 80 -j KUBE-SVC-$i"
      echo "-A KUBE-SVC-$i -j KUBE-SEP-$i"
      echo "-A KUBE-SEP-$i -p $proto -j DNAT --to-destination 10.244.2.2:8080"
    done
    echo "COMMIT"
  } | ip netns exec "$NODE" iptables-nft-restore --noflush
}

nft_vmap() { # kube-proxy's nftables layout: one verdict map for $1 services of protocol $2
  local n=$1 proto=${2:-udp}
  {
    echo "table ip kp {"
    echo " map svc { type ipv4_addr . inet_proto . inet_service : verdict; elements = {"
    for i in $(seq "$n"); do printf '  %s . %s . 80 : goto sep%d,\n' "$(vip "$i")" "$proto" "$i"; done
    echo " }; }"
    for i in $(seq "$n"); do echo " chain sep$i { meta l4proto $proto dnat to 10.244.2.2:8080; }"; done
    echo " chain pre { type nat hook prerouting priority -100; ip daddr . meta l4proto . th dport vmap @svc; }"
    echo "}"
  } | ip netns exec "$NODE" nft -f -
}

forward_acl() { # $1 FORWARD rules that do not match, then accept
  local n=$1
  {
    echo "*filter"
    for i in $(seq "$n"); do
      echo "-A FORWARD -s 172.$(( 16 + i / 65536 )).$(( i / 256 % 256 )).$(( i % 256 ))/32 -p tcp --dport $(( i % 1000 + 1 )) -j ACCEPT"
    done
    echo "-A FORWARD -j ACCEPT"
    echo "COMMIT"
  } | ip netns exec "$NODE" iptables-nft-restore --noflush
}

psw_config() { # $1 backend, $2 services, $3 policy rules
  local backend=$1 n=$2 rules=$3 f=$WORK/node.toml
  {
    cat <<TOML
[node]
name = "bench"
ipv4 = "192.168.77.10"
pod_cidrs = ["10.244.1.0/24", "10.244.2.0/24"]
router_mac = "$ROUTER_MAC"
uplink_mac = "02:00:00:00:01:10"

[datapath]
conntrack_flows = 262144
maglev_table_size = 1021

[[ports]]
name = "gen"
kind = "pod"
backend = "$backend"
interface = "in0"

[[ports]]
name = "sink"
kind = "pod"
backend = "$backend"
interface = "out0"

[[pods]]
name = "gen"
port = "gen"
mac = "$GEN_MAC"
ips = ["10.244.1.10"]
labels = { app = "gen" }

[[pods]]
name = "sink"
port = "sink"
mac = "$SINK_MAC"
ips = ["10.244.2.2"]
labels = { app = "sink" }
TOML
    for i in $(seq "$n"); do
      printf '[[services]]\nname = "s%d"\ncluster_ips = ["%s"]\nports = [{ name = "u", port = 80, protocol = "UDP", target_port = 8080 }, { name = "t", port = 80, target_port = 8080 }]\nendpoints = [{ pod = "sink" }]\n' "$i" "$(vip "$i")"
    done
    if [ "$rules" -gt 0 ]; then
      printf '[[policies]]\nname = "gen-egress"\npod_selector = { match_labels = { app = "gen" } }\npolicy_types = ["Egress"]\n'
      for i in $(seq "$rules"); do
        printf '[[policies.egress]]\nto = [{ ip_block = { cidr = "172.%d.%d.0/24" } }]\nports = [{ port = %d }]\n' $(( 16 + i / 65536 )) $(( i / 256 % 256 )) $(( i % 1000 + 1 ))
      done
      printf '[[policies.egress]]\nto = [{ pod_selector = { match_labels = { app = "sink" } } }]\n'
    fi
  } > "$f"
}

psw_start() { # $@ extra args; WORKERS=2 runs two workers, on CPUs 1 and 0
  local cpus=1
  [ "${WORKERS:-1}" = 2 ] && cpus=1,0
  ip netns exec "$NODE" taskset -c "$cpus" "$BIN" --config "$WORK/node.toml" --no-state --cpu "$cpus" --workers "${WORKERS:-1}" --pid-file "$WORK/psw.pid" \
    --stats-file "$WORK/stats.txt" --busy-polls "${BUSY:-100000}" "$@" > "$WORK/psw.out" 2> "$WORK/psw.err" &
  for _ in $(seq 300); do [ -s "$WORK/stats.txt" ] && break; sleep 0.1; done
  [ -s "$WORK/stats.txt" ] || { echo "podswitchd did not start:" >&2; cat "$WORK/psw.err" >&2; exit 1; }
}

psw_stop() {
  kill -TERM "$(cat "$WORK/psw.pid")" 2>/dev/null || true
  for _ in $(seq 50); do [ -f "$WORK/psw.pid" ] || break; sleep 0.1; done
  rm -f "$WORK/stats.txt"
}

trafgen_conf() { # 64-byte UDP to $1:80 from 256 source ports
  local -a o
  IFS=. read -r -a o <<< "$1"
  cat > "$WORK/pkt.cfg" <<CFG
{
  0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
  0x02, 0x00, 0x00, 0x0a, 0x01, 0x10,
  0x08, 0x00,
  0x45, 0x00, const16(46), const16(0), 0x40, 0x00, 64, 17, csumip(14, 33),
  10, 244, 1, 10, ${o[0]}, ${o[1]}, ${o[2]}, ${o[3]},
  0x9c, dinc(0, 255), const16(80), const16(26), csumudp(14, 34),
  fill(0x00, 18),
}
CFG
}

sink_rx() { ip netns exec "$SINK" awk '/eth0:/ {print $3}' /proc/net/dev; }

measure() { # pps at the sink over SECS, traffic to $1
  trafgen_conf "$1"
  local before after
  setsid ip netns exec "$GEN" taskset -c 0 trafgen --dev eth0 --conf "$WORK/pkt.cfg" --cpus 1 --no-sock-mem -Q -C \
    > /dev/null 2>&1 &
  local tg=$!
  sleep 1
  before=$(sink_rx)
  sleep "$SECS"
  after=$(sink_rx)
  kill -INT -- -"$tg" 2>/dev/null || kill -INT "$tg" 2>/dev/null || true
  wait "$tg" 2>/dev/null || true
  echo $(( (after - before) / SECS ))
}

conns_direct() { # new TCP connections per second to $1:8080 over SECS (no service)
  ip netns exec "$GEN" taskset -c 0 "$root/target/release/examples/connrate" "$1:8080" "$SECS" 8 \
    | sed -n 's/.*rate=\([0-9]*\).*/\1/p'
}

conns() { # new TCP connections per second to $1:80 over SECS
  ip netns exec "$GEN" taskset -c 0 "$root/target/release/examples/connrate" "$1:80" "$SECS" 8 \
    | sed -n 's/.*rate=\([0-9]*\).*/\1/p'
}

declare -A RESULT
runs() { # name, target VIP [, conns]
  local name=$1 target=$2 what=${3:-measure} v=()
  for _ in $(seq "$RUNS"); do v+=("$($what "$target")"); done
  IFS=$'\n' read -r -d '' -a sorted < <(printf '%s\n' "${v[@]}" | sort -n && printf '\0')
  RESULT[$name]="${sorted[0]} ${sorted[$(( RUNS / 2 ))]} ${sorted[$(( RUNS - 1 ))]}"
  printf '%-46s %9s %9s %9s\n' "$name" "${sorted[0]}" "${sorted[$(( RUNS / 2 ))]}" "${sorted[$(( RUNS - 1 ))]}"
}

median() { echo "${RESULT[$1]}" | awk '{print $2}'; }

echo "podswitch netns benchmark, $(date -u +%F), $(nproc) CPUs, $(uname -r); 64-byte UDP, $RUNS runs of ${SECS}s"
printf '%-46s %9s %9s %9s\n' "path (packets/s at the sink)" min median max
topology
(cd "$root" && cargo build --release -q -p control --bin podswitchd && cargo build --release -q -p podswitch-benches --example connrate)

tcp_run() { # one iperf3 stream to $1:$2 for SECS: prints "Mbit/s retransmissions"
  ip netns exec "$GEN" taskset -c 0 iperf3 -c "$1" -p "$2" -t "$SECS" -J 2>/dev/null \
    | jq -r '"\(.end.sum_received.bits_per_second / 1e6 | floor) \(.end.sum_sent.retransmits)"'
}

tcp_runs() { # name, target, port: RUNS runs, each printed, and the medians kept
  local name=$1 v=() r=() line
  for _ in $(seq "$RUNS"); do
    line=$(tcp_run "$2" "$3")
    v+=("${line% *}"); r+=("${line#* }")
  done
  local mv mr
  mv=$(printf '%s\n' "${v[@]}" | sort -n | sed -n "$(( RUNS / 2 + 1 ))p")
  mr=$(printf '%s\n' "${r[@]}" | sort -n | sed -n "$(( RUNS / 2 + 1 ))p")
  RESULT[$name]="$mv $mv $mv"
  RETRANS[$name]=$mr
  printf '%-46s %10s %12s   (runs: %s / %s)\n' "$name" "$mv" "$mr" "${v[*]}" "${r[*]}"
}

if [ "$ONLY" = tcp ]; then
  install_tools jq:jq || exit 3
  declare -A RETRANS
  kill -TERM "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -f "$WORK/nginx.pid"
  ip netns exec "$SINK" taskset -c 0 iperf3 -s -B 10.244.2.2 -p 8080 -D --pidfile "$WORK/iperf3.pid"
  sleep 0.5
  echo
  printf '%-46s %10s %12s\n' "path (one TCP stream, medians)" "Mbit/s" "retransmits"
  psw_config afxdp 1 0
  BUSY=${CONN_BUSY:-1000} psw_start
  tcp_runs "tcp: podswitch afxdp, pod to pod" 10.244.2.2 8080
  tcp_runs "tcp: podswitch afxdp, through a ClusterIP" "$(vip 1)" 80
  drops=$(grep -E '^drop ' "$WORK/stats.txt" | tr '\n' ' ' || true)
  # Where the kernel dropped frames on their way to the sockets (an AF_XDP receive ring that
  # was full shows as xdp_redirect errors or rx drops on the veth).
  kdrops=$(for i in in0 out0; do ip netns exec "$NODE" ethtool -S "$i" 2>/dev/null \
    | awk -v i="$i" '/drop|err|full/ && $2 > 0 {printf "%s %s %s ", i, $1, $2}'; done || true)
  psw_stop
  echo "  (podswitch counted: ${drops:-no drops}; the veths: ${kdrops:-no drops})"
  kernel_mode
  kernel_reset
  tcp_runs "tcp: kernel forwarding, pod to pod" 10.244.2.2 8080
  iptables_dnat 1 tcp
  tcp_runs "tcp: kernel + iptables DNAT, through a ClusterIP" "$(vip 1)" 80
  kernel_reset
  echo
  echo "ratios of medians (throughput; retransmissions podswitch / kernel):"
  for p in "pod to pod:kernel forwarding, pod to pod" "through a ClusterIP:kernel + iptables DNAT, through a ClusterIP"; do
    a="tcp: podswitch afxdp, ${p%%:*}"; b="tcp: ${p#*:}"
    awk -v a="$(median "$a")" -v b="$(median "$b")" -v ra="${RETRANS[$a]}" -v rb="${RETRANS[$b]}" -v n="${p%%:*}" \
      'BEGIN { printf "  %-20s throughput %.2fx, retransmissions %s vs %s\n", n, (b > 0 ? a / b : 0), ra, rb }'
  done
  exit 0
fi

if [ "$ONLY" != conn ]; then
for backend in afxdp afpacket; do
  psw_config "$backend" 1 0
  psw_start --bare-forward
  runs "podswitch $backend bare forward (no tables)" "$(vip 1)"
  psw_stop
  for n in $SERVICES; do
    psw_config "$backend" "$n" 0
    psw_start
    runs "podswitch $backend pipeline, $n services" "$(vip "$n")"
    psw_stop
  done
  psw_config "$backend" 1 "$MAX_SERVICES"
  psw_start
  runs "podswitch $backend pipeline, $MAX_SERVICES policy rules" "$(vip 1)"
  psw_stop
  [ "${QUEUES:-2}" -ge 2 ] || continue
  psw_config "$backend" "$MAX_SERVICES" 0
  WORKERS=2 psw_start
  runs "podswitch $backend pipeline, $MAX_SERVICES svcs, 2 workers" "$(vip "$MAX_SERVICES")"
  handed=$(sed -n 's/^event handed_off=//p' "$WORK/stats.txt")
  psw_stop
  echo "  (2 workers: $handed frames handed to the flow's owner)"
done
fi
if [ "$ONLY" != pps ]; then
psw_config afxdp "$MAX_SERVICES" 0
# Connection tests leave the second core to the kernel half of the time: the receiving
# namespaces' TCP work runs in softirq on the CPU that transmits, the worker's.
BUSY=${CONN_BUSY:-1000} psw_start
runs "conn/s: podswitch afxdp, $MAX_SERVICES services" "$(vip "$MAX_SERVICES")" conns
psw_stop
if [ "${QUEUES:-2}" -ge 2 ]; then
WORKERS=2 BUSY=${CONN_BUSY:-1000} psw_start
runs "conn/s: podswitch afxdp, $MAX_SERVICES svcs, 2 workers" "$(vip "$MAX_SERVICES")" conns
psw_stop
fi
fi

kernel_mode
kernel_reset
if [ "$ONLY" != conn ]; then
runs "kernel forwarding" 10.244.2.2
for n in $SERVICES; do
  kernel_reset
  iptables_dnat "$n"
  runs "kernel + iptables DNAT, $n services" "$(vip "$n")"
done
kernel_reset
nft_vmap "$MAX_SERVICES"
runs "kernel + nftables verdict map, $MAX_SERVICES services" "$(vip "$MAX_SERVICES")"
kernel_reset
forward_acl "$MAX_SERVICES"
runs "kernel FORWARD chain, $MAX_SERVICES ACL rules" 10.244.2.2
fi
if [ "$ONLY" != pps ]; then
kernel_reset
runs "conn/s: kernel forwarding, no DNAT" 10.244.2.2 conns_direct
kernel_reset
iptables_dnat "$MAX_SERVICES" tcp
runs "conn/s: kernel + iptables DNAT, $MAX_SERVICES services" "$(vip "$MAX_SERVICES")" conns
kernel_reset
nft_vmap "$MAX_SERVICES" tcp
runs "conn/s: kernel + nftables verdict map, $MAX_SERVICES services" "$(vip "$MAX_SERVICES")" conns
fi
kernel_reset

echo
echo "ratios of medians:"
ratio() { [ -n "${RESULT[$1]:-}" ] && [ -n "${RESULT[$2]:-}" ] || return 0; awk -v a="$(median "$1")" -v b="$(median "$2")" -v n1="$1" -v n2="$2" 'BEGIN { if (b > 0) printf "  %-46s / %-40s = %.2f\n", n1, n2, a / b }'; }
ratio "podswitch afxdp pipeline, $MAX_SERVICES services" "podswitch afxdp bare forward (no tables)"
ratio "podswitch afxdp pipeline, $MAX_SERVICES services" "kernel + iptables DNAT, $MAX_SERVICES services"
ratio "podswitch afxdp pipeline, $MAX_SERVICES services" "kernel + nftables verdict map, $MAX_SERVICES services"
ratio "podswitch afxdp pipeline, $MAX_SERVICES services" "kernel forwarding"
ratio "podswitch afxdp pipeline, $MAX_SERVICES policy rules" "kernel FORWARD chain, $MAX_SERVICES ACL rules"
ratio "podswitch afpacket pipeline, $MAX_SERVICES services" "kernel + iptables DNAT, $MAX_SERVICES services"
ratio "conn/s: podswitch afxdp, $MAX_SERVICES services" "conn/s: kernel + iptables DNAT, $MAX_SERVICES services"
ratio "conn/s: podswitch afxdp, $MAX_SERVICES services" "conn/s: kernel + nftables verdict map, $MAX_SERVICES services"
ratio "conn/s: podswitch afxdp, $MAX_SERVICES services" "conn/s: kernel forwarding, no DNAT"
ratio "podswitch afxdp pipeline, $MAX_SERVICES svcs, 2 workers" "podswitch afxdp pipeline, $MAX_SERVICES services"
ratio "podswitch afpacket pipeline, $MAX_SERVICES svcs, 2 workers" "podswitch afpacket pipeline, $MAX_SERVICES services"
ratio "conn/s: podswitch afxdp, $MAX_SERVICES svcs, 2 workers" "conn/s: podswitch afxdp, $MAX_SERVICES services"
ratio "conn/s: podswitch afxdp, $MAX_SERVICES svcs, 2 workers" "conn/s: kernel + nftables verdict map, $MAX_SERVICES services"
first=$(echo "$SERVICES" | awk '{print $1}')
ratio "podswitch afxdp pipeline, $MAX_SERVICES services" "podswitch afxdp pipeline, $first services"
