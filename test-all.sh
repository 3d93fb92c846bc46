#!/usr/bin/env bash
# podswitch: install what the tests need, then run every check and test.
# Usage: ./test-all.sh        (as root on Debian, or with tshark already installed)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n== %s ==\n' "$*"; }

# Real peers the tests use: tshark decodes every output capture independently of our parser;
# nginx, curl, iperf3, ping and ethtool run in the network-namespace tests; protoc compiles
# the control API's .proto at build time; setpriv runs a client as an unprivileged user; pip
# fetches grpcio for the test that uses the API from Python.
. netns-scripts/install-tools.sh
if ! install_tools protoc:protobuf-compiler tshark:tshark nginx:nginx-light curl:curl iperf3:iperf3 \
  ping:iputils-ping ethtool:ethtool ip:iproute2 setpriv:util-linux; then
  [ "${CI:-}" = true ] && exit 1
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
echo
echo "podswitch: $passed passed, $failed failed"
exit "$status"
