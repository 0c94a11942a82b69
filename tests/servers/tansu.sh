#!/usr/bin/env bash
# Starts (or reuses) a private tansu broker (a Kafka-protocol broker from
# crates.io) for tidemark's tests and local runs: loopback only, in-memory
# storage (`memory://`), advertised on 127.0.0.1.
#
#   tests/servers/tansu.sh start [DIR] [PORT]
#   tests/servers/tansu.sh stop  [DIR]
#   tests/servers/tansu.sh pause|resume [DIR]   (SIGSTOP/SIGCONT: a hung broker)
#   tests/servers/tansu.sh wipe  [DIR]
#
# DIR defaults to target/servers/tansu, PORT to 19092. When `tansu` is not on
# PATH (nor in ~/.cargo/bin), installs it once with
# `cargo install tansu --version 0.6.0 --features dynostore --locked`
# (about 9 minutes on 2 idle cores; its default build has no storage engine,
# `dynostore` brings `memory://`). Data lives in the broker's memory: a
# restart starts empty.
set -euo pipefail

cmd=${1:-start}
dir=${2:-${TIDEMARK_TANSU_DIR:-target/servers/tansu}}
port=${3:-${TIDEMARK_TANSU_PORT:-19092}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
export PATH="$PATH:$HOME/.cargo/bin"

ensure_installed() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q '0\.6\.0'; then
    return
  fi
  echo "installing tansu 0.6.0 with the memory storage engine (cargo install, about 9 minutes on 2 cores, once per machine)..." >&2
  # Parallel test processes may get here together: one install at a time.
  mkdir -p "$(dirname "$dir")"
  flock "$(dirname "$dir")/.tansu-install.lock" sh -c \
    'command -v tansu >/dev/null && tansu --version | grep -q "0\.6\.0" || cargo install tansu --version 0.6.0 --features dynostore --locked' >&2
}

pid() {
  [ -f "$dir/tansu.pid" ] && cat "$dir/tansu.pid"
}

running() {
  local p
  p=$(pid) || return 1
  kill -0 "$p" 2>/dev/null && [ "$(cat "$dir/port" 2>/dev/null)" = "$port" ] &&
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

case "$cmd" in
  start)
    ensure_installed
    if running; then exit 0; fi
    if p=$(pid) && kill -0 "$p" 2>/dev/null; then kill -CONT "$p" 2>/dev/null || true; kill "$p" || true; sleep 0.5; fi
    require_free_port "$port" "the tansu broker ($dir)"
    echo "$port" >"$dir/port"
    # setsid: the broker outlives the shell (and the test) that started it.
    setsid tansu broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "memory://tansu/" \
      --cluster-id "tidemark-test" \
      </dev/null >"$dir/tansu.log" 2>&1 &
    echo $! >"$dir/tansu.pid"
    for _ in $(seq 1 100); do
      if ! kill -0 "$(pid)" 2>/dev/null; then
        echo "tansu exited (is 127.0.0.1:$port used by another process?); log:" >&2
        tail -n 20 "$dir/tansu.log" >&2
        exit 1
      fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && kill -0 "$(pid)" 2>/dev/null; then
        echo "tansu listening on 127.0.0.1:$port (pid $(pid))" >&2
        exit 0
      fi
      sleep 0.1
    done
    echo "tansu did not start; log:" >&2
    cat "$dir/tansu.log" >&2
    exit 1
    ;;
  stop)
    if p=$(pid) && kill -0 "$p" 2>/dev/null; then
      kill -CONT "$p" 2>/dev/null || true
      kill "$p"
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$dir/tansu.pid"
    ;;
  wipe)
    "$0" stop "$dir"
    rm -rf "${dir:?}"
    ;;
  pause) kill -STOP "$(pid)" ;;
  resume) kill -CONT "$(pid)" ;;
  *)
    echo "usage: $0 start|stop|pause|resume|wipe [DIR] [PORT]" >&2
    exit 2
    ;;
esac
