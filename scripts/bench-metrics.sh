#!/usr/bin/env bash
# Metrics beside Prometheus 2.42 and VictoriaMetrics, in one run on the same generated workload
# (node-exporter-like, about 1,000 series per host, 15 s interval, the past N hours): remote-write
# ingest samples/s, bytes per sample on disk once each has compacted or merged, and peak RSS. The
# servers run one after the other, in the order STRATA_BENCH_SERVERS gives; each gets a fresh data
# directory and the same requests (the same samples, to the millisecond).
#
# After its first pass, VictoriaMetrics and Strata each get two more (STRATA_BENCH_PASSES):
#   replay  the same samples again to the same server, once its first pass is stored: what a
#           sender's retries, a re-read WAL or a second sender of the same series send;
#   ha      on a fresh server, the workload sent by a Prometheus HA pair: two senders at once, each
#           with every series, told apart by `__replica__` with the same `cluster`. Strata stores one
#           replica by its HA tracker (on by default); VictoriaMetrics as its documentation advises,
#           dropping `__replica__` (-relabelConfig) and deduplicating (-dedup.minScrapeInterval=15s).
# Prometheus runs the first pass only: it has no HA tracker, and its answer to a replay (samples
# before its head refused as out of bounds) is not a figure to compare.
# Each pass ends by counting, through the server's PromQL API, its series at the end of the data
# and the samples of node_cpu_seconds_total in the last 10 minutes: a replay and an HA pair must
# store what one sender does.
#
# Usage: scripts/bench-metrics.sh [work-dir]   (work-dir on the disk to measure)
# Environment (defaults in brackets):
#   STRATA_BENCH_HOSTS [100]          hosts, ~984 series each
#   STRATA_BENCH_HOURS [6]            hours of data; Prometheus cuts a block once its head spans 3 h, Strata
#                                     once a 2 h range ends more than its out-of-order window (1 h) before
#                                     the newest sample: with under 4 h there are no blocks to measure
#   STRATA_BENCH_CONNECTIONS [8]      concurrent remote-write connections (Prometheus's shards)
#   STRATA_BENCH_SEED [1]             generator seed
#   STRATA_BENCH_JITTER [0.25]        share of scrapes whose timestamp is a few ms off the interval
#   STRATA_BENCH_SETTLE_S [75]        block figures must hold still this long to count as compacted
#   STRATA_BENCH_COMPACT_WAIT_S [900] longest wait for compaction, per server
#   STRATA_BENCH_SERVERS [prometheus victoria strata]  which servers run, in this order
#   STRATA_BENCH_PASSES [first replay ha]  passes of VictoriaMetrics and Strata ("first" alone: none
#                                     other; the first pass always runs)
#   STRATA_BENCH_ACTIVE_SERIES_MAX    Strata's ingest.metrics.active_series_max (default: its own,
#                                     150,000, or 1.2x the workload's series when that is more)
#   STRATA_BENCH_KEEP=1               keep the data directories afterwards
#   STRATA_BENCH_FORCE=1              run even if the free-space estimate says the disk is too small
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
# The same build cache as scripts/test.sh and scripts/strata.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
hosts=${STRATA_BENCH_HOSTS:-100}
hours=${STRATA_BENCH_HOURS:-6}
connections=${STRATA_BENCH_CONNECTIONS:-8}
seed=${STRATA_BENCH_SEED:-1}
jitter=${STRATA_BENCH_JITTER:-0.25}
settle_s=${STRATA_BENCH_SETTLE_S:-75}
compact_wait_s=${STRATA_BENCH_COMPACT_WAIT_S:-900}
read -r -a servers <<<"${STRATA_BENCH_SERVERS:-prometheus victoria strata}"
for name in "${servers[@]}"; do
  case $name in prometheus | victoria | strata) ;; *) echo "bench-metrics: unknown server $name" >&2; exit 2 ;; esac
done
read -r -a passes <<<"${STRATA_BENCH_PASSES:-first replay ha}"
replay=0
ha=0
for pass in "${passes[@]}"; do
  case $pass in first) ;; replay) replay=1 ;; ha) ha=1 ;; *) echo "bench-metrics: unknown pass $pass" >&2; exit 2 ;; esac
done
# Every server and pass gets the samples of the same range, ending when the script starts.
end_ms=$(date +%s%3N)
mkdir -p "$work"
work=$(cd "$work" && pwd)
prom_dir="$work/prom"
vm_dir="$work/victoria"
strata_dir="$work/strata"
vm_ha_dir="$work/victoria-ha"
strata_ha_dir="$work/strata-ha"

log() { echo "bench-metrics: $*" >&2; }

scripts/install-prometheus.sh
scripts/install-victoria-metrics.sh
cargo build --release -q -p strata-server -p strata-bench
bin="$CARGO_TARGET_DIR/release"
bench="$bin/strata-bench"

prom_pid=
vm_pid=
strata_pid=
# Stops one server: SIGTERM, then SIGKILL if it is still there after 60 s.
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 60 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$prom_pid"
  stop "$vm_pid"
  stop "$strata_pid"
  if [ "${STRATA_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$prom_dir" "$vm_dir" "$strata_dir" "$vm_ha_dir" "$strata_ha_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 60 s for $2 to answer 2xx while pid $1 lives.
wait_ready() {
  for _ in $(seq 600); do
    curl -sf "$2" >/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Waits for server $1 (pid $2) to answer $3, or shows the end of its log $4 and stops the run.
ready_or_exit() {
  if ! wait_ready "$2" "$3"; then
    log "$1 did not become ready:"
    tail -n 20 "$4" >&2
    exit 1
  fi
}

# The value of the first sample named $2 (with optional label matcher text $3) in exposition file $1,
# summed over all its series.
metric_sum() {
  awk -v name="$2" -v match_text="${3:-}" '
    $0 !~ /^#/ {
      split($0, parts, /[{ ]/)
      if (parts[1] == name && (match_text == "" || index($0, match_text) > 0)) { sum += $NF; found = 1 }
    }
    END { if (found) printf "%.0f\n", sum; else print "" }' "$1"
}

# A number from a flat JSON object: the first "key":number in file $1.
json_num() {
  grep -o "\"$2\":[-0-9.eE+]*" "$1" | head -n 1 | cut -d: -f2
}

peak_rss() { awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$1/status"; }

mib() { awk -v b="$1" 'BEGIN { if (b == "") print "n/a"; else printf "%.1f MiB", b / 1048576 }'; }
# a / b, or n/a when either is missing (empty or "n/a") or b is 0.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { n = "^[-+0-9.eE]+$"; if (a !~ n || b !~ n || b == 0) print "n/a"; else printf "%.2f", a / b }'
}
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.3f", a / b }'; }
dec() { awk -v a="$1" 'BEGIN { if (a == "") print "n/a"; else printf "%.1f", a }'; }
num() { awk -v a="$1" 'BEGIN { if (a == "") print "n/a"; else printf "%.0f", a }'; }
dir_bytes() { if [ -d "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# Samples expected, for the disk estimate: ~984 series per host, one sample per interval.
samples_estimate=$(awk -v h="$hosts" -v d="$hours" 'BEGIN { printf "%.0f", h * 984 * d * 240 }')
# Strata's log keeps every record (about 40 bytes a sample when measured) and its store a few bytes
# more; 50 bytes a sample leaves room. A replay logs the samples again; the first pass's directory
# is deleted before the HA pair's starts, which logs the elected replica's samples.
need_bytes=$(awk -v s="$samples_estimate" -v r="$replay" 'BEGIN { printf "%.0f", s * 50 * (r ? 2 : 1) }')
avail_bytes=$(df -B1 --output=avail "$work" | tail -n 1 | tr -d ' ')

print_machine "$work"
echo "prometheus: $(prometheus --version 2>&1 | head -n 1)"
echo "victoria-metrics: $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo unknown)"
echo "order: ${servers[*]}"
echo "workload: $hosts hosts, $hours h, ~$samples_estimate samples; about $((need_bytes / 1000000000)) GB of disk needed"
if [ "$avail_bytes" -lt "$need_bytes" ] && [ "${STRATA_BENCH_FORCE:-0}" != 1 ]; then
  log "only $((avail_bytes / 1000000000)) GB free in $work: use fewer hosts or hours, another disk, or STRATA_BENCH_FORCE=1"
  exit 1
fi

rm -f "$work"/metrics-{prometheus,victoria,strata}{,-replay,-ha}.json
common=(--hosts "$hosts" --hours "$hours" --end-ms "$end_ms" --connections "$connections" --seed "$seed"
  --jitter-share "$jitter" --json)

# ---------------------------------------------------------------------------------------------------
run_prometheus() {
echo "== prometheus: remote-write receiver"
rm -rf "$prom_dir"
mkdir -p "$prom_dir"
# No scrape jobs: everything it stores comes from the benchmark. The out-of-order window stays at its
# default (off), as in a stock install.
printf 'global:\n  scrape_interval: 15s\n' >"$work/prometheus.yml"
prom_port=$(free_port 9190)
prom_url="http://127.0.0.1:$prom_port"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$prom_dir" \
  --web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver \
  2>"$work/prometheus.log" &
prom_pid=$!
ready_or_exit prometheus "$prom_pid" "$prom_url/-/ready" "$work/prometheus.log"
$bench remote-write --url "$prom_url/api/v1/write" --label prometheus --server-pid "$prom_pid" \
  --query-url "$prom_url/api/v1/query" "${common[@]}" | tee "$work/metrics-prometheus.json"

# Prometheus cuts a 2 h block once its head spans more than 3 h, and may then merge blocks. It is
# done when the head spans at most 3 h and its compaction, truncation and block counts have held
# still for settle_s.
log "waiting for prometheus to compact its head (up to ${compact_wait_s} s)"
last_compactions=
still_since=$SECONDS
deadline=$((SECONDS + compact_wait_s))
while [ $SECONDS -lt $deadline ]; do
  curl -sf "$prom_url/metrics" >"$work/prom-metrics.txt" || true
  head_min=$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_head_min_time)
  head_max=$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_head_max_time)
  compactions="$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_compactions_total)"
  compactions+="/$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_head_truncations_total)"
  compactions+="/$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_blocks_loaded)"
  if [ "$compactions" != "$last_compactions" ]; then last_compactions=$compactions; still_since=$SECONDS; fi
  span_ms=$(( ${head_max:-0} - ${head_min:-0} ))
  if [ "$span_ms" -le 10800000 ] && [ $((SECONDS - still_since)) -ge "$settle_s" ]; then break; fi
  sleep 2
done
if [ $SECONDS -ge $deadline ]; then log "prometheus was still compacting after ${compact_wait_s} s; figures are as they stand"; fi
prom_appended=$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_head_samples_appended_total)
prom_out_of_bounds=$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_out_of_bound_samples_total)
prom_out_of_order=$(metric_sum "$work/prom-metrics.txt" prometheus_tsdb_out_of_order_samples_total)
prom_rss_peak=$(peak_rss "$prom_pid")
stop "$prom_pid"
prom_pid=
# promtool prints, per block: ULID, min time, max time, duration, samples, chunks, series, bytes.
promtool tsdb list "$prom_dir" >"$work/prom-blocks.txt"
cat "$work/prom-blocks.txt"
prom_blocks=$(awk 'NR > 1 && NF >= 8 {n++} END {print n + 0}' "$work/prom-blocks.txt")
prom_block_samples=$(awk 'NR > 1 && NF >= 8 {s += $5} END {printf "%.0f\n", s}' "$work/prom-blocks.txt")
prom_block_bytes=$(awk 'NR > 1 && NF >= 8 {s += $8} END {printf "%.0f\n", s}' "$work/prom-blocks.txt")
prom_dir_bytes=$(dir_bytes "$prom_dir")
prom_wal_bytes=$(( $(dir_bytes "$prom_dir/wal") + $(dir_bytes "$prom_dir/chunks_head") ))
}

# ---------------------------------------------------------------------------------------------------
# Starts VictoriaMetrics on data directory $2, fresh ($1 = fresh) or as it is ($1 = keep), with
# extra flags $3...: vm_pid, vm_url.
start_victoria() {
  local dir=$2
  [ "$1" = keep ] || rm -rf "$dir"
  shift 2
  vm_port=$(free_port 8428)
  vm_url="http://127.0.0.1:$vm_port"
  # A stock install, but for retention: its default (one month) would already hold the data; set
  # far out so that nothing of it is ever dropped.
  # Its limit on series per query (300,000) is raised for the count of what it stores.
  victoria-metrics -storageDataPath="$dir" -httpListenAddr="127.0.0.1:$vm_port" -retentionPeriod=100y \
    -search.maxUniqueTimeseries=10000000 -loggerLevel=WARN "$@" >"$work/victoria.log" 2>&1 &
  vm_pid=$!
  ready_or_exit victoria-metrics "$vm_pid" "$vm_url/health" "$work/victoria.log"
}

run_victoria() {
echo "== victoria-metrics: remote-write receiver"
# No deduplication (its default).
start_victoria fresh "$vm_dir"
$bench remote-write --url "$vm_url/api/v1/write" --label victoria-metrics --server-pid "$vm_pid" \
  --query-url "$vm_url/api/v1/query" "${common[@]}" | tee "$work/metrics-victoria.json"
# It acknowledges samples into in-memory buffers, flushes them to parts within seconds and merges
# parts in the background. Flushed and merged as far as it goes: force_flush, force_merge, then
# its merge and part counts holding still for settle_s.
log "waiting for victoria-metrics to flush and merge (up to ${compact_wait_s} s)"
curl -sf "$vm_url/internal/force_flush" >/dev/null || log "force_flush failed"
curl -sf "$vm_url/internal/force_merge" >/dev/null || log "force_merge failed"
last_parts=
still_since=$SECONDS
deadline=$((SECONDS + compact_wait_s))
while [ $SECONDS -lt $deadline ]; do
  curl -sf "$vm_url/metrics" >"$work/vm-metrics.txt" || true
  parts="$(metric_sum "$work/vm-metrics.txt" vm_parts)/$(metric_sum "$work/vm-metrics.txt" vm_merges_total)"
  parts+="/$(metric_sum "$work/vm-metrics.txt" vm_active_merges)"
  if [ "$parts" != "$last_parts" ]; then last_parts=$parts; still_since=$SECONDS; fi
  active=$(metric_sum "$work/vm-metrics.txt" vm_active_merges)
  if [ "${active:-0}" = 0 ] && [ $((SECONDS - still_since)) -ge "$settle_s" ]; then break; fi
  sleep 2
done
if [ $SECONDS -ge $deadline ]; then log "victoria-metrics was still merging after ${compact_wait_s} s; figures are as they stand"; fi
vm_rows=$(metric_sum "$work/vm-metrics.txt" vm_rows 'type="storage/')
vm_rss_peak=$(peak_rss "$vm_pid")
stop "$vm_pid"
vm_pid=
# What it keeps of the samples: its data parts and its index (series, labels, per-day index).
vm_data_bytes=$(dir_bytes "$vm_dir/data")
vm_index_bytes=$(dir_bytes "$vm_dir/indexdb")
vm_dir_bytes=$(dir_bytes "$vm_dir")
if [ "$replay" = 1 ]; then
  # Measured above; restarted on the same data for the replay.
  echo "== victoria-metrics: the same samples again"
  start_victoria keep "$vm_dir"
  $bench remote-write --url "$vm_url/api/v1/write" --label victoria-metrics-replay --server-pid "$vm_pid" \
    --query-url "$vm_url/api/v1/query" "${common[@]}" | tee "$work/metrics-victoria-replay.json"
  stop "$vm_pid"
  vm_pid=
fi
if [ "$ha" = 1 ]; then
  echo "== victoria-metrics: an HA pair, one replica kept by dropping __replica__ and deduplicating"
  printf -- '- action: labeldrop\n  regex: __replica__\n' >"$work/vm-relabel.yml"
  start_victoria fresh "$vm_ha_dir" -relabelConfig="$work/vm-relabel.yml" -dedup.minScrapeInterval=15s
  $bench remote-write --url "$vm_url/api/v1/write" --label victoria-metrics-ha --server-pid "$vm_pid" \
    --query-url "$vm_url/api/v1/query" --ha-replicas 2 "${common[@]}" | tee "$work/metrics-victoria-ha.json"
  stop "$vm_pid"
  vm_pid=
fi
}

# ---------------------------------------------------------------------------------------------------
# The workload's series and Strata's limit on a tenant's active series: its default, or room for
# them all when they are more.
series_estimate=$((hosts * 984))
active_series_max=${STRATA_BENCH_ACTIVE_SERIES_MAX:-$(( series_estimate * 6 / 5 > 150000 ? series_estimate * 6 / 5 : 150000 ))}

# Starts Strata on data directory $2, fresh ($1 = fresh) or as it is ($1 = keep): strata_pid,
# strata_url.
start_strata_server() {
  [ "$1" = keep ] || rm -rf "$2"
  shift
  strata_port=$(free_port 7900)
  strata_url="http://127.0.0.1:$strata_port"
  # The server refuses STRATA_* variables that are not configuration keys, so it does not see this
  # script's own.
  local unset_own=()
  for name in $(compgen -e | grep '^STRATA_BENCH_' || true); do unset_own+=(-u "$name"); done
  # The per-tenant ingest rate (1,000,000 records/s by default) is raised: it protects a shared
  # server from one tenant, and here the one tenant is the benchmark, which must measure the server.
  env "${unset_own[@]}" STRATA_INGEST_RATE_RECORDS_PER_S=1e9 STRATA_INGEST_RATE_RECORDS_BURST=2e9 \
    STRATA_INGEST_METRICS_ACTIVE_SERIES_MAX="$active_series_max" \
    "$bin/strata" serve --no-auth --data-dir "$1" --http-addr "127.0.0.1:$strata_port" \
    2>"$work/strata.log" &
  strata_pid=$!
  ready_or_exit strata "$strata_pid" "$strata_url/readyz" "$work/strata.log"
}

run_strata() {
echo "== strata: remote write, then until its metric store has consumed every sample"
start_strata_server fresh "$strata_dir"
$bench remote-write --url "$strata_url/api/v1/write" --label strata --server-pid "$strata_pid" \
  --wait-url "$strata_url/metrics" --query-url "$strata_url/api/v1/query" "${common[@]}" \
  | tee "$work/metrics-strata.json"

# Strata's store checkpoints on an interval; it is done when the samples in its blocks have held
# still for settle_s.
log "waiting for strata to write its blocks (up to ${compact_wait_s} s)"
last_block_samples=
still_since=$SECONDS
deadline=$((SECONDS + compact_wait_s))
while [ $SECONDS -lt $deadline ]; do
  # The store checkpoints when its consumer commits, which it does when records arrive: one point
  # a poll, of a metric nothing reads, keeps it checkpointing once the benchmark's samples are in.
  curl -sf -X POST -H 'Content-Type: application/json' "$strata_url/ingest/v1/metrics" \
    -d '[{"name":"strata_bench_heartbeat","value":1,"source_id":"strata-bench"}]' >/dev/null || true
  curl -sf "$strata_url/metrics" >"$work/strata-metrics.txt" || true
  block_samples=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_block_samples)
  if [ "$block_samples" != "$last_block_samples" ]; then last_block_samples=$block_samples; still_since=$SECONDS; fi
  # Still for longer than the checkpoint interval (30 s): no block is left to write, also when none
  # is (a workload shorter than a block range and the out-of-order window).
  if [ $((SECONDS - still_since)) -ge "$settle_s" ]; then break; fi
  sleep 2
done
strata_block_samples=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_block_samples)
strata_block_bytes=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_block_bytes)
strata_blocks=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_blocks)
strata_rejected=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_samples_rejected_total)
strata_rss_peak=$(peak_rss "$strata_pid")
strata_series=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_series)
strata_head_bytes=$(metric_sum "$work/strata-metrics.txt" strata_tsdb_head_bytes)
stop "$strata_pid"
strata_pid=
strata_tsdb_bytes=$(dir_bytes "$strata_dir/tsdb")
strata_log_bytes=$(dir_bytes "$strata_dir/log")
strata_block_note=""
if [ -z "$strata_block_samples" ]; then
  strata_block_note=" (no strata_tsdb_block_* gauges on /metrics: du of tsdb/ over every sample acknowledged, which leaves out whatever the store holds only in memory and its log)"
  strata_block_bytes=$strata_tsdb_bytes
  strata_block_samples=$(json_num "$work/metrics-strata.json" samples_acknowledged)
fi
if [ "$replay" = 1 ]; then
  # Measured above; restarted on the same data for the replay.
  echo "== strata: the same samples again, until its store has consumed them"
  start_strata_server keep "$strata_dir"
  # Once its store has read again what its last checkpoint left in the log, so that none of that
  # is counted as the replay's.
  for _ in $(seq 600); do
    curl -sf "$strata_url/metrics" >"$work/strata-metrics.txt" || true
    lags=$(awk '/^strata_consumer_lag_records\{/ && /group="tsdb"/ {n++; if ($NF != 0) busy++} END {print n + 0, busy + 0}' "$work/strata-metrics.txt")
    [ "${lags% *}" -gt 0 ] && [ "${lags#* }" = 0 ] && break
    sleep 0.5
  done
  $bench remote-write --url "$strata_url/api/v1/write" --label strata-replay --server-pid "$strata_pid" \
    --wait-url "$strata_url/metrics" --query-url "$strata_url/api/v1/query" "${common[@]}" \
    | tee "$work/metrics-strata-replay.json"
  stop "$strata_pid"
  strata_pid=
fi
if [ "$ha" = 1 ]; then
  [ "${STRATA_BENCH_KEEP:-0}" = 1 ] || rm -rf "$strata_dir"
  echo "== strata: an HA pair, one replica kept by its HA tracker"
  start_strata_server fresh "$strata_ha_dir"
  $bench remote-write --url "$strata_url/api/v1/write" --label strata-ha --server-pid "$strata_pid" \
    --wait-url "$strata_url/metrics" --query-url "$strata_url/api/v1/query" --ha-replicas 2 "${common[@]}" \
    | tee "$work/metrics-strata-ha.json"
  stop "$strata_pid"
  strata_pid=
fi
}

for name in "${servers[@]}"; do "run_$name"; done

# ---------------------------------------------------------------------------------------------------
# A number from the object named $3 of JSON file $1 (or from the top level with no $3): "key":number.
jget() {
  [ -f "$1" ] || return 0
  if [ -n "${3:-}" ]; then
    grep -o "\"$3\":{[^}]*" "$1" | grep -o "\"$2\":[-0-9.eE+]*" | head -n 1 | cut -d: -f2 || true
  else
    grep -o "\"$2\":[-0-9.eE+]*" "$1" | head -n 1 | cut -d: -f2 || true
  fi
}
p_json="$work/metrics-prometheus.json"
v_json="$work/metrics-victoria.json"
s_json="$work/metrics-strata.json"
p_sent=$(jget "$p_json" samples_sent); v_sent=$(jget "$v_json" samples_sent); s_sent=$(jget "$s_json" samples_sent)
p_ack=$(jget "$p_json" samples_acknowledged); v_ack=$(jget "$v_json" samples_acknowledged)
s_ack=$(jget "$s_json" samples_acknowledged)
p_rate=$(jget "$p_json" acknowledged_samples_per_s); v_rate=$(jget "$v_json" acknowledged_samples_per_s)
s_rate=$(jget "$s_json" acknowledged_samples_per_s)
# Prometheus has a sample in its head, queryable, when it answers; VictoriaMetrics within about a
# second of answering (its in-memory buffers); Strata once its store consumed it.
s_e2e=$(jget "$s_json" samples_per_s caught_up)
s_caught=$( [ -f "$s_json" ] && grep -o '"caught_up":{"complete":[a-z]*' "$s_json" | cut -d: -f3 || true)
p_p99=$(jget "$p_json" p99 latency_ms); v_p99=$(jget "$v_json" p99 latency_ms); s_p99=$(jget "$s_json" p99 latency_ms)
p_bps=$(per "${prom_block_bytes:-}" "${prom_block_samples:-}")
s_bps=$(per "${strata_block_bytes:-}" "${strata_block_samples:-}")
v_bps=$(per "${vm_dir_bytes:-}" "${v_ack:-}")
p_total_bps=$(per "${prom_dir_bytes:-}" "$p_ack")
s_total_bps=$(per "${strata_tsdb_bytes:-}" "$s_ack")
any_json=$s_json; [ -f "$any_json" ] || any_json=$v_json; [ -f "$any_json" ] || any_json=$p_json

echo
echo "## Metrics beside Prometheus and VictoriaMetrics ($(date -u +%Y-%m-%d), $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB)"
echo
echo "Order: ${servers[*]}. Workload: $(jget "$any_json" hosts) hosts, $(jget "$any_json" series) series, $hours h every 15 s ending now:"
echo "$(jget "$any_json" samples_generated) samples in requests of 2,000 over $connections connections (seed $seed; a share of $jitter of the scrapes jittered by up to 4 ms)."
echo
echo "| figure | Prometheus 2.42 | VictoriaMetrics | Strata | Strata / Prometheus | Strata / VictoriaMetrics |"
echo "|---|---|---|---|---|---|"
echo "| samples acknowledged (of sent) | $(num "$p_ack") of $(num "$p_sent") | $(num "$v_ack") of $(num "$v_sent") | $(num "$s_ack") of $(num "$s_sent") | | |"
echo "| acknowledged samples/s | $(num "$p_rate") | $(num "$v_rate") | $(num "$s_rate") | $(ratio "$s_rate" "$p_rate") | $(ratio "$s_rate" "$v_rate") |"
echo "| queryable samples/s (Strata: until its store caught up, complete: ${s_caught:-n/a}) | $(num "$p_rate") | $(num "$v_rate") | $(num "$s_e2e") | $(ratio "$s_e2e" "$p_rate") | $(ratio "$s_e2e" "$v_rate") |"
echo "| request latency p99 | $(dec "$p_p99") ms | $(dec "$v_p99") ms | $(dec "$s_p99") ms | | |"
echo "| bytes/sample stored (Prometheus: blocks; VictoriaMetrics: data and index after its merge; Strata: blocks) | $p_bps (${prom_blocks:-n/a} blocks, $(num "${prom_block_samples:-}") samples) | $v_bps (data $(mib "${vm_data_bytes:-}"), index $(mib "${vm_index_bytes:-}")) | $s_bps (${strata_blocks:-n/a} blocks, $(num "${strata_block_samples:-}") samples)${strata_block_note:-} | $(ratio "$s_bps" "$p_bps") | $(ratio "$s_bps" "$v_bps") |"
echo "| whole store / samples acknowledged | $p_total_bps ($(mib "${prom_dir_bytes:-}"), of which WAL and head chunks $(mib "${prom_wal_bytes:-}")) | $v_bps ($(mib "${vm_dir_bytes:-}")) | $s_total_bps (tsdb/ $(mib "${strata_tsdb_bytes:-}")) | $(ratio "$s_total_bps" "$p_total_bps") | $(ratio "$s_total_bps" "$v_bps") |"
echo "| peak RSS when the last request was answered | $(mib "$(jget "$p_json" rss_peak_bytes server)") | $(mib "$(jget "$v_json" rss_peak_bytes server)") | $(mib "$(jget "$s_json" rss_peak_bytes server)") | $(ratio "$(jget "$s_json" rss_peak_bytes server)" "$(jget "$p_json" rss_peak_bytes server)") | $(ratio "$(jget "$s_json" rss_peak_bytes server)" "$(jget "$v_json" rss_peak_bytes server)") |"
echo "| peak RSS (VmHWM, ingest, compaction and the count of what is stored) | $(mib "${prom_rss_peak:-}") | $(mib "${vm_rss_peak:-}") | $(mib "${strata_rss_peak:-}") | $(ratio "${strata_rss_peak:-}" "${prom_rss_peak:-}") | $(ratio "${strata_rss_peak:-}" "${vm_rss_peak:-}") |"
echo
echo "Strata's log (its write-ahead storage, kept by retention): $(mib "${strata_log_bytes:-}"), $(per "${strata_log_bytes:-}" "$s_ack") bytes per sample."
echo "Prometheus head: $(num "${prom_appended:-}") samples appended, out of bounds $(num "${prom_out_of_bounds:-0}"), out of order $(num "${prom_out_of_order:-0}")."
echo "VictoriaMetrics: $(num "${vm_rows:-}") rows stored."
echo "Strata store: $(num "${strata_rejected:-0}") samples rejected."
echo "Series and samples stored, by PromQL at the end of the data (count({__name__=~\".+\"}) and sum(count_over_time(node_cpu_seconds_total[10m]))):"
echo "Prometheus $(num "$(jget "$p_json" series stored)") / $(num "$(jget "$p_json" cpu_samples_last_10m stored)"),"
echo "VictoriaMetrics $(num "$(jget "$v_json" series stored)") / $(num "$(jget "$v_json" cpu_samples_last_10m stored)"),"
echo "Strata $(num "$(jget "$s_json" series stored)") / $(num "$(jget "$s_json" cpu_samples_last_10m stored)")."
if [ "$replay" = 1 ] || [ "$ha" = 1 ]; then
  s_first_e2e=$s_e2e
  echo
  echo "The same workload again to the same server (replay), and sent by an HA pair to a fresh one (ha: both replicas' samples counted as sent):"
  echo
  echo "| pass | VictoriaMetrics acknowledged samples/s | Strata acknowledged samples/s | Strata queryable samples/s | Strata queryable / its first pass | Strata's store: appended, unchanged, rejected; dropped as a replica's | series stored (VictoriaMetrics / Strata) | node_cpu_seconds_total samples in the last 10 min (VictoriaMetrics / Strata) |"
  echo "|---|---|---|---|---|---|---|---|"
  for pass in first replay ha; do
    case $pass in
      first) vj=$v_json sj=$s_json ;;
      *) vj="$work/metrics-victoria-$pass.json" sj="$work/metrics-strata-$pass.json" ;;
    esac
    [ -f "$vj" ] || [ -f "$sj" ] || continue
    se2e=$(jget "$sj" samples_per_s caught_up)
    store="$(num "$(jget "$sj" tsdb_samples_appended caught_up)"), $(num "$(jget "$sj" tsdb_samples_unchanged caught_up)"), $(num "$(jget "$sj" tsdb_samples_rejected caught_up)"); $(num "$(jget "$sj" ha_dropped_samples caught_up)")"
    echo "| $pass | $(num "$(jget "$vj" acknowledged_samples_per_s)") | $(num "$(jget "$sj" acknowledged_samples_per_s)") | $(num "$se2e") | $(ratio "$se2e" "$s_first_e2e") | $store | $(num "$(jget "$vj" series stored)") / $(num "$(jget "$sj" series stored)") | $(num "$(jget "$vj" cpu_samples_last_10m stored)") / $(num "$(jget "$sj" cpu_samples_last_10m stored)") |"
  done
  echo
  echo "Target: Strata's queryable samples/s of the replay >= 0.8 of its first pass; series and samples stored by the replay and the HA pair equal the first pass's."
fi
if [ -n "${strata_series:-}" ]; then
  echo
  echo "Strata's metric store after the first pass: $(num "$strata_series") series, head $(mib "${strata_head_bytes:-}") ($(per "${strata_head_bytes:-}" "$strata_series") bytes per series); peak RSS per series: Strata $(per "${strata_rss_peak:-}" "$strata_series"), VictoriaMetrics $(per "${vm_rss_peak:-}" "$strata_series") bytes."
fi
echo "Targets: Strata >= 2x Prometheus and >= 500,000 samples/s; bytes/sample <= 0.5x Prometheus; acknowledged and queryable samples/s >= VictoriaMetrics' acknowledged; bytes/sample in blocks <= VictoriaMetrics' data and index."
