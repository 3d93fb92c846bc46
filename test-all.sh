#!/usr/bin/env bash
# podswitch: install what the tests need, then run every check and test.
# Usage: ./test-all.sh        (as root on Debian, or with tshark already installed)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n== %s ==\n' "$*"; }

# Real peers the tests use: tshark decodes every output capture independently of our parser;
# nginx, curl, iperf3, ping and ethtool run in the network-namespace tests.
missing=()
for t in tshark:tshark nginx:nginx-light curl:curl iperf3:iperf3 ping:iputils-ping ethtool:ethtool ip:iproute2; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    # Installing nginx must not start a server in the root namespace.
    guard=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
  else
    echo "missing ${missing[*]} and cannot install here (need root and apt-get)" >&2
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
echo
echo "podswitch: $passed passed, $failed failed"
exit "$status"
