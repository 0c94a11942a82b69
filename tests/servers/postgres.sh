#!/usr/bin/env bash
# Starts (or reuses) a private PostgreSQL for tidemark's tests and local runs:
# loopback only, its own data dir, wal_level=logical.
#
#   tests/servers/postgres.sh start   [DIR] [PORT] [FLAVOUR]
#   tests/servers/postgres.sh stop    [DIR]
#   tests/servers/postgres.sh restart [DIR] [PORT] [FLAVOUR]
#   tests/servers/postgres.sh wipe    [DIR]   (stop, then remove its data)
#
# DIR defaults to target/servers/postgres, PORT to 15432. FLAVOUR is `logical`
# (default: wal_level=logical, 50 replication slots and WAL senders) or
# `minimal` (wal_level=replica: logical decoding is off), for the test of a
# misconfigured server. Installs Debian's postgresql if it is missing.
# Users: postgres (Unix socket in DIR, trust), and tidemark/tidemark
# (superuser, password over TCP from 127.0.0.1, scram-sha-256). TLS is on
# (plain connections allowed too), with a server certificate for 127.0.0.1
# signed by the test CA DIR/tls/ca.crt. Needs openssl.
#
# PostgreSQL refuses to run as root: as root, the server runs as the
# `postgres` system user (created by the Debian package), which owns DIR.
set -euo pipefail

cmd=${1:-start}
dir=${2:-${TIDEMARK_POSTGRES_DIR:-target/servers/postgres}}
port=${3:-${TIDEMARK_POSTGRES_PORT:-15432}}
flavour=${4:-logical}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# Where the server's files live: DIR, unless the `postgres` user can't reach
# it (a checkout under /root): then a directory of its own under /var/tmp,
# with DIR/data and DIR/tls linking there.
srv="$dir"
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
  srv="/var/tmp/tidemark-postgres-$(printf %s "$dir" | md5sum | cut -c1-12)"
  mkdir -p "$srv"
  chown postgres: "$srv"
  for sub in data tls; do
    [ -L "$dir/$sub" ] || { rm -rf "${dir:?}/$sub"; ln -s "$srv/$sub" "$dir/$sub"; }
  done
fi
data="$srv/data"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

ensure_installed() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v openssl >/dev/null; then
    "$here/../../scripts/deps.sh" postgres
  fi
  # The newest installed major version.
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
}

# Runs a command as the server's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  [ -f "$data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# A test CA and a server certificate for 127.0.0.1 (TLS tests), made once.
make_certs() {
  local tls="$srv/tls"
  if [ -f "$tls/server.crt" ]; then return; fi
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tidemark test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
  chmod 600 "$tls/server.key"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$tls"; fi
}

write_config() {
  case "$flavour" in
    logical) wal_level=logical ;;
    minimal) wal_level=replica ;;
    *) echo "unknown flavour $flavour" >&2; exit 2 ;;
  esac
  # Written on every start, so that a reused data dir gets this run's port
  # and flavour. fsync is off: test data need not survive a power cut, and
  # logical decoding does not depend on it.
  cat >"$data/tidemark.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$srv'
wal_level = $wal_level
max_replication_slots = 50
max_wal_senders = 50
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 2GB
wal_sender_timeout = 60s
logging_collector = off
log_min_messages = warning
lc_monetary = 'C'
lc_numeric = 'C'
timezone = 'UTC'
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$srv/tls/server.crt'
ssl_key_file = '$srv/tls/server.key'
CONF
  if ! grep -q "include_if_exists = 'tidemark.conf'" "$data/postgresql.conf"; then
    echo "include_if_exists = 'tidemark.conf'" >>"$data/postgresql.conf"
  fi
  cat >"$data/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
HBA
}

start() {
  ensure_installed
  if running; then exit 0; fi
  require_free_port "$port" "PostgreSQL ($dir)"
  require_disk "$srv" 1024 "PostgreSQL's data directory"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$srv"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    as_owner "$bindir/initdb" -D "$data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 >"$srv/initdb.log" 2>&1 \
      || { cat "$srv/initdb.log" >&2; exit 1; }
  fi
  make_certs
  write_config
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$data"
  fi
  if ! as_owner "$bindir/pg_ctl" -D "$data" -l "$srv/postgres.log" -w -t 60 start >/dev/null; then
    echo "PostgreSQL did not start; log follows:" >&2
    tail -n 50 "$srv/postgres.log" >&2
    exit 1
  fi
  as_owner "$bindir/psql" -h "$srv" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tidemark') THEN
    CREATE ROLE tidemark LOGIN SUPERUSER REPLICATION PASSWORD 'tidemark';
  END IF;
END
\$\$;
SQL
}

stop() {
  ensure_installed
  if [ -f "$data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  wipe)
    # Stop, then remove the server's files (and their /var/tmp home, if any).
    stop
    rm -rf "${srv:?}" "${dir:?}"
    ;;
  restart)
    stop
    start
    ;;
  *)
    echo "usage: $0 start|stop|restart|wipe [DIR] [PORT] [FLAVOUR]" >&2
    exit 2
    ;;
esac
