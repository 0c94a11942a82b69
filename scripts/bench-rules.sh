#!/usr/bin/env bash
# What processing rules cost: the MySQL/MariaDB → JSONL backlog drain of
# scripts/bench-mysql.sh (sysbench-like rows, 1,000,000 by default, in
# transactions of 1,000, private MariaDB on 127.0.0.1:13320), drained from
# the same binlog range without rules and with a filter, a table rename and
# a hash mask applied to every row (and each of them alone), alternating,
# $RUNS runs each (default 9).
#
#   scripts/bench-rules.sh [ROWS]
#
# The JSONL files go to $TIDEMARK_BENCH_DIR (default target/bench/rules);
# a tmpfs there (e.g. /dev/shm/tidemark-bench) takes the disk's writeback,
# which varies from run to run by more than the rules cost, out of the
# figures.
#
# The filter keeps every row (so both runs write the same number of events)
# but is evaluated on each; the mask is HMAC-SHA256 of a 60-character
# column. Prints a Markdown table for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${1:-1000000}
tx=1000
port=13320
dir=${TIDEMARK_BENCH_DIR:-target/bench/rules}
srv=target/servers/mariadb-bench
mysql=(mariadb -h127.0.0.1 -P$port -utidemark -ptidemark)

cargo build --release --quiet
bin=$PWD/target/release/tidemark
tests/servers/mariadb.sh start "$srv" $port
rm -rf "$dir" && mkdir -p "$dir" && dir=$(cd "$dir" && pwd)

now() { date +%s.%N; }
cpu_secs() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

"${mysql[@]}" -e "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench;
  CREATE TABLE bench.sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL) ENGINE=InnoDB"
read -r file pos < <("${mysql[@]}" -N -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
{
  for ((s = 1; s <= rows; s += tx)); do
    e=$((s + tx - 1))
    echo "INSERT INTO bench.sbtest SELECT seq, seq % 100000, SUBSTR(REPEAT(MD5(seq), 4), 1, 119), SUBSTR(REPEAT(MD5(seq + 1), 2), 1, 59) FROM seq_${s}_to_${e};"
  done
} | "${mysql[@]}" bench

head='[[tasks.rules]]
tables = ["bench.sbtest"]'
rename='rename_table = { match = '"'"'bench\.(.*)'"'"', to = "dw.$1" }'
filter='filter = '"'"'row.k >= 0 && row.c != ""'"'"''
mask='mask = { pad = "hash" }
mask_secret = "bench-secret-0123456789abcdef"'
declare -A variant=(
  [plain]=""
  [rename]="$head
$rename"
  [rename_mask]="$head
$rename
$mask"
  [rename_filter]="$head
$rename
$filter"
  [rules]="$head
$rename
$filter
$mask"
)
order=(plain rename rename_mask rename_filter rules)

# $1 run name, $2 rules (or empty).
run() {
  local name=$1 extra=$2 out="$dir/$1.jsonl"
  rm -rf "$dir/data-$name" "$out"
  cat > "$dir/$name.toml" <<TOML
[daemon]
data_dir = "$dir/data-$name"
[[tasks]]
id = "bench"
[tasks.source]
type = "mysql"
url = "mysql://tidemark:tidemark@127.0.0.1:$port"
server_id = 7002
start = { file = "$file", pos = $pos }
[tasks.filter]
include = ["bench.*"]
[tasks.sink]
type = "jsonl"
path = "$out"
$extra
TOML
  local t0 t1
  t0=$(now)
  "$bin" run --config "$dir/$name.toml" 2>"$dir/$name.log" &
  local pid=$!
  until tail -c 1000 "$out" 2>/dev/null | grep -q "\"after\":{\"id\":$rows,"; do
    sleep 0.02
  done
  t1=$(now)
  local cpu rss
  cpu=$(cpu_secs "$pid")
  rss=$(peak_kb "$pid")
  kill -TERM "$pid"
  wait "$pid"
  local lines
  lines=$(wc -l <"$out")
  [ "$lines" -eq "$rows" ] || { echo "$name: $lines lines, want $rows" >&2; exit 1; }
  echo "$name $(echo "$t1 - $t0" | bc) $cpu $rss"
}

results=()
runs=${RUNS:-9}
for ((i = 1; i <= runs; i++)); do
  for v in "${order[@]}"; do
    results+=("$(run "$v" "${variant[$v]}")")
  done
done
grep -q '"pad":"[0-9a-f]\{64\}"' "$dir/rules.jsonl" || { echo "the mask did not apply" >&2; exit 1; }
grep -q '"db":"dw"' "$dir/rules.jsonl" || { echo "the rename did not apply" >&2; exit 1; }

printf '%s\n' "${results[@]}" | awk -v rows="$rows" -v runs="$runs" '
  { t[$1] = t[$1] " " $2; c[$1] = c[$1] " " $3; r[$1] = r[$1] " " $4 }
  function median(s,   a, n) { n = split(s, a, " "); asort(a); return a[int((n + 1) / 2)] }
  function line(k, label,   m) {
    m = median(t[k])
    printf "| %s | %.2f | %.0f | %.1f %% | %.2f | %.1f %% | %.1f |\n", label, m, rows / m, (1 - median(t["plain"]) / m) * 100, median(c[k]), (median(c[k]) / median(c["plain"]) - 1) * 100, median(r[k]) / 1024
  }
  END {
    printf "| MySQL → JSONL backlog drain, %d events (median of %d) | wall s | events/s | cost | CPU s | CPU cost | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|\n", rows, runs
    line("plain", "no rules")
    line("rename", "table rename")
    line("rename_mask", "rename + hash mask (HMAC-SHA256 of a 60-char column)")
    line("rename_filter", "rename + CEL filter (`row.k >= 0 && row.c != \"\"`)")
    line("rules", "**filter + rename + hash mask on every row**")
  }'
