#!/usr/bin/env bash
# One command to see tidemark work: starts a private MariaDB on 127.0.0.1:13306
# (installing Debian's mariadb-server if needed), builds tidemark, and streams
# every change of the `demo` database to stdout as JSON lines.
#
#   scripts/quickstart.sh
#
# Then, in another terminal:
#   mariadb -h127.0.0.1 -P13306 -utidemark -ptidemark demo \
#     -e "INSERT INTO items VALUES (1, 'hello'); UPDATE items SET name='world' WHERE id=1"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null || {
  echo "error: cargo is not on PATH: install the Rust toolchain (https://rustup.rs), then run $0 again." >&2
  exit 1
}
# The compiler and libraries the build links, and the server.
scripts/deps.sh build mariadb
require_disk . 3072 "the release build"

tests/servers/mariadb.sh start target/servers/mariadb 13306
mariadb -h127.0.0.1 -P13306 -utidemark -ptidemark -e \
  "CREATE DATABASE IF NOT EXISTS demo; CREATE TABLE IF NOT EXISTS demo.items (id INT PRIMARY KEY, name VARCHAR(100))"

cargo build --release --quiet
mkdir -p target/quickstart
cat > target/quickstart/tidemark.toml <<TOML
[daemon]
data_dir = "$PWD/target/quickstart/data"

[[tasks]]
id = "demo"
[tasks.source]
type = "mysql"
url = "mysql://tidemark:\${DEMO_PASSWORD}@127.0.0.1:13306"
server_id = 5401
[tasks.filter]
include = ["demo.*"]
[tasks.sink]
type = "jsonl"
path = "-"
TOML

cat >&2 <<MSG

tidemark is streaming every change of MariaDB database 'demo' (127.0.0.1:13306)
to stdout, one JSON line per row change, in Debezium's envelope: "op" (c
insert, u update, d delete), "before" and "after" (the row), "source" (where in
the binlog it came from) and "position" (where tidemark resumes after a
restart). Ctrl-C stops it; run this script again and it continues where it
stopped.

Try, in another terminal:
  mariadb -h127.0.0.1 -P13306 -utidemark -ptidemark demo \
    -e "INSERT INTO items VALUES (1, 'hello'); UPDATE items SET name = 'world' WHERE id = 1; DELETE FROM items WHERE id = 1"
  target/release/tidemark status --config target/quickstart/tidemark.toml    # state, progress, lag

Next:
  scripts/quickstart-postgres.sh          the same from PostgreSQL (logical replication)
  config/mysql-kafka.toml                 to Kafka topics, as Debezium writes them (README: Kafka sink)
  config/mysql-jsonl.toml                 to a file, exactly once across restarts and kill -9
  README.md, docs/runtime.md              tasks, states, pause/resume, failures and recovery

MSG
DEMO_PASSWORD=tidemark exec target/release/tidemark run --config target/quickstart/tidemark.toml
