#!/usr/bin/env bash
# Cluster DNS around the netns harness (cluster.sh): an upstream DNS server for names outside
# the cluster zone, and a pod's /etc/resolv.conf. Everything lives in namespaces this script
# creates (no address or route in the root namespace, no route out); `down` removes exactly
# what `upstream` and `resolv` made, by name and PID.
#
#   dns.sh upstream [-p PREFIX] [-d RUNDIR]   namespace PREFIX-upstream, 192.168.78.2/24, joined
#                                             to PREFIX-node (192.168.78.1) by a veth pair, with
#                                             dnsmasq answering outside.example.test A 192.0.2.80 (TTL 300)
#                                             and nothing else (REFUSED: it forwards nowhere)
#   dns.sh kill-upstream [-p PREFIX] [-d RUNDIR]   stop that dnsmasq (the namespace stays)
#   dns.sh resolv [-p PREFIX] [-d RUNDIR] POD NAMESERVER
#                                             /etc/netns/PREFIX-POD/resolv.conf as the kubelet
#                                             writes a ClusterFirst pod's (ip netns exec
#                                             bind-mounts it over /etc/resolv.conf)
#   dns.sh down [-p PREFIX] [-d RUNDIR]       undo both (safe to repeat)
#
# The node's config names the upstream with `[dns] upstream = ["192.168.78.2"]` (cluster.sh
# appends RUNDIR/extra.toml to the config it writes). PREFIX and RUNDIR as for cluster.sh.
set -euo pipefail

PREFIX=psw
RUNDIR=
cmd=${1:-}
shift || true
while getopts "p:d:" o; do
  case $o in
    p) PREFIX=$OPTARG ;;
    d) RUNDIR=$OPTARG ;;
    *) echo "usage: see the header of $0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pidfile.sh
. "$here/pidfile.sh"
RUNDIR=${RUNDIR:-/tmp/$PREFIX-run}
NODE=$PREFIX-node
UP=$PREFIX-upstream
UPSTREAM_IP=192.168.78.2
NODE_SIDE_IP=192.168.78.1

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

upstream() {
  [ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 3; }
  # shellcheck source=install-tools.sh
  . "$here/install-tools.sh"
  install_tools dnsmasq:dnsmasq-base || exit 3
  ns_exists "$NODE" || { echo "no namespace $NODE: run cluster.sh up first" >&2; exit 3; }
  mkdir -p "$RUNDIR"
  kill_pidfile "$RUNDIR/dnsmasq.pid"
  if ns_exists "$UP"; then ip netns delete "$UP"; fi
  ip netns add "$UP"
  ip -n "$UP" link set lo up
  # Made in the node namespace, one end moved: nothing is ever in the root namespace.
  ip -n "$NODE" link add up0 type veth peer name eth0 netns "$UP"
  ip -n "$NODE" addr add "$NODE_SIDE_IP/24" dev up0
  ip -n "$NODE" link set up0 up
  ip -n "$UP" addr add "$UPSTREAM_IP/24" dev eth0
  ip -n "$UP" link set eth0 up
  # No upstream of its own (--no-resolv, no servers): only its own record, REFUSED otherwise;
  # a query log to show what reached it.
  ip netns exec "$UP" dnsmasq --listen-address="$UPSTREAM_IP" --bind-interfaces --port=53 \
    --no-resolv --no-hosts --no-dhcp-interface=eth0 --pid-file="$RUNDIR/dnsmasq.pid" \
    --host-record=outside.example.test,192.0.2.80 --local-ttl=300 --log-queries --log-facility="$RUNDIR/dnsmasq.log" \
    --user=root --group=root
  for _ in $(seq 30); do [ -s "$RUNDIR/dnsmasq.pid" ] && break; sleep 0.1; done
  [ -s "$RUNDIR/dnsmasq.pid" ] || { echo "dnsmasq did not start" >&2; exit 1; }
  echo "upstream: $UP $UPSTREAM_IP (dnsmasq pid $(cat "$RUNDIR/dnsmasq.pid"))"
}

resolv() {
  local pod=${1:?pod} ns=${2:?nameserver}
  mkdir -p "/etc/netns/$PREFIX-$pod"
  cat > "/etc/netns/$PREFIX-$pod/resolv.conf" <<EOF
# Written by netns-scripts/dns.sh for $PREFIX-$pod (a ClusterFirst pod in namespace default).
nameserver $ns
search default.svc.cluster.local svc.cluster.local cluster.local
options ndots:5
EOF
  echo "$PREFIX-$pod" >> "$RUNDIR/resolv-pods"
}

down() {
  kill_pidfile "$RUNDIR/dnsmasq.pid"
  if ns_exists "$UP"; then ip netns delete "$UP"; fi
  if [ -f "$RUNDIR/resolv-pods" ]; then
    while read -r ns; do
      case $ns in "$PREFIX"-*) rm -rf "/etc/netns/${ns:?}" ;; esac
    done < "$RUNDIR/resolv-pods"
    rm -f "$RUNDIR/resolv-pods"
    rmdir /etc/netns 2>/dev/null || true # only when no other namespace has files there
  fi
  echo "dns down: $PREFIX"
}

case $cmd in
  upstream) upstream ;;
  kill-upstream) kill_pidfile "$RUNDIR/dnsmasq.pid" ;;
  resolv) resolv "$@" ;;
  down) down ;;
  *) echo "usage: $0 upstream|kill-upstream|resolv POD NS|down [-p PREFIX] [-d RUNDIR]" >&2; exit 2 ;;
esac
