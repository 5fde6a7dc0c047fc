#!/usr/bin/env bash
# System packages benchsweep needs on Debian/Ubuntu: a Python 3.11+ with venv, PostgreSQL
# for the test suite. Installs only what is missing; needs root or sudo for that.
set -euo pipefail
need=()
python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
  || { echo "benchsweep needs Python 3.11 or newer as python3" >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [[ "${1:-}" == "test" ]]; then
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
  command -v ssh-keygen >/dev/null || need+=(openssh-client)
  [[ -x /usr/sbin/sshd ]] || need+=(openssh-server)  # tests run real sshd servers
  [[ -x /usr/sbin/nft ]] || need+=(nftables)  # ... and cut network namespaces off
  command -v ip >/dev/null || need+=(iproute2)
  [[ -x /usr/bin/chromium ]] || need+=(chromium)
fi
((${#need[@]})) || exit 0
sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
