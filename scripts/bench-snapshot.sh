#!/usr/bin/env bash
# Snapshot benchmark (docs/benchmarks.md, "Snapshots"): copying a table of
# ROWS sysbench-like rows (id bigint primary key, k int, c char(120),
# pad char(60)) with tidemark (mode = "snapshot", default chunk size), to a
# JSONL file and to /dev/null, with 1 and 4 workers, beside the dump tool a
# user would pick on the same table in the same run:
#   MariaDB:    mariadb-dump --single-transaction --quick (to /dev/null)
#   PostgreSQL: psql -c "COPY sbtest1 TO STDOUT" (to /dev/null)
#
#   scripts/bench-snapshot.sh                  # 10,000,000 rows, both engines
#   ROWS=1000000 ENGINES=postgres scripts/bench-snapshot.sh
#
# Private servers (tests/servers/*.sh): MariaDB on 127.0.0.1:13320,
# PostgreSQL on 127.0.0.1:15450. For each run: wall seconds, rows/s, CPU
# seconds (user + system) and peak RSS (/usr/bin/time). Needs: bash, awk,
# mariadb, mariadb-dump, psql, /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-10000000}
ENGINES=${ENGINES:-"mariadb postgres"}
MY_PORT=${MY_PORT:-13320}
PG_PORT=${PG_PORT:-15450}
work=$PWD/target/bench/snapshot
mkdir -p "$work"
rm -rf "${work:?}"/*

cargo build --release --quiet
bin=$work/tidemark
cp target/release/tidemark "$bin"

calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
# Runs a command under /usr/bin/time, its output to /dev/null; prints
# "wall user sys rss_kb".
timed() {
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null
  cat "$work/time"
}
report() {
  local what=$1 wall user sys rss
  read -r wall user sys rss
  echo "| $what | $wall | $(calc "$ROWS / $wall" 0) | $(calc "$user + $sys") | $(calc "$rss / 1024") |"
}

tidemark_run() {
  local engine=$1 url=$2 include=$3 workers=$4 out=$5 name="$1-$4-$(basename "$5")"
  rm -rf "$work/$name-data"
  cat >"$work/$name.toml" <<TOML
[daemon]
data_dir = "$work/$name-data"
[[tasks]]
id = "bench"
mode = "snapshot"
[tasks.source]
type = "$engine"
url = "$url"
$(if [ "$engine" = mysql ]; then echo "server_id = 4242"; else printf 'slot = "tidemark_snapbench"\npublication = "tidemark_snapbench"'; fi)
[tasks.filter]
include = ["$include"]
[tasks.sink]
type = "jsonl"
path = "$out"
[tasks.snapshot]
workers = $workers
TOML
  timed "$bin" run --once --config "$work/$name.toml" 2>"$work/$name.log"
  if [ "$out" != /dev/null ]; then
    local lines
    lines=$(wc -l <"$out")
    [ "$lines" -ge "$ROWS" ] || { echo "tidemark wrote $lines lines, expected $ROWS" >&2; exit 1; }
    rm -f "$out"
  fi
}

echo "Snapshot of $ROWS rows, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| Run | Seconds | Rows/s | CPU s | Peak RSS MiB |"
echo "|---|---:|---:|---:|---:|"

if [[ $ENGINES == *mariadb* ]]; then
  tests/servers/mariadb.sh start target/servers/mariadb-bench "$MY_PORT" >/dev/null
  my=(mariadb -h127.0.0.1 -P"$MY_PORT" -utidemark -ptidemark)
  "${my[@]}" -e "DROP DATABASE IF EXISTS snapbench; CREATE DATABASE snapbench;
    CREATE TABLE snapbench.sbtest1 (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL) ENGINE=InnoDB"
  for ((start = 1; start <= ROWS; start += 1000000)); do
    end=$((start + 999999)); ((end > ROWS)) && end=$ROWS
    "${my[@]}" -e "INSERT INTO snapbench.sbtest1 SELECT seq, FLOOR(RAND(seq) * 1000000),
      SUBSTR(REPEAT(MD5(seq), 4), 1, 120), SUBSTR(CONCAT(MD5(seq * 7), MD5(seq * 13)), 1, 60)
      FROM snapbench.seq_${start}_to_${end}"
  done
  "${my[@]}" -e "ANALYZE TABLE snapbench.sbtest1" >/dev/null
  timed mariadb-dump -h127.0.0.1 -P"$MY_PORT" -utidemark -ptidemark --single-transaction --quick \
    snapbench sbtest1 2>"$work/dump.err" | report "MariaDB: mariadb-dump --single-transaction --quick → /dev/null"
  my_url="mysql://tidemark:tidemark@127.0.0.1:$MY_PORT"
  for w in 1 4; do
    tidemark_run mysql "$my_url" "snapbench.sbtest1" $w /dev/null | report "MariaDB: tidemark, $w worker(s) → /dev/null"
    tidemark_run mysql "$my_url" "snapbench.sbtest1" $w "$work/out.jsonl" | report "MariaDB: tidemark, $w worker(s) → JSONL file"
  done
fi

if [[ $ENGINES == *postgres* ]]; then
  bash tests/servers/postgres.sh start target/servers/postgres-bench "$PG_PORT" >/dev/null
  export PGPASSWORD=tidemark
  pg=(psql -h 127.0.0.1 -p "$PG_PORT" -U tidemark -v ON_ERROR_STOP=1 -qAt)
  "${pg[@]}" -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = 'snapbench'" >/dev/null
  "${pg[@]}" -d postgres -c "DROP DATABASE IF EXISTS snapbench WITH (FORCE)"
  "${pg[@]}" -d postgres -c "CREATE DATABASE snapbench"
  "${pg[@]}" -d snapbench -c "CREATE TABLE sbtest1 (id bigint PRIMARY KEY, k int NOT NULL,
    c char(120) NOT NULL, pad char(60) NOT NULL)"
  "${pg[@]}" -d snapbench -c "INSERT INTO sbtest1 SELECT g, (random() * 1000000)::int,
    substr(repeat(md5(g::text), 4), 1, 120), substr(md5((g * 7)::text) || md5((g * 13)::text), 1, 60)
    FROM generate_series(1, $ROWS) g"
  "${pg[@]}" -d snapbench -c "VACUUM ANALYZE sbtest1"
  timed "${pg[@]}" -d snapbench -c "COPY sbtest1 TO STDOUT" | report "PostgreSQL: psql COPY … TO STDOUT → /dev/null"
  pg_url="postgres://tidemark:tidemark@127.0.0.1:$PG_PORT/snapbench"
  for w in 1 4; do
    for out in /dev/null "$work/out.jsonl"; do
      "${pg[@]}" -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'tidemark_snapbench'" >/dev/null
      label=$([ "$out" = /dev/null ] && echo "/dev/null" || echo "JSONL file")
      tidemark_run postgres "$pg_url" "public.sbtest1" $w "$out" | report "PostgreSQL: tidemark, $w worker(s) → $label"
    done
  done
  "${pg[@]}" -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'tidemark_snapbench'" >/dev/null
fi
