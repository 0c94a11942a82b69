#!/usr/bin/env bash
# PostgreSQL → JSONL benchmark (docs/benchmarks.md, "PostgreSQL → JSONL").
#
#   scripts/bench-postgres.sh                 # 1,000,000 rows in transactions of 1,000
#   ROWS=200000 RUNS=1 scripts/bench-postgres.sh
#
# A sysbench-like table (id bigint primary key, k int, c char(120),
# pad char(60)) on a private PostgreSQL (tests/servers/postgres.sh, port
# 15450), tidemark built with `cargo build --release`, default settings.
#
# 1. Backlog: RUNS tidemark slots and RUNS pg_recvlogical slots are created,
#    then the rows are committed while nothing reads them. Then, in turn,
#    each pg_recvlogical (pgoutput, proto_version 1, to /dev/null, up to the
#    WAL position after the load: the server's logical decoding rate, the
#    ceiling for any pgoutput consumer) and each tidemark task (to a JSONL
#    file, fsync per write, until the last row is in the file) drains the
#    same backlog alone on the machine.
# 2. Live: tidemark streams while the same load runs into a fresh database.
#    Reported: when the walsender had sent everything, and when the last row
#    was durable in the file, both counted from the load's last commit.
# 3. One transaction of ROWS rows, which the server streams in chunks
#    (protocol 2) and tidemark spills until the commit.
#
# For tidemark: events/s, CPU seconds (user + system, /proc), peak RSS
# (VmHWM). Needs: bash, awk, psql, pg_recvlogical, /usr/bin/time.
set -euo pipefail

ROWS=${ROWS:-1000000}
TX=${TX:-1000}
RUNS=${RUNS:-3}
PORT=${PORT:-15450}
root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
work="$root/target/bench-postgres"
server_dir="$root/target/servers/postgres-bench"
bin="$root/target/bench-postgres-bin/tidemark"
export PGPASSWORD=tidemark
psql_() { psql -h 127.0.0.1 -p "$PORT" -U tidemark -v ON_ERROR_STOP=1 -qAt "$@"; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
now() { date +%s.%N; }
ticks=$(getconf CLK_TCK)
# CPU seconds (user + system) and peak RSS (MiB) of a running process.
cpu_of() { awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
peak_of() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

(cd "$root" && cargo build --release -q)
# A private copy: a shared CARGO_TARGET_DIR may hold another checkout's
# binary at target/release/tidemark a moment later.
mkdir -p "$(dirname "$bin")"
cp "$target_dir/release/tidemark" "$bin"
"$bin" slot --help >/dev/null
bash "$root/tests/servers/postgres.sh" start "$server_dir" "$PORT"
rm -rf "$work"
mkdir -p "$work"

fresh_db() {
  local db=$1
  psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null
  psql_ -d postgres -c "CREATE DATABASE $db"
  psql_ -d "$db" -c "CREATE TABLE sbtest1 (id bigint PRIMARY KEY, k int NOT NULL DEFAULT 0,
    c char(120) NOT NULL DEFAULT '', pad char(60) NOT NULL DEFAULT '')"
  psql_ -d "$db" -c "CREATE PUBLICATION tidemark_bench FOR ALL TABLES"
}

# ROWS rows in transactions of TX, like sysbench's prepare: random k, c, pad.
load() {
  local db=$1
  for ((start = 1; start <= ROWS; start += TX)); do
    end=$((start + TX - 1))
    ((end > ROWS)) && end=$ROWS
    echo "INSERT INTO sbtest1 SELECT g, (random() * 1000000)::int,
      substr(repeat(md5(g::text), 4), 1, 120), substr(md5((g * 7)::text) || md5((g * 13)::text), 1, 60)
      FROM generate_series($start, $end) g;"
  done | psql_ -d "$db" >/dev/null
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
slot = "$name"
publication = "tidemark_bench"
[tasks.sink]
type = "jsonl"
path = "$work/$name.jsonl"
TOML
}

# Waits until the JSONL file holds the row with id ROWS (rows arrive in id order).
wait_last_row() {
  until [ -f "$1" ] && tail -c 4096 "$1" | grep -q "\"after\":{\"id\":$ROWS,"; do
    sleep 0.02
  done
}

# Starts tidemark in the background; its pid in $tm_pid.
start_tidemark() {
  TIDEMARK_LOG=info "$bin" run --config "$work/$1.toml" >/dev/null 2>>"$work/$1.log" &
  tm_pid=$!
}

stop_tidemark() {
  kill -TERM "$tm_pid"
  wait "$tm_pid" || true
}

echo "== backlog: $ROWS rows in transactions of $TX, $RUNS runs each"
fresh_db bench
for i in $(seq 1 "$RUNS"); do
  config "tidemark_$i" bench
  psql_ -d bench -c "SELECT pg_create_logical_replication_slot('tidemark_$i', 'pgoutput')" >/dev/null
  psql_ -d bench -c "SELECT pg_create_logical_replication_slot('recv_$i', 'pgoutput')" >/dev/null
done
t0=$(now)
load bench
t1=$(now)
endpos=$(psql_ -d bench -c "SELECT pg_current_wal_lsn()")
echo "load: $(calc "$t1 - $t0" 1) s"

: >"$work/recv.rates"
: >"$work/tidemark.rates"
for i in $(seq 1 "$RUNS"); do
  /usr/bin/time -f "%e %U %S %M" -o "$work/recv_$i.time" \
    pg_recvlogical -h 127.0.0.1 -p "$PORT" -U tidemark -d bench --slot "recv_$i" --start \
    -o proto_version=1 -o publication_names=tidemark_bench -E "$endpos" -f /dev/null --no-loop
  read -r wall user sys rss <"$work/recv_$i.time"
  rate=$(calc "$ROWS / $wall" 0)
  echo "$rate" >>"$work/recv.rates"
  echo "pg_recvlogical $i: $wall s, $rate rows/s, CPU $(calc "$user + $sys") s, peak RSS $((rss / 1024)) MiB"

  t0=$(now)
  start_tidemark "tidemark_$i"
  wait_last_row "$work/tidemark_$i.jsonl"
  t1=$(now)
  cpu=$(cpu_of "$tm_pid")
  rss=$(peak_of "$tm_pid")
  stop_tidemark
  lines=$(wc -l <"$work/tidemark_$i.jsonl")
  wall=$(calc "$t1 - $t0")
  rate=$(calc "$lines / $wall" 0)
  echo "$rate $cpu $rss" >>"$work/tidemark.rates"
  echo "tidemark $i: $lines events in $wall s, $rate events/s, CPU $cpu s, peak RSS $rss MiB"
done
recv=$(cut -d' ' -f1 "$work/recv.rates" | median)
tm=$(cut -d' ' -f1 "$work/tidemark.rates" | median)
echo "median: pg_recvlogical $recv rows/s, tidemark $tm events/s ($(calc "$tm * 100 / $recv" 1) %), CPU $(cut -d' ' -f2 "$work/tidemark.rates" | median) s, peak RSS $(cut -d' ' -f3 "$work/tidemark.rates" | median) MiB (max $(cut -d' ' -f3 "$work/tidemark.rates" | sort -n | tail -n 1))"

echo "== live: tidemark streaming while the load runs"
fresh_db bench_live
config live bench_live
start_tidemark live
until grep -q "reading WAL" "$work/live.log" 2>/dev/null; do sleep 0.1; done
t0=$(now)
load bench_live
t1=$(now)
end_lsn=$(psql_ -d bench_live -c "SELECT pg_current_wal_lsn()")
until [ "$(psql_ -d postgres -c "SELECT sent_lsn >= '$end_lsn' FROM pg_stat_replication WHERE application_name = 'tidemark/live'")" = t ]; do
  sleep 0.02
done
t_sent=$(now)
wait_last_row "$work/live.jsonl"
t2=$(now)
cpu=$(cpu_of "$tm_pid")
rss=$(peak_of "$tm_pid")
stop_tidemark
lines=$(wc -l <"$work/live.jsonl")
echo "live: load $ROWS rows in $(calc "$t1 - $t0") s ($(calc "$ROWS / ($t1 - $t0)" 0) rows/s); walsender sent all $(calc "$t_sent - $t1") s after the last commit; last event durable $(calc "$t2 - $t1") s after it; $(calc "$lines / ($t2 - $t0)" 0) events/s; CPU $cpu s; peak RSS $rss MiB"

echo "== one transaction of $ROWS rows (streamed in chunks, spilled, emitted after the commit)"
fresh_db bench_one
config one bench_one
start_tidemark one
until grep -q "reading WAL" "$work/one.log" 2>/dev/null; do sleep 0.1; done
t0=$(now)
TX=$ROWS load bench_one
t1=$(now)
wait_last_row "$work/one.jsonl"
t2=$(now)
cpu=$(cpu_of "$tm_pid")
rss=$(peak_of "$tm_pid")
stop_tidemark
streamed=$(grep -c "replaying a streamed transaction" "$work/one.log" || true)
echo "one transaction: committed in $(calc "$t1 - $t0") s; last event durable $(calc "$t2 - $t1") s after the commit; streamed: $streamed; CPU $cpu s; peak RSS $rss MiB"

psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database IN ('bench', 'bench_live', 'bench_one')" >/dev/null
