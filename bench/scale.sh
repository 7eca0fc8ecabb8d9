# The scale-out parts of bench/run.sh (sourced by it, never run alone): backlog drains on
# Azurite (the handler's and the bare client's), storage calls counted through the counting
# proxy, N instances sharing one queue, and the sweep charts. Uses run.sh's helpers and state.

# queue_backlog N NAME: queues N operations through a handler in host mode (under the Functions
# host the handler never polls the queue, so they stay queued) on queue q-NAME and containers
# data-NAME / ops-NAME, writes their status URLs to $work/NAME.paths and stops it.
# Extra ENV=VALUE arguments go to the handler (a different AzureWebJobsStorage, say).
queue_backlog() {
  local n=$1 name=$2 p hp
  shift 2
  p=$(port)
  env FUNCTIONS_CUSTOMHANDLER_PORT="$p" RUST_LOG=warn WORK_QUEUE_NAME="q-$name" \
    RESULT_CONTAINER="data-$name" RECORDS_CONTAINER="ops-$name" "${azure_env[@]}" "$@" "$handler" \
    >"$work/$name-host.log" 2>&1 &
  hp=$!
  pids+=("$hp")
  wait_ready "$p" "$hp" "handler ($name, host mode)" || return 1
  run_bench "$work/$name.sub" submit --url "http://127.0.0.1:$p" --n "$n" --conc "$az_conc" \
    --out "$work/$name.paths" || { stop_pid "$hp"; return 1; }
  host_port=$p
  host_pid=$hp
  [ -n "${keep_host:-}" ] || stop_pid "$hp"
}

# backlog_drain N NAME: queue_backlog, then times a standalone handler (WORKER_CONCURRENCY
# $worker_conc) from its spawn until the queue is empty, and checks every operation Succeeded.
# Sets drain_rate (operations/s); the draining handler's peak RSS (KiB) is left in
# $work/NAME.peak. A drain longer than $drain_timeout s fails, saying so.
backlog_drain() {
  local n=$1 name=$2 t0 empty_at port_var pid_var
  queue_backlog "$n" "$name" || return 1
  t0=$(date +%s%3N)
  start_handler "$name" "${azure_env[@]}" WORKER_CONCURRENCY="$worker_conc" || return 1
  port_var="${name}_port"
  pid_var="${name}_pid"
  if ! sample_peak "${!pid_var}" "$work/$name.peak" "$bench" backlog --url "http://127.0.0.1:${!port_var}" \
    --queue "$az_queue_url" --name "q-$name" --paths "$work/$name.paths" --azurite-pid "$azurite_pid" \
    --timeout-s "$drain_timeout" >"$work/$name.drain" 2>"$work/$name.drain.err"; then
    echo "bench: the handler's drain of $n queued messages ($name) failed:" >&2
    cat "$work/$name.drain.err" >&2
    stop_pid "${!pid_var}"
    return 1
  fi
  empty_at=$(get "$work/$name.drain" backlog_empty_at_unix_ms)
  stop_pid "${!pid_var}"
  drain_rate=$(awk -v n="$n" -v a="$t0" -v b="$empty_at" 'BEGIN { printf "%.1f", n / ((b - a) / 1000) }')
}

# bare_drain N OUT: the bare client's drain baseline of N messages on the current Azurite
# (receive up to 32 for the free handlers, put a result blob, delete; $worker_conc handlers).
bare_drain() {
  run_bench "$2" azure --what workdrain --blob "$az_blob_url" --queue "$az_queue_url" --n "$1" \
    --conc "$worker_conc" --azurite-pid "$azurite_pid" --timeout-s "$drain_timeout" ||
    { echo "bench: the bare drain of $1 queued messages failed or took over $drain_timeout s" >&2; return 1; }
}

# drain_rows: the main table's backlog drain at $drain_az, the bare client's and the handler's.
drain_rows() {
  # --- backlog drain: the bare client and the handler each on their own fresh Azurite (a deep
  # queue leaves Azurite busy for a while after it is drained). The bare client does the seed's
  # minimum per message (receive(32), put result, delete) on as many handlers as the worker has.
  fresh_azurite
  log "backlog drain on Azurite ($drain_az queued)"
  if bare_drain "$drain_az" "$work/az_q"; then
    row "Azurite bare: receive(32) + put result + delete ($drain_az queued, $worker_conc handlers)" \
      "$(get "$work/az_q" work_drain_rate_per_s)" "msgs/s" "" "azure_storage_* 0.21" none ""
  else
    errors=$((errors + 1))
  fi
  fresh_azurite
  if backlog_drain "$drain_az" bla; then
    a_drain=$drain_rate
    row "backlog drain, Azurite ($drain_az queued, then a standalone handler started)" "$a_drain" "ops/s" \
      "$(get "$work/az_q" work_drain_rate_per_s)" "bare receive+put result+delete" ge_ratio 0.5
    row "Azurite's CPU while draining: the handler's drain" "$(get "$work/bla.drain" backlog_azurite_cpu_pct)" "% of a core" \
      "$(get "$work/az_q" work_drain_azurite_cpu_pct)" "bare receive+put result+delete" none ""
  else
    echo "bench: the backlog drain on Azurite failed" >&2
    errors=$((errors + 1))
  fi
}

# depth_sweep: the backlog sweep table (the full run; the smoke pass when BENCH_AZURE_DEPTHS is
# set): in memory at $mem_depths, on Azurite at $az_depths, each feeding the depth chart's data.
depth_sweep() {
  log "sweep: backlog, in memory at $mem_depths; on Azurite at $az_depths"
  local n mr mpk as ar apk qr acpu qcpu
  {
    echo
    echo "Backlog sweep. In memory: N submitted at once over 32 connections to a fresh standalone handler, time"
    echo "until all Succeeded (the worker drains while they arrive; the in-memory queue does not outlive its process)."
    echo "Azurite: N queued first (host mode), then a fresh standalone handler (WORKER_CONCURRENCY=$worker_conc) timed"
    echo "from spawn until the queue is empty, each N on a fresh Azurite, and its bare baseline (receive(32) + put"
    echo "result + delete on $worker_conc handlers) on another. Peak RSS of the handler doing it."
    echo
    echo "| N | in memory: ops/s | in memory: peak RSS MiB | Azurite: drain s | Azurite: ops/s | Azurite: peak RSS MiB | bare msgs/s | Azurite ratio | Azurite CPU %, handler / bare |"
    echo "|---|---|---|---|---|---|---|---|---|"
  } >>"$sweeps"
  # shellcheck disable=SC2086 # the depth lists are words
  for n in $(printf '%s\n' $mem_depths $az_depths | sort -n -u); do
    mr="-"; mpk="-"; as="-"; ar="-"; apk="-"; qr="-"; acpu="-"; qcpu="-"
    if [[ " $mem_depths " == *" $n "* ]]; then
      if start_handler swm "${mem_env[@]}" &&
        sample_peak "$swm_pid" "$work/swm.peak" run_bench "$work/swm_$n" drain --url "http://127.0.0.1:$swm_port" --n "$n" --conc 32; then
        mr=$(get "$work/swm_$n" drain_rate_per_s)
        mpk=$(awk -v k="$(cat "$work/swm.peak")" 'BEGIN { printf "%.1f", k / 1024 }')
        printf 'handler, in memory\t%s\t%s\n' "$n" "$mr" >>"$depth_data"
      else
        errors=$((errors + 1))
      fi
      stop_pid "${swm_pid:-}"
    fi
    if ! [[ " $az_depths " == *" $n "* ]]; then
      : # not a depth this run was asked for on Azurite: memory only
    elif [ "$n" = "$drain_az" ] && [ -n "${a_drain:-}" ]; then
      # The main table's rows: not measured twice.
      ar=$a_drain; qr=$(get "$work/az_q" work_drain_rate_per_s)
      acpu=$(get "$work/bla.drain" backlog_azurite_cpu_pct); qcpu=$(get "$work/az_q" work_drain_azurite_cpu_pct)
      as=$(awk -v n="$n" -v r="$ar" 'BEGIN { printf "%.1f", n / r }')
      apk=$(awk -v k="$(cat "$work/bla.peak")" 'BEGIN { printf "%.1f", k / 1024 }')
    else
      fresh_azurite
      log "  N=$n: the bare drain"
      if bare_drain "$n" "$work/swq_$n"; then
        qr=$(get "$work/swq_$n" work_drain_rate_per_s); qcpu=$(get "$work/swq_$n" work_drain_azurite_cpu_pct)
      else
        errors=$((errors + 1))
      fi
      fresh_azurite
      log "  N=$n: the handler's drain"
      if backlog_drain "$n" "bl$n"; then
        ar=$drain_rate
        as=$(awk -v n="$n" -v r="$ar" 'BEGIN { printf "%.1f", n / r }')
        apk=$(awk -v k="$(cat "$work/bl$n.peak")" 'BEGIN { printf "%.1f", k / 1024 }')
        acpu=$(get "$work/bl$n.drain" backlog_azurite_cpu_pct)
      else
        ar="-"; errors=$((errors + 1))
      fi
    fi
    [ "$ar" != "-" ] && printf 'handler, Azurite\t%s\t%s\n' "$n" "$ar" >>"$depth_data"
    [ "$qr" != "-" ] && printf 'bare client, Azurite\t%s\t%s\n' "$n" "$qr" >>"$depth_data"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' "$n" "$mr" "$mpk" "$as" "$ar" "$apk" "$qr" \
      "$(awk -v a="$ar" -v b="$qr" 'BEGIN { if (b > 0 && a > 0) printf "%.2fx", a / b; else print "-" }')" "$acpu" "$qcpu" >>"$sweeps"
    log "  N=$n memory ${mr}/s, Azurite ${ar}/s, bare ${qr}/s"
  done
}

# ------------------------------------------------------------------ counted storage calls
# start_count_proxy: the counting proxy in front of the current Azurite; sets proxy_url (its
# counts endpoint), proxy_conn (a connection string through it), proxy_blob_url/proxy_queue_url.
start_count_proxy() {
  local pb pq i
  pb=$(port); pq=$(port)
  "$bench" count-proxy --upstream-blob "$az_blob_url" --upstream-queue "$az_queue_url" \
    --blob-port "$pb" --queue-port "$pq" --log >>"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  proxy_url="http://127.0.0.1:$pb"
  proxy_blob_url="http://127.0.0.1:$pb/devstoreaccount1"
  proxy_queue_url="http://127.0.0.1:$pq/devstoreaccount1"
  proxy_conn="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=$proxy_blob_url;QueueEndpoint=$proxy_queue_url"
  for i in $(seq 1 200); do
    curl -fsS -o /dev/null "$proxy_url/__counts" 2>/dev/null &&
      curl -fsS -o /dev/null "http://127.0.0.1:$pq/__counts" 2>/dev/null && return 0
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench: the counting proxy did not start" >&2
  cat "$work/proxy.log" >&2
  return 1
}

snap() { curl -fsS "$proxy_url/__counts" >"$1"; }

# tx_count_handler N: N operations through handlers whose storage is the counting proxy. The
# submits go to a handler in host mode (no worker: the submit phase is submits alone); a
# standalone handler then drains them, and the harness waits for the queue to empty by asking
# Azurite directly (its waiting is not counted); then each status is read once through the
# handler (the 302). Results in $work/tx_h.
tx_count_handler() {
  local n=$1 name=txh
  local -a via=(AzureWebJobsStorage="$proxy_conn" PROCESSING_DELAY_MS=1)
  keep_host=1 queue_backlog 0 "$name" "${via[@]}" || return 1
  curl -fsS -X POST -o "$work/tx0.json" "$proxy_url/__reset" || return 1
  run_bench "$work/$name.sub" submit --url "http://127.0.0.1:$host_port" --n "$n" --conc "$az_conc" \
    --out "$work/$name.paths" || { stop_pid "$host_pid"; return 1; }
  snap "$work/tx1.json"
  echo "--- submitted" >>"$work/proxy.log"
  stop_pid "$host_pid"
  start_handler "$name" "${via[@]}" WORKER_CONCURRENCY="$worker_conc" || return 1
  snap "$work/tx2.json"
  echo "--- ready" >>"$work/proxy.log"
  run_bench "$work/$name.drain" backlog --url "http://127.0.0.1:${txh_port}" --queue "$az_queue_url" \
    --name "q-$name" --paths "$work/$name.paths" --timeout-s "$drain_timeout" --no-check ||
    { stop_pid "$txh_pid"; return 1; }
  # The last delete has been answered; give the worker a moment to finish what follows it.
  sleep 0.3
  snap "$work/tx3.json"
  echo "--- drained" >>"$work/proxy.log"
  run_bench "$work/$name.read" statuses --url "http://127.0.0.1:${txh_port}" --paths "$work/$name.paths" ||
    { stop_pid "$txh_pid"; return 1; }
  snap "$work/tx4.json"
  stop_pid "$txh_pid"
  run_bench "$work/tx_h" txreport --n "$n" --submit0 "$work/tx0.json" --submit1 "$work/tx1.json" \
    --ready "$work/tx2.json" --drained "$work/tx3.json" --read "$work/tx4.json"
}

tx_count_bare() {
  run_bench "$work/tx_b" azure --what txops --blob "$proxy_blob_url" --queue "$proxy_queue_url" \
    --proxy "$proxy_url" --n "$1" --conc "$worker_conc"
}

# tx_table N: the per-operation counts of both, as a table for the report.
tx_table() {
  local ph who f
  {
    echo
    echo "Storage calls per completed operation, counted by the proxy in front of Azurite ($1 operations;"
    echo "the handler at WORKER_CONCURRENCY=$worker_conc, PROCESSING_DELAY_MS=1; the bare client doing the"
    echo "seed's minimum: put record + put message, receive(32) + put result + delete, get record)."
    echo "Queue calls exclude empty polls (receives that brought no message), which are counted apart;"
    echo "the total is blob writes + blob reads + queue calls. Refused: the writes (counted among the"
    echo "writes) that storage refused, 412 (If-Match failed) or 409 (exists). The handler's work phase"
    echo "includes its start-up ($(get "$work/tx_h" tx_startup_calls) calls in all, not per operation)."
    echo
    echo "| phase | who | blob writes | of which refused | blob reads | queue calls | empty polls | total |"
    echo "|---|---|---|---|---|---|---|---|"
    for ph in submit work status all; do
      for who in handler bare; do
        if [ "$who" = handler ]; then f="$work/tx_h"; else f="$work/tx_b"; fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$ph" "$who" "$(get "$f" "tx_${ph}_writes")" \
          "$(get "$f" "tx_${ph}_refused")" "$(get "$f" "tx_${ph}_reads")" "$(get "$f" "tx_${ph}_queue")" "$(get "$f" "tx_${ph}_empty")" \
          "$(get "$f" "tx_${ph}_total")"
      done
    done
  } >>"$sweeps"
}

# tx_rows: the counted storage calls, handler and bare, as two rows and a table.
tx_rows() {
  # --- storage calls per operation, counted by a proxy in front of Azurite
  fresh_azurite
  log "storage calls per operation, counted ($tx_n operations)"
  if start_count_proxy && tx_count_handler "$tx_n" && tx_count_bare "$tx_n"; then
    row "storage calls per completed operation, Azurite (submit + work + one status read)" \
      "$(get "$work/tx_h" tx_all_total)" "calls" "$(get "$work/tx_b" tx_all_total)" "bare seed minimum" none ""
    row "idle queue polls during those operations (empty receives, per operation)" \
      "$(get "$work/tx_h" tx_all_empty)" "calls" "$(get "$work/tx_b" tx_all_empty)" "bare seed minimum" none ""
    tx_table "$tx_n"
  else
    echo "bench: counting storage calls failed" >&2
    errors=$((errors + 1))
  fi
  [ -n "${proxy_pid:-}" ] && stop_pid "$proxy_pid"
}

# ------------------------------------------------------------------ instances sharing a queue
# instance_drain K N: N queued, then K standalone handlers on the same queue and containers,
# timed from the first spawn until the queue is empty. Each runs at RUST_LOG=info so its
# "operation ended" lines tell its share. Sets inst_rate, inst_cpu, inst_share ("a / b / c").
instance_drain() {
  local k=$1 n=$2 name="inst$1" i t0 empty_at share=""
  queue_backlog "$n" "$name" || return 1
  local -a same=(WORK_QUEUE_NAME="q-$name" RESULT_CONTAINER="data-$name" RECORDS_CONTAINER="ops-$name"
    RUST_LOG=info WORKER_CONCURRENCY="$worker_conc" "${azure_env[@]}")
  t0=$(date +%s%3N)
  for i in $(seq 1 "$k"); do start_handler "${name}_$i" "${same[@]}" || return 1; done
  local first_port="${name}_1_port"
  if ! run_bench "$work/$name.drain" backlog --url "http://127.0.0.1:${!first_port}" --queue "$az_queue_url" \
    --name "q-$name" --paths "$work/$name.paths" --azurite-pid "$azurite_pid" --timeout-s "$drain_timeout"; then
    echo "bench: $k instances did not drain $n queued messages" >&2
  fi
  for i in $(seq 1 "$k"); do
    local pid_var="${name}_${i}_pid"
    stop_pid "${!pid_var}"
    share="$share${share:+ / }$(grep -c 'operation ended' "$work/${name}_$i.log" || true)"
  done
  empty_at=$(get "$work/$name.drain" backlog_empty_at_unix_ms)
  [ -n "$empty_at" ] || return 1
  inst_rate=$(awk -v n="$n" -v a="$t0" -v b="$empty_at" 'BEGIN { printf "%.1f", n / ((b - a) / 1000) }')
  inst_secs=$(awk -v a="$t0" -v b="$empty_at" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
  inst_cpu=$(get "$work/$name.drain" backlog_azurite_cpu_pct)
  inst_share=$share
}

instance_sweep() {
  local k
  {
    echo
    echo "Instance sweep: $inst_n operations queued (host mode), then 1, 2 or 3 standalone handlers"
    echo "(WORKER_CONCURRENCY=$worker_conc each) sharing that one queue and its containers on one fresh"
    echo "Azurite, timed from the first spawn until the queue is empty (the instances are started one"
    echo "after another, each answering GET / before the next). Share: each instance's \"operation"
    echo "ended\" log lines (RUST_LOG=info); a redelivered message can end twice."
    echo
    echo "| instances | drain s | ops/s | Azurite CPU % | operations ended, per instance |"
    echo "|---|---|---|---|---|"
  } >>"$sweeps"
  for k in 1 2 3; do
    fresh_azurite
    if instance_drain "$k" "$inst_n"; then
      printf '| %s | %s | %s | %s | %s |\n' "$k" "$inst_secs" "$inst_rate" "$inst_cpu" "$inst_share" >>"$sweeps"
      printf 'handler instances, Azurite\t%s\t%s\n' "$k" "$inst_rate" >>"$inst_data"
      log "  $k instance(s): $inst_rate ops/s, shares $inst_share"
    else
      printf '| %s | - | - | - | - |\n' "$k" >>"$sweeps"
      errors=$((errors + 1))
    fi
  done
}

# ------------------------------------------------------------------ charts
# draw_charts: the sweep figures in $depth_data / $inst_data drawn as SVG into $chart_dir, each
# checked to parse as XML.
draw_charts() {
  local svg
  run_bench "$work/chart1" chart --data "$depth_data" --out "$chart_dir/BENCHMARKS-depth.svg" --log-x \
    --title "Backlog drain rate vs queue depth" --x-label "messages queued" --y-label "operations/s" || return 1
  run_bench "$work/chart2" chart --data "$inst_data" --out "$chart_dir/BENCHMARKS-instances.svg" \
    --title "Backlog drain rate vs instances (one queue, Azurite)" --x-label "handler instances" \
    --y-label "operations/s" || return 1
  for svg in "$chart_dir/BENCHMARKS-depth.svg" "$chart_dir/BENCHMARKS-instances.svg"; do
    if ! python3 -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); sys.exit(0 if r.tag.endswith("svg") else 1)' "$svg"; then
      echo "bench: $svg is not an SVG document" >&2
      errors=$((errors + 1))
    fi
  done
  log "charts: $chart_dir/BENCHMARKS-depth.svg, $chart_dir/BENCHMARKS-instances.svg"
}
