#!/usr/bin/env bash
# Cluster DNS: podswitch's dataplane answers against the path a Kubernetes node has by default,
# in one run, from the same client. Three namespaces: a client pod (10.244.1.10) running
# dnsperf, a node, and a DNS pod (10.244.1.53), each pod joined to the node by a veth.
# Kernel mode: the node routes (/32 routes per pod, as Calico does) and DNATs the kube-dns
# ClusterIP 10.96.0.10:53/UDP to the DNS pod with kube-proxy's iptables layout (KUBE-SERVICES
# with 1000 other Services' rules before it, KUBE-SVC, KUBE-SEP), where knotd serves a zone
# file with the same names. podswitch mode: the same namespaces, podswitchd in the node on
# AF_XDP and then on AF_PACKET (-m picks; if AF_XDP will not start it says so and AF_PACKET is
# measured), with the same 1000 Services and kube-dns on 10.96.0.10 in its config, answering
# in its dataplane.
# Queries: A of svc-N.default.svc.cluster.local for random N in 1..1000 and, one in ten, of a
# name that does not exist (NXDOMAIN with the SOA), from one query file for both.
# Throughput: `dnsperf -c CLIENTS -q OUTSTANDING -t 1 -l SECONDS` with no rate limit: queries/s,
# dnsperf's average, min, max and standard deviation of latency, and queries lost (a lost
# query holds one of the OUTSTANDING slots for the 1 s timeout); latency percentiles: a
# second dnsperf at a fixed rate (-Q RATE, below both paths' ceilings) with -v, p50 / p99 /
# p99.9 from its per-query lines. Prints min / median / max over RUNS and the ratios.
# Everything lives in namespaces named pswdb<PID>-*, deleted on exit.
#
#   benches/dns-bench.sh [-r RUNS] [-s SECONDS] [-c CLIENTS] [-q OUTSTANDING] [-Q RATE]
#                        [-m "afxdp afpacket"] [-b PODSWITCHD]
#       (root; installs dnsperf, knot, knot-dnsutils, iptables, ethtool; builds podswitchd
#        --release unless -b names a binary)
#
# This machine has two cores: dnsperf runs on CPU 0, the DNS server (knotd with one UDP
# worker, or podswitchd's one busy-polling worker) on CPU 1; the kernel's forwarding and NAT
# run in softirq on whichever CPU sent the packet, so the kernel path also gets CPU 0's
# spare time. Figures compare the two paths under the same contention, not their ceilings.
set -euo pipefail

RUNS=3
SECS=5
CLIENTS=8
RATE=20000
OUTSTANDING=100
MODES="afxdp afpacket"
BIN=
while getopts "r:s:c:q:Q:m:b:" o; do
  case $o in
    r) RUNS=$OPTARG ;;
    s) SECS=$OPTARG ;;
    c) CLIENTS=$OPTARG ;;
    q) OUTSTANDING=$OPTARG ;;
    Q) RATE=$OPTARG ;;
    m) MODES=$OPTARG ;;
    b) BIN=$OPTARG ;;
    *) sed -n '2,31p' "$0"; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
P=pswdb$$
CL=$P-cl
NODE=$P-node
DP=$P-dns
WORK=$(mktemp -d /tmp/$P.XXXX)
ROUTER_MAC=02:00:00:00:00:01
CL_MAC=02:00:00:0a:01:10
DP_MAC=02:00:00:0a:01:53
CL_IP=10.244.1.10
DP_IP=10.244.1.53
DNS_VIP=10.96.0.10
NSVC=1000

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 3; }
# shellcheck source=../netns-scripts/install-tools.sh
. "$root/netns-scripts/install-tools.sh"
install_tools ip:iproute2 ethtool:ethtool dnsperf:dnsperf knotd:knot kdig:knot-dnsutils iptables:iptables \
  python3:python3 || exit 3

cleanup() {
  set +e
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  sleep 0.5
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  for ns in $CL $NODE $DP; do ip netns list | awk '{print $1}' | grep -qx "$ns" && ip netns delete "$ns"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

svc_ip() { echo "10.97.$(( $1 / 256 )).$(( $1 % 256 ))"; }

topology() {
  for ns in $CL $NODE $DP; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n "$NODE" link add cl numrxqueues 1 numtxqueues 1 type veth peer name eth0 numrxqueues 1 numtxqueues 1 netns "$CL"
  ip -n "$NODE" link add dn numrxqueues 1 numtxqueues 1 type veth peer name eth0 numrxqueues 1 numtxqueues 1 netns "$DP"
  for dev in cl dn; do
    ip -n "$NODE" link set "$dev" address $ROUTER_MAC up
    ip netns exec "$NODE" ethtool -K "$dev" gro off >/dev/null 2>&1 || true
  done
  ip -n "$CL" link set eth0 address $CL_MAC up
  ip -n "$DP" link set eth0 address $DP_MAC up
  for ns in $CL $NODE $DP; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
  # Stacks finish their own checksums: podswitch reads frames, not skbs with offloads.
  for ns in $CL $DP; do ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true; done
  # Pods: a /32 and the gateway on the link, as Calico sets them (and as podswitch serves).
  local ns
  for ns in "$CL" "$DP"; do
    ip -n "$ns" addr add "$([ "$ns" = "$CL" ] && echo $CL_IP || echo $DP_IP)/32" dev eth0
    ip -n "$ns" route add 10.244.1.1 dev eth0
    ip -n "$ns" route add default via 10.244.1.1 dev eth0
  done
}

zone() { # the same names for knotd as podswitch compiles from its Services
  {
    echo "\$ORIGIN cluster.local."
    echo "\$TTL 5"
    echo "@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"
    echo "@ IN NS ns.dns.cluster.local."
    echo "ns.dns IN A $DNS_VIP"
    echo "kube-dns.kube-system.svc IN A $DNS_VIP"
    for i in $(seq $NSVC); do echo "svc-$i.default.svc IN A $(svc_ip "$i")"; done
  } > "$WORK/cluster.local.zone"
  cat > "$WORK/knot.conf" <<CONF
server:
    rundir: "$WORK"
    user: root:root
    listen: $DP_IP@53
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$WORK/knotdb"
template:
  - id: default
    storage: "$WORK"
    semantic-checks: off
zone:
  - domain: cluster.local
    file: "cluster.local.zone"
CONF
}

queries() { # 100,000 lines: nine in ten existing names, one in ten missing
  python3 - "$NSVC" > "$WORK/queries.txt" <<'PY'
import random, sys
n = int(sys.argv[1]); r = random.Random(1)
for i in range(100000):
    if i % 10 == 9:
        print(f"missing-{r.randint(1, n)}.default.svc.cluster.local A")
    else:
        print(f"svc-{r.randint(1, n)}.default.svc.cluster.local A")
PY
}

kernel_start() {
  for dev in cl dn; do ip -n "$NODE" addr add 10.244.1.1/32 dev $dev; done
  ip -n "$NODE" route add $CL_IP/32 dev cl
  ip -n "$NODE" route add $DP_IP/32 dev dn
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=1
  # kube-proxy's layout (iptables mode): every Service's rule in KUBE-SERVICES, kube-dns last.
  {
    echo "*nat"
    echo ":PREROUTING ACCEPT [0:0]"
    echo ":KUBE-SERVICES - [0:0]"
    echo ":KUBE-SVC-DNS - [0:0]"
    echo ":KUBE-SEP-DNS - [0:0]"
    for i in $(seq $NSVC); do echo ":KUBE-SVC-$i - [0:0]"; done
    echo "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
    for i in $(seq $NSVC); do
      echo "-A KUBE-SERVICES -d $(svc_ip "$i")/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-$i"
      echo "-A KUBE-SVC-$i -p tcp -j DNAT --to-destination 10.244.2.$(( i % 250 + 1 )):8080"
    done
    echo "-A KUBE-SERVICES -d $DNS_VIP/32 -p udp -m udp --dport 53 -j KUBE-SVC-DNS"
    echo "-A KUBE-SVC-DNS -j KUBE-SEP-DNS"
    echo "-A KUBE-SEP-DNS -p udp -m udp -j DNAT --to-destination $DP_IP:53"
    echo "COMMIT"
  } > "$WORK/iptables.rules"
  ip netns exec "$NODE" iptables-restore < "$WORK/iptables.rules"
  setsid ip netns exec "$DP" taskset -c 1 knotd -c "$WORK/knot.conf" > "$WORK/knot.out" 2> "$WORK/knot.err" &
  echo $! > "$WORK/knotd.pid"
  for _ in $(seq 50); do
    ip netns exec "$CL" kdig +time=1 +retry=0 @$DNS_VIP svc-1.default.svc.cluster.local A 2>/dev/null | grep -q "$(svc_ip 1)" && return 0
    sleep 0.2
  done
  echo "knotd behind the kernel's DNAT does not answer:" >&2; cat "$WORK/knot.err" >&2; exit 1
}

kernel_stop() {
  kill -TERM "$(cat "$WORK/knotd.pid")" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$(cat "$WORK/knotd.pid")" 2>/dev/null || break; sleep 0.1; done
  rm -f "$WORK/knotd.pid"
  ip netns exec "$NODE" iptables -t nat -F
  ip netns exec "$NODE" iptables -t nat -X
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=0
  ip -n "$NODE" route flush table main
  for dev in cl dn; do ip -n "$NODE" addr flush dev $dev; done
  ip netns exec "$NODE" conntrack -F >/dev/null 2>&1 || true
}

psw_toml() { # backend
  cat <<TOML
[node]
name = "node-1"
ipv4 = "192.168.77.10"
pod_cidrs = ["10.244.1.0/24"]
router_mac = "$ROUTER_MAC"
uplink_mac = "02:00:00:00:01:10"

[datapath]
conntrack_flows = 65536

[dns]
# Every query of the bench is in the zone: the dataplane answers all of them.
resolver = false

[[ports]]
name = "client"
kind = "pod"
backend = "$1"
interface = "cl"

[[ports]]
name = "dnspod"
kind = "pod"
backend = "$1"
interface = "dn"

[[pods]]
name = "client"
port = "client"
mac = "$CL_MAC"
ips = ["$CL_IP"]

[[pods]]
name = "dnspod"
namespace = "kube-system"
port = "dnspod"
mac = "$DP_MAC"
ips = ["$DP_IP"]
labels = { k8s-app = "kube-dns" }

[[services]]
name = "kube-dns"
namespace = "kube-system"
cluster_ips = ["$DNS_VIP"]
ports = [{ name = "dns", port = 53, protocol = "UDP" }]
selector = { k8s-app = "kube-dns" }
TOML
  for i in $(seq $NSVC); do
    printf '\n[[services]]\nname = "svc-%s"\ncluster_ips = ["%s"]\nports = [{ port = 80 }]\n' "$i" "$(svc_ip "$i")"
  done
}

# Starts podswitchd on BACKEND; false (with its log kept) if it does not start or answer.
psw_start() {
  local backend=$1
  psw_toml "$backend" > "$WORK/node.toml"
  setsid ip netns exec "$NODE" "$BIN" --config "$WORK/node.toml" --no-socket --no-state --cpu 1 --busy-polls 100 \
    --pid-file "$WORK/psw.pid" --stats-file "$WORK/stats.txt" > "$WORK/psw.out" 2> "$WORK/psw.err" &
  for _ in $(seq 100); do
    [ -s "$WORK/stats.txt" ] && break
    kill -0 $! 2>/dev/null || break
    sleep 0.1
  done
  if [ -s "$WORK/stats.txt" ] && \
    ip netns exec "$CL" kdig +time=1 +retry=0 @$DNS_VIP svc-1.default.svc.cluster.local A 2>/dev/null | grep -q "$(svc_ip 1)"; then
    return 0
  fi
  cp "$WORK/psw.err" "$WORK/psw.err.$backend"
  psw_stop
  return 1
}

psw_stop() {
  if [ -f "$WORK/psw.pid" ]; then kill -TERM "$(cat "$WORK/psw.pid")" 2>/dev/null || true; fi
  for _ in $(seq 50); do [ -f "$WORK/psw.pid" ] || break; sleep 0.1; done
  rm -f "$WORK/psw.pid" "$WORK/stats.txt"
  sleep 0.3
}

# One unlimited-rate dnsperf: "qps avg min max stddev lost" (latencies in microseconds).
throughput() {
  ip netns exec "$CL" taskset -c 0 dnsperf -s $DNS_VIP -d "$WORK/queries.txt" -l "$SECS" -c "$CLIENTS" -q "$OUTSTANDING" -t 1 -T 1 \
    > "$WORK/dnsperf.out" 2>&1 || true
  python3 - "$WORK/dnsperf.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def f(p):
    m = re.search(p, t)
    return float(m.group(1)) if m else float("nan")
qps = f(r"Queries per second:\s+([\d.]+)")
m = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", t)
avg, mn, mx = (float(x) * 1e6 for x in m.groups()) if m else (float("nan"),) * 3
sd = f(r"Latency StdDev \(s\):\s+([\d.]+)") * 1e6
lost = f(r"Queries lost:\s+(\d+)")
print(f"{qps:.0f} {avg:.0f} {mn:.0f} {mx:.0f} {sd:.0f} {lost:.0f}")
PY
}

# One fixed-rate dnsperf with per-query lines: "p50 p99 p99.9 completed" (microseconds).
latency() {
  ip netns exec "$CL" taskset -c 0 dnsperf -s $DNS_VIP -d "$WORK/queries.txt" -l "$SECS" -c "$CLIENTS" -Q "$RATE" -t 1 -T 1 -v \
    > "$WORK/dnsperf-v.out" 2>&1 || true
  python3 - "$WORK/dnsperf-v.out" <<'PY'
import sys
lat = []
for line in open(sys.argv[1]):
    f = line.split()
    # "> NOERROR svc-1.default.svc.cluster.local A 0.000123" (dnsperf -v)
    if len(f) >= 5 and f[0] == ">" and f[1] in ("NOERROR", "NXDOMAIN"):
        try:
            lat.append(float(f[-1]) * 1e6)
        except ValueError:
            pass
lat.sort()
if not lat:
    print("nan nan nan 0"); sys.exit()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{q(0.50):.0f} {q(0.99):.0f} {q(0.999):.0f} {len(lat)}")
PY
}

declare -A MED
# name, function, field names: prints min/median/max of the first field over RUNS and the
# median run's other fields.
runs() {
  local name=$1 what=$2; shift 2
  local outs=() v
  for _ in $(seq "$RUNS"); do outs+=("$($what)"); done
  v=$(printf '%s\n' "${outs[@]}" | sort -n -k1,1)
  local lo mid hi
  lo=$(echo "$v" | sed -n 1p); mid=$(echo "$v" | sed -n "$(( RUNS / 2 + 1 ))p"); hi=$(echo "$v" | sed -n "${RUNS}p")
  MED[$name]=$mid
  printf '%-40s %10s %10s %10s   median run: ' "$name" "${lo%% *}" "${mid%% *}" "${hi%% *}"
  local i=0 f
  for f in $mid; do
    [ $i -gt 0 ] && printf '%s=%s ' "${*:$i:1}" "$f"
    i=$(( i + 1 ))
  done
  echo
}

field() { echo "${MED[$1]}" | awk -v n="$2" '{print $n}'; }

if [ -z "$BIN" ]; then
  BIN=${CARGO_TARGET_DIR:-$root/target}/release/podswitchd
  (cd "$root" && cargo build --release -q -p control --bin podswitchd)
fi
[ -x "$BIN" ] || { echo "no podswitchd at $BIN" >&2; exit 3; }

echo "cluster DNS, dnsperf from a pod, $(date -u +%F), $(nproc) CPUs, $(uname -r); $RUNS runs of ${SECS}s, $CLIENTS clients, $OUTSTANDING outstanding"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)"
echo "$NSVC Services; queries: 90% A of existing names, 10% NXDOMAIN; $(iptables -V), knotd $(knotd -V 2>&1 | awk '{print $NF}')"
topology
zone
queries

kernel_start
printf '%-40s %10s %10s %10s\n' "path" min median max
runs "kernel DNAT -> knotd, queries/s" throughput "avg_us" "min_us" "max_us" "stddev_us" "lost"
runs "kernel DNAT -> knotd, latency at ${RATE}/s" latency "p99_us" "p99.9_us" "answers"
kernel_stop

k=$(field "kernel DNAT -> knotd, queries/s" 1)
kl=$(field "kernel DNAT -> knotd, latency at ${RATE}/s" 1)
ran=
measure() { # backend: podswitchd's figures, or a note and false
  local m=$1
  if ! psw_start "$m"; then
    echo "NOTE: podswitchd on $m did not start or answer:"
    tail -5 "$WORK/psw.err.$m" | sed 's/^/  /'
    return 1
  fi
  runs "podswitch ($m), queries/s" throughput "avg_us" "min_us" "max_us" "stddev_us" "lost"
  runs "podswitch ($m), latency at ${RATE}/s" latency "p99_us" "p99.9_us" "answers"
  grep -i -E 'xdp|copy mode' "$WORK/psw.err" | head -4 | sed 's/^/  podswitchd log: /' || true
  sleep 1.2 # the stats file is rewritten every second
  grep -E '^(port client|io client|drop)' "$WORK/stats.txt" | sed 's/^/  podswitchd: /' || true
  psw_stop
  ran="$ran $m"
}
for m in $MODES; do
  if ! measure "$m" && [ "$m" = afxdp ] && ! echo "$MODES" | grep -qw afpacket; then
    echo "NOTE: falling back to AF_PACKET"
    measure afpacket || true
  fi
done

for m in $ran; do
  awk -v a="$(field "podswitch ($m), queries/s" 1)" -v b="$k" -v m="$m" \
    'BEGIN { printf "ratio podswitch (%s) / kernel, queries/s (medians): %.2f\n", m, (b > 0 ? a / b : 0) }'
  awk -v a="$(field "podswitch ($m), latency at ${RATE}/s" 1)" -v b="$kl" -v m="$m" \
    'BEGIN { printf "ratio kernel / podswitch (%s), p50 latency at %s/s (medians): %.2f\n", m, "'"$RATE"'", (a > 0 ? b / a : 0) }'
done
