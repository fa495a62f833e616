#!/usr/bin/env bash
# Start the machine's PostgreSQL when it is installed but not running (CI needs it:
# with CI=true the PostgreSQL-backed tests must run, never skip).
set -u
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "postgres: running"; exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && { echo "postgres: started"; exit 0; }
    sleep 1
  done
  echo "postgres: installed but would not start" >&2; exit 1
fi
echo "postgres: not installed here (PostgreSQL-backed tests will fail under CI=true)" >&2
exit 0
