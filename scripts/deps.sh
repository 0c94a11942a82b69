#!/usr/bin/env bash
# Installs what tidemark's build, quickstarts and tests need from Debian, once.
# Idempotent and quiet when everything is there; every other script calls it.
#
#   scripts/deps.sh [GROUP...]
#
# GROUPs (default: build):
#   build     compiler, pkg-config, cmake and the -dev libraries librdkafka
#             links (zlib, zstd, OpenSSL)
#   mariadb   MariaDB server and client (quickstart, tests)
#   postgres  PostgreSQL server and client (quickstart, tests)
#   test      everything the test suite needs: build, mariadb, postgres, and
#             openssl for the test servers' certificates
#   package   build, plus dpkg-dev for the Debian package
#
# As root it runs apt-get; as another user it uses sudo when sudo works
# without a password, and otherwise stops, naming the `sudo apt-get install`
# line to run.
set -euo pipefail

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(build)

packages=()
for g in "${groups[@]}"; do
  case "$g" in
    build) packages+=(build-essential pkg-config cmake zlib1g-dev libzstd-dev libssl-dev) ;;
    mariadb) packages+=(mariadb-server mariadb-client openssl) ;;
    postgres) packages+=(postgresql postgresql-client openssl) ;;
    test) packages+=(build-essential pkg-config cmake zlib1g-dev libzstd-dev libssl-dev
      mariadb-server mariadb-client postgresql postgresql-client openssl util-linux procps) ;;
    package) packages+=(build-essential pkg-config cmake zlib1g-dev libzstd-dev libssl-dev dpkg-dev) ;;
    *) echo "scripts/deps.sh: unknown group '$g' (build, mariadb, postgres, test, package)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  # dpkg-query: 'install ok installed' only for a fully installed package.
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    case " ${missing[*]} " in *" $p "*) ;; *) missing+=("$p") ;; esac
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "error: tidemark's scripts install their dependencies with apt-get (Debian/Ubuntu), which is not on this machine." >&2
  echo "Install these packages (or your distribution's equivalents) by hand, then run the script again:" >&2
  echo "  ${missing[*]}" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "error: tidemark needs these Debian packages, and installing them needs root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    echo "Run that line, then this script again." >&2
    exit 1
  fi
fi

# Free space for the packages: apt fails halfway and obscurely without it.
avail_kb=$(df -Pk /var/cache/apt 2>/dev/null | awk 'NR==2 {print $4}')
if [ -n "${avail_kb:-}" ] && [ "$avail_kb" -lt 1048576 ]; then
  echo "error: only $((avail_kb / 1024)) MiB free under /var/cache/apt; installing ${missing[*]} needs about 1 GiB. Free some space and run again." >&2
  exit 1
fi

echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Parallel scripts may get here together: one apt at a time.
lock=/tmp/tidemark-apt.lock
(
  flock 9
  "${sudo[@]}" apt-get update -q >&2
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
) 9>"$lock"
