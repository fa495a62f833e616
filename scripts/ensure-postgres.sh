#!/usr/bin/env bash
# Make PostgreSQL reachable on 127.0.0.1:5432 for the tests: start the machine's server when
# it is installed but stopped, install Debian's package first when it is missing (CI runs as
# root). With CI=true the PostgreSQL-backed tests must run, never skip.
set -u
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ready; then echo "postgres: running"; exit 0; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgres: not installed; as root: apt-get install -y postgresql" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null \
    || { echo "postgres: apt-get install failed" >&2; exit 1; }
fi
for version in $(ls /etc/postgresql); do
  conf=/etc/postgresql/$version/main
  # The tests connect as postgres over TCP without a password (a throwaway test server).
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf" 2>/dev/null \
      && [ -n "${CI:-}" ]; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
done
for _ in $(seq 1 30); do
  ready && { echo "postgres: started"; exit 0; }
  sleep 1
done
echo "postgres: installed but would not start" >&2; exit 1
