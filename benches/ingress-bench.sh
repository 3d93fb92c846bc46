#!/usr/bin/env bash
# Ingress: HTTP requests per second and latency through podswitch's LoadBalancer -> nginx
# (programmed by podswitch-ingress) -> pods, next to the same nginx reached through the
# kernel's DNAT, in one run, from the same outside client with the same wrk.
#
# The topology is netns-scripts/ingress.sh's (podswitchd on AF_PACKET, the seed's
# example-ingress routing myapp.example.com to my-service's two nginx pods). For the kernel
# path, a gateway namespace (PREFIX-kgw) joins the outside client (10.99.1.2) and the ingress
# pod (10.99.2.2, a second interface) with an iptables DNAT of 10.99.9.9:80 to the ingress
# pod, as kube-proxy would program a LoadBalancer address; nginx then reaches the pods
# through podswitch in both cases, so the two paths differ only in the front hop.
#
#   benches/ingress-bench.sh [-r RUNS] [-s SECONDS] [-c CONNECTIONS] [-b BINDIR]
#       (root; installs wrk, nginx-light, curl, openssl, iptables; builds the binaries
#        --release unless -b names their directory)
#
# wrk: one thread, CONNECTIONS keep-alive connections, SECONDS per run, paths alternated
# RUNS times; prints each run, the medians (requests/s, latency p50/p99) and the ratio.
# Two cores: wrk, nginx (one worker), the backends and podswitchd's worker share them, so the
# figures compare the paths under the same contention, not their ceilings.
set -euo pipefail

RUNS=3
SECS=8
CONNS=32
BINDIR=
while getopts "r:s:c:b:" o; do
  case $o in
    r) RUNS=$OPTARG ;;
    s) SECS=$OPTARG ;;
    c) CONNS=$OPTARG ;;
    b) BINDIR=$OPTARG ;;
    *) sed -n '2,21p' "$0"; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 3; }
# shellcheck source=../netns-scripts/install-tools.sh
. "$root/netns-scripts/install-tools.sh"
install_tools wrk:wrk nginx:nginx-light curl:curl openssl:openssl iptables:iptables ethtool:ethtool || exit 3
if [ -z "$BINDIR" ]; then
  (cd "$root" && cargo build --release -q -p control -p podswitch-cni --bins)
  BINDIR=${CARGO_TARGET_DIR:-$root/target}/release
fi

P=ingb$$
RUNDIR=/tmp/$P-run
KGW=$P-kgw
cleanup() {
  if ip netns list | awk '{print $1}' | grep -qx "$KGW"; then ip netns delete "$KGW"; fi
  "$root/netns-scripts/ingress.sh" down -p "$P" -d "$RUNDIR" > /dev/null || true
}
trap cleanup EXIT

"$root/netns-scripts/ingress.sh" up -p "$P" -d "$RUNDIR" -b "$BINDIR" -q
LB=$(cat "$RUNDIR/lb-ip")
"$BINDIR/podswitchctl" --socket "$RUNDIR/podswitch.sock" apply -f - > /dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: podswitch
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: podswitch.io/ingress-nginx}
YAML
"$BINDIR/podswitchctl" --socket "$RUNDIR/podswitch.sock" apply -f "$root/configs/k8s/seed/ingress.yaml" > /dev/null

# The kernel path: outside client -> PREFIX-kgw (DNAT) -> the ingress pod's second interface.
ip netns add "$KGW"
ip -n "$KGW" link set lo up
ip -n "$KGW" link add k-out type veth peer name eth1 netns "$P-out"
ip -n "$KGW" link add k-ing type veth peer name eth1 netns "$P-ing"
ip -n "$KGW" addr add 10.99.1.1/24 dev k-out
ip -n "$KGW" addr add 10.99.2.1/24 dev k-ing
ip -n "$KGW" link set k-out up
ip -n "$KGW" link set k-ing up
ip netns exec "$KGW" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$KGW" iptables -t nat -A PREROUTING -d 10.99.9.9/32 -p tcp --dport 80 -j DNAT --to-destination 10.99.2.2:80
ip -n "$P-out" addr add 10.99.1.2/24 dev eth1
ip -n "$P-out" link set eth1 up
ip -n "$P-out" route add 10.99.9.9/32 via 10.99.1.1
ip -n "$P-ing" addr add 10.99.2.2/24 dev eth1
ip -n "$P-ing" link set eth1 up
ip -n "$P-ing" route add 10.99.1.0/24 via 10.99.2.1

in_out() { ip netns exec "$P-out" "$@"; }
for addr in "$LB" 10.99.9.9; do
  for _ in $(seq 50); do
    in_out curl -sf --max-time 2 -H 'Host: myapp.example.com' "http://$addr/" > /dev/null && break
    sleep 0.2
  done
  in_out curl -sf --max-time 2 -H 'Host: myapp.example.com' "http://$addr/" > /dev/null ||
    { echo "no answer through $addr" >&2; exit 1; }
done

# wrk's requests/s, p50 and p99 in ms, and non-2xx/socket errors.
measure() {
  local out rps p50 p99 errs
  out=$(in_out wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H 'Host: myapp.example.com' "http://$1/bench")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<< "$out")
  echo "$rps $(ms "$p50") $(ms "$p99") ${errs:-0-errors}"
}
# wrk's latency (850.00us, 1.20ms, 2.00s) in ms.
ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RPS P50 P99
echo "ingress-bench: wrk -t1 -c$CONNS -d${SECS}s, Host myapp.example.com, $RUNS runs each, paths alternated"
for r in $(seq "$RUNS"); do
  for path in podswitch kernel; do
    addr=$LB; [ "$path" = kernel ] && addr=10.99.9.9
    read -r rps p50 p99 errs <<< "$(measure "$addr")"
    printf '  run %d %-9s %10s req/s  p50 %7s ms  p99 %7s ms  %s\n' "$r" "$path" "$rps" "$p50" "$p99" "$errs"
    RPS[$path]+="$rps "; P50[$path]+="$p50 "; P99[$path]+="$p99 "
  done
done
echo
printf '%-44s %12s %10s %10s\n' "path (median of $RUNS)" "req/s" "p50 ms" "p99 ms"
for path in podswitch kernel; do
  label="LB $LB (podswitch) -> nginx -> pods"; [ "$path" = kernel ] && label="DNAT 10.99.9.9 (kernel) -> nginx -> pods"
  m_rps[0]=$(tr ' ' '\n' <<< "${RPS[$path]}" | grep . | median)
  printf '%-44s %12s %10s %10s\n' "$label" "${m_rps[0]}" \
    "$(tr ' ' '\n' <<< "${P50[$path]}" | grep . | median)" "$(tr ' ' '\n' <<< "${P99[$path]}" | grep . | median)"
  eval "MED_$path=${m_rps[0]}"
done
# shellcheck disable=SC2154
awk -v a="$MED_podswitch" -v b="$MED_kernel" 'BEGIN { if (b > 0) printf "ratio podswitch / kernel: %.2f\n", a / b }'
