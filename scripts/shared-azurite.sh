# Sourced by scripts/test.sh and scripts/reliability.sh: starts ONE Azurite for the whole run,
# strict mode and in memory as tests/support/azurite.rs starts its private ones, on free
# loopback ports, and exports them (AZURITE_SHARED_BLOB_PORT, AZURITE_SHARED_QUEUE_PORT) so
# every test process that only needs a storage account uses it, under its own queue and
# container names. Stopped on exit. If the ports are already exported (test.sh started it and
# runs reliability.sh), nothing is started.

shared_azurite_pid=""

stop_shared_azurite() {
  if [ -n "$shared_azurite_pid" ]; then
    kill -TERM "$shared_azurite_pid" 2>/dev/null || true
    wait "$shared_azurite_pid" 2>/dev/null || true
    shared_azurite_pid=""
  fi
  if [ -n "${shared_azurite_dir:-}" ]; then rm -rf "$shared_azurite_dir"; fi
}

start_shared_azurite() {
  if [ -n "${AZURITE_SHARED_BLOB_PORT:-}" ] && [ -n "${AZURITE_SHARED_QUEUE_PORT:-}" ]; then
    return 0
  fi
  local bin=${AZURITE_BIN:?AZURITE_BIN names the Azurite to start}
  shared_azurite_dir=$(mktemp -d "${TMPDIR:-/tmp}/azurite-shared.XXXXXX")
  trap stop_shared_azurite EXIT
  local attempt ports blob queue table
  # A probed free port can be taken before Azurite binds it: on an early exit, try new ones.
  for attempt in 1 2 3 4 5; do
    ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
    read -r blob queue table <<<"$ports"
    (cd "$shared_azurite_dir" && exec "$bin" --silent --disableTelemetry --skipApiVersionCheck \
      --inMemoryPersistence \
      --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 \
      --blobPort "$blob" --queuePort "$queue" --tablePort "$table" >/dev/null) &
    shared_azurite_pid=$!
    local waited
    for waited in $(seq 1 600); do
      if ! kill -0 "$shared_azurite_pid" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$blob") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$queue") 2>/dev/null; then
        export AZURITE_SHARED_BLOB_PORT=$blob AZURITE_SHARED_QUEUE_PORT=$queue
        echo "shared Azurite (pid $shared_azurite_pid): blob $blob, queue $queue"
        return 0
      fi
      sleep 0.05
    done
    stop_shared_azurite
    shared_azurite_dir=$(mktemp -d "${TMPDIR:-/tmp}/azurite-shared.XXXXXX")
  done
  echo "shared Azurite did not start (tried 5 times)" >&2
  return 1
}
