#!/usr/bin/env bash
# Start a PostgreSQL server from Debian's packages on loopback and create the test database.
# Prints the SQLAlchemy URL for THEMESIFT_TEST_PG_URL on its last line.
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null; then
  apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true   # already running is fine
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" && break
  sleep 1
done
su postgres -c "psql -qtc \"SELECT 1 FROM pg_roles WHERE rolname='themesift'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE themesift LOGIN SUPERUSER PASSWORD 'themesift'\""
su postgres -c "psql -qtc \"SELECT 1 FROM pg_database WHERE datname='themesift_test'\"" | grep -q 1 \
  || su postgres -c "createdb -O themesift themesift_test"
echo "postgresql+psycopg://themesift:themesift@127.0.0.1:5432/themesift_test"
