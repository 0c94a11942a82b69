#!/usr/bin/env bash
# The test suite: installs what it needs (scripts/deps.sh: Debian packages;
# the tansu broker with cargo, once), starts the servers the integration
# tests use, then runs every test.
#
#   scripts/test.sh [cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null || {
  echo "error: cargo is not on PATH: install the Rust toolchain (https://rustup.rs), then run scripts/test.sh again." >&2
  exit 1
}
scripts/deps.sh test
# The build, the servers' data and the test output.
require_disk . 6144 "the test build and servers"

# TIDEMARK_TEST_PORT_OFFSET moves every test server's port (two checkouts
# side by side); the tests read it too.
offset=${TIDEMARK_TEST_PORT_OFFSET:-0}
tests/servers/mariadb.sh start target/servers/mariadb $((13306 + offset))
tests/servers/postgres.sh start target/servers/postgres $((15432 + offset))
# The Kafka-protocol broker; installs tansu with cargo (~9 min on 2 cores, once) when missing.
tests/servers/tansu.sh start target/servers/tansu $((19092 + offset))
cargo test --locked "$@"
