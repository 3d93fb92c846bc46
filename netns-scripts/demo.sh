#!/usr/bin/env bash
# podswitch demo on network namespaces: builds podswitchd, starts one node (AF_XDP, falling
# back to AF_PACKET) with two workers on two-queue veths (frames reaching the wrong worker are
# handed to the one owning their flow), a client pod and three nginx pods, then shows a
# ClusterIP spreading requests, a service without endpoints refusing at once, ping and iperf3 through the switch,
# then podswitchctl on the control socket: a Kubernetes Service and NetworkPolicy applied from
# YAML, a trace naming the deciding rule, conntrack and counters; cluster DNS answered by the
# switch (dig over UDP and TCP, a client resolving a Service by name); then containers: podman
# starts busybox containers on the podswitch CNI network (podswitch-cni attaches each as a
# port of the running switch, the daemon gives its address), a ClusterIP whose endpoints are
# the containers, a NetworkPolicy selecting them by label, a restart of podswitchd that
# keeps them working, and podman rm detaching them. Then a cluster (netns-scripts/
# demo-cluster.sh): three podswitchd nodes over a real etcd, a Linux node behind the kernel's
# VXLAN device and an outside client, the seed's ClusterIP, NodePort and LoadBalancer Services
# across nodes, and a node killed. Everything runs in namespaces named pswdemo-* and pswmn-*,
# deleted at the end, and podman keeps its state under the run directories. Needs root
# (installs missing tools with apt-get: iproute2, ethtool, nginx-light, curl, iperf3,
# iputils-ping, protobuf-compiler, podman, runc, busybox-static, containernetworking-plugins,
# etcd-server, etcd-client, jq, bind9-dnsutils).
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
install_tools ip:iproute2 ethtool:ethtool nginx:nginx-light curl:curl iperf3:iperf3 ping:iputils-ping protoc:protobuf-compiler \
  podman:podman runc:runc busybox:busybox-static nsenter:util-linux etcd:etcd-server etcdctl:etcd-client jq:jq \
  dig:bind9-dnsutils
[ -x /usr/lib/cni/loopback ] || install_tools /usr/lib/cni/loopback:containernetworking-plugins

say "building podswitchd, podswitchctl and podswitch-cni"
cargo build --release -q -p control --bins -p podswitch-cni
ctl() { target/release/podswitchctl --socket $RUN/podswitch.sock "$@"; }
PM=$RUN/podman
# podman in the node's namespace (nsenter --net: `ip netns exec` would remount /sys), with
# private state and its CNI backend pointed at podswitch-cni.
pm() { CONTAINERS_CONF=$PM/containers.conf TMPDIR=$PM/tmp nsenter --net=/run/netns/$P-node \
  podman --root $PM/root --runroot $PM/runroot --storage-driver overlay "$@"; }
# What podman writes outside its private state, removed at the end if this run made it.
made=()
for d in /run/libpod /run/runc /var/lib/containers /var/lib/cni /etc/netns; do [ -e "$d" ] || made+=("$d"); done
cleanup() {
  if [ -e "$PM/containers.conf" ]; then
    pm rm -a -f -t 0 >/dev/null 2>&1 || true
    pm rmi -a -f >/dev/null 2>&1 || true
  fi
  cluster down >/dev/null 2>&1 || true
  rm -rf "${made[@]}" "/etc/netns/$P-client"
}
trap cleanup EXIT

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
ctl get services -A -o wide
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

say "cluster DNS: kube-system/kube-dns (configs/k8s/kube-dns.yaml), answered by the switch"
ctl apply -f configs/k8s/kube-dns.yaml
cluster exec client dig +noall +answer +comments @10.96.0.53 web.default.svc.cluster.local | grep -E 'status|flags|IN' | grep -v WARNING
echo "-- the same over TCP (the daemon's resolver, behind its own port):"
cluster exec client dig +tcp +short @10.96.0.53 WEB.Default.svc.cluster.local
echo "-- a search-path miss never leaves the node:"
cluster exec client dig +noall +comments +authority @10.96.0.53 example.com.default.svc.cluster.local | grep -E 'status|SOA'
echo "-- the client resolving the Service by name (its resolv.conf as a pod gets it) and connecting:"
mkdir -p /etc/netns/$P-client
printf 'nameserver 10.96.0.53\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
  > /etc/netns/$P-client/resolv.conf
cluster exec client curl -s --max-time 3 http://web/
rm -rf /etc/netns/$P-client
ctl trace udp 10.244.1.10:40000 10.96.0.53:53 | grep -E 'dns|verdict'

say "containers: podman on the podswitch CNI network (podswitch-cni -> podswitchd)"
mkdir -p $PM/tmp $PM/bin $PM/net.d $PM/rootfs/bin $PM/www
netns-scripts/install-cni.sh $PM/bin $PM/net.d >/dev/null
cp /usr/lib/cni/loopback $PM/bin/
# The daemon's socket, and a queue per worker on every pod's veth (AF_XDP needs one each).
sed -i -e "s|/run/podswitch/podswitch.sock|$RUN/podswitch.sock|" -e 's|"type": "podswitch-cni",|"type": "podswitch-cni",\n      "queues": 2,|' \
  $PM/net.d/10-podswitch.conflist
cat > $PM/containers.conf <<CONF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$PM/bin"]
network_config_dir = "$PM/net.d"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
CONF
# An image made here (no registry): Debian's static busybox and its applets.
cp "$(command -v busybox)" $PM/rootfs/bin/busybox
for a in sh ip ping wget httpd sleep cat hostname timeout; do ln -sf busybox $PM/rootfs/bin/$a; done
tar -C $PM/rootfs -cf $PM/rootfs.tar .
pm import --change 'CMD ["/bin/sh"]' $PM/rootfs.tar localhost/pswdemo:1 >/dev/null 2>&1
# Pods as kubectl writes them (no address, no node): podman's containers bind to them by name.
for p in shop1:shop shop2:shop buyer:buyer stranger:stranger; do
  target/release/podswitchctl --socket $RUN/podswitch.sock apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: ${p%%:*}, labels: {app: ${p#*:}}}
spec: {containers: [{name: c, image: localhost/pswdemo:1}]}
YAML
done
ctl apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: shop}
spec: {clusterIP: 10.96.0.50, selector: {app: shop}, ports: [{port: 80, targetPort: 8080}]}
YAML
for c in shop1 shop2; do
  pm run -d --name $c --network podswitch localhost/pswdemo:1 \
    sh -c "mkdir -p /www && echo $c > /www/index.html && exec httpd -f -p 8080 -h /www" >/dev/null
done
for c in buyer stranger; do pm run -d --name $c --network podswitch localhost/pswdemo:1 sleep 600 >/dev/null; done
pm exec buyer ip -4 addr show eth0 | grep inet
ctl port list
ctl get pods -A -o wide
say "buyer -> ClusterIP 10.96.0.50 (its endpoints are the shop containers), eight requests"
for _ in $(seq 8); do pm exec buyer timeout 3 wget -qO- http://10.96.0.50/ || true; done | sort | uniq -c
say "NetworkPolicy: shop takes traffic from app=buyer only"
ctl apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: shop-from-buyers}
spec:
  podSelector: {matchLabels: {app: shop}}
  ingress: [{from: [{podSelector: {matchLabels: {app: buyer}}}]}]
YAML
pm exec buyer timeout 3 wget -qO- http://10.96.0.50/ || true
pm exec stranger timeout 2 wget -qO- http://10.96.0.50/ || echo "stranger: denied, as the policy says"
say "podswitchd restarted (SIGTERM, started again with its state directory): all still holds"
cluster restart >/dev/null
pm exec buyer timeout 3 wget -qO- http://10.96.0.50/ || true
pm exec stranger timeout 2 wget -qO- http://10.96.0.50/ || echo "stranger: still denied"
say "podman rm shop2: its port is detached, its address freed"
pm rm -f -t 0 shop2 >/dev/null
ctl port list

say "podswitchctl stats (summed over the workers; handed_off: frames that changed worker)"
sleep 0.6
ctl stats

say "stopping the node (XDP programs detached, namespaces deleted)"
cleanup
trap - EXIT

# Several nodes: three podswitchd over etcd, a kernel VXLAN node and an outside client.
netns-scripts/demo-cluster.sh "$PWD/target/release" "$MODE"
