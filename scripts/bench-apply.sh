#!/usr/bin/env bash
# Database-target benchmark (docs/benchmarks.md, "Database targets"):
# tidemark applying a backlog beside the databases' own replication, on the
# same load, each draining it alone on the machine.
#
#   scripts/bench-apply.sh                    # 200,000 inserts + 50,000 updates
#   ROWS=100000 UPDATES=20000 scripts/bench-apply.sh
#
# The load (sysbench-like table sbtest: id bigint primary key, k int,
# c char(120), pad char(60)): ROWS rows inserted in transactions of 1,000,
# then UPDATES single-row transactions `UPDATE sbtest SET k = k + 1 WHERE
# id = <random>`, then a marker update (id 1, k = -1). A run ends when the
# target holds ROWS rows and the marker. Reported: seconds and row changes
# per second.
#
# 1. PostgreSQL → PostgreSQL (private server, port 15450): a native logical
#    replication subscription (pgoutput, same cluster, slot created before
#    the load, enabled after it) beside tidemark (its slot created before
#    the load), each into its own database.
# 2. MariaDB → MariaDB (private servers 13320 → 13321): a native replica
#    (slave_parallel_threads = 4, slave_parallel_mode = optimistic) beside
#    tidemark, both started at the binlog position before the load.
# 3. MariaDB → PostgreSQL: tidemark.
# 4. Snapshot load of ROWS rows: tidemark `mode = "snapshot"` beside
#    `pg_dump | psql` and `mariadb-dump | mariadb`.
set -euo pipefail

ROWS=${ROWS:-200000}
UPDATES=${UPDATES:-50000}
WORKERS=${WORKERS:-4}
PG=15450
MA=13320
MB=13321
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/bench-apply"
bin="$root/target/bench-apply-bin/tidemark"
export PGPASSWORD=tidemark
psql_() { psql -h 127.0.0.1 -p "$PG" -U tidemark -v ON_ERROR_STOP=1 -qAt "$@"; }
ma() { mariadb -h127.0.0.1 -P"$MA" -utidemark -ptidemark -N "$@"; }
mb() { mariadb -h127.0.0.1 -P"$MB" -utidemark -ptidemark -N "$@"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
total=$((ROWS + UPDATES + 1))

(cd "$root" && cargo build --release -q)
mkdir -p "$(dirname "$bin")"
cp "$root/target/release/tidemark" "$bin"
bash "$root/tests/servers/postgres.sh" start "$root/target/servers/postgres-bench" "$PG"
bash "$root/tests/servers/mariadb.sh" start "$root/target/servers/mariadb-bench" "$MA"
bash "$root/tests/servers/mariadb.sh" start "$root/target/servers/mariadb-bench-replica" "$MB"
mb -e "SET GLOBAL server_id = 2"
rm -rf "$work"
mkdir -p "$work"

report() { # name seconds
  echo "$1: $(calc "$2" 2) s, $(calc "$total / $2" 0) row changes/s"
}

# --- the load -------------------------------------------------------------
pg_load() { # db
  for ((s = 1; s <= ROWS; s += 1000)); do
    e=$((s + 999)); ((e > ROWS)) && e=$ROWS
    echo "INSERT INTO sbtest SELECT g, (random() * 1000000)::int, substr(repeat(md5(g::text), 4), 1, 120), substr(md5((g * 7)::text) || md5((g * 13)::text), 1, 60) FROM generate_series($s, $e) g;"
  done | psql_ -d "$1" >/dev/null
  awk -v n="$UPDATES" -v r="$ROWS" 'BEGIN { srand(7); for (i = 0; i < n; i++) printf "UPDATE sbtest SET k = k + 1 WHERE id = %d;\n", 1 + int(rand() * r) }' \
    | psql_ -d "$1" >/dev/null
  psql_ -d "$1" -c "UPDATE sbtest SET k = -1 WHERE id = 1"
}

ma_load() { # db
  for ((s = 1; s <= ROWS; s += 1000)); do
    e=$((s + 999)); ((e > ROWS)) && e=$ROWS
    echo "INSERT INTO sbtest SELECT seq, seq % 1000000, SUBSTR(REPEAT(MD5(seq), 4), 1, 120), SUBSTR(REPEAT(MD5(seq + 1), 2), 1, 60) FROM seq_${s}_to_${e};"
  done | ma "$1"
  awk -v n="$UPDATES" -v r="$ROWS" 'BEGIN { srand(7); for (i = 0; i < n; i++) printf "UPDATE sbtest SET k = k + 1 WHERE id = %d;\n", 1 + int(rand() * r) }' \
    | ma "$1"
  ma "$1" -e "UPDATE sbtest SET k = -1 WHERE id = 1"
}

# Waits until `query` prints "ROWS|-1" (count and the marker); prints the seconds since $2.
wait_done() { # query-command start
  local out
  while :; do
    out=$(eval "$1" 2>/dev/null | tr '\t' '|' || true)
    [ "$out" = "$ROWS|-1" ] && break
    sleep 0.05
  done
  calc "$(now) - $2" 3
}

tidemark_start() { # name
  TIDEMARK_LOG=info "$bin" run --config "$work/$1.toml" >/dev/null 2>>"$work/$1.log" &
  tm_pid=$!
}
tidemark_stop() { kill -TERM "$tm_pid"; wait "$tm_pid" || true; }

pg_table='CREATE TABLE sbtest (id bigint PRIMARY KEY, k int NOT NULL DEFAULT 0, c char(120) NOT NULL DEFAULT '"''"', pad char(60) NOT NULL DEFAULT '"''"')'
ma_table="CREATE TABLE sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL) ENGINE=InnoDB"

# --- 1. PostgreSQL → PostgreSQL ----------------------------------------------
echo "== PostgreSQL → PostgreSQL: $ROWS inserts (transactions of 1,000) + $UPDATES single-row updates"
# A previous run's subscription and walsenders go first.
psql_ -d apnative -c "ALTER SUBSCRIPTION apnative DISABLE" >/dev/null 2>&1 || true
psql_ -d apnative -c "ALTER SUBSCRIPTION apnative SET (slot_name = NONE)" >/dev/null 2>&1 || true
psql_ -d apnative -c "DROP SUBSCRIPTION apnative" >/dev/null 2>&1 || true
psql_ -d postgres -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL" >/dev/null
sleep 1
for db in apsrc apnative aptm; do
  psql_ -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null
  psql_ -d postgres -c "CREATE DATABASE $db"
  psql_ -d "$db" -c "$pg_table"
done
psql_ -d postgres -c "SELECT pg_drop_replication_slot('apnative')" >/dev/null 2>&1 || true
psql_ -d apsrc -c "CREATE PUBLICATION apnative FOR TABLE sbtest"
psql_ -d apsrc -c "SELECT pg_create_logical_replication_slot('apnative', 'pgoutput')" >/dev/null
psql_ -d apnative -c "CREATE SUBSCRIPTION apnative CONNECTION 'host=127.0.0.1 port=$PG user=tidemark password=tidemark dbname=apsrc' PUBLICATION apnative WITH (create_slot = false, slot_name = 'apnative', enabled = false, copy_data = false)"
cat >"$work/pgpg.toml" <<TOML
[daemon]
data_dir = "$work/pgpg-data"
[[tasks]]
id = "pgpg"
[tasks.source]
type = "postgres"
url = "postgres://tidemark:tidemark@127.0.0.1:$PG/apsrc"
[tasks.filter]
include = ["public.sbtest"]
[tasks.sink]
type = "postgres"
url = "postgres://tidemark:tidemark@127.0.0.1:$PG/aptm"
workers = $WORKERS
TOML
tidemark_start pgpg
until grep -q "reading WAL" "$work/pgpg.log"; do sleep 0.1; done
tidemark_stop
t0=$(now)
pg_load apsrc
echo "(load: $(calc "$(now) - $t0" 1) s)"
t0=$(now)
psql_ -d apnative -c "ALTER SUBSCRIPTION apnative ENABLE"
s=$(wait_done "psql_ -d apnative -c \"SELECT count(*), (SELECT k FROM sbtest WHERE id = 1) FROM sbtest\"" "$t0")
report "native subscription" "$s"
psql_ -d apnative -c "ALTER SUBSCRIPTION apnative DISABLE"
t0=$(now)
tidemark_start pgpg
s=$(wait_done "psql_ -d aptm -c \"SELECT count(*), (SELECT k FROM sbtest WHERE id = 1) FROM sbtest\"" "$t0")
report "tidemark (workers = $WORKERS)" "$s"
tidemark_stop
cmp <(psql_ -d apsrc -c "SELECT * FROM sbtest ORDER BY id" | md5sum) \
    <(psql_ -d aptm -c "SELECT * FROM sbtest ORDER BY id" | md5sum) >/dev/null \
  && echo "tidemark's target equals the source" || echo "TARGET DIFFERS FROM SOURCE"
psql_ -d apnative -c "DROP SUBSCRIPTION apnative" >/dev/null 2>&1 || true

# --- 2. MariaDB → MariaDB -----------------------------------------------------
echo "== MariaDB → MariaDB: the same load"
mb -e "STOP SLAVE; RESET SLAVE ALL" 2>/dev/null || true
for db in apsrc; do
  ma -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db; USE $db; $ma_table"
done
mb -e "DROP DATABASE IF EXISTS apsrc; DROP DATABASE IF EXISTS aptm; DROP DATABASE IF EXISTS tidemark; CREATE DATABASE apsrc; USE apsrc; $ma_table"
read -r file pos < <(ma -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
mb -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MA, MASTER_USER='tidemark', MASTER_PASSWORD='tidemark', MASTER_LOG_FILE='$file', MASTER_LOG_POS=$pos, MASTER_USE_GTID=no"
mb -e "SET GLOBAL slave_parallel_threads = 4, GLOBAL slave_parallel_mode = 'optimistic'"
cat >"$work/mm.toml" <<TOML
[daemon]
data_dir = "$work/mm-data"
[[tasks]]
id = "mm"
[tasks.source]
type = "mysql"
url = "mysql://tidemark:tidemark@127.0.0.1:$MA"
server_id = 4242
start = { file = "$file", pos = $pos }
[tasks.filter]
include = ["apsrc.sbtest"]
[tasks.sink]
type = "mysql"
url = "mysql://tidemark:tidemark@127.0.0.1:$MB"
map = { apsrc = "aptm" }
workers = $WORKERS
TOML
t0=$(now)
ma_load apsrc
echo "(load: $(calc "$(now) - $t0" 1) s)"
t0=$(now)
mb -e "START SLAVE"
s=$(wait_done "mb -e \"SELECT count(*), (SELECT k FROM apsrc.sbtest WHERE id = 1) FROM apsrc.sbtest\"" "$t0")
report "native replica (4 parallel threads, optimistic)" "$s"
mb -e "STOP SLAVE"
t0=$(now)
tidemark_start mm
s=$(wait_done "mb -e \"SELECT count(*), (SELECT k FROM aptm.sbtest WHERE id = 1) FROM aptm.sbtest\"" "$t0")
report "tidemark (workers = $WORKERS)" "$s"
tidemark_stop
cmp <(ma -e "SELECT * FROM apsrc.sbtest ORDER BY id" | md5sum) \
    <(mb -e "SELECT * FROM aptm.sbtest ORDER BY id" | md5sum) >/dev/null \
  && echo "tidemark's target equals the source" || echo "TARGET DIFFERS FROM SOURCE"

# --- 3. MariaDB → PostgreSQL --------------------------------------------------
echo "== MariaDB → PostgreSQL: the same backlog"
psql_ -d postgres -c "DROP DATABASE IF EXISTS apx WITH (FORCE)" 2>/dev/null
psql_ -d postgres -c "CREATE DATABASE apx"
sed -e "s/^id = \"mm\"/id = \"mp\"/" -e "s#mm-data#mp-data#" -e "s#^type = \"mysql\"\$#&#" "$work/mm.toml" \
  | awk -v pg="postgres://tidemark:tidemark@127.0.0.1:$PG/apx" '
      /^\[tasks.sink\]/ { print; sink = 1; next }
      sink && /^type/ { print "type = \"postgres\""; next }
      sink && /^url/ { print "url = \"" pg "\""; next }
      sink && /^map/ { next }
      { print }' >"$work/mp.toml"
t0=$(now)
tidemark_start mp
s=$(wait_done "psql_ -d apx -c \"SELECT count(*), (SELECT k FROM apsrc.sbtest WHERE id = 1) FROM apsrc.sbtest\"" "$t0")
report "tidemark (workers = $WORKERS)" "$s"
tidemark_stop

# --- 4. Snapshot load ---------------------------------------------------------
echo "== snapshot load: $ROWS rows"
psql_ -d postgres -c "DROP DATABASE IF EXISTS apdump WITH (FORCE)" 2>/dev/null
psql_ -d postgres -c "CREATE DATABASE apdump"
t0=$(now)
pg_dump -h 127.0.0.1 -p "$PG" -U tidemark -t sbtest apsrc | psql_ -d apdump >/dev/null
echo "pg_dump | psql: $(calc "$(now) - $t0" 2) s, $(calc "$ROWS / ($(now) - $t0)" 0) rows/s"
psql_ -d postgres -c "DROP DATABASE IF EXISTS apsnap WITH (FORCE)" 2>/dev/null
psql_ -d postgres -c "CREATE DATABASE apsnap"
cat >"$work/snap.toml" <<TOML
[daemon]
data_dir = "$work/snap-data"
[[tasks]]
id = "snap"
mode = "snapshot"
[tasks.source]
type = "postgres"
url = "postgres://tidemark:tidemark@127.0.0.1:$PG/apsrc"
slot = "apsnap"
publication = "apsnap"
[tasks.filter]
include = ["public.sbtest"]
[tasks.sink]
type = "postgres"
url = "postgres://tidemark:tidemark@127.0.0.1:$PG/apsnap"
workers = $WORKERS
TOML
t0=$(now)
"$bin" run --config "$work/snap.toml" --once 2>>"$work/snap.log"
echo "tidemark PostgreSQL → PostgreSQL: $(calc "$(now) - $t0" 2) s, $(calc "$ROWS / ($(now) - $t0)" 0) rows/s"
mb -e "DROP DATABASE IF EXISTS apdump; CREATE DATABASE apdump"
t0=$(now)
mariadb-dump -h127.0.0.1 -P"$MA" -utidemark -ptidemark --single-transaction apsrc sbtest | mb apdump
echo "mariadb-dump | mariadb: $(calc "$(now) - $t0" 2) s, $(calc "$ROWS / ($(now) - $t0)" 0) rows/s"
cat >"$work/msnap.toml" <<TOML
[daemon]
data_dir = "$work/msnap-data"
[[tasks]]
id = "msnap"
mode = "snapshot"
[tasks.source]
type = "mysql"
url = "mysql://tidemark:tidemark@127.0.0.1:$MA"
server_id = 4243
[tasks.filter]
include = ["apsrc.sbtest"]
[tasks.sink]
type = "mysql"
url = "mysql://tidemark:tidemark@127.0.0.1:$MB"
map = { apsrc = "apsnap" }
workers = $WORKERS
TOML
mb -e "DROP DATABASE IF EXISTS apsnap"
t0=$(now)
"$bin" run --config "$work/msnap.toml" --once 2>>"$work/msnap.log"
echo "tidemark MariaDB → MariaDB: $(calc "$(now) - $t0" 2) s, $(calc "$ROWS / ($(now) - $t0)" 0) rows/s"
