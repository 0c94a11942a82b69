#!/usr/bin/env bash
# PostgreSQL → JSONL benchmark (docs/benchmarks.md, "PostgreSQL → JSONL").
#
#   scripts/bench-postgres.sh            # 1,000,000 rows in transactions of 1,000
#   ROWS=200000 scripts/bench-postgres.sh
#
# A sysbench-like table (id bigint primary key, k int, c char(120),
# pad char(60)) on a private PostgreSQL (tests/servers/postgres.sh, port
# 15450). Three runs, one after the other, each alone on the machine:
#
# 1. backlog, pg_recvlogical: the rows are committed while nothing reads
#    them; pg_recvlogical (pgoutput, proto_version 1) drains them to
#    /dev/null up to the WAL position after the load. This is the server's
#    logical decoding rate, the ceiling for any pgoutput consumer.
# 2. backlog, tidemark: the same backlog through a second slot created at
#    the same point, to a JSONL file (fsync per write), until the last row
#    is in the file.
# 3. live: tidemark streams while the same load runs into a fresh database;
#    the lag is the time from the load's last commit to its last event
#    being durable in the file.
#
# For each tidemark run: events/s, CPU seconds (user+system, /proc), peak
# RSS (VmHWM). Needs: bash, psql, pg_recvlogical, /usr/bin/time.
set -euo pipefail

ROWS=${ROWS:-1000000}
TX=${TX:-1000}
PORT=${PORT:-15450}
root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
work="$root/target/bench-postgres"
server_dir="$root/target/servers/postgres-bench"
bin="$target_dir/release/tidemark"
export PGPASSWORD=tidemark
psql_() { psql -h 127.0.0.1 -p "$PORT" -U tidemark -v ON_ERROR_STOP=1 -qAt "$@"; }

(cd "$root" && cargo build --release -q)
bash "$root/tests/servers/postgres.sh" start "$server_dir" "$PORT"
rm -rf "$work"
mkdir -p "$work"

now() { date +%s.%N; }
ticks=$(getconf CLK_TCK)
# CPU seconds (user + system) of a running process.
cpu_of() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
peak_of() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# A fresh database with the table; the publication is tidemark's default.
fresh_db() {
  local db=$1
  psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  psql_ -d postgres -c "CREATE DATABASE $db"
  psql_ -d "$db" -c "CREATE TABLE sbtest1 (id bigint PRIMARY KEY, k int NOT NULL DEFAULT 0,
    c char(120) NOT NULL DEFAULT '', pad char(60) NOT NULL DEFAULT '')"
}

# ROWS rows in transactions of TX, like sysbench's prepare: random k, c, pad.
load() {
  local db=$1
  {
    for ((start = 1; start <= ROWS; start += TX)); do
      end=$((start + TX - 1))
      ((end > ROWS)) && end=$ROWS
      echo "INSERT INTO sbtest1 SELECT g, (random() * 1000000)::int,
        substr(repeat(md5(g::text), 4), 1, 120), substr(md5((g * 7)::text) || md5((g * 13)::text), 1, 60)
        FROM generate_series($start, $end) g;"
    done
  } | psql_ -d "$db" >/dev/null
}

config() {
  local name=$1 db=$2
  cat >"$work/$name.toml" <<TOML
[daemon]
data_dir = "$work/$name-data"
[[tasks]]
id = "$name"
[tasks.source]
type = "postgres"
url = "postgres://tidemark:tidemark@127.0.0.1:$PORT/$db"
[tasks.sink]
type = "jsonl"
path = "$work/$name.jsonl"
TOML
}

# Waits until the JSONL file holds the row with id ROWS (rows arrive in id order).
wait_last_row() {
  local file=$1
  until [ -f "$file" ] && tail -c 4096 "$file" | grep -q "\"after\":{\"id\":$ROWS,"; do
    sleep 0.05
  done
}

# Starts tidemark in the background; its pid in $tm_pid.
start_tidemark() {
  local name=$1
  TIDEMARK_LOG=info "$bin" run --config "$work/$name.toml" >/dev/null 2>>"$work/$name.log" &
  tm_pid=$!
}

stop_tidemark() {
  kill -TERM "$tm_pid"
  wait "$tm_pid" || true
}

calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

echo "== backlog: $ROWS rows in transactions of $TX"
fresh_db bench
config backlog bench
# Let tidemark create its publication and slot, then stop it.
start_tidemark backlog
until grep -q "reading WAL" "$work/backlog.log" 2>/dev/null; do sleep 0.1; done
stop_tidemark
pg_recvlogical -h 127.0.0.1 -p "$PORT" -U tidemark -d bench --slot recv_bench --create-slot -P pgoutput
t0=$(now)
load bench
t1=$(now)
endpos=$(psql_ -d bench -c "SELECT pg_current_wal_lsn()")
echo "load: $(calc "$t1 - $t0" 1) s"

echo "== pg_recvlogical (pgoutput, proto_version 1) to /dev/null"
/usr/bin/time -f "%e %U %S %M" -o "$work/recv.time" \
  pg_recvlogical -h 127.0.0.1 -p "$PORT" -U tidemark -d bench --slot recv_bench --start \
  -o proto_version=1 -o publication_names=tidemark_backlog -E "$endpos" -f /dev/null --no-loop
read -r recv_wall recv_user recv_sys recv_rss <"$work/recv.time"
recv_rate=$(calc "$ROWS / $recv_wall" 0)
echo "pg_recvlogical: ${recv_wall} s, $recv_rate rows/s, CPU $(calc "$recv_user + $recv_sys") s, peak RSS $((recv_rss / 1024)) MiB"

echo "== tidemark backlog drain to JSONL"
t0=$(now)
start_tidemark backlog
wait_last_row "$work/backlog.jsonl"
t1=$(now)
cpu=$(cpu_of "$tm_pid")
rss=$(peak_of "$tm_pid")
stop_tidemark
wall=$(calc "$t1 - $t0")
lines=$(wc -l <"$work/backlog.jsonl")
rate=$(calc "$lines / $wall" 0)
echo "tidemark backlog: $lines events in ${wall} s, $rate events/s, CPU $cpu s, peak RSS $rss MiB"
echo "tidemark / pg_recvlogical: $(calc "$rate * 100 / $recv_rate" 1) %"

echo "== live: tidemark streaming while the load runs"
fresh_db bench_live
config live bench_live
start_tidemark live
until grep -q "reading WAL" "$work/live.log" 2>/dev/null; do sleep 0.1; done
t0=$(now)
load bench_live
t1=$(now)
wait_last_row "$work/live.jsonl"
t2=$(now)
cpu=$(cpu_of "$tm_pid")
rss=$(peak_of "$tm_pid")
stop_tidemark
lines=$(wc -l <"$work/live.jsonl")
echo "live: load ${ROWS} rows in $(calc "$t1 - $t0") s; last event durable $(calc "$t2 - $t1") s after the last commit; $(calc "$lines / ($t2 - $t0)" 0) events/s; CPU $cpu s; peak RSS $rss MiB"

psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database IN ('bench', 'bench_live')" >/dev/null
