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
tidemark is streaming changes of database 'demo' to stdout (Ctrl-C to stop).
Try, in another terminal:
  mariadb -h127.0.0.1 -P13306 -utidemark -ptidemark demo -e "INSERT INTO items VALUES (1, 'hello')"
MSG
DEMO_PASSWORD=tidemark exec target/release/tidemark run --config target/quickstart/tidemark.toml
