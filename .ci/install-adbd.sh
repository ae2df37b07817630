#!/usr/bin/env bash
# Install the adb client and server (package `adb`) and Debian's AOSP adbd (package `adbd`,
# only in bookworm-backports) on a Debian bookworm machine, for tests/integration/test_adb.py.
#
# Idempotent: does nothing when both are installed. Needs root. Adds bookworm-backports with
# the same mirror as the machine's main Debian source; backports have pin priority 100, so
# nothing else on the machine is upgraded from them. adb and adbd are taken from the same
# release (34.0.5) so client, server and daemon speak the same protocol version.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "install-adbd.sh: run as root (it installs packages)" >&2
  exit 1
fi

if command -v adb >/dev/null && [[ -x /usr/lib/android-sdk/platform-tools/adbd ]] \
   && command -v unshare >/dev/null && command -v ip >/dev/null && command -v nsenter >/dev/null; then
  echo "install-adbd.sh: adb $(adb version | head -n1 | awk '{print $NF}') and adbd already installed"
  exit 0
fi

# shellcheck disable=SC1091
. /etc/os-release
if [[ ${VERSION_CODENAME:-} != bookworm ]]; then
  echo "install-adbd.sh: expected Debian bookworm, found ${PRETTY_NAME:-unknown}; adbd comes from bookworm-backports" >&2
  exit 1
fi

# The mirror of the main Debian source: deb822 (debian.sources) or one-line (sources.list).
mirror=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
  mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

backports=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat >"$backports" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# iproute2 (ip), util-linux (unshare, nsenter) build the network namespace the tests use.
apt-get install -y -qq --no-install-recommends iproute2 util-linux
apt-get install -y -qq --no-install-recommends -t bookworm-backports adb adbd

# The package enables adbd.service (USB gadget + TCP 5555 on the host's network). The tests
# start their own adbd inside a network namespace; a host-wide one would expose a root shell.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl disable --now adbd.service || true
fi
echo "install-adbd.sh: installed adb $(adb version | head -n1 | awk '{print $NF}') and adbd"
