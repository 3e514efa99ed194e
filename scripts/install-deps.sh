#!/usr/bin/env bash
# Installs everything taas needs on a fresh Debian 12 machine (run as root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PKGS="openvswitch-switch openvswitch-common iproute2 iputils-ping tcpdump ethtool procps psmisc postgresql bridge-utils netcat-openbsd"
missing=""
for p in $DEB_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
fi
# The lab runs its own OVS daemons per host namespace; the distribution's system-wide
# instance (if the package's postinst started one) is not used and must not linger.
if pgrep -x ovs-vswitchd >/dev/null || pgrep -x ovsdb-server >/dev/null; then
  /usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1 || true
fi
# Same for a cluster the postgresql package may have started: tests start their own.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi

PY=${PYTHON:-python3}
if ! $PY -c "import taas, fastapi, sqlalchemy, openstack, ovs, ovsdbapp" >/dev/null 2>&1 || [ pyproject.toml -nt .deps-installed ]; then
  $PY -m pip install -q --disable-pip-version-check -e ".[test]"
  touch .deps-installed
fi
