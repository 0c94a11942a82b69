# Shell helpers shared by tidemark's scripts (sourced, not run).

# Fails unless nothing listens on 127.0.0.1:PORT, naming what does and what
# to do. WHAT: what the script wanted to start there.
require_free_port() {
  local port=$1 what=$2
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    local who=""
    if command -v ss >/dev/null; then
      who=$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\).*/ (\1)/p' | head -n 1)
    fi
    echo "error: port $port on 127.0.0.1 is in use by another program$who, so $what can't listen there." >&2
    echo "Stop that program, or move tidemark's test servers with TIDEMARK_TEST_PORT_OFFSET=N (e.g. 1000)." >&2
    return 1
  fi
}

# Fails unless the file system holding DIR has MB megabytes free.
require_disk() {
  local dir=$1 mb=$2 what=$3
  mkdir -p "$dir" 2>/dev/null || true
  local avail
  avail=$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print int($4/1024)}')
  if [ -n "$avail" ] && [ "$avail" -lt "$mb" ]; then
    echo "error: only $avail MiB free under $dir; $what needs about $mb MiB. Free some space there and run again." >&2
    return 1
  fi
}
