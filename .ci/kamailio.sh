#!/usr/bin/env bash
# Install what the reference Kamailio lab and the SIPp tests need (Debian 12, root), if missing:
#   kamailio + kamailio-sqlite-modules (sca.so, db_sqlite.so), sqlite3 (init_db.sh), sip-tester (sipp).
# Idempotent; prints what it installed. The tests start/stop Kamailio themselves
# (tests/helpers/server.py: KamailioProcess, on 127.0.0.1:5070 in a private run dir).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v kamailio >/dev/null || need+=(kamailio)
command -v kamcmd >/dev/null || need+=(kamailio)
# db_sqlite.so and /usr/share/kamailio/db_sqlite/*.sql (used by init_db.sh) come from this package
dpkg -s kamailio-sqlite-modules >/dev/null 2>&1 || need+=(kamailio-sqlite-modules)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v sipp >/dev/null || need+=(sip-tester)
if [ ${#need[@]} -eq 0 ]; then
  echo "kamailio.sh: kamailio, kamailio-sqlite-modules, sqlite3 and sipp already installed"
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
  echo "kamailio.sh: missing ${need[*]} (run as root to install)" >&2
  exit 1
fi
echo "kamailio.sh: installing ${need[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package enables a kamailio service; the tests never use it (policy-rc.d may
# already have prevented the start). Stop it if it runs, so that 127.0.0.1:5070/5060 stay free.
if command -v systemctl >/dev/null && systemctl is-active --quiet kamailio 2>/dev/null; then
  systemctl stop kamailio || true
fi
command -v kamailio kamcmd sqlite3 sipp
