#!/usr/bin/env bash
# The benchmark harness, one command, from the repo root or anywhere:
#
#   bash bench/run.sh           full run (scale sweeps included; 20-45 minutes after the builds,
#                               most of it the Azurite drains at 10,000 queued)
#   bash bench/run.sh --smoke   a short pass of every part (seconds each)
#   bash bench/run.sh --smoke --handler PATH
#                               the short pass on a static handler built elsewhere (CI's quick
#                               build, scripts/build-static.sh --quick); the full run refuses it
#   bash bench/run.sh --drain N the backlog drain rows alone at N queued (the bare client's and
#                               the handler's, each on a fresh Azurite; release builds): the
#                               10,000-deep comparison in about 12 minutes instead of the full run
#
# Builds the release handler and the bench package (bench/, its own Cargo workspace, sharing
# the root target/, or $CARGO_TARGET_DIR when set), installs what it needs (Azurite 3.35.0 into
# .tools/, wrk or oha), starts everything on free 127.0.0.1 ports, measures, prints ONE markdown
# table (and the sweeps), draws the sweep charts, and stops every process it started. A slow figure never fails the run; a broken measurement does (exit 1).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

mode=full
handler_arg=""
drain_n=""
usage() { echo "usage: bench/run.sh [--smoke [--handler PATH] | --drain N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --full) mode=full ;;
    --handler) [ $# -ge 2 ] || usage; handler_arg=$2; shift ;;
    --handler=*) handler_arg=${1#--handler=} ;;
    --drain) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || usage; mode=drain; drain_n=$2; shift ;;
    *) usage ;;
  esac
  shift
done
if [ -n "$handler_arg" ]; then
  # The full run's figures are the shipped build's: it builds and sizes its own.
  [ "$mode" = smoke ] || { echo "bench: --handler is for --smoke only; the full run builds its own release handler" >&2; exit 2; }
  [ -x "$handler_arg" ] || { echo "bench: no executable handler at $handler_arg" >&2; exit 2; }
  handler_arg="$(cd "$(dirname "$handler_arg")" && pwd)/$(basename "$handler_arg")"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/arr-bench.XXXXXX")"
rows="$work/rows.md"
sweeps="$work/sweeps.md"
: >"$rows"
: >"$sweeps"
errors=0
pids=()

cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 20); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # BENCH_KEEP_WORK=1 keeps the logs (each process's, the counting proxy's call by call).
  if [ -n "${BENCH_KEEP_WORK:-}" ]; then echo "bench: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '==> [%ss] %s\n' "$SECONDS" "$*" >&2; }

if [ "$mode" = smoke ]; then
  dur=2; runs=5; lat_n=50; drain_mem=200; drain_az=50; az_n=100; stream_mib=8; rss_dur=2
else
  dur=8; runs=20; lat_n=500; drain_mem=2000; drain_az=1000; az_n=1000; stream_mib=100; rss_dur=5
fi
# The main table's Azurite backlog depth: 1,000 by default (BENCH_AZURE_BACKLOG). The full run's
# depth sweep goes on to 10,000 (BENCH_AZURE_DEPTHS), each drain given BENCH_DRAIN_TIMEOUT_S.
drain_az=${BENCH_AZURE_BACKLOG:-$drain_az}
[ "$mode" = drain ] && drain_az=$drain_n
if [ "$mode" = smoke ]; then
  # No depth sweep unless BENCH_AZURE_DEPTHS asks for one (at those depths, memory and Azurite).
  az_depths=${BENCH_AZURE_DEPTHS:-}; mem_depths=$az_depths; inst_n=60; tx_n=20
else
  az_depths=${BENCH_AZURE_DEPTHS:-1 10 100 1000 10000}; mem_depths="1 10 100 1000 10000"
  inst_n=1000; tx_n=100
fi
drain_timeout=${BENCH_DRAIN_TIMEOUT_S:-1800}
# The handler's worker concurrency in every drain, and the bare drain's handlers: the same.
worker_conc=16
# The charts: next to BENCHMARKS.md in a full run; in the smoke pass, its temp dir (CI's tree
# stays clean, the drawing is still exercised).
if [ "$mode" = full ]; then chart_dir="$repo"; else chart_dir="$work"; fi
depth_data="$work/depth.tsv"
inst_data="$work/instances.tsv"
: >"$depth_data"
: >"$inst_data"

# ---------------------------------------------------------------------------------- build
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
if [ "$mode" = smoke ] && { [ -n "$handler_arg" ] || [ -x "$repo/handler" ]; }; then
  # The smoke pass proves the harness works, not the figures: it reuses a static handler
  # already built (the one the test command names, else ./handler) and builds the bench
  # package without optimisation, so CI does not pay for two more release builds. Its ratios
  # and sizes mean nothing.
  handler="${handler_arg:-$repo/handler}"
  log "building (dev): the bench package; handler: $handler (static)"
  CARGO_TARGET_DIR="$target_dir" cargo build --locked --manifest-path bench/Cargo.toml >&2
  bench="$target_dir/debug/bench"
  baseline_bin="$target_dir/debug/baseline"
else
  log "building (release): handler, then the bench package"
  CARGO_TARGET_DIR="$target_dir" cargo build --locked --release --bin handler >&2
  CARGO_TARGET_DIR="$target_dir" cargo build --locked --release --manifest-path bench/Cargo.toml >&2
  handler="$target_dir/release/handler"
  bench="$target_dir/release/bench"
  baseline_bin="$target_dir/release/baseline"
fi

# ---------------------------------------------------------------------------------- tools
log "tools: Azurite and a load generator"
bash scripts/install-azurite.sh >&2
azurite_bin="$repo/.tools/node_modules/.bin/azurite"
export PATH="$repo/.tools/bin:$PATH"
loadgen=""
if command -v wrk >/dev/null; then
  loadgen=wrk
elif command -v oha >/dev/null; then
  loadgen=oha
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get install -y -qq wrk >&2; then
  loadgen=wrk
else
  cargo install oha --locked --root "$repo/.tools" >&2
  loadgen=oha
fi
log "load generator: $loadgen"

# ---------------------------------------------------------------------------------- helpers
port() { "$bench" port; }

wait_ready() { # port pid name
  local i
  for i in $(seq 1 600); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then echo "bench: $3 exited at start-up" >&2; return 1; fi
    sleep 0.05
  done
  echo "bench: $3 did not answer GET / in 30 s" >&2
  return 1
}

# start_handler VAR [ENV=VALUE...]: starts the release handler on a free port; sets
# VAR_port and VAR_pid. On Azurite each instance gets its own queue and containers, so no
# instance inherits another's backlog.
start_handler() {
  local var=$1; shift
  local p; p=$(port)
  env PORT="$p" RUST_LOG=warn SHUTDOWN_GRACE_SECONDS=0 WORK_QUEUE_NAME="q-$var" \
    RESULT_CONTAINER="data-$var" RECORDS_CONTAINER="ops-$var" "$@" "$handler" >"$work/$var.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_ready "$p" "$pid" "handler ($var)" || { cat "$work/$var.log" >&2; return 1; }
  printf -v "${var}_port" '%s' "$p"
  printf -v "${var}_pid" '%s' "$pid"
}

stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

start_baseline() {
  local p; p=$(port)
  PORT="$p" "$baseline_bin" >/dev/null 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_ready "$p" "$pid" baseline
  baseline_port=$p
  baseline_pid=$pid
}

start_azurite() {
  az_blob=$(port); az_queue=$(port); az_table=$(port)
  mkdir -p "$work/azurite"
  (cd "$work/azurite" && exec "$azurite_bin" --silent --inMemoryPersistence --disableTelemetry \
    --skipApiVersionCheck --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 \
    --blobPort "$az_blob" --queuePort "$az_queue" --tablePort "$az_table") >"$work/azurite.log" 2>&1 &
  azurite_pid=$!
  pids+=("$azurite_pid")
  local i
  for i in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$az_blob") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$az_queue") 2>/dev/null; then
      az_conn="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$az_blob/devstoreaccount1;QueueEndpoint=http://127.0.0.1:$az_queue/devstoreaccount1"
      az_blob_url="http://127.0.0.1:$az_blob/devstoreaccount1"
      az_queue_url="http://127.0.0.1:$az_queue/devstoreaccount1"
      return 0
    fi
    kill -0 "$azurite_pid" 2>/dev/null || { cat "$work/azurite.log" >&2; return 1; }
    sleep 0.05
  done
  echo "bench: Azurite did not listen in 30 s" >&2
  return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sample_peak PID PEAKFILE CMD...: runs CMD while sampling PID's RSS every 50 ms; writes the
# peak (KiB) to PEAKFILE and returns CMD's status.
sample_peak() {
  local pid=$1 peakfile=$2 cp peak=0 r status=0
  shift 2
  "$@" &
  cp=$!
  while kill -0 "$cp" 2>/dev/null; do
    r=$(rss_kib "$pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    sleep 0.05
  done
  wait "$cp" || status=$?
  echo "$peak" >"$peakfile"
  return "$status"
}

# submit_one PORT -> prints the status URL
submit_one() {
  curl -fsS -D - -o /dev/null -X POST "http://127.0.0.1:$1/api/AsyncProcessingWorkAcceptor" \
    -H 'Content-Type: application/json' -d '{"id":"1","customername":"Contoso"}' |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p'
}

# load URL CONNS DURATION [post]: runs the load generator; prints "rps p50_ms p99_ms bad".
load() {
  local url=$1 c=$2 d=$3 post=${4:-} out t
  t=2; [ "$c" -lt 2 ] && t=1
  if [ "$loadgen" = wrk ]; then
    if [ -n "$post" ]; then
      out=$(wrk -t"$t" -c"$c" -d"${d}s" --latency -s "$repo/bench/post.lua" "$url" 2>&1) || true
    else
      out=$(wrk -t"$t" -c"$c" -d"${d}s" --latency "$url" 2>&1) || true
    fi
    echo "$out" >>"$work/loadgen.log"
    echo "$out" | awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      /Requests\/sec:/ { rps = $2 }
      /^ +50%/ { p50 = ms($2) }
      /^ +99%/ { p99 = ms($2) }
      /Non-2xx or 3xx responses:/ { bad += $NF }
      /Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) bad += $i + 0 }
      END { printf "%s %.3f %.3f %d\n", (rps == "" ? 0 : rps), p50, p99, bad }'
  else
    local json
    if [ -n "$post" ]; then
      json=$(oha --no-tui --output-format json -c "$c" -z "${d}s" -m POST -H 'Content-Type: application/json' \
        -d '{"id":"1","customername":"Contoso"}' --redirect 0 "$url" 2>/dev/null) || true
    else
      json=$(oha --no-tui --output-format json -c "$c" -z "${d}s" --redirect 0 "$url" 2>/dev/null) || true
    fi
    echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if not (200 <= int(k) < 400)) + sum(d.get("errorDistribution", {}).values())
p = d.get("latencyPercentiles", {})
print("%s %.3f %.3f %d" % (d["summary"]["requestsPerSec"], (p.get("p50") or 0) * 1000, (p.get("p99") or 0) * 1000, bad))'
  fi
}

# get RESULTS_FILE NAME -> value of "RESULT NAME value"
get() { awk -v k="$2" '$1 == "RESULT" && $2 == k {print $3}' "$1"; }

# run_bench OUT ARGS...: runs the driver; an error marks the harness broken.
run_bench() {
  local out=$1; shift
  if ! "$bench" "$@" >"$out" 2>"$out.err"; then
    echo "bench: driver failed: bench $*" >&2
    cat "$out.err" >&2
    errors=$((errors + 1))
    return 1
  fi
}

fmt() { awk -v v="$1" 'BEGIN { if (v == "" ) print "n/a"; else if (v+0 >= 100) printf "%.0f", v; else if (v+0 >= 10) printf "%.1f", v; else printf "%.2f", v }'; }

# row MEASURE FIGURE UNIT BASELINE BASELINE_LABEL TARGET_KIND TARGET_VALUE [NOTE]
#   TARGET_KIND: ge_ratio (figure/baseline >= v) | le_ratio | le_plus (figure - baseline <= v)
#                | le (figure <= v) | ge | none
# The targets are issue 7's.
row() {
  local measure=$1 fig=$2 unit=$3 base=$4 blabel=$5 kind=$6 tv=$7 note=${8:-}
  local ratio="-" met="-" target="-" figs bases
  if [ -z "$fig" ] || [ "$fig" = n/a ]; then
    figs="n/a${note:+ ($note)}"
  else
    figs="$(fmt "$fig") $unit"
  fi
  if [ -n "$base" ] && [ "$base" != n/a ]; then
    bases="$(fmt "$base") $unit ($blabel)"
    if [ -n "$fig" ] && [ "$fig" != n/a ] && awk -v b="$base" 'BEGIN { exit !(b+0 > 0) }'; then
      ratio=$(awk -v f="$fig" -v b="$base" 'BEGIN { printf "%.2fx", f / b }')
    fi
  else
    bases="${blabel:--}"
  fi
  local ok=""
  case "$kind" in
    ge_ratio) target="≥ ${tv}x baseline"
      [ "$ratio" != "-" ] && ok=$(awk -v f="$fig" -v b="$base" -v t="$tv" 'BEGIN { print (f / b >= t) ? "yes" : "NO" }') ;;
    le_ratio) target="≤ ${tv}x baseline"
      [ "$ratio" != "-" ] && ok=$(awk -v f="$fig" -v b="$base" -v t="$tv" 'BEGIN { print (f / b <= t) ? "yes" : "NO" }') ;;
    le) target="≤ $tv $unit"
      [ -n "$fig" ] && [ "$fig" != n/a ] && ok=$(awk -v f="$fig" -v t="$tv" 'BEGIN { print (f <= t) ? "yes" : "NO" }') ;;
    le_plus) target="≤ baseline + $tv $unit"
      [ "$ratio" != "-" ] && ok=$(awk -v f="$fig" -v b="$base" -v t="$tv" 'BEGIN { print (f - b <= t) ? "yes" : "NO" }') ;;
    ge) target="≥ $tv $unit"
      [ -n "$fig" ] && [ "$fig" != n/a ] && ok=$(awk -v f="$fig" -v t="$tv" 'BEGIN { print (f >= t) ? "yes" : "NO" }') ;;
    none) target="-" ;;
  esac
  if [ "$kind" != none ]; then
    if [ -n "$ok" ]; then met=$ok; else met="skipped"; fi
  fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$measure" "$figs" "$bases" "$ratio" "$target" "$met" >>"$rows"
  printf '    %-58s %s\n' "$measure" "$figs" >&2
}

# Azurite
# Every comparison on Azurite gets a fresh, warmed Azurite, and its bare baseline runs on that
# same instance just before the handler. Azurite is one Node.js thread whose in-memory store
# slows down as it fills, and what one row deletes is garbage-collected in the background
# while the next runs: an earlier harness that shared one Azurite measured the later rows on a
# busy emulator (storage calls timing out after 10 s).
azurite_pid=""
fresh_azurite() {
  # The smoke pass proves the harness, not the figures: one Azurite, started and warmed once,
  # serves every part (each part uses its own queue and container names). A full run gives
  # each part a fresh one.
  if [ "$mode" = smoke ] && [ -n "$azurite_pid" ]; then return 0; fi
  if [ -n "$azurite_pid" ]; then stop_pid "$azurite_pid"; fi
  start_azurite
  # Azurite is Node: warm its JIT first so the bare baselines are not measured cold.
  run_bench "$work/az_warm" azure --what roundtrip --blob "$az_blob_url" --queue "$az_queue_url" --n 300 --conc 16
  run_bench "$work/az_warmq" azure --what drain --queue "$az_queue_url" --n 300 --conc 4
  # A longer storage timeout than the default 3 s: a saturated Azurite can fall seconds behind.
  azure_env=(AzureWebJobsStorage="$az_conn" QUEUE_MAX_POLL_MS=1000 STORAGE_TIMEOUT_MS=10000)
}
az_conc=32

# The backlog drains, the counted storage calls, the instance sweep and the charts.
# shellcheck source=bench/scale.sh
source "$repo/bench/scale.sh"

# report: prints the table (and the sweeps); fails the run if a measurement could not run.
report() {
  bad=$((${h_post_bad:-0} + ${h_pend_bad:-0} + ${h_done_bad:-0} + ${a_post_bad:-0} + ${a_pend_bad:-0} + ${a_done_bad:-0}))
  echo
  echo "## Benchmarks ($mode run, $(nproc) cores, load generator: $loadgen, ${dur}s per throughput row)"
  echo
  echo "| measure | figure | baseline | ratio | target | met? |"
  echo "|---|---|---|---|---|---|"
  cat "$rows"
  if [ -s "$sweeps" ]; then
    echo
    cat "$sweeps"
  fi
  echo
  echo "Non-2xx/3xx answers or socket errors during handler load: $bad"
  if [ "$errors" -gt 0 ]; then
    echo "bench: $errors measurement(s) could not run (see above): the harness is broken" >&2
    exit 1
  fi
}

mem_env=(PROCESSING_DELAY_MS=0)
parked_env=(PROCESSING_DELAY_MS=3600000 WORKER_CONCURRENCY=1)

# --drain N: the backlog drain rows alone, then the report.
if [ "$mode" = drain ]; then
  log "Azurite: the backlog drains alone ($drain_az queued)"
  drain_rows
  report
  exit 0
fi

# ================================================================== in memory vs baseline
log "baseline server and in-memory handler"
start_baseline
b_url="http://127.0.0.1:$baseline_port"
b_idle=$(rss_kib "$baseline_pid")

# The worker is parked (one message held for an hour) so submissions and pending statuses
# measure the HTTP path and the store, not the in-process worker competing for the 2 cores.
start_handler hp "${parked_env[@]}"
hp_idle=$(rss_kib "$hp_pid")
h_url="http://127.0.0.1:$hp_port"

read -r b_post_rps _ _ b_post_bad < <(load "$b_url/api/AsyncProcessingWorkAcceptor" 64 "$dur" post)
read -r h_post_rps _ _ h_post_bad < <(load "$h_url/api/AsyncProcessingWorkAcceptor" 64 "$dur" post)
row "submit throughput, in memory (POST, 64 conns)" "$h_post_rps" "req/s" "$b_post_rps" "minimal warp" ge_ratio 0.5

pending=$(submit_one "$hp_port")
pending_path="${pending#http://127.0.0.1:$hp_port}"
read -r b_get_rps _ _ _ < <(load "$b_url/api/RequestStatus/x" 64 "$dur")
read -r h_pend_rps _ _ h_pend_bad < <(load "$h_url$pending_path" 64 "$dur")
row "status throughput, pending 202, in memory (64 conns)" "$h_pend_rps" "req/s" "$b_get_rps" "minimal warp" ge_ratio 0.5

# RSS under 256 concurrent connections (status polls, the common case).
peak_under_load() { # pid url -> peak KiB while $rss_dur s of 256-connection load run
  local pid=$1 url=$2 peak=0 r lp
  load "$url" 256 "$rss_dur" >"$work/rssload.out" &
  lp=$!
  while kill -0 "$lp" 2>/dev/null; do
    r=$(rss_kib "$pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    sleep 0.05
  done
  wait "$lp" || true
  echo "$peak"
}
stop_pid "$hp_pid"
# On a fresh handler, so the operations stored by the submit row above do not count.
start_handler hr "${parked_env[@]}"
hr_pending=$(submit_one "$hr_port")
b_256=$(peak_under_load "$baseline_pid" "$b_url/api/RequestStatus/x")
h_256=$(peak_under_load "$hr_pid" "$hr_pending")
stop_pid "$hr_pid"

start_handler hm "${mem_env[@]}"
h_url="http://127.0.0.1:$hm_port"
hm_idle=$(rss_kib "$hm_pid")
done_url=$(submit_one "$hm_port")
curl -s -o /dev/null "$done_url?OnPending=Synchronous"
done_path="${done_url#http://127.0.0.1:$hm_port}"
read -r h_done_rps _ _ h_done_bad < <(load "$h_url$done_path" 64 "$dur")
row "status throughput, completed 302, in memory (64 conns)" "$h_done_rps" "req/s" "$b_get_rps" "minimal warp" ge_ratio 0.5

row "idle RSS (in memory, after start)" "$(awk -v k="$hm_idle" 'BEGIN{print k/1024}')" MiB \
  "$(awk -v k="$b_idle" 'BEGIN{print k/1024}')" "minimal warp" le 15
row "peak RSS under 256 concurrent connections" "$(awk -v k="$h_256" 'BEGIN{print k/1024}')" MiB \
  "$(awk -v k="$b_256" 'BEGIN{print k/1024}')" "minimal warp" le 64

if run_bench "$work/lat_b" latency --url "$b_url" --n "$lat_n" --conc 1 --baseline &&
   run_bench "$work/lat_m" latency --url "$h_url" --n "$lat_n" --conc 1; then
  row "submit-to-result latency p50, in memory (1 client)" "$(get "$work/lat_m" latency_p50_ms)" ms \
    "$(get "$work/lat_b" latency_p50_ms)" "POST+GET, minimal warp" le 2
  row "submit-to-result latency p99, in memory (1 client)" "$(get "$work/lat_m" latency_p99_ms)" ms \
    "$(get "$work/lat_b" latency_p99_ms)" "POST+GET, minimal warp" none ""
fi

if run_bench "$work/drain_m" drain --url "$h_url" --n "$drain_mem" --conc 32; then
  row "backlog drain, in memory ($drain_mem submitted at once)" "$(get "$work/drain_m" drain_rate_per_s)" "ops/s" \
    "" "no storage baseline in memory" none ""
fi
stop_pid "$hm_pid"

# Streaming a large result (OnComplete=Stream): a result is the submitted record, so the
# record is made that big (MAX_BODY_BYTES raised to 128 MiB for it).
start_handler hs "${mem_env[@]}" MAX_BODY_BYTES=134217728
if run_bench "$work/stream_m" stream --url "http://127.0.0.1:$hs_port" --pid "$hs_pid" --size $((stream_mib * 1048576)); then
  row "RSS growth streaming a ${stream_mib} MiB result, in memory" \
    "$(awk -v k="$(get "$work/stream_m" stream_rss_growth_kib)" 'BEGIN{print k/1024}')" MiB "" "" le 16
fi
stop_pid "$hs_pid"

# ================================================================== cold start and size
log "cold start"
if run_bench "$work/cold" coldstart --bin "$handler" --runs "$runs"; then
  row "cold start, in memory (spawn to first 200 on GET /, median of $runs)" "$(get "$work/cold" coldstart_median_ms)" ms \
    "$(get "$work/cold" true_median_ms)" "spawn+exit of true" le_plus 20
fi

log "binary and package size"
if [ "$mode" = full ] && [ ! -x ./handler ]; then
  bash scripts/build-static.sh >&2 || log "static build failed; sizing the release binary instead"
fi
static_bin=./handler
static_name="./handler (static musl, stripped)"
zip_name="publish zip size (scripts/package.py, what func publish uploads)"
size_kind=le
if [ -n "$handler_arg" ]; then
  # Sized and packaged to prove the steps work; the build is not the shipped one, so its sizes
  # are held to no target.
  static_bin=$handler_arg
  static_name="$handler_arg (a quick static build: not the shipped size)"
  zip_name="zip size of a package around it (scripts/package.py --handler: not what ships)"
  size_kind=none
fi
if [ -x "$static_bin" ]; then
  row "binary size, $static_name" "$(awk -v b="$(stat -c %s "$static_bin")" 'BEGIN{print b/1048576}')" MiB "" "" "$size_kind" 8
else
  row "binary size, target/release/handler (./handler absent: run scripts/build-static.sh)" \
    "$(awk -v b="$(stat -c %s "$handler")" 'BEGIN{print b/1048576}')" MiB "" "" le 8
fi
if [ -x "$static_bin" ] && python3 scripts/package.py --handler "$static_bin" "$work/app.zip" >/dev/null; then
  row "$zip_name" "$(awk -v b="$(stat -c %s "$work/app.zip")" 'BEGIN{print b/1048576}')" MiB "" "" "$size_kind" 4
else
  row "publish zip size" "n/a" MiB "" "" le 4 "skipped: no static ./handler to package"
fi

# ================================================================== Azurite
log "Azurite"

# --- submit
fresh_azurite
log "cold start on Azurite"
if run_bench "$work/cold_az" coldstart --bin "$handler" --runs "$runs" --env "AzureWebJobsStorage=$az_conn"; then
  row "cold start, on Azurite (creates containers/queues; median of $runs)" "$(get "$work/cold_az" coldstart_median_ms)" ms \
    "$(get "$work/cold" coldstart_median_ms)" "in-memory cold start" none ""
fi
log "submit on Azurite"
run_bench "$work/az_sub" azure --what submit --blob "$az_blob_url" --queue "$az_queue_url" --secs "$dur" --conc "$az_conc" || true
start_handler ap "${parked_env[@]}" "${azure_env[@]}"
read -r a_post_rps _ _ a_post_bad < <(load "http://127.0.0.1:$ap_port/api/AsyncProcessingWorkAcceptor" "$az_conc" "$dur" post)
row "submit throughput, Azurite ($az_conc conns)" "$a_post_rps" "req/s" "$(get "$work/az_sub" bare_submit_rate_per_s)" "bare put blob+put message" ge_ratio 0.8
stop_pid "$ap_pid"

# --- pending status
fresh_azurite
log "pending status on Azurite"
run_bench "$work/az_get" azure --what get --blob "$az_blob_url" --queue "$az_queue_url" --secs "$dur" --conc "$az_conc" || true
start_handler apn "${parked_env[@]}" "${azure_env[@]}"
a_pending=$(submit_one "$apn_port")
read -r a_pend_rps _ _ a_pend_bad < <(load "http://127.0.0.1:$apn_port${a_pending#http://127.0.0.1:$apn_port}" "$az_conc" "$dur")
row "status throughput, pending 202, Azurite ($az_conc conns)" "$a_pend_rps" "req/s" "$(get "$work/az_get" blob_get_rate_per_s)" "bare get blob" ge_ratio 0.8
stop_pid "$apn_pid"

# --- completed status
fresh_azurite
log "completed status on Azurite"
run_bench "$work/az_get2" azure --what get --blob "$az_blob_url" --queue "$az_queue_url" --secs "$dur" --conc "$az_conc" || true
start_handler am "${azure_env[@]}"
a_done=$(submit_one "$am_port")
curl -s -o /dev/null "$a_done?OnPending=Synchronous"
read -r a_done_rps _ _ a_done_bad < <(load "http://127.0.0.1:$am_port${a_done#http://127.0.0.1:$am_port}" "$az_conc" "$dur")
row "status throughput, completed 302, Azurite ($az_conc conns)" "$a_done_rps" "req/s" "$(get "$work/az_get2" blob_get_rate_per_s)" "bare get blob" ge_ratio 0.8
stop_pid "$am_pid"

# --- latency
fresh_azurite
log "latency on Azurite"
run_bench "$work/az_rt1" azure --what roundtrip --blob "$az_blob_url" --queue "$az_queue_url" --secs "$dur" --conc 1 || true
row "Azurite bare: blob put+get round trip p50 (1 client)" "$(get "$work/az_rt1" blob_roundtrip_p50_ms)" ms "" "azure_storage_blobs 0.21" none ""
start_handler al "${azure_env[@]}"
if run_bench "$work/lat_a" latency --url "http://127.0.0.1:$al_port" --n "$((lat_n / 5))" --conc 1; then
  row "submit-to-result latency p50, Azurite (1 client)" "$(get "$work/lat_a" latency_p50_ms)" ms \
    "$(get "$work/az_rt1" blob_roundtrip_p50_ms)" "bare blob put+get p50, 1 client" le_ratio 3
  row "submit-to-result latency p99, Azurite (1 client)" "$(get "$work/lat_a" latency_p99_ms)" ms \
    "$(get "$work/az_rt1" blob_roundtrip_p99_ms)" "bare blob put+get p99, 1 client" none ""
fi
stop_pid "$al_pid"

# --- backlog drain (bare and handler, each on a fresh Azurite) and the counted storage calls
drain_rows
tx_rows

# --- streaming
fresh_azurite
log "streaming on Azurite"
start_handler as "${mem_env[@]}" "${azure_env[@]}" MAX_BODY_BYTES=134217728
if run_bench "$work/stream_a" stream --url "http://127.0.0.1:$as_port" --pid "$as_pid" --size $((stream_mib * 1048576)); then
  row "RSS growth streaming a ${stream_mib} MiB result, Azurite" \
    "$(awk -v k="$(get "$work/stream_a" stream_rss_growth_kib)" 'BEGIN{print k/1024}')" MiB "" "" le 16
fi
stop_pid "$as_pid"

# ================================================================== sweeps (full only; depths on request)
if [ "$mode" = full ]; then
  log "sweep: concurrency 1..256, pending status in memory vs baseline"
  start_handler sw "${parked_env[@]}"
  sw_pending=$(submit_one "$sw_port")
  sw_path="${sw_pending#http://127.0.0.1:$sw_port}"
  {
    echo
    echo "Concurrency sweep: GET status (pending 202), in memory, ${dur}s each, $loadgen; peak RSS sampled every 50 ms"
    echo
    echo "| connections | handler req/s | handler p50 ms | handler p99 ms | handler peak RSS MiB | baseline req/s | baseline p99 ms | ratio |"
    echo "|---|---|---|---|---|---|---|---|"
  } >>"$sweeps"
  for c in 1 4 16 64 256; do
    sample_peak "$sw_pid" "$work/sw.peak" load "http://127.0.0.1:$sw_port$sw_path" "$c" "$dur" >"$work/sw.out" || true
    read -r hr hp50 hp99 _ <"$work/sw.out"
    read -r br _ bp99 _ < <(load "$b_url/api/RequestStatus/x" "$c" "$dur")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$(fmt "$hr")" "$hp50" "$hp99" \
      "$(awk -v k="$(cat "$work/sw.peak")" 'BEGIN { printf "%.1f", k / 1024 }')" "$(fmt "$br")" "$bp99" \
      "$(awk -v a="$hr" -v b="$br" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')" >>"$sweeps"
    log "  c=$c handler $hr req/s, baseline $br req/s"
  done
  stop_pid "$sw_pid"

fi
if [ "$mode" = full ] || [ -n "$az_depths" ]; then
  depth_sweep
else
  # The smoke pass draws its charts from the main table's drains (one depth each).
  [ -n "${a_drain:-}" ] && printf 'handler, Azurite\t%s\t%s\n' "$drain_az" "$a_drain" >>"$depth_data"
  printf 'bare client, Azurite\t%s\t%s\n' "$drain_az" "$(get "$work/az_q" work_drain_rate_per_s)" >>"$depth_data"
  printf 'handler, in memory\t%s\t%s\n' "$drain_mem" "$(get "$work/drain_m" drain_rate_per_s)" >>"$depth_data"
fi

# ================================================================== instances sharing one queue
log "instances 1..3 sharing one queue on Azurite ($inst_n queued)"
instance_sweep

# ================================================================== charts
log "charts"
draw_charts || { echo "bench: drawing the charts failed" >&2; errors=$((errors + 1)); }

# ================================================================== report
report
