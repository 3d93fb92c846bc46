#!/usr/bin/env bash
# podswitch: install what the tests need, then run every check and test.
# Usage: ./test-all.sh        (as root on Debian, or with tshark already installed)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n== %s ==\n' "$*"; }

# Real peers the tests use: tshark decodes every output capture independently of our parser;
# nginx, curl, iperf3, ping and ethtool run in the network-namespace tests; protoc compiles
# the control API's .proto at build time; setpriv runs a client as an unprivileged user; pip
# fetches grpcio for the test that uses the API from Python; podman (with runc, the CNI
# loopback plugin and a static busybox for its image) runs containers on podswitch-cni in
# tests/podman_e2e.rs. etcd and etcdctl are the cluster store of tests/etcd_cluster.rs and
# tests/multinode_e2e.rs (netns-scripts/multinode.sh reads node records with jq); the
# etcd-client crate's build needs protoc and the well-known .proto files of libprotobuf-dev
# (install_tools checks commands, so libprotobuf-dev is named with apt-get below). dig, kdig
# and dnsmasq are the DNS clients and upstream of tests/dns_e2e.rs and of the resolver's
# tests (control/src/dns/tests.rs). hping3 floods SYNs from spoofed sources in
# tests/fault_suite.rs. openssl makes the certificate of tests/ingress_e2e.rs and wrk drives
# benches/ingress-bench.sh.
. netns-scripts/install-tools.sh
if ! install_tools protoc:protobuf-compiler tshark:tshark nginx:nginx-light curl:curl iperf3:iperf3 \
  ping:iputils-ping ethtool:ethtool ip:iproute2 setpriv:util-linux podman:podman runc:runc \
  busybox:busybox-static /usr/lib/cni/loopback:containernetworking-plugins \
  etcd:etcd-server etcdctl:etcd-client jq:jq dig:bind9-dnsutils kdig:knot-dnsutils dnsmasq:dnsmasq-base \
  hping3:hping3 openssl:openssl wrk:wrk; then
  [ "${CI:-}" = true ] && exit 1
fi
proto=/usr/include/google/protobuf/descriptor.proto
if [ ! -e "$proto" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing libprotobuf-dev"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libprotobuf-dev >/dev/null || true
  fi
  if [ ! -e "$proto" ]; then
    echo "missing $proto (apt-get install libprotobuf-dev): the etcd-client crate will not build" >&2
    [ "${CI:-}" = true ] && exit 1
  fi
fi

for c in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
    rustup component add "$c" || true
  fi
done

log "format"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "benchmarks build"
cargo bench --workspace --locked --no-run

log "tests"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$out" || status=$?
passed=$(awk '/^test result:/ {p += $4} END {print p + 0}' "$out")
failed=$(awk '/^test result:/ {f += $6} END {print f + 0}' "$out")

# The fuzz targets (their own workspace, fuzz/) are built on the main workspace's compiled
# dependencies and each runs over its committed seeds plus a bounded number of mutations
# (frames up to 70,000 bytes; the pipeline's seeds include fragments, VXLAN and two workers).
# This build has no coverage instrumentation: it proves the targets compile and that no seed
# crashes; long, guided runs use cargo-fuzz (README, Fuzzing).
log "fuzz targets: build and smoke run over the seeds"
if (cd fuzz && CARGO_TARGET_DIR=../target cargo build --locked --bins); then
  for t in parse_frame pipeline config pcap_reader manifest dns; do
    if target/debug/$t "fuzz/corpus/$t" -runs=20000 -max_len=70000 -seed=1 -timeout=20 > "target/fuzz-$t.log" 2>&1; then
      passed=$((passed + 1))
      echo "fuzz $t: ok ($(grep -c . "target/fuzz-$t.log") log lines, target/fuzz-$t.log)"
    else
      failed=$((failed + 1)); status=1
      echo "fuzz $t: FAILED"; tail -40 "target/fuzz-$t.log"
    fi
  done
else
  failed=$((failed + 1)); status=1
  echo "fuzz targets: build FAILED"
fi
echo
echo "podswitch: $passed passed, $failed failed"
exit "$status"
