#!/usr/bin/env bash
# The test suite: starts the servers the integration tests use (installing
# Debian's packages when missing), then runs every test.
#
#   scripts/test.sh [cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# TIDEMARK_TEST_PORT_OFFSET moves every test server's port (two checkouts
# side by side); the tests read it too.
offset=${TIDEMARK_TEST_PORT_OFFSET:-0}
tests/servers/mariadb.sh start target/servers/mariadb $((13306 + offset))
tests/servers/postgres.sh start target/servers/postgres $((15432 + offset))
# The Kafka-protocol broker; installs tansu with cargo (~15 min) when missing.
tests/servers/tansu.sh start target/servers/tansu $((19092 + offset))
cargo test --locked "$@"
