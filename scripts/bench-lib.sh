# Shared by the benchmark scripts: `source "$(dirname "$0")/bench-lib.sh"`.

# The first port from $1 (default 7900) that nobody listens on, among the next hundred.
free_port() {
  local from=${1:-7900}
  for p in $(seq "$from" $((from + 99))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free port in $from-$((from + 99))" >&2
  return 1
}

# The machine a run was made on, for BENCHMARKS.md; $1 is the directory whose disk is measured.
print_machine() {
  echo "== machine"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "disk: $(df -h "$1" | awk 'NR==2 {print $1, $2, "size,", $4, "free"}')"
}

# Starts `$1 serve` on a free port with its data in $2 and its log in $3, the extra arguments
# being VAR=value settings for it, and waits until it is ready. Sets `pid` and `url`. The
# benchmark's own STRATA_BENCH_* variables are kept from the server, which refuses STRATA_*
# variables that are not configuration keys.
start_strata() {
  local bin=$1 data=$2 log=$3 port
  shift 3
  port=${STRATA_BENCH_PORT:-$(free_port)}
  local unset=()
  for v in $(compgen -e | grep '^STRATA_BENCH_' || true); do unset+=(-u "$v"); done
  env "${unset[@]}" "$@" "$bin" serve --data-dir "$data" --http-addr "127.0.0.1:$port" --no-auth 2>"$log" &
  pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -sf "$url/readyz" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf "$url/readyz" >/dev/null && return 0
  echo "the server did not become ready on $url:" >&2
  cat "$log" >&2
  exit 1
}

# Stops the server `start_strata` started, as an operator would, and waits for it.
stop_strata() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}
