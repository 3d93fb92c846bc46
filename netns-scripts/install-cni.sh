#!/usr/bin/env bash
# Installs the podswitch CNI plugin and its network configuration list.
# Usage: netns-scripts/install-cni.sh [BIN_DIR] [CONF_DIR]
#   BIN_DIR   where runtimes look for plugins (default /opt/cni/bin)
#   CONF_DIR  where runtimes look for conflists (default /etc/cni/net.d)
# Builds the release binary first if it is missing (CARGO_TARGET_DIR is honoured). Running it
# again replaces both files with the same content: idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${1:-/opt/cni/bin}
conf_dir=${2:-/etc/cni/net.d}
target=${CARGO_TARGET_DIR:-$root/target}
plugin=$target/release/podswitch-cni

if [ ! -x "$plugin" ]; then
  echo "building $plugin"
  (cd "$root" && cargo build --release --locked -p podswitch-cni)
fi

install -d -m 0755 "$bin_dir" "$conf_dir"
# Copy to a temporary name, then rename: a runtime running the plugin meanwhile sees either
# the old binary or the new one, never a half-written file.
install -m 0755 "$plugin" "$bin_dir/.podswitch-cni.new"
mv -f "$bin_dir/.podswitch-cni.new" "$bin_dir/podswitch-cni"
install -m 0644 "$root/configs/cni/10-podswitch.conflist" "$conf_dir/.10-podswitch.conflist.new"
mv -f "$conf_dir/.10-podswitch.conflist.new" "$conf_dir/10-podswitch.conflist"
echo "installed $bin_dir/podswitch-cni and $conf_dir/10-podswitch.conflist"
