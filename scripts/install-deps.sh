#!/usr/bin/env bash
# Installs everything taas needs on a fresh Debian 12 machine (run as root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PKGS="openvswitch-switch openvswitch-common iproute2 iputils-ping tcpdump ethtool procps psmisc postgresql bridge-utils netcat-openbsd keystone uwsgi uwsgi-plugin-python3 python3-psycopg2 iperf3"
# The packages of the list given that are not installed yet.
missing_of() {
  local p out=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
  done
  echo "$out"
}

missing=$(missing_of $DEB_PKGS)
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # iperf3 (bench/mirror_bench.py) runs as a client/one-off server inside lab namespaces,
  # never as the package's system-wide daemon.
  echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
fi
# The Neutron lab (`taas lab up --neutron`, tests/neutron): Debian's OpenStack Zed
# neutron-server and neutron-openvswitch-agent (they run on Debian's /usr/bin/python3) and
# RabbitMQ. ~280 packages, ~70-150 s the first time. No service may start or keep running:
# the lab starts its own inside its namespaces.
NEUTRON_DEB_PKGS="neutron-server neutron-openvswitch-agent rabbitmq-server"
missing=$(missing_of $NEUTRON_DEB_PKGS)
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # No debconf questions: no dbconfig, no keystone endpoint registration, no rabbit setup.
  debconf-set-selections <<'PRESEED'
neutron-common neutron-common/dbconfig-install boolean false
neutron-common neutron/configure_db boolean false
neutron-common neutron/configure_ksat boolean false
neutron-common neutron/configure_rabbit boolean false
neutron-server neutron/register-endpoint boolean false
neutron-api neutron/register-endpoint boolean false
dbconfig-common dbconfig-common/dbconfig-install boolean false
PRESEED
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep invoke-rc.d from starting the services
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
# A system-wide instance the packages may have started is stopped (checked by process, not by
# the init scripts' "status": rabbitmq's would itself start an epmd).
for svc in neutron-server neutron-openvswitch-agent neutron-rpc-server; do
  if pgrep -u neutron -f "/usr/bin/$svc" >/dev/null; then
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done
if pgrep -u rabbitmq -x beam.smp >/dev/null; then
  /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
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
# And for Keystone (served by uwsgi if its package started one): tests start their own.
if [ -x /etc/init.d/keystone ] && /etc/init.d/keystone status >/dev/null 2>&1; then
  /etc/init.d/keystone stop >/dev/null 2>&1 || true
fi

PY=${PYTHON:-python3}
if ! $PY -c "import taas, fastapi, sqlalchemy, openstack, ovs, ovsdbapp, keystoneauth1, oslo_policy" >/dev/null 2>&1 || [ pyproject.toml -nt .deps-installed ]; then
  $PY -m pip install -q --disable-pip-version-check -e ".[test]"
  touch .deps-installed
fi
