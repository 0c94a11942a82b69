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
tidemark is streaming changes of database 'demo' to stdout (Ctrl-C to stop).
Try, in another terminal:
  mariadb -h127.0.0.1 -P13306 -utidemark -ptidemark demo -e "INSERT INTO items VALUES (1, 'hello')"
MSG
DEMO_PASSWORD=tidemark exec target/release/tidemark run --config target/quickstart/tidemark.toml
