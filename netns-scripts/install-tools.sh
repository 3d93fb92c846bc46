# Sourced by the harness, the demo and test-all.sh: installs the Debian packages of any tool
# that is missing. Usage: install_tools tool:package [tool:package ...]
install_tools() {
  local missing=() t
  for t in "$@"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing ${missing[*]} and cannot install them here (need root and apt-get)" >&2
    return 1
  fi
  echo "installing ${missing[*]}"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  local guard=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Installing nginx must not start a server in the root namespace.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  local rc=$?
  [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
  return $rc
}
