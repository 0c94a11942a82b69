#!/usr/bin/env bash
# Watches a test run (scripts/test.sh starts it beside `cargo test`): a test
# still running LIMIT seconds after it started is taken as hung. Then it
# writes what every thread of the test binary is doing (gdb, when installed)
# and the end of each running daemon's log to target/test-hang.log, a short
# account to target/test-hang.txt (scripts/test.sh prints it last), and
# kills the test binary and its daemons: a hung test fails the run with its
# whereabouts instead of holding it until an outer timeout kills everything.
#
#   scripts/test-watchdog.sh OUTPUT_LOG LIMIT_SECS
#
# It learns of long tests from the lines libtest prints after 60 s
# ("test NAME has been running for over 60 seconds") and of their ends from
# the result lines ("test NAME ... ok").
#
# It also stops the run when the disk under the repository has less than
# TIDEMARK_TEST_MIN_FREE_MB (default 512) free: MariaDB waits for space
# rather than failing a write, so a full disk would otherwise hang every
# test that uses it.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$1
limit=$2
root=$PWD
hang_log=target/test-hang.log
summary=target/test-hang.txt
rm -f "$hang_log" "$summary"

declare -A since=()
now() { date +%s; }

# PIDs of processes whose executable lies under DIR.
procs_under() {
  local dir=$1 p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$exe" in "$dir"/*) echo "${p#/proc/}" ;; esac
  done
}

# The sizes of what a test run writes, for a disk-full account.
disk_account() {
  echo "Disk under $root: $(df -Ph . | awk 'NR==2 {print $4 " free of " $2}'); the run's own:"
  du -sh target/debug target/servers target/tmp 2>/dev/null | sed 's/^/  /'
}

report_and_kill() {
  local why=$1
  local tests daemons pid
  tests=$(procs_under "$root/target/debug/deps")
  daemons=$(procs_under "$root/target/debug" | grep -vxF -f <(printf '%s\n' $tests) || true)
  {
    echo "test-watchdog: $why"
    echo "Tests still running (started over 60 s ago):"
    for t in "${!since[@]}"; do echo "  $t"; done
  } >"$summary"
  {
    cat "$summary"
    for pid in $tests; do
      echo
      echo "===== test binary $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
      if command -v gdb >/dev/null; then
        timeout 120 gdb -p "$pid" -batch -nx -ex "set pagination off" -ex "thread apply all bt 40" 2>&1
      else
        echo "(gdb is not installed: no thread stacks)"
      fi
    done
    for pid in $daemons; do
      local err
      err=$(readlink "/proc/$pid/fd/2" 2>/dev/null)
      echo
      echo "===== daemon $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)), log $err, last 40 lines:"
      [ -f "$err" ] && tail -n 40 "$err"
    done
  } >"$hang_log" 2>&1
  # The short account: where each test thread waits (its frames in tests/),
  # and the last lines of each daemon's log.
  {
    echo "Where the test threads wait (frames in tests/; every thread: $hang_log):"
    awk '
      /^Thread / { thread = $0; shown = 0; next }
      / at tests\// && !/tests\/support\// {
        if (!shown) { print "  " thread; shown = 1 }
        sub(/^#[0-9]+ +(0x[0-9a-f]+ in )?/, ""); print "      " substr($0, 1, 240)
      }
    ' "$hang_log" | head -n 60
    for pid in $daemons; do
      local err
      err=$(readlink "/proc/$pid/fd/2" 2>/dev/null)
      [ -f "$err" ] || continue
      echo "  daemon log $err, last 8 lines:"
      tail -n 8 "$err" | cut -c1-300 | sed 's/^/      /'
    done
  } >>"$summary"
  for pid in $tests $daemons; do kill -KILL "$pid" 2>/dev/null; done
}

min_free=${TIDEMARK_TEST_MIN_FREE_MB:-512}
while sleep 10; do
  free=$(df -Pk . | awk 'NR==2 {print int($4/1024)}')
  if [ -n "$free" ] && [ "$free" -lt "$min_free" ]; then
    report_and_kill "only $free MiB left on the disk (under $min_free MiB, TIDEMARK_TEST_MIN_FREE_MB): the test servers would wait for space. Free some space and run again.
$(disk_account)"
    exit 0
  fi
  [ -f "$log" ] || continue
  # Long tests, less those with a result line.
  while read -r t; do
    [ -n "$t" ] && [ -z "${since[$t]:-}" ] && since[$t]=$(($(now) - 60))
  done < <(sed -n 's/^test \(.*\) has been running for over 60 seconds$/\1/p' "$log")
  for t in "${!since[@]}"; do
    if grep -qF "test $t ... " "$log"; then
      unset "since[$t]"
    fi
  done
  for t in "${!since[@]}"; do
    secs=$(($(now) - since[$t]))
    if [ "$secs" -ge "$limit" ]; then
      report_and_kill "'$t' has run for over ${secs} s (limit $limit s, TIDEMARK_TEST_LIMIT_SECS).
$(disk_account)"
      exit 0
    fi
  done
done
