#!/usr/bin/env bash
# The traffic loops are bash -c scripts: their variables expand in the child shells.
# shellcheck disable=SC2016,SC2089,SC2090
# Soak (issue 13): mixed traffic with pod churn through one podswitchd for a while, its
# resident memory sampled all along (printed as a table: the curve), and at the end the
# counters checked against each other: every frame a port received was forwarded, dropped
# with a reason, or handed to another worker (received = forwarded + dropped + handed off,
# with the frames the switch answers itself, ARP and DNS, counted as forwarded).
#
# The node is netns-scripts/cluster.sh's (a client pod, three nginx pods with iperf3 servers,
# AF_PACKET by default) with the kube-dns Service applied. Traffic, all from the client pod
# and all bounded by `timeout`:
#   - TCP: iperf3 through the ClusterIP 10.96.0.11:5201 at 100 Mbit/s, restarted every 60 s
#   - UDP: iperf3 to web3 (pod to pod, port 5202) at 20 Mbit/s, restarted every 60 s
#   - HTTP: a curl loop to the ClusterIP 10.96.0.10 (new connections, spread over the pods)
#   - DNS: a dig loop (A of web.default.svc.cluster.local and an NXDOMAIN) at 10.96.0.53
# and pod churn: every 2 s a pod namespace is attached with podswitch-cni ADD (a new port and
# address), curls the ClusterIP through its new port, and is detached with DEL.
#
#   benches/soak.sh [-d SECONDS] [-i SAMPLE_SECONDS] [-m afpacket|afxdp] [-b BINDIR] [-C]
#       (root; installs iperf3, nginx, curl, dig, jq; builds podswitchd, podswitchctl and
#        podswitch-cni --release unless -b names a directory holding them)
#
# Defaults: 600 s (issue 13's 10 minutes), a sample every 10 s. `-d 60` is a quick check; `-C`
# leaves the pod churn out (to tell the counters of removed ports from the rest).
# Everything lives in namespaces named pswsk<PID>-*, deleted on exit (also on Ctrl-C).
set -euo pipefail

DUR=600
EVERY=10
MODE=afpacket
BINDIR=
CHURN_PODS=1
while getopts "d:i:m:b:C" o; do
  case $o in
    C) CHURN_PODS=0 ;;
    d) DUR=$OPTARG ;;
    i) EVERY=$OPTARG ;;
    m) MODE=$OPTARG ;;
    b) BINDIR=$OPTARG ;;
    *) sed -n '4,28p' "$0"; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "soak.sh needs root (network namespaces)" >&2; exit 3; }
# shellcheck source=../netns-scripts/install-tools.sh
. "$root/netns-scripts/install-tools.sh"
install_tools ip:iproute2 ethtool:ethtool nginx:nginx-light curl:curl iperf3:iperf3 \
  dig:bind9-dnsutils jq:jq || exit 3
if [ -z "$BINDIR" ]; then
  (cd "$root" && cargo build --release -q -p control --bins -p podswitch-cni)
  BINDIR=${CARGO_TARGET_DIR:-$root/target}/release
fi
for b in podswitchd podswitchctl podswitch-cni; do
  [ -x "$BINDIR/$b" ] || { echo "missing $BINDIR/$b" >&2; exit 3; }
done

P=pswsk$$
RUNDIR=/tmp/$P-run
CHURN=$P-churn
mkdir -p "$RUNDIR"
GROUPS_FILE=$RUNDIR/groups
: > "$GROUPS_FILE"

cleanup() {
  set +e
  # The traffic loops: each is a process group of its own, killed by its id.
  while read -r g; do [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null; done < "$GROUPS_FILE"
  for f in "$RUNDIR"/iperf-udp-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  ip netns list | awk '{print $1}' | grep -qx "$CHURN" && ip netns delete "$CHURN"
  "$root/netns-scripts/cluster.sh" down -p "$P" -d "$RUNDIR" >/dev/null
  rm -rf "$RUNDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/netns-scripts/cluster.sh" up -p "$P" -d "$RUNDIR" -b "$BINDIR/podswitchd" -m "$MODE" >/dev/null
ctl() { "$BINDIR/podswitchctl" --socket "$RUNDIR/podswitch.sock" "$@"; }
in_ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }
ctl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.53
  ports: [{name: dns, port: 53, protocol: UDP}]
YAML
in_ns web3 iperf3 -s -D -B 10.244.1.13 -p 5202 --pidfile "$RUNDIR/iperf-udp-web3.pid" >/dev/null
ip netns add "$CHURN"

# Starts "$@" (a bash snippet's words) as its own process group under a time bound.
bg() {
  setsid timeout -s KILL $((DUR + 30)) "$@" > /dev/null 2>&1 &
  echo $! >> "$GROUPS_FILE"
}
end=$(( $(date +%s) + DUR ))
export P END=$end RUNDIR CHURN BINDIR
bg bash -c 'while [ "$(date +%s)" -lt "$END" ]; do
  left=$(( END - $(date +%s) )); [ "$left" -gt 60 ] && left=60; [ "$left" -lt 1 ] && break
  ip netns exec $P-client iperf3 -c 10.96.0.11 -p 5201 -b 100M -t "$left" --connect-timeout 3000 >> $RUNDIR/tcp.log 2>&1 \
    && echo ok >> $RUNDIR/tcp.res || { echo fail >> $RUNDIR/tcp.res; sleep 1; }
done'
bg bash -c 'while [ "$(date +%s)" -lt "$END" ]; do
  left=$(( END - $(date +%s) )); [ "$left" -gt 60 ] && left=60; [ "$left" -lt 1 ] && break
  ip netns exec $P-client iperf3 -c 10.244.1.13 -p 5202 -u -b 20M -t "$left" -J > $RUNDIR/udp.json 2>&1 \
    && jq -r ".end.sum | \"\(.packets) \(.lost_packets)\"" $RUNDIR/udp.json >> $RUNDIR/udp.res || { echo "fail" >> $RUNDIR/udp.res; sleep 1; }
done'
bg bash -c 'while [ "$(date +%s)" -lt "$END" ]; do
  ip netns exec $P-client curl -s -o /dev/null --max-time 2 http://10.96.0.10/ && echo ok || echo fail
  sleep 0.05
done >> $RUNDIR/http.res'
bg bash -c 'while [ "$(date +%s)" -lt "$END" ]; do
  a=$(ip netns exec $P-client dig @10.96.0.53 +short +time=1 +tries=1 web.default.svc.cluster.local A)
  [ "$a" = 10.96.0.10 ] && echo ok || echo "fail $a"
  s=$(ip netns exec $P-client dig @10.96.0.53 +time=1 +tries=1 nope.default.svc.cluster.local A | grep -c NXDOMAIN)
  [ "$s" = 1 ] && echo ok || echo fail
  sleep 0.05
done >> $RUNDIR/dns.res'
conf="{\"cniVersion\":\"1.0.0\",\"name\":\"podswitch\",\"type\":\"podswitch-cni\",\"socket\":\"$RUNDIR/podswitch.sock\"}"
export conf
[ "$CHURN_PODS" = 1 ] && bg bash -c 'i=0; while [ "$(date +%s)" -lt "$END" ]; do
  i=$((i + 1)); id=soak$i
  cni() { echo "$conf" | CNI_COMMAND=$1 CNI_CONTAINERID=$id CNI_NETNS=/run/netns/$CHURN CNI_IFNAME=eth0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=churn-$id" CNI_PATH=/opt/cni/bin \
    ip netns exec $P-node "$BINDIR/podswitch-cni"; }
  if cni ADD > $RUNDIR/cni.out 2>&1; then
    ip netns exec $CHURN ethtool -K eth0 tx off > /dev/null 2>&1
    ip netns exec $CHURN curl -s -o /dev/null --max-time 3 http://10.96.0.10/ && echo "ok" || echo "fail curl"
    # What the pod sent and received through its port, by the kernel of the pod: to check
    # the row where the switch keeps the counters of the ports it removed.
    ip -n $CHURN -j -s link show dev eth0 | jq -r ".[0].stats64 | \"\(.tx.packets) \(.rx.packets)\"" >> $RUNDIR/churn-frames
  else echo "fail add $(tr "\n" " " < $RUNDIR/cni.out)"; fi
  cni DEL > /dev/null 2>&1 || echo "fail del"
  sleep 2
done >> $RUNDIR/churn.res'

pid=$(cat "$RUNDIR/podswitchd.pid")
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
count() { grep -c "^$2" "$RUNDIR/$1.res" 2>/dev/null || true; }
echo "soak: $DUR s on $MODE, podswitchd $BINDIR/podswitchd (PID $pid), a sample every $EVERY s"
printf '%6s %9s %9s %8s %10s %6s %6s %6s\n' t_s rss_kib ct_flows gen rx_pkts http dns churn
t0=$(date +%s)
samples=()
while :; do
  now=$(date +%s)
  s=$(ctl stats -o json)
  r=$(rss)
  samples+=("$r")
  printf '%6d %9d %9d %8d %10d %6d %6d %6d\n' $((now - t0)) "$r" \
    "$(jq '.tables.conntrack_entries' <<<"$s")" "$(jq '.generation' <<<"$s")" \
    "$(jq '[.ports[].rx_packets] | add' <<<"$s")" "$(count http ok)" "$(count dns ok)" "$(count churn ok)"
  [ "$now" -ge "$end" ] && break
  sleep "$EVERY"
done
# Let the loops finish their last round, then read the counters of a quiet switch.
sleep 4
while read -r g; do [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null || true; done < "$GROUPS_FILE"
: > "$GROUPS_FILE"
sleep 2
s=$(ctl stats -o json)

echo
echo "traffic: tcp runs ok $(count tcp ok) failed $(count tcp fail); http ok $(count http ok) failed $(count http fail); dns ok $(count dns ok) failed $(count dns fail); pods attached and detached $(count churn ok), failed $(count churn fail)"
awk '$1 != "fail" {p += $1; l += $2} END {printf "udp: %d datagrams, %d lost (%.4f%%)\n", p, l, p ? 100 * l / p : 0}' "$RUNDIR/udp.res" 2>/dev/null || true
grep '^fail' "$RUNDIR"/*.res 2>/dev/null | sort | uniq -c | head -10 || true
min=${samples[0]}; max=${samples[0]}
for r in "${samples[@]}"; do [ "$r" -lt "$min" ] && min=$r; [ "$r" -gt "$max" ] && max=$r; done
n=${#samples[@]}
q=$(( n / 4 > 0 ? n / 4 : 1 ))
first=0; last=0
for r in "${samples[@]:0:$q}"; do first=$((first + r)); done
for r in "${samples[@]: -$q}"; do last=$((last + r)); done
echo "rss KiB: first ${samples[0]}, last ${samples[-1]}, min $min, max $max; mean of the first quarter $((first / q)), of the last quarter $((last / q))"

# The identity: every received frame is forwarded, dropped or handed off.
rx=$(jq '[.ports[].rx_packets] | add' <<<"$s")
tx=$(jq '[.ports[].tx_packets] | add' <<<"$s")
dropped=$(jq '[.ports[].drops | to_entries[].value] | add // 0' <<<"$s")
handed=$(jq '.events.handed_off // 0' <<<"$s")
generated=$(jq '(.events.arp_replies // 0) + (.events.tcp_resets_sent // 0) + (.events.icmp_unreachables_sent // 0) + (.events.icmp_too_big_sent // 0)' <<<"$s")
resolver=$(jq '.events.dns_to_resolver // 0' <<<"$s")
echo "counters (every port, and the ports removed): received $rx, transmitted $tx, dropped $dropped, handed off $handed; answers the switch made ($generated: ARP replies, resets, ICMP) are among the transmitted; dns_to_resolver $resolver"
diff=$(( rx - tx - dropped - handed ))
echo "received - (transmitted + dropped + handed off) = $diff"
if [ -s "$RUNDIR/churn-frames" ]; then
  read -r ptx prx < <(awk '{t += $1; r += $2} END {print t + 0, r + 0}' "$RUNDIR/churn-frames")
  echo "churned pods: their kernels counted $ptx frames sent and $prx received; the switch's (removed) row: $(jq -r '.ports[] | select(.name == "(removed)") | "rx \(.rx_packets) tx \(.tx_packets)"' <<<"$s")"
fi
jq -r '.ports[] | "  port \(.name): rx \(.rx_packets) tx \(.tx_packets) drops \(.drops | to_entries | map("\(.key)=\(.value)") | join(","))"' <<<"$s"
jq -r '.events | to_entries | map("\(.key)=\(.value)") | join(" ")' <<<"$s" | fmt -w 110 | sed 's/^/  events: /'
if [ "$diff" = 0 ]; then echo "counters consistent"; else echo "COUNTERS DISAGREE by $diff"; exit 1; fi
