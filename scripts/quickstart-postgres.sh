#!/usr/bin/env bash
# One command to see tidemark work on PostgreSQL: starts a private PostgreSQL
# on 127.0.0.1:15432 with wal_level=logical (installing Debian's postgresql
# if needed), builds tidemark, and streams every change of database `demo`
# to stdout as JSON lines.
#
#   scripts/quickstart-postgres.sh
#
# Then, in another terminal:
#   PGPASSWORD=tidemark psql -h127.0.0.1 -p15432 -Utidemark demo \
#     -c "INSERT INTO items VALUES (1, 'hello'); UPDATE items SET name='world' WHERE id=1"
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null || {
  echo "error: cargo is not on PATH: install the Rust toolchain (https://rustup.rs), then run $0 again." >&2
  exit 1
}
# The compiler and libraries the build links, and the server.
scripts/deps.sh build postgres
require_disk . 3072 "the release build"

tests/servers/postgres.sh start target/servers/postgres 15432
export PGPASSWORD=tidemark
psql -q -h127.0.0.1 -p15432 -Utidemark -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'demo'" | grep -q 1 \
  || psql -q -h127.0.0.1 -p15432 -Utidemark -d postgres -c "CREATE DATABASE demo"
psql -q -h127.0.0.1 -p15432 -Utidemark -d demo -c "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text)"

cargo build --release --quiet
mkdir -p target/quickstart-postgres
cat > target/quickstart-postgres/tidemark.toml <<TOML
[daemon]
data_dir = "$PWD/target/quickstart-postgres/data"

[[tasks]]
id = "demo"
[tasks.source]
type = "postgres"
url = "postgres://tidemark:\${DEMO_PASSWORD}@127.0.0.1:15432/demo"
[tasks.filter]
include = ["public.*"]
[tasks.sink]
type = "jsonl"
path = "-"
TOML

cat >&2 <<MSG

tidemark is streaming every change of PostgreSQL database 'demo'
(127.0.0.1:15432) to stdout through a logical replication slot, one JSON line
per row change, in Debezium's envelope: "op" (c insert, u update, d delete),
"before" and "after" (the row), "source" (the LSN it came from) and "position"
(where tidemark resumes after a restart). Ctrl-C stops it; run this script
again and it continues where it stopped.

Try, in another terminal:
  PGPASSWORD=tidemark psql -h127.0.0.1 -p15432 -Utidemark demo \
    -c "INSERT INTO items VALUES (1, 'hello'); UPDATE items SET name = 'world' WHERE id = 1; DELETE FROM items WHERE id = 1"
  target/release/tidemark status --config target/quickstart-postgres/tidemark.toml    # state, progress, lag

When done for good, drop the replication slot so the server can recycle WAL:
  DEMO_PASSWORD=tidemark target/release/tidemark slot drop --config target/quickstart-postgres/tidemark.toml --task demo

Next:
  scripts/quickstart.sh                   the same from MariaDB (binlog)
  config/postgres-kafka.toml              to Kafka topics (protobuf), as Debezium's consumers expect
  config/postgres-jsonl.toml              to a file, exactly once across restarts and kill -9
  README.md, docs/runtime.md              tasks, states, pause/resume, failures and recovery

MSG
DEMO_PASSWORD=tidemark exec target/release/tidemark run --config target/quickstart-postgres/tidemark.toml
