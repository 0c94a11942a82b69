#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, starts the
# service (systemctl where systemd runs; else the unit's own ExecStart
# command line as the unit's user), streams one change from a private
# MariaDB through it, stops it, and removes the package again.
#
#   scripts/package-test.sh        (as root: it installs a package)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "error: scripts/package-test.sh installs the package: run it as root (sudo)." >&2
  exit 1
fi
deb=$(scripts/package.sh)
echo "package: $deb ($(du -h "$deb" | cut -f1))"

port=$((13330 + ${TIDEMARK_TEST_PORT_OFFSET:-0}))
srv=$PWD/target/servers/mariadb-package
tests/servers/mariadb.sh start "$srv" "$port"
mysql=(mariadb -h127.0.0.1 -P"$port" -utidemark -ptidemark)
"${mysql[@]}" -e "DROP DATABASE IF EXISTS pkg; CREATE DATABASE pkg; CREATE TABLE pkg.items (id INT PRIMARY KEY, name VARCHAR(50))"

pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  if [ -d /run/systemd/system ]; then systemctl stop tidemark 2>/dev/null || true; fi
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tidemark >/dev/null 2>&1 || true
}
trap cleanup EXIT

DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$deb" >/dev/null
for f in /usr/bin/tidemark /usr/lib/systemd/system/tidemark.service /etc/tidemark/tidemark.toml \
  /usr/share/doc/tidemark/README.md; do
  [ -e "$f" ] || { echo "error: the package did not install $f" >&2; exit 1; }
done
getent passwd tidemark >/dev/null || { echo "error: no tidemark system user" >&2; exit 1; }
[ "$(stat -c %U /var/lib/tidemark)" = tidemark ] || { echo "error: /var/lib/tidemark is not owned by tidemark" >&2; exit 1; }
# The shipped config validates as it is.
runuser -u tidemark -- /usr/bin/tidemark validate --config /etc/tidemark/tidemark.toml

# A task streaming pkg.* into the state directory.
cat >>/etc/tidemark/tidemark.toml <<TOML

[[tasks]]
id = "pkg"
[tasks.source]
type = "mysql"
url = "mysql://tidemark:\${PKG_PASSWORD}@127.0.0.1:$port"
server_id = 5499
[tasks.filter]
include = ["pkg.*"]
[tasks.sink]
type = "jsonl"
path = "/var/lib/tidemark/pkg.jsonl"
TOML
echo "PKG_PASSWORD=tidemark" >/etc/tidemark/env
chgrp tidemark /etc/tidemark/env
chmod 0640 /etc/tidemark/env

unit=/usr/lib/systemd/system/tidemark.service
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl start tidemark
  how="systemctl"
else
  # No systemd as PID 1 (a container, CI): the unit's commands, as its user,
  # with its environment file.
  pre=$(sed -n 's/^ExecStartPre=//p' "$unit")
  start=$(sed -n 's/^ExecStart=//p' "$unit")
  set -a; . /etc/tidemark/env; set +a
  # setpriv execs the command itself (runuser would stay in between and
  # turn SIGTERM into its own exit status).
  as_unit_user=(setpriv --reuid=tidemark --regid=tidemark --init-groups --reset-env)
  # shellcheck disable=SC2086
  "${as_unit_user[@]}" env PKG_PASSWORD="$PKG_PASSWORD" $pre
  # shellcheck disable=SC2086
  "${as_unit_user[@]}" env PKG_PASSWORD="$PKG_PASSWORD" $start 2>target/package-daemon.log &
  pid=$!
  how="the unit's ExecStart ($start) as user tidemark"
fi

out=/var/lib/tidemark/pkg.jsonl
# Streaming once the task committed its start position.
for _ in $(seq 1 150); do
  runuser -u tidemark -- /usr/bin/tidemark offsets show --config /etc/tidemark/tidemark.toml 2>/dev/null | grep -q binlog && break
  sleep 0.2
done
"${mysql[@]}" -e "INSERT INTO pkg.items VALUES (1, 'from the package')"
for _ in $(seq 1 150); do
  grep -q '"from the package"' "$out" 2>/dev/null && break
  sleep 0.2
done
if ! grep -q '"from the package"' "$out" 2>/dev/null; then
  echo "error: the change did not arrive in $out" >&2
  [ -f target/package-daemon.log ] && cat target/package-daemon.log >&2
  [ -d /run/systemd/system ] && journalctl -u tidemark --no-pager | tail -n 50 >&2
  exit 1
fi

if [ -n "$pid" ]; then
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  pid=""
  [ "$status" -eq 0 ] || { echo "error: the daemon exited $status after SIGTERM" >&2; cat target/package-daemon.log >&2; exit 1; }
else
  systemctl stop tidemark
fi
echo "package test passed: installed, started with $how, streamed a change, stopped."
