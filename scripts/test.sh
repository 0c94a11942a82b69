#!/usr/bin/env bash
# The test suite: starts the servers the integration tests use (installing
# Debian's packages when missing), then runs every test.
#
#   scripts/test.sh [cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."

tests/servers/mariadb.sh start
tests/servers/postgres.sh start
# The Kafka-protocol broker; installs tansu with cargo (~15 min) when missing.
tests/servers/tansu.sh start
cargo test --locked "$@"
