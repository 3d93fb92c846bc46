#!/usr/bin/env bash
# The cluster part of the demo (netns-scripts/demo.sh runs it last): three podswitchd nodes
# joined over a real etcd, a plain-Linux node behind the kernel's VXLAN device and an outside
# client, from netns-scripts/multinode.sh; podman containers on every podswitch node; the
# seed's ClusterIP, NodePort and LoadBalancer Services (configs/k8s/seed/) applied on one
# node and used from the others and from outside; then one node killed and dropped by the
# others when its lease expires. Everything runs in namespaces named pswmn-*, deleted at
# the end (also on failure).
#
#   sudo netns-scripts/demo-cluster.sh [BINDIR] [afxdp|afpacket|auto]
# BINDIR holds podswitchd, podswitchctl and podswitch-cni (default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
BINDIR=${1:-$PWD/target/release}
MODE=${2:-auto}
P=pswmn
RUN=/tmp/$P-run
mn() { netns-scripts/multinode.sh "$1" -p $P -d $RUN "${@:2}"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "run as root: network namespaces need it" >&2; exit 1; }
trap 'mn down >/dev/null 2>&1 || true' EXIT

say "cluster: n1, n2, n3 (podswitchd --etcd, $MODE), k1 (Linux, kernel vxlan), out (outside client)"
mn up -b "$BINDIR" -m "$MODE" -t 3
echo "nodes registered in etcd (each leased its pod CIDR):"
mn etcdctl get --prefix /podswitch/nodes/ --print-value-only | jq -c '{name, ipv4, podCidrs}'

say "containers by podman through podswitch-cni: client-n1 on n1, web-n2 on n2, web-n3 on n3"
for p in client-n1:app=client web-n2:app.kubernetes.io/name=MyApp web-n3:app.kubernetes.io/name=MyApp; do
  l=${p#*:}
  mn ctl n1 apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: ${p%%:*}, labels: {${l%%=*}: ${l#*=}}}
spec: {containers: [{name: c, image: x}]}
YAML
done
mn run n1 client-n1 'exec sleep 600' >/dev/null
for w in web-n2:n2 web-n3:n3; do
  mn run "${w#*:}" "${w%%:*}" "echo ${w%%:*} > /www/index.html && httpd -p 9376 -h /www && exec httpd -f -p 80 -h /www" >/dev/null
done
mn ctl n3 get pods -o wide

web2=$(mn ctl n1 get pods -A -o model | jq -r '.items[] | select(.name == "web-n2") | .spec.ips[0]')
say "ping client-n1 (n1) -> web-n2 (n2, $web2)"
mn pm n1 exec client-n1 ping -c 2 "$web2" | tail -2

svc() { mn ctl "$1" get services -o model | jq -r ".items[] | select(.name == \"my-service\") | .spec.$2"; }
say "the seed's ClusterIP Service, applied on n2, used from n1 (endpoints on n2 and n3)"
mn ctl n2 apply -f configs/k8s/seed/service-clusterip.yaml
cip=$(svc n1 'cluster_ips[0]')
for _ in $(seq 8); do mn pm n1 exec client-n1 timeout 3 wget -qO- "http://$cip/" || echo failed; done | sort | uniq -c

say "the seed's NodePort Service (30007), from outside through every node"
mn ctl n3 apply -f configs/k8s/seed/service-nodeport.yaml
for ip in 192.168.100.11 192.168.100.12 192.168.100.13; do
  printf '%s:30007 -> %s (server sees %s)\n' "$ip" "$(mn exec out curl -s --max-time 3 "http://$ip:30007/")" \
    "$(mn exec out curl -s --max-time 3 "http://$ip:30007/cgi-bin/ip")"
done

say "the seed's LoadBalancer Service: address from datapath.load_balancer_pools, announced by one node (ARP)"
# It asks for another cluster IP than my-service has: immutable, so delete first (kubectl too).
mn ctl n1 delete service my-service
mn ctl n1 apply -f configs/k8s/seed/service-loadbalancer.yaml
lb=$(svc n2 'load_balancer_ips[0]')
for _ in $(seq 4); do mn exec out curl -s --max-time 3 "http://$lb/" || echo failed; done | sort | uniq -c

say "the kernel node's pod (10.245.9.2) and podswitch pods"
mn exec k1p ping -c 2 "$web2" | tail -2
mn pm n1 exec client-n1 timeout 3 wget -qO- http://10.245.9.2:8080/

say "n3 killed (SIGKILL): the others drop it when its 3 s lease expires"
mn ctl n1 stats | grep '^tables'
mn stop n3 KILL
sleep 4
mn etcdctl get --prefix /podswitch/nodes/ --keys-only | grep .
mn ctl n1 stats | grep '^tables'
mn pm n1 exec client-n1 ping -c 1 "$web2" | tail -1

say "cluster stopped (namespaces, etcd and containers removed)"
