#!/usr/bin/env bash
# podswitch demo on network namespaces: builds podswitchd, starts one node (AF_XDP, falling
# back to AF_PACKET) with a client pod and three nginx pods, then shows a ClusterIP spreading
# requests, a service without endpoints refusing at once, ping and iperf3 through the switch,
# a NetworkPolicy applied and removed with SIGHUP, and the switch's counters. Everything runs
# in namespaces named pswdemo-*, deleted at the end. Needs root (installs missing tools with
# apt-get: iproute2, ethtool, nginx-light, curl, iperf3, iputils-ping).
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
install_tools ip:iproute2 ethtool:ethtool nginx:nginx-light curl:curl iperf3:iperf3 ping:iputils-ping

say "building podswitchd"
cargo build --release -q -p control --bin podswitchd
trap 'cluster down >/dev/null 2>&1 || true' EXIT

say "starting node $P-node ($MODE) with pods client, web1, web2, web3"
cluster up -m "$MODE"
cat $RUN/podswitchd.err

say "client -> ClusterIP 10.96.0.10:80, twelve requests"
for _ in $(seq 12); do cluster exec client curl -s --max-time 3 http://10.96.0.10/; done | sort | uniq -c

say "client -> 10.96.0.20:80 (a service without endpoints)"
cluster exec client curl -sS --max-time 3 http://10.96.0.20/ || true

say "ping client -> web1"
cluster exec client ping -c 3 -i 0.2 10.244.1.11 | tail -2

say "iperf3 TCP through ClusterIP 10.96.0.11 (ClientIP affinity)"
cluster exec client iperf3 -c 10.96.0.11 -t 2 | tail -4 | head -2

say "NetworkPolicy: web pods take traffic from app=monitoring only (SIGHUP reload)"
cat > $RUN/extra.toml <<'TOML'
[[policies]]
name = "web-from-monitoring-only"
pod_selector = { match_labels = { app = "web" } }
policy_types = ["Ingress"]
[[policies.ingress]]
from = [{ pod_selector = { match_labels = { app = "monitoring" } } }]
TOML
cluster reload
sleep 1
cluster exec client curl -sS --connect-timeout 1 --max-time 1 http://10.96.0.10/ || echo "(denied, as the policy says)"
sleep 0.6
grep policy_denied $RUN/stats.txt || true

say "policy removed"
rm -f $RUN/extra.toml
cluster reload
sleep 1
cluster exec client curl -s --max-time 3 http://10.96.0.10/

say "counters"
sleep 0.6
cat $RUN/stats.txt

say "stopping (XDP programs detached, namespaces deleted)"
