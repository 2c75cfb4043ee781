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
