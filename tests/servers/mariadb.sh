#!/usr/bin/env bash
# Starts (or reuses) a private MariaDB for tidemark's tests and local runs:
# loopback only, its own data dir, binlog in ROW format with full metadata.
#
#   tests/servers/mariadb.sh start [DIR] [PORT] [FLAVOUR]
#   tests/servers/mariadb.sh stop  [DIR]
#   tests/servers/mariadb.sh wipe  [DIR]   (stop, then remove DIR: data, binlogs, certificates)
#
# DIR defaults to target/servers/mariadb, PORT to 13306. FLAVOUR is `row`
# (default: binlog in ROW format, full metadata), `statement` (binlog in
# STATEMENT format) or `nobinlog` (binary logging off), for the tests of
# misconfigured servers. Installs Debian's mariadb-server if it is missing.
# Users: root (socket), and tidemark/tidemark (all privileges, from 127.0.0.1).
# TLS is on (plain connections allowed too), with a server certificate for
# 127.0.0.1 signed by the test CA DIR/tls/ca.crt. Needs openssl.
set -euo pipefail

cmd=${1:-start}
dir=${2:-${TIDEMARK_MARIADB_DIR:-target/servers/mariadb}}
port=${3:-${TIDEMARK_MARIADB_PORT:-13306}}
flavour=${4:-row}
mkdir -p "$dir" "$dir/tmp"
dir=$(cd "$dir" && pwd)
sock="$dir/mysqld.sock"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

ensure_installed() {
  if ! command -v mariadbd >/dev/null && ! [ -x /usr/sbin/mariadbd ]; then
    "$here/../../scripts/deps.sh" mariadb
  fi
}

# A test CA and a server certificate for 127.0.0.1 (TLS tests), made once.
make_certs() {
  local tls="$dir/tls"
  if [ -f "$tls/server.crt" ]; then return; fi
  command -v openssl >/dev/null || { echo "openssl is needed for the test certificates" >&2; exit 1; }
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tidemark test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
}

running() {
  [ -S "$sock" ] && mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1
}

case "$cmd" in
  start)
    ensure_installed
    if running; then exit 0; fi
    require_free_port "$port" "MariaDB ($dir)"
    require_disk "$dir" 1024 "MariaDB's data directory"
    if [ ! -d "$dir/data/mysql" ]; then
      mkdir -p "$dir/data" "$dir/tmp"
      # Bootstraps share temporary table names in /tmp: one at a time, each
      # with its own tmpdir.
      flock "$(dirname "$dir")/.install.lock" \
        mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$dir/data" \
        --tmpdir="$dir/tmp" --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; exit 1; }
    fi
    make_certs
    case "$flavour" in
      row) binlog=(--log-bin="$dir/data/mysql-bin" --binlog-format=ROW) ;;
      statement) binlog=(--log-bin="$dir/data/mysql-bin" --binlog-format=STATEMENT) ;;
      nobinlog) binlog=(--skip-log-bin) ;;
      *) echo "unknown flavour $flavour" >&2; exit 2 ;;
    esac
    # --no-defaults: nothing from /etc/mysql leaks in.
    nohup /usr/sbin/mariadbd --no-defaults --user="$(id -un)" \
      --datadir="$dir/data" --socket="$sock" --pid-file="$dir/mysqld.pid" \
      --bind-address=127.0.0.1 --port="$port" \
      --log-error="$dir/error.log" --tmpdir="$dir/tmp" \
      --ssl-ca="$dir/tls/ca.crt" --ssl-cert="$dir/tls/server.crt" --ssl-key="$dir/tls/server.key" \
      --server-id=1 "${binlog[@]}" \
      --binlog-row-image=FULL --binlog-row-metadata=FULL \
      --character-set-server=utf8mb4 --default-time-zone=+00:00 \
      --innodb-buffer-pool-size=256M --innodb-log-file-size=256M \
      --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
      --max-connections=500 --max-allowed-packet=1G \
      >/dev/null 2>&1 &
    for _ in $(seq 1 120); do
      running && break
      sleep 0.5
    done
    if ! running; then
      echo "MariaDB did not start; log follows:" >&2
      tail -n 50 "$dir/error.log" >&2
      exit 1
    fi
    mariadb --socket="$sock" -uroot <<SQL
CREATE USER IF NOT EXISTS 'tidemark'@'127.0.0.1' IDENTIFIED BY 'tidemark';
GRANT ALL PRIVILEGES ON *.* TO 'tidemark'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    ;;
  stop)
    if [ -f "$dir/mysqld.pid" ]; then
      pid=$(cat "$dir/mysqld.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
    fi
    ;;
  wipe)
    "$0" stop "$dir"
    rm -rf "${dir:?}"
    ;;
  *)
    echo "usage: $0 start|stop|wipe [DIR] [PORT]" >&2
    exit 2
    ;;
esac
