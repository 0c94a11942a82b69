#!/usr/bin/env bash
# MySQL → Kafka and PostgreSQL → Kafka benchmark (docs/benchmarks.md).
#
#   scripts/bench-kafka.sh            # ROWS=1000000 TX=1000 LAT_SECONDS=20
#
# Servers (private, loopback): MariaDB 127.0.0.1:13320, PostgreSQL :15450,
# tansu (memory storage) :19192. tidemark release build, Kafka sink defaults
# (JSON with schemas — SCHEMAS=false for without —, lz4, idempotent
# producer), 3 partitions per topic. The latency runs use JSON without schemas.
#
# 1. Throughput (backlog): tidemark starts once to pin its start, stops; the
#    sysbench-like load (ROWS rows in transactions of TX) is committed; then
#    tidemark starts and the clock runs until the offset store commits the
#    last transaction — which happens only once the broker acknowledged
#    every message of it. Events/s, CPU seconds, peak RSS.
# 2. Latency: tidemark streams while examples/kafka_latency.rs inserts rows
#    at 1,000 and 5,000 rows/s for LAT_SECONDS, each carrying its commit-time
#    clock; a consumer records receive time minus that clock per row
#    (p50/p99/max): commit-to-broker latency plus the consumer's fetch.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
# SCHEMAS=false: JSON without Kafka Connect's schema part (throughput runs).
SCHEMAS=${SCHEMAS:-true}
TX=${TX:-1000}
LAT_SECONDS=${LAT_SECONDS:-20}
MY_PORT=13320
PG_PORT=15450
K_PORT=19192
dir=$PWD/target/bench/kafka
brokers=127.0.0.1:$K_PORT
run_id=$(date +%s)

# Separately: building an example turns on dev-dependency features
# (serde_json preserve_order) that the daemon is not built with.
cargo build --release --quiet --bin tidemark
cargo build --release --quiet --example kafka_latency
bin=$PWD/target/release/tidemark
latency=$PWD/target/release/examples/kafka_latency
tests/servers/mariadb.sh start target/servers/mariadb-bench $MY_PORT
tests/servers/postgres.sh start target/servers/postgres-bench $PG_PORT
tests/servers/tansu.sh start target/servers/tansu-bench $K_PORT
rm -rf "$dir" && mkdir -p "$dir"

mysql=(mariadb -h127.0.0.1 -P$MY_PORT -utidemark -ptidemark)
export PGPASSWORD=tidemark
psql_() { psql -h 127.0.0.1 -p "$PG_PORT" -U tidemark -v ON_ERROR_STOP=1 -qAt "$@"; }
now() { date +%s.%N; }
cpu_secs() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

config() { # name source-table-and-url prefix
  cat > "$dir/$1.toml" <<TOML
[daemon]
data_dir = "$dir/data-$1"
[[tasks]]
id = "$1"
[tasks.source]
$2
[tasks.filter]
include = ["$4"]
[tasks.sink]
type = "kafka"
brokers = "$brokers"
topic_prefix = "$3"
topic_creation = { partitions = 3 }
schemas = $SCHEMAS
TOML
}

start() {
  TIDEMARK_LOG=info,tidemark::task=debug "$bin" run --config "$dir/$1.toml" 2>"$dir/$1.log" &
  pid=$!
  until grep -q "reading binlog\|reading WAL" "$dir/$1.log"; do
    sleep 0.05
    kill -0 "$pid" 2>/dev/null || { echo "tidemark exited:"; cat "$dir/$1.log"; exit 1; }
  done
}

stop() { kill -TERM "$pid"; wait "$pid" || true; }

# Waits until the log shows a committed position past $2 (a binlog
# position of the last transaction's start, or an LSN before its commit).
wait_committed() {
  local log=$1 kind=$2 bound=$3
  while true; do
    last=$(grep -o 'position=[^ ]*' "$log" | tail -n 1 | sed 's/position=//; s/\x1b\[[0-9;]*m//g') || true
    case "$kind" in
      binlog) p=$(echo "$last" | awk -F: '$NF=="*" {print $(NF-1)}') ;;
      lsn) p=$(echo "$last" | awk -F: '$NF=="*" {split($2, a, "/"); printf "%d", strtonum("0x" a[1]) * 4294967296 + strtonum("0x" a[2])}') ;;
    esac
    if [ -n "${p:-}" ] && [ "$p" -ge "$bound" ]; then return; fi
    sleep 0.05
  done
}

echo "== MySQL → Kafka: $ROWS rows in transactions of $TX"
"${mysql[@]}" -e "DROP DATABASE IF EXISTS bench_k; CREATE DATABASE bench_k;
  CREATE TABLE bench_k.sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL);
  CREATE TABLE bench_k.lat (id BIGINT PRIMARY KEY, sent_ns BIGINT NOT NULL, pad CHAR(60) NOT NULL)"
my_load() {
  for ((s = $1; s <= $2; s += TX)); do
    echo "INSERT INTO bench_k.sbtest SELECT seq, seq % 100000, SUBSTR(REPEAT(MD5(seq), 4), 1, 119), SUBSTR(REPEAT(MD5(seq + 1), 2), 1, 59) FROM seq_${s}_to_$((s + TX - 1));"
  done | "${mysql[@]}" bench_k
}
config my "type = \"mysql\"
url = \"mysql://tidemark:tidemark@127.0.0.1:$MY_PORT\"
server_id = 7101" "my$run_id" "bench_k.sbtest"
start my
stop
my_load 1 $((ROWS - TX))
last_tx=$("${mysql[@]}" -N -e "SHOW MASTER STATUS" | awk '{print $2}')
my_load $((ROWS - TX + 1)) "$ROWS"
t0=$(now)
start my
wait_committed "$dir/my.log" binlog "$last_tx"
t1=$(now)
my_cpu=$(cpu_secs "$pid"); my_rss=$(peak_mb "$pid")
stop
my_secs=$(echo "$t1 - $t0" | bc)
echo "mysql → kafka: $ROWS events in ${my_secs} s, $(echo "$ROWS / $my_secs" | bc) events/s, CPU ${my_cpu} s, peak RSS ${my_rss} MB"

echo "== PostgreSQL → Kafka: $ROWS rows in transactions of $TX"
psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = 'bench_k'" >/dev/null
psql_ -d postgres -c "DROP DATABASE IF EXISTS bench_k WITH (FORCE)" >/dev/null
psql_ -d postgres -c "CREATE DATABASE bench_k" >/dev/null
psql_ -d bench_k -c "CREATE TABLE sbtest (id bigint PRIMARY KEY, k int NOT NULL, c char(120) NOT NULL, pad char(60) NOT NULL);
  CREATE TABLE lat (id bigint PRIMARY KEY, sent_ns bigint NOT NULL, pad char(60) NOT NULL)" >/dev/null
pg_load() {
  for ((s = $1; s <= $2; s += TX)); do
    echo "INSERT INTO sbtest SELECT g, g % 100000, substr(repeat(md5(g::text), 4), 1, 120), substr(md5((g * 7)::text) || md5((g * 13)::text), 1, 60) FROM generate_series($s, $((s + TX - 1))) g;"
  done | psql_ -d bench_k >/dev/null
}
config pg "type = \"postgres\"
url = \"postgres://tidemark:tidemark@127.0.0.1:$PG_PORT/bench_k\"" "pg$run_id" "public.sbtest"
start pg
stop
pg_load 1 $((ROWS - TX))
before=$(psql_ -d bench_k -c "SELECT pg_current_wal_lsn() - '0/0'")
pg_load $((ROWS - TX + 1)) "$ROWS"
t0=$(now)
start pg
wait_committed "$dir/pg.log" lsn "$before"
t1=$(now)
pg_cpu=$(cpu_secs "$pid"); pg_rss=$(peak_mb "$pid")
stop
pg_secs=$(echo "$t1 - $t0" | bc)
echo "postgres → kafka: $ROWS events in ${pg_secs} s, $(echo "$ROWS / $pg_secs" | bc) events/s, CPU ${pg_cpu} s, peak RSS ${pg_rss} MB"

echo "== latency, commit → consumer, ${LAT_SECONDS} s per rate"
for rate in 1000 5000; do
  config mylat "type = \"mysql\"
url = \"mysql://tidemark:tidemark@127.0.0.1:$MY_PORT\"
server_id = 7102" "myl$run_id-$rate" "bench_k.lat"
  sed -i 's/^schemas = .*/schemas = false/' "$dir/mylat.toml"
  start mylat
  "$latency" mysql "mysql://tidemark:tidemark@127.0.0.1:$MY_PORT/bench_k" bench_k.lat "$brokers" "myl$run_id-$rate.bench_k.lat" "$rate" "$LAT_SECONDS" | sed 's/^/mysql: /'
  stop
  "${mysql[@]}" -e "TRUNCATE TABLE bench_k.lat"
done

for rate in 1000 5000; do
  config pglat "type = \"postgres\"
url = \"postgres://tidemark:tidemark@127.0.0.1:$PG_PORT/bench_k\"" "pgl$run_id-$rate" "public.lat"
  sed -i 's/^schemas = .*/schemas = false/' "$dir/pglat.toml"
  start pglat
  "$latency" postgres "postgres://tidemark:tidemark@127.0.0.1:$PG_PORT/bench_k" lat "$brokers" "pgl$run_id-$rate.public.lat" "$rate" "$LAT_SECONDS" | sed 's/^/postgres: /'
  stop
  psql_ -d bench_k -c "TRUNCATE lat" >/dev/null
done
psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = 'bench_k'" >/dev/null
