#!/usr/bin/env bash
# Builds the Debian package (target/debian/tidemark_<version>_<arch>.deb)
# with cargo-deb, installed once with cargo when missing.
#
#   scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/deps.sh package
require_disk . 3072 "the release build"
export PATH="$PATH:$HOME/.cargo/bin"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb (cargo install, a few minutes once)..." >&2
  cargo install cargo-deb --version 3.8.0 --locked >&2
fi
cargo deb --locked >&2
ls -1 target/debian/tidemark_*.deb | tail -n 1
