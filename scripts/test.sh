#!/usr/bin/env bash
# The test suite: installs what it needs (scripts/deps.sh: Debian packages;
# the tansu broker with cargo, once), starts the servers the integration
# tests use, then runs every test.
#
#   scripts/test.sh [cargo test args...]
#
# The whole suite (no arguments) starts from what a fresh machine has: the
# last run's test servers and scratch directories are stopped and removed
# first, so their binlogs, WAL and databases don't grow from run to run
# (the benchmarks' servers, target/servers/*-bench*, stay). With arguments
# (a filter), the running servers are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null || {
  echo "error: cargo is not on PATH: install the Rust toolchain (https://rustup.rs), then run scripts/test.sh again." >&2
  exit 1
}
scripts/deps.sh test
if [ $# -eq 0 ]; then
  for d in target/servers/*/; do
    d=${d%/}
    case ${d##*/} in
      *-bench*) continue ;;
      mariadb*) tests/servers/mariadb.sh wipe "$d" ;;
      postgres*) tests/servers/postgres.sh wipe "$d" ;;
      tansu*) tests/servers/tansu.sh wipe "$d" ;;
    esac
  done
  rm -rf target/tmp/it
fi
# The test build first (about 9 GiB from nothing): the disk check after it
# then counts what the run itself needs.
require_disk . 2048 "the test build"
cargo test --locked --no-run "$@"
# The servers' data and the test output of one whole run (about 5 GiB of
# servers and 3 GiB of scratch). A disk filling up during the run stops it
# (scripts/test-watchdog.sh): MariaDB would wait for space, not fail.
require_disk . 8192 "the test servers and scratch directories"

# TIDEMARK_TEST_PORT_OFFSET moves every test server's port (two checkouts
# side by side); the tests read it too.
offset=${TIDEMARK_TEST_PORT_OFFSET:-0}
tests/servers/mariadb.sh start target/servers/mariadb $((13306 + offset))
tests/servers/postgres.sh start target/servers/postgres $((15432 + offset))
# The Kafka-protocol broker; installs tansu with cargo (~9 min on 2 cores, once) when missing.
tests/servers/tansu.sh start target/servers/tansu $((19092 + offset))
# The output is kept in target/test-output.log; a failing run ends with
# one line per failed test (its panic message), since the full output of
# a failure (the daemon's log) can run to thousands of lines.
#
# A test still running TIDEMARK_TEST_LIMIT_SECS (default 900) after it
# started is taken as hung: scripts/test-watchdog.sh records where it waits
# (target/test-hang.log) and kills the test binary, so the run fails with
# that account rather than stalling.
mkdir -p target
: >target/test-output.log
scripts/test-watchdog.sh target/test-output.log "${TIDEMARK_TEST_LIMIT_SECS:-900}" &
watchdog=$!
trap 'kill $watchdog 2>/dev/null || true' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee target/test-output.log || status=${PIPESTATUS[0]}
kill $watchdog 2>/dev/null || true
wait $watchdog 2>/dev/null || true
if [ "$status" -ne 0 ]; then
  echo "scripts/test.sh: cargo test failed (exit $status); disk free under $PWD at the end: $(df -Ph . | awk 'NR==2 {print $4}'). Why each test failed:" >&2
  awk '
    function report() {
      if (name == "" || n == 0) return
      print "  " name ": " substr(msg[1], 1, 300)
      # A message over many lines (a daemon log) ends with what matters.
      for (i = (n > 9 ? n - 7 : 2); i <= n; i++) print "      " substr(msg[i], 1, 300)
      name = ""; n = 0
    }
    /^---- .* stdout ----$/ { report(); name = $2; n = 0; want = 0; next }
    name != "" && / panicked at / { want = 1; next }
    want && (/^stack backtrace:/ || /^note: / || /^failures:$/ || /^---- /) { want = 0; report() }
    want { msg[++n] = $0 }
    END { report() }
  ' target/test-output.log >&2
  if [ -s target/test-hang.txt ]; then cat target/test-hang.txt >&2; fi
fi
exit "$status"
