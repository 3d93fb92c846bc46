#!/usr/bin/env bash
# podswitch: install what the tests need, then run every check and test.
# Usage: ./test-all.sh        (as root on Debian, or with tshark already installed)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n== %s ==\n' "$*"; }

# Real peers the tests use: tshark decodes every output capture independently of our parser.
if ! command -v tshark >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing tshark"
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tshark >/dev/null
  else
    echo "tshark is missing and cannot be installed here (need root and apt-get); the pcap tests need it" >&2
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

log "tests"
cargo test --workspace --locked --no-fail-fast

log "benchmarks build"
cargo bench --workspace --locked --no-run
