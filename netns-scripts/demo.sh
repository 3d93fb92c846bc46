#!/usr/bin/env bash
# podswitch demo on network namespaces: builds podswitchd, starts one node (AF_XDP, falling
# back to AF_PACKET) with two workers on two-queue veths (frames reaching the wrong worker are
# handed to the one owning their flow), a client pod and three nginx pods, then shows a
# ClusterIP spreading requests, a service without endpoints refusing at once, ping and iperf3 through the switch,
# then podswitchctl on the control socket: a Kubernetes Service and NetworkPolicy applied from
# YAML, a trace naming the deciding rule, conntrack and counters. Everything runs in
# namespaces named pswdemo-*, deleted at the end. Needs root (installs missing tools with
# apt-get: iproute2, ethtool, nginx-light, curl, iperf3, iputils-ping, protobuf-compiler).
#
#   sudo netns-scripts/demo.sh [afxdp|afpacket|auto]
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-auto}
P=pswdemo
RUN=/tmp/$P-run
cluster() { netns-scripts/cluster.sh "$1" -p $P -d $RUN -b "$PWD/target/release/podswitchd" "${@:2}"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "run as root: network namespaces need it" >&2; exit 1; }
. netns-scripts/install-tools.sh
install_tools ip:iproute2 ethtool:ethtool nginx:nginx-light curl:curl iperf3:iperf3 ping:iputils-ping protoc:protobuf-compiler

say "building podswitchd and podswitchctl"
cargo build --release -q -p control --bins
ctl() { target/release/podswitchctl --socket $RUN/podswitch.sock "$@"; }
trap 'cluster down >/dev/null 2>&1 || true' EXIT

say "starting node $P-node ($MODE, two workers) with pods client, web1, web2, web3"
cluster up -m "$MODE" -q 2 -w 2
cat $RUN/podswitchd.err

say "client -> ClusterIP 10.96.0.10:80, twelve requests"
for _ in $(seq 12); do cluster exec client curl -s --max-time 3 http://10.96.0.10/; done | sort | uniq -c

say "client -> 10.96.0.20:80 (a service without endpoints)"
cluster exec client curl -sS --max-time 3 http://10.96.0.20/ || true

say "ping client -> web1"
cluster exec client ping -c 3 -i 0.2 10.244.1.11 | tail -2

say "iperf3 TCP through ClusterIP 10.96.0.11 (ClientIP affinity)"
cluster exec client iperf3 -c 10.96.0.11 -t 2 | tail -4 | head -2

say "podswitchctl: apply a Kubernetes Service (configs/k8s/web-service.yaml)"
ctl apply -f configs/k8s/web-service.yaml
ctl get services -o wide
for _ in $(seq 6); do cluster exec client curl -s --max-time 3 http://10.96.0.30/; done | sort | uniq -c

say "podswitchctl trace tcp 10.244.1.10:40000 to 10.96.0.30:80"
ctl trace tcp 10.244.1.10:40000 to 10.96.0.30:80

say "podswitchctl conntrack list --addr 10.96.0.30"
ctl conntrack list --addr 10.96.0.30 | head -5

say "NetworkPolicy from YAML: web pods take traffic from app=monitoring only"
ctl apply -f configs/k8s/web-deny.yaml
cluster exec client curl -sS --connect-timeout 1 --max-time 1 http://10.96.0.30/ || echo "(denied, as the policy says)"
ctl trace tcp 10.244.1.10:40001 to 10.96.0.30:80 | tail -3

say "policy deleted"
ctl delete networkpolicy web-from-monitoring
cluster exec client curl -s --max-time 3 http://10.96.0.30/

say "podswitchctl stats (summed over the workers; handed_off: frames that changed worker)"
sleep 0.6
ctl stats

say "stopping (XDP programs detached, namespaces deleted)"
