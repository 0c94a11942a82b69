#!/usr/bin/env bash
# MySQL/MariaDB → JSONL benchmark on the sysbench-like row
# (id bigint primary key, k int, c char(120), pad char(60)): 1,000,000 rows
# in transactions of 1,000, against a private MariaDB (127.0.0.1:13320).
#
#   scripts/bench-mysql.sh [ROWS]
#
# (a) backlog drain: rows committed while tidemark is stopped; then tidemark
#     starts and the clock runs until the last event is durable in the file.
# (b) live: tidemark streams while the load runs; how long after the load's
#     last commit the last event is durable.
# Beside (b), the raw limit on the same load: mariadb-binlog reading the same
# binlog range from the server to /dev/null.
# Prints a Markdown block for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${1:-1000000}
tx=1000
port=13320
dir=target/bench/mysql
srv=target/servers/mariadb-bench
mysql=(mariadb -h127.0.0.1 -P$port -utidemark -ptidemark)

cargo build --release --quiet
bin=$PWD/target/release/tidemark
tests/servers/mariadb.sh start "$srv" $port
rm -rf "$dir" && mkdir -p "$dir"

now() { date +%s.%N; }
# CPU seconds (user+system) and peak RSS (kB) of a running process.
cpu_secs() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

"${mysql[@]}" -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench;
  CREATE TABLE bench.sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL) ENGINE=InnoDB"

# Rows generated server-side (MariaDB's sequence engine), one INSERT … SELECT
# of $tx rows per transaction.
load() {
  local first=$1 last=$2
  {
    for ((s = first; s <= last; s += tx)); do
      local e=$((s + tx - 1))
      echo "INSERT INTO bench.sbtest SELECT seq, seq % 100000, SUBSTR(REPEAT(MD5(seq), 4), 1, 119), SUBSTR(REPEAT(MD5(seq + 1), 2), 1, 59) FROM seq_${s}_to_${e};"
    done
  } | "${mysql[@]}" bench
}

config() {
  cat > "$dir/$1.toml" <<TOML
[daemon]
data_dir = "$PWD/$dir/data-$1"
[[tasks]]
id = "bench"
[tasks.source]
type = "mysql"
url = "mysql://tidemark:tidemark@127.0.0.1:$port"
server_id = 7001
[tasks.filter]
include = ["bench.*"]
[tasks.sink]
type = "jsonl"
path = "$PWD/$dir/$1.jsonl"
TOML
}

# Waits until the output's last line is the row with id $1.
wait_last() {
  local file=$1 id=$2
  until tail -c 1000 "$file" 2>/dev/null | grep -q "\"after\":{\"id\":$id,"; do
    sleep 0.02
  done
}

start() {
  "$bin" run --config "$dir/$1.toml" 2>"$dir/$1.log" &
  pid=$!
  until grep -q "reading binlog" "$dir/$1.log"; do sleep 0.02; done
}

stop() {
  kill -TERM "$pid"
  wait "$pid"
}

# ---- (a) backlog drain
config backlog
start backlog
stop # the start position is now pinned
load 1 "$rows"
t0=$(now)
start backlog
wait_last "$dir/backlog.jsonl" "$rows"
t1=$(now)
cpu_a=$(cpu_secs "$pid")
rss_a=$(peak_kb "$pid")
stop
lines_a=$(wc -l < "$dir/backlog.jsonl")

# ---- (b) live, and the raw limit on the same binlog range
"${mysql[@]}" -e "TRUNCATE TABLE bench.sbtest"
config live
read -r file pos < <("${mysql[@]}" -N -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
start live
l0=$(now)
load 1 "$rows"
l1=$(now)
wait_last "$dir/live.jsonl" "$rows"
l2=$(now)
cpu_b=$(cpu_secs "$pid")
rss_b=$(peak_kb "$pid")
stop
lines_b=$(wc -l < "$dir/live.jsonl")

r0=$(now)
mariadb-binlog --read-from-remote-server -h127.0.0.1 -P$port -utidemark -ptidemark \
  --start-position="$pos" --to-last-log "$file" > /dev/null
r1=$(now)

awk -v rows="$rows" -v lines_a="$lines_a" -v lines_b="$lines_b" \
  -v a="$(echo "$t1 - $t0" | bc)" -v cpu_a="$cpu_a" -v rss_a="$rss_a" \
  -v loadt="$(echo "$l1 - $l0" | bc)" -v lag="$(echo "$l2 - $l1" | bc)" -v cpu_b="$cpu_b" -v rss_b="$rss_b" \
  -v raw="$(echo "$r1 - $r0" | bc)" 'BEGIN {
  printf "| run | rows | wall s | events/s | CPU s | peak RSS MB |\n|---|---|---|---|---|---|\n"
  printf "| (a) backlog drain | %d | %.2f | %.0f | %.2f | %.1f |\n", lines_a, a, rows / a, cpu_a, rss_a / 1024
  printf "| (b) live (load %.2f s) | %d | lag after load: %.3f s | %.0f | %.2f | %.1f |\n", loadt, lines_b, lag, rows / (loadt + lag), cpu_b, rss_b / 1024
  printf "| raw limit: mariadb-binlog to /dev/null, same range as (b) | %d | %.2f | %.0f | | |\n", rows, raw, rows / raw
}'
